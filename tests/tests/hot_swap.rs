//! Hot swap with real components: under a running tick loop, from a watched directory,
//! with state hand-over, refusal of broken candidates, fallback and the artifact cache.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shardcast::engine::tick_loop::TickLoop;
use shardcast::engine::watch::{Binding, PolicyWatcher};
use shardcast::engine::{ChurnLimits, PolicyEngine, Runtime, RuntimeOptions, TickReport};
use shardcast_sdk::view::ViewSnapshot;
use shardcast_tests::{artifacts, component, engine_with};

fn view(tick: u64) -> ViewSnapshot {
    let mut v = ViewSnapshot::synthetic(4, 256, 2, 8);
    v.tick = tick;
    v
}

/// Wait for a report satisfying `done`, collecting every report seen.
fn collect_until(
    rx: &mpsc::Receiver<TickReport>,
    seen: &mut Vec<TickReport>,
    done: impl Fn(&TickReport) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = rx
            .recv_timeout(left)
            .expect("tick reports keep coming before the deadline");
        let stop = done(&report);
        seen.push(report);
        if stop {
            return;
        }
    }
}

#[test]
fn hot_swap_under_a_running_tick_loop_loses_no_tick() {
    let engine = engine_with(artifacts::THRESHOLD, "");
    let handle = engine.planner_handle();
    let (tx, rx) = mpsc::channel();
    let ticker = TickLoop::spawn(engine, Duration::from_millis(2), view, move |r| {
        let _ = tx.send(r);
    });
    let mut seen = Vec::new();
    collect_until(&rx, &mut seen, |r| r.tick >= 20);
    let version = handle
        .propose(&component(artifacts::STATIC), "")
        .expect("static loads");
    assert_eq!(version.info.name, "static");
    collect_until(&rx, &mut seen, |r| {
        r.planner
            .as_deref()
            .is_some_and(|p| p.starts_with("static"))
    });
    let switched = seen.len();
    collect_until(&rx, &mut seen, |r| r.tick as usize >= switched + 20);
    drop(ticker.stop());
    while let Ok(r) = rx.try_recv() {
        seen.push(r);
    }

    for (i, report) in seen.iter().enumerate() {
        assert_eq!(report.tick, i as u64, "ticks are contiguous: no tick lost");
        assert!(report.faults.is_empty(), "tick {i}: {:?}", report.faults);
    }
    let labels: Vec<&str> = seen
        .iter()
        .map(|r| r.planner.as_deref().expect("every tick has a planner"))
        .collect();
    let changes = labels.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(changes, 1, "exactly one switch: {labels:?}");
    assert!(labels[0].starts_with("threshold@") && labels[labels.len() - 1].starts_with("static@"));
    assert_eq!(
        handle.status().swaps,
        2,
        "the initial load and the hot swap"
    );
    assert_eq!(
        handle.status().fallback.as_deref(),
        Some(labels[0]),
        "the old version is kept for rollback"
    );
}

#[test]
fn a_broken_candidate_leaves_the_running_version_in_place() {
    let mut engine = engine_with(artifacts::THRESHOLD, "");
    let handle = engine.planner_handle();
    engine.tick(view(0));
    let bad = [
        (
            component(artifacts::HOSTILE)
                .into_iter()
                .take(1000)
                .collect::<Vec<u8>>(),
            "".to_owned(),
        ),
        (component(artifacts::THRESHOLD), "ticks = 0".to_owned()),
        (component(artifacts::FORECAST_ONLY), "".to_owned()),
    ];
    for (bytes, settings) in bad {
        let err = handle.propose(&bytes, &settings).expect_err("refused");
        assert_eq!(
            handle.last_refusal().as_deref().map(String::as_str),
            Some(err.to_string().as_str())
        );
        let report = engine.tick(view(1));
        assert!(
            report
                .planner
                .as_deref()
                .is_some_and(|p| p.starts_with("threshold@")),
            "{:?}",
            report.planner
        );
    }
    assert_eq!(handle.status().swaps, 1);
}

#[test]
fn learned_state_is_handed_to_the_successor() {
    let mut engine = engine_with(artifacts::COUNTER, "");
    let counted = |r: &TickReport| r.predictions.load.first().map(|f| f.expected);
    for t in 0..5 {
        engine.tick(view(t));
    }
    engine
        .planner_handle()
        .propose(&component(artifacts::COUNTER), "")
        .expect("loads");
    let report = engine.tick(view(5));
    assert_eq!(
        counted(&report),
        Some(6.0),
        "the successor continues the count"
    );
    assert_eq!(engine.planner_handle().status().swaps, 2);
}

#[test]
fn a_checkpoint_resumes_the_same_version_on_another_engine_and_nothing_else() {
    let counted = |r: &TickReport| r.predictions.load.first().map(|f| f.expected);
    let mut first = engine_with(artifacts::COUNTER, "");
    for t in 0..5 {
        first.tick(view(t));
    }
    first.planner_handle().ask_checkpoint();
    // Taken between ticks 5 and 6, before the sixth predict.
    first.tick(view(5));
    let checkpoint = first
        .planner_handle()
        .take_checkpoint()
        .expect("a checkpoint was taken");
    assert_eq!(
        checkpoint.state,
        5u64.to_le_bytes(),
        "the count after five ticks"
    );
    assert!(
        first.planner_handle().take_checkpoint().is_none(),
        "taken once"
    );

    let mut second = engine_with(artifacts::COUNTER, "");
    second.tick(view(0));
    second.planner_handle().resume((*checkpoint).clone());
    let report = second.tick(view(1));
    assert_eq!(
        counted(&report),
        Some(6.0),
        "the count goes on from the checkpoint"
    );

    // Another version's checkpoint is not offered to it.
    let mut other = engine_with(artifacts::COUNTER, "");
    other.tick(view(0));
    let mut foreign = (*checkpoint).clone();
    foreign.sha256 = "0".repeat(64);
    other.planner_handle().resume(foreign);
    assert_eq!(
        counted(&other.tick(view(1))),
        Some(2.0),
        "it keeps its own count"
    );

    // A state the version refuses leaves it running with fresh state.
    let mut refused = (*checkpoint).clone();
    refused.state = vec![1, 2, 3];
    other.planner_handle().resume(refused);
    let report = other.tick(view(2));
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    assert_eq!(counted(&report), Some(1.0), "it starts over");
}

#[test]
fn a_faulting_version_falls_back_to_the_last_good_one_in_the_same_tick() {
    let mut engine = engine_with(artifacts::THRESHOLD, "");
    let handle = engine.planner_handle();
    assert!(engine.tick(view(0)).faults.is_empty());
    handle
        .propose(&component(artifacts::HOSTILE), "mode = \"panic\"")
        .expect("hostile loads; it only misbehaves in plan");
    let report = engine.tick(view(1));
    assert_eq!(report.faults.len(), 1, "{:?}", report.faults);
    assert!(report.faults[0].contains("hostile@"), "{:?}", report.faults);
    assert!(
        report
            .planner
            .as_deref()
            .is_some_and(|p| p.starts_with("threshold@")),
        "{:?}",
        report.planner
    );
    let status = handle.status();
    assert_eq!(status.rollbacks, 1);
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("falling back to threshold@")),
        "{status:?}"
    );
    assert!(
        engine.tick(view(2)).faults.is_empty(),
        "threshold keeps answering"
    );
}

#[test]
fn operator_rollback_returns_to_the_previous_version() {
    let mut engine = engine_with(artifacts::THRESHOLD, "");
    let handle = engine.planner_handle();
    engine.tick(view(0));
    handle
        .propose(&component(artifacts::STATIC), "")
        .expect("loads");
    assert!(
        engine
            .tick(view(1))
            .planner
            .is_some_and(|p| p.starts_with("static@"))
    );
    handle.rollback();
    assert!(
        engine
            .tick(view(2))
            .planner
            .is_some_and(|p| p.starts_with("threshold@"))
    );
}

#[test]
fn a_changed_file_in_the_watched_directory_is_swapped_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("planner.wasm");
    std::fs::write(&file, component(artifacts::THRESHOLD)).expect("write");
    let mut engine = PolicyEngine::new(shardcast_tests::runtime(), ChurnLimits::default());
    engine
        .load_policy(&std::fs::read(&file).expect("read"), "")
        .expect("loads");
    let bindings = HashMap::from([(
        file.clone(),
        Binding {
            handle: engine.planner_handle(),
            settings: String::new(),
            settings_file: None,
        },
    )]);
    let _watcher = PolicyWatcher::start(dir.path(), bindings).expect("watch");
    // Write a broken file first: it is refused and threshold keeps running.
    std::fs::write(&file, b"not a component").expect("write");
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.planner_handle().last_refusal().is_none() {
        assert!(Instant::now() < deadline, "the broken file was never tried");
        assert!(
            engine
                .tick(view(0))
                .planner
                .is_some_and(|p| p.starts_with("threshold@"))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let tmp = dir.path().join("planner.wasm.tmp");
    std::fs::write(&tmp, component(artifacts::STATIC)).expect("write");
    std::fs::rename(&tmp, &file).expect("rename");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tick = 1;
    loop {
        let report = engine.tick(view(tick));
        if report
            .planner
            .as_deref()
            .is_some_and(|p| p.starts_with("static@"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watched file was never swapped in"
        );
        tick += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn compiled_artifacts_are_cached_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RuntimeOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeOptions::default()
    };
    let bytes = component(artifacts::THRESHOLD);
    let files = || {
        std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let first = Runtime::new(options.clone()).expect("runtime");
    first.compile(&bytes).expect("compiles");
    assert_eq!(files(), 1, "one artifact written");
    let cached = first.compile(&bytes).expect("loads from cache");
    drop(cached);
    assert_eq!(files(), 1, "a hit writes nothing new");
    // A corrupt artifact is discarded and rebuilt, not trusted.
    let entry = std::fs::read_dir(dir.path())
        .expect("dir")
        .next()
        .expect("entry")
        .expect("entry")
        .path();
    std::fs::write(&entry, b"corrupt").expect("corrupt");
    let second = Runtime::new(options).expect("runtime");
    let mut engine = PolicyEngine::new(second, ChurnLimits::default());
    engine
        .load_policy(&bytes, "")
        .expect("recompiled after corruption");
    assert!(engine.tick(view(0)).faults.is_empty());
    assert!(std::fs::metadata(&entry).expect("rewritten").len() > 1000);
}

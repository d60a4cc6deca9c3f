//! Hostile policies hot-swapped into a running `shardcast run` (a separate process, real
//! redis-server instances) under client load. Each class of misbehaviour is contained: the
//! ticks go on, the operator's choice of version wins, the logs and the decision log stay
//! within their budgets, no host line is forged, SIGTERM still stops the process, and the
//! client sees no error throughout.

use std::sync::atomic::Ordering;
use std::time::Duration;

use shardcast_tests::artifacts;
use shardcast_tests::hostile::{HostileRig, TICK_MS, ticks_missed};

const BIN: &str = env!("CARGO_BIN_EXE_shardcast_node");

fn mode(m: &str) -> String {
    format!("mode = \"{m}\"\n")
}

fn faults(t: &shardcast_tests::hostile::TickLine) -> String {
    t.value["faults"].to_string()
}

/// Bytes of `what` per tick while `ticks` ticks pass.
fn per_tick(rig: &HostileRig, ticks: u64, what: impl Fn(&HostileRig) -> u64) -> u64 {
    let (bytes, from) = (what(rig), rig.last_tick());
    rig.wait_for_ticks(ticks);
    let n = rig.last_tick() - from;
    what(rig).saturating_sub(bytes) / n.max(1)
}

#[test]
fn hostile_policies_under_client_load() {
    let mut rig = HostileRig::start(&[BIN], artifacts::HOSTILE, &mode("calm"), true);

    // 1. A blocking WASI call: a fault each tick, and the ticks go on at their pace.
    rig.swap(artifacts::HOSTILE, &mode("sleep"));
    let first = rig.wait_for_tick("a blocking-call fault", |t| {
        faults(t).contains("blocking-call in plan()")
    });
    rig.wait_for_ticks(10);
    let since: Vec<_> = rig
        .ticks()
        .into_iter()
        .filter(|t| t.tick >= first.tick)
        .collect();
    assert!(
        ticks_missed(&since) <= 2,
        "ticks missed while the policy slept: {}",
        ticks_missed(&since)
    );
    // The same sleep in configure: refused, and the watcher goes on serving swaps.
    rig.swap(artifacts::HOSTILE, &mode("sleep-configure"));
    rig.wait_for_log("blocking-call in configure()", 1);
    rig.swap(artifacts::COUNTER, "");
    rig.wait_for_tick("counter to run", |t| {
        t.value["planner"]
            .as_str()
            .is_some_and(|p| p.starts_with("counter@"))
    });

    // 2. A version whose snapshot is garbage, huge or endless cannot keep its successor out.
    let runs = |prefix: &'static str| {
        move |t: &shardcast_tests::hostile::TickLine| {
            t.value["planner"]
                .as_str()
                .is_some_and(|p| p.starts_with(prefix))
        }
    };
    for hostile in ["snapshot-garbage", "snapshot-huge", "snapshot-spin"] {
        let from = rig.last_tick();
        rig.swap(artifacts::HOSTILE, &mode(hostile));
        rig.wait_for_tick("the hostile version to run", |t| {
            t.tick > from && runs("hostile@")(t)
        });
        let from = rig.last_tick();
        rig.swap(artifacts::COUNTER, "");
        // Counter's first forecast is its count: 1 when it starts fresh.
        let t = rig.wait_for_tick("counter to run again, fresh", |t| {
            t.tick > from
                && runs("counter@")(t)
                && t.value["predictions"]["load"][0]["expected"].as_f64() == Some(1.0)
        });
        assert!(t.value["faults"].as_array().is_some_and(Vec::is_empty));
    }
    assert!(rig.log_text().contains("starts with fresh state"));

    // 3. One plan moving a segment onto an instance and draining it: the drain is refused.
    rig.swap(artifacts::HOSTILE, &mode("drain-target"));
    let t = rig.wait_for_tick("the drain-target plan", |t| {
        t.value["rejected"]
            .to_string()
            .contains("target of an earlier action")
    });
    assert_eq!(t.value["accepted"].as_array().map(Vec::len), Some(1));

    // 4. Forged log lines are escaped.
    rig.swap(artifacts::HOSTILE, &mode("forge"));
    rig.wait_for_log("journal corrupt", 3);
    rig.swap(artifacts::IMPOSTOR, "");
    rig.wait_for_log("impostor plans nothing", 1);
    let text = rig.log_text();
    for line in text.lines() {
        assert!(
            !line.starts_with("2026-12-03T10:00:00"),
            "a forged host line: {line:?}"
        );
    }
    assert!(!text.contains(['\r', '\x1b', '\u{2028}']));

    // 5. Floods stay within their budgets.
    rig.swap(artifacts::HOSTILE, &mode("log-flood"));
    rig.wait_for_log("suppressed", 1);
    let log_per_tick = per_tick(&rig, 10, HostileRig::log_bytes);
    assert!(
        log_per_tick < 16 * 1024,
        "{log_per_tick} log bytes per tick"
    );
    // Granted a 2 s deadline, this policy takes its time each tick: those ticks are slow
    // by the operator's leave, and are not counted as missed below.
    let flood_from = rig.last_tick();
    rig.swap(
        artifacts::HOSTILE,
        &format!("{}[limits]\ndeadline_ms = 2000\n", mode("forecast-flood")),
    );
    rig.wait_for_tick("the forecast flood", |t| {
        t.value["cut"]["segment_forecasts"].as_u64() == Some(262_144)
    });
    let decisions_per_tick = per_tick(&rig, 10, HostileRig::decision_bytes);
    assert!(
        decisions_per_tick < 16 * 1024,
        "{decisions_per_tick} decision-log bytes per tick"
    );
    let flood_to = rig.last_tick() + 2;
    let splits_before = rig.decisions("applied").len();
    let from = rig.last_tick();
    rig.swap(artifacts::HOSTILE, &mode("split-storm"));
    rig.wait_for_ticks(30);
    let splits = rig.decisions("applied").len() - splits_before;
    assert!(
        splits <= 16,
        "{splits} splits in {} ticks, past the budget of 16 per 60 ticks",
        rig.last_tick() - from
    );
    assert!(splits > 0, "the storm was heard");

    // 6. Calm again; SIGTERM stops the process, whatever ran before.
    rig.swap(artifacts::HOSTILE, &mode("sleep"));
    rig.wait_for_ticks(3);
    let load = rig.stop_load();
    let status = rig.process().terminate(Duration::from_secs(20));
    assert!(
        status.is_some(),
        "shardcast exited on SIGTERM instead of being killed"
    );
    let all = rig.ticks();
    for t in &all {
        let us = t.value["policy_us"].as_u64().unwrap_or(0);
        assert!(us < 8_000_000, "tick {}: {us} µs in policy calls", t.tick);
    }
    let (before, after): (Vec<_>, Vec<_>) = all
        .iter()
        .filter(|t| t.tick <= flood_from || t.tick > flood_to)
        .cloned()
        .partition(|t| t.tick <= flood_from);
    let missed = ticks_missed(&before) + ticks_missed(&after);
    let at_pace = [before, after].concat();
    assert!(
        missed * 20 < at_pace.len() as u64,
        "{missed} of {} ticks missed ({TICK_MS} ms ticks)",
        at_pace.len()
    );
    assert_eq!(
        load.errors.load(Ordering::Relaxed),
        0,
        "client errors: last {:?}",
        load.last_error.lock().map(|e| e.clone())
    );
    assert!(load.ok.load(Ordering::Relaxed) > 1000);
}

#[test]
fn an_operator_forces_a_version_or_rolls_back_by_signal() {
    // A version whose snapshot never ends, with the file watcher off.
    let mut rig = HostileRig::start(&[BIN], artifacts::HOSTILE, &mode("snapshot-spin"), false);
    rig.swap(artifacts::COUNTER, "");
    rig.wait_for_ticks(5);
    assert!(
        rig.ticks()
            .last()
            .and_then(|t| t.value["planner"].as_str().map(str::to_owned))
            .is_some_and(|p| p.starts_with("hostile@")),
        "without a watcher the file change alone does nothing"
    );
    rig.process().signal("USR1");
    let t = rig.wait_for_tick("the forced version", |t| {
        t.value["planner"]
            .as_str()
            .is_some_and(|p| p.starts_with("counter@"))
    });
    assert_eq!(
        t.value["predictions"]["load"][0]["expected"].as_f64(),
        Some(1.0),
        "fresh state"
    );
    assert!(rig.log_text().contains("forced swap"));
    assert!(
        !rig.log_text().contains("timeout in snapshot()"),
        "a forced swap never asks the running version for its state"
    );
    rig.process().signal("USR2");
    rig.wait_for_tick("the rollback", |later| {
        later.tick > t.tick
            && later.value["planner"]
                .as_str()
                .is_some_and(|p| p.starts_with("hostile@"))
    });
    let load = rig.stop_load();
    assert_eq!(load.errors.load(Ordering::Relaxed), 0);
}

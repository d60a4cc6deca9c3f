//! A policy's stdout, stderr and log import reach `tracing`, tagged with its name.
//!
//! In its own test binary: it installs a subscriber, which must not race other tests.

use std::io::Write;
use std::sync::{Arc, Mutex};

use shardcast::engine::{ChurnLimits, PolicyEngine};
use shardcast_sdk::view::ViewSnapshot;
use shardcast_tests::{artifacts, component, engine_with, runtime};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything `tracing` wrote while `f` ran, as the host's log would show it.
fn logged(f: impl FnOnce()) -> String {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().expect("buffer").clone();
    String::from_utf8(bytes).expect("utf-8")
}

fn tick(engine: &mut PolicyEngine, tick: u64) {
    let mut view = ViewSnapshot::synthetic(2, 4, 1, 2);
    view.tick = tick;
    let report = engine.tick(view);
    assert!(report.faults.is_empty(), "{:?}", report.faults);
}

#[test]
fn no_policy_can_forge_a_host_log_line() {
    let text = logged(|| {
        let mut engine = engine_with(artifacts::HOSTILE, "mode = \"forge\"");
        tick(&mut engine, 0);
        let mut impostor = PolicyEngine::new(runtime(), ChurnLimits::default());
        impostor
            .load_planner(&component(artifacts::IMPOSTOR), "")
            .expect("the impostor loads");
        tick(&mut impostor, 0);
    });
    assert!(
        text.contains("journal corrupt"),
        "the policy was heard: {text}"
    );
    assert!(text.contains("impostor plans nothing"), "{text}");
    for line in text.lines() {
        // Every line is the host's: a timestamp, then the level the host chose.
        assert!(
            !line.starts_with("2026-12-03T10:00:00"),
            "a forged line: {line:?}"
        );
    }
    assert!(
        !text.contains(['\r', '\x1b', '\u{2028}']),
        "raw control characters reached the log"
    );
    assert!(
        text.len() < 64 * 1024,
        "a megabyte name is cut: {} bytes",
        text.len()
    );
}

#[test]
fn a_log_flood_is_held_to_the_budget_and_counted() {
    // Time enough to say all 12 MiB, so that the budget is what stops it.
    let mut engine = engine_with(
        artifacts::HOSTILE,
        "mode = \"log-flood\"\n[limits]\ndeadline_ms = 5000\n",
    );
    let mut sizes = Vec::new();
    let mut last = String::new();
    for t in 0..3 {
        last = logged(|| tick(&mut engine, t));
        sizes.push(last.len());
    }
    // 12 MiB offered per tick; the budget is 4 KiB of messages, plus each line's prefix
    // and the line that counts what was suppressed.
    for size in &sizes {
        assert!(*size < 16 * 1024, "{sizes:?}");
    }
    assert!(last.contains("suppressed"), "{last}");
    assert!(
        last.contains("over its budget of 4096 bytes per tick"),
        "{last}"
    );
}

#[test]
fn policy_output_goes_to_tracing_under_its_name() {
    let text = logged(|| {
        let mut engine = engine_with(artifacts::HOSTILE, "mode = \"chatty\"");
        tick(&mut engine, 0);
    });
    for line in [
        "hello from a policy's stdout",
        "hello from a policy's stderr",
        "hello through the logging import",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("policy=hostile@0.1.0"), "{text}");
}

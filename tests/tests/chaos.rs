//! Chaos: segments move back and forth while a writer works through the proxy, and
//! shardcast is killed at every migration step (and at arbitrary moments), and the source
//! and target instances are killed and restarted. At the end every acknowledged write must
//! be there exactly once, every counter must equal its acknowledged increments, no deleted
//! key may reappear, and no write refused with `TRYAGAIN` may have been applied. Instances
//! are also hung (SIGSTOP) past the request deadline and resumed.

use std::time::Duration;

use shardcast::migrate::journal::{Journal, Step};
use shardcast_tests::chaos::{Rig, STEPS, check};
use shardcast_tests::servers::{ShardcastProcess, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_shardcast_node");

#[test]
fn acknowledged_writes_survive_kills_at_every_migration_step() {
    let mut rig = Rig::start("chaos");
    let (file, port, state) = (rig.file.clone(), rig.port, rig.state.clone());
    let mut kills = 0;
    for step in STEPS {
        let mut p = ShardcastProcess::start(&[BIN], &file, port, &[("SHARDCAST_CRASH_AT", step)]);
        wait_for(
            &format!("a crash at {step}"),
            Duration::from_secs(60),
            || p.exited(),
        );
        kills += 1;
        // Recover, keep moving for a while, then SIGKILL at whatever step it is in.
        let mut p = ShardcastProcess::start(&[BIN], &file, port, &[]);
        std::thread::sleep(Duration::from_millis(800));
        p.kill();
        kills += 1;
    }
    // Kill the instances themselves while segments move between them.
    let mut p = ShardcastProcess::start(&[BIN], &file, port, &[]);
    for victim in [0, 1, 0] {
        std::thread::sleep(Duration::from_millis(400));
        rig.servers[victim].kill();
        std::thread::sleep(Duration::from_millis(200));
        rig.servers[victim].restart();
        kills += 1;
    }
    // Hang them (SIGSTOP) for longer than a request's deadline, then let them go on.
    for victim in [1, 0] {
        std::thread::sleep(Duration::from_millis(400));
        rig.servers[victim].pause();
        std::thread::sleep(Duration::from_millis(1500));
        rig.servers[victim].resume();
        kills += 1;
    }
    std::thread::sleep(Duration::from_millis(500));
    p.kill();

    // A final, quiet run: recovery finishes what was left, and no policy moves anything.
    rig.quiet();
    let _quiet = ShardcastProcess::start(&[BIN], &file, port, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let ledger = rig.stop_writer();
    let violations = check(port, &ledger);
    assert!(
        violations.is_empty(),
        "{} violations: {violations:#?}",
        violations.len()
    );
    assert!(
        ledger.acknowledged() > 500,
        "the writer made progress: {ledger:?}"
    );

    let records = Journal::read(&state.join("journal.jsonl")).expect("journal");
    let done = records.iter().filter(|r| r.step == Step::Done).count();
    let rolled = records
        .iter()
        .filter(|r| matches!(r.step, Step::RolledBack { .. }))
        .count();
    assert!(done >= 3, "migrations completed between the kills: {done}");
    assert!(rolled >= 2, "interrupted migrations rolled back: {rolled}");
    assert!(
        Journal::unfinished(&records).is_empty(),
        "recovery left nothing unfinished: {:?}",
        Journal::unfinished(&records)
    );
    // The decision log: every tick with its policy version, every migration's outcome.
    let log = std::fs::read_to_string(state.join("decisions.jsonl")).expect("decision log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(lines.iter().any(|v| v["kind"] == "tick"
        && v["planner"] == "ping-pong@0.1.0"
        && v["accepted"].as_array().is_some_and(|a| !a.is_empty())));
    assert!(lines.iter().any(|v| {
        v["kind"] == "outcome"
            && v["migration"]["outcome"]
                .as_str()
                .is_some_and(|o| o.eq_ignore_ascii_case("completed"))
            && v["policy"] == "ping-pong@0.1.0"
    }));
    eprintln!(
        "checked {} acknowledged writes ({} uncertain, {} refused with TRYAGAIN) across {kills} kills and pauses; {done} migrations completed, {rolled} rolled back",
        ledger.acknowledged(),
        ledger.failed,
        ledger.refused
    );
}

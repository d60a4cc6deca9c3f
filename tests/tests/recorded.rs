//! Recorded data in the simulator: a workload from a recorded history (per fleet) and from
//! a two-column export (per tenant), and a failure precursor replayed from an instance's
//! recorded latency before its labelled crash. The files are ones the project writes
//! itself: a history recorded by `shardcast sim --history`, and a CSV the test writes.

use std::path::Path;

use clap::Parser;
use shardcast::cli::{Cli, run as cli};
use shardcast::history;
use shardcast_sdk::prelude::*;
use shardcast_sdk::testing::{Report, Scenario, Simulator, run};
use shardcast_tests::{artifacts, component};

fn shardcast(args: &[&str]) -> anyhow::Result<String> {
    cli(Cli::try_parse_from(
        std::iter::once("shardcast").chain(args.iter().copied()),
    )?)
}

fn wasm(scenario: &Scenario, path: &str) -> Report {
    let mut runner = shardcast::simulate::WasmRunner::load(scenario, &component(path), "")
        .expect("the component loads");
    run(scenario, &mut runner)
}

/// Record degrade-crash (instance redis-1 degrades for 300 s and crashes at 1200 s) under
/// `static` into `dir/history.csv`.
fn record(dir: &Path) -> std::path::PathBuf {
    let scenario = format!(
        "{}/../guest-sdk/scenarios/degrade-crash.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = dir.join("history.csv");
    shardcast(&[
        "sim",
        "--scenario",
        &scenario,
        "--policy",
        artifacts::STATIC,
        "--history",
        out.to_str().expect("utf-8"),
    ])
    .expect("the simulator records");
    out
}

const SCENARIO: &str = r#"
name = "recorded"
description = "Fleet load from a recorded instance, a recorded tenant ramp, and a recorded precursor before instance 2's crash."
seed = 3
duration_s = 2400
slo = { p99_us = 2000.0 }

[fleet]
instances = 4
standby = 1
segments = 256

[[workload.recorded]]
file = "history.csv"
instance = "redis-0"
column = "ops"
scale = 3.5

[[workload.recorded]]
file = "tenant.csv"
first = 40
width = 4
scale = 2.0

[[failures]]
kind = "degrade"
instance = 2
at_s = 1700.0
precursor_s = 300.0
duration_s = 600.0
precursor_from = { file = "history.csv", instance = "redis-1" }
"#;

#[test]
fn recorded_workloads_and_precursors_drive_the_simulator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let history_file = record(dir.path());
    // A tenant export: seconds and ops, ramping from 1,000 to 9,000 over 20 minutes.
    let mut tenant = String::from("timestamp,ops\n");
    for k in 0..=40 {
        tenant.push_str(&format!("{},{}\n", 1_700_000_000 + 30 * k, 1000 + 200 * k));
    }
    std::fs::write(dir.path().join("tenant.csv"), tenant).expect("write tenant");
    let scenario_file = dir.path().join("recorded.toml");
    std::fs::write(&scenario_file, SCENARIO).expect("write scenario");
    let scenario = Scenario::load(&scenario_file).expect("the scenario loads its files");

    // The oracle: the history as the host's reader sees it, and the tenant file as written.
    let rows = history::read(&history_file).expect("history");
    let first_ms = rows.iter().map(|r| r.t_ms).min().expect("rows");
    let ops0 = |t: f64| {
        rows.iter()
            .find(|r| {
                r.kind == "point" && r.name == "redis-0" && r.t_ms == first_ms + (t * 1000.0) as u64
            })
            .and_then(|r| r.ops)
    };
    let tenant_at = |t: f64| 2.0 * (1000.0 + 200.0 * (t / 30.0)).min(9000.0);
    let mut sim = Simulator::new(&scenario);
    let mut checked = 0;
    for _ in 0..1500 {
        sim.step();
        let t = sim.t();
        let total: f64 = sim.segments_latest(Metric::Ops).iter().sum();
        if let Some(recorded) = ops0(t)
            && (t as u64).is_multiple_of(97)
        {
            let want = 3.5 * recorded + tenant_at(t);
            assert!(
                (total - want).abs() <= 1e-6 * want,
                "t {t}: fleet ops {total}, recorded {recorded} x 3.5 + tenant {}",
                tenant_at(t)
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} points checked");

    // The replayed precursor: instance 2's p99 climbs before its crash as redis-1's did.
    let mut sim = Simulator::new(&scenario);
    let mut p99_at = std::collections::BTreeMap::new();
    while sim.t() < 1699.0 {
        sim.step();
        p99_at.insert(
            sim.t() as u64,
            sim.instances_latest(Metric::LatencyP99Us)[2],
        );
    }
    let calm = p99_at[&1300];
    let late = p99_at[&1690];
    assert!(
        late > 3.0 * calm,
        "instance 2's p99 {calm} µs at 1300 s, {late} µs just before the crash"
    );

    // And a predictive policy, on it, evacuates before the crash.
    let predictive = wasm(&scenario, artifacts::PREDICTIVE);
    let fixed = wasm(&scenario, artifacts::STATIC);
    assert!(
        predictive.requests_failed <= 0.01 * fixed.requests_failed,
        "failed: predictive {}, static {}",
        predictive.requests_failed,
        fixed.requests_failed
    );
    let crash = predictive
        .down_events
        .iter()
        .find(|e| e.instance == 2)
        .expect("instance 2 goes down");
    assert!(
        crash.lead_s.is_some_and(|l| l >= 30.0),
        "evacuated too late: {crash:?}"
    );
}

#[test]
fn a_missing_or_malformed_recording_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario_file = dir.path().join("recorded.toml");
    std::fs::write(&scenario_file, SCENARIO).expect("write scenario");
    let err = Scenario::load(&scenario_file).expect_err("no history.csv");
    assert!(err.contains("history.csv"), "{err}");
    std::fs::write(
        dir.path().join("history.csv"),
        "kind,t_ms,instance,name,state,ops,p99_us,errors,cpu,memory_bytes,failure\n\
         point,1000,0,redis-0,Active,fast,1,0,1,1,\n",
    )
    .expect("write");
    let err = Scenario::load(&scenario_file).expect_err("bad number");
    assert!(err.contains("line 2") && err.contains("fast"), "{err}");
}

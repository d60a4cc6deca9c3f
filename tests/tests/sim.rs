//! The simulator with compiled components through the real engine: the same scenario, seed
//! and policy give the same report natively and as wasm; `shardcast sim` runs and compares.

use clap::Parser;
use shardcast::cli::{Cli, run as cli};
use shardcast::simulate::WasmRunner;
use shardcast_policy_threshold::Threshold;
use shardcast_sdk::testing::{Report, Scenario, run, run_native, scenarios};
use shardcast_tests::{artifacts, component};

fn wasm(scenario: &Scenario, path: &str, settings: &str) -> Report {
    let mut runner =
        WasmRunner::load(scenario, &component(path), settings).expect("component loads");
    run(scenario, &mut runner)
}

#[test]
fn native_and_wasm_runs_give_identical_reports() {
    for text in [
        scenarios::FLASH_CROWD,
        scenarios::MOVING_HOTSPOT,
        scenarios::DEGRADE_CRASH,
    ] {
        let scenario = Scenario::parse(text).expect("parses");
        let native = run_native(&scenario, Threshold::default(), "").expect("native runs");
        let compiled = wasm(&scenario, artifacts::THRESHOLD, "");
        assert!(
            native.moves > 0 || scenario.name == "degrade-crash",
            "the run does something: {native}"
        );
        let diff = native.differences(&compiled);
        assert!(
            diff.is_empty(),
            "{}: native and wasm differ in {diff:?}",
            scenario.name
        );
    }
}

#[test]
fn settings_reach_the_compiled_policy_in_simulation() {
    let scenario = Scenario::parse(scenarios::FLASH_CROWD).expect("parses");
    let eager = "high = 55000.0\nlow = 50000.0\nticks = 1";
    let native = run_native(&scenario, Threshold::default(), eager).expect("runs");
    let compiled = wasm(&scenario, artifacts::THRESHOLD, eager);
    assert!(
        native.differences(&compiled).is_empty(),
        "{:?}",
        native.differences(&compiled)
    );
    let default = run_native(&scenario, Threshold::default(), "").expect("runs");
    assert_ne!(
        native.first_move_s, default.first_move_s,
        "settings change the outcome"
    );
}

#[test]
fn hostile_policies_are_contained_in_simulation_too() {
    let mut scenario = Scenario::parse(scenarios::FLASH_CROWD).expect("parses");
    scenario.duration_s = 20;
    let report = wasm(&scenario, artifacts::HOSTILE, "mode = \"panic\"");
    assert_eq!(
        report.faults, 3,
        "three faulting ticks, then disabled: {report}"
    );
    assert_eq!(report.moves, 0);
}

fn shardcast(args: &[&str]) -> anyhow::Result<String> {
    cli(Cli::try_parse_from(
        std::iter::once("shardcast").chain(args.iter().copied()),
    )?)
}

#[test]
fn sim_command_writes_report_json_and_svg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("short.toml");
    let mut text = scenarios::FLASH_CROWD.replace("duration_s = 1800", "duration_s = 900");
    text.push('\n');
    std::fs::write(&scenario, text).expect("write");
    let json = dir.path().join("report.json");
    let svg = dir.path().join("chart.svg");
    let out = shardcast(&[
        "sim",
        "--scenario",
        scenario.to_str().expect("utf-8"),
        "--policy",
        artifacts::THRESHOLD,
        "--json",
        json.to_str().expect("utf-8"),
        "--svg",
        svg.to_str().expect("utf-8"),
    ])
    .expect("sim runs");
    assert!(
        out.contains("SLO violation") && out.contains("faster than real time"),
        "{out}"
    );
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parses");
    assert_eq!(report.scenario, "flash-crowd");
    assert!(report.moves > 0);
    let chart = std::fs::read_to_string(&svg).expect("svg");
    assert!(
        chart.starts_with("<svg") && chart.contains("flash-crowd / threshold@"),
        "an SVG chart"
    );
}

#[test]
fn sim_compare_prints_one_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in [
        ("a", scenarios::FALSE_ALARM),
        ("b", scenarios::ROLLING_RESTART),
    ] {
        std::fs::write(dir.path().join(format!("{name}.toml")), text).expect("write");
    }
    let out = shardcast(&[
        "sim",
        "--compare",
        &format!("{},{}", artifacts::STATIC, artifacts::THRESHOLD),
        "--scenarios",
        dir.path().to_str().expect("utf-8"),
    ])
    .expect("compare runs");
    assert!(
        out.contains("| scenario | static@0.1.0 | threshold@0.1.0 |"),
        "{out}"
    );
    assert!(
        out.contains("| false-alarm |") && out.contains("| rolling-restart |"),
        "{out}"
    );
}

#[test]
fn sim_names_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[fleet]\nsegmnts = 3\n").expect("write");
    let err = shardcast(&[
        "sim",
        "--scenario",
        bad.to_str().expect("utf-8"),
        "--policy",
        artifacts::STATIC,
    ])
    .expect_err("typo");
    assert!(format!("{err:#}").contains("segmnts"), "{err:#}");
    let err = shardcast(&[
        "sim",
        "--compare",
        "nonesuch",
        "--scenarios",
        dir.path().to_str().expect("utf-8"),
    ])
    .expect_err("unknown policy");
    assert!(
        format!("{err:#}").contains("no component for policy `nonesuch`"),
        "{err:#}"
    );
}

/// `policy` against `static` on a scenario: its report and static's.
fn against_static(policy: &str, text: &str) -> (Report, Report) {
    let scenario = Scenario::parse(text).expect("parses");
    (
        wasm(&scenario, policy, ""),
        wasm(&scenario, artifacts::STATIC, ""),
    )
}

fn guarded(text: &str) -> (Report, Report) {
    against_static(artifacts::FAILURE_GUARD, text)
}

#[test]
fn failure_guard_and_predictive_empty_a_degrading_instance_before_it_crashes() {
    for policy in [artifacts::FAILURE_GUARD, artifacts::PREDICTIVE] {
        for text in [scenarios::DEGRADE_CRASH, scenarios::SHORT_WARNING] {
            degrading_instance_emptied(policy, text);
        }
    }
}

#[test]
fn predictive_relieves_a_flash_crowd_before_threshold_does() {
    let scenario = Scenario::parse(scenarios::FLASH_CROWD).expect("parses");
    let predictive = wasm(&scenario, artifacts::PREDICTIVE, "");
    let threshold = wasm(&scenario, artifacts::THRESHOLD, "");
    let fixed = wasm(&scenario, artifacts::STATIC, "");
    assert!(
        predictive.slo_violation_s <= 0.3 * threshold.slo_violation_s
            && predictive.slo_violation_s <= 0.1 * fixed.slo_violation_s,
        "violation: predictive {} s, threshold {} s, static {} s",
        predictive.slo_violation_s,
        threshold.slo_violation_s,
        fixed.slo_violation_s
    );
    assert_eq!(predictive.requests_failed, 0.0, "{predictive}");
}

fn degrading_instance_emptied(policy: &str, text: &str) {
    let (guard, fixed) = against_static(policy, text);
    assert!(
        fixed.requests_failed > 0.0,
        "the crash costs static requests"
    );
    assert!(
        guard.requests_failed <= 0.01 * fixed.requests_failed,
        "failed requests: {} against static's {}",
        guard.requests_failed,
        fixed.requests_failed
    );
    for event in &guard.down_events {
        let lead = event.lead_s.unwrap_or(0.0);
        assert!(
            lead >= 30.0,
            "evacuated {lead} s before the crash: {event:?}"
        );
    }
    assert!(
        guard.prediction_precision.is_some_and(|p| p >= 0.9),
        "{guard}"
    );
    assert!(guard.prediction_recall.is_some_and(|r| r >= 0.9), "{guard}");
}

#[test]
fn failure_guard_empties_each_instance_before_its_announced_restart() {
    let (guard, fixed) = guarded(scenarios::ROLLING_RESTART);
    assert!(fixed.requests_failed > 0.0);
    assert_eq!(guard.requests_failed, 0.0, "{guard}");
    assert!(guard.down_events.iter().all(|e| e.lead_s.is_some()));
}

#[test]
fn predictive_drains_nothing_where_load_alone_explains_the_latency() {
    // Overload, the queue it leaves, and a standby filling up all move latency and CPU;
    // none is a failure, and nothing crashes in these scenarios.
    for text in [
        scenarios::DIURNAL_TENANTS,
        scenarios::MOVING_HOTSPOT,
        scenarios::FLEET_RAMP,
    ] {
        let scenario = Scenario::parse(text).expect("parses");
        let report = wasm(&scenario, artifacts::PREDICTIVE, "");
        assert_eq!(
            report.drain_moves, 0,
            "{}: drained on load alone\n{report}",
            scenario.name
        );
    }
}

#[test]
fn predictive_brings_in_the_standby_when_the_fleet_outgrows_its_active_instances() {
    let scenario = Scenario::parse(scenarios::FLEET_RAMP).expect("parses");
    let predictive = wasm(&scenario, artifacts::PREDICTIVE, "");
    let threshold = wasm(&scenario, artifacts::THRESHOLD, "");
    assert!(
        threshold.slo_violation_s > 600.0,
        "the scenario must be one that balancing alone cannot win: threshold {} s",
        threshold.slo_violation_s
    );
    assert!(
        predictive.slo_violation_s <= 0.1 * threshold.slo_violation_s,
        "violation: predictive {} s, threshold {} s",
        predictive.slo_violation_s,
        threshold.slo_violation_s
    );
}

#[test]
fn predictive_drains_an_overloaded_instance_that_is_also_sick() {
    // Every instance carries more than the load half's capacity for the whole run, so
    // "load explains the latency" holds everywhere; instance 1 degrades (its CPU per
    // operation climbs) and crashes. Overload must not hide the sickness.
    let scenario = Scenario::parse(
        "name = \"overloaded-and-sick\"\nseed = 5\nduration_s = 1800\n\
         [fleet]\ninstances = 4\nstandby = 1\nsegments = 256\n\
         [workload]\nbase_ops = 200000.0\n\
         [[failures]]\nkind = \"degrade\"\ninstance = 1\nat_s = 1200.0\nprecursor_s = 300.0\nduration_s = 600.0\n",
    )
    .expect("parses");
    let settings = "[failure]\nmax_load = 200000.0\n[load]\ncapacity = 35000.0\n";
    let predictive = wasm(&scenario, artifacts::PREDICTIVE, settings);
    let fixed = wasm(&scenario, artifacts::STATIC, "");
    assert!(
        predictive.requests_failed <= 0.01 * fixed.requests_failed,
        "failed: predictive {}, static {}\n{predictive}",
        predictive.requests_failed,
        fixed.requests_failed
    );
    let crash = predictive
        .down_events
        .iter()
        .find(|e| e.instance == 1)
        .expect("instance 1 goes down");
    assert!(
        crash.lead_s.is_some_and(|l| l >= 30.0),
        "evacuated too late: {crash:?}"
    );
}

#[test]
fn predictive_told_the_season_brings_the_standby_in_before_each_peak() {
    // The fleet model (MSTL over the fleet's total, refitted as each minute closes) sees
    // the next afternoon coming once two days are in its history; without the season the
    // same policy reacts to each peak as it rises and lets the standby go each night.
    let scenario = Scenario::parse(scenarios::SEASONAL_PEAKS).expect("parses");
    let told = wasm(
        &scenario,
        artifacts::PREDICTIVE,
        scenarios::SEASONAL_SETTINGS,
    );
    let untold_settings = scenarios::SEASONAL_SETTINGS.replace("seasons_ticks = [1200]", "");
    assert_ne!(untold_settings, scenarios::SEASONAL_SETTINGS);
    let untold = wasm(&scenario, artifacts::PREDICTIVE, &untold_settings);
    let threshold = wasm(&scenario, artifacts::THRESHOLD, "");
    assert!(
        told.slo_violation_s <= 0.6 * untold.slo_violation_s,
        "violation: with the season {} s, without {} s",
        told.slo_violation_s,
        untold.slo_violation_s
    );
    assert!(
        told.moves + told.drain_moves < untold.moves + untold.drain_moves,
        "moves: with the season {}+{}, without {}+{}",
        told.moves,
        told.drain_moves,
        untold.moves,
        untold.drain_moves
    );
    assert!(
        told.slo_violation_s <= 0.3 * threshold.slo_violation_s,
        "violation: predictive {} s, threshold {} s",
        told.slo_violation_s,
        threshold.slo_violation_s
    );
}

#[test]
fn predictive_scores_each_session_and_foresees_those_that_leave() {
    // Sessions fade out over two minutes before they disconnect, and new ones connect in
    // their place; steady, bursty and idle (batch) sessions that stay are the negatives.
    let scenario = Scenario::parse(scenarios::SESSION_CHURN).expect("parses");
    let report = wasm(&scenario, artifacts::PREDICTIVE, "");
    assert!(report.sessions_left > 100, "{report}");
    let (precision, recall) = (
        report.churn_precision.expect("positive churn predictions"),
        report.churn_recall.expect("sessions left"),
    );
    assert!(
        precision >= 0.9 && recall >= 0.9,
        "churn prediction precision {precision:.2}, recall {recall:.2}\n{report}"
    );
}

//! Every standard scenario checks a property of `static` and `threshold`, natively.

use shardcast_policy_static::Static;
use shardcast_policy_threshold::Threshold;
use shardcast_sdk::testing::{Report, Scenario, run_native, scenarios};

fn both(text: &str) -> (Report, Report) {
    let scenario = Scenario::parse(text).expect("shipped scenario parses");
    let s = run_native(&scenario, Static, "").expect("static runs");
    let t = run_native(&scenario, Threshold::default(), "").expect("threshold runs");
    (s, t)
}

#[test]
fn diurnal_tenants_threshold_follows_the_hot_tenants() {
    let (s, t) = both(scenarios::DIURNAL_TENANTS);
    assert_eq!(s.moves, 0);
    assert!(t.moves > 0, "{t}");
    assert!(
        t.first_move_s.expect("moved") >= 300.0,
        "not before the first hot tenant: {t}"
    );
    assert!(
        t.slo_violation_s < s.slo_violation_s,
        "static {s}\nthreshold {t}"
    );
}

#[test]
fn flash_crowd_static_violates_and_threshold_reacts_after_the_ramp() {
    let (s, t) = both(scenarios::FLASH_CROWD);
    assert!(
        s.slo_violation_s >= 600.0,
        "static violates the SLO for long: {s}"
    );
    assert!(s.requests_failed > 0.0, "{s}");
    let first = t.first_move_s.expect("threshold moves");
    assert!(
        first >= 600.0,
        "moves after the ramp starts, not before: {first}"
    );
    assert!(
        t.slo_violation_s * 2.0 < s.slo_violation_s,
        "static {s}\nthreshold {t}"
    );
    assert_eq!(t.requests_failed, 0.0, "{t}");
}

#[test]
fn false_alarm_costs_threshold_moves_that_static_never_needed() {
    let (s, t) = both(scenarios::FALSE_ALARM);
    assert_eq!(
        s.slo_violation_s, 0.0,
        "the ramp that never comes stays within the SLO: {s}"
    );
    assert_eq!(s.moves, 0);
    assert!(
        t.moves > 0,
        "threshold reacts to the start of the ramp: {t}"
    );
    assert!(t.first_move_s.expect("moved") >= 600.0);
}

#[test]
fn moving_hotspot_static_stays_imbalanced_threshold_chases_it() {
    let (s, t) = both(scenarios::MOVING_HOTSPOT);
    assert!(s.peak_imbalance > 2.0, "{s}");
    assert!(
        t.moves > 0 && t.mean_imbalance < s.mean_imbalance,
        "static {s}\nthreshold {t}"
    );
    assert!(t.slo_violation_s < s.slo_violation_s);
}

#[test]
fn degrade_crash_neither_reactive_policy_evacuates_in_time() {
    let (s, t) = both(scenarios::DEGRADE_CRASH);
    for r in [&s, &t] {
        assert_eq!(r.down_events.len(), 1, "{r}");
        assert_eq!(
            r.down_events[0].lead_s, None,
            "no evacuation before the crash: {r}"
        );
        assert!(r.requests_failed > 0.0 && r.writes_lost > 0.0, "{r}");
        assert_eq!(
            r.prediction_recall,
            Some(0.0),
            "no failure was predicted: {r}"
        );
    }
    assert_eq!(
        s.requests_failed, t.requests_failed,
        "load-only reaction changes nothing"
    );
}

#[test]
fn rolling_restart_fails_requests_without_evacuation_but_loses_nothing() {
    let (s, t) = both(scenarios::ROLLING_RESTART);
    for r in [&s, &t] {
        assert_eq!(r.down_events.len(), 4, "{r}");
        assert!(r.requests_failed > 0.0, "{r}");
        assert_eq!(
            r.writes_lost, 0.0,
            "planned restarts lose no acknowledged write: {r}"
        );
        assert!(r.down_events.iter().all(|e| e.lead_s.is_none()));
    }
}

#[test]
fn reports_are_deterministic_for_a_seed() {
    let scenario = Scenario::parse(scenarios::MOVING_HOTSPOT).expect("parses");
    let a = run_native(&scenario, Threshold::default(), "").expect("runs");
    let b = run_native(&scenario, Threshold::default(), "").expect("runs");
    assert!(a.differences(&b).is_empty(), "{:?}", a.differences(&b));
    let mut other = scenario.clone();
    other.seed += 1;
    let c = run_native(&other, Threshold::default(), "").expect("runs");
    assert_ne!(a.requests_served, c.requests_served, "the seed matters");
}

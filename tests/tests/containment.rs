//! Containment of hostile policies in the engine, with real compiled components: no
//! blocking call, a hand-over the old version cannot veto, a forced swap, output and plans
//! that stay within bounds.

use shardcast::engine::{ChurnLimits, Error, FaultKind, PolicyEngine, TickReport};
use shardcast_sdk::types::{Action, InstanceState};
use shardcast_sdk::view::ViewSnapshot;
use shardcast_tests::{artifacts, component, engine_with, runtime};

fn view(tick: u64) -> ViewSnapshot {
    let mut v = ViewSnapshot::synthetic(4, 64, 2, 8);
    v.instances[3].state = InstanceState::Standby;
    v.tick = tick;
    v.reindex();
    v
}

fn hostile(mode: &str) -> String {
    format!("mode = \"{mode}\"")
}

fn counted(report: &TickReport) -> Option<f64> {
    report.predictions.load.first().map(|f| f.expected)
}

#[test]
fn a_sleep_in_plan_is_a_fault_not_a_stalled_tick() {
    let mut engine = engine_with(artifacts::HOSTILE, &hostile("sleep"));
    for tick in 0..2 {
        let report = engine.tick(view(tick));
        assert_eq!(report.faults.len(), 1, "{:?}", report.faults);
        assert!(
            report.faults[0].contains("blocking-call in plan()")
                && report.faults[0].contains("may not block"),
            "{}",
            report.faults[0]
        );
    }
    let status = engine.planner_handle().status();
    assert_eq!(status.faults.get(&FaultKind::Blocking), Some(&2));
}

#[test]
fn a_sleep_in_configure_refuses_the_candidate() {
    let mut engine = PolicyEngine::new(runtime(), ChurnLimits::default());
    let err = engine
        .load_policy(&component(artifacts::HOSTILE), &hostile("sleep-configure"))
        .expect_err("a policy that sleeps in configure is refused");
    match &err {
        Error::Fault(f) => {
            assert_eq!(f.kind, FaultKind::Blocking, "{err}");
            assert_eq!(f.call, "configure", "{err}");
        }
        other => panic!("expected a fault, got {other}"),
    }
}

/// Settings of a hostile snapshot `mode`, with time enough to fill 96 MiB for
/// `snapshot-huge` (so that the size bound is what stops it).
fn snapshot_settings(mode: &str) -> String {
    format!(
        "{}\n[limits]\nmemory_mib = 256\ndeadline_ms = {}\n",
        hostile(mode),
        if mode == "snapshot-huge" { 5000 } else { 50 }
    )
}

#[test]
fn a_failed_checkpoint_gives_nothing_and_the_running_version_goes_on() {
    for mode in ["snapshot-huge", "snapshot-spin"] {
        let mut engine = engine_with(artifacts::HOSTILE, &snapshot_settings(mode));
        let handle = engine.planner_handle();
        assert!(engine.tick(view(0)).faults.is_empty(), "{mode}");
        handle.ask_checkpoint();
        let report = engine.tick(view(1));
        assert!(handle.take_checkpoint().is_none(), "{mode}: no checkpoint");
        assert!(report.faults.is_empty(), "{mode}: {:?}", report.faults);
        assert!(
            report
                .planner
                .as_deref()
                .is_some_and(|p| p.starts_with("hostile@")),
            "{mode}: the running version answered the tick: {:?}",
            report.planner
        );
        let status = handle.status();
        assert!(
            status.faults.is_empty() && !status.disabled && status.rollbacks == 0,
            "{mode}: not counted as a fault: {status:?}"
        );
    }
}

#[test]
fn a_failed_hand_over_starts_the_successor_fresh() {
    for mode in ["snapshot-garbage", "snapshot-huge", "snapshot-spin"] {
        let mut engine = engine_with(artifacts::HOSTILE, &snapshot_settings(mode));
        let handle = engine.planner_handle();
        assert!(engine.tick(view(0)).faults.is_empty(), "{mode}");
        handle
            .propose(&component(artifacts::COUNTER), "")
            .expect("counter loads");
        let report = engine.tick(view(1));
        assert!(
            report
                .planner
                .as_deref()
                .is_some_and(|p| p.starts_with("counter@")),
            "{mode}: the operator's choice runs: {:?}",
            report.planner
        );
        assert_eq!(
            counted(&report),
            Some(1.0),
            "{mode}: the successor starts fresh"
        );
        let status = handle.status();
        assert_eq!(status.fresh_starts, 1, "{mode}");
        let why = status.last_handover_error.clone().unwrap_or_default();
        let expected = match mode {
            "snapshot-garbage" => "refused its predecessor's state",
            "snapshot-huge" => "limit of 16 MiB",
            _ => "timeout in snapshot()",
        };
        assert!(why.contains(expected), "{mode}: {why}");
    }
}

#[test]
fn a_forced_swap_asks_the_running_version_for_nothing() {
    let mut engine = engine_with(artifacts::COUNTER, "");
    let handle = engine.planner_handle();
    for tick in 0..3 {
        engine.tick(view(tick));
    }
    handle
        .force(&component(artifacts::COUNTER), "")
        .expect("counter loads");
    let report = engine.tick(view(3));
    assert_eq!(counted(&report), Some(1.0), "fresh state, no hand-over");
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    assert_eq!(handle.status().fresh_starts, 0, "no hand-over was tried");
    assert_eq!(handle.status().swaps, 2);
}

#[test]
fn a_plan_that_moves_onto_an_instance_and_drains_it_keeps_only_the_move() {
    let mut engine = engine_with(artifacts::HOSTILE, &hostile("drain-target"));
    let report = engine.tick(view(0));
    assert_eq!(report.accepted.len(), 1, "{:?}", report.accepted);
    assert!(matches!(report.accepted[0], Action::MoveSegment(_)));
    assert_eq!(report.rejected.len(), 1, "{:?}", report.rejected);
    assert!(
        report.rejected[0]
            .message
            .contains("target of an earlier action"),
        "{}",
        report.rejected[0].message
    );
}

#[test]
fn a_split_storm_is_held_to_the_reshape_budget() {
    let mut engine = engine_with(artifacts::HOSTILE, &hostile("split-storm"));
    let budget = ChurnLimits::default().reshapes_per_window as usize;
    let mut accepted = 0;
    for tick in 0..5 {
        let report = engine.tick(view(tick));
        assert!(report.faults.is_empty(), "{:?}", report.faults);
        accepted += report.accepted.len();
    }
    assert_eq!(
        accepted, budget,
        "within one window, the budget and no more"
    );
}

#[test]
fn what_a_policy_says_of_itself_is_cleaned_and_cut() {
    let mut engine = PolicyEngine::new(runtime(), ChurnLimits::default());
    let version = engine
        .load_planner(&component(artifacts::IMPOSTOR), "")
        .expect("the impostor loads");
    let label = version.label();
    assert!(!label.chars().any(char::is_control), "{label:?}");
    assert!(label.starts_with("impostor\\n2026"), "{label}");
    assert!(label.len() < 400, "{} bytes", label.len());
    assert!(version.info.summary.len() < 400);
}

#[test]
fn a_fault_in_describe_names_the_component_and_the_timeout() {
    let mut engine = PolicyEngine::new(runtime(), ChurnLimits::default());
    let err = engine
        .load_planner(&component(artifacts::STUCK_DESCRIBE), "")
        .expect_err("describe never returns");
    let text = err.to_string();
    assert!(text.contains("timeout in describe()"), "{text}");
    assert!(text.contains("component sha256:"), "{text}");
    assert!(!text.contains("unnamed@?"), "{text}");
}

#[test]
fn a_trap_says_wasm_trap_once() {
    let mut engine = engine_with(artifacts::HOSTILE, &hostile("recurse"));
    let report = engine.tick(view(0));
    assert_eq!(report.faults.len(), 1, "{:?}", report.faults);
    let fault = &report.faults[0];
    assert!(fault.contains("trap in plan()"), "{fault}");
    assert_eq!(fault.matches("wasm trap").count(), 1, "{fault}");
}

#[test]
fn absurd_forecasts_name_the_bound_they_break() {
    for (mode, expected) in [
        ("inverted-interval", "low 2 above high 0"),
        ("overconfident", "confidence 1.5 outside (0, 1)"),
        ("impossible-risk", "probability 1.5 outside [0, 1]"),
        ("impossible-churn", "churn 1.5 outside [0, 1]"),
        (
            "ghost-session",
            "session 18446744073709551615, which does not exist",
        ),
    ] {
        let mut engine = engine_with(artifacts::HOSTILE, &hostile(mode));
        let report = engine.tick(view(0));
        assert_eq!(report.faults.len(), 1, "{mode}: {:?}", report.faults);
        assert!(
            report.faults[0].contains("absurd-output in predict()")
                && report.faults[0].contains(expected),
            "{mode}: {}",
            report.faults[0]
        );
    }
}

#[test]
fn a_state_that_makes_the_successor_fault_cannot_bring_the_predecessor_back() {
    // A hostile successor takes the poisoned state, and panics at its first call.
    let mut engine = engine_with(artifacts::HOSTILE, &hostile("snapshot-poison"));
    let handle = engine.planner_handle();
    assert!(engine.tick(view(0)).faults.is_empty());
    handle
        .propose(&component(artifacts::HOSTILE), &hostile("invalid"))
        .expect("loads");
    let report = engine.tick(view(1));
    assert_eq!(report.faults.len(), 1, "{:?}", report.faults);
    assert!(
        report.faults[0].contains("trap in predict()"),
        "{:?}",
        report.faults
    );
    let status = handle.status();
    assert_eq!(status.rollbacks, 0, "the predecessor did not get back in");
    assert_eq!(status.fresh_starts, 1);
    // Restarted fresh, the successor answered that same tick as itself: `invalid` plans
    // five actions, the predecessor none.
    assert_eq!(
        report.accepted.len() + report.rejected.len(),
        5,
        "{report:?}"
    );
}

#[test]
fn a_forced_swap_stays_forced_and_its_predecessor_returns_only_by_rollback() {
    let mut engine = engine_with(artifacts::COUNTER, "");
    let handle = engine.planner_handle();
    for tick in 0..3 {
        engine.tick(view(tick));
    }
    // A forced candidate, then an ordinary one before the next tick: still no hand-over.
    handle
        .force(&component(artifacts::HOSTILE), &hostile("calm"))
        .expect("loads");
    handle
        .propose(&component(artifacts::HOSTILE), &hostile("panic"))
        .expect("loads");
    let report = engine.tick(view(3));
    assert_eq!(report.faults.len(), 1, "{:?}", report.faults);
    let status = handle.status();
    assert_eq!(status.fresh_starts, 0, "no hand-over was tried");
    assert_eq!(
        status.rollbacks, 0,
        "the version the operator forced out does not come back on a fault"
    );
    assert!(report.predictions.load.is_empty(), "counter did not answer");
    handle.rollback();
    let report = engine.tick(view(4));
    assert!(
        report
            .planner
            .as_deref()
            .is_some_and(|p| p.starts_with("counter@")),
        "the operator's rollback brings it back: {:?}",
        report.planner
    );
}

#[test]
fn no_single_wasi_call_makes_the_host_work_without_bound() {
    for (mode, expected) in [
        ("big-write", "more than the 65536 permitted"),
        ("random-flood", "exceeds limit"),
        ("resource-flood", "trap in plan()"),
    ] {
        let mut engine = engine_with(artifacts::HOSTILE, &hostile(mode));
        let report = engine.tick(view(0));
        assert_eq!(report.faults.len(), 1, "{mode}: {:?}", report.faults);
        assert!(
            report.faults[0].contains("trap in plan()") && report.faults[0].contains(expected),
            "{mode}: {}",
            report.faults[0]
        );
        assert!(report.accepted.is_empty() && report.rejected.is_empty());
    }
}

/// A shadow candidate that spins, panics, floods or acts changes nothing the active
/// policy does: the active version answers every tick with no fault, the report handed to
/// the executor is produced before the shadow runs and never holds the shadow's actions,
/// and the shadow's faults are counted on the shadow alone.
#[test]
fn a_hostile_shadow_neither_delays_nor_steers_the_active_policy() {
    for mode in ["spin", "panic", "flood", "memory-bomb", "drain-target"] {
        let mut engine = engine_with(artifacts::COUNTER, "");
        let handle = engine.planner_handle();
        let candidate = handle
            .prepare(&component(artifacts::HOSTILE), &hostile(mode))
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let shadow = engine.shadow_handle();
        shadow.run(candidate);
        let mut shadow_actions = 0;
        let mut shadow_faults = 0;
        for tick in 0..3 {
            let report = engine.tick(view(tick));
            assert!(report.faults.is_empty(), "{mode}: {:?}", report.faults);
            assert!(report.accepted.is_empty(), "{mode}: {:?}", report.accepted);
            assert_eq!(
                counted(&report),
                Some(tick as f64 + 1.0),
                "{mode}: the active version answered"
            );
            // The report exists before the shadow has run this tick.
            assert_eq!(shadow.status().ticks, tick, "{mode}");
            let ran = engine
                .shadow_tick()
                .unwrap_or_else(|| panic!("{mode}: the shadow ran"));
            shadow_actions += ran.accepted.len();
            shadow_faults += ran.faults.len();
        }
        let status = shadow.status();
        assert_eq!(status.ticks, 3, "{mode}");
        if mode == "drain-target" {
            assert!(
                shadow_actions > 0,
                "{mode}: the shadow acted (and nothing executed it)"
            );
        } else {
            assert!(
                shadow_faults > 0 && status.faulted_ticks > 0,
                "{mode}: {status:?}"
            );
        }
        assert!(
            handle.status().faults.is_empty(),
            "{mode}: the active version counts no fault: {:?}",
            handle.status().faults
        );
    }
}

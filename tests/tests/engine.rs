//! The policy engine with real compiled components: decisions, containment of hostile
//! policies, world checks and bad input.

use shardcast::engine::{ChurnLimits, Error, FaultKind, PolicyEngine, Role};
use shardcast_sdk::types::{InstanceState, RejectionReason};
use shardcast_sdk::view::ViewSnapshot;
use shardcast_tests::fixture::{cases, render};
use shardcast_tests::{artifacts, component, engine_with, runtime};

fn view(tick: u64) -> ViewSnapshot {
    let mut v = ViewSnapshot::synthetic(4, 64, 2, 8);
    v.instances[3].state = InstanceState::Standby;
    v.tick = tick;
    v.reindex();
    v
}

#[test]
fn shipped_policies_decide_as_the_fixtures_say_natively_and_in_wasm() {
    for case in cases() {
        let native = match case.policy.as_str() {
            "threshold" => case.run_native(shardcast_policy_threshold::Threshold::default()),
            "static" => case.run_native(shardcast_policy_static::Static),
            other => panic!("unknown policy {other}"),
        };
        let path = match case.policy.as_str() {
            "threshold" => artifacts::THRESHOLD,
            _ => artifacts::STATIC,
        };
        let mut engine = PolicyEngine::new(runtime(), ChurnLimits::default());
        engine
            .load_policy(&component(path), &case.settings)
            .expect("loads");
        let mut wasm = Vec::new();
        for tick in 1..=case.ticks {
            let report = engine.tick(case.view(tick));
            assert!(
                report.faults.is_empty(),
                "{}: {:?}",
                case.name,
                report.faults
            );
            assert!(
                report.rejected.is_empty(),
                "{}: {:?}",
                case.name,
                report.rejected
            );
            wasm = render(&report.accepted);
        }
        assert_eq!(native, case.expect, "native: {}", case.name);
        assert_eq!(wasm, case.expect, "wasm: {}", case.name);
    }
}

fn hostile(mode: &str) -> PolicyEngine {
    engine_with(artifacts::HOSTILE, &format!("mode = \"{mode}\""))
}

/// Run `ticks` ticks and return the kinds of the faults each produced.
fn fault_kinds(engine: &mut PolicyEngine, ticks: u64) -> Vec<Vec<String>> {
    (0..ticks).map(|t| engine.tick(view(t)).faults).collect()
}

#[test]
fn infinite_loop_times_out_and_the_host_keeps_ticking() {
    let mut engine = hostile("spin");
    let faults = fault_kinds(&mut engine, 2);
    for tick in &faults {
        assert_eq!(tick.len(), 1, "{faults:?}");
        assert!(tick[0].contains("timeout in plan()"), "{}", tick[0]);
        assert!(
            tick[0].contains("hostile@0.1.0"),
            "names the policy: {}",
            tick[0]
        );
        assert!(tick[0].contains("deadline of 50 ms"), "{}", tick[0]);
    }
    let status = engine.planner_handle().status();
    assert_eq!(status.faults.get(&FaultKind::Timeout), Some(&2));
}

#[test]
fn a_raised_deadline_is_honoured() {
    let mut engine = engine_with(
        artifacts::HOSTILE,
        "mode = \"spin\"\n[limits]\ndeadline_ms = 120",
    );
    let faults = engine.tick(view(0)).faults;
    assert!(faults[0].contains("deadline of 120 ms"), "{faults:?}");
}

#[test]
fn memory_bomb_hits_the_cap_and_is_contained() {
    // A generous deadline, so that only the memory cap can stop it on a loaded machine.
    let mut engine = engine_with(
        artifacts::HOSTILE,
        "mode = \"memory-bomb\"\n[limits]\ndeadline_ms = 5000",
    );
    let faults = fault_kinds(&mut engine, 2);
    for tick in &faults {
        assert!(tick[0].contains("memory-limit in plan()"), "{}", tick[0]);
        assert!(tick[0].contains("64 MiB"), "{}", tick[0]);
    }
    // A smaller cap is enforced as well.
    let mut engine = engine_with(
        artifacts::HOSTILE,
        "mode = \"memory-bomb\"\n[limits]\nmemory_mib = 16\ndeadline_ms = 5000",
    );
    assert!(engine.tick(view(0)).faults[0].contains("16 MiB"));
}

#[test]
fn panic_is_a_trap() {
    let mut engine = hostile("panic");
    let faults = engine.tick(view(0)).faults;
    assert!(faults[0].contains("trap in plan()"), "{faults:?}");
}

#[test]
fn a_million_actions_is_absurd_output() {
    // Building a million actions takes the policy longer than the default deadline, which
    // contains it as a timeout; with time to finish, the output itself is refused.
    let mut engine = hostile("flood");
    assert_eq!(engine.tick(view(0)).faults.len(), 1);
    let mut engine = engine_with(
        artifacts::HOSTILE,
        "mode = \"flood\"\n[limits]\ndeadline_ms = 10000",
    );
    let report = engine.tick(view(0));
    assert!(
        report.faults[0].contains("absurd-output in plan()"),
        "{:?}",
        report.faults
    );
    assert!(
        report.faults[0].contains("1000000 actions"),
        "{:?}",
        report.faults
    );
    assert!(report.accepted.is_empty() && report.rejected.is_empty());
}

#[test]
fn nan_forecast_is_absurd_output() {
    let mut engine = hostile("nan");
    let report = engine.tick(view(0));
    assert!(
        report.faults[0].contains("absurd-output in predict()"),
        "{:?}",
        report.faults
    );
    assert!(report.faults[0].contains("NaN"), "{:?}", report.faults);
    assert!(
        report.predictions.load.is_empty(),
        "absurd predictions are dropped"
    );
}

#[test]
fn invalid_actions_are_rejected_with_reasons_and_shown_next_tick() {
    let mut engine = hostile("invalid");
    let report = engine.tick(view(0));
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    assert!(report.accepted.is_empty(), "{:?}", report.accepted);
    let reasons: Vec<RejectionReason> = report.rejected.iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons,
        vec![
            RejectionReason::UnknownSegment,
            RejectionReason::UnknownInstance,
            RejectionReason::TargetNotActive,
            RejectionReason::Invalid,
            RejectionReason::Duplicate,
        ]
    );
    // The policy counts the rejections it sees as its forecast of instance 0: the
    // validator's five, and one the executor added to the view (reason `busy`, across the
    // WIT boundary).
    let mut v = view(1);
    v.rejections.push(shardcast_sdk::types::Rejection {
        action: report.rejected[0].action,
        reason: RejectionReason::Busy,
        message: "executor: pinned".into(),
    });
    let next = engine.tick(v);
    assert_eq!(next.predictions.load.first().map(|f| f.expected), Some(6.0));
}

#[test]
fn sandbox_has_no_files_no_environment_and_no_network() {
    let mut engine = hostile("escape");
    let report = engine.tick(view(0));
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    assert!(
        report.accepted.is_empty() && report.rejected.is_empty(),
        "something escaped: {:?}",
        report.rejected
    );
}

#[test]
fn repeated_faults_without_fallback_disable_the_policy() {
    let mut engine = hostile("panic");
    let faults = fault_kinds(&mut engine, 5);
    let counts: Vec<usize> = faults.iter().map(Vec::len).collect();
    assert_eq!(counts, vec![1, 1, 1, 0, 0]);
    assert!(engine.planner_handle().status().disabled);
}

#[test]
fn wrong_world_is_refused_with_the_worlds_named() {
    let rt = runtime();
    let bytes = component(artifacts::FORECAST_ONLY);
    let mut engine = PolicyEngine::new(rt.clone(), ChurnLimits::default());
    let err = engine
        .load_planner(&bytes, "")
        .expect_err("a predictor cannot plan");
    assert!(matches!(err, Error::WrongWorld(_)), "{err}");
    assert!(err.to_string().contains("world `predictor`"), "{err}");
    let version = engine
        .load_predictor(&bytes, "")
        .expect("a predictor can predict");
    assert_eq!(version.world.name(), "predictor");
    assert!(version.world.serves(Role::Predictor) && !version.world.serves(Role::Planner));
}

#[test]
fn malformed_components_are_refused() {
    let mut engine = PolicyEngine::new(runtime(), ChurnLimits::default());
    let err = engine
        .load_policy(b"definitely not wasm", "")
        .expect_err("garbage");
    assert!(matches!(err, Error::Malformed(_)), "{err}");
    let core_module = wat::parse_str("(module)").expect("wat");
    let err = engine
        .load_policy(&core_module, "")
        .expect_err("a core module is not a component");
    assert!(matches!(err, Error::Malformed(_)), "{err}");
    let mut truncated = component(artifacts::THRESHOLD);
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        engine.load_policy(&truncated, ""),
        Err(Error::Malformed(_))
    ));
    let foreign = wat::parse_str(r#"(component (import "acme:net/socket" (func)))"#).expect("wat");
    let err = engine
        .load_policy(&foreign, "")
        .expect_err("unknown import");
    assert!(matches!(err, Error::Link(_)), "{err}");
    assert!(err.to_string().contains("acme:net/socket"), "{err}");
    let empty = wat::parse_str("(component)").expect("wat");
    assert!(matches!(
        engine.load_policy(&empty, ""),
        Err(Error::WrongWorld(_))
    ));
}

#[test]
fn bad_settings_are_refused_naming_the_key() {
    let mut engine = PolicyEngine::new(runtime(), ChurnLimits::default());
    let bytes = component(artifacts::THRESHOLD);
    for (settings, needle) in [
        ("high = -5.0", "`high`"),
        ("hgih = 5.0", "hgih"),
        ("high = ", "not valid TOML"),
        ("[limits]\ndeadline_ms = 999999", "deadline_ms"),
    ] {
        let err = engine.load_policy(&bytes, settings).expect_err(settings);
        assert!(matches!(err, Error::Settings(_)), "{settings}: {err}");
        assert!(err.to_string().contains(needle), "{settings}: {err}");
    }
    let err = engine
        .load_policy(&component(artifacts::HOSTILE), "mode = \"bogus\"")
        .expect_err("unknown mode");
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[test]
fn deterministic_runtimes_fix_the_clock_and_the_seed() {
    use shardcast::engine::{Determinism, Runtime, RuntimeOptions};
    let forecast = |determinism: Option<Determinism>| {
        let rt = Runtime::new(RuntimeOptions {
            deterministic: determinism,
            ..RuntimeOptions::default()
        })
        .expect("runtime");
        let mut engine = PolicyEngine::new(rt, ChurnLimits::default());
        engine
            .load_policy(&component(artifacts::HOSTILE), "mode = \"entropy\"")
            .expect("loads");
        let f = engine.tick(view(0)).predictions.load[0];
        (f.expected, f.high)
    };
    let fixed = Some(Determinism {
        clock_ms: 1_234_567,
        seed: 42,
    });
    let (clock, random) = forecast(fixed);
    assert_eq!(clock, 1_234_567.0, "the policy sees the configured clock");
    assert_eq!(forecast(fixed), (clock, random), "same seed, same numbers");
    let other_seed = forecast(Some(Determinism {
        clock_ms: 1_234_567,
        seed: 43,
    }));
    assert_ne!(
        other_seed.1, random,
        "the seed drives the policy's randomness"
    );
    let (live_clock, _) = forecast(None);
    assert!(
        live_clock > 1.6e12,
        "without determinism the real clock shows: {live_clock}"
    );
}

//! `shardcast policy check` and `policy bench` on real components.

use clap::Parser;
use shardcast::cli::{Cli, run};
use shardcast_tests::artifacts;

fn shardcast(args: &[&str]) -> anyhow::Result<String> {
    let argv = std::iter::once("shardcast").chain(args.iter().copied());
    run(Cli::try_parse_from(argv)?)
}

#[test]
fn check_prints_identity_world_and_limits() {
    let out = shardcast(&["policy", "check", artifacts::THRESHOLD]).expect("threshold checks");
    for needle in [
        "name      threshold",
        "world     policy (serves: predictor, planner)",
        "limits    deadline 50 ms, memory 64 MiB",
        "ok",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let out =
        shardcast(&["policy", "check", artifacts::FORECAST_ONLY]).expect("a predictor checks");
    assert!(
        out.contains("world     predictor (serves: predictor)"),
        "{out}"
    );
}

#[test]
fn check_applies_settings_and_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "high = 900.0\nlow = 100.0\n[limits]\ndeadline_ms = 250\nmemory_mib = 32\n",
    )
    .expect("write");
    let out = shardcast(&[
        "policy",
        "check",
        artifacts::THRESHOLD,
        "--settings",
        good.to_str().expect("utf-8"),
    ])
    .expect("checks");
    assert!(out.contains("deadline 250 ms, memory 32 MiB"), "{out}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "high = 10.0\nlow = 20.0\n").expect("write");
    let err = shardcast(&[
        "policy",
        "check",
        artifacts::THRESHOLD,
        "--settings",
        bad.to_str().expect("utf-8"),
    ])
    .expect_err("low above high");
    assert!(format!("{err:#}").contains("`low`"), "{err:#}");
}

#[test]
fn check_names_the_problem_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm but not really").expect("write");
    let err = shardcast(&["policy", "check", junk.to_str().expect("utf-8")]).expect_err("junk");
    let text = format!("{err:#}");
    assert!(
        text.contains("junk.wasm") && text.contains("not a valid WebAssembly component"),
        "{text}"
    );
    assert!(!text.contains('\n'), "one line: {text}");
    let err = shardcast(&["policy", "check", "/nonexistent/policy.wasm"]).expect_err("missing");
    assert!(
        format!("{err:#}").contains("cannot read policy file /nonexistent/policy.wasm"),
        "{err:#}"
    );
    let err = shardcast(&[
        "policy",
        "check",
        artifacts::HOSTILE,
        "--settings",
        "/nonexistent.toml",
    ])
    .expect_err("missing settings");
    assert!(
        format!("{err:#}").contains("cannot read settings file"),
        "{err:#}"
    );
}

#[test]
fn bench_reports_wasm_and_native_for_shipped_policies() {
    let out = shardcast(&[
        "policy",
        "bench",
        artifacts::THRESHOLD,
        "--segments",
        "256",
        "--instances",
        "4",
        "--ticks",
        "20",
    ])
    .expect("bench runs");
    for needle in ["wasm    mean", "native  mean", "ratio   wasm/native"] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let out = shardcast(&[
        "policy",
        "bench",
        artifacts::COUNTER,
        "--segments",
        "16",
        "--instances",
        "2",
        "--ticks",
        "5",
    ])
    .expect("bench runs");
    assert!(out.contains("native  not linked in"), "{out}");
}

/// `policy check` of the hostile policy in `mode`; the error text when it fails.
fn check_hostile(mode: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = dir.path().join("hostile.toml");
    std::fs::write(&settings, format!("mode = \"{mode}\"\n")).expect("write");
    shardcast(&[
        "policy",
        "check",
        artifacts::HOSTILE,
        "--settings",
        settings.to_str().expect("utf-8"),
    ])
    .map_err(|e| format!("{e:#}"))
}

#[test]
fn check_runs_the_engines_own_containment_and_validation() {
    for (mode, expected) in [
        ("inverted-interval", "low 2 above high 0"),
        ("overconfident", "confidence 1.5 outside (0, 1)"),
        ("impossible-risk", "probability 1.5 outside [0, 1]"),
        ("nan", "NaN"),
        ("sleep", "blocking-call in plan()"),
        ("sleep-configure", "blocking-call in configure()"),
        ("spin", "timeout in plan()"),
        (
            "snapshot-garbage",
            "hand-over to a fresh copy of itself failed",
        ),
        ("panic", "trap in plan()"),
    ] {
        let err = check_hostile(mode).expect_err(mode);
        assert!(err.contains(expected), "{mode}: {err}");
        assert!(!err.contains('\n'), "{mode}: one line: {err}");
    }
    let out = check_hostile("calm").expect("a calm policy checks");
    assert!(out.ends_with("ok\n"), "{out}");
    let out = check_hostile("invalid").expect("rejected actions are not a fault");
    assert!(out.contains("rejected  "), "{out}");
}

#[test]
fn check_names_a_fault_in_describe() {
    let err = shardcast(&["policy", "check", artifacts::STUCK_DESCRIBE]).expect_err("stuck");
    let text = format!("{err:#}");
    assert!(text.contains("timeout in describe()"), "{text}");
    assert!(!text.contains("wrong world"), "{text}");
}

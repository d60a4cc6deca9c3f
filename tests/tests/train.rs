//! Record → train → load → evaluate, end to end: history recorded by the simulator (the
//! same format `shardcast run` writes with `[history] file`), weights fitted by `shardcast
//! train`, loaded into the compiled `predictive` policy, and evaluated on failure scenarios
//! the training never saw. And `shardcast run` records history from real redis-servers.

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use shardcast::cli::{Cli, run as cli};
use shardcast::history;
use shardcast_sdk::testing::{Report, Scenario, run, scenarios};
use shardcast_sdk::types::FailureKind;
use shardcast_tests::servers::{RedisServer, ShardcastProcess, free_port, wait_for};
use shardcast_tests::{artifacts, component};

const BIN: &str = env!("CARGO_BIN_EXE_shardcast_node");

fn shardcast(args: &[&str]) -> anyhow::Result<String> {
    cli(Cli::try_parse_from(
        std::iter::once("shardcast").chain(args.iter().copied()),
    )?)
}

fn wasm(scenario: &Scenario, path: &str, settings: &str) -> Report {
    let mut runner = shardcast::simulate::WasmRunner::load(scenario, &component(path), settings)
        .expect("the component loads");
    run(scenario, &mut runner)
}

fn training(name: &str) -> String {
    format!(
        "{}/../guest-sdk/scenarios/training/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn record_train_load_and_evaluate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = Vec::new();
    for name in ["train-a", "train-b"] {
        let out = dir.path().join(format!("{name}.csv"));
        shardcast(&[
            "sim",
            "--scenario",
            &training(name),
            "--policy",
            artifacts::STATIC,
            "--history",
            out.to_str().expect("utf-8 path"),
        ])
        .expect("the simulator records history");
        let rows = history::read(&out).expect("the history reads back");
        let crashes = rows
            .iter()
            .filter(|r| r.failure == Some(FailureKind::Crash))
            .count();
        assert_eq!(crashes, 4, "{name}: four instances crash in it");
        args.push("--history".to_owned());
        args.push(out.display().to_string());
    }
    let weights = dir.path().join("weights.toml");
    let mut train = vec!["train".to_owned(), "--out".to_owned()];
    train.push(weights.display().to_string());
    train.extend(args);
    let printed = shardcast(&train.iter().map(String::as_str).collect::<Vec<_>>())
        .expect("training succeeds");
    for line in ["held out", "precision", "recall", "lead", "default weights"] {
        assert!(printed.contains(line), "no `{line}` in:\n{printed}");
    }
    let settings = std::fs::read_to_string(&weights).expect("settings written");
    let table: toml::Table = toml::from_str(&settings).expect("settings are TOML");
    let failure = table["failure"].as_table().expect("a [failure] table");
    assert_eq!(failure["weights"].as_array().map(Vec::len), Some(9));

    // Loaded into the compiled policy, on scenarios the training never saw.
    for text in [scenarios::DEGRADE_CRASH, scenarios::SHORT_WARNING] {
        let scenario = Scenario::parse(text).expect("parses");
        let trained = wasm(&scenario, artifacts::PREDICTIVE, &settings);
        let fixed = wasm(&scenario, artifacts::STATIC, "");
        assert!(
            trained.requests_failed <= 0.01 * fixed.requests_failed,
            "{}: trained weights fail {} requests, static {}\n{printed}",
            scenario.name,
            trained.requests_failed,
            fixed.requests_failed
        );
        for event in &trained.down_events {
            assert!(
                event.lead_s.unwrap_or(0.0) >= 30.0,
                "{}: evacuated too late: {event:?}\n{printed}",
                scenario.name
            );
        }
        assert!(
            trained.prediction_precision.is_some_and(|p| p >= 0.9)
                && trained.prediction_recall.is_some_and(|r| r >= 0.9),
            "{}: {trained}\n{printed}",
            scenario.name
        );
    }
}

#[test]
fn train_names_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "kind,t_ms\npoint,zero\n").expect("write");
    let out = dir.path().join("w.toml");
    let err = shardcast(&[
        "train",
        "--history",
        bad.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ])
    .expect_err("a malformed history");
    let text = format!("{err:#}");
    assert!(text.contains("bad.csv") && text.contains("row 2"), "{text}");
    let missing = dir.path().join("missing.csv");
    let err = shardcast(&[
        "train",
        "--history",
        missing.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ])
    .expect_err("a missing history");
    assert!(format!("{err:#}").contains("missing.csv"), "{err:#}");
}

#[test]
fn shardcast_run_records_history_from_real_instances() {
    let mut servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let history_file = dir.path().join("history.csv");
    let port = free_port();
    let mut config = format!(
        "listen = \"127.0.0.1:{port}\"\ntick_ms = 200\n[policy]\nfile = \"{}\"\n\
         [history]\nfile = \"{}\"\n",
        artifacts::STATIC,
        history_file.display()
    );
    for (i, s) in servers.iter().enumerate() {
        config.push_str(&format!(
            "[[instances]]\nname = \"redis-{i}\"\naddress = \"{}\"\n",
            s.address()
        ));
    }
    let config_file = dir.path().join("shardcast.toml");
    std::fs::write(&config_file, config).expect("write config");
    let mut process = ShardcastProcess::start(&[BIN], &config_file, port, &[]);
    let points = |path: &Path| {
        history::read(path)
            .map(|rows| rows.iter().filter(|r| r.kind == "point").count())
            .unwrap_or(0)
    };
    wait_for("points for both instances", Duration::from_secs(30), || {
        points(&history_file) >= 10
    });
    servers[1].kill();
    wait_for("the crash in the history", Duration::from_secs(30), || {
        history::read(&history_file).is_ok_and(|rows| {
            rows.iter()
                .any(|r| r.instance == 1 && r.failure == Some(FailureKind::Crash))
        })
    });
    process.terminate(Duration::from_secs(10));
    let rows = history::read(&history_file).expect("the history reads back");
    let names: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert!(
        names.contains("redis-0") && names.contains("redis-1"),
        "{names:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.instance == 0 && r.kind == "point" && r.ops.is_some()),
        "redis-0's points carry measured ops"
    );
    // A restart appends to the same file, without a second header.
    let before = rows.len();
    let mut again = ShardcastProcess::start(&[BIN], &config_file, port, &[]);
    wait_for(
        "more points after a restart",
        Duration::from_secs(30),
        || history::read(&history_file).is_ok_and(|r| r.len() > before + 4),
    );
    again.terminate(Duration::from_secs(10));
    let text = std::fs::read_to_string(&history_file).expect("read");
    assert_eq!(text.matches("kind,t_ms").count(), 1, "one header");
}

//! The author's path: `shardcast policy new` makes a crate for each world that passes its
//! own tests and builds to a component the engine loads; `shardcast policy dev --once`
//! builds it, runs its scenarios through the engine and compares with the last run; with
//! `--push` the build reaches a running shardcast as a shadow candidate.
//!
//! The crates are made outside this workspace, as an author would, and share one target
//! directory so that the SDK's dependencies compile once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shardcast::engine::{Role, RuntimeOptions, World};
use shardcast_tests::admin::AdminFleet;
use shardcast_tests::artifacts;
use shardcast_tests::servers::wait_for;

const BIN: &str = env!("CARGO_BIN_EXE_shardcast_node");

/// The target directory the made crates share.
fn shared_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/policy-new")
}

fn shardcast(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("CARGO_TARGET_DIR", shared_target())
        .output()
        .expect("shardcast runs");
    assert!(
        out.status.success(),
        "shardcast {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cargo(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", shared_target())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Make `name` of `world`, test it, build it, and load the component as the host would.
fn made_tested_built(parent: &Path, name: &str, world: &str) -> PathBuf {
    let dir = parent.join(name);
    let said = shardcast(&[
        "policy",
        "new",
        name,
        "--world",
        world,
        "--dir",
        &dir.display().to_string(),
    ]);
    assert!(said.contains(&format!("made {name}")), "{said}");
    cargo(&dir, &["test", "--quiet"]);
    cargo(
        &dir,
        &["build", "--quiet", "--release", "--target", "wasm32-wasip2"],
    );
    let wasm = shared_target()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let runtime = shardcast::engine::Runtime::new(RuntimeOptions::default()).expect("runtime");
    let settings = std::fs::read_to_string(dir.join("settings.toml")).expect("settings.toml");
    let bytes = std::fs::read(&wasm).expect("the component");
    let role = if world == "predictor" {
        Role::Predictor
    } else {
        Role::Planner
    };
    let (version, _live) =
        shardcast::engine::PolicyVersion::load(&runtime, &bytes, &settings, role)
            .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
    assert_eq!(version.info.name, name);
    let expected = match world {
        "planner" => World::Planner,
        "predictor" => World::Predictor,
        _ => World::Policy,
    };
    assert_eq!(version.world, expected);
    dir
}

#[test]
fn a_new_policy_of_each_world_passes_its_tests_builds_and_loads() {
    let parent = tempfile::tempdir().expect("tempdir");
    for (name, world) in [("my-forecaster", "predictor"), ("my-both", "policy")] {
        made_tested_built(parent.path(), name, world);
    }
    // Refusals that name the fix.
    let out = Command::new(BIN)
        .args(["policy", "new", "Bad Name", "--dir"])
        .arg(parent.path().join("bad"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lowercase"));
    let out = Command::new(BIN)
        .args(["policy", "new", "my-both", "--dir"])
        .arg(parent.path().join("my-both"))
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

#[test]
fn policy_dev_runs_the_scenarios_compares_runs_and_pushes_a_shadow_candidate() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = made_tested_built(parent.path(), "my-shedder", "planner");
    let dir_arg = dir.display().to_string();

    let first = shardcast(&["policy", "dev", &dir_arg, "--once"]);
    assert!(first.contains("flash-crowd"), "{first}");
    assert!(first.contains("SLO VIOLATION S"), "{first}");
    // The same build again: every simulated figure unchanged against the last run (the
    // tick time, measured on the wall clock, may differ).
    let second = shardcast(&["policy", "dev", &dir_arg, "--once"]);
    // The figure cells of a report's row: scenario, then six simulated figures, then the
    // tick time.
    let cells = |text: &str| -> Vec<String> {
        let row = text
            .lines()
            .find(|l| l.starts_with("flash-crowd"))
            .unwrap_or_else(|| panic!("{text}"));
        row.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let same = cells(&second);
    assert_eq!(same.len(), 8, "{same:?}");
    assert!(same[1..7].iter().all(|c| c.ends_with("(=)")), "{same:?}");

    // A changed setting changes the simulated figures, shown as differences.
    std::fs::write(dir.join("settings.toml"), "high = 0.95\nmax_moves = 4\n").expect("settings");
    let third = shardcast(&["policy", "dev", &dir_arg, "--once"]);
    let changed = cells(&third);
    assert!(
        changed[1..7]
            .iter()
            .any(|c| c.contains("(+") || c.contains("(-")),
        "{changed:?}"
    );

    // Without --once it watches the crate: a saved change starts another round.
    let mut watching = Command::new(BIN)
        .args(["policy", "dev", &dir_arg])
        .env("CARGO_TARGET_DIR", shared_target())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("policy dev runs");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watching.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let rounds = |n: usize| {
        let mut seen = 0;
        let until = std::time::Instant::now() + Duration::from_secs(300);
        while seen < n {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("watching ") => seen += 1,
                Ok(_) => {}
                Err(e) => panic!("policy dev did not finish round {} of {n}: {e}", seen + 1),
            }
        }
    };
    rounds(1);
    std::fs::write(dir.join("settings.toml"), "high = 0.9\nmax_moves = 2\n").expect("settings");
    rounds(1);
    let _ = watching.kill();
    let _ = watching.wait();

    // Pushed to a running shardcast: a shadow candidate beside the active policy.
    let fleet = AdminFleet::start(&[BIN], 2, artifacts::STATIC, "", "", "");
    let pushed = shardcast(&[
        "policy",
        "dev",
        &dir_arg,
        "--once",
        "--push",
        &fleet.http.base,
    ]);
    assert!(pushed.contains("run in shadow"), "{pushed}");
    wait_for("the shadow to tick", Duration::from_secs(30), || {
        fleet.http.get_json("/v1/shadow")["ticks"]
            .as_u64()
            .unwrap_or(0)
            >= 3
    });
    let shadow = fleet.http.get_json("/v1/shadow");
    assert!(
        shadow["candidate"]
            .as_str()
            .unwrap_or("")
            .starts_with("my-shedder@"),
        "{shadow}"
    );
    let policies = fleet.http.get_json("/v1/policies");
    assert!(
        policies["active"]["label"]
            .as_str()
            .unwrap_or("")
            .starts_with("static@")
    );
}

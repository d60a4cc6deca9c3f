//! `shardcast policy dev <crate dir>`: the author's loop. Build the crate to a component,
//! run its scenarios (`scenarios/*.toml`) through the real engine in the simulator, print
//! each report's key figures beside the last run's, and with `--push` send each good build
//! to a running shardcast (as a shadow candidate unless `--activate`). Then wait for a
//! change to the crate and do it again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use shardcast_sdk::testing::Scenario;

use crate::admin::client::Client;

/// What to do.
#[derive(Debug)]
pub struct Options {
    /// The policy crate.
    pub dir: PathBuf,
    /// Settings TOML (default: the crate's `settings.toml`, if any).
    pub settings: Option<PathBuf>,
    /// Push each good build to this admin API.
    pub push: Option<Client>,
    /// Activate pushed builds instead of shadowing them.
    pub activate: bool,
    /// One round, then exit (non-zero when the build or a scenario failed).
    pub once: bool,
}

/// The figures compared from run to run, per scenario.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    /// Seconds the fleet p99 was over the SLO.
    pub slo_violation_s: f64,
    /// Segment moves.
    pub moves: u64,
    /// Requests failed.
    pub requests_failed: f64,
    /// Peak imbalance (max over mean load).
    pub peak_imbalance: f64,
    /// Policy faults.
    pub faults: u64,
    /// Actions the validator refused.
    pub rejected: u64,
    /// Policy tick p99, µs.
    pub tick_p99_us: f64,
}

type Run = BTreeMap<String, Figures>;

/// Build the crate to a component; the `.wasm` path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} has no Cargo.toml: give the policy crate's directory (`shardcast policy new` makes one)",
            dir.display()
        );
    }
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo (is it on PATH?)")?;
    let artifact = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"));
    match (out.status.success(), artifact) {
        (true, Some(wasm)) => Ok(wasm),
        (true, None) => bail!(
            "the build made no .wasm: the crate needs `crate-type = [\"cdylib\", \"rlib\"]` under [lib]"
        ),
        (false, _) => bail!("the build failed (cargo's messages are above)"),
    }
}

fn figures(r: &shardcast_sdk::testing::Report) -> Figures {
    Figures {
        slo_violation_s: r.slo_violation_s,
        moves: r.moves,
        requests_failed: r.requests_failed,
        peak_imbalance: r.peak_imbalance,
        faults: r.faults,
        rejected: r.rejected,
        tick_p99_us: r.timing.p99_us,
    }
}

/// Run every scenario in `dir/scenarios`.
fn scenarios(dir: &Path, wasm: &Path, settings: &str) -> Result<Run> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("scenarios"))
        .with_context(|| {
            format!(
                "{} has no scenarios/ directory; put scenario TOML files there",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut run = Run::new();
    for file in files {
        let scenario = Scenario::load(&file)
            .map_err(|e| anyhow::anyhow!("scenario {}: {e}", file.display()))?;
        let (report, _) = super::sim::run_one(&scenario, wasm, settings)
            .with_context(|| format!("scenario {}", file.display()))?;
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        run.insert(name, figures(&report));
    }
    Ok(run)
}

/// The figures as a table, each with its change since `last`.
pub fn compare(now: &Run, last: Option<&Run>) -> String {
    let mut rows = Vec::new();
    for (name, f) in now {
        let before = last.and_then(|l| l.get(name));
        let cell = |v: f64, was: Option<f64>, digits: usize| match was {
            Some(w) if (v - w).abs() > 1e-9 => format!("{v:.digits$} ({:+.digits$})", v - w),
            Some(_) => format!("{v:.digits$} (=)"),
            None => format!("{v:.digits$}"),
        };
        rows.push(vec![
            name.clone(),
            cell(f.slo_violation_s, before.map(|b| b.slo_violation_s), 0),
            cell(f.moves as f64, before.map(|b| b.moves as f64), 0),
            cell(f.requests_failed, before.map(|b| b.requests_failed), 0),
            cell(f.peak_imbalance, before.map(|b| b.peak_imbalance), 2),
            cell(f.faults as f64, before.map(|b| b.faults as f64), 0),
            cell(f.rejected as f64, before.map(|b| b.rejected as f64), 0),
            cell(f.tick_p99_us, before.map(|b| b.tick_p99_us), 0),
        ]);
    }
    super::operate::table(
        &[
            "SCENARIO",
            "SLO VIOLATION S",
            "MOVES",
            "FAILED",
            "PEAK IMBALANCE",
            "FAULTS",
            "REJECTED",
            "TICK P99 µs",
        ],
        &rows,
    )
}

/// Where the last run's figures are kept between invocations.
fn last_file(dir: &Path) -> PathBuf {
    dir.join("target").join("shardcast-dev-last.json")
}

/// One round: build, run, compare, push. Returns what to print and whether it succeeded.
fn round(o: &Options, last: &mut Option<Run>) -> (String, bool) {
    let mut out = String::new();
    let wasm = match build(&o.dir) {
        Ok(w) => w,
        Err(e) => return (format!("{e:#}\n"), false),
    };
    let settings_file = o.settings.clone().or_else(|| {
        let f = o.dir.join("settings.toml");
        f.is_file().then_some(f)
    });
    let settings = match &settings_file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(s) => s,
            Err(e) => return (format!("cannot read {}: {e}\n", f.display()), false),
        },
        None => String::new(),
    };
    out.push_str(&format!("built {}\n", wasm.display()));
    let run = match scenarios(&o.dir, &wasm, &settings) {
        Ok(r) => r,
        Err(e) => return (format!("{out}{e:#}\n"), false),
    };
    out.push_str(&compare(&run, last.as_ref()));
    let _ = std::fs::create_dir_all(o.dir.join("target"));
    if let Ok(text) = serde_json::to_vec_pretty(&run) {
        let _ = std::fs::write(last_file(&o.dir), text);
    }
    *last = Some(run);
    if let Some(client) = &o.push {
        let pushed = super::operate::upload(client, &wasm, settings_file.as_ref()).and_then(|v| {
            let id = v["id"].as_str().unwrap_or_default().to_owned();
            let what = if o.activate { "activate" } else { "shadow" };
            client.post(&format!("/v1/policies/{id}/{what}"), None)?;
            Ok(format!(
                "pushed {} (id {id}) to {}\n",
                v["label"].as_str().unwrap_or("?"),
                if o.activate {
                    "activate"
                } else {
                    "run in shadow; `shardcast policy diff` compares it"
                }
            ))
        });
        match pushed {
            Ok(line) => out.push_str(&line),
            Err(e) => return (format!("{out}push failed: {e:#}\n"), false),
        }
    }
    (out, true)
}

/// Run the loop (or one round with `--once`).
pub fn run(o: &Options) -> Result<String> {
    let mut last: Option<Run> = std::fs::read(last_file(&o.dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if o.once {
        let (text, ok) = round(o, &mut last);
        if !ok {
            bail!("{}", text.trim_end());
        }
        return Ok(text);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if let Ok(e) = e
            && !matches!(e.kind, notify::EventKind::Access(_))
            && !e
                .paths
                .iter()
                .all(|p| p.components().any(|c| c.as_os_str() == "target"))
        {
            let _ = tx.send(());
        }
    })
    .context("cannot watch the crate for changes")?;
    use notify::Watcher as _;
    watcher
        .watch(&o.dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", o.dir.display()))?;
    loop {
        let (text, _) = round(o, &mut last);
        print!("{text}");
        println!("watching {} for changes (Ctrl-C stops)", o.dir.display());
        if rx.recv().is_err() {
            return Ok(String::new());
        }
        // Let a burst of saves settle.
        std::thread::sleep(Duration::from_millis(300));
        while rx.try_recv().is_ok() {}
    }
}

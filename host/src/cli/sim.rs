//! `shardcast sim`: scenarios in the simulator against compiled policies.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use std::sync::Arc;

use shardcast_sdk::testing::{
    Decision, Report, Runner, Scenario, Simulator, compare_table, run, svg,
};

use crate::history::Recorder;
use crate::simulate::WasmRunner;

/// Options of `shardcast sim`.
pub struct Options {
    pub scenario: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub settings: String,
    pub json: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    pub compare: Vec<String>,
    pub scenarios: Option<PathBuf>,
    pub policy_dir: PathBuf,
    pub svg_dir: Option<PathBuf>,
    pub history: Option<PathBuf>,
}

/// Run one scenario against one component; returns the report and the wall time.
pub fn run_one(scenario: &Scenario, component: &Path, settings: &str) -> Result<(Report, f64)> {
    let bytes = super::read_component(&component.to_path_buf())?;
    let mut runner = WasmRunner::load(scenario, &bytes, settings)
        .map_err(|e| anyhow!("{}: {e}", component.display()))?;
    let started = Instant::now();
    let report = run(scenario, &mut runner);
    Ok((report, started.elapsed().as_secs_f64()))
}

pub fn run_cli(o: &Options) -> Result<String> {
    if !o.compare.is_empty() {
        return compare(o);
    }
    let (Some(scenario_path), Some(policy)) = (&o.scenario, &o.policy) else {
        bail!("give --scenario and --policy, or --compare with --scenarios");
    };
    let scenario = Scenario::load(scenario_path).map_err(|e| anyhow!(e))?;
    let (report, wall) = match &o.history {
        None => run_one(&scenario, policy, &o.settings)?,
        Some(path) => {
            let bytes = super::read_component(policy)?;
            let inner = WasmRunner::load(&scenario, &bytes, &o.settings)
                .map_err(|e| anyhow!("{}: {e}", policy.display()))?;
            let mut runner = Recording {
                inner,
                recorder: Recorder::create(path)?,
                error: None,
            };
            let started = Instant::now();
            let report = run(&scenario, &mut runner);
            if let Some(e) = runner.error {
                return Err(e.context(format!("cannot record history to {}", path.display())));
            }
            (report, started.elapsed().as_secs_f64())
        }
    };
    let mut out = String::new();
    write!(out, "{report}")?;
    writeln!(
        out,
        "simulated           {} s in {:.2} s of wall time: {:.0}x faster than real time",
        scenario.duration_s,
        wall,
        scenario.duration_s as f64 / wall.max(1e-9)
    )?;
    if let Some(path) = &o.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(out, "report              {}", path.display())?;
    }
    if let Some(path) = &o.svg {
        std::fs::write(path, svg(&report).map_err(|e| anyhow!("chart: {e}"))?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(out, "chart               {}", path.display())?;
    }
    Ok(out)
}

/// A runner that records each tick's view to a history file before deciding.
struct Recording {
    inner: WasmRunner,
    recorder: Recorder,
    error: Option<anyhow::Error>,
}

impl Runner for Recording {
    fn label(&mut self) -> String {
        self.inner.label()
    }
    fn decide(&mut self, view: Arc<Simulator>) -> Decision {
        if self.error.is_none()
            && let Err(e) = self.recorder.record(&*view)
        {
            self.error = Some(e);
        }
        self.inner.decide(view)
    }
}

/// Find the component for a policy name: a path, `<dir>/<name>.wasm`, or
/// `<dir>/shardcast_policy_<name>.wasm`.
pub fn resolve(name: &str, dir: &Path) -> Result<PathBuf> {
    if name.ends_with(".wasm") || name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let stem = name.replace('-', "_");
    let tried = [
        dir.join(format!("{stem}.wasm")),
        dir.join(format!("shardcast_policy_{stem}.wasm")),
    ];
    tried.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
        anyhow!(
            "no component for policy `{name}`: tried {} and {} (build it with `cargo build --release --target wasm32-wasip2 -p shardcast-policy-{name}`, or pass --policy-dir)",
            tried[0].display(),
            tried[1].display()
        )
    })
}

fn compare(o: &Options) -> Result<String> {
    let dir = o
        .scenarios
        .as_ref()
        .ok_or_else(|| anyhow!("--compare needs --scenarios <dir>"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read scenario directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no .toml scenarios in {}", dir.display());
    }
    let policies: Vec<(String, PathBuf)> = o
        .compare
        .iter()
        .map(|name| resolve(name, &o.policy_dir).map(|p| (name.clone(), p)))
        .collect::<Result<_>>()?;
    let mut reports = Vec::new();
    for file in &files {
        let scenario = Scenario::load(file).map_err(|e| anyhow!(e))?;
        for (name, path) in &policies {
            let (report, _) = run_one(&scenario, path, "")?;
            if let Some(svg_dir) = &o.svg_dir {
                std::fs::create_dir_all(svg_dir)?;
                let out = svg_dir.join(format!("{}-{name}.svg", scenario.name));
                std::fs::write(&out, svg(&report).map_err(|e| anyhow!("chart: {e}"))?)?;
            }
            reports.push(report);
        }
    }
    Ok(compare_table(&reports))
}

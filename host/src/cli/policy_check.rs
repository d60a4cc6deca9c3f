//! `shardcast policy check`: load, type-check, configure and run a policy once.

use std::path::PathBuf;
use std::sync::Arc;

use std::fmt::Write;

use crate::engine::{PolicyVersion, Role, Runtime, RuntimeOptions, SharedView, World};
use anyhow::{Result, bail};
use shardcast_sdk::view::ViewSnapshot;

pub fn run(file: &PathBuf, settings: &str) -> Result<String> {
    let mut out = String::new();
    let bytes = super::read_component(file)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let (version, mut live) = PolicyVersion::load(&runtime, &bytes, settings, Role::Predictor)
        .or_else(|_| PolicyVersion::load(&runtime, &bytes, settings, Role::Planner))
        .or_else(|_| PolicyVersion::load(&runtime, &bytes, settings, Role::Both))
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let limits = version.limits;
    writeln!(out, "file      {}", file.display())?;
    writeln!(out, "sha256    {}", version.sha256)?;
    writeln!(out, "name      {}", version.info.name)?;
    writeln!(out, "version   {}", version.info.version)?;
    writeln!(out, "summary   {}", version.info.summary)?;
    writeln!(
        out,
        "world     {} (serves: {})",
        version.world.name(),
        match version.world {
            World::Policy => "predictor, planner",
            World::Predictor => "predictor",
            World::Planner => "planner",
        }
    )?;
    writeln!(
        out,
        "limits    deadline {} ms, memory {} MiB, max {} actions, max {} forecasts",
        limits.deadline_ms, limits.memory_mib, limits.max_actions, limits.max_forecasts
    )?;
    let view: SharedView = Arc::new(ViewSnapshot::synthetic(4, 64, 2, 8));
    let predictions = live
        .predict(view.clone())
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let actions = live
        .plan(view, &predictions)
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    if predictions.load.iter().any(|f| !f.expected.is_finite()) {
        bail!(
            "{}: predict() returned a NaN or infinite forecast on a synthetic view",
            file.display()
        );
    }
    writeln!(
        out,
        "trial     one tick on a synthetic 4-instance, 64-segment view: {} forecasts, {} actions",
        predictions.load.len() + predictions.failures.len(),
        actions.len()
    )?;
    writeln!(out, "ok")?;
    Ok(out)
}

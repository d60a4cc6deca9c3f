//! `shardcast policy check`: load a policy as the engine would and run it through the
//! engine's own containment and validation on a synthetic view.
//!
//! The world comes from the component's exports, so a fault in `describe` or `configure`
//! is reported as that fault. Two ticks run in a real [`PolicyEngine`]: the same deadline,
//! memory cap, output checks and validator as in production. Between them, the policy hands
//! its state to a fresh copy of itself, as in a hot swap. The first fault, or a failed
//! hand-over, is the error.

use std::fmt::Write;
use std::path::PathBuf;

use crate::engine::{ChurnLimits, PolicyEngine, Runtime, RuntimeOptions, World, world_of};
use anyhow::{Result, anyhow, bail};
use shardcast_sdk::view::ViewSnapshot;

pub fn run(file: &PathBuf, settings: &str) -> Result<String> {
    let mut out = String::new();
    let bytes = super::read_component(file)?;
    let at = |e: &dyn std::fmt::Display| anyhow!("{}: {e}", file.display());
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let world = world_of(&runtime, &bytes).map_err(|e| at(&e))?;
    let mut engine = PolicyEngine::new(runtime, ChurnLimits::default());
    let version = match world {
        World::Policy => engine.load_policy(&bytes, settings),
        World::Predictor => engine.load_predictor(&bytes, settings),
        World::Planner => engine.load_planner(&bytes, settings),
    }
    .map_err(|e| at(&e))?;
    let handle = match world {
        World::Predictor => engine
            .predictor_handle()
            .expect("a predictor was just loaded"),
        World::Policy | World::Planner => engine.planner_handle(),
    };
    let limits = version.limits;
    writeln!(out, "file      {}", file.display())?;
    writeln!(out, "sha256    {}", version.sha256)?;
    writeln!(out, "name      {}", version.info.name)?;
    writeln!(out, "version   {}", version.info.version)?;
    writeln!(out, "summary   {}", version.info.summary)?;
    writeln!(
        out,
        "world     {} (serves: {})",
        world.name(),
        match world {
            World::Policy => "predictor, planner",
            World::Predictor => "predictor",
            World::Planner => "planner",
        }
    )?;
    writeln!(
        out,
        "limits    deadline {} ms, memory {} MiB, max {} actions, max {} forecasts, log {} B/tick, snapshot {} MiB",
        limits.deadline_ms,
        limits.memory_mib,
        limits.max_actions,
        limits.max_forecasts,
        limits.log_bytes_per_tick,
        limits.snapshot_mib
    )?;
    let view = || ViewSnapshot::synthetic(4, 64, 2, 8);
    let first = engine.tick(view());
    if let Some(fault) = first.faults.first() {
        bail!("{}: {fault}", file.display());
    }
    writeln!(
        out,
        "trial     one tick on a synthetic 4-instance, 64-segment view: {} forecasts, {} actions accepted, {} rejected",
        first.predictions.load.len() + first.predictions.failures.len(),
        first.accepted.len(),
        first.rejected.len()
    )?;
    for r in first.rejected.iter().take(8) {
        writeln!(out, "rejected  {}", r.message)?;
    }
    handle.propose(&bytes, settings).map_err(|e| at(&e))?;
    let second = engine.tick(view());
    let status = handle.status();
    if let Some(e) = &status.last_handover_error {
        bail!(
            "{}: the state hand-over to a fresh copy of itself failed, so a hot swap would lose its state: {e}",
            file.display()
        );
    }
    if let Some(fault) = second.faults.first() {
        bail!("{}: after a state hand-over: {fault}", file.display());
    }
    writeln!(
        out,
        "hand-over snapshot and restore into a fresh copy, then a second tick: ok"
    )?;
    writeln!(out, "ok")?;
    Ok(out)
}

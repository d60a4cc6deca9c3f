//! `shardcast policy bench`: time one tick of a policy in wasm and natively.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use std::fmt::Write;

use crate::engine::{PolicyVersion, Role, Runtime, RuntimeOptions, SharedView};
use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;
use shardcast_sdk::view::ViewSnapshot;

use crate::native;

pub struct Options {
    pub file: PathBuf,
    pub settings: String,
    pub segments: usize,
    pub instances: usize,
    pub metrics: usize,
    pub points: usize,
    pub ticks: u32,
}

struct Timing {
    mean_us: f64,
    p50_us: u64,
    p99_us: u64,
}

fn time(ticks: u32, mut tick: impl FnMut() -> Result<()>) -> Result<Timing> {
    for _ in 0..(ticks / 10).max(1) {
        tick()?;
    }
    let mut hist = Histogram::<u64>::new(3).expect("valid histogram precision");
    let started = Instant::now();
    for _ in 0..ticks {
        let t = Instant::now();
        tick()?;
        hist.record(t.elapsed().as_micros() as u64)
            .expect("histogram is auto-resizing");
    }
    Ok(Timing {
        mean_us: started.elapsed().as_secs_f64() * 1e6 / f64::from(ticks.max(1)),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
    })
}

pub fn run(o: &Options) -> Result<String> {
    let mut out = String::new();
    let bytes = super::read_component(&o.file)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let (version, mut live) = PolicyVersion::load(&runtime, &bytes, &o.settings, Role::Both)
        .or_else(|_| PolicyVersion::load(&runtime, &bytes, &o.settings, Role::Planner))
        .or_else(|_| PolicyVersion::load(&runtime, &bytes, &o.settings, Role::Predictor))
        .map_err(|e| anyhow!("{}: {e}", o.file.display()))?;
    let view = Arc::new(ViewSnapshot::synthetic(
        o.instances,
        o.segments,
        o.metrics,
        o.points,
    ));
    let shared: SharedView = view.clone();
    writeln!(
        out,
        "policy {} ({}), view: {} instances x {} segments x {} metrics x {} points, {} ticks",
        version.label(),
        version.world.name(),
        o.instances,
        o.segments,
        o.metrics,
        o.points,
        o.ticks
    )?;
    let wasm = time(o.ticks, || {
        let p = live.predict(shared.clone()).map_err(|f| anyhow!("{f}"))?;
        live.plan(shared.clone(), &p).map_err(|f| anyhow!("{f}"))?;
        Ok(())
    })?;
    writeln!(
        out,
        "wasm    mean {:>9.1} us/tick   p50 {:>7} us   p99 {:>7} us",
        wasm.mean_us, wasm.p50_us, wasm.p99_us
    )?;
    match native::by_name(&version.info.name) {
        Some(mut policy) => {
            policy
                .configure(&version.settings)
                .map_err(|e| anyhow!("native configure: {e}"))?;
            let native = time(o.ticks, || {
                let p = policy.predict(&*view);
                policy.plan(&*view, &p);
                Ok(())
            })?;
            writeln!(
                out,
                "native  mean {:>9.1} us/tick   p50 {:>7} us   p99 {:>7} us",
                native.mean_us, native.p50_us, native.p99_us
            )?;
            writeln!(
                out,
                "ratio   wasm/native = {:.2}x (mean)",
                wasm.mean_us / native.mean_us.max(f64::MIN_POSITIVE)
            )?;
        }
        None => writeln!(out, "native  not linked in (only the shipped policies are)")?,
    }
    Ok(out)
}

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
    pub sessions: usize,
}

struct Timing {
    mean_us: f64,
    p50_us: u64,
    p99_us: u64,
    /// The slowest tick of all, the warm-up's included (a first tick that builds state).
    max_us: u64,
    first_us: u64,
}

/// Time `ticks` ticks after a warm-up of a tenth as many. `next` prepares each tick
/// (untimed: a new tick number, as a host would); `tick` runs it.
fn time(
    ticks: u32,
    mut next: impl FnMut(),
    mut tick: impl FnMut() -> Result<()>,
) -> Result<Timing> {
    let mut max_us = 0;
    let mut first_us = None;
    let mut one = |next: &mut dyn FnMut()| -> Result<u64> {
        next();
        let t = Instant::now();
        tick()?;
        let us = t.elapsed().as_micros() as u64;
        max_us = max_us.max(us);
        first_us.get_or_insert(us);
        Ok(us)
    };
    for _ in 0..(ticks / 10).max(1) {
        one(&mut next)?;
    }
    let mut hist = Histogram::<u64>::new(3).expect("valid histogram precision");
    let mut total = 0u64;
    for _ in 0..ticks {
        let us = one(&mut next)?;
        total += us;
        hist.record(us).expect("histogram is auto-resizing");
    }
    Ok(Timing {
        mean_us: total as f64 / f64::from(ticks.max(1)),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        max_us,
        first_us: first_us.unwrap_or(0),
    })
}

fn line(label: &str, t: &Timing) -> String {
    format!(
        "{label:<7} mean {:>9.1} us/tick   p50 {:>7} us   p99 {:>7} us   max {:>7} us (first tick {} us)",
        t.mean_us, t.p50_us, t.p99_us, t.max_us, t.first_us
    )
}

pub fn run(o: &Options) -> Result<String> {
    let mut out = String::new();
    let bytes = super::read_component(&o.file)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let (version, mut live) = PolicyVersion::load(&runtime, &bytes, &o.settings, Role::Both)
        .or_else(|_| PolicyVersion::load(&runtime, &bytes, &o.settings, Role::Planner))
        .or_else(|_| PolicyVersion::load(&runtime, &bytes, &o.settings, Role::Predictor))
        .map_err(|e| anyhow!("{}: {e}", o.file.display()))?;
    let mut view = Arc::new(
        ViewSnapshot::synthetic(o.instances, o.segments, o.metrics, o.points)
            .with_sessions(o.sessions),
    );
    writeln!(
        out,
        "policy {} ({}), view: {} instances x {} segments x {} metrics x {} points, {} sessions, {} ticks",
        version.label(),
        version.world.name(),
        o.instances,
        o.segments,
        o.metrics,
        o.points,
        o.sessions,
        o.ticks
    )?;
    // Each tick is a new tick number, so that policies keeping per-tick state do their
    // per-tick work.
    let shared: std::cell::RefCell<SharedView> = std::cell::RefCell::new(view.clone());
    let wasm = time(
        o.ticks,
        || {
            *shared.borrow_mut() = Arc::new(ViewSnapshot::default());
            Arc::make_mut(&mut view).tick += 1;
            *shared.borrow_mut() = view.clone();
        },
        || {
            let v = shared.borrow().clone();
            let p = live.predict(v.clone()).map_err(|f| anyhow!("{f}"))?;
            live.plan(v, &p).map_err(|f| anyhow!("{f}"))?;
            Ok(())
        },
    )?;
    writeln!(out, "{}", line("wasm", &wasm))?;
    match native::by_name(&version.info.name) {
        Some(mut policy) => {
            policy
                .configure(&version.settings)
                .map_err(|e| anyhow!("native configure: {e}"))?;
            let mut native_view = (*view).clone();
            let native_view = std::cell::RefCell::new(&mut native_view);
            let native = time(
                o.ticks,
                || native_view.borrow_mut().tick += 1,
                || {
                    let v = native_view.borrow();
                    let p = policy.predict(&**v);
                    policy.plan(&**v, &p);
                    Ok(())
                },
            )?;
            writeln!(out, "{}", line("native", &native))?;
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

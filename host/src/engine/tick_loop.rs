//! The tick loop: runs the engine every interval on a dedicated thread.
//!
//! Wasm never runs on an async worker. The loop asks a view source for each tick's view,
//! runs the engine, and hands the report to a sink; hot swaps arrive through the slots'
//! [`SwapHandle`](super::SwapHandle)s and take effect between two ticks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shardcast_sdk::view::ViewSnapshot;

use super::{PolicyEngine, ShadowTick, TickReport};

/// A running tick loop.
pub struct TickLoop {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<PolicyEngine>>,
}

impl TickLoop {
    /// Start ticking every `interval`. `view` builds the view of tick `n`; `sink` receives
    /// each report. A tick that overruns the interval is followed at once by the next.
    pub fn spawn(
        engine: PolicyEngine,
        interval: Duration,
        view: impl FnMut(u64) -> ViewSnapshot + Send + 'static,
        sink: impl FnMut(TickReport) + Send + 'static,
    ) -> Self {
        Self::spawn_with_shadow(engine, interval, view, sink, |_| {})
    }

    /// [`TickLoop::spawn`], with `shadow_sink` receiving what a shadow candidate would have
    /// done, after each report has gone to `sink`.
    pub fn spawn_with_shadow(
        mut engine: PolicyEngine,
        interval: Duration,
        mut view: impl FnMut(u64) -> ViewSnapshot + Send + 'static,
        mut sink: impl FnMut(TickReport) + Send + 'static,
        mut shadow_sink: impl FnMut(ShadowTick) + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("shardcast-tick".into())
            .spawn(move || {
                let mut next = Instant::now();
                let mut tick = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    let mut v = view(tick);
                    v.tick = tick;
                    let report = {
                        let _span = tracing::info_span!("tick", tick).entered();
                        engine.tick(v)
                    };
                    sink(report);
                    if let Some(shadow) = engine.shadow_tick() {
                        shadow_sink(shadow);
                    }
                    tick += 1;
                    next += interval;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
                engine
            })
            .expect("spawning the tick thread");
        TickLoop {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop after the tick in progress and give the engine back.
    pub fn stop(mut self) -> PolicyEngine {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("a tick loop is stopped once");
        match thread.join() {
            Ok(engine) => engine,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for TickLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

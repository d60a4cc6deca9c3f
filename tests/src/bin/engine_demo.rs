//! The policy-engine demo: real compiled policies in the real engine, on a synthetic
//! 64-instance, 16,384-segment view with one overloaded instance.
//!
//! It shows the threshold policy moving segments off the overloaded instance until it is
//! back under the threshold, a hot swap under the running tick loop with no tick lost, and
//! hostile policies contained while ticking goes on. The fleet here is a toy model (moves
//! take effect at once); the proxy and live migration are separate parts of shardcast.

use std::sync::mpsc;
use std::time::Duration;

use shardcast::engine::tick_loop::TickLoop;
use shardcast::engine::{ChurnLimits, PolicyEngine, TickReport};
use std::sync::{Arc, Mutex};

use shardcast_sdk::types::{Action, Metric};
use shardcast_sdk::view::{Dense, ViewSnapshot};
use shardcast_tests::{artifacts, component, runtime};

const TICK: Duration = Duration::from_millis(100);

/// The view is rebuilt each tick from a tiny fleet model for the demo: segment ops are fixed, segments on instance 0 run six
/// times hotter, and accepted moves change owners, so the next view shows their effect.
struct Fleet {
    base: ViewSnapshot,
    owners: Vec<u32>,
}

impl Fleet {
    fn new() -> Self {
        let mut base = ViewSnapshot::synthetic(64, 16_384, 8, 60);
        let owners: Vec<u32> = base.segments.iter().map(|s| s.owner).collect();
        if let Some(ops) = base.metrics.segments.get_mut(&Metric::Ops) {
            for (row, owner) in owners.iter().enumerate() {
                if *owner == 0 {
                    ops.row_mut(row).iter_mut().for_each(|x| *x *= 6.0);
                }
            }
        }
        Fleet { base, owners }
    }

    fn apply(&mut self, actions: &[Action]) {
        for a in actions {
            if let Action::MoveSegment(m) = a
                && let Some(row) = self.base.segment_row(m.segment)
            {
                self.owners[row] = m.target;
            }
        }
    }

    fn view(&self) -> ViewSnapshot {
        let mut v = self.base.clone();
        for (segment, owner) in v.segments.iter_mut().zip(&self.owners) {
            segment.owner = *owner;
        }
        let points = v.metrics.segments[&Metric::Ops].points;
        let mut load = Dense {
            points,
            data: vec![0.0; 64 * points],
        };
        let ops = &v.metrics.segments[&Metric::Ops];
        for (row, owner) in self.owners.iter().enumerate() {
            for (dst, src) in load.row_mut(*owner as usize).iter_mut().zip(ops.row(row)) {
                *dst += src;
            }
        }
        v.metrics.instances.insert(Metric::Load, load);
        v.reindex();
        v
    }
}

fn show(r: &TickReport) {
    let actions: Vec<String> = r.accepted.iter().map(|a| a.describe()).collect();
    println!(
        "tick {:>3}  planner {:<16} policy {:>6} us  accepted {:<28} rejected {:>2}  faults {}",
        r.tick,
        r.planner.as_deref().unwrap_or("-"),
        r.policy_us,
        if actions.is_empty() {
            "-".to_owned()
        } else {
            actions.join(", ")
        },
        r.rejected.len(),
        r.faults.len(),
    );
    for rejection in &r.rejected {
        println!(
            "          rejected: {} ({})",
            rejection.message,
            rejection.reason.name()
        );
    }
    for f in &r.faults {
        println!("          contained: {f}");
    }
}

fn main() {
    println!(
        "shardcast policy engine demo: 64 instances x 16,384 segments x 8 metrics, tick every {TICK:?}\n"
    );
    let mut engine = PolicyEngine::new(runtime(), ChurnLimits::default());
    let settings = "high = 30000.0\nlow = 25000.0\nticks = 2\ncooldown_ticks = 2";
    let v = engine
        .load_policy(&component(artifacts::THRESHOLD), settings)
        .expect("threshold loads");
    println!(
        "loaded {} ({}), settings: {}\n",
        v.label(),
        v.world.name(),
        settings.replace('\n', "; ")
    );
    let handle = engine.planner_handle();
    let fleet = Arc::new(Mutex::new(Fleet::new()));
    let (reader, writer) = (fleet.clone(), fleet);
    let (tx, rx) = mpsc::channel();
    let ticker = TickLoop::spawn(
        engine,
        TICK,
        move |_| reader.lock().expect("fleet").view(),
        move |r| {
            writer.lock().expect("fleet").apply(&r.accepted);
            let _ = tx.send(r);
        },
    );
    let mut reports = Vec::new();
    let step = |n: usize, reports: &mut Vec<TickReport>| {
        for _ in 0..n {
            let r = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("ticks keep coming");
            show(&r);
            reports.push(r);
        }
    };
    step(30, &mut reports);
    println!("\n-- hot swap to static while the loop runs --");
    let v = handle
        .propose(&component(artifacts::STATIC), "")
        .expect("static loads");
    println!("staged {}; it takes over between two ticks\n", v.label());
    step(5, &mut reports);
    // The memory bomb gets a long deadline, so that its memory cap is what stops it.
    for (mode, limits) in [
        ("spin", ""),
        ("memory-bomb", "\n[limits]\ndeadline_ms = 5000"),
        ("panic", ""),
    ] {
        println!("\n-- hot swap to a hostile policy ({mode}) --");
        handle
            .propose(
                &component(artifacts::HOSTILE),
                &format!("mode = \"{mode}\"{limits}"),
            )
            .expect("hostile loads");
        // Ticks go on while the candidate compiles; show them until it has been contained.
        for _ in 0..100 {
            let r = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("ticks keep coming");
            show(&r);
            let contained = !r.faults.is_empty();
            reports.push(r);
            if contained {
                break;
            }
        }
        step(2, &mut reports);
    }
    let engine = ticker.stop();
    drop(engine);
    while let Ok(r) = rx.try_recv() {
        reports.push(r);
    }

    let lost = reports
        .windows(2)
        .filter(|w| w[1].tick != w[0].tick + 1)
        .count();
    let moves: usize = reports.iter().map(|r| r.accepted.len()).sum();
    let mut us: Vec<u64> = reports.iter().map(|r| r.policy_us).collect();
    us.sort_unstable();
    let status = handle.status();
    println!("\nsummary");
    println!("  ticks run            {}", reports.len());
    println!("  ticks lost           {lost}");
    println!("  moves accepted       {moves}");
    println!("  faults contained     {:?}", status.faults);
    println!(
        "  swaps / rollbacks    {} / {}",
        status.swaps, status.rollbacks
    );
    println!(
        "  running now          {}",
        status.active.as_deref().unwrap_or("-")
    );
    println!(
        "  policy time p50/max  {} / {} us",
        us[us.len() / 2],
        us[us.len() - 1]
    );
    println!("  (max includes the hostile calls, cut short by their limits)");
}

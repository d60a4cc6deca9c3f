//! `ewma-scan`: a predictor that touches every segment metric every tick.
//!
//! It keeps an exponentially weighted mean and variance for each of the first eight
//! metrics of every segment, updated from one bulk read per metric, and forecasts the 16
//! hottest segments' ops with a 95% interval. It is the benchmark's stand-in for a heavy
//! per-segment predictor.

use shardcast_sdk::prelude::*;
use shardcast_sdk::stats::Ewma;

/// Metrics read per segment each tick.
pub const METRICS: usize = 8;
/// Segments forecast per tick.
pub const TOP: usize = 16;

/// The scanning predictor.
#[derive(Default)]
pub struct EwmaScan {
    state: Vec<Ewma>,
}

impl Policy for EwmaScan {
    fn describe(&self) -> PolicyInfo {
        info(
            "ewma-scan",
            env!("CARGO_PKG_VERSION"),
            "EWMA of 8 metrics for every segment; forecasts the 16 hottest.",
        )
    }
}

impl Predictor for EwmaScan {
    fn predict(&mut self, host: &dyn HostView) -> Predictions {
        let segments = host.segments();
        let n = segments.len();
        if self.state.len() != n * METRICS {
            self.state = vec![Ewma::new(0.3); n * METRICS];
        }
        for (m, metric) in Metric::ALL.iter().take(METRICS).enumerate() {
            let latest = host.segments_latest(*metric);
            for (i, x) in latest.iter().enumerate().take(n) {
                self.state[i * METRICS + m].update(*x);
            }
        }
        let mut hottest: Vec<usize> = (0..n).collect();
        let ops = |i: usize| self.state[i * METRICS].mean();
        let k = TOP.min(n);
        if k > 0 {
            hottest.select_nth_unstable_by(k - 1, |&a, &b| ops(b).total_cmp(&ops(a)));
        }
        let horizon_ms = u64::from(host.interval_ms());
        let load = hottest[..k]
            .iter()
            .filter_map(|&i| {
                self.state[i * METRICS].interval(0.95).forecast(
                    Scope::Segment(segments[i].id),
                    Metric::Ops,
                    horizon_ms,
                )
            })
            .collect();
        Predictions {
            load,
            failures: Vec::new(),
            sessions: Vec::new(),
        }
    }
}

impl Planner for EwmaScan {
    fn plan(&mut self, _host: &dyn HostView, _predictions: &Predictions) -> Vec<Action> {
        Vec::new()
    }
}

shardcast_sdk::export_policy!(EwmaScan);

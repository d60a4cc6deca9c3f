//! The latest forecasts: what the controller's last tick predicted, and a short history
//! of each instance's forecast to draw over its measured load.
//!
//! The tick loop records every report here; readers get copies.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use shardcast_sdk::types::{Predictions, Scope};

use crate::engine::TickReport;

/// Forecast points kept per instance.
pub const KEPT: usize = 240;

/// One instance forecast, as made at a tick.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ForecastPoint {
    /// The tick that made it.
    pub tick: u64,
    /// When it was made, ms since the Unix epoch.
    pub at_ms: u64,
    /// How far ahead it looks.
    pub horizon_ms: u64,
    /// Its metric (`ops`, `load`, ...).
    pub metric: &'static str,
    /// The expected value.
    pub expected: f64,
    /// The interval's low end.
    pub low: f64,
    /// The interval's high end.
    pub high: f64,
}

/// The latest tick's predictions, and which policy made them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latest {
    /// The tick.
    pub tick: u64,
    /// When it ran, ms since the Unix epoch.
    pub at_ms: u64,
    /// `name@version` of the predictor.
    pub predictor: Option<String>,
    /// The predictions (instance forecasts, failure risks and session scores; segment and
    /// session load forecasts are counted, not listed).
    pub predictions: Predictions,
    /// Segment-scope load forecasts left out.
    pub segment_forecasts: usize,
    /// Session-scope load forecasts left out.
    pub session_forecasts: usize,
}

/// Forecasts as the tick loop leaves them.
#[derive(Default)]
pub struct Forecasts {
    inner: Mutex<(Latest, Vec<VecDeque<ForecastPoint>>)>,
}

impl Forecasts {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Forecasts::default())
    }

    /// Record a tick's predictions.
    pub fn record(&self, report: &TickReport) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let p = &report.predictions;
        let mut latest = Latest {
            tick: report.tick,
            at_ms,
            predictor: report.predictor.clone(),
            predictions: Predictions {
                load: Vec::new(),
                failures: p.failures.clone(),
                sessions: p.sessions.clone(),
            },
            ..Latest::default()
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let history = &mut inner.1;
        for f in &p.load {
            match f.scope {
                Scope::Segment(_) => latest.segment_forecasts += 1,
                Scope::Session(_) => latest.session_forecasts += 1,
                Scope::Instance(i) => {
                    latest.predictions.load.push(*f);
                    let i = i as usize;
                    if i >= 4096 {
                        continue;
                    }
                    if history.len() <= i {
                        history.resize_with(i + 1, VecDeque::new);
                    }
                    let series = &mut history[i];
                    if series.len() >= KEPT {
                        series.pop_front();
                    }
                    series.push_back(ForecastPoint {
                        tick: report.tick,
                        at_ms,
                        horizon_ms: f.horizon_ms,
                        metric: f.metric.name(),
                        expected: f.expected,
                        low: f.low,
                        high: f.high,
                    });
                }
            }
        }
        inner.0 = latest;
    }

    /// The latest tick's predictions.
    pub fn latest(&self) -> Latest {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The forecasts kept for instance `id`, oldest first.
    pub fn of_instance(&self, id: usize) -> Vec<ForecastPoint> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .1
            .get(id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

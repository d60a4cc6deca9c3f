//! Holt (additive trend) and Holt-Winters (additive trend and season) smoothing with
//! prediction intervals.
//!
//! The recursions are those of statsmodels' `Holt` / `ExponentialSmoothing` with fixed
//! parameters; the intervals are the analytic ones of the equivalent state-space models
//! ETS(A,A,N) and ETS(A,A,A) (Hyndman & Athanasopoulos, *Forecasting: Principles and
//! Practice*, table 8.8), with σ² the mean squared one-step error.

use serde::{Deserialize, Serialize};

use super::normal::normal_quantile;
use crate::types::{LoadForecast, Metric, Scope};

/// A point forecast with an interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Expected value.
    pub expected: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Confidence of the interval.
    pub confidence: f64,
}

impl Interval {
    /// This interval as a forecast of `metric` for `scope`, `horizon_ms` ahead; none when
    /// any bound is NaN or infinite (for example, before any data).
    pub fn forecast(&self, scope: Scope, metric: Metric, horizon_ms: u64) -> Option<LoadForecast> {
        [self.expected, self.low, self.high]
            .iter()
            .all(|x| x.is_finite())
            .then_some(LoadForecast {
                scope,
                metric,
                horizon_ms,
                expected: self.expected,
                low: self.low,
                high: self.high,
                confidence: self.confidence,
            })
    }

    fn around(expected: f64, variance: f64, confidence: f64) -> Self {
        let half = normal_quantile(0.5 + confidence / 2.0) * variance.max(0.0).sqrt();
        Interval {
            expected,
            low: expected - half,
            high: expected + half,
            confidence,
        }
    }
}

/// Holt's linear trend method, fitted over a series with fixed smoothing parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holt {
    /// Level smoothing α.
    pub alpha: f64,
    /// Trend smoothing β* (as in statsmodels' `smoothing_trend`).
    pub beta: f64,
    /// Current level.
    pub level: f64,
    /// Current trend per step.
    pub trend: f64,
    /// Sum of squared one-step errors.
    pub sse: f64,
    /// Points folded in.
    pub n: usize,
}

impl Holt {
    /// Start from a known level and trend.
    pub fn new(alpha: f64, beta: f64, level: f64, trend: f64) -> Self {
        Holt {
            alpha,
            beta,
            level,
            trend,
            sse: 0.0,
            n: 0,
        }
    }

    /// Fit over `series`, starting from level `y₀` and trend `y₁ − y₀` (statsmodels'
    /// `initialization_method="simple"` for Holt). NaN points are skipped.
    pub fn fit(alpha: f64, beta: f64, series: &[f64]) -> Self {
        let clean: Vec<f64> = series.iter().copied().filter(|x| !x.is_nan()).collect();
        let (level, trend) = match clean.as_slice() {
            [] => (f64::NAN, 0.0),
            [y0] => (*y0, 0.0),
            [y0, y1, ..] => (*y0, y1 - y0),
        };
        let mut holt = Holt::new(alpha, beta, level, trend);
        for &y in &clean {
            holt.update(y);
        }
        holt
    }

    /// Fold in one point.
    pub fn update(&mut self, y: f64) {
        let forecast = self.level + self.trend;
        let error = y - forecast;
        self.sse += error * error;
        self.n += 1;
        let level = self.alpha * y + (1.0 - self.alpha) * forecast;
        self.trend = self.beta * (level - self.level) + (1.0 - self.beta) * self.trend;
        self.level = level;
    }

    /// The point forecast `h` steps ahead (h ≥ 1).
    pub fn forecast(&self, h: usize) -> f64 {
        self.level + h as f64 * self.trend
    }

    /// Mean squared one-step error so far.
    pub fn sigma2(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sse / self.n as f64
        }
    }

    /// The forecast `h` steps ahead with an interval at `confidence` (e.g. 0.95).
    pub fn interval(&self, h: usize, confidence: f64) -> Interval {
        let hf = h as f64;
        let a = self.alpha;
        let b = self.alpha * self.beta;
        let factor = 1.0 + (hf - 1.0) * (a * a + a * b * hf + b * b * hf * (2.0 * hf - 1.0) / 6.0);
        Interval::around(self.forecast(h), self.sigma2() * factor, confidence)
    }
}

/// Additive Holt-Winters: level, trend and a season of `period` steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HoltWinters {
    /// Level smoothing α.
    pub alpha: f64,
    /// Trend smoothing β*.
    pub beta: f64,
    /// Season smoothing γ.
    pub gamma: f64,
    /// Current level.
    pub level: f64,
    /// Current trend per step.
    pub trend: f64,
    /// Seasonal terms; `season[t % period]` applies at step `t`.
    pub season: Vec<f64>,
    /// Steps folded in.
    pub t: usize,
    /// Sum of squared one-step errors.
    pub sse: f64,
}

impl HoltWinters {
    /// Start from known states; `season[i]` applies to the i-th point of the series.
    pub fn new(
        alpha: f64,
        beta: f64,
        gamma: f64,
        level: f64,
        trend: f64,
        season: Vec<f64>,
    ) -> Self {
        HoltWinters {
            alpha,
            beta,
            gamma,
            level,
            trend,
            season,
            t: 0,
            sse: 0.0,
        }
    }

    /// Fit over `series` with a heuristic start: the level is the first season's mean, the
    /// trend the mean step between the first two seasons, and the season the first
    /// season's deviations from its mean. Needs two full seasons; returns None otherwise.
    pub fn fit(alpha: f64, beta: f64, gamma: f64, period: usize, series: &[f64]) -> Option<Self> {
        if period == 0 || series.len() < 2 * period || series.iter().any(|x| x.is_nan()) {
            return None;
        }
        let first = &series[..period];
        let second = &series[period..2 * period];
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
        let level = mean(first);
        let trend = (mean(second) - level) / period as f64;
        let season = first.iter().map(|y| y - level).collect();
        let mut hw = HoltWinters::new(alpha, beta, gamma, level, trend, season);
        for &y in series {
            hw.update(y);
        }
        Some(hw)
    }

    fn period(&self) -> usize {
        self.season.len().max(1)
    }

    /// Fold in one point.
    pub fn update(&mut self, y: f64) {
        let idx = self.t % self.period();
        let s = self.season.get(idx).copied().unwrap_or(0.0);
        let base = self.level + self.trend;
        let error = y - (base + s);
        self.sse += error * error;
        let level = self.alpha * (y - s) + (1.0 - self.alpha) * base;
        self.trend = self.beta * (level - self.level) + (1.0 - self.beta) * self.trend;
        if let Some(slot) = self.season.get_mut(idx) {
            *slot = self.gamma * (y - base) + (1.0 - self.gamma) * s;
        }
        self.level = level;
        self.t += 1;
    }

    /// The point forecast `h` steps ahead (h ≥ 1).
    pub fn forecast(&self, h: usize) -> f64 {
        let idx = (self.t + h - 1) % self.period();
        self.level + h as f64 * self.trend + self.season.get(idx).copied().unwrap_or(0.0)
    }

    /// Mean squared one-step error so far.
    pub fn sigma2(&self) -> f64 {
        if self.t == 0 {
            0.0
        } else {
            self.sse / self.t as f64
        }
    }

    /// The forecast `h` steps ahead with an interval at `confidence`.
    pub fn interval(&self, h: usize, confidence: f64) -> Interval {
        let hf = h as f64;
        let m = self.period() as f64;
        let a = self.alpha;
        let b = self.alpha * self.beta;
        let g = self.gamma;
        let k = ((h - 1) / self.period()) as f64;
        let factor = 1.0
            + (hf - 1.0) * (a * a + a * b * hf + b * b * hf * (2.0 * hf - 1.0) / 6.0)
            + g * k * (2.0 * a + g + b * m * (k + 1.0));
        Interval::around(self.forecast(h), self.sigma2() * factor, confidence)
    }
}

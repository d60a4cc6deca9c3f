//! Exponentially weighted moving average and variance.

use super::holt::Interval;
use super::normal::normal_quantile;

/// An exponentially weighted mean and variance, updated one point at a time.
///
/// `mean_t = α·x_t + (1 − α)·mean_{t−1}` with `mean_0 = x_0` (pandas' `adjust=False`), and
/// the matching exponentially weighted variance (pandas' `var(bias=True)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ewma {
    alpha: f64,
    mean: f64,
    var: f64,
    seen: bool,
}

impl Ewma {
    /// A fresh average with smoothing factor `alpha` in (0, 1].
    pub fn new(alpha: f64) -> Self {
        Ewma {
            alpha,
            mean: f64::NAN,
            var: 0.0,
            seen: false,
        }
    }

    /// Fold in one point; NaN points are skipped.
    pub fn update(&mut self, x: f64) -> f64 {
        if x.is_nan() {
            return self.mean;
        }
        if !self.seen {
            self.mean = x;
            self.var = 0.0;
            self.seen = true;
        } else {
            let diff = x - self.mean;
            let incr = self.alpha * diff;
            self.mean += incr;
            self.var = (1.0 - self.alpha) * (self.var + diff * incr);
        }
        self.mean
    }

    /// Fold in a whole series and return the final mean.
    pub fn fit(alpha: f64, series: &[f64]) -> Self {
        let mut ewma = Ewma::new(alpha);
        for &x in series {
            ewma.update(x);
        }
        ewma
    }

    /// The current mean (NaN before the first point).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The current exponentially weighted variance.
    pub fn variance(&self) -> f64 {
        self.var
    }

    /// A flat forecast with a normal interval of the given confidence.
    pub fn interval(&self, confidence: f64) -> Interval {
        let z = normal_quantile(0.5 + confidence / 2.0);
        let half = z * self.var.sqrt();
        Interval {
            expected: self.mean,
            low: self.mean - half,
            high: self.mean + half,
            confidence,
        }
    }
}

//! Fitted models (augurs' ETS and MSTL), refitted on a schedule so that no tick pays
//! for more than one fit.
//!
//! - [`InstanceModels`]: one ETS(A,A,N) model (parameters fitted by likelihood) per instance's owned load history, refitted
//!   round-robin, one instance every `refit_every` ticks. Between refits the model's
//!   forecast path from its fit is re-anchored each tick on the instance's latest level,
//!   so a fit a minute old still starts from now; its trend and its interval come from
//!   the fit. An instance whose recent slope leaves its model's path (a ramp that ended)
//!   is refitted at once, one a tick.
//! - [`FleetModel`]: the fleet's total load, averaged into buckets of `bucket_ticks` and
//!   kept over a long window in the policy's state (it survives a hot swap). Each time a
//!   bucket closes the model is refitted: MSTL over the configured seasons that the
//!   window covers twice, else ETS. Its forecast over `ahead` buckets lets the
//!   contingent pool bring a standby in before a peak the seasons predict.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shardcast_sdk::prelude::*;
use shardcast_sdk::stats::ets::model::{
    ErrorComponent, Model, ModelType, SeasonalComponent, TrendComponent, Unfit,
};
use shardcast_sdk::stats::mstl::{FittedTrendModel, MSTLModel, TrendModel};
use shardcast_sdk::stats::{Fit, Forecast, Predict};

/// A forecast path from one fit: step `k` (0-based) is `k + 1` points after the fit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Path {
    /// The tick (or bucket) the model was fitted at.
    pub at: u64,
    /// Expected values.
    pub expected: Vec<f64>,
    /// Lower bounds.
    pub low: Vec<f64>,
    /// Upper bounds.
    pub high: Vec<f64>,
    /// Which model was fitted, for the log (`ETS(AAN)`, `MSTL(1200)+ETS`).
    pub model: String,
}

impl Path {
    /// The expected value at 1-based step `k` ≥ 0 after the fit, with step 0 read off the
    /// path's first two steps (the level at the fit).
    fn expected_at(&self, k: usize) -> Option<f64> {
        match k {
            0 => {
                let (a, b) = (*self.expected.first()?, *self.expected.get(1)?);
                Some(2.0 * a - b)
            }
            k => self.expected.get(k - 1).copied(),
        }
    }

    /// `(low, expected, high)` `h` steps after step `d`, re-anchored so that step `d` is
    /// `level`: the path's rise from `d` to `d + h`, and its interval half-widths there.
    pub fn anchored(&self, d: usize, h: usize, level: f64) -> Option<(f64, f64, f64)> {
        let end = self.expected_at(d + h)?;
        let start = self.expected_at(d)?;
        let (low, high) = (*self.low.get(d + h - 1)?, *self.high.get(d + h - 1)?);
        let expected = level + (end - start);
        let out = (expected - (end - low), expected, expected + (high - end));
        [out.0, out.1, out.2]
            .iter()
            .all(|x| x.is_finite())
            .then_some(out)
    }
}

/// Optimiser iterations per fit at most: bounds a fit's cost on any series.
pub const MAX_ITERATIONS: usize = 200;

/// An ETS model with additive error and trend and no season (Holt's method as a state
/// space model, its parameters fitted by likelihood), with a bounded optimiser.
fn aan() -> Unfit {
    Unfit::new(ModelType {
        error: ErrorComponent::Additive,
        trend: TrendComponent::Additive,
        season: SeasonalComponent::None,
    })
    .max_iterations(MAX_ITERATIONS)
}

/// The finite points of `series`, or `None` when they are too few or do not vary: a flat
/// series needs no model (the optimiser would spend its whole budget on it).
fn fittable(series: &[f64]) -> Option<Vec<f64>> {
    let clean: Vec<f64> = series.iter().copied().filter(|x| x.is_finite()).collect();
    let (lo, hi) = clean
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    (clean.len() >= 10 && hi - lo > 1e-9 * hi.abs().max(1.0)).then_some(clean)
}

/// Fit ETS(A,A,N) over `series` and forecast `steps` ahead at `confidence`; `None` when
/// the series is too short or flat, or the fit fails.
pub fn ets_path(series: &[f64], steps: usize, confidence: f64, at: u64) -> Option<Path> {
    let clean = fittable(series)?;
    if steps < 2 {
        return None;
    }
    let fitted = aan().fit(&clean).ok()?;
    path(
        fitted.predict(steps, confidence).ok()?,
        at,
        "ETS(AAN)".into(),
    )
}

/// A fitted model's forecast as a [`Path`]; `None` without intervals.
fn path(f: Forecast, at: u64, model: String) -> Option<Path> {
    let intervals = f.intervals?;
    Some(Path {
        at,
        expected: f.point,
        low: intervals.lower,
        high: intervals.upper,
        model,
    })
}

/// MSTL's trend model: the bounded ETS(A,A,N).
#[derive(Debug, Clone, Copy)]
struct BoundedTrend;

/// A fitted [`BoundedTrend`].
#[derive(Debug)]
struct BoundedTrendFit(Model);

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl TrendModel for BoundedTrend {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed("ETS(AAN)")
    }

    fn fit(&self, y: &[f64]) -> Result<Box<dyn FittedTrendModel + Sync + Send>, BoxError> {
        Ok(Box::new(BoundedTrendFit(aan().fit(y)?)))
    }
}

impl FittedTrendModel for BoundedTrendFit {
    fn predict_inplace(
        &self,
        horizon: usize,
        level: Option<f64>,
        forecast: &mut Forecast,
    ) -> Result<(), BoxError> {
        Ok(self.0.predict_inplace(horizon, level, forecast)?)
    }

    fn predict_in_sample_inplace(
        &self,
        level: Option<f64>,
        forecast: &mut Forecast,
    ) -> Result<(), BoxError> {
        Ok(self.0.predict_in_sample_inplace(level, forecast)?)
    }

    fn training_data_size(&self) -> Option<usize> {
        Some(self.0.training_data_size())
    }
}

/// Fit MSTL over `series` with the `periods` (in points) that it covers at least twice,
/// its trend by ETS(A,A,N), and forecast `steps` ahead; ETS alone when no period is
/// covered.
pub fn seasonal_path(
    series: &[f64],
    periods: &[usize],
    steps: usize,
    confidence: f64,
    at: u64,
) -> Option<Path> {
    let clean = fittable(series)?;
    let mut covered: Vec<usize> = periods
        .iter()
        .copied()
        .filter(|&p| p >= 2 && clean.len() >= 2 * p)
        .collect();
    covered.sort_unstable();
    covered.dedup();
    if covered.is_empty() {
        return ets_path(&clean, steps, confidence, at);
    }
    let model = MSTLModel::new(covered.clone(), BoundedTrend);
    let fitted = model.fit(&clean).ok()?;
    let periods: Vec<String> = covered.iter().map(|p| p.to_string()).collect();
    path(
        fitted.predict(steps, confidence).ok()?,
        at,
        format!("MSTL({})+ETS", periods.join(",")),
    )
}

/// When and how far [`InstanceModels`] refit.
#[derive(Clone, Copy, Debug)]
pub struct Refit {
    /// Ticks between two refits (one instance each).
    pub every: u32,
    /// Steps the forecast is wanted ahead.
    pub horizon: usize,
    /// Ticks a fit serves before it is too old (its path is `horizon + stale` long).
    pub stale: u32,
    /// Confidence of the interval.
    pub confidence: f64,
}

/// Per-instance ETS models, refitted round-robin.
#[derive(Debug, Default)]
pub struct InstanceModels {
    fits: BTreeMap<InstanceId, Path>,
    next: usize,
}

impl InstanceModels {
    /// On a tick that is a multiple of `plan.every`, refit the next instance in turn (of
    /// `ids`, one history row each in `rows`); forget instances no longer present.
    pub fn refit(&mut self, tick: u64, ids: &[InstanceId], rows: &[&[f64]], plan: Refit) {
        self.fits.retain(|id, _| ids.contains(id));
        if ids.is_empty() || plan.every == 0 || !tick.is_multiple_of(u64::from(plan.every)) {
            return;
        }
        let i = self.next % ids.len();
        self.next = i + 1;
        self.fit(tick, ids[i], rows.get(i).copied(), plan);
        // Between turns, the instance whose recent slope has left its model's path the
        // furthest (by more than 2 % of its level a tick: a ramp that ended, a new one)
        // is refitted at once; one a tick.
        let diverged = ids
            .iter()
            .zip(rows.iter().copied())
            .filter(|(id, _)| **id != ids[i])
            .filter_map(|(id, row)| Some((*id, row, self.divergence(*id, tick, row)?)))
            .filter(|(_, _, x)| *x > 1.0)
            .max_by(|a, b| a.2.total_cmp(&b.2));
        if let Some((id, row, _)) = diverged {
            self.fit(tick, id, Some(row), plan);
        }
    }

    fn fit(&mut self, tick: u64, id: InstanceId, row: Option<&[f64]>, plan: Refit) {
        let steps = plan.horizon + plan.stale as usize;
        match row.and_then(|row| ets_path(row, steps, plan.confidence, tick)) {
            Some(path) => {
                self.fits.insert(id, path);
            }
            None => {
                self.fits.remove(&id);
            }
        }
    }

    /// How far `row`'s slope over its last five points is from the fitted path's slope
    /// now, in units of 2 % of the row's level; `None` without a fit or enough points.
    fn divergence(&self, id: InstanceId, tick: u64, row: &[f64]) -> Option<f64> {
        let path = self.fits.get(&id)?;
        let d = usize::try_from(tick.checked_sub(path.at)?).ok()?;
        let slope = path.expected_at(d + 1)? - path.expected_at(d)?;
        let n = row.len();
        if n < 6 || !(row[n - 1].is_finite() && row[n - 6].is_finite()) {
            return None;
        }
        let recent = (row[n - 1] - row[n - 6]) / 5.0;
        let unit = 0.02 * row[n - 1].abs();
        (unit > 0.0).then(|| (recent - slope).abs() / unit)
    }

    /// Instance `id`'s forecast `horizon` ticks from `tick`, anchored on `level`, when its
    /// fit is fresh enough to reach that far.
    pub fn forecast(
        &self,
        id: InstanceId,
        tick: u64,
        horizon: usize,
        level: f64,
    ) -> Option<(f64, f64, f64)> {
        let path = self.fits.get(&id)?;
        let d = usize::try_from(tick.checked_sub(path.at)?).ok()?;
        path.anchored(d, horizon, level)
    }

    /// The tick instance `id`'s model was last fitted at.
    pub fn fitted_at(&self, id: InstanceId) -> Option<u64> {
        self.fits.get(&id).map(|p| p.at)
    }

    /// How many instances have a model.
    pub fn fitted(&self) -> usize {
        self.fits.len()
    }
}

/// The fleet's total load over a long window, and its last fitted model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetModel {
    /// Closed buckets' mean load, oldest first.
    pub buckets: Vec<f64>,
    /// The open bucket: sum and count.
    pub open: (f64, u32),
    /// Buckets closed so far (the clock of `path.at`).
    pub closed: u64,
    /// The last fit.
    pub path: Option<Path>,
}

/// How the fleet model is set up.
#[derive(Clone, Copy, Debug)]
pub struct FleetShape<'a> {
    /// Ticks per bucket.
    pub bucket_ticks: u32,
    /// Buckets kept.
    pub keep: u32,
    /// Seasons, in ticks.
    pub seasons_ticks: &'a [u32],
    /// Buckets the forecast reaches ahead.
    pub ahead: u32,
    /// Confidence of the interval.
    pub confidence: f64,
}

impl FleetModel {
    /// Fold in this tick's fleet total; when a bucket closes, refit. True when it refitted.
    pub fn observe(&mut self, total: f64, shape: FleetShape<'_>) -> bool {
        if !total.is_finite() || shape.bucket_ticks == 0 {
            return false;
        }
        self.open.0 += total;
        self.open.1 += 1;
        if self.open.1 < shape.bucket_ticks {
            return false;
        }
        self.buckets.push(self.open.0 / f64::from(self.open.1));
        self.open = (0.0, 0);
        self.closed += 1;
        let keep = shape.keep.max(2) as usize;
        if self.buckets.len() > keep {
            self.buckets.drain(..self.buckets.len() - keep);
        }
        let periods: Vec<usize> = shape
            .seasons_ticks
            .iter()
            .map(|&s| (s / shape.bucket_ticks) as usize)
            .collect();
        let steps = shape.ahead.max(2) as usize;
        self.path = seasonal_path(
            &self.buckets,
            &periods,
            steps,
            shape.confidence,
            self.closed,
        );
        true
    }

    /// The highest expected bucket over the next `ahead` buckets from now, with how many
    /// buckets ahead it falls and the model that said so.
    pub fn peak(&self, ahead: u32) -> Option<(f64, u32, &str)> {
        let path = self.path.as_ref()?;
        let d = usize::try_from(self.closed.checked_sub(path.at)?).ok()?;
        (1..=ahead as usize)
            .filter_map(|h| Some((*path.expected.get(d + h - 1)?, h as u32)))
            .filter(|(v, _)| v.is_finite())
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(v, h)| (v.max(0.0), h, path.model.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rising_series_forecasts_its_rise_and_reanchors_on_the_level() {
        let series: Vec<f64> = (0..40)
            .map(|t| 100.0 + 2.0 * t as f64 + if t % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let path = ets_path(&series, 40, 0.9, 0).expect("fits");
        let (low, expected, high) = path.anchored(0, 10, 500.0).expect("in range");
        // About 2 per step for 10 steps above the given level.
        assert!((expected - 520.0).abs() < 4.0, "{expected}");
        assert!(low < expected && expected < high, "{low} {expected} {high}");
        // Ten ticks later the same fit still gives about the same rise.
        let (_, later, _) = path.anchored(10, 10, 500.0).expect("in range");
        assert!((later - 520.0).abs() < 4.0, "{later}");
        // Beyond the path: no forecast.
        assert!(path.anchored(35, 10, 500.0).is_none());
    }

    #[test]
    fn too_short_or_flat_a_series_has_no_model() {
        assert!(ets_path(&[1.0, 2.0, 3.0], 10, 0.9, 0).is_none());
        assert!(ets_path(&[0.0; 30], 10, 0.9, 0).is_none());
        assert!(ets_path(&[5.0; 30], 10, 0.9, 0).is_none());
    }

    #[test]
    fn the_fleet_model_learns_a_season_and_sees_the_next_peak() {
        // A season of 20 buckets (of 5 ticks each): peak at bucket 5 of every season.
        let shape = FleetShape {
            bucket_ticks: 5,
            keep: 200,
            seasons_ticks: &[100],
            ahead: 20,
            confidence: 0.9,
        };
        let level = |b: u64| 100.0 + 50.0 * ((b as f64 - 5.0) / 20.0 * std::f64::consts::TAU).cos();
        let mut m = FleetModel::default();
        let mut refits = 0;
        // Three seasons; stop at bucket 60, at the trough (bucket 15 of the season).
        for tick in 0..(60 * 5) {
            if m.observe(level(tick / 5), shape) {
                refits += 1;
            }
        }
        assert_eq!(refits, 60);
        let path = m.path.as_ref().expect("fitted");
        assert!(path.model.starts_with("MSTL(20)"), "{}", path.model);
        let (peak, at, _) = m.peak(20).expect("a peak");
        assert!((peak - 150.0).abs() < 10.0, "{peak}");
        // Bucket 60 is season position 0; the peak is at position 5.
        assert!((4..=6).contains(&at), "{at}");
    }

    #[test]
    fn round_robin_refits_one_instance_per_turn() {
        let owned: Vec<Vec<f64>> = (0..3)
            .map(|i| (0..30).map(|t| (i * 10 + t) as f64).collect())
            .collect();
        let rows: Vec<&[f64]> = owned.iter().map(Vec::as_slice).collect();
        let ids = [10, 11, 12];
        let plan = Refit {
            every: 2,
            horizon: 10,
            stale: 20,
            confidence: 0.9,
        };
        let mut m = InstanceModels::default();
        for tick in 0..6 {
            m.refit(tick, &ids, &rows, plan);
        }
        assert_eq!(m.fitted(), 3);
        assert!(m.forecast(11, 6, 10, 40.0).is_some());
        // A fit older than the path reaches is not used.
        assert!(m.forecast(10, 100, 10, 40.0).is_none());
        m.refit(8, &[10], &rows[..1], plan);
        assert_eq!(m.fitted(), 1, "instances gone are forgotten");
    }

    #[test]
    fn a_ramp_that_ends_is_refitted_before_its_turn() {
        let plan = Refit {
            every: 2,
            horizon: 10,
            stale: 40,
            confidence: 0.9,
        };
        let ramp: Vec<f64> = (0..30).map(|t| 100.0 + 10.0 * t as f64).collect();
        let level = |t: usize| 500.0 + if t.is_multiple_of(2) { 3.0 } else { -3.0 };
        let steady: Vec<f64> = (0..30).map(level).collect();
        let ids = [1, 2, 3];
        let mut m = InstanceModels::default();
        for tick in [0, 2] {
            m.refit(tick, &ids, &[&ramp, &steady, &steady], plan);
        }
        // The ramp stops; at tick 4 it is instance 3's turn, and instance 1 goes too.
        let ended: Vec<f64> = (0..30)
            .map(|t| {
                if t < 20 {
                    100.0 + 15.0 * t as f64
                } else {
                    400.0
                }
            })
            .collect();
        m.refit(4, &ids, &[&ended, &steady, &steady], plan);
        assert_eq!(m.fitted_at(1), Some(4), "refitted out of turn");
        assert_eq!(m.fitted_at(3), Some(4), "refitted in turn");
        assert_eq!(m.fitted_at(2), Some(2), "on its path: left alone");
    }
}

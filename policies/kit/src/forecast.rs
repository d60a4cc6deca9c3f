//! The load forecaster (`forecast`): forecasts each instance's load and acts before it crosses capacity.
//!
//! **Predict.** A forecast of each active instance's load over the horizon, with a
//! prediction interval at the stated confidence: an ETS(A,A,N) model per instance (augurs),
//! refitted round-robin and re-anchored each tick on the instance's Holt level
//! (`instance_model = "ets"`), or Holt alone (`"holt"`). The fleet's total is kept over a
//! longer window and modelled with MSTL over the configured seasons (see [`crate::fitted`]). The history it is fitted
//! on is the load of the segments the instance owns *now*, summed per point: a move changes
//! which segments count, not the history, so the policy's own moves do not read as trends.
//! Isolated spikes (a bulk load, one slow second) are taken out with a running median of
//! five before the fit. No action is taken before `warmup_ticks` ticks have been seen.
//!
//! **Plan.**
//! - When the upper bound of an instance's forecast crosses `capacity` within the
//!   horizon, move the segments that relieve it most per byte moved to the instances with
//!   the most forecast headroom, before the crossing.
//! - Sessions: each session's health (expected activity, churn probability) is reported
//!   with the predictions (see [`crate::sessions`]); the fleet total leaves out the
//!   activity of the sessions expected to go.
//! - Contingent pool: when the fleet's forecast total exceeds what the active instances
//!   can serve (`capacity` each), activate a standby and give it segments in the same plan.
//!   An instance brought in this way goes back to standby (drained) once the forecast has
//!   stayed low for `idle_ticks`.
//! - Hysteresis: a segment moved is left alone for `cooldown_ticks`, an instance relieved
//!   for `relief_ticks`; a refusal for lack of room means waiting a tick.
//! - Revert: `watch_ticks` after a move completes, if the target's p99 since is worse (by
//!   `revert_margin`) than both instances' p99 before the move, the segment goes back, once;
//!   it never goes to that target again.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shardcast_sdk::prelude::*;
use shardcast_sdk::stats::Holt;

use crate::fitted::{FleetModel, FleetShape, InstanceModels, Refit};
use crate::owned::OwnedHistory;
use crate::sessions::{SessionScores, SessionSettings};

/// Settings, given as TOML.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Load (ops/s per capacity unit, as the `load` metric) an instance can serve well.
    pub capacity: f64,
    /// How far ahead to look, in ticks.
    pub horizon_ticks: u32,
    /// Confidence of the prediction interval.
    pub confidence: f64,
    /// Moves per tick at most.
    pub max_moves: u32,
    /// Ticks a moved segment is left alone.
    pub cooldown_ticks: u64,
    /// Ticks an instance is left alone after a segment moved off it.
    pub relief_ticks: u64,
    /// Share of the active instances' capacity the fleet's forecast may fill before a
    /// standby is brought in.
    pub scale_out_at: f64,
    /// Share below which, held for `idle_ticks`, an instance brought in goes back.
    pub scale_in_below: f64,
    /// Ticks of low forecast before scaling in.
    pub idle_ticks: u32,
    /// Points of history each forecast is fitted on.
    pub fit_points: u32,
    /// Ticks seen before the first action: a forecast needs a history.
    pub warmup_ticks: u32,
    /// Ticks after a move completes before it is judged.
    pub watch_ticks: u32,
    /// How much worse than both instances before the move the target's p99 must be for
    /// the move to be reverted.
    pub revert_margin: f64,
    /// The per-instance model: `ets` (augurs AutoETS, refitted round-robin, re-anchored
    /// each tick on the instance's level) or `holt` (Holt refitted every tick).
    pub instance_model: String,
    /// Ticks between two instance refits (one instance per refit).
    pub refit_every: u32,
    /// Ticks per point of the fleet model's history.
    pub fleet_bucket_ticks: u32,
    /// Points of fleet history kept (in the policy's state).
    pub fleet_buckets: u32,
    /// Seasons of the fleet's load, in ticks (e.g. `[86400, 604800]` for daily and
    /// weekly at one tick a second). Each is modelled (MSTL) once the history covers it
    /// twice.
    pub seasons_ticks: Vec<u32>,
    /// How many fleet points ahead the fleet model looks for a peak that needs a standby.
    pub fleet_ahead_buckets: u32,
    /// Session health scoring (`[sessions]`).
    pub sessions: SessionSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            capacity: 70_000.0,
            horizon_ticks: 30,
            confidence: 0.5,
            max_moves: 1,
            cooldown_ticks: 300,
            relief_ticks: 10,
            scale_out_at: 0.9,
            scale_in_below: 0.5,
            idle_ticks: 600,
            fit_points: 30,
            warmup_ticks: 10,
            watch_ticks: 30,
            revert_margin: 1.25,
            instance_model: "ets".into(),
            refit_every: 2,
            fleet_bucket_ticks: 60,
            fleet_buckets: 240,
            seasons_ticks: Vec::new(),
            fleet_ahead_buckets: 5,
            sessions: SessionSettings::default(),
        }
    }
}

impl Settings {
    /// Parse and check settings; errors name the offending key.
    pub fn parse(toml: &str) -> Result<Self, String> {
        let s: Settings = settings::parse(toml)?;
        if !(s.capacity.is_finite() && s.capacity > 0.0) {
            return Err(format!(
                "invalid settings: `capacity` must be a positive number, got {}",
                s.capacity
            ));
        }
        if s.horizon_ticks == 0 || s.max_moves == 0 || s.fit_points < 2 {
            return Err(
                "invalid settings: `horizon_ticks` and `max_moves` must be at least 1, `fit_points` at least 2".into(),
            );
        }
        if !(s.confidence > 0.0 && s.confidence < 1.0) {
            return Err(format!(
                "invalid settings: `confidence` must be in (0, 1), got {}",
                s.confidence
            ));
        }
        if s.instance_model != "ets" && s.instance_model != "holt" {
            return Err(format!(
                "invalid settings: `instance_model` must be \"ets\" or \"holt\", got {:?}",
                s.instance_model
            ));
        }
        if s.fleet_bucket_ticks == 0 {
            return Err("invalid settings: `fleet_bucket_ticks` must be at least 1".into());
        }
        if !(s.scale_in_below < s.scale_out_at && s.scale_out_at > 0.0) {
            return Err("invalid settings: `scale_in_below` must be below `scale_out_at`".into());
        }
        Ok(s)
    }
}

/// What the policy remembers, handed to a successor on hot swap.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Tick until which each segment is left alone.
    pub segment_cooldown: BTreeMap<SegmentId, u64>,
    /// Tick until which each instance is left alone as a source.
    pub relieved_until: BTreeMap<InstanceId, u64>,
    /// Instances this policy brought in from the standby pool.
    pub brought_in: BTreeSet<InstanceId>,
    /// Consecutive ticks the fleet forecast has stayed low.
    pub idle: u32,
    /// Ticks planned so far (up to `warmup_ticks`).
    #[serde(default)]
    pub seen: u32,
    /// Completed migrations already judged, by id.
    #[serde(default)]
    pub judged: BTreeSet<u64>,
    /// Segments moved back, with the target that made them worse: never again there.
    #[serde(default)]
    pub reverted: BTreeMap<SegmentId, InstanceId>,
    /// Source and target p99 before each migration seen running, by id: a long
    /// migration's start falls out of the retained window before it is judged.
    #[serde(default)]
    pub before: BTreeMap<u64, (f64, f64)>,
    /// The fleet's long load history and its fitted model.
    #[serde(default)]
    pub fleet: FleetModel,
}

/// The load forecaster.
#[derive(Default)]
pub struct Forecast {
    settings: Settings,
    state: State,
    /// Each instance's owned load history, kept incrementally (rebuilt after a swap).
    owned: OwnedHistory,
    /// Per-instance fitted models.
    models: InstanceModels,
    /// Each session's last health score.
    scores: SessionScores,
    /// This tick's segment columns and latest ops, while planning.
    tick_columns: Option<SegmentColumns>,
    tick_ops: Vec<f64>,
}

/// Each instance's load history (the `load` metric: ops per capacity unit) as the segments
/// it owns now made it, over the last `points` points, oldest first; one row per instance.
/// A point with no data from any of its segments is NaN.
pub fn owned_history(host: &dyn HostView, points: u32) -> Vec<Vec<f64>> {
    let instances = host.instances();
    let columns = host.segment_columns();
    let segments = columns.ids.len();
    let window = host.segments_window(Metric::Ops, points.min(host.retention()).max(1));
    let k = window.len().checked_div(segments).unwrap_or(0);
    let mut rows = vec![vec![f64::NAN; k]; instances.len()];
    for (j, owner) in columns.owners.iter().enumerate() {
        let Some(i) = instances.iter().position(|x| x.id == *owner) else {
            continue;
        };
        let capacity = instances[i].capacity.max(f64::MIN_POSITIVE);
        for (t, &v) in window[j * k..(j + 1) * k].iter().enumerate() {
            if v.is_finite() {
                let cell = &mut rows[i][t];
                *cell = if cell.is_nan() { 0.0 } else { *cell } + v / capacity;
            }
        }
    }
    rows
}

/// `series` with isolated spikes removed: every point but the last two becomes the median
/// of the five around it (fewer at the start; the mean of the middle two of an even
/// count); NaN points are left out of the medians.
pub fn despike(series: &[f64]) -> Vec<f64> {
    let n = series.len();
    (0..n)
        .map(|t| {
            if t + 2 >= n {
                return series[t];
            }
            let mut near = [0.0; 5];
            let mut k = 0;
            for &x in &series[t.saturating_sub(2)..=t + 2] {
                if x.is_finite() {
                    near[k] = x;
                    k += 1;
                }
            }
            if k == 0 {
                return series[t];
            }
            let near = &mut near[..k];
            near.sort_unstable_by(f64::total_cmp);
            if k % 2 == 1 {
                near[k / 2]
            } else {
                (near[k / 2 - 1] + near[k / 2]) / 2.0
            }
        })
        .collect()
}

/// Each instance's forecast over the horizon from its owned, despiked `history` (one row
/// per instance): (low, expected, high), NaN-free and never negative; zeros for an
/// instance out of service. With `models`, an instance that has a fresh fitted model takes
/// its rise and interval from it, anchored on the Holt level; others take Holt's.
pub fn instance_forecasts(
    host: &dyn HostView,
    s: &Settings,
    history: &[Vec<f64>],
    models: Option<&InstanceModels>,
) -> Vec<(f64, f64, f64)> {
    let instances = host.instances();
    let h = s.horizon_ticks as usize;
    let tick = host.tick();
    instances
        .iter()
        .zip(history)
        .map(|(instance, series)| {
            if instance.state != InstanceState::Active && instance.state != InstanceState::Draining
            {
                return (0.0, 0.0, 0.0);
            }
            let holt = Holt::fit(0.5, 0.1, series);
            let now = series
                .iter()
                .rev()
                .copied()
                .find(|x| x.is_finite())
                .unwrap_or(0.0);
            let (low, expected, high) = models
                .and_then(|m| m.forecast(instance.id, tick, h, holt.level))
                .unwrap_or_else(|| {
                    let i = holt.interval(h, s.confidence);
                    (i.low, i.expected, i.high)
                });
            let expected = if expected.is_finite() {
                expected.max(0.0)
            } else {
                now
            };
            let high = if high.is_finite() {
                high.max(expected).max(now)
            } else {
                now
            };
            let low = if low.is_finite() {
                low.clamp(0.0, expected)
            } else {
                expected
            };
            (low, expected, high)
        })
        .collect()
}

impl Policy for Forecast {
    fn describe(&self) -> PolicyInfo {
        info(
            "forecast",
            env!("CARGO_PKG_VERSION"),
            "Predictive: moves segments, or brings in a standby, before load crosses capacity.",
        )
    }

    fn configure(&mut self, settings: &str) -> Result<(), String> {
        self.settings = Settings::parse(settings)?;
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.state).unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.state =
            serde_json::from_slice(state).map_err(|e| format!("bad forecast state: {e}"))?;
        Ok(())
    }
}

impl Predictor for Forecast {
    fn predict(&mut self, host: &dyn HostView) -> Predictions {
        let horizon_ms = u64::from(host.interval_ms()) * u64::from(self.settings.horizon_ticks);
        let instances = host.instances();
        self.owned.update(host, self.settings.fit_points);
        let history: Vec<Vec<f64>> = self
            .owned
            .rows(&instances)
            .iter()
            .map(|row| despike(row))
            .collect();
        let s = &self.settings;
        let models = if s.instance_model == "ets" {
            let (ids, rows): (Vec<InstanceId>, Vec<&[f64]>) = instances
                .iter()
                .zip(&history)
                .filter(|(i, _)| i.state == InstanceState::Active)
                .map(|(i, row)| (i.id, row.as_slice()))
                .unzip();
            let plan = Refit {
                every: s.refit_every,
                horizon: s.horizon_ticks as usize,
                stale: s.refit_every.saturating_mul(ids.len() as u32).max(1) * 2,
                confidence: s.confidence,
            };
            self.models.refit(host.tick(), &ids, &rows, plan);
            Some(&self.models)
        } else {
            None
        };
        // The fleet's current total, for the fleet model.
        let total: f64 = instances
            .iter()
            .zip(&history)
            .filter(|(i, _)| i.state == InstanceState::Active)
            .filter_map(|(_, row)| row.iter().rev().copied().find(|x| x.is_finite()))
            .sum();
        let shape = FleetShape {
            bucket_ticks: s.fleet_bucket_ticks,
            keep: s.fleet_buckets,
            seasons_ticks: &s.seasons_ticks,
            ahead: s.fleet_ahead_buckets,
            confidence: s.confidence,
        };
        self.state.fleet.observe(total, shape);
        let load = instance_forecasts(host, s, &history, models)
            .into_iter()
            .zip(&instances)
            .filter(|(_, i)| i.state == InstanceState::Active)
            .map(|((low, expected, high), i)| LoadForecast {
                scope: Scope::Instance(i.id),
                metric: Metric::Load,
                horizon_ms,
                expected,
                low,
                high,
                confidence: self.settings.confidence,
            })
            .collect();
        let sessions =
            self.scores
                .update(host, &self.settings.sessions, self.settings.horizon_ticks);
        Predictions {
            load,
            failures: Vec::new(),
            sessions,
        }
    }
}

impl Planner for Forecast {
    fn plan(&mut self, host: &dyn HostView, predictions: &Predictions) -> Vec<Action> {
        self.plan_load(host, predictions, &[])
    }
}

impl Forecast {
    /// The move back of one finished migration that made its target worse than both
    /// instances were before it, if there is one to judge now.
    fn revert(&mut self, host: &dyn HostView, avoid: &[InstanceId]) -> Option<Action> {
        let s = &self.settings;
        let interval = u64::from(host.interval_ms().max(1));
        let now = host.now();
        let watch_ms = u64::from(s.watch_ticks) * interval;
        let points = host.retention().max(1);
        let p99 = host.instances_window(Metric::LatencyP99Us, points);
        let k = p99.len() / host.instances().len().max(1);
        let instances = host.instances();
        // Median p99 of instance row `row` over points whose time is in [from, to).
        let median_in = |row: usize, from: u64, to: u64| -> Option<f64> {
            let series = p99.get(row * k..(row + 1) * k)?;
            let mut v: Vec<f64> = series
                .iter()
                .enumerate()
                .filter(|(i, x)| {
                    let at = now.saturating_sub((k - 1 - i) as u64 * interval);
                    at >= from && at < to && x.is_finite()
                })
                .map(|(_, x)| *x)
                .collect();
            if v.len() < 3 {
                return None;
            }
            v.sort_by(f64::total_cmp);
            Some(v[v.len() / 2])
        };
        let row_of = |id: InstanceId| instances.iter().position(|i| i.id == id);
        let segments = self.tick_columns.as_ref()?;
        let migrations = host.migrations();
        for m in &migrations {
            if m.finished_at.is_none()
                && !self.state.before.contains_key(&m.id)
                && let (Some(src), Some(dst)) = (row_of(m.source), row_of(m.target))
                && let (Some(a), Some(b)) = (
                    median_in(src, m.started_at.saturating_sub(watch_ms), m.started_at + 1),
                    median_in(dst, m.started_at.saturating_sub(watch_ms), m.started_at + 1),
                )
            {
                self.state.before.insert(m.id, (a, b));
            }
        }
        for m in &migrations {
            let Some(finished) = m.finished_at else {
                continue;
            };
            if m.outcome != MigrationOutcome::Completed
                || now.saturating_sub(finished) < watch_ms
                || self.state.judged.contains(&m.id)
            {
                continue;
            }
            self.state.judged.insert(m.id);
            if self.state.reverted.contains_key(&m.segment) {
                continue;
            }
            let (Some(src), Some(dst)) = (row_of(m.source), row_of(m.target)) else {
                continue;
            };
            let before_from = m.started_at.saturating_sub(watch_ms);
            let (src_was, dst_was) = match self.state.before.get(&m.id) {
                Some(&(a, b)) => (Some(a), Some(b)),
                None => (
                    median_in(src, before_from, m.started_at),
                    median_in(dst, before_from, m.started_at),
                ),
            };
            let judged = (
                src_was,
                dst_was,
                median_in(dst, finished + interval, now + 1),
            );
            let (Some(src_before), Some(dst_before), Some(dst_after)) = judged else {
                continue;
            };
            let still_there = segments
                .ids
                .iter()
                .position(|&id| id == m.segment)
                .is_some_and(|j| segments.owners[j] == m.target && segments.migrating[j] == 0);
            if dst_after > s.revert_margin * src_before.max(dst_before)
                && still_there
                && instances[src].state == InstanceState::Active
                && !avoid.contains(&m.source)
            {
                host.log(
                    Level::Info,
                    &format!(
                        "p99 on {} rose to {dst_after:.0} us after segment {} arrived (before: {src_before:.0} us on {}, {dst_before:.0} us on {}): moving it back",
                        instances[dst].name,
                        m.segment,
                        instances[src].name,
                        instances[dst].name
                    ),
                );
                self.state.reverted.insert(m.segment, m.target);
                self.state
                    .segment_cooldown
                    .insert(m.segment, host.tick() + s.cooldown_ticks);
                return Some(Action::MoveSegment(MoveSegment {
                    segment: m.segment,
                    target: m.source,
                }));
            }
        }
        // Forget judgements of migrations the host no longer reports.
        let reported: BTreeSet<u64> = migrations.iter().map(|m| m.id).collect();
        self.state.judged.retain(|id| reported.contains(id));
        self.state.before.retain(|id, _| reported.contains(id));
        None
    }

    /// Active instances whose load reached `capacity` within the last `fit_points`
    /// points: a queue built while overloaded takes a while to drain.
    pub fn overloaded(&self, host: &dyn HostView) -> Vec<InstanceId> {
        let points = self.settings.fit_points.min(host.retention()).max(1);
        let window = host.instances_window(Metric::Load, points);
        let k = points as usize;
        host.instances()
            .iter()
            .enumerate()
            .filter(|(row, i)| {
                i.state == InstanceState::Active
                    && window
                        .get(row * k..(row + 1) * k)
                        .unwrap_or(&[])
                        .iter()
                        .any(|l| *l >= self.settings.capacity)
            })
            .map(|(_, i)| i.id)
            .collect()
    }

    /// The load half of planning, for [`Planner::plan`] and for policies built on this one,
    /// from this tick's instance load forecasts in `predictions`. Instances in `avoid` get
    /// no segment and are not brought in from standby.
    pub fn plan_load(
        &mut self,
        host: &dyn HostView,
        predictions: &Predictions,
        avoid: &[InstanceId],
    ) -> Vec<Action> {
        let s = self.settings.clone();
        let tick = host.tick();
        if self.state.seen < s.warmup_ticks {
            self.state.seen += 1;
            return Vec::new();
        }
        if host.rejections().iter().any(|r| {
            matches!(
                r.reason,
                RejectionReason::MigrationLimit | RejectionReason::MoveBudgetExceeded
            )
        }) {
            return Vec::new();
        }
        let (columns, ops) = self.owned.this_tick(host);
        (self.tick_columns, self.tick_ops) = (Some(columns), ops);
        if let Some(back) = self.revert(host, avoid) {
            return vec![back];
        }
        // After a swap the history restarts short: no load move on a thin fit.
        if self.owned.filled() < (s.fit_points as usize / 2).max(s.warmup_ticks as usize) {
            return Vec::new();
        }
        let instances = host.instances();
        // (expected, high) per instance row, from the forecasts `predict` made this tick.
        let mut forecast: Vec<(f64, f64)> = instances
            .iter()
            .map(|i| {
                predictions
                    .load
                    .iter()
                    .find(|f| f.scope == Scope::Instance(i.id) && f.metric == Metric::Load)
                    .map(|f| (f.expected, f.high))
                    .unwrap_or((0.0, 0.0))
            })
            .collect();
        let mut active: Vec<usize> = (0..instances.len())
            .filter(|&i| instances[i].state == InstanceState::Active)
            .collect();
        if active.is_empty() {
            return Vec::new();
        }
        let segments = self
            .tick_columns
            .take()
            .unwrap_or_else(|| host.segment_columns());
        let ops = std::mem::take(&mut self.tick_ops);
        let seg_load = |j: usize| {
            let owner = segments.owners[j] as usize;
            let cap = instances
                .get(owner)
                .map(|i| i.capacity.max(f64::MIN_POSITIVE))
                .unwrap_or(1.0);
            ops.get(j).copied().filter(|x| x.is_finite()).unwrap_or(0.0) / cap
        };
        let mut actions = Vec::new();
        let mut moved: BTreeSet<usize> = BTreeSet::new();

        // Contingent pool: the fleet's forecast against what the active instances serve.
        // Load the sessions likely to leave take with them does not count.
        let capacity_unit = active
            .iter()
            .map(|&i| instances[i].capacity.max(f64::MIN_POSITIVE))
            .sum::<f64>()
            / active.len() as f64;
        let leaving = self.scores.leaving_ops() / capacity_unit;
        let near: f64 = (active.iter().map(|&i| forecast[i].0).sum::<f64>() - leaving).max(0.0);
        let serves = active.len() as f64 * s.capacity;
        // The fleet model's peak over its longer reach counts too: a standby comes in
        // before a peak the seasons (or the fleet's trend) predict, and does not go back
        // just before one.
        let peak = self.state.fleet.peak(s.fleet_ahead_buckets);
        let total = near.max(peak.map_or(0.0, |p| p.0));
        // The reason, written only when something is done.
        let why = || match peak {
            Some((p, ahead, model)) if p > near => format!(
                "fleet model {model} expects {p:.0} within {} ticks",
                u64::from(ahead) * u64::from(s.fleet_bucket_ticks)
            ),
            _ => format!("fleet forecast {near:.0}"),
        };
        if total > s.scale_out_at * serves {
            self.state.idle = 0;
            if let Some(standby) = (0..instances.len()).find(|&i| {
                instances[i].state == InstanceState::Standby && !avoid.contains(&instances[i].id)
            }) {
                host.log(
                    Level::Info,
                    &format!(
                        "{} > {:.0} of {} active instances: bringing in {}",
                        why(),
                        s.scale_out_at * serves,
                        active.len(),
                        instances[standby].name
                    ),
                );
                actions.push(Action::ActivateStandby(instances[standby].id));
                self.state.brought_in.insert(instances[standby].id);
                active.push(standby);
                forecast[standby] = (0.0, 0.0);
            }
        } else if total < s.scale_in_below * (active.len().saturating_sub(1)) as f64 * s.capacity {
            self.state.idle += 1;
            if self.state.idle >= s.idle_ticks
                && let Some(&back) = self
                    .state
                    .brought_in
                    .iter()
                    .find(|id| active.iter().any(|&i| instances[i].id == **id))
            {
                host.log(
                    Level::Info,
                    &format!("{} stayed low: returning instance {back} to standby", why()),
                );
                self.state.brought_in.remove(&back);
                self.state.idle = 0;
                actions.push(Action::DrainInstance(back));
                return actions;
            }
        } else {
            self.state.idle = 0;
        }

        // Sources: instances whose forecast's upper bound crosses capacity, hottest first.
        let mut sources: Vec<usize> = active
            .iter()
            .copied()
            .filter(|&i| {
                forecast[i].1 > s.capacity
                    && self
                        .state
                        .relieved_until
                        .get(&instances[i].id)
                        .is_none_or(|&until| tick >= until)
            })
            .collect();
        sources.sort_by(|&a, &b| forecast[b].1.total_cmp(&forecast[a].1));
        // Each instance's segment rows, so that a source's search reads only its own.
        // (Built only when something is to move: most ticks move nothing.)
        let mut by_owner: BTreeMap<InstanceId, Vec<usize>> = BTreeMap::new();
        if !sources.is_empty() || matches!(actions.first(), Some(Action::ActivateStandby(_))) {
            for (j, owner) in segments.owners.iter().enumerate() {
                by_owner.entry(*owner).or_default().push(j);
            }
        }
        let none = Vec::new();
        for src in sources {
            if moved.len() >= s.max_moves as usize {
                break;
            }
            let source = instances[src].id;
            // The segment that relieves most per byte moved.
            let best = by_owner
                .get(&source)
                .unwrap_or(&none)
                .iter()
                .copied()
                .filter(|&j| {
                    segments.migrating[j] == 0
                        && !moved.contains(&j)
                        && self
                            .state
                            .segment_cooldown
                            .get(&segments.ids[j])
                            .is_none_or(|&until| tick >= until)
                        && seg_load(j) > 0.0
                })
                .max_by(|&a, &b| {
                    let per_byte = |j: usize| seg_load(j) / (segments.bytes[j].max(1) as f64);
                    per_byte(a).total_cmp(&per_byte(b))
                });
            let Some(j) = best else { continue };
            let load = seg_load(j);
            // The destination with the most forecast headroom that stays under capacity.
            let dst = active
                .iter()
                .copied()
                .filter(|&d| {
                    d != src
                        && forecast[d].1 + load < s.capacity
                        && !avoid.contains(&instances[d].id)
                        && self.state.reverted.get(&segments.ids[j]) != Some(&instances[d].id)
                })
                .max_by(|&a, &b| {
                    (s.capacity - forecast[a].1).total_cmp(&(s.capacity - forecast[b].1))
                });
            let Some(dst) = dst else { continue };
            host.log(
                Level::Info,
                &format!(
                    "forecast {:.0} > capacity {:.0} on {} within {} ticks: moving segment {} to {}",
                    forecast[src].1,
                    s.capacity,
                    instances[src].name,
                    s.horizon_ticks,
                    segments.ids[j],
                    instances[dst].name
                ),
            );
            forecast[src].0 -= load;
            forecast[src].1 -= load;
            forecast[dst].0 += load;
            forecast[dst].1 += load;
            moved.insert(j);
            self.state
                .segment_cooldown
                .insert(segments.ids[j], tick + s.cooldown_ticks);
            self.state
                .relieved_until
                .insert(source, tick + s.relief_ticks);
            actions.push(Action::MoveSegment(MoveSegment {
                segment: segments.ids[j],
                target: instances[dst].id,
            }));
        }
        // A standby just brought in gets segments at once, from the hottest instances.
        if let Some(Action::ActivateStandby(new)) = actions.first().copied() {
            let new_row = instances.iter().position(|i| i.id == new).unwrap_or(0);
            let mut hottest = active.clone();
            hottest.retain(|&i| i != new_row);
            hottest.sort_by(|&a, &b| forecast[b].0.total_cmp(&forecast[a].0));
            for src in hottest {
                if moved.len() >= s.max_moves as usize {
                    break;
                }
                let j = by_owner
                    .get(&instances[src].id)
                    .unwrap_or(&none)
                    .iter()
                    .copied()
                    .filter(|&j| {
                        segments.migrating[j] == 0
                            && !moved.contains(&j)
                            && self.state.reverted.get(&segments.ids[j]) != Some(&new)
                    })
                    .max_by(|&a, &b| seg_load(a).total_cmp(&seg_load(b)));
                if let Some(j) = j {
                    moved.insert(j);
                    self.state
                        .segment_cooldown
                        .insert(segments.ids[j], tick + s.cooldown_ticks);
                    actions.push(Action::MoveSegment(MoveSegment {
                        segment: segments.ids[j],
                        target: new,
                    }));
                }
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_sdk::view::ViewSnapshot;

    /// A view where segment 1 moved from redis-0 to redis-1 (finished 40 s ago), and
    /// redis-1's p99 since is `after` µs; both were at 500 µs before.
    fn after_a_move(after: f64) -> ViewSnapshot {
        let mut view = ViewSnapshot::synthetic(3, 12, 16, 60);
        let now = view.now;
        view.segments[1].owner = 1;
        view.migrations.push(Migration {
            id: 7,
            segment: 1,
            source: 0,
            target: 1,
            phase: MigrationPhase::Watch,
            outcome: MigrationOutcome::Completed,
            started_at: now - 45_000,
            finished_at: Some(now - 40_000),
            bytes_moved: 100_000,
            detail: String::new(),
        });
        let p99 = view
            .metrics
            .instances
            .get_mut(&Metric::LatencyP99Us)
            .expect("synthetic p99");
        for row in 0..3 {
            for (t, v) in p99.row_mut(row).iter_mut().enumerate() {
                // Point t is (59 - t) s old; the move finished 40 s ago.
                *v = if row == 1 && t > 59 - 40 {
                    after
                } else {
                    500.0
                };
            }
        }
        view.reindex();
        view
    }

    fn warmed() -> Forecast {
        let mut f = Forecast::default();
        f.state.seen = f.settings.warmup_ticks;
        f
    }

    #[test]
    fn a_move_that_made_its_target_worse_goes_back_once() {
        let view = after_a_move(2000.0);
        let mut f = warmed();
        let p = f.predict(&view);
        let actions = f.plan_load(&view, &p, &[]);
        assert_eq!(
            actions,
            vec![Action::MoveSegment(MoveSegment {
                segment: 1,
                target: 0
            })]
        );
        // Judged once: the same record does not send it back again.
        let again = f.plan_load(&view, &p, &[]);
        assert!(
            !again
                .iter()
                .any(|a| matches!(a, Action::MoveSegment(m) if m.segment == 1)),
            "{again:?}"
        );
        assert_eq!(f.state.reverted.get(&1), Some(&1));
    }

    #[test]
    fn a_move_that_left_its_target_as_good_stays() {
        let view = after_a_move(550.0);
        let mut f = warmed();
        let p = f.predict(&view);
        let actions = f.plan_load(&view, &p, &[]);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::MoveSegment(m) if m.segment == 1 && m.target == 0)),
            "{actions:?}"
        );
        assert!(f.state.reverted.is_empty());
    }

    #[test]
    fn despike_drops_a_lone_spike_and_keeps_a_step() {
        let mut spiky = vec![10.0; 12];
        spiky[1] = 1000.0;
        spiky[6] = 1000.0;
        assert_eq!(despike(&spiky), vec![10.0; 12]);
        let step: Vec<f64> = (0..12).map(|t| if t < 6 { 10.0 } else { 50.0 }).collect();
        assert_eq!(despike(&step), step);
        // The last two points are not smoothed: a new level shows at once.
        let mut late = vec![10.0; 12];
        late[11] = 80.0;
        assert_eq!(despike(&late)[11], 80.0);
    }

    #[test]
    fn a_moved_segment_takes_its_history_along() {
        let mut view = ViewSnapshot::synthetic(2, 4, 16, 5);
        let before = owned_history(&view, 5);
        let moved = view
            .segments
            .iter()
            .position(|s| s.owner == 0)
            .expect("instance 0 owns a segment");
        view.segments[moved].owner = 1;
        view.reindex();
        let after = owned_history(&view, 5);
        let window = view.segments_window(Metric::Ops, 5);
        let capacity = |i: usize| view.instances[i].capacity;
        for t in 0..5 {
            let seg = window[moved * 5 + t];
            assert!(seg > 0.0, "the synthetic view has load on the segment");
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
            assert!(
                close(after[0][t], before[0][t] - seg / capacity(0)),
                "t {t}"
            );
            assert!(
                close(after[1][t], before[1][t] + seg / capacity(1)),
                "t {t}"
            );
        }
    }

    #[test]
    fn bad_settings_name_the_key() {
        for (toml, key) in [
            ("capacity = -1.0", "capacity"),
            ("confidence = 1.0", "confidence"),
            ("scale_in_below = 0.95", "scale_in_below"),
        ] {
            let err = Settings::parse(toml).expect_err(toml);
            assert!(err.contains(key), "{toml}: {err}");
        }
    }
}

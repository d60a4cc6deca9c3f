//! `threshold`: the classic reactive controller.
//!
//! When an instance's load (ops per capacity unit) stays above `high` for `ticks`
//! consecutive ticks, the policy moves that instance's hottest segment to the least-loaded
//! active instance. Hysteresis keeps it calm: the count resets only once load falls below
//! `low`, and an instance it has just relieved is left alone for `cooldown_ticks`.
//!
//! When the host refuses a move for lack of room (the concurrent-migration limit or the
//! move budget), it backs off for a tick.
//!
//! Its predictor half is a Holt forecast of every instance's load with a 95% interval,
//! which the planner does not use: reacting is the point of the baseline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shardcast_sdk::prelude::*;
use shardcast_sdk::stats::Holt;

/// Settings, given as TOML.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Load above which an instance counts as overloaded (ops/s per capacity unit).
    pub high: f64,
    /// Load below which the overload count resets. Must be below `high`.
    pub low: f64,
    /// Consecutive overloaded ticks before acting.
    pub ticks: u32,
    /// Ticks to leave an instance alone after moving a segment off it.
    pub cooldown_ticks: u64,
    /// Moves per tick at most.
    pub max_moves: u32,
    /// Forecast horizon in ticks for the predictor half.
    pub horizon_ticks: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            high: 70_000.0,
            low: 60_000.0,
            ticks: 3,
            cooldown_ticks: 10,
            max_moves: 1,
            horizon_ticks: 30,
        }
    }
}

impl Settings {
    /// Parse and check settings; errors name the offending key.
    pub fn parse(toml: &str) -> Result<Self, String> {
        let s: Settings = settings::parse(toml)?;
        if !(s.high.is_finite() && s.high > 0.0) {
            return Err(format!(
                "invalid settings: `high` must be a positive number, got {}",
                s.high
            ));
        }
        if !(s.low.is_finite() && s.low >= 0.0 && s.low < s.high) {
            return Err(format!(
                "invalid settings: `low` must be at least 0 and below `high` ({}), got {}",
                s.high, s.low
            ));
        }
        if s.ticks == 0 {
            return Err("invalid settings: `ticks` must be at least 1".into());
        }
        if s.max_moves == 0 {
            return Err("invalid settings: `max_moves` must be at least 1".into());
        }
        if s.horizon_ticks == 0 {
            return Err("invalid settings: `horizon_ticks` must be at least 1".into());
        }
        Ok(s)
    }
}

/// What the controller remembers between ticks, handed to a successor on hot swap.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Consecutive overloaded ticks per instance.
    pub over: BTreeMap<InstanceId, u32>,
    /// Tick until which each instance is left alone.
    pub cooldown_until: BTreeMap<InstanceId, u64>,
}

/// The reactive threshold controller.
#[derive(Default)]
pub struct Threshold {
    settings: Settings,
    state: State,
}

impl Policy for Threshold {
    fn describe(&self) -> PolicyInfo {
        info(
            "threshold",
            env!("CARGO_PKG_VERSION"),
            "Reactive: moves the hottest segment off an instance overloaded for N ticks.",
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
            serde_json::from_slice(state).map_err(|e| format!("bad threshold state: {e}"))?;
        Ok(())
    }
}

impl Predictor for Threshold {
    fn predict(&mut self, host: &dyn HostView) -> Predictions {
        let instances = host.instances();
        let points = host.retention().min(60);
        let window = host.instances_window(Metric::Load, points);
        let horizon = self.settings.horizon_ticks as usize;
        let horizon_ms = u64::from(host.interval_ms()) * horizon as u64;
        let load = instances
            .iter()
            .zip(window.chunks(points.max(1) as usize))
            .filter_map(|(instance, series)| {
                let holt = Holt::fit(0.5, 0.2, series);
                holt.interval(horizon, 0.95)
                    .forecast(Scope::Instance(instance.id), Metric::Load, horizon_ms)
                    .map(|mut f| {
                        // Load is never negative, however steep a fall the trend extrapolates.
                        f.expected = f.expected.max(0.0);
                        f.low = f.low.max(0.0);
                        f.high = f.high.max(f.expected);
                        f
                    })
            })
            .collect();
        Predictions {
            load,
            failures: Vec::new(),
            sessions: Vec::new(),
        }
    }
}

impl Planner for Threshold {
    fn plan(&mut self, host: &dyn HostView, _predictions: &Predictions) -> Vec<Action> {
        let s = &self.settings;
        let tick = host.tick();
        let instances = host.instances();
        let mut load: Vec<f64> = host
            .instances_latest(Metric::Load)
            .into_iter()
            .map(nan_to_zero)
            .collect();
        load.resize(instances.len(), 0.0);

        // Count consecutive overloaded ticks, with hysteresis between `low` and `high`.
        for (instance, &l) in instances.iter().zip(&load) {
            let over = self.state.over.entry(instance.id).or_insert(0);
            if l > s.high {
                *over += 1;
            } else if l < s.low {
                *over = 0;
            }
        }

        // Columns, not `segments()`: one bulk copy instead of 16,384 records.
        // Back off for a tick when the host refused a move for lack of room: asking again
        // at once would only be refused again.
        let refused = host.rejections();
        for r in &refused {
            host.log(Level::Debug, &r.message);
        }
        if refused.iter().any(|r| {
            matches!(
                r.reason,
                RejectionReason::MigrationLimit | RejectionReason::MoveBudgetExceeded
            )
        }) {
            return Vec::new();
        }

        let segments = host.segment_columns();
        let ops = host.segments_latest(Metric::Ops);
        let busy: Vec<InstanceId> = segments
            .owners
            .iter()
            .zip(&segments.migrating)
            .filter(|(_, m)| **m != 0)
            .map(|(o, _)| *o)
            .collect();
        let mut sources: Vec<usize> = (0..instances.len())
            .filter(|&i| {
                let id = instances[i].id;
                instances[i].state == InstanceState::Active
                    && self.state.over.get(&id).copied().unwrap_or(0) >= s.ticks
                    && self
                        .state
                        .cooldown_until
                        .get(&id)
                        .is_none_or(|&until| tick >= until)
                    && !busy.contains(&id)
            })
            .collect();
        sources.sort_by(|&a, &b| load[b].total_cmp(&load[a]));

        let mut actions = Vec::new();
        for src in sources.into_iter().take(s.max_moves as usize) {
            let source = instances[src].id;
            let hottest = (0..segments.ids.len().min(ops.len()))
                .filter(|&j| {
                    segments.owners[j] == source && segments.migrating[j] == 0 && ops[j].is_finite()
                })
                .max_by(|&a, &b| ops[a].total_cmp(&ops[b]));
            let Some(j) = hottest else {
                continue;
            };
            let (segment, seg_ops) = (segments.ids[j], ops[j]);
            let target = (0..instances.len())
                .filter(|&i| i != src && instances[i].state == InstanceState::Active)
                .min_by(|&a, &b| load[a].total_cmp(&load[b]));
            let Some(dst) = target else { continue };
            let capacity = |i: usize| instances[i].capacity.max(f64::MIN_POSITIVE);
            // Moving must help: the target must end up below the source's new load.
            if load[dst] + seg_ops / capacity(dst) >= load[src] {
                continue;
            }
            load[src] -= seg_ops / capacity(src);
            load[dst] += seg_ops / capacity(dst);
            actions.push(Action::MoveSegment(MoveSegment {
                segment,
                target: instances[dst].id,
            }));
            self.state.over.insert(source, 0);
            self.state
                .cooldown_until
                .insert(source, tick + s.cooldown_ticks);
        }
        actions
    }
}

fn nan_to_zero(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

shardcast_sdk::export_policy!(Threshold);

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_sdk::view::{Dense, ViewSnapshot};

    /// Three instances, 6 segments; instance 0 carries `hot` load, the others 1,000.
    fn view(hot: f64, tick: u64) -> ViewSnapshot {
        let mut v = ViewSnapshot::synthetic(3, 6, 1, 4);
        v.tick = tick;
        let loads = [hot, 1_000.0, 1_000.0];
        let mut load = Dense::nan(3, 4);
        for (i, l) in loads.iter().enumerate() {
            load.row_mut(i).fill(*l);
        }
        v.metrics.instances.insert(Metric::Load, load);
        let mut ops = Dense::nan(6, 4);
        for row in 0..6 {
            ops.row_mut(row).fill(100.0 * (row as f64 + 1.0));
        }
        v.metrics.segments.insert(Metric::Ops, ops);
        v
    }

    fn configured(toml: &str) -> Threshold {
        let mut t = Threshold::default();
        t.configure(toml).expect("valid settings");
        t
    }

    #[test]
    fn acts_only_after_n_overloaded_ticks() {
        let mut t = configured("high = 10000.0\nlow = 8000.0\nticks = 3");
        let p = Predictions::empty();
        assert!(t.plan(&view(20_000.0, 1), &p).is_empty());
        assert!(t.plan(&view(20_000.0, 2), &p).is_empty());
        let actions = t.plan(&view(20_000.0, 3), &p);
        // Instance 0 owns segments 0 and 3; segment 3 (ops 400) is the hottest.
        assert_eq!(
            actions,
            vec![Action::MoveSegment(MoveSegment {
                segment: 3,
                target: 1
            })]
        );
    }

    #[test]
    fn hysteresis_keeps_the_count_between_low_and_high() {
        let mut t = configured("high = 10000.0\nlow = 8000.0\nticks = 2");
        let p = Predictions::empty();
        assert!(t.plan(&view(20_000.0, 1), &p).is_empty());
        assert!(
            t.plan(&view(9_000.0, 2), &p).is_empty(),
            "between low and high: no reset, no count"
        );
        assert_eq!(t.plan(&view(20_000.0, 3), &p).len(), 1);
        let mut t = configured("high = 10000.0\nlow = 8000.0\nticks = 2");
        t.plan(&view(20_000.0, 1), &p);
        t.plan(&view(5_000.0, 2), &p);
        assert!(
            t.plan(&view(20_000.0, 3), &p).is_empty(),
            "below low resets the count"
        );
    }

    #[test]
    fn cooldown_leaves_a_relieved_instance_alone() {
        let mut t = configured("high = 10000.0\nlow = 8000.0\nticks = 1\ncooldown_ticks = 5");
        let p = Predictions::empty();
        assert_eq!(t.plan(&view(20_000.0, 1), &p).len(), 1);
        for tick in 2..6 {
            assert!(
                t.plan(&view(20_000.0, tick), &p).is_empty(),
                "tick {tick} in cooldown"
            );
        }
        assert_eq!(t.plan(&view(20_000.0, 6), &p).len(), 1);
    }

    #[test]
    fn settings_are_validated_with_the_key_named() {
        let mut t = Threshold::default();
        for (toml, key) in [
            ("high = -1.0", "`high`"),
            ("high = 10.0\nlow = 20.0", "`low`"),
            ("ticks = 0", "`ticks`"),
            ("max_moves = 0", "`max_moves`"),
            ("hgh = 1.0", "hgh"),
        ] {
            let err = t.configure(toml).expect_err(toml);
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn state_survives_snapshot_and_restore() {
        let mut t = configured("high = 10000.0\nlow = 8000.0\nticks = 3");
        let p = Predictions::empty();
        t.plan(&view(20_000.0, 1), &p);
        t.plan(&view(20_000.0, 2), &p);
        let mut successor = configured("high = 10000.0\nlow = 8000.0\nticks = 3");
        successor.restore(&t.snapshot()).expect("restore");
        assert_eq!(
            successor.plan(&view(20_000.0, 3), &p).len(),
            1,
            "count carried over"
        );
        assert!(successor.restore(b"not json").is_err());
    }

    #[test]
    fn predicts_a_finite_load_interval_per_instance() {
        let mut t = Threshold::default();
        let p = t.predict(&view(20_000.0, 1));
        assert_eq!(p.load.len(), 3);
        assert!(
            p.load
                .iter()
                .all(|f| f.low <= f.expected && f.expected <= f.high)
        );
    }
}

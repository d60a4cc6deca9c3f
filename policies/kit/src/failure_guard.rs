//! The failure guard (`failure-guard`): forecasts each instance's failure risk and empties it before it fails.
//!
//! **Predict.** Each active instance's probability of failing within the horizon comes from
//! a logistic model over features the view carries:
//! 1. latency level: ln(p99 now / the instance's own baseline p99);
//! 2. latency trend: the rise of the last ten points over the ten before, per baseline;
//! 3. latency anomaly: the robust z-score of the last p99 in its window, over 10, in [0, 1];
//! 4. error rate, in percent of operations;
//! 5. CPU per operation against the baseline's, as ln(ratio): a sick instance burns more
//!    CPU for the same work, an overloaded one more CPU for more work;
//! 6. memory growth over the window, in tenths;
//! 7. restarts and 8. crashes in the failure history;
//! 9. load growth: ln(ops now / baseline ops), weighted negatively, so that latency and
//!    CPU that more traffic explains (an overload, not a sickness) do not count as risk.
//!
//! Baselines are slow averages kept only while the instance looks healthy, so a slow
//! degradation does not become the new normal. Weights, bias and thresholds come from
//! settings (`shardcast train` writes them). An announced maintenance is a certain failure.
//!
//! **Plan.** When an instance's risk crosses `threshold` (or maintenance is announced), it
//! is drained: the executor moves every segment off and leaves it standby. Risk must
//! stay above the threshold for `ticks` ticks first, so one noisy point moves nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shardcast_sdk::prelude::*;
use shardcast_sdk::stats::Logistic;
use shardcast_sdk::stats::{mad_score, median};

/// The features, in the order of the weights.
pub const FEATURES: [&str; 9] = [
    "latency_level",
    "latency_trend",
    "latency_anomaly",
    "error_percent",
    "cpu_per_op_growth",
    "memory_growth",
    "restarts",
    "crashes",
    "load_growth",
];

/// Settings, given as TOML.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// One weight per feature, in the order of [`FEATURES`].
    pub weights: Vec<f64>,
    /// The model's intercept.
    pub bias: f64,
    /// Risk at or above which an instance is evacuated.
    pub threshold: f64,
    /// Consecutive ticks at or above the threshold before acting.
    pub ticks: u32,
    /// How far ahead the risk is stated, in seconds.
    pub horizon_s: u64,
    /// Weight of a new point in the healthy baselines (per tick).
    pub baseline_alpha: f64,
    /// Seconds after an instance comes back during which its risk is not acted on (it
    /// warms up).
    pub grace_s: u64,
    /// Seconds an instance this policy drained stays out of service unless it restarts.
    pub quarantine_s: u64,
    /// Give an instance that came back its share of segments again (off when another
    /// policy balances load, as in `predictive`).
    pub refill: bool,
    /// Load (ops/s per capacity unit, as the `load` metric) the instances left may carry
    /// after a drain; a standby is activated when they would carry more.
    pub max_load: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            weights: vec![1.5, 1.0, 0.5, 2.0, 3.0, 0.0, 0.3, 0.3, -3.5],
            bias: -5.0,
            threshold: 0.5,
            ticks: 2,
            horizon_s: 300,
            baseline_alpha: 0.005,
            grace_s: 60,
            quarantine_s: 300,
            refill: true,
            max_load: 60_000.0,
        }
    }
}

impl Settings {
    /// Parse and check settings; errors name the offending key.
    pub fn parse(toml: &str) -> Result<Self, String> {
        let s: Settings = settings::parse(toml)?;
        if s.weights.len() != FEATURES.len() || s.weights.iter().any(|w| !w.is_finite()) {
            return Err(format!(
                "invalid settings: `weights` must be {} finite numbers ({}), got {:?}",
                FEATURES.len(),
                FEATURES.join(", "),
                s.weights
            ));
        }
        if !s.bias.is_finite() {
            return Err("invalid settings: `bias` must be a finite number".into());
        }
        if !(s.threshold > 0.0 && s.threshold < 1.0) {
            return Err(format!(
                "invalid settings: `threshold` must be in (0, 1), got {}",
                s.threshold
            ));
        }
        if s.ticks == 0 {
            return Err("invalid settings: `ticks` must be at least 1".into());
        }
        if !(s.baseline_alpha > 0.0 && s.baseline_alpha <= 1.0) {
            return Err(format!(
                "invalid settings: `baseline_alpha` must be in (0, 1], got {}",
                s.baseline_alpha
            ));
        }
        Ok(s)
    }

    fn model(&self) -> Logistic {
        Logistic {
            weights: self.weights.clone(),
            bias: self.bias,
        }
    }
}

/// One instance's healthy baselines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// p99 latency, µs.
    pub p99: f64,
    /// CPU.
    pub cpu: f64,
    /// Operations per second.
    #[serde(default)]
    pub ops: f64,
}

/// What the policy remembers, handed to a successor on hot swap.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Healthy baselines per instance.
    pub baselines: BTreeMap<InstanceId, Baseline>,
    /// Consecutive ticks at or above the threshold, per instance.
    pub over: BTreeMap<InstanceId, u32>,
    /// Last risk per instance.
    pub risk: BTreeMap<InstanceId, f64>,
    /// When each instance was last seen becoming active (ms): a warm-up starts there.
    #[serde(default)]
    pub active_since: BTreeMap<InstanceId, u64>,
    /// Instances this policy drained, and when (ms): kept out of service until they have
    /// restarted since, or `quarantine_s` has passed.
    #[serde(default)]
    pub drained_at: BTreeMap<InstanceId, u64>,
}

/// The failure guard.
#[derive(Default)]
pub struct FailureGuard {
    settings: Settings,
    state: State,
    /// The feature vectors of the last `predict`, per instance modelled (for training).
    last_features: BTreeMap<InstanceId, [f64; 9]>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn last_finite(series: &[f64]) -> Option<f64> {
    series.iter().rev().copied().find(|x| x.is_finite())
}

fn mean(xs: &[f64]) -> Option<f64> {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// An instance's series over the window, one per metric, oldest first.
pub struct Window<'a> {
    /// p99 latency, µs.
    pub p99: &'a [f64],
    /// Operations per second.
    pub ops: &'a [f64],
    /// Errors per second.
    pub errors: &'a [f64],
    /// CPU.
    pub cpu: &'a [f64],
    /// Memory, bytes.
    pub memory: &'a [f64],
}

/// The feature vector of one instance, in the order of [`FEATURES`].
pub fn features(w: &Window<'_>, baseline: &Baseline, restarts: usize, crashes: usize) -> [f64; 9] {
    let p99 = last_finite(w.p99).unwrap_or(baseline.p99);
    let base = baseline.p99.max(1.0);
    let level = (p99.max(1.0) / base).ln().max(0.0);
    let n = w.p99.len();
    let trend = if n >= 20 {
        match (mean(&w.p99[n - 10..]), mean(&w.p99[n - 20..n - 10])) {
            (Some(a), Some(b)) => ((a - b) / base).max(0.0),
            _ => 0.0,
        }
    } else {
        0.0
    };
    let anomaly = finite(mad_score(p99, w.p99))
        .map(|z| (z / 10.0).clamp(0.0, 1.0))
        .unwrap_or(if p99 > median(w.p99) { 1.0 } else { 0.0 });
    let ops = last_finite(w.ops).unwrap_or(0.0);
    let load_growth = if baseline.ops > 0.0 {
        (ops.max(1.0) / baseline.ops).ln().max(0.0)
    } else {
        0.0
    };
    let errors = last_finite(w.errors).unwrap_or(0.0);
    let error_percent = if ops > 0.0 {
        (100.0 * errors / ops).min(100.0)
    } else {
        0.0
    };
    let cpu = last_finite(w.cpu).unwrap_or(baseline.cpu);
    let cpu_per_op_growth = if ops > 0.0 && baseline.ops > 0.0 && baseline.cpu > 0.0 {
        ((cpu / ops) / (baseline.cpu / baseline.ops)).ln().max(0.0)
    } else {
        0.0
    };
    let memory_growth = match (
        w.memory.iter().copied().find(|x| x.is_finite() && *x > 0.0),
        last_finite(w.memory),
    ) {
        (Some(first), Some(last)) => ((last - first) / first * 10.0).max(0.0),
        _ => 0.0,
    };
    [
        level,
        trend,
        anomaly,
        error_percent,
        cpu_per_op_growth,
        memory_growth,
        restarts as f64,
        crashes as f64,
        load_growth,
    ]
}

/// Instances whose latest failure record is an announced maintenance not yet over.
fn maintenance_pending(failures: &[Failure]) -> Vec<InstanceId> {
    let mut latest: BTreeMap<InstanceId, FailureKind> = BTreeMap::new();
    let mut sorted: Vec<&Failure> = failures.iter().collect();
    sorted.sort_by_key(|f| f.at);
    for f in sorted {
        latest.insert(f.instance, f.kind);
    }
    latest
        .into_iter()
        .filter(|(_, k)| *k == FailureKind::Maintenance)
        .map(|(i, _)| i)
        .collect()
}

impl Policy for FailureGuard {
    fn describe(&self) -> PolicyInfo {
        info(
            "failure-guard",
            env!("CARGO_PKG_VERSION"),
            "Predictive: forecasts each instance's failure risk and drains it before it fails.",
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
            serde_json::from_slice(state).map_err(|e| format!("bad failure-guard state: {e}"))?;
        Ok(())
    }
}

impl Predictor for FailureGuard {
    fn predict(&mut self, host: &dyn HostView) -> Predictions {
        let instances = host.instances();
        let points = host.retention().clamp(1, 60);
        let rows = |m: Metric| host.instances_window(m, points);
        let (p99, ops, errors, cpu, memory) = (
            rows(Metric::LatencyP99Us),
            rows(Metric::Ops),
            rows(Metric::Errors),
            rows(Metric::Cpu),
            rows(Metric::MemoryBytes),
        );
        let p = points as usize;
        let row = |v: &'_ [f64], i: usize| -> Vec<f64> {
            v.get(i * p..(i + 1) * p)
                .map(<[f64]>::to_vec)
                .unwrap_or_default()
        };
        let failures = host.failures(None);
        let announced = maintenance_pending(&failures);
        let model = self.settings.model();
        let horizon_ms = self.settings.horizon_s * 1000;
        let alpha = self.settings.baseline_alpha;
        let mut out = Vec::new();
        self.last_features.clear();
        for (i, instance) in instances.iter().enumerate() {
            if instance.state != InstanceState::Active && instance.state != InstanceState::Draining
            {
                // Out of service: what it looked like before says nothing about later.
                self.state.over.remove(&instance.id);
                self.state.baselines.remove(&instance.id);
                self.state.active_since.remove(&instance.id);
                self.state.risk.remove(&instance.id);
                continue;
            }
            let since = *self
                .state
                .active_since
                .entry(instance.id)
                .or_insert(host.now());
            if host.now().saturating_sub(since) < self.settings.grace_s * 1000 {
                // Warming up: it joins the model once its series mean something.
                self.state.baselines.remove(&instance.id);
                continue;
            }
            // Only the points since it became active: what a standby (idle, or not yet
            // measured) looked like is no baseline and no trend.
            let fresh =
                (host.now().saturating_sub(since) / u64::from(host.interval_ms().max(1))) as usize;
            let since_active = |v: &[f64]| -> Vec<f64> {
                let rows = row(v, i);
                rows[rows.len().saturating_sub(fresh.max(1))..].to_vec()
            };
            let (wp, wo, we, wc, wm) = (
                since_active(&p99),
                since_active(&ops),
                since_active(&errors),
                since_active(&cpu),
                since_active(&memory),
            );
            let positive = |v: &[f64]| -> Vec<f64> {
                v.iter()
                    .copied()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .collect()
            };
            let baseline = *self.state.baselines.entry(instance.id).or_insert_with(|| {
                let ops = finite(median(&positive(&wo))).unwrap_or(0.0);
                // CPU per operation is a ratio of the same point's values: medians taken
                // apart come from different points and mean nothing together.
                let per_op: Vec<f64> = wc
                    .iter()
                    .zip(&wo)
                    .filter(|(c, o)| c.is_finite() && o.is_finite() && **o > 0.0)
                    .map(|(c, o)| c / o)
                    .collect();
                Baseline {
                    p99: finite(median(&positive(&wp))).unwrap_or(1000.0),
                    cpu: finite(median(&per_op)).map_or(0.0, |r| r * ops),
                    ops,
                }
            });
            let restarts = failures
                .iter()
                .filter(|f| f.instance == instance.id && f.kind == FailureKind::Restart)
                .count();
            let crashes = failures
                .iter()
                .filter(|f| f.instance == instance.id && f.kind == FailureKind::Crash)
                .count();
            let x = features(
                &Window {
                    p99: &wp,
                    ops: &wo,
                    errors: &we,
                    cpu: &wc,
                    memory: &wm,
                },
                &baseline,
                restarts,
                crashes,
            );
            self.last_features.insert(instance.id, x);
            let mut risk = model.score(&x);
            if announced.contains(&instance.id) {
                risk = 1.0;
            }
            // Baselines learn only from healthy points: a low risk, and values near the
            // baseline already, so that a slow degradation never becomes the new normal.
            if risk < self.settings.threshold / 2.0
                && let Some(b) = self.state.baselines.get_mut(&instance.id)
            {
                if let Some(v) = last_finite(&wp)
                    && v < b.p99 * 1.25
                {
                    b.p99 += alpha * (v - b.p99);
                }
                // Ops learn on their own; CPU per operation learns as a ratio, stated at the
                // baseline's ops. A baseline taken while idle (no ops, or no CPU reading) is
                // seeded again from the first healthy point that has both.
                let (c, o) = (last_finite(&wc), last_finite(&wo));
                match (c, o) {
                    (Some(c), Some(o)) if o > 0.0 && (b.ops <= 0.0 || b.cpu <= 0.0) => {
                        b.ops = o;
                        b.cpu = c;
                    }
                    (Some(c), Some(o)) if o > 0.0 => {
                        let per_op = b.cpu / b.ops;
                        let now = c / o;
                        b.ops += alpha * (o - b.ops);
                        let learned = if now < per_op * 1.25 {
                            per_op + alpha * (now - per_op)
                        } else {
                            per_op
                        };
                        b.cpu = learned * b.ops;
                    }
                    (_, Some(o)) if o > 0.0 => b.ops += alpha * (o - b.ops),
                    _ => {}
                }
            }
            self.state.risk.insert(instance.id, risk);
            out.push(FailureRisk {
                instance: instance.id,
                horizon_ms,
                probability: risk.clamp(0.0, 1.0),
            });
        }
        Predictions {
            load: Vec::new(),
            failures: out,
            sessions: Vec::new(),
        }
    }
}

impl Planner for FailureGuard {
    fn plan(&mut self, host: &dyn HostView, predictions: &Predictions) -> Vec<Action> {
        self.plan_guard(host, predictions, &[])
    }
}

impl FailureGuard {
    /// Plan the evacuations. Instances in `overloaded` carry more load than they serve
    /// well: their latency is explained by load, which moving load cures, so their risk
    /// does not drain them (an announced maintenance still does).
    pub fn plan_guard(
        &mut self,
        host: &dyn HostView,
        predictions: &Predictions,
        overloaded: &[InstanceId],
    ) -> Vec<Action> {
        let instances = host.instances();
        let failures = host.failures(None);
        let now = host.now();
        let grace_ms = self.settings.grace_s * 1000;
        let just_back = |id: InstanceId| {
            failures.iter().any(|f| {
                f.instance == id
                    && f.kind == FailureKind::Restart
                    && now.saturating_sub(f.at) < grace_ms
            })
        };
        let announced = maintenance_pending(&failures);
        let ops = host.instances_latest(Metric::Ops);
        let ops_of = |i: usize| ops.get(i).copied().filter(|x| x.is_finite()).unwrap_or(0.0);
        let mut active: Vec<usize> = (0..instances.len())
            .filter(|&i| instances[i].state == InstanceState::Active)
            .collect();
        let quarantined = self.quarantined(host);
        // Standbys fit to serve: none with maintenance pending, none drained for risk.
        let mut standby: Vec<usize> = (0..instances.len())
            .filter(|&i| {
                instances[i].state == InstanceState::Standby
                    && !announced.contains(&instances[i].id)
                    && !quarantined.contains(&instances[i].id)
            })
            .collect();
        let mut draining = instances
            .iter()
            .filter(|i| i.state == InstanceState::Draining)
            .count();
        let mut actions = Vec::new();
        for risk in &predictions.failures {
            let over = self.state.over.entry(risk.instance).or_insert(0);
            if risk.probability >= self.settings.threshold {
                *over += 1;
            } else {
                *over = 0;
            }
            let Some(i) = instances.iter().position(|x| x.id == risk.instance) else {
                continue;
            };
            // Certain only when announced: a saturated model is still a model.
            let certain = announced.contains(&risk.instance);
            let due = *over >= self.settings.ticks
                && !just_back(risk.instance)
                && !overloaded.contains(&risk.instance);
            if instances[i].state != InstanceState::Active || !(due || certain) {
                continue;
            }
            // One drain at a time, unless the failure is certain: a fleet under strain
            // must not empty instance after instance.
            if draining > 0 && !certain {
                continue;
            }
            // The rest of the fleet must be able to take the load, with a standby if need be.
            let total: f64 = active.iter().map(|&a| ops_of(a)).sum();
            let room = |set: &[usize]| -> f64 {
                set.iter()
                    .filter(|&&a| a != i)
                    .map(|&a| instances[a].capacity)
                    .sum::<f64>()
                    * self.settings.max_load
            };
            // Standbys are taken from a copy, and kept taken only if the drain goes ahead.
            let mut spare = standby.clone();
            let mut extra = Vec::new();
            while total > room(&[active.clone(), extra.clone()].concat()) {
                let Some(s) = spare.pop() else { break };
                extra.push(s);
            }
            if total > room(&[active.clone(), extra.clone()].concat()) && !certain {
                host.log(
                    Level::Info,
                    &format!(
                        "risk {:.2} on {}, but the rest of the fleet cannot take its load; staying",
                        risk.probability, instances[i].name
                    ),
                );
                continue;
            }
            standby = spare;
            for &s in &extra {
                actions.push(Action::ActivateStandby(instances[s].id));
                active.push(s);
            }
            host.log(
                Level::Info,
                &format!(
                    "risk {:.2} on {}: draining it before it fails",
                    risk.probability, instances[i].name
                ),
            );
            actions.push(Action::DrainInstance(instances[i].id));
            self.state.drained_at.insert(instances[i].id, now);
            active.retain(|&a| a != i);
            draining += 1;
        }
        if self.settings.refill && actions.is_empty() && draining == 0 && !self.anyone_at_risk() {
            actions.extend(self.refill(host));
        }
        actions
    }
}

impl FailureGuard {
    /// The feature vectors the last `predict` computed, per instance it modelled, in the
    /// order of [`FEATURES`]: what `shardcast train` fits the weights on.
    pub fn last_features(&self) -> &BTreeMap<InstanceId, [f64; 9]> {
        &self.last_features
    }

    /// Instances this policy drained that have neither restarted since nor served their
    /// quarantine: no segment should go to them, no standby activation should pick them.
    pub fn quarantined(&mut self, host: &dyn HostView) -> Vec<InstanceId> {
        let failures = host.failures(None);
        let now = host.now();
        let quarantine_ms = self.settings.quarantine_s * 1000;
        self.state.drained_at.retain(|id, at| {
            let restarted = failures
                .iter()
                .any(|f| f.instance == *id && f.kind == FailureKind::Restart && f.at > *at);
            !restarted && now.saturating_sub(*at) < quarantine_ms
        });
        self.state.drained_at.keys().copied().collect()
    }

    /// Whether the instance shows a sickness that load does not explain: each operation
    /// costs more CPU than its baseline (by 35 % or more), or over 1 % of operations fail.
    /// An overload raises latency, not the cost of an operation.
    pub fn sick_beyond_load(&self, id: InstanceId) -> bool {
        self.last_features
            .get(&id)
            .is_some_and(|x| x[4] >= 0.3 || x[3] >= 1.0)
    }

    /// Instances whose last risk is at least half the threshold.
    pub fn worried(&self) -> Vec<InstanceId> {
        self.state
            .risk
            .iter()
            .filter(|(_, r)| **r >= self.settings.threshold / 2.0)
            .map(|(id, _)| *id)
            .collect()
    }

    /// True while any instance's last risk is at least half the threshold.
    pub fn anyone_at_risk(&self) -> bool {
        self.state
            .risk
            .values()
            .any(|r| *r >= self.settings.threshold / 2.0)
    }

    /// Give an instance that came back (after a drain or an outage) its share again: move
    /// the hottest segment of the instance owning the most to the one owning the fewest,
    /// while the fewest is under three quarters of the mean. Backs off for a tick when the
    /// host says the move budget or the migration limit is reached.
    fn refill(&mut self, host: &dyn HostView) -> Vec<Action> {
        let quarantined = self.quarantined(host);
        if host.rejections().iter().any(|r| {
            matches!(
                r.reason,
                RejectionReason::MigrationLimit | RejectionReason::MoveBudgetExceeded
            )
        }) {
            return Vec::new();
        }
        let instances = host.instances();
        let active: Vec<InstanceId> = instances
            .iter()
            .filter(|i| i.state == InstanceState::Active && !quarantined.contains(&i.id))
            .map(|i| i.id)
            .collect();
        if active.len() < 2 {
            return Vec::new();
        }
        let segments = host.segment_columns();
        if segments.migrating.iter().any(|m| *m != 0) {
            return Vec::new();
        }
        let owned = |id: InstanceId| segments.owners.iter().filter(|o| **o == id).count();
        let mean = segments.ids.len() as f64 / active.len() as f64;
        let (Some(&fewest), Some(&most)) = (
            active.iter().min_by_key(|&&i| owned(i)),
            active.iter().max_by_key(|&&i| owned(i)),
        ) else {
            return Vec::new();
        };
        if owned(fewest) as f64 >= 0.75 * mean || owned(most) <= owned(fewest) + 1 {
            return Vec::new();
        }
        let ops = host.segments_latest(Metric::Ops);
        let hottest = (0..segments.ids.len())
            .filter(|&j| segments.owners[j] == most)
            .max_by(|&a, &b| {
                let v = |j: usize| ops.get(j).copied().filter(|x| x.is_finite()).unwrap_or(0.0);
                v(a).total_cmp(&v(b))
            });
        hottest
            .map(|j| {
                vec![Action::MoveSegment(MoveSegment {
                    segment: segments.ids[j],
                    target: fewest,
                })]
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_degrading_instance_scores_high_and_a_steady_one_low() {
        let model = Settings::default().model();
        let base = Baseline {
            p99: 1000.0,
            cpu: 30.0,
            ops: 50_000.0,
        };
        let steady = vec![1000.0; 60];
        let ops = vec![50_000.0; 60];
        let cpu = vec![30.0; 60];
        let mem = vec![1e9; 60];
        let calm = features(
            &Window {
                p99: &steady,
                ops: &ops,
                errors: &[0.0; 60],
                cpu: &cpu,
                memory: &mem,
            },
            &base,
            0,
            0,
        );
        assert!(model.score(&calm) < 0.05, "{calm:?}");
        let rising: Vec<f64> = (0..60).map(|i| 1000.0 + 60.0 * i as f64).collect();
        let hot_cpu: Vec<f64> = (0..60).map(|i| 30.0 + 0.5 * i as f64).collect();
        let errors: Vec<f64> = (0..60).map(|i| 50_000.0 * 0.0005 * i as f64).collect();
        let sick = features(
            &Window {
                p99: &rising,
                ops: &ops,
                errors: &errors,
                cpu: &hot_cpu,
                memory: &mem,
            },
            &base,
            0,
            0,
        );
        assert!(model.score(&sick) > 0.9, "{sick:?}");
    }

    #[test]
    fn bad_settings_name_the_key() {
        for (toml, key) in [
            ("weights = [1.0]", "weights"),
            ("threshold = 1.5", "threshold"),
            ("ticks = 0", "ticks"),
        ] {
            let err = Settings::parse(toml).expect_err(toml);
            assert!(err.contains(key), "{toml}: {err}");
        }
    }
}

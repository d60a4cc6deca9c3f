//! What a simulation run shows: SLO violation, imbalance, churn, failed and lost requests,
//! failure lead times and prediction quality, and the policy's tick time.
//!
//! A [`Report`] is plain data (JSON via serde), renders as a readable table
//! ([`std::fmt::Display`]), and carries a downsampled timeline for the SVG chart.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::sim::StepOutcome;
use crate::types::{Action, InstanceId, Predictions, SegmentId, SessionId};
use crate::validate::Verdict;

/// Most timeline points kept for the chart.
const TIMELINE_POINTS: usize = 2000;
/// A segment moved back within this many seconds counts as thrash.
pub const THRASH_WINDOW_S: f64 = 600.0;
/// A failure prediction counts as positive at this probability or above.
pub const POSITIVE: f64 = 0.5;

/// One instance going down, and how well the policy saw it coming.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownEvent {
    /// The instance.
    pub instance: InstanceId,
    /// When, in seconds from the start.
    pub at_s: f64,
    /// Seconds from the first evacuation (a move off the instance, or a drain of it) in
    /// the hour before, to the event; none if nothing was evacuated.
    pub lead_s: Option<f64>,
}

/// The policy's time per tick (wall clock; excluded from comparisons of runs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Mean, in µs.
    pub mean_us: f64,
    /// 99th percentile, in µs.
    pub p99_us: f64,
    /// Worst, in µs.
    pub max_us: f64,
}

/// Per-instance load over time, and the events to mark on it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Sample times, in seconds.
    pub t_s: Vec<f64>,
    /// Utilisation (ops / capacity ops) per instance at each sample; none when not serving.
    pub load: Vec<Vec<Option<f64>>>,
    /// Fleet p99 latency at each sample, in µs.
    pub p99_us: Vec<f64>,
    /// Migrations started: (seconds, segment, target).
    pub moves: Vec<(f64, SegmentId, InstanceId)>,
    /// Instances going down: (seconds, instance).
    pub downs: Vec<(f64, InstanceId)>,
}

/// The outcome of one scenario run against one policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Policy `name@version`.
    pub policy: String,
    /// Seed used.
    pub seed: u64,
    /// Ticks run.
    pub ticks: u64,
    /// The SLO's p99 target, in µs.
    pub slo_p99_us: f64,
    /// Seconds in which the fleet p99 was over the target.
    pub slo_violation_s: f64,
    /// Worst max/mean load over active instances.
    pub peak_imbalance: f64,
    /// Mean of max/mean load over the run.
    pub mean_imbalance: f64,
    /// Migrations started by the policy.
    pub moves: u64,
    /// Migrations started by the executor for drains.
    pub drain_moves: u64,
    /// Bytes moved by completed migrations.
    pub bytes_moved: u64,
    /// Segments moved back within [`THRASH_WINDOW_S`].
    pub thrash: u64,
    /// Seconds from the start to the policy's first move, if any.
    pub first_move_s: Option<f64>,
    /// Actions the validator refused.
    pub rejected: u64,
    /// Faults contained (compiled policies only).
    pub faults: u64,
    /// Requests served.
    pub requests_served: f64,
    /// Requests failed (instance down, queue timeout, injected errors).
    pub requests_failed: f64,
    /// Acknowledged writes lost in crashes.
    pub writes_lost: f64,
    /// Requests held by cutovers.
    pub requests_held: f64,
    /// Instances going down, with lead times.
    pub down_events: Vec<DownEvent>,
    /// Share of positive failure predictions followed by the instance going down within
    /// the horizon; none without positive predictions.
    pub prediction_precision: Option<f64>,
    /// Share of down events preceded by a positive prediction within its horizon; none
    /// without down events.
    pub prediction_recall: Option<f64>,
    /// Sessions that disconnected.
    #[serde(default)]
    pub sessions_left: u64,
    /// Share of positive churn predictions (session health) followed by the session
    /// disconnecting within the horizon; none without positive predictions.
    #[serde(default)]
    pub churn_precision: Option<f64>,
    /// Share of disconnects preceded by a positive churn prediction within its horizon;
    /// none without disconnects.
    #[serde(default)]
    pub churn_recall: Option<f64>,
    /// Policy time per tick.
    pub timing: Timing,
    /// Data for the chart.
    pub timeline: Timeline,
}

impl Report {
    /// The names of the fields in which two reports differ, wall-clock timing aside.
    pub fn differences(&self, other: &Report) -> Vec<String> {
        let value = |r: &Report| serde_json::to_value(r.without_timing()).unwrap_or_default();
        let (a, b) = (value(self), value(other));
        match (a.as_object(), b.as_object()) {
            (Some(a), Some(b)) => a
                .iter()
                .filter(|(k, v)| b.get(*k) != Some(*v))
                .map(|(k, v)| {
                    format!(
                        "{k}: {v} vs {}",
                        b.get(k).map(|x| x.to_string()).unwrap_or_default()
                    )
                    .chars()
                    .take(300)
                    .collect()
                })
                .collect(),
            _ => vec!["not comparable".into()],
        }
    }

    /// The report with wall-clock timing removed, for comparing runs.
    pub fn without_timing(&self) -> Report {
        Report {
            timing: Timing::default(),
            ..self.clone()
        }
    }
}

/// Of `positives` (t, id, horizon s), how many were followed by their id's event within
/// the horizon; of `events` (t, id), how many a positive preceded within its horizon.
fn hits_and_seen<Id: Copy + Eq + std::hash::Hash>(
    positives: &[(f64, Id, f64)],
    events: &[(f64, Id)],
) -> (usize, usize) {
    let mut by_id: HashMap<Id, Vec<f64>> = HashMap::new();
    for &(t, id) in events {
        by_id.entry(id).or_default().push(t);
    }
    let hits = positives
        .iter()
        .filter(|(t, id, h)| {
            by_id
                .get(id)
                .is_some_and(|at| at.iter().any(|a| *a > *t && *a <= t + h))
        })
        .count();
    let mut said: HashMap<Id, Vec<(f64, f64)>> = HashMap::new();
    for &(t, id, h) in positives {
        said.entry(id).or_default().push((t, h));
    }
    let seen = events
        .iter()
        .filter(|(a, id)| {
            said.get(id)
                .is_some_and(|p| p.iter().any(|(t, h)| t < a && *a <= t + h))
        })
        .count();
    (hits, seen)
}

/// Builds a [`Report`] tick by tick.
pub struct Accumulator {
    report: Report,
    stride: u64,
    tick_us: Vec<f64>,
    imbalance_sum: f64,
    imbalance_n: f64,
    last_move: HashMap<SegmentId, (InstanceId, InstanceId, f64)>,
    positives: Vec<(f64, InstanceId, f64)>,
    /// Positive churn predictions: (t, session, horizon s).
    churn_positives: Vec<(f64, SessionId, f64)>,
    /// Disconnects: (t, session).
    left: Vec<(f64, SessionId)>,
    evacuations: Vec<(f64, InstanceId)>,
    owners: HashMap<SegmentId, InstanceId>,
    dt: f64,
}

impl Accumulator {
    /// Start a report.
    pub fn new(scenario: &super::scenario::Scenario, policy: String) -> Self {
        let ticks = scenario.ticks();
        Accumulator {
            report: Report {
                scenario: scenario.name.clone(),
                policy,
                seed: scenario.seed,
                ticks,
                slo_p99_us: scenario.slo.p99_us,
                slo_violation_s: 0.0,
                peak_imbalance: 0.0,
                mean_imbalance: 0.0,
                moves: 0,
                drain_moves: 0,
                bytes_moved: 0,
                thrash: 0,
                first_move_s: None,
                rejected: 0,
                faults: 0,
                requests_served: 0.0,
                requests_failed: 0.0,
                writes_lost: 0.0,
                requests_held: 0.0,
                down_events: Vec::new(),
                prediction_precision: None,
                prediction_recall: None,
                sessions_left: 0,
                churn_precision: None,
                churn_recall: None,
                timing: Timing::default(),
                timeline: Timeline::default(),
            },
            stride: (ticks / TIMELINE_POINTS as u64).max(1),
            tick_us: Vec::with_capacity(ticks as usize),
            imbalance_sum: 0.0,
            imbalance_n: 0.0,
            last_move: HashMap::new(),
            positives: Vec::new(),
            churn_positives: Vec::new(),
            left: Vec::new(),
            evacuations: Vec::new(),
            owners: HashMap::new(),
            dt: scenario.tick_ms as f64 / 1000.0,
        }
    }

    /// Remember who owns each segment, to attribute evacuations.
    pub fn set_owners(&mut self, owners: impl IntoIterator<Item = (SegmentId, InstanceId)>) {
        self.owners = owners.into_iter().collect();
    }

    /// Fold in one simulator step at `t` seconds.
    pub fn step(&mut self, tick: u64, t: f64, out: &StepOutcome) {
        self.left.extend(out.sessions_left.iter().map(|&s| (t, s)));
        let r = &mut self.report;
        if out.p99_us > r.slo_p99_us {
            r.slo_violation_s += self.dt;
        }
        let active: Vec<f64> = out.load.iter().copied().filter(|l| l.is_finite()).collect();
        if !active.is_empty() {
            let mean = active.iter().sum::<f64>() / active.len() as f64;
            if mean > 0.0 {
                let ratio = active.iter().cloned().fold(0.0, f64::max) / mean;
                r.peak_imbalance = r.peak_imbalance.max(ratio);
                self.imbalance_sum += ratio;
                self.imbalance_n += 1.0;
            }
        }
        r.requests_served += out.served;
        r.requests_failed += out.failed;
        r.writes_lost += out.lost;
        r.requests_held += out.held;
        r.drain_moves += out.executor_moves;
        for &(segment, from, to, bytes) in &out.completed {
            r.bytes_moved += bytes;
            if let Some(&(prev_from, prev_to, at)) = self.last_move.get(&segment)
                && prev_from == to
                && prev_to == from
                && t - at <= THRASH_WINDOW_S
            {
                r.thrash += 1;
            }
            self.last_move.insert(segment, (from, to, t));
            self.owners.insert(segment, to);
        }
        for &i in &out.went_down {
            r.down_events.push(DownEvent {
                instance: i,
                at_s: t,
                lead_s: None,
            });
            r.timeline.downs.push((t, i));
        }
        if tick.is_multiple_of(self.stride) {
            r.timeline.t_s.push(t);
            r.timeline.p99_us.push(out.p99_us);
            if r.timeline.load.len() < out.load.len() {
                r.timeline.load.resize(out.load.len(), Vec::new());
            }
            for (series, l) in r.timeline.load.iter_mut().zip(&out.load) {
                series.push(l.is_finite().then_some(*l));
            }
        }
    }

    /// Fold in one decision at `t` seconds: predictions, the validator's verdict, faults
    /// and the policy's time.
    pub fn decision(
        &mut self,
        t: f64,
        predictions: &Predictions,
        verdict: &Verdict,
        faults: usize,
        policy_us: f64,
    ) {
        self.tick_us.push(policy_us);
        let r = &mut self.report;
        r.rejected += verdict.rejected.len() as u64;
        r.faults += faults as u64;
        for f in &predictions.failures {
            if f.probability >= POSITIVE {
                self.positives
                    .push((t, f.instance, f.horizon_ms as f64 / 1000.0));
            }
        }
        for h in &predictions.sessions {
            if h.churn >= POSITIVE {
                self.churn_positives
                    .push((t, h.session, h.horizon_ms as f64 / 1000.0));
            }
        }
        for a in &verdict.accepted {
            match a {
                Action::MoveSegment(m) => {
                    r.moves += 1;
                    r.first_move_s.get_or_insert(t);
                    r.timeline.moves.push((t, m.segment, m.target));
                    if let Some(&owner) = self.owners.get(&m.segment) {
                        self.evacuations.push((t, owner));
                    }
                }
                Action::DrainInstance(i) => self.evacuations.push((t, *i)),
                _ => {}
            }
        }
    }

    /// Finish the report.
    pub fn finish(mut self) -> Report {
        let r = &mut self.report;
        r.mean_imbalance = if self.imbalance_n > 0.0 {
            self.imbalance_sum / self.imbalance_n
        } else {
            0.0
        };
        for event in &mut r.down_events {
            event.lead_s = self
                .evacuations
                .iter()
                .filter(|(t, i)| {
                    *i == event.instance && *t < event.at_s && event.at_s - t <= 3600.0
                })
                .map(|(t, _)| event.at_s - t)
                .fold(None, |best: Option<f64>, lead| {
                    Some(best.map_or(lead, |b| b.max(lead)))
                });
        }
        let downs: Vec<(f64, InstanceId)> =
            r.down_events.iter().map(|e| (e.at_s, e.instance)).collect();
        let (hits, seen) = hits_and_seen(&self.positives, &downs);
        if !self.positives.is_empty() {
            r.prediction_precision = Some(hits as f64 / self.positives.len() as f64);
        }
        if !downs.is_empty() {
            r.prediction_recall = Some(seen as f64 / downs.len() as f64);
        }
        r.sessions_left = self.left.len() as u64;
        let (hits, seen) = hits_and_seen(&self.churn_positives, &self.left);
        if !self.churn_positives.is_empty() {
            r.churn_precision = Some(hits as f64 / self.churn_positives.len() as f64);
        }
        if !self.left.is_empty() {
            r.churn_recall = Some(seen as f64 / self.left.len() as f64);
        }
        let mut us = std::mem::take(&mut self.tick_us);
        if !us.is_empty() {
            us.sort_by(f64::total_cmp);
            r.timing = Timing {
                mean_us: us.iter().sum::<f64>() / us.len() as f64,
                p99_us: us[((us.len() as f64 * 0.99) as usize).min(us.len() - 1)],
                max_us: us[us.len() - 1],
            };
        }
        self.report
    }
}

fn opt(x: Option<f64>, unit: &str) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}{unit}"))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leads: Vec<String> = self
            .down_events
            .iter()
            .map(|e| {
                format!(
                    "instance {} at {:.0}s: {}",
                    e.instance,
                    e.at_s,
                    opt(e.lead_s, "s")
                )
            })
            .collect();
        writeln!(
            f,
            "scenario            {} (seed {}, {} ticks)",
            self.scenario, self.seed, self.ticks
        )?;
        writeln!(f, "policy              {}", self.policy)?;
        writeln!(
            f,
            "SLO violation       {:.0} s with p99 over {:.0} us",
            self.slo_violation_s, self.slo_p99_us
        )?;
        writeln!(
            f,
            "imbalance           peak {:.2}, mean {:.2} (max/mean load)",
            self.peak_imbalance, self.mean_imbalance
        )?;
        writeln!(
            f,
            "moves               {} by the policy, {} by drains, {:.1} MB moved, {} thrash, first at {}",
            self.moves,
            self.drain_moves,
            self.bytes_moved as f64 / 1e6,
            self.thrash,
            opt(self.first_move_s, "s")
        )?;
        writeln!(
            f,
            "validator           {} rejected, {} faults contained",
            self.rejected, self.faults
        )?;
        writeln!(
            f,
            "requests            {:.0} served, {:.0} failed, {:.0} writes lost, {:.0} held in cutovers",
            self.requests_served, self.requests_failed, self.writes_lost, self.requests_held
        )?;
        writeln!(
            f,
            "down events         {}",
            if leads.is_empty() {
                "-".into()
            } else {
                leads.join("; ")
            }
        )?;
        writeln!(
            f,
            "failure prediction  precision {}, recall {}",
            opt(self.prediction_precision, ""),
            opt(self.prediction_recall, "")
        )?;
        if self.sessions_left > 0 || self.churn_precision.is_some() {
            writeln!(
                f,
                "session churn       {} left; prediction precision {}, recall {}",
                self.sessions_left,
                opt(self.churn_precision, ""),
                opt(self.churn_recall, "")
            )?;
        }
        writeln!(
            f,
            "policy tick time    mean {:.0} us, p99 {:.0} us, max {:.0} us",
            self.timing.mean_us, self.timing.p99_us, self.timing.max_us
        )
    }
}

/// One table for many runs: scenarios as rows, policies as columns. Each cell reads
/// `SLO-violation seconds / moves / failed requests`.
pub fn compare_table(reports: &[Report]) -> String {
    let mut policies: Vec<&str> = Vec::new();
    let mut scenarios: Vec<&str> = Vec::new();
    for r in reports {
        if !policies.contains(&r.policy.as_str()) {
            policies.push(&r.policy);
        }
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    let mut out = String::from("| scenario |");
    for p in &policies {
        out.push_str(&format!(" {p} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(policies.len()));
    out.push('\n');
    for s in &scenarios {
        out.push_str(&format!("| {s} |"));
        for p in &policies {
            match reports.iter().find(|r| r.scenario == *s && r.policy == *p) {
                Some(r) => out.push_str(&format!(
                    " {:.0} s / {} / {:.0} |",
                    r.slo_violation_s, r.moves, r.requests_failed
                )),
                None => out.push_str(" - |"),
            }
        }
        out.push('\n');
    }
    out.push_str("\ncells: seconds in SLO violation / moves / failed requests\n");
    out
}

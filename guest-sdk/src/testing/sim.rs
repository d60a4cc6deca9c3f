//! The fleet simulator: instances, segments, sessions, migrations and failures, stepped one
//! tick at a time, and seen by policies through [`HostView`].
//!
//! Latency follows a queue: p50 and p99 grow as `1 / (1 − ρ)` with utilisation ρ, and load
//! beyond capacity builds a backlog whose delay adds to every request; requests that would
//! wait more than [`TIMEOUT_S`] fail. A migration takes `bytes / bandwidth` seconds, loads
//! its source and target while it copies, and holds the segment's requests for the cutover
//! pause. Failures follow the scenario. Everything is seeded; a run is a pure function of
//! the scenario and the policy's decisions.

use super::rings::Rings;
use super::scenario::{FailureKind as SpecKind, Scenario};
use super::workload::{Hotspots, diurnal, ramp, zipf_weights};
use crate::host_view::HostView;
use crate::types::{
    Action, Failure, FailureKind, Instance, InstanceId, InstanceState, Level, Metric, Migration,
    MigrationOutcome, MigrationPhase, Rejection, SLOTS, Scope, Segment, SegmentId, Session,
    SessionId, TimestampMs,
};
use crate::view::SplitMix;

/// Requests that would queue longer than this fail (client timeout), in seconds.
pub const TIMEOUT_S: f64 = 5.0;
/// Simulated start of time, ms since the Unix epoch (2026-01-01T00:00:00Z).
pub const EPOCH_MS: u64 = 1_767_225_600_000;
/// Finished migrations kept in the view.
const RECENT_MIGRATIONS: usize = 64;

/// Metrics kept per segment.
pub const SEGMENT_METRICS: [Metric; 9] = [
    Metric::Ops,
    Metric::Reads,
    Metric::Writes,
    Metric::BytesIn,
    Metric::BytesOut,
    Metric::LatencyP50Us,
    Metric::LatencyP99Us,
    Metric::Errors,
    Metric::Keys,
];

/// Metrics kept per instance.
pub const INSTANCE_METRICS: [Metric; 10] = [
    Metric::Ops,
    Metric::Load,
    Metric::LatencyP50Us,
    Metric::LatencyP99Us,
    Metric::Errors,
    Metric::Cpu,
    Metric::MemoryBytes,
    Metric::Clients,
    Metric::PingRttUs,
    Metric::Keys,
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    Steady,
    Bursty,
    Batch,
}

/// What changed in one step, for the report.
#[derive(Clone, Debug, Default)]
pub struct StepOutcome {
    /// Operations served.
    pub served: f64,
    /// Operations that failed (instance down, queue timeout).
    pub failed: f64,
    /// Acknowledged writes lost in crashes.
    pub lost: f64,
    /// Operations held by cutovers.
    pub held: f64,
    /// Fleet p99 latency in µs (the worst instance carrying at least 1% of the traffic).
    pub p99_us: f64,
    /// Utilisation (ops / capacity ops) of each instance, in id order; NaN when not serving.
    pub load: Vec<f64>,
    /// Migrations that completed: (segment, from, to, bytes).
    pub completed: Vec<(SegmentId, InstanceId, InstanceId, u64)>,
    /// Instances that went down this step.
    pub went_down: Vec<InstanceId>,
    /// Migrations the executor started for drains.
    pub executor_moves: u64,
    /// Sessions that disconnected this step.
    pub sessions_left: Vec<SessionId>,
}

#[derive(Clone, Debug)]
struct Flight {
    id: u64,
    row_segment: SegmentId,
    source: InstanceId,
    target: InstanceId,
    bytes: u64,
    copied: f64,
}

/// The simulated fleet at one tick. Implements [`HostView`].
#[derive(Clone, Debug)]
pub struct Simulator {
    scenario: Scenario,
    tick: u64,
    now_ms: TimestampMs,
    epoch: u64,
    instances: Vec<Instance>,
    backlog: Vec<f64>,
    segments: Vec<Segment>,
    weights: Vec<f64>,
    next_segment: SegmentId,
    sessions: Vec<Session>,
    behaviour: Vec<Behaviour>,
    /// Seconds of fade left for each session that is leaving.
    fading: Vec<Option<f64>>,
    /// Each session's row in `sessions`.
    session_rows: std::collections::HashMap<SessionId, usize>,
    next_session: SessionId,
    session_ops: super::rings::Ring,
    flights: Vec<Flight>,
    next_migration: u64,
    migrations: Vec<Migration>,
    failures: Vec<Failure>,
    rejections: Vec<Rejection>,
    segment_rings: Rings,
    instance_rings: Rings,
    hotspots: Hotspots,
    rng: SplitMix,
    errors_logged_at: Vec<f64>,
}

impl Simulator {
    /// The fleet at time 0 of `scenario`.
    pub fn new(scenario: &Scenario) -> Self {
        let f = &scenario.fleet;
        let total = f.instances + f.standby;
        let instances: Vec<Instance> = (0..total)
            .map(|i| Instance {
                id: i,
                name: format!("redis-{i}"),
                address: format!("10.0.0.{}:6379", i + 1),
                zone: format!("zone-{}", i % 3),
                capacity: 1.0,
                state: if i < f.instances {
                    InstanceState::Active
                } else {
                    InstanceState::Standby
                },
            })
            .collect();
        let n = f.segments as usize;
        let weights = zipf_weights(n, scenario.workload.zipf_theta, scenario.seed);
        let segments = (0..n)
            .map(|s| {
                let start = s * usize::from(SLOTS) / n;
                let end = (s + 1) * usize::from(SLOTS) / n - 1;
                let keys = (f.keys_per_segment as f64 * weights[s].clamp(0.05, 20.0)) as u64;
                Segment {
                    id: s as SegmentId,
                    slot_start: start as u16,
                    slot_end: end as u16,
                    owner: (s as u64 * u64::from(f.instances) / n as u64) as u32,
                    keys,
                    bytes: keys * (f.value_bytes + 40),
                    migrating: false,
                }
            })
            .collect();
        let mut rng = SplitMix(scenario.seed);
        let sess = &scenario.workload.sessions;
        let behaviour: Vec<Behaviour> = (0..sess.count)
            .map(|_| {
                let x = rng.unit();
                if x < sess.batch {
                    Behaviour::Batch
                } else if x < sess.batch + sess.bursty {
                    Behaviour::Bursty
                } else {
                    Behaviour::Steady
                }
            })
            .collect();
        let sessions: Vec<Session> = behaviour
            .iter()
            .enumerate()
            .map(|(i, b)| Session {
                id: i as SessionId + 1,
                name: format!(
                    "{}-{i}",
                    match b {
                        Behaviour::Steady => "web",
                        Behaviour::Bursty => "api",
                        Behaviour::Batch => "batch",
                    }
                ),
                lib: "redis-rs".into(),
                db: 0,
                user: "default".into(),
                protocol: 3,
                pinned: None,
                in_transaction: false,
                subscriptions: 0,
                connected_at: EPOCH_MS,
            })
            .collect();
        let retention = f.retention as usize;
        Simulator {
            tick: 0,
            now_ms: EPOCH_MS,
            epoch: 1,
            backlog: vec![0.0; instances.len()],
            errors_logged_at: vec![f64::NEG_INFINITY; instances.len()],
            instance_rings: Rings::new(&INSTANCE_METRICS, instances.len(), retention),
            segment_rings: Rings::new(&SEGMENT_METRICS, n, retention),
            session_ops: super::rings::Ring::new(sess.count as usize, retention),
            instances,
            weights,
            next_segment: n as SegmentId,
            segments,
            fading: vec![None; sessions.len()],
            session_rows: sessions
                .iter()
                .enumerate()
                .map(|(row, s)| (s.id, row))
                .collect(),
            next_session: sessions.len() as SessionId + 1,
            sessions,
            behaviour,
            flights: Vec::new(),
            next_migration: 1,
            migrations: Vec::new(),
            failures: Vec::new(),
            rejections: Vec::new(),
            hotspots: Hotspots::new(&scenario.workload, scenario.seed),
            rng,
            scenario: scenario.clone(),
        }
    }

    /// The scenario being run.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Seconds since the start.
    pub fn t(&self) -> f64 {
        (self.now_ms - EPOCH_MS) as f64 / 1000.0
    }

    /// Set the rejections the policy sees next.
    pub fn set_rejections(&mut self, rejections: Vec<Rejection>) {
        self.rejections = rejections;
    }

    /// The segments as they are now.
    pub fn segments_now(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    fn row_of(&self, id: SegmentId) -> Option<usize> {
        self.segments.iter().position(|s| s.id == id)
    }

    /// Apply validated actions.
    pub fn apply(&mut self, actions: &[Action]) {
        for action in actions {
            match *action {
                Action::MoveSegment(m) => self.start_migration(m.segment, m.target, false),
                Action::SplitSegment(s) => self.split(s.segment, s.at_slot),
                Action::MergeSegments(m) => self.merge(m.low, m.high),
                Action::MoveSession(m) => {
                    if let Some(s) = self
                        .session_rows
                        .get(&m.session)
                        .and_then(|&row| self.sessions.get_mut(row))
                    {
                        s.pinned = Some(m.target);
                    }
                }
                Action::ActivateStandby(i) => self.set_state(i, InstanceState::Active),
                Action::DrainInstance(i) => self.set_state(i, InstanceState::Draining),
            }
        }
    }

    fn set_state(&mut self, id: InstanceId, state: InstanceState) {
        if let Some(i) = self.instances.get_mut(id as usize) {
            i.state = state;
        }
    }

    fn start_migration(&mut self, segment: SegmentId, target: InstanceId, by_executor: bool) {
        let Some(row) = self.row_of(segment) else {
            return;
        };
        let s = &mut self.segments[row];
        if s.migrating || s.owner == target {
            return;
        }
        s.migrating = true;
        let flight = Flight {
            id: self.next_migration,
            row_segment: segment,
            source: s.owner,
            target,
            bytes: s.bytes,
            copied: 0.0,
        };
        self.next_migration += 1;
        self.migrations.push(Migration {
            id: flight.id,
            segment,
            source: flight.source,
            target,
            phase: MigrationPhase::Copy,
            outcome: MigrationOutcome::Running,
            started_at: self.now_ms,
            finished_at: None,
            bytes_moved: 0,
            detail: if by_executor {
                "drain".into()
            } else {
                String::new()
            },
        });
        self.flights.push(flight);
    }

    fn split(&mut self, id: SegmentId, at: u16) {
        let Some(row) = self.row_of(id) else { return };
        let old = self.segments[row];
        if at <= old.slot_start || at > old.slot_end {
            return;
        }
        let share = f64::from(at - old.slot_start) / old.slot_count() as f64;
        let lower_keys = (old.keys as f64 * share) as u64;
        let lower_bytes = (old.bytes as f64 * share) as u64;
        self.segments[row] = Segment {
            slot_end: at - 1,
            keys: lower_keys,
            bytes: lower_bytes,
            ..old
        };
        let upper = Segment {
            id: self.next_segment,
            slot_start: at,
            keys: old.keys - lower_keys,
            bytes: old.bytes - lower_bytes,
            ..old
        };
        self.next_segment += 1;
        self.segments.insert(row + 1, upper);
        let w = self.weights[row];
        self.weights[row] = w * share;
        self.weights.insert(row + 1, w * (1.0 - share));
        self.segment_rings.insert_row(row + 1);
        self.epoch += 1;
    }

    fn merge(&mut self, low: SegmentId, high: SegmentId) {
        let (Some(a), Some(b)) = (self.row_of(low), self.row_of(high)) else {
            return;
        };
        if b != a + 1 || self.segments[a].owner != self.segments[b].owner {
            return;
        }
        let upper = self.segments.remove(b);
        let lower = &mut self.segments[a];
        lower.slot_end = upper.slot_end;
        lower.keys += upper.keys;
        lower.bytes += upper.bytes;
        let w = self.weights.remove(b);
        self.weights[a] += w;
        self.segment_rings.remove_row(b);
        self.epoch += 1;
    }

    /// Advance one tick: failures, workload, migrations, queues and metrics.
    pub fn step(&mut self) -> StepOutcome {
        let dt = self.scenario.tick_ms as f64 / 1000.0;
        self.now_ms += self.scenario.tick_ms;
        self.tick += 1;
        let t = self.t();
        let mut out = StepOutcome::default();

        let (degrade, went_down, came_up, announced) = self.failure_effects(t, dt);
        for &(i, kind) in &went_down {
            if self.instances[i as usize].state != InstanceState::Down {
                self.instances[i as usize].state = InstanceState::Down;
                self.backlog[i as usize] = 0.0;
                out.went_down.push(i);
                self.failures.push(Failure {
                    instance: i,
                    kind,
                    at: self.now_ms,
                    detail: format!("{} went down", self.instances[i as usize].name),
                });
            }
        }
        for i in came_up {
            if self.instances[i as usize].state == InstanceState::Down {
                self.instances[i as usize].state = InstanceState::Active;
                self.failures.push(Failure {
                    instance: i,
                    kind: FailureKind::Restart,
                    at: self.now_ms,
                    detail: format!("{} is back", self.instances[i as usize].name),
                });
            }
        }
        for (i, at) in announced {
            self.failures.push(Failure {
                instance: i,
                kind: FailureKind::Maintenance,
                at: self.now_ms,
                detail: format!("planned maintenance at +{at:.0}s"),
            });
        }

        // Workload per segment.
        let w = self.scenario.workload.clone();
        let w = &w;
        // A recorded fleet load stands in for `base_ops`.
        let fleet: Vec<f64> = w
            .recorded
            .iter()
            .filter(|r| r.width == 0)
            .map(|r| r.ops_at(t))
            .collect();
        let base_ops = if fleet.is_empty() {
            w.base_ops
        } else {
            fleet.iter().sum()
        };
        let base = base_ops / self.segments.len().max(1) as f64 * diurnal(w, t);
        let mut ops: Vec<f64> = self
            .segments
            .iter()
            .zip(&self.weights)
            .map(|(s, wt)| {
                let ramps: f64 = w
                    .ramps
                    .iter()
                    .filter(|r| r.instances.is_empty() || r.instances.contains(&s.owner))
                    .map(|r| ramp(r, t))
                    .product();
                base * wt * ramps
            })
            .collect();
        // Recorded tenants, spread evenly over their segments.
        for r in w.recorded.iter().filter(|r| r.width > 0) {
            let each = r.ops_at(t) / r.width as f64;
            for o in ops.iter_mut().skip(r.first as usize).take(r.width as usize) {
                *o += each;
            }
        }
        self.hotspots.apply(w, t, dt, &mut ops);

        // Migrations: copy, add load, cut over or fail.
        let mut extra = vec![0.0; self.instances.len()];
        let mut held_us = vec![0.0; self.segments.len()];
        let bandwidth = self.scenario.fleet.bandwidth_bytes_per_s;
        let mut finished = Vec::new();
        for (k, f) in self.flights.iter_mut().enumerate() {
            let down = |i: InstanceId| self.instances[i as usize].state == InstanceState::Down;
            if down(f.source) || down(f.target) {
                finished.push((k, MigrationOutcome::Failed));
                continue;
            }
            extra[f.source as usize] += self.scenario.fleet.migration_load_ops;
            extra[f.target as usize] += self.scenario.fleet.migration_load_ops;
            f.copied += bandwidth * dt;
            if f.copied >= f.bytes as f64 {
                finished.push((k, MigrationOutcome::Completed));
            }
        }
        for &(k, outcome) in finished.iter().rev() {
            let f = self.flights.remove(k);
            let Some(row) = self.row_of(f.row_segment) else {
                continue;
            };
            self.segments[row].migrating = false;
            if outcome == MigrationOutcome::Completed {
                self.segments[row].owner = f.target;
                self.epoch += 1;
                let pause = self.scenario.fleet.cutover_ms;
                held_us[row] = pause * 1000.0;
                out.held += ops[row] * pause / 1000.0;
                out.completed
                    .push((f.row_segment, f.source, f.target, f.bytes));
            }
            if let Some(m) = self.migrations.iter_mut().find(|m| m.id == f.id) {
                m.outcome = outcome;
                m.phase = if outcome == MigrationOutcome::Completed {
                    MigrationPhase::Watch
                } else {
                    MigrationPhase::Copy
                };
                m.finished_at = Some(self.now_ms);
                m.bytes_moved = if outcome == MigrationOutcome::Completed {
                    f.bytes
                } else {
                    f.copied as u64
                };
                if outcome == MigrationOutcome::Failed {
                    m.detail = "source or target went down".into();
                }
            }
        }
        for m in self
            .migrations
            .iter_mut()
            .filter(|m| m.outcome == MigrationOutcome::Running)
        {
            if let Some(f) = self.flights.iter().find(|f| f.id == m.id) {
                m.bytes_moved = f.copied as u64;
            }
        }
        let finished_count = self
            .migrations
            .iter()
            .filter(|m| m.outcome != MigrationOutcome::Running)
            .count();
        if finished_count > RECENT_MIGRATIONS {
            let mut drop = finished_count - RECENT_MIGRATIONS;
            self.migrations.retain(|m| {
                if drop > 0 && m.outcome != MigrationOutcome::Running {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        out.executor_moves = self.drive_drains();

        // Queues and latency per instance.
        let cap = self.scenario.fleet.capacity_ops;
        let service = self.scenario.fleet.service_us;
        let mut inst_ops = extra.clone();
        for (s, o) in self.segments.iter().zip(&ops) {
            inst_ops[s.owner as usize] += o;
        }
        let n_inst = self.instances.len();
        let mut p50 = vec![f64::NAN; n_inst];
        let mut p99 = vec![f64::NAN; n_inst];
        let mut err_rate = vec![0.0; n_inst];
        let mut cpu = vec![0.0; n_inst];
        let mut ping = vec![f64::NAN; n_inst];
        let mut down_share = vec![false; n_inst];
        for i in 0..n_inst {
            let inst = &self.instances[i];
            if inst.state == InstanceState::Down {
                down_share[i] = true;
                continue;
            }
            let capacity = cap * inst.capacity;
            let (lat_factor, err, cpu_extra) = degrade[i];
            let offered = inst_ops[i];
            self.backlog[i] = (self.backlog[i] + (offered - capacity) * dt).max(0.0);
            let mut timed_out = 0.0;
            let limit = TIMEOUT_S * capacity;
            if self.backlog[i] > limit {
                timed_out = self.backlog[i] - limit;
                self.backlog[i] = limit;
            }
            let rho = (offered / capacity).min(0.98);
            let queue_us = self.backlog[i] / capacity * 1e6;
            let s = service * lat_factor;
            p50[i] = s * std::f64::consts::LN_2 / (1.0 - rho) + queue_us;
            p99[i] = s * 100f64.ln() / (1.0 - rho) + queue_us;
            err_rate[i] = err;
            cpu[i] = (offered / capacity * 100.0).min(100.0) + cpu_extra;
            ping[i] = s + queue_us;
            out.failed += timed_out + offered * err * dt;
        }
        // Requests to segments on down instances fail.
        let total_ops: f64 = ops.iter().sum();
        let mut fleet_p99: f64 = 0.0;
        for (row, (s, o)) in self.segments.iter().zip(&ops).enumerate() {
            let i = s.owner as usize;
            if down_share[i] {
                out.failed += o * dt;
            } else {
                out.served += o * dt;
                if held_us[row] > 0.0 {
                    fleet_p99 = fleet_p99.max(p99[i] + held_us[row]);
                }
            }
        }
        for i in 0..n_inst {
            if !down_share[i] && inst_ops[i] >= 0.01 * total_ops && p99[i].is_finite() {
                fleet_p99 = fleet_p99.max(p99[i]);
            }
        }
        for &(i, kind) in &went_down {
            if matches!(kind, FailureKind::Crash) {
                out.lost += w.write_ratio * inst_ops[i as usize].max(0.0);
            }
        }
        out.p99_us = fleet_p99;
        out.load = (0..n_inst)
            .map(|i| {
                if self.instances[i].state == InstanceState::Down
                    || self.instances[i].state == InstanceState::Standby
                {
                    f64::NAN
                } else {
                    inst_ops[i] / (cap * self.instances[i].capacity)
                }
            })
            .collect();
        for (i, &rate) in err_rate.iter().enumerate() {
            if rate > 0.005 && t - self.errors_logged_at[i] >= 30.0 {
                self.errors_logged_at[i] = t;
                self.failures.push(Failure {
                    instance: i as InstanceId,
                    kind: FailureKind::Errors,
                    at: self.now_ms,
                    detail: format!("error rate {:.1}%", rate * 100.0),
                });
            }
        }

        self.record(
            &ops, &inst_ops, &p50, &p99, &err_rate, &cpu, &ping, &held_us,
        );
        out.sessions_left = self.step_sessions(t, dt);
        out
    }

    fn drive_drains(&mut self) -> u64 {
        let mut started = 0;
        let limit = self.scenario.limits.max_concurrent_migrations.max(1) as usize;
        for d in 0..self.instances.len() {
            if self.instances[d].state != InstanceState::Draining {
                continue;
            }
            let id = d as InstanceId;
            // Hottest first, as the host's executor drains.
            let ops = HostView::segments_latest(&*self, Metric::Ops);
            let mut owned: Vec<(SegmentId, f64)> = self
                .segments
                .iter()
                .enumerate()
                .filter(|(_, s)| s.owner == id && !s.migrating)
                .map(|(row, s)| {
                    let hot = ops.get(row).copied().filter(|x| x.is_finite());
                    (s.id, hot.unwrap_or(0.0))
                })
                .collect();
            owned.sort_by(|a, b| b.1.total_cmp(&a.1));
            let owned: Vec<SegmentId> = owned.into_iter().map(|(s, _)| s).collect();
            let busy = self.flights.iter().filter(|f| f.source == id).count();
            if owned.is_empty() && busy == 0 {
                self.instances[d].state = InstanceState::Standby;
                continue;
            }
            for segment in owned.into_iter().take(limit.saturating_sub(busy)) {
                let target = (0..self.instances.len())
                    .filter(|&i| self.instances[i].state == InstanceState::Active)
                    .min_by_key(|&i| {
                        self.segments
                            .iter()
                            .filter(|s| s.owner == i as InstanceId)
                            .count()
                    });
                if let Some(target) = target {
                    self.start_migration(segment, target as InstanceId, true);
                    started += 1;
                }
            }
        }
        started
    }

    /// Failure effects at `t`: per-instance (latency factor, error rate, extra CPU), who goes
    /// down and why, who comes back, and maintenance announced this step.
    #[allow(clippy::type_complexity)]
    fn failure_effects(
        &self,
        t: f64,
        dt: f64,
    ) -> (
        Vec<(f64, f64, f64)>,
        Vec<(InstanceId, FailureKind)>,
        Vec<InstanceId>,
        Vec<(InstanceId, f64)>,
    ) {
        let mut degrade = vec![(1.0, 0.0, 0.0); self.instances.len()];
        let (mut down, mut up, mut announced) = (Vec::new(), Vec::new(), Vec::new());
        let crossed = |at: f64| t - dt < at && at <= t;
        for f in &self.scenario.failures {
            let i = f.instance;
            if matches!(f.kind, SpecKind::Degrade | SpecKind::Warn)
                && t >= f.at_s - f.precursor_s
                && t < f.at_s
            {
                degrade[i as usize] = match &f.precursor_from {
                    // The recorded latency factor; errors and CPU follow it as they do the
                    // built-in creep (which reaches 5x latency).
                    Some(p) => {
                        let factor = p.factor(f.at_s - t, f.precursor_s);
                        let x = ((factor - 1.0) / 4.0).clamp(0.0, 1.0);
                        (factor, 0.03 * x, 40.0 * x)
                    }
                    None => {
                        let x = ((t - (f.at_s - f.precursor_s)) / f.precursor_s.max(1e-9))
                            .clamp(0.0, 1.0);
                        (1.0 + 4.0 * x, 0.03 * x, 40.0 * x)
                    }
                };
            }
            let crash_kind = match f.kind {
                SpecKind::Degrade | SpecKind::Crash => Some(FailureKind::Crash),
                SpecKind::Restart => Some(FailureKind::Restart),
                SpecKind::Drain => Some(FailureKind::Maintenance),
                SpecKind::Warn => None,
            };
            if let Some(kind) = crash_kind {
                if crossed(f.at_s) {
                    down.push((i, kind));
                }
                if crossed(f.at_s + f.duration_s) {
                    up.push(i);
                }
            }
            if f.kind == SpecKind::Drain && crossed(f.at_s - f.notice_s) {
                announced.push((i, f.at_s));
            }
        }
        (degrade, down, up, announced)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        ops: &[f64],
        inst_ops: &[f64],
        p50: &[f64],
        p99: &[f64],
        err: &[f64],
        cpu: &[f64],
        ping: &[f64],
        held_us: &[f64],
    ) {
        let wr = self.scenario.workload.write_ratio;
        let vb = self.scenario.fleet.value_bytes as f64;
        let n = self.segments.len();
        let down = |o: InstanceId| self.instances[o as usize].state == InstanceState::Down;
        let seg_values: Vec<(Metric, Vec<f64>)> = vec![
            (Metric::Ops, ops.to_vec()),
            (Metric::Reads, ops.iter().map(|o| o * (1.0 - wr)).collect()),
            (Metric::Writes, ops.iter().map(|o| o * wr).collect()),
            (
                Metric::BytesIn,
                ops.iter().map(|o| o * (wr * vb + 30.0)).collect(),
            ),
            (
                Metric::BytesOut,
                ops.iter().map(|o| o * ((1.0 - wr) * vb + 5.0)).collect(),
            ),
            (
                Metric::LatencyP50Us,
                self.segments
                    .iter()
                    .map(|s| p50[s.owner as usize])
                    .collect(),
            ),
            (
                Metric::LatencyP99Us,
                self.segments
                    .iter()
                    .zip(held_us)
                    .map(|(s, h)| p99[s.owner as usize] + h)
                    .collect(),
            ),
            (
                Metric::Errors,
                self.segments
                    .iter()
                    .zip(ops)
                    .map(|(s, o)| {
                        if down(s.owner) {
                            *o
                        } else {
                            o * err[s.owner as usize]
                        }
                    })
                    .collect(),
            ),
            (
                Metric::Keys,
                self.segments.iter().map(|s| s.keys as f64).collect(),
            ),
        ];
        for (m, values) in seg_values {
            if let Some(ring) = self.segment_rings.get_mut(m) {
                ring.advance()[..n].copy_from_slice(&values);
            }
        }
        let k = self.instances.len();
        let mut keys = vec![0.0; k];
        let mut mem = vec![0.0; k];
        for s in &self.segments {
            keys[s.owner as usize] += s.keys as f64;
            mem[s.owner as usize] += s.bytes as f64;
        }
        let clients = self.sessions.len() as f64 / k as f64;
        let inst_values: Vec<(Metric, Vec<f64>)> = vec![
            (
                Metric::Ops,
                (0..k)
                    .map(|i| if down(i as u32) { 0.0 } else { inst_ops[i] })
                    .collect(),
            ),
            (
                Metric::Load,
                (0..k)
                    .map(|i| {
                        if down(i as u32) {
                            0.0
                        } else {
                            inst_ops[i] / self.instances[i].capacity
                        }
                    })
                    .collect(),
            ),
            (Metric::LatencyP50Us, p50.to_vec()),
            (Metric::LatencyP99Us, p99.to_vec()),
            (
                Metric::Errors,
                (0..k)
                    .map(|i| {
                        if down(i as u32) {
                            inst_ops[i]
                        } else {
                            inst_ops[i] * err[i]
                        }
                    })
                    .collect(),
            ),
            (Metric::Cpu, cpu.to_vec()),
            (Metric::MemoryBytes, mem),
            (Metric::Clients, vec![clients; k]),
            (Metric::PingRttUs, ping.to_vec()),
            (Metric::Keys, keys),
        ];
        for (m, values) in inst_values {
            if let Some(ring) = self.instance_rings.get_mut(m) {
                ring.advance().copy_from_slice(&values);
            }
        }
    }

    /// One step of session activity; returns the sessions that disconnected.
    fn step_sessions(&mut self, t: f64, dt: f64) -> Vec<SessionId> {
        let hour = ((t / 3600.0) as u64 % 24) as u32;
        let cfg = &self.scenario.workload.sessions;
        let batch_on = cfg.batch_hours.contains(&hour);
        let (churn, fade_s) = (cfg.churn_per_hour * dt / 3600.0, cfg.fade_s.max(dt));
        let mut left = Vec::new();
        // Leaving sessions fade, and go when faded; others may start to leave (random draws
        // only when churn is on, so that scenarios without it keep their sequence).
        for row in 0..self.sessions.len() {
            match self.fading[row] {
                Some(rest) if rest <= 0.0 => {
                    left.push(self.sessions[row].id);
                    self.session_ops.remove_row(row);
                    self.session_ops.insert_row(row);
                    let session = &mut self.sessions[row];
                    self.session_rows.remove(&session.id);
                    self.session_rows.insert(self.next_session, row);
                    session.id = self.next_session;
                    session.connected_at = self.now_ms;
                    session.name = format!(
                        "{}-{}",
                        session.name.split('-').next().unwrap_or("web"),
                        self.next_session - 1
                    );
                    self.next_session += 1;
                    self.fading[row] = None;
                }
                Some(rest) => self.fading[row] = Some(rest - dt),
                None if churn > 0.0 && self.rng.unit() < churn => self.fading[row] = Some(fade_s),
                None => {}
            }
        }
        let behaviour = &self.behaviour;
        let fading = &self.fading;
        let rng = &mut self.rng;
        let slot = self.session_ops.advance();
        for ((v, b), f) in slot.iter_mut().zip(behaviour).zip(fading) {
            let full = match b {
                Behaviour::Steady => 100.0,
                Behaviour::Bursty => {
                    if rng.unit() < 0.05 {
                        2_000.0
                    } else {
                        20.0
                    }
                }
                Behaviour::Batch => {
                    if batch_on {
                        5_000.0
                    } else {
                        0.0
                    }
                }
            };
            *v = match f {
                Some(rest) => full * (rest / fade_s).clamp(0.0, 1.0),
                None => full,
            };
        }
        left
    }
}

impl HostView for Simulator {
    fn now(&self) -> TimestampMs {
        self.now_ms
    }
    fn tick(&self) -> u64 {
        self.tick
    }
    fn epoch(&self) -> u64 {
        self.epoch
    }
    fn instances(&self) -> Vec<Instance> {
        self.instances.clone()
    }
    fn segments(&self) -> Vec<Segment> {
        self.segments.clone()
    }
    fn segment_columns(&self) -> crate::types::SegmentColumns {
        crate::types::SegmentColumns::from_segments(&self.segments)
    }
    fn sessions(&self) -> Vec<Session> {
        self.sessions.clone()
    }
    fn migrations(&self) -> Vec<Migration> {
        self.migrations.clone()
    }
    fn failures(&self, instance: Option<InstanceId>) -> Vec<Failure> {
        self.failures
            .iter()
            .filter(|f| instance.is_none_or(|i| f.instance == i))
            .cloned()
            .collect()
    }
    fn rejections(&self) -> Vec<Rejection> {
        self.rejections.clone()
    }
    fn interval_ms(&self) -> u32 {
        self.scenario.tick_ms as u32
    }
    fn retention(&self) -> u32 {
        self.scenario.fleet.retention
    }
    fn series(&self, scope: Scope, metric: Metric, points: u32) -> Vec<f64> {
        let points = points.min(self.retention()) as usize;
        match scope {
            Scope::Instance(id) if (id as usize) < self.instances.len() => self
                .instance_rings
                .get(metric)
                .map(|r| r.row(id as usize, points))
                .unwrap_or_default(),
            Scope::Segment(id) => match (self.row_of(id), self.segment_rings.get(metric)) {
                (Some(row), Some(r)) => r.row(row, points),
                _ => Vec::new(),
            },
            Scope::Session(id) if metric == Metric::Ops => {
                match self.session_rows.get(&id).copied() {
                    Some(row) => self.session_ops.row(row, points),
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }
    fn segments_latest(&self, metric: Metric) -> Vec<f64> {
        self.segment_rings
            .get(metric)
            .map(|r| r.latest())
            .unwrap_or_else(|| vec![f64::NAN; self.segments.len()])
    }
    fn segments_window(&self, metric: Metric, points: u32) -> Vec<f64> {
        let points = points.min(self.retention()) as usize;
        self.segment_rings
            .get(metric)
            .map(|r| r.window(points))
            .unwrap_or_else(|| vec![f64::NAN; self.segments.len() * points])
    }
    fn instances_latest(&self, metric: Metric) -> Vec<f64> {
        self.instance_rings
            .get(metric)
            .map(|r| r.latest())
            .unwrap_or_else(|| vec![f64::NAN; self.instances.len()])
    }
    fn instances_window(&self, metric: Metric, points: u32) -> Vec<f64> {
        let points = points.min(self.retention()) as usize;
        self.instance_rings
            .get(metric)
            .map(|r| r.window(points))
            .unwrap_or_else(|| vec![f64::NAN; self.instances.len() * points])
    }
    fn partitions(&self, session: SessionId) -> Vec<String> {
        if self.session_rows.contains_key(&session) {
            vec!["connection".into()]
        } else {
            Vec::new()
        }
    }
    fn partition(&self, session: SessionId, name: &str) -> Option<Vec<(String, String)>> {
        let s = self.sessions.get(*self.session_rows.get(&session)?)?;
        (name == "connection").then(|| {
            vec![
                ("name".into(), s.name.clone()),
                ("lib".into(), s.lib.clone()),
                ("db".into(), s.db.to_string()),
                ("user".into(), s.user.clone()),
                ("protocol".into(), s.protocol.to_string()),
            ]
        })
    }
    fn log(&self, _level: Level, _message: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MoveSegment;

    fn scenario(extra: &str) -> Scenario {
        Scenario::parse(&format!("name = \"t\"\n{extra}")).expect("valid")
    }

    #[test]
    fn overload_shows_as_tail_latency_and_timeouts() {
        let calm = Simulator::new(&scenario("[workload]\nbase_ops = 200000.0")).step();
        let hot = Simulator::new(&scenario("[workload]\nbase_ops = 380000.0")).step();
        assert!(
            hot.p99_us > 3.0 * calm.p99_us,
            "{} vs {}",
            hot.p99_us,
            calm.p99_us
        );
        let mut over = Simulator::new(&scenario("[workload]\nbase_ops = 600000.0"));
        let failed: f64 = (0..20).map(|_| over.step().failed).sum();
        assert!(failed > 0.0, "a backlog beyond the timeout fails requests");
    }

    #[test]
    fn a_migration_takes_bytes_over_bandwidth_then_flips_the_owner() {
        let mut sim = Simulator::new(&scenario("[fleet]\nbandwidth_bytes_per_s = 1000000.0"));
        sim.step();
        let segment = sim.segments[0];
        let seconds = (segment.bytes as f64 / 1e6).ceil() as usize;
        sim.apply(&[Action::MoveSegment(MoveSegment {
            segment: segment.id,
            target: 3,
        })]);
        assert!(sim.segments[0].migrating);
        for _ in 0..seconds - 1 {
            assert!(sim.step().completed.is_empty());
        }
        let out = sim.step();
        assert_eq!(
            out.completed,
            vec![(segment.id, segment.owner, 3, segment.bytes)]
        );
        assert_eq!(sim.segments[0].owner, 3);
        assert!(out.held > 0.0, "the cutover held requests");
        assert_eq!(sim.migrations()[0].outcome, MigrationOutcome::Completed);
    }

    #[test]
    fn a_drain_moves_everything_off_then_goes_standby() {
        let mut sim = Simulator::new(&scenario(
            "[fleet]\nsegments = 8\nbandwidth_bytes_per_s = 1e12",
        ));
        sim.apply(&[Action::DrainInstance(0)]);
        for _ in 0..20 {
            sim.step();
        }
        assert!(sim.segments.iter().all(|s| s.owner != 0));
        assert_eq!(sim.instances[0].state, InstanceState::Standby);
    }

    #[test]
    fn a_crash_fails_its_segments_and_loses_a_second_of_writes() {
        let mut sim = Simulator::new(&scenario(
            "[[failures]]\nkind = \"crash\"\ninstance = 2\nat_s = 5.0\nduration_s = 10.0",
        ));
        let outs: Vec<StepOutcome> = (0..20).map(|_| sim.step()).collect();
        assert_eq!(outs[4].went_down, vec![2]);
        assert!(outs[4].lost > 0.0);
        assert!(
            outs[6].failed > 0.0 && outs[16].failed == 0.0,
            "back after 10 s"
        );
        let kinds: Vec<FailureKind> = sim.failures(Some(2)).iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![FailureKind::Crash, FailureKind::Restart]);
    }

    #[test]
    fn degrade_precursors_show_in_latency_and_failure_history() {
        let mut sim = Simulator::new(&scenario(
            "duration_s = 400\n[[failures]]\nkind = \"warn\"\ninstance = 1\nat_s = 300.0\nprecursor_s = 200.0",
        ));
        for _ in 0..250 {
            sim.step();
        }
        let p99 = sim.instances_latest(Metric::LatencyP99Us);
        assert!(p99[1] > 1.5 * p99[0], "{p99:?}");
        assert!(
            sim.failures(Some(1))
                .iter()
                .any(|f| f.kind == FailureKind::Errors)
        );
        for _ in 0..150 {
            sim.step();
        }
        assert_ne!(
            sim.instances[1].state,
            InstanceState::Down,
            "a warning without a crash"
        );
    }
}

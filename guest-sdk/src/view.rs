//! `ViewSnapshot`: one tick's view as plain data.
//!
//! The host builds one per tick and serves the WIT imports from it; tests and benches build
//! them from fixtures (they serialise to JSON) or with [`ViewSnapshot::synthetic`]. It owns
//! no I/O and never changes once built.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::host_view::HostView;
use crate::types::{
    Failure, Instance, InstanceId, InstanceState, Level, Metric, Migration, Rejection, SLOTS,
    Scope, Segment, SegmentColumns, SegmentId, Session, SessionId, TimestampMs,
};

/// A table of equally long series, one row per instance or segment, oldest point first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// Points per row.
    pub points: usize,
    /// Row-major values: row `i` is `data[i * points..(i + 1) * points]`.
    pub data: Vec<f64>,
}

impl Dense {
    /// A table of `rows` rows of `points` NaNs.
    pub fn nan(rows: usize, points: usize) -> Self {
        Dense {
            points,
            data: vec![f64::NAN; rows * points],
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.points).unwrap_or(0)
    }

    /// One row, oldest first.
    pub fn row(&self, row: usize) -> &[f64] {
        &self.data[row * self.points..(row + 1) * self.points]
    }

    /// One row, mutable.
    pub fn row_mut(&mut self, row: usize) -> &mut [f64] {
        &mut self.data[row * self.points..(row + 1) * self.points]
    }

    /// The last value of every row.
    pub fn latest(&self) -> Vec<f64> {
        if self.points == 0 {
            return vec![f64::NAN; self.rows()];
        }
        self.data
            .chunks_exact(self.points)
            .map(|r| r[r.len() - 1])
            .collect()
    }

    /// The last `points` values of every row, NaN-padded at the front.
    pub fn window(&self, points: usize) -> Vec<f64> {
        if points == self.points {
            return self.data.clone();
        }
        let rows = self.rows();
        let mut out = Vec::with_capacity(rows * points);
        for row in 0..rows {
            out.extend(tail(self.row(row), points));
        }
        out
    }
}

/// The last `points` values of `values`, NaN-padded at the front.
fn tail(values: &[f64], points: usize) -> impl Iterator<Item = f64> + '_ {
    let pad = points.saturating_sub(values.len());
    let skip = values.len().saturating_sub(points);
    std::iter::repeat_n(f64::NAN, pad).chain(values[skip..].iter().copied())
}

/// The metric series of one tick's view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricTable {
    /// Per metric, one row per instance in `instances` order.
    pub instances: BTreeMap<Metric, Dense>,
    /// Per metric, one row per segment in `segments` order.
    pub segments: BTreeMap<Metric, Dense>,
    /// Per session, per metric, oldest first.
    pub sessions: BTreeMap<SessionId, BTreeMap<Metric, Vec<f64>>>,
}

/// One tick's read-only view of the cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ViewSnapshot {
    /// Clock at the start of the tick.
    pub now: TimestampMs,
    /// Tick number.
    pub tick: u64,
    /// Segment-table epoch.
    pub epoch: u64,
    /// Milliseconds between two points of a series.
    pub interval_ms: u32,
    /// Points retained per series.
    pub retention: u32,
    /// Every instance, in id order.
    pub instances: Vec<Instance>,
    /// Every segment, in slot order.
    pub segments: Vec<Segment>,
    /// Every session.
    pub sessions: Vec<Session>,
    /// Migrations in flight and recent.
    pub migrations: Vec<Migration>,
    /// Failure history, oldest first.
    pub failures: Vec<Failure>,
    /// Actions refused last tick.
    pub rejections: Vec<Rejection>,
    /// Metric series.
    pub metrics: MetricTable,
    /// Session state partitions: session → partition name → field/value pairs.
    pub session_state: BTreeMap<SessionId, BTreeMap<String, Vec<(String, String)>>>,
    #[serde(skip)]
    index: OnceLock<Index>,
}

#[derive(Clone, Debug)]
struct Index {
    instances: HashMap<InstanceId, usize>,
    segments: HashMap<SegmentId, usize>,
    columns: SegmentColumns,
    segment_latest: BTreeMap<Metric, Vec<f64>>,
    instance_latest: BTreeMap<Metric, Vec<f64>>,
}

impl ViewSnapshot {
    /// Row of an instance in `instances`.
    pub fn instance_row(&self, id: InstanceId) -> Option<usize> {
        self.index().instances.get(&id).copied()
    }

    /// Row of a segment in `segments`.
    pub fn segment_row(&self, id: SegmentId) -> Option<usize> {
        self.index().segments.get(&id).copied()
    }

    /// An instance by id.
    pub fn instance(&self, id: InstanceId) -> Option<&Instance> {
        self.instance_row(id).map(|row| &self.instances[row])
    }

    /// A segment by id.
    pub fn segment(&self, id: SegmentId) -> Option<&Segment> {
        self.segment_row(id).map(|row| &self.segments[row])
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| Index {
            instances: self
                .instances
                .iter()
                .enumerate()
                .map(|(i, x)| (x.id, i))
                .collect(),
            segments: self
                .segments
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id, i))
                .collect(),
            columns: SegmentColumns::from_segments(&self.segments),
            segment_latest: latest_of(&self.metrics.segments),
            instance_latest: latest_of(&self.metrics.instances),
        })
    }

    /// Build the id index, the segment columns and the latest value of every series now
    /// rather than on first use, so that the cost is not charged to whoever reads first.
    pub fn prepare(&self) {
        self.index();
    }

    /// Forget the index and caches; call after changing `instances`, `segments` or
    /// `metrics` in place.
    pub fn reindex(&mut self) {
        self.index = OnceLock::new();
    }

    /// A deterministic synthetic view: `instances` active instances with ids `0..`, the slot
    /// space cut into `segments` equal segments dealt round-robin, and `metrics` segment
    /// metrics (from [`Metric::ALL`]) of `points` points each, plus `ops`, `load` and
    /// `latency-p99-us` per instance. Used by benches and tests.
    pub fn synthetic(instances: usize, segments: usize, metrics: usize, points: usize) -> Self {
        let instances_n = instances.max(1);
        let segments_n = segments.clamp(1, usize::from(SLOTS));
        let instances: Vec<Instance> = (0..instances_n)
            .map(|i| Instance {
                id: i as InstanceId,
                name: format!("redis-{i}"),
                address: format!("127.0.0.1:{}", 7000 + i),
                zone: String::new(),
                capacity: 1.0,
                state: InstanceState::Active,
            })
            .collect();
        let segments: Vec<Segment> = (0..segments_n)
            .map(|s| {
                let start = s * usize::from(SLOTS) / segments_n;
                let end = (s + 1) * usize::from(SLOTS) / segments_n - 1;
                Segment {
                    id: s as SegmentId,
                    slot_start: start as u16,
                    slot_end: end as u16,
                    owner: (s % instances_n) as InstanceId,
                    keys: 1000,
                    bytes: 100_000,
                    migrating: false,
                }
            })
            .collect();
        let mut rng = SplitMix(0x5eed);
        let mut table = MetricTable::default();
        let mut instance_ops = Dense {
            points,
            data: vec![0.0; instances_n * points],
        };
        for metric in Metric::ALL.iter().take(metrics.min(Metric::ALL.len())) {
            let mut dense = Dense::nan(segments_n, points);
            for (row, segment) in segments.iter().enumerate() {
                let base = 10.0 + 90.0 * rng.unit();
                for (t, v) in dense.row_mut(row).iter_mut().enumerate() {
                    *v = base * (1.0 + 0.1 * ((t as f64) * 0.3).sin()) + rng.unit();
                    if *metric == Metric::Ops {
                        let owner = segment.owner as usize;
                        instance_ops.row_mut(owner)[t] += *v;
                    }
                }
            }
            table.segments.insert(*metric, dense);
        }
        let mut p99 = Dense::nan(instances_n, points);
        for row in 0..instances_n {
            for (t, v) in p99.row_mut(row).iter_mut().enumerate() {
                *v = 200.0 + instance_ops.row(row)[t] / 100.0;
            }
        }
        table.instances.insert(Metric::Load, instance_ops.clone());
        table.instances.insert(Metric::Ops, instance_ops);
        table.instances.insert(Metric::LatencyP99Us, p99);
        ViewSnapshot {
            now: 1_700_000_000_000,
            tick: 0,
            epoch: 1,
            interval_ms: 1000,
            retention: points as u32,
            instances,
            segments,
            metrics: table,
            ..Default::default()
        }
    }

    /// This view with `count` client sessions added, each with a commands-per-second
    /// series as long as the view's retention (a steady rate with noise).
    pub fn with_sessions(mut self, count: usize) -> Self {
        let mut rng = SplitMix(0x5e55);
        let points = self.retention as usize;
        for i in 0..count {
            let id = i as SessionId + 1;
            self.sessions.push(Session {
                id,
                name: format!("client-{i}"),
                lib: String::new(),
                db: 0,
                user: "default".into(),
                protocol: 2,
                pinned: None,
                in_transaction: false,
                subscriptions: 0,
                connected_at: self.now.saturating_sub(3_600_000),
            });
            let base = 10.0 + 190.0 * rng.unit();
            let series = (0..points)
                .map(|_| base * (0.9 + 0.2 * rng.unit()))
                .collect();
            self.metrics
                .sessions
                .insert(id, BTreeMap::from([(Metric::Ops, series)]));
        }
        self
    }
}

/// The latest value of every row of every metric: bulk "latest" reads are then one copy.
fn latest_of(tables: &BTreeMap<Metric, Dense>) -> BTreeMap<Metric, Vec<f64>> {
    tables
        .iter()
        .map(|(m, dense)| (*m, dense.latest()))
        .collect()
}

/// A tiny deterministic generator for synthetic data (SplitMix64).
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform value in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl HostView for ViewSnapshot {
    fn now(&self) -> TimestampMs {
        self.now
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
    fn segment_columns(&self) -> SegmentColumns {
        self.index().columns.clone()
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
        self.interval_ms
    }
    fn retention(&self) -> u32 {
        self.retention
    }
    fn series(&self, scope: Scope, metric: Metric, points: u32) -> Vec<f64> {
        let points = points as usize;
        let row =
            |table: &BTreeMap<Metric, Dense>, row: Option<usize>| match (table.get(&metric), row) {
                (Some(dense), Some(row)) => tail(dense.row(row), points).collect(),
                _ => Vec::new(),
            };
        match scope {
            Scope::Instance(id) => row(&self.metrics.instances, self.instance_row(id)),
            Scope::Segment(id) => row(&self.metrics.segments, self.segment_row(id)),
            Scope::Session(id) => self
                .metrics
                .sessions
                .get(&id)
                .and_then(|m| m.get(&metric))
                .map(|v| tail(v, points).collect())
                .unwrap_or_default(),
        }
    }
    fn segments_latest(&self, metric: Metric) -> Vec<f64> {
        match self.index().segment_latest.get(&metric) {
            Some(latest) => latest.clone(),
            None => vec![f64::NAN; self.segments.len()],
        }
    }
    fn segments_window(&self, metric: Metric, points: u32) -> Vec<f64> {
        match self.metrics.segments.get(&metric) {
            Some(dense) => dense.window(points as usize),
            None => vec![f64::NAN; self.segments.len() * points as usize],
        }
    }
    fn instances_latest(&self, metric: Metric) -> Vec<f64> {
        match self.index().instance_latest.get(&metric) {
            Some(latest) => latest.clone(),
            None => vec![f64::NAN; self.instances.len()],
        }
    }
    fn instances_window(&self, metric: Metric, points: u32) -> Vec<f64> {
        match self.metrics.instances.get(&metric) {
            Some(dense) => dense.window(points as usize),
            None => vec![f64::NAN; self.instances.len() * points as usize],
        }
    }
    fn partitions(&self, session: SessionId) -> Vec<String> {
        self.session_state
            .get(&session)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
    fn partition(&self, session: SessionId, name: &str) -> Option<Vec<(String, String)>> {
        self.session_state.get(&session)?.get(name).cloned()
    }
    fn log(&self, _level: Level, _message: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_pads_and_truncates() {
        let dense = Dense {
            points: 3,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        assert_eq!(dense.latest(), vec![3.0, 6.0]);
        assert_eq!(dense.window(2), vec![2.0, 3.0, 5.0, 6.0]);
        let padded = dense.window(4);
        assert!(padded[0].is_nan() && padded[4].is_nan());
        assert_eq!(&padded[1..4], &[1.0, 2.0, 3.0]);
    }

    #[test]
    fn synthetic_view_covers_every_slot_once() {
        let view = ViewSnapshot::synthetic(4, 100, 8, 10);
        assert_eq!(view.segments.first().map(|s| s.slot_start), Some(0));
        assert_eq!(view.segments.last().map(|s| s.slot_end), Some(SLOTS - 1));
        for pair in view.segments.windows(2) {
            assert_eq!(pair[0].slot_end + 1, pair[1].slot_start);
        }
        assert_eq!(view.segments_latest(Metric::Ops).len(), 100);
        assert_eq!(view.segments_window(Metric::Ops, 4).len(), 400);
        assert_eq!(view.instances_latest(Metric::Ops).len(), 4);
    }

    #[test]
    fn series_by_scope_and_missing_series() {
        let view = ViewSnapshot::synthetic(2, 4, 1, 5);
        assert_eq!(view.series(Scope::Segment(3), Metric::Ops, 2).len(), 2);
        assert!(view.series(Scope::Segment(99), Metric::Ops, 2).is_empty());
        assert!(view.series(Scope::Instance(0), Metric::Cpu, 2).is_empty());
        assert!(view.segments_latest(Metric::Cpu).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn json_round_trip_keeps_the_view() {
        let view = ViewSnapshot::synthetic(2, 4, 2, 3);
        let json = serde_json::to_string(&view).expect("serialise");
        let back: ViewSnapshot = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back.segments, view.segments);
        assert_eq!(back.instance_row(1), Some(1));
    }
}

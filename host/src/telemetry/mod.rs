//! Telemetry: what the policies see of the live fleet.
//!
//! The proxy counts requests per slot and per instance ([`counters`]); a poller pings every
//! instance and reads its `INFO` once per interval, noticing instances that stop answering
//! and restarts (a new `run_id` or a reset uptime); a collector turns both into per-segment
//! and per-instance series in the [`store`], from which each tick's view is built.

pub mod counters;
pub mod latency;
pub mod poller;
pub mod store;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardcast_sdk::types::{Failure, InstanceState, Metric, Session};
use shardcast_sdk::view::ViewSnapshot;

use crate::topology::Topology;
use counters::LoopCounters;
use poller::Health;
use store::MetricStore;

/// The live sessions, and each one's commands per second over the retention.
type SessionActivity = (Vec<Session>, BTreeMap<u64, VecDeque<f64>>);

/// Push one interval of data-path counters (rates per second, latency percentiles) as
/// series in `table`.
fn push_cells(table: &mut store::Series, taken: &[counters::Taken], secs: f64, r: usize) {
    let rate = |f: fn(&counters::Taken) -> u64| -> Vec<f64> {
        taken.iter().map(|t| f(t) as f64 / secs).collect()
    };
    table.push(Metric::Ops, rate(|t| t.reads + t.writes), r);
    table.push(Metric::Reads, rate(|t| t.reads), r);
    table.push(Metric::Writes, rate(|t| t.writes), r);
    table.push(Metric::BytesIn, rate(|t| t.bytes_in), r);
    table.push(Metric::BytesOut, rate(|t| t.bytes_out), r);
    table.push(Metric::Errors, rate(|t| t.errors), r);
    let p = |q: f64| -> Vec<f64> { taken.iter().map(|t| t.latency_us(q)).collect() };
    table.push(Metric::LatencyP50Us, p(0.5), r);
    table.push(Metric::LatencyP99Us, p(0.99), r);
}

/// One interval's counters, taken: per segment of `table` (in its order) and per instance
/// (by id).
pub struct Interval {
    /// The table the segment counters follow.
    pub table: Arc<crate::topology::SegmentTable>,
    /// Per segment.
    pub segments: Vec<counters::Taken>,
    /// Per instance.
    pub instances: Vec<counters::Taken>,
}

/// Everything telemetry keeps, shared by the proxy, the collector and the controller.
pub struct Telemetry {
    /// Data-path counters, a set per event loop.
    pub counters: LoopCounters,
    store: Mutex<MetricStore>,
    health: Mutex<Vec<Health>>,
    failures: Mutex<Vec<Failure>>,
    sessions: Mutex<SessionActivity>,
    interval: Duration,
    /// When counters and session activity were last folded in: rates are per measured
    /// second, not per nominal interval (a late collection must not inflate them).
    last_collect: Mutex<Option<Instant>>,
    last_sessions: Mutex<Option<Instant>>,
    /// Estimated keys and bytes per segment id, smoothed over polls.
    sizes: Mutex<BTreeMap<u32, (f64, f64)>>,
}

/// Weight of the newest poll in the smoothed segment sizes.
const SIZE_ALPHA: f64 = 0.3;

/// Each segment's keys and bytes as estimated from one poll's samples: an instance's key
/// count (database 0), shared among its segments in the proportions of its sampled keys
/// (those whose slots it owns: a migration's copies are not counted twice), and its sampled
/// bytes per key scaled the same way.
pub fn estimate_sizes(
    table: &crate::topology::SegmentTable,
    health: &[Health],
) -> BTreeMap<u32, (f64, f64)> {
    let mut sizes: BTreeMap<u32, (f64, f64)> =
        table.segments.iter().map(|s| (s.id, (0.0, 0.0))).collect();
    for (id, h) in health.iter().enumerate() {
        if h.samples.is_empty() || !h.keys.is_finite() {
            continue;
        }
        let per_sample = h.keys / h.samples.len() as f64;
        for &(slot, bytes) in &h.samples {
            if table.owner(slot) != id as u32 {
                continue;
            }
            let seg = table.segments[table.segment_row(slot)].id;
            let e = sizes.entry(seg).or_default();
            e.0 += per_sample;
            e.1 += per_sample * bytes as f64;
        }
    }
    sizes
}

/// Failure-history entries kept (the oldest go first).
pub const FAILURE_HISTORY: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Telemetry {
    /// Telemetry for `instances` instances, sampled every `interval`, keeping `retention`
    /// points.
    pub fn new(instances: usize, interval: Duration, retention: usize) -> Arc<Self> {
        Arc::new(Telemetry {
            counters: LoopCounters::new(instances),
            store: Mutex::new(MetricStore::new(retention)),
            health: Mutex::new(vec![Health::default(); instances]),
            failures: Mutex::new(Vec::new()),
            sessions: Mutex::new((Vec::new(), BTreeMap::new())),
            interval,
            last_collect: Mutex::new(None),
            last_sessions: Mutex::new(None),
            sizes: Mutex::new(BTreeMap::new()),
        })
    }

    /// The sampling interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// False once the poller found instance `id` not answering (until it answers again).
    pub fn is_up(&self, id: u32) -> bool {
        lock(&self.health).get(id as usize).is_none_or(|h| h.up)
    }

    /// Seconds since the last call with `last` (the nominal interval the first time).
    fn measured(&self, last: &Mutex<Option<Instant>>) -> f64 {
        let now = Instant::now();
        let before = lock(last).replace(now);
        before
            .map(|b| now.duration_since(b))
            .unwrap_or(self.interval)
            .as_secs_f64()
            .max(1e-3)
    }

    /// Fold one interval of session activity in: the live sessions and the commands each
    /// served since the last interval.
    pub fn collect_sessions(&self, live: Vec<(Session, u64)>) {
        let secs = self.measured(&self.last_sessions);
        let retention = lock(&self.store).retention.max(1);
        let mut guard = lock(&self.sessions);
        let (list, series) = &mut *guard;
        let ids: std::collections::HashSet<u64> = live.iter().map(|(s, _)| s.id).collect();
        series.retain(|id, _| ids.contains(id));
        for (s, ops) in &live {
            let q = series.entry(s.id).or_default();
            q.push_back(*ops as f64 / secs);
            while q.len() > retention {
                q.pop_front();
            }
        }
        *list = live.into_iter().map(|(s, _)| s).collect();
    }

    /// Fold one interval of counters and health into the store.
    pub fn collect(&self, topology: &Topology, health: Vec<Health>, failures: Vec<Failure>) {
        let interval = self.take(topology);
        self.fold(topology, interval, health, failures);
    }

    /// Take the interval's counters (reset), per segment of the current table and per
    /// instance: what [`Telemetry::fold`] stores, and what cluster mode adds other
    /// proxies' counters to first.
    pub fn take(&self, topology: &Topology) -> Interval {
        let table = topology.table();
        let segments = self
            .counters
            .take_ranges(table.segments.iter().map(|s| s.slot_start..=s.slot_end));
        Interval {
            table,
            segments,
            instances: self.counters.take_instances(),
        }
    }

    /// Fold one interval of counters and health into the store.
    pub fn fold(
        &self,
        topology: &Topology,
        interval: Interval,
        health: Vec<Health>,
        failures: Vec<Failure>,
    ) {
        let secs = self.measured(&self.last_collect);
        let Interval {
            table,
            segments: taken,
            instances: inst,
        } = interval;
        let keys = {
            let fresh = estimate_sizes(&table, &health);
            let mut sizes = lock(&self.sizes);
            sizes.retain(|id, _| fresh.contains_key(id));
            for (id, (k, b)) in fresh {
                let e = sizes.entry(id).or_insert((k, b));
                e.0 += SIZE_ALPHA * (k - e.0);
                e.1 += SIZE_ALPHA * (b - e.1);
            }
            table
                .segments
                .iter()
                .map(|s| sizes.get(&s.id).map(|e| e.0).unwrap_or(0.0))
                .collect()
        };
        let mut store = lock(&self.store);
        let r = store.retention;
        store.push_segment_ids(table.segments.iter().map(|s| s.id).collect());
        push_cells(&mut store.segments, &taken, secs, r);
        store.segments.push(Metric::Keys, keys, r);
        push_cells(&mut store.instances, &inst, secs, r);
        let inst_ops: Vec<f64> = inst
            .iter()
            .map(|t| (t.reads + t.writes) as f64 / secs)
            .collect();
        let load: Vec<f64> = inst_ops
            .iter()
            .zip(&topology.instances)
            .map(|(o, i)| o / i.capacity.max(f64::MIN_POSITIVE))
            .collect();
        store.instances.push(Metric::Load, load, r);
        store.instances.push(
            Metric::PingRttUs,
            health.iter().map(|h| h.rtt_us).collect(),
            r,
        );
        store.instances.push(
            Metric::MemoryBytes,
            health.iter().map(|h| h.memory_bytes).collect(),
            r,
        );
        store.instances.push(
            Metric::Clients,
            health.iter().map(|h| h.clients).collect(),
            r,
        );
        store.instances.push(
            Metric::Cpu,
            health.iter().map(|h| h.cpu_percent).collect(),
            r,
        );
        store
            .instances
            .push(Metric::Keys, health.iter().map(|h| h.keys).collect(), r);
        drop(store);
        *lock(&self.health) = health;
        let mut history = lock(&self.failures);
        history.extend(failures);
        let over = history.len().saturating_sub(FAILURE_HISTORY);
        history.drain(..over);
    }

    /// The latest value of `metric` for every segment (in table order).
    pub fn segments_latest(&self, metric: Metric) -> Vec<f64> {
        lock(&self.store)
            .segments
            .latest(metric)
            .map(<[f64]>::to_vec)
            .unwrap_or_default()
    }

    /// The latest value of `metric` for each segment, by segment id (the ids the last
    /// interval was collected under, so a split or merge since does not shift them).
    pub fn segments_latest_by_id(&self, metric: Metric) -> std::collections::HashMap<u32, f64> {
        let store = lock(&self.store);
        match (store.segments.latest(metric), store.segment_ids.back()) {
            (Some(values), Some(ids)) => ids.iter().copied().zip(values.iter().copied()).collect(),
            _ => std::collections::HashMap::new(),
        }
    }

    /// Each segment's estimated keys, by segment id.
    pub fn segment_keys(&self) -> BTreeMap<u32, u64> {
        lock(&self.sizes)
            .iter()
            .map(|(id, (keys, _))| (*id, keys.round() as u64))
            .collect()
    }

    /// Every instance's kept history of every metric (one row per instance, oldest point
    /// first), without building a whole view.
    pub fn instance_history(
        &self,
        instances: usize,
    ) -> BTreeMap<Metric, shardcast_sdk::view::Dense> {
        lock(&self.store).instances.dense(instances)
    }

    /// The latest value of `metric` for every instance.
    pub fn instances_latest(&self, metric: Metric) -> Vec<f64> {
        lock(&self.store)
            .instances
            .latest(metric)
            .map(<[f64]>::to_vec)
            .unwrap_or_default()
    }

    /// A view of the fleet for tick `tick`.
    pub fn view(&self, topology: &Topology, tick: u64) -> ViewSnapshot {
        let table = topology.table();
        let mut view = ViewSnapshot::default();
        view.now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        view.tick = tick;
        view.epoch = table.epoch;
        view.interval_ms = self.interval.as_millis() as u32;
        let store = lock(&self.store);
        view.retention = store.retention as u32;
        let ids: Vec<u32> = table.segments.iter().map(|s| s.id).collect();
        view.metrics = store.table(&ids, topology.instances.len());
        drop(store);
        let health = lock(&self.health);
        let states = topology.states();
        view.instances = topology
            .instances
            .iter()
            .zip(health.iter().map(Some).chain(std::iter::repeat(None)))
            .zip(states)
            .map(|((i, h), state)| {
                let mut i = i.clone();
                i.state = state;
                if h.is_some_and(|h| !h.up) && i.state == InstanceState::Active {
                    i.state = InstanceState::Down;
                }
                i
            })
            .collect();
        view.segments = table.segments.clone();
        let sizes = lock(&self.sizes);
        for s in &mut view.segments {
            if let Some((keys, bytes)) = sizes.get(&s.id) {
                s.keys = keys.round() as u64;
                s.bytes = bytes.round() as u64;
            }
        }
        drop(sizes);
        view.failures = lock(&self.failures).clone();
        let sessions = lock(&self.sessions);
        view.sessions = sessions.0.clone();
        for (id, q) in &sessions.1 {
            view.metrics
                .sessions
                .entry(*id)
                .or_default()
                .insert(Metric::Ops, q.iter().copied().collect());
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::SegmentTable;

    #[test]
    fn sizes_share_an_instances_keys_by_its_samples_and_skip_copies_it_does_not_own() {
        // Two segments: 0 on instance 0, 1 on instance 1.
        let table = SegmentTable::uniform(2, &[0, 1]);
        let (lo, hi) = (table.segments[0].slot_start, table.segments[1].slot_start);
        let mut a = Health {
            keys: 1000.0,
            ..Health::default()
        };
        // Three quarters of instance 0's samples are its own (100 bytes each); a quarter
        // are a copy of segment 1 it does not own (a migration's partial copy).
        a.samples = [(lo, 100); 3].into_iter().chain([(hi, 5000)]).collect();
        let b = Health {
            keys: 10.0,
            samples: vec![(hi, 40); 4],
            ..Health::default()
        };
        let sizes = estimate_sizes(&table, &[a, b]);
        assert_eq!(sizes[&0], (750.0, 75_000.0));
        assert_eq!(sizes[&1], (10.0, 400.0));
    }
}

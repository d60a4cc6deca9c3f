//! The metric store: fixed-interval ring buffers per segment and per instance, with a
//! configurable retention, from which each tick's view is built.
//!
//! Segment history is keyed by segment id, not by row: each interval records which
//! segment each value belongs to, so a split or merge (which shifts rows) does not shift
//! any segment's history onto another. A segment that did not exist yet has no value
//! (NaN) for the intervals before it was made.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use shardcast_sdk::types::Metric;
use shardcast_sdk::view::{Dense, MetricTable};

/// History of one scope (segments or instances): per metric, a deque of rows (one row per
/// interval, one value per segment or instance), newest last.
#[derive(Clone, Debug, Default)]
pub struct Series {
    rows: BTreeMap<Metric, VecDeque<Vec<f64>>>,
}

impl Series {
    /// Append one interval's values of `metric`, keeping `retention` points.
    pub fn push(&mut self, metric: Metric, values: Vec<f64>, retention: usize) {
        let q = self.rows.entry(metric).or_default();
        q.push_back(values);
        while q.len() > retention.max(1) {
            q.pop_front();
        }
    }

    /// The latest values of `metric`.
    pub fn latest(&self, metric: Metric) -> Option<&[f64]> {
        self.rows
            .get(&metric)
            .and_then(|q| q.back())
            .map(Vec::as_slice)
    }

    /// Row-major tables with one row per id of `now`, oldest point first, where `keys`
    /// says which id each value of each interval belongs to (aligned with the newest
    /// intervals).
    pub fn dense_by(&self, now: &[u32], keys: &VecDeque<Arc<Vec<u32>>>) -> BTreeMap<Metric, Dense> {
        // For each interval still in `keys`: where each row of `now` was then.
        let mut maps: HashMap<*const Vec<u32>, Option<Vec<Option<usize>>>> = HashMap::new();
        for k in keys {
            maps.entry(Arc::as_ptr(k)).or_insert_with(|| {
                (k.as_slice() != now).then(|| {
                    let at: HashMap<u32, usize> =
                        k.iter().enumerate().map(|(i, id)| (*id, i)).collect();
                    now.iter().map(|id| at.get(id).copied()).collect()
                })
            });
        }
        self.rows
            .iter()
            .map(|(m, q)| {
                let points = q.len();
                let mut d = Dense::nan(now.len(), points);
                for (t, snapshot) in q.iter().enumerate() {
                    let from_back = points - t;
                    let key = keys.len().checked_sub(from_back).map(|i| &keys[i]);
                    let map = key
                        .and_then(|k| maps.get(&Arc::as_ptr(k)))
                        .and_then(Option::as_ref);
                    for r in 0..now.len() {
                        let at = match map {
                            Some(map) => map[r],
                            None => Some(r),
                        };
                        if let Some(v) = at.and_then(|i| snapshot.get(i)) {
                            d.data[r * points + t] = *v;
                        }
                    }
                }
                (*m, d)
            })
            .collect()
    }

    /// Row-major tables (one row per segment or instance, oldest point first), `rows` rows.
    pub fn dense(&self, rows: usize) -> BTreeMap<Metric, Dense> {
        self.rows
            .iter()
            .map(|(m, q)| {
                let points = q.len();
                let mut d = Dense::nan(rows, points);
                for (t, snapshot) in q.iter().enumerate() {
                    for (r, v) in snapshot.iter().enumerate().take(rows) {
                        d.data[r * points + t] = *v;
                    }
                }
                (*m, d)
            })
            .collect()
    }
}

/// Segment and instance history.
#[derive(Clone, Debug, Default)]
pub struct MetricStore {
    /// Points kept per series.
    pub retention: usize,
    /// Per segment, in the table order of each interval.
    pub segments: Series,
    /// The segment ids of each interval's values, in row order.
    pub segment_ids: VecDeque<Arc<Vec<u32>>>,
    /// Per instance.
    pub instances: Series,
}

impl MetricStore {
    /// An empty store keeping `retention` points.
    pub fn new(retention: usize) -> Self {
        MetricStore {
            retention,
            ..MetricStore::default()
        }
    }

    /// Record which segments the next interval's values belong to, in row order.
    pub fn push_segment_ids(&mut self, ids: Vec<u32>) {
        let ids = match self.segment_ids.back() {
            Some(last) if **last == ids => last.clone(),
            _ => Arc::new(ids),
        };
        self.segment_ids.push_back(ids);
        while self.segment_ids.len() > self.retention.max(1) {
            self.segment_ids.pop_front();
        }
    }

    /// The view's metric table for the segments `segments` (ids, in row order) and
    /// `instances` instances.
    pub fn table(&self, segments: &[u32], instances: usize) -> MetricTable {
        MetricTable {
            segments: self.segments.dense_by(segments, &self.segment_ids),
            instances: self.instances.dense(instances),
            sessions: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_retention_and_builds_row_major_tables() {
        let mut s = Series::default();
        for t in 0..5 {
            s.push(Metric::Ops, vec![t as f64, 10.0 * t as f64], 3);
        }
        assert_eq!(s.latest(Metric::Ops), Some(&[4.0, 40.0][..]));
        let d = &s.dense(2)[&Metric::Ops];
        assert_eq!(d.row(0), &[2.0, 3.0, 4.0]);
        assert_eq!(d.row(1), &[20.0, 30.0, 40.0]);
    }

    #[test]
    fn segment_history_follows_ids_across_a_split() {
        let mut store = MetricStore::new(3);
        // Two intervals with segments [0, 1], then segment 0 split into [0, 2, 1].
        for t in 0..2 {
            store.push_segment_ids(vec![0, 1]);
            let r = store.retention;
            store
                .segments
                .push(Metric::Ops, vec![10.0 + t as f64, 20.0 + t as f64], r);
        }
        store.push_segment_ids(vec![0, 2, 1]);
        let r = store.retention;
        store.segments.push(Metric::Ops, vec![5.0, 6.0, 22.0], r);
        let table = store.table(&[0, 2, 1], 0);
        let ops = &table.segments[&Metric::Ops];
        assert_eq!(ops.row(0), &[10.0, 11.0, 5.0]);
        assert!(
            ops.row(1)[..2].iter().all(|v| v.is_nan()),
            "no history before it existed"
        );
        assert_eq!(ops.row(1)[2], 6.0);
        assert_eq!(
            ops.row(2),
            &[20.0, 21.0, 22.0],
            "segment 1 keeps its own history"
        );
    }
}

//! The metric store: fixed-interval ring buffers per segment and per instance, with a
//! configurable retention, from which each tick's view is built.

use std::collections::{BTreeMap, VecDeque};

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
    /// Per segment.
    pub segments: Series,
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

    /// The view's metric table for `segments` segments and `instances` instances.
    pub fn table(&self, segments: usize, instances: usize) -> MetricTable {
        MetricTable {
            segments: self.segments.dense(segments),
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
}

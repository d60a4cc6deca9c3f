//! Fixed-length metric history for the simulator, stored time-major.
//!
//! One ring holds one metric for every row (segment or instance): each point in time is a
//! contiguous row, so "latest value of every segment" is a single copy, and a window is
//! gathered row by row.

use std::collections::BTreeMap;

use crate::types::Metric;

/// One metric's history for `rows` rows, `retention` points deep.
#[derive(Clone, Debug)]
pub struct Ring {
    points: Vec<Vec<f64>>,
    head: usize,
    filled: usize,
    rows: usize,
}

impl Ring {
    /// An empty ring.
    pub fn new(rows: usize, retention: usize) -> Self {
        Ring {
            points: vec![vec![f64::NAN; rows]; retention.max(1)],
            head: 0,
            filled: 0,
            rows,
        }
    }

    /// The row to write for the next point; becomes the latest.
    pub fn advance(&mut self) -> &mut [f64] {
        self.head = (self.head + 1) % self.points.len();
        self.filled = (self.filled + 1).min(self.points.len());
        let slot = &mut self.points[self.head];
        slot.fill(f64::NAN);
        slot
    }

    /// The latest value of every row.
    pub fn latest(&self) -> Vec<f64> {
        if self.filled == 0 {
            return vec![f64::NAN; self.rows];
        }
        self.points[self.head].clone()
    }

    /// The last `points` values of every row, row-major, oldest first, NaN-padded.
    pub fn window(&self, points: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; self.rows * points];
        let have = self.filled.min(points);
        let len = self.points.len();
        for back in 0..have {
            let slot = &self.points[(self.head + len - back) % len];
            let col = points - 1 - back;
            for (row, v) in slot.iter().enumerate() {
                out[row * points + col] = *v;
            }
        }
        out
    }

    /// The last `points` values of one row, oldest first (only what exists).
    pub fn row(&self, row: usize, points: usize) -> Vec<f64> {
        let have = self.filled.min(points);
        let len = self.points.len();
        (0..have)
            .rev()
            .map(|back| self.points[(self.head + len - back) % len][row])
            .collect()
    }

    /// Insert a row at `at` with no history (a segment split).
    pub fn insert_row(&mut self, at: usize) {
        for slot in &mut self.points {
            slot.insert(at, f64::NAN);
        }
        self.rows += 1;
    }

    /// Remove row `at` (a segment merged away).
    pub fn remove_row(&mut self, at: usize) {
        for slot in &mut self.points {
            slot.remove(at);
        }
        self.rows -= 1;
    }
}

/// Rings for a set of metrics over the same rows.
#[derive(Clone, Debug, Default)]
pub struct Rings {
    rings: BTreeMap<Metric, Ring>,
}

impl Rings {
    /// Rings for `metrics`.
    pub fn new(metrics: &[Metric], rows: usize, retention: usize) -> Self {
        Rings {
            rings: metrics
                .iter()
                .map(|m| (*m, Ring::new(rows, retention)))
                .collect(),
        }
    }

    /// One metric's ring.
    pub fn get(&self, metric: Metric) -> Option<&Ring> {
        self.rings.get(&metric)
    }

    /// One metric's ring, mutable.
    pub fn get_mut(&mut self, metric: Metric) -> Option<&mut Ring> {
        self.rings.get_mut(&metric)
    }

    /// Insert a row everywhere.
    pub fn insert_row(&mut self, at: usize) {
        self.rings.values_mut().for_each(|r| r.insert_row(at));
    }

    /// Remove a row everywhere.
    pub fn remove_row(&mut self, at: usize) {
        self.rings.values_mut().for_each(|r| r.remove_row(at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_window_and_row() {
        let mut r = Ring::new(2, 3);
        for t in 0..4 {
            let slot = r.advance();
            slot[0] = t as f64;
            slot[1] = 10.0 + t as f64;
        }
        assert_eq!(r.latest(), vec![3.0, 13.0]);
        assert_eq!(r.window(2), vec![2.0, 3.0, 12.0, 13.0]);
        let w = r.window(4);
        assert!(w[0].is_nan());
        assert_eq!(&w[1..4], &[1.0, 2.0, 3.0]);
        assert_eq!(r.row(1, 5), vec![11.0, 12.0, 13.0]);
        r.insert_row(1);
        assert!(r.latest()[1].is_nan());
        assert_eq!(r.latest()[2], 13.0);
    }
}

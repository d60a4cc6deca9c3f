//! Each instance's load history as the segments it owns now made it, kept incrementally.
//!
//! Reading every segment's window each tick (16,384 segments × 30 points) costs more than a
//! tick may. Instead, each segment's last `points` values sit in a ring, and each
//! instance's per-point sums are kept for its current segments: a tick adds one column
//! (one read of the segments' latest values), and a segment that changed owner moves its
//! ring from one instance's sums to the other's. The first tick, and any tick after the
//! segment table changed shape, rebuilds from the last few points of the host's windows.

use std::collections::BTreeMap;

use shardcast_sdk::prelude::*;

/// Points read per segment when the history is rebuilt.
const BOOTSTRAP_POINTS: u32 = 8;

/// The incremental history.
#[derive(Default)]
pub struct OwnedHistory {
    /// Points per series.
    points: usize,
    /// Tick of the last update (an update twice in a tick changes nothing).
    tick: Option<u64>,
    /// Segment ids, in view order, as last seen.
    ids: Vec<SegmentId>,
    /// Each segment's owner, as last seen.
    owners: Vec<InstanceId>,
    /// Ring of each segment's ops, row-major (`points` per segment).
    rings: Vec<f64>,
    /// Per instance, ring of the summed ops of its current segments.
    sums: BTreeMap<InstanceId, Vec<f64>>,
    /// Ring position of the newest point.
    head: usize,
    /// Points filled so far (up to `points`).
    filled: usize,
    /// The segment columns and latest ops of the last update, for the rest of the tick.
    columns: Option<SegmentColumns>,
    /// The table epoch the columns were read at.
    epoch: Option<u64>,
    latest: Vec<f64>,
}

fn zero_nan(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

impl OwnedHistory {
    /// Bring the history up to this tick of `host`, keeping `points` points.
    pub fn update(&mut self, host: &dyn HostView, points: u32) {
        if self.tick == Some(host.tick()) {
            return;
        }
        self.tick = Some(host.tick());
        let columns = self.columns_now(host);
        if self.points != points as usize || columns.ids != self.ids {
            self.rebuild(host, &columns, points);
            self.latest = host.segments_latest(Metric::Ops);
            self.columns = Some(columns);
            return;
        }
        let k = self.points;
        // Segments that changed owner take their history along.
        for (j, &owner) in columns.owners.iter().enumerate() {
            let before = self.owners[j];
            if before == owner {
                continue;
            }
            let ring = &self.rings[j * k..(j + 1) * k];
            if let Some(s) = self.sums.get_mut(&before) {
                s.iter_mut().zip(ring).for_each(|(a, b)| *a -= b);
            }
            let s = self.sums.entry(owner).or_insert_with(|| vec![0.0; k]);
            s.iter_mut().zip(ring).for_each(|(a, b)| *a += b);
            self.owners[j] = owner;
        }
        // One new point per tick. (The host samples on its own clock: a tick that comes
        // late can see no new sample, or two; the history then holds a point twice, or
        // misses one. Telling the cases apart costs a second read of every segment.)
        let latest: Vec<f64> = host
            .segments_latest(Metric::Ops)
            .into_iter()
            .map(zero_nan)
            .collect();
        if latest.len() == columns.ids.len() {
            self.push(&columns.owners, &latest);
        }
        self.columns = Some(columns);
        self.latest = latest;
    }

    /// Add one column of segment values.
    fn push(&mut self, owners: &[InstanceId], values: &[f64]) {
        let k = self.points;
        self.head = (self.head + 1) % k;
        let h = self.head;
        for s in self.sums.values_mut() {
            s[h] = 0.0;
        }
        // Segments come in runs of one owner: sum a run, then add it to its owner's ring
        // (one map lookup per run rather than per segment).
        let mut run: Option<(InstanceId, f64)> = None;
        for (j, &owner) in owners.iter().enumerate() {
            let v = values[j];
            self.rings[j * k + h] = v;
            match run.as_mut() {
                Some((o, sum)) if *o == owner => *sum += v,
                _ => {
                    if let Some((o, sum)) = run.replace((owner, v)) {
                        self.sums.entry(o).or_insert_with(|| vec![0.0; k])[h] += sum;
                    }
                }
            }
        }
        if let Some((o, sum)) = run {
            self.sums.entry(o).or_insert_with(|| vec![0.0; k])[h] += sum;
        }
        self.filled = (self.filled + 1).min(k);
    }

    /// The segment columns and latest ops per segment of this tick: read once per tick
    /// (crossing into the host costs), shared by predicting and planning.
    pub fn this_tick(&mut self, host: &dyn HostView) -> (SegmentColumns, Vec<f64>) {
        match &self.columns {
            Some(columns) if self.tick == Some(host.tick()) => {
                (columns.clone(), self.latest.clone())
            }
            _ => (host.segment_columns(), host.segments_latest(Metric::Ops)),
        }
    }

    /// The segment columns at this tick. The table's columns are read again only when its
    /// epoch changed (every ownership change bumps it): reading 16,384 segments' columns
    /// across the boundary is most of a tick. The `migrating` flags come from the
    /// migrations running now; `keys` and `bytes` may be as old as the epoch.
    fn columns_now(&mut self, host: &dyn HostView) -> SegmentColumns {
        let epoch = host.epoch();
        let mut columns = match self.columns.take() {
            Some(c) if self.epoch == Some(epoch) => c,
            _ => host.segment_columns(),
        };
        self.epoch = Some(epoch);
        let running: std::collections::BTreeSet<SegmentId> = host
            .migrations()
            .iter()
            .filter(|m| m.outcome == MigrationOutcome::Running)
            .map(|m| m.segment)
            .collect();
        for (flag, id) in columns.migrating.iter_mut().zip(&columns.ids) {
            *flag = u8::from(running.contains(id));
        }
        columns
    }

    fn rebuild(&mut self, host: &dyn HostView, columns: &SegmentColumns, points: u32) {
        let n = columns.ids.len();
        // Only the last few points: a full window of every segment costs a tick's budget
        // several times over; the ring fills the rest as ticks go by.
        let window = host.segments_window(
            Metric::Ops,
            points.min(BOOTSTRAP_POINTS).min(host.retention()).max(1),
        );
        let k = window.len().checked_div(n).unwrap_or(0).max(1);
        self.points = points as usize;
        // The ring keeps `points`; the host may hold fewer.
        let cap = self.points.max(k);
        self.points = cap;
        self.rings = vec![0.0; n * cap];
        self.sums.clear();
        for (j, &owner) in columns.owners.iter().enumerate() {
            let row = window.get(j * k..(j + 1) * k).unwrap_or(&[]);
            let sums = self.sums.entry(owner).or_insert_with(|| vec![0.0; cap]);
            // Oldest at position 0, newest at k - 1.
            for (t, &v) in row.iter().enumerate() {
                let v = zero_nan(v);
                self.rings[j * cap + t] = v;
                sums[t] += v;
            }
        }
        self.head = k - 1;
        self.filled = window
            .chunks(k)
            .map(|row| row.iter().filter(|x| x.is_finite()).count())
            .max()
            .unwrap_or(0);
        self.ids = columns.ids.clone();
        self.owners = columns.owners.clone();
    }

    /// Points filled so far.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Each of `instances`' load (`load` metric: ops per capacity unit), oldest first,
    /// over the points filled so far.
    pub fn rows(&self, instances: &[Instance]) -> Vec<Vec<f64>> {
        let k = self.points;
        instances
            .iter()
            .map(|i| {
                let capacity = i.capacity.max(f64::MIN_POSITIVE);
                let Some(s) = self.sums.get(&i.id) else {
                    return vec![0.0; self.filled];
                };
                (0..self.filled)
                    .rev()
                    .map(|back| s[(self.head + k - back) % k] / capacity)
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::owned_history;
    use shardcast_sdk::testing::{Scenario, Simulator};

    #[test]
    fn kept_incrementally_it_equals_the_history_read_whole() {
        let scenario = Scenario::parse(
            "name = \"t\"\nduration_s = 200\n[fleet]\ninstances = 3\nsegments = 24\n\
             [workload]\nzipf_theta = 0.8\ndiurnal = { amplitude = 0.3, period_s = 100.0 }",
        )
        .expect("scenario");
        let mut sim = Simulator::new(&scenario);
        let mut owned = OwnedHistory::default();
        for tick in 0..150u32 {
            sim.step();
            // Every tenth tick a segment changes owner.
            if tick % 10 == 5 {
                let segments = sim.segments();
                let s = &segments[(tick as usize * 7) % segments.len()];
                sim.apply(&[Action::MoveSegment(MoveSegment {
                    segment: s.id,
                    target: (s.owner + 1) % 3,
                })]);
            }
            owned.update(&sim, 20);
            let whole = owned_history(&sim, 20);
            let kept = owned.rows(&sim.instances());
            for (i, (a, b)) in kept.iter().zip(&whole).enumerate() {
                // The whole read pads missing points with NaN; compare the points both hold.
                let b = &b[b.len() - a.len()..];
                for (t, (x, y)) in a.iter().zip(b).enumerate() {
                    let y = if y.is_nan() { 0.0 } else { *y };
                    assert!(
                        (x - y).abs() <= 1e-6 * y.abs().max(1.0),
                        "tick {tick}, instance {i}, point {t}: kept {x}, whole {y}"
                    );
                }
            }
        }
    }
}

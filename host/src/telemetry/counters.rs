//! Request counters on the data path: one set of atomics per hash slot and per instance,
//! for each event loop.
//!
//! The proxy only increments them (relaxed atomics, no locks), each loop in its own set so
//! that no two cores write the same cache lines; the collector reads and resets every set
//! once per interval and sums them.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::latency::{Counts, Histogram, quantile};
use crate::proxy::slot::SLOTS;

/// What one request adds to its slot's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hit {
    /// True for a write command.
    pub write: bool,
    /// Request bytes attributed to the slot.
    pub bytes_in: u64,
}

/// Counters of one slot or instance.
#[derive(Debug, Default)]
pub struct Cell {
    reads: AtomicU64,
    writes: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    errors: AtomicU64,
    latency: Histogram,
}

/// One interval's worth of one or more cells, taken by [`Cell::take_into`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Taken {
    /// Read commands.
    pub reads: u64,
    /// Write commands.
    pub writes: u64,
    /// Request bytes.
    pub bytes_in: u64,
    /// Reply bytes.
    pub bytes_out: u64,
    /// Errors.
    pub errors: u64,
    /// Latency histogram: request routed to reply in hand.
    pub latency: Counts,
}

impl Taken {
    /// Add `other`'s counts to these (another loop's, or another proxy's).
    pub fn merge(&mut self, other: &Taken) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.errors += other.errors;
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
    }

    /// The `q` latency quantile in microseconds.
    pub fn latency_us(&self, q: f64) -> f64 {
        quantile(&self.latency, q)
    }
}

impl Cell {
    /// Count one request.
    pub fn hit(&self, hit: Hit) {
        if hit.write {
            self.writes.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes_in.fetch_add(hit.bytes_in, Ordering::Relaxed);
    }

    /// Count one reply of `bytes` that took `us` microseconds.
    pub fn done(&self, us: u64, bytes: u64) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.latency.record(us);
    }

    /// Count one error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Add this cell to `into` and reset it.
    pub fn take_into(&self, into: &mut Taken) {
        into.reads += self.reads.swap(0, Ordering::Relaxed);
        into.writes += self.writes.swap(0, Ordering::Relaxed);
        into.bytes_in += self.bytes_in.swap(0, Ordering::Relaxed);
        into.bytes_out += self.bytes_out.swap(0, Ordering::Relaxed);
        into.errors += self.errors.swap(0, Ordering::Relaxed);
        self.latency.take_into(&mut into.latency);
    }
}

/// Counters for every slot and every instance.
#[derive(Debug)]
pub struct Counters {
    slots: Vec<Cell>,
    instances: Vec<Cell>,
}

impl Counters {
    /// Counters for `instances` instances.
    pub fn new(instances: usize) -> Self {
        Counters {
            slots: (0..usize::from(SLOTS)).map(|_| Cell::default()).collect(),
            instances: (0..instances).map(|_| Cell::default()).collect(),
        }
    }

    /// Count a request on `slot`, owned by `instance`.
    pub fn hit(&self, slot: u16, instance: u32, hit: Hit) {
        self.slots[usize::from(slot % SLOTS)].hit(hit);
        if let Some(c) = self.instances.get(instance as usize) {
            c.hit(hit);
        }
    }

    /// Count an error answered for `instance`.
    pub fn error(&self, instance: u32) {
        if let Some(c) = self.instances.get(instance as usize) {
            c.error();
        }
    }

    /// Count a reply on `slot` from `instance`: `bytes` long, `us` microseconds after the
    /// request was routed.
    pub fn done(&self, slot: u16, instance: u32, us: u64, bytes: u64) {
        self.slots[usize::from(slot % SLOTS)].done(us, bytes);
        if let Some(c) = self.instances.get(instance as usize) {
            c.done(us, bytes);
        }
    }

    /// Read and reset the slots of each range, adding each range's sum to `into`.
    fn take_ranges_into(&self, ranges: &[RangeInclusive<u16>], into: &mut [Taken]) {
        for (r, t) in ranges.iter().zip(into.iter_mut()) {
            for slot in r.clone() {
                self.slots[usize::from(slot % SLOTS)].take_into(t);
            }
        }
    }

    /// Read and reset every instance, adding each to `into`.
    fn take_instances_into(&self, into: &mut [Taken]) {
        for (c, t) in self.instances.iter().zip(into.iter_mut()) {
            c.take_into(t);
        }
    }
}

/// The counter sets of every event loop, summed when taken.
#[derive(Debug)]
pub struct LoopCounters {
    instances: usize,
    sets: Mutex<Vec<Arc<Counters>>>,
}

impl LoopCounters {
    /// No sets yet, for `instances` instances.
    pub fn new(instances: usize) -> Self {
        LoopCounters {
            instances,
            sets: Mutex::new(Vec::new()),
        }
    }

    /// A new set, for one event loop; it is counted until the process ends.
    pub fn add(&self) -> Arc<Counters> {
        let set = Arc::new(Counters::new(self.instances));
        self.sets().push(set.clone());
        set
    }

    fn sets(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Counters>>> {
        self.sets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read and reset the slots of each range on every loop, summed per range.
    pub fn take_ranges(&self, ranges: impl Iterator<Item = RangeInclusive<u16>>) -> Vec<Taken> {
        let ranges: Vec<RangeInclusive<u16>> = ranges.collect();
        let mut out = vec![Taken::default(); ranges.len()];
        for set in self.sets().iter() {
            set.take_ranges_into(&ranges, &mut out);
        }
        out
    }

    /// Read and reset every instance on every loop, summed per instance.
    pub fn take_instances(&self) -> Vec<Taken> {
        let mut out = vec![Taken::default(); self.instances];
        for set in self.sets().iter() {
            set.take_instances_into(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loops_sets_are_summed_and_reset_when_taken() {
        let all = LoopCounters::new(2);
        let (a, b) = (all.add(), all.add());
        let read = Hit {
            write: false,
            bytes_in: 10,
        };
        let write = Hit {
            write: true,
            bytes_in: 5,
        };
        a.hit(3, 0, read);
        b.hit(3, 0, write);
        b.hit(9000, 1, read);
        a.done(3, 0, 100, 7);
        a.error(1);
        let ranges = all.take_ranges([0..=100, 101..=16383].into_iter());
        assert_eq!((ranges[0].reads, ranges[0].writes), (1, 1));
        assert_eq!((ranges[0].bytes_in, ranges[0].bytes_out), (15, 7));
        assert_eq!(ranges[0].latency.iter().sum::<u64>(), 1);
        assert_eq!((ranges[1].reads, ranges[1].bytes_in), (1, 10));
        let inst = all.take_instances();
        assert_eq!((inst[0].reads, inst[0].writes, inst[0].errors), (1, 1, 0));
        assert_eq!((inst[1].reads, inst[1].errors), (1, 1));
        // Taken means reset, on every set.
        let again = all.take_instances();
        assert!(again.iter().all(|t| *t == Taken::default()));
    }
}

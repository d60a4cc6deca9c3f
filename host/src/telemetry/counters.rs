//! Request counters on the data path: one set of atomics per hash slot and per instance.
//!
//! The proxy only increments them (relaxed atomics, no locks); the collector reads and
//! resets them once per interval.

use std::sync::atomic::{AtomicU64, Ordering};

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
#[derive(Clone, Debug, Default, PartialEq)]
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

    /// Read and reset the slots of each range, summed per range.
    pub fn take_ranges(
        &self,
        ranges: impl Iterator<Item = std::ops::RangeInclusive<u16>>,
    ) -> Vec<Taken> {
        ranges
            .map(|r| {
                let mut t = Taken::default();
                for slot in r {
                    self.slots[usize::from(slot % SLOTS)].take_into(&mut t);
                }
                t
            })
            .collect()
    }

    /// Read and reset every instance.
    pub fn take_instances(&self) -> Vec<Taken> {
        self.instances
            .iter()
            .map(|c| {
                let mut t = Taken::default();
                c.take_into(&mut t);
                t
            })
            .collect()
    }
}

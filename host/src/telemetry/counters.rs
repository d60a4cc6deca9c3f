//! Request counters on the data path: one set of atomics per hash slot and per instance.
//!
//! The proxy only increments them (relaxed atomics, no locks); the collector reads and
//! resets them once per interval.

use std::sync::atomic::{AtomicU64, Ordering};

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
    errors: AtomicU64,
}

/// One interval's worth of a cell, taken by [`Cell::take`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Taken {
    /// Read commands.
    pub reads: u64,
    /// Write commands.
    pub writes: u64,
    /// Request bytes.
    pub bytes_in: u64,
    /// Errors.
    pub errors: u64,
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

    /// Count one error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Read and reset.
    pub fn take(&self) -> Taken {
        Taken {
            reads: self.reads.swap(0, Ordering::Relaxed),
            writes: self.writes.swap(0, Ordering::Relaxed),
            bytes_in: self.bytes_in.swap(0, Ordering::Relaxed),
            errors: self.errors.swap(0, Ordering::Relaxed),
        }
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

    /// Read and reset every slot.
    pub fn take_slots(&self) -> Vec<Taken> {
        self.slots.iter().map(Cell::take).collect()
    }

    /// Read and reset every instance.
    pub fn take_instances(&self) -> Vec<Taken> {
        self.instances.iter().map(Cell::take).collect()
    }
}

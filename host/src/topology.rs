//! Instances and the segment table: which instance owns each hash slot.
//!
//! The table is an immutable, versioned value (its epoch only grows); the proxy reads the
//! current one through `arc-swap` on every request without locking, and a change publishes
//! a new table.

use std::sync::Arc;

use arc_swap::ArcSwap;
use shardcast_sdk::types::{Instance, InstanceId, InstanceState, SLOTS, Segment};

/// One version of the slot → segment → instance mapping.
#[derive(Clone, Debug)]
pub struct SegmentTable {
    /// Version; only grows.
    pub epoch: u64,
    /// Segments in slot order.
    pub segments: Vec<Segment>,
    slot_owner: Vec<InstanceId>,
}

impl SegmentTable {
    /// `count` equal segments dealt in contiguous blocks over `owners`, as Redis Cluster
    /// assigns slot ranges to nodes.
    pub fn uniform(count: usize, owners: &[InstanceId]) -> Self {
        let count = count.clamp(1, usize::from(SLOTS));
        let segments = (0..count)
            .map(|s| Segment {
                id: s as u32,
                slot_start: (s * usize::from(SLOTS) / count) as u16,
                slot_end: ((s + 1) * usize::from(SLOTS) / count - 1) as u16,
                owner: owners[s * owners.len() / count],
                keys: 0,
                bytes: 0,
                migrating: false,
            })
            .collect();
        SegmentTable::from_segments(1, segments)
    }

    /// A table from segments that cover every slot once, in order.
    pub fn from_segments(epoch: u64, segments: Vec<Segment>) -> Self {
        let mut slot_owner = vec![0; usize::from(SLOTS)];
        for s in &segments {
            for slot in s.slot_start..=s.slot_end {
                slot_owner[usize::from(slot)] = s.owner;
            }
        }
        SegmentTable {
            epoch,
            segments,
            slot_owner,
        }
    }

    /// The instance owning `slot`.
    pub fn owner(&self, slot: u16) -> InstanceId {
        self.slot_owner[usize::from(slot % SLOTS)]
    }

    /// The row of the segment holding `slot`.
    pub fn segment_row(&self, slot: u16) -> usize {
        self.segments.partition_point(|s| s.slot_end < slot)
    }
}

/// The fleet and its current segment table.
#[derive(Debug)]
pub struct Topology {
    /// Every configured instance, in id order.
    pub instances: Vec<Instance>,
    table: ArcSwap<SegmentTable>,
}

impl Topology {
    /// A topology over `instances` with `table`.
    pub fn new(instances: Vec<Instance>, table: SegmentTable) -> Self {
        Topology {
            instances,
            table: ArcSwap::from_pointee(table),
        }
    }

    /// The current table.
    pub fn table(&self) -> Arc<SegmentTable> {
        self.table.load_full()
    }

    /// The current table without taking a reference count: for the request path, where a
    /// shared counter would bounce between cores on every request.
    pub fn current(&self) -> arc_swap::Guard<Arc<SegmentTable>> {
        self.table.load()
    }

    /// Publish a new table.
    pub fn publish(&self, table: SegmentTable) {
        self.table.store(Arc::new(table));
    }

    /// Ids of the active instances.
    pub fn active(&self) -> Vec<InstanceId> {
        self.instances
            .iter()
            .filter(|i| i.state == InstanceState::Active)
            .map(|i| i.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_table_covers_every_slot_in_blocks() {
        let t = SegmentTable::uniform(8, &[0, 1, 2]);
        assert_eq!(t.owner(0), 0);
        assert_eq!(t.owner(SLOTS - 1), 2);
        let owners: Vec<u32> = t.segments.iter().map(|s| s.owner).collect();
        assert_eq!(owners, vec![0, 0, 0, 1, 1, 1, 2, 2]);
        assert_eq!(t.segment_row(t.segments[3].slot_start), 3);
        assert_eq!(t.segment_row(t.segments[3].slot_end), 3);
    }
}

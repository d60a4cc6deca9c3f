//! Instances and the segment table: which instance owns each hash slot.
//!
//! The table is an immutable, versioned value (its epoch only grows); the proxy reads the
//! current one through `arc-swap` on every request without locking, and a change publishes
//! a new table.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use shardcast_sdk::types::{Instance, InstanceId, InstanceState, SLOTS, Segment};

/// The table as saved on disk. Instances are named, never numbered: ids are positions in
/// the configuration, which an operator may reorder or extend between two runs.
#[derive(Serialize, Deserialize)]
struct Stored {
    epoch: u64,
    segments: Vec<StoredSegment>,
    /// Instance states an action set, by instance name.
    #[serde(default)]
    states: BTreeMap<String, InstanceState>,
}

impl Stored {
    /// `segments` and `states` (by instance id) with every instance named from
    /// `instances`; the first id it does not list, if any.
    fn named(
        epoch: u64,
        segments: &[Segment],
        states: &[InstanceState],
        instances: &[Instance],
    ) -> Result<Self, InstanceId> {
        let name = |id: InstanceId| instances.get(id as usize).map(|i| i.name.clone()).ok_or(id);
        Ok(Stored {
            epoch,
            segments: segments
                .iter()
                .map(|s| {
                    Ok(StoredSegment {
                        id: s.id,
                        slot_start: s.slot_start,
                        slot_end: s.slot_end,
                        owner: name(s.owner)?,
                    })
                })
                .collect::<Result<_, InstanceId>>()?,
            states: states
                .iter()
                .enumerate()
                .map(|(id, state)| Ok((name(id as InstanceId)?, *state)))
                .collect::<Result<_, InstanceId>>()?,
        })
    }
}

/// One segment as saved: its owner by name.
#[derive(Serialize, Deserialize)]
struct StoredSegment {
    id: u32,
    slot_start: u16,
    slot_end: u16,
    owner: String,
}

/// The table as earlier versions saved it: owners and states by position in the
/// configuration. Read once, resolved against the configuration as it is (which is what the
/// positions meant), and saved by name from then on.
#[derive(Deserialize)]
struct Positional {
    epoch: u64,
    segments: Vec<Segment>,
    #[serde(default)]
    states: Vec<InstanceState>,
}

/// A saved table that cannot be used with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read or parsed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file parses but is not a table of this fleet.
    #[error("{0}")]
    Invalid(String),
}

/// One version of the slot → segment → instance mapping.
#[derive(Clone, Debug)]
pub struct SegmentTable {
    /// Version; only grows.
    pub epoch: u64,
    /// Segments in slot order.
    pub segments: Vec<Segment>,
    /// Instance states by id, where an action changed them (activate a standby, drain);
    /// empty or shorter: the configured states.
    pub states: Vec<InstanceState>,
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
            states: Vec::new(),
            slot_owner,
        }
    }

    /// The instance owning `slot`.
    pub fn owner(&self, slot: u16) -> InstanceId {
        self.slot_owner[usize::from(slot % SLOTS)]
    }

    /// This table with segment `row` owned by `owner`, one epoch later.
    pub fn with_owner(&self, row: usize, owner: InstanceId) -> Self {
        let mut segments = self.segments.clone();
        if let Some(s) = segments.get_mut(row) {
            s.owner = owner;
        }
        self.next(segments)
    }

    /// This table with instance states `states`, one epoch later.
    pub fn with_states(&self, states: Vec<InstanceState>) -> Self {
        let mut t = self.next(self.segments.clone());
        t.states = states;
        t
    }

    /// The next version: `segments`, the same instance states.
    fn next(&self, segments: Vec<Segment>) -> Self {
        let mut t = SegmentTable::from_segments(self.epoch + 1, segments);
        t.states = self.states.clone();
        t
    }

    /// This table with segment `id` split at `at` (the upper half gets a new id), one
    /// epoch later.
    pub fn split(&self, id: u32, at: u16) -> Result<Self, String> {
        let row = self.row_of(id)?;
        let s = &self.segments[row];
        if at <= s.slot_start || at > s.slot_end {
            return Err(format!(
                "slot {at} is not inside segment {id} ({}..={}) above its first slot",
                s.slot_start, s.slot_end
            ));
        }
        let next_id = self.segments.iter().map(|s| s.id).max().unwrap_or(0) + 1;
        let mut segments = self.segments.clone();
        let mut upper = segments[row];
        segments[row].slot_end = at - 1;
        upper.id = next_id;
        upper.slot_start = at;
        segments.insert(row + 1, upper);
        Ok(self.next(segments))
    }

    /// This table with adjacent segments `low` and `high` (same owner) merged into `low`,
    /// one epoch later.
    pub fn merge(&self, low: u32, high: u32) -> Result<Self, String> {
        let row = self.row_of(low)?;
        let next = self.row_of(high)?;
        if next != row + 1 {
            return Err(format!("segments {low} and {high} are not adjacent"));
        }
        if self.segments[row].owner != self.segments[next].owner {
            return Err(format!("segments {low} and {high} have different owners"));
        }
        let mut segments = self.segments.clone();
        let upper = segments.remove(next);
        segments[row].slot_end = upper.slot_end;
        Ok(self.next(segments))
    }

    fn row_of(&self, id: u32) -> Result<usize, String> {
        self.segments
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| format!("unknown segment {id}"))
    }

    /// Write the table to `path` atomically (a temporary file, fsync, rename), naming each
    /// owner by its name in `instances` (the fleet, in id order).
    pub fn save(&self, path: &Path, instances: &[Instance]) -> std::io::Result<()> {
        let bytes = self.to_bytes(instances)?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
            dir.sync_all()?;
        }
        Ok(())
    }

    /// The table saved at `path`, if there is one, with owners resolved by name against
    /// `instances` (the fleet as configured now, in id order). A table that does not cover
    /// every slot exactly once, or whose segments belong to an instance the configuration
    /// no longer lists, is an error saying what to do.
    pub fn load(path: &Path, instances: &[Instance]) -> Result<Option<Self>, LoadError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Self::from_bytes(&text, instances).map(Some)
    }

    /// The table as stored (JSON, owners by name in `instances`, the fleet in id order):
    /// what [`SegmentTable::save`] writes and the cluster store keeps.
    pub fn to_bytes(&self, instances: &[Instance]) -> std::io::Result<Vec<u8>> {
        let stored = Stored::named(self.epoch, &self.segments, &self.states, instances)
            .map_err(|id| std::io::Error::other(format!("no instance with id {id}")))?;
        serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)
    }

    /// A table from [`SegmentTable::to_bytes`]'s form (or the older positional one), with
    /// owners resolved by name against `instances`; checked as [`SegmentTable::load`] says.
    pub fn from_bytes(text: &[u8], instances: &[Instance]) -> Result<Self, LoadError> {
        let stored: Stored = match serde_json::from_slice(text) {
            Ok(s) => s,
            Err(e) => {
                let old: Positional = serde_json::from_slice(text).map_err(|_| {
                    LoadError::Invalid(format!(
                        "not a segment table ({e}); restore it from a backup: starting from the configured layout would route moved segments to where their data no longer is"
                    ))
                })?;
                Stored::named(old.epoch, &old.segments, &old.states, instances).map_err(|id| {
                    LoadError::Invalid(format!(
                        "a table saved by position names instance {id}, which the configuration does not list"
                    ))
                })?
            }
        };
        let mut next = 0u32;
        for s in &stored.segments {
            if u32::from(s.slot_start) != next || s.slot_end < s.slot_start {
                return Err(LoadError::Invalid(format!(
                    "segment {} starts at slot {} where slot {next} was expected",
                    s.id, s.slot_start
                )));
            }
            next = u32::from(s.slot_end) + 1;
        }
        if next != u32::from(SLOTS) {
            return Err(LoadError::Invalid(
                "the segments do not cover every slot".into(),
            ));
        }
        let id_of = |name: &str| instances.iter().find(|i| i.name == name).map(|i| i.id);
        let mut missing: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut segments = Vec::with_capacity(stored.segments.len());
        for s in &stored.segments {
            match id_of(&s.owner) {
                Some(owner) => segments.push(Segment {
                    id: s.id,
                    slot_start: s.slot_start,
                    slot_end: s.slot_end,
                    owner,
                    keys: 0,
                    bytes: 0,
                    migrating: false,
                }),
                None => missing.entry(&s.owner).or_default().push(s.id),
            }
        }
        if let Some((name, ids)) = missing.into_iter().next() {
            return Err(LoadError::Invalid(format!(
                "instance `{name}` owns {} segment(s) ({}) but the configuration no longer lists it: put it back in `[[instances]]`, drain it (a policy's drain-instance action) until it owns nothing, then remove it",
                ids.len(),
                ids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut table = SegmentTable::from_segments(stored.epoch, segments);
        // Until an action sets a state, the configured states hold. States of instances no
        // longer configured are dropped: they own nothing (checked above).
        if !stored.states.is_empty() {
            table.states = instances
                .iter()
                .map(|i| stored.states.get(&i.name).copied().unwrap_or(i.state))
                .collect();
        }
        Ok(table)
    }

    /// The row of the segment holding `slot`.
    pub fn segment_row(&self, slot: u16) -> usize {
        self.segments.partition_point(|s| s.slot_end < slot)
    }
}

/// Tables kept for [`Topology::table_at`].
pub const HISTORY: usize = 64;

/// The fleet and its current segment table.
#[derive(Debug)]
pub struct Topology {
    /// Every configured instance, in id order, with its configured state (the state now is
    /// [`Topology::state`]).
    pub instances: Vec<Instance>,
    table: ArcSwap<SegmentTable>,
    /// The last [`HISTORY`] tables published, oldest first: what a cursor made under an
    /// older table is checked against.
    history: std::sync::Mutex<std::collections::VecDeque<Arc<SegmentTable>>>,
    /// The epoch of each table published, for those who follow changes.
    published: tokio::sync::watch::Sender<u64>,
}

impl Topology {
    /// A topology over `instances` with `table`.
    pub fn new(instances: Vec<Instance>, table: SegmentTable) -> Self {
        let epoch = table.epoch;
        let table = Arc::new(table);
        Topology {
            instances,
            history: std::sync::Mutex::new(std::iter::once(table.clone()).collect()),
            table: ArcSwap::new(table),
            published: tokio::sync::watch::channel(epoch).0,
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
        self.publish_when(table, |_| true);
    }

    /// Publish `table` if its epoch is past the current table's (checked and published
    /// under one lock, so two publishers never take the table back); true if it was.
    pub fn publish_newer(&self, table: SegmentTable) -> bool {
        self.publish_when(table, |t| t.epoch > self.table().epoch)
    }

    fn publish_when(
        &self,
        table: SegmentTable,
        wanted: impl FnOnce(&SegmentTable) -> bool,
    ) -> bool {
        let epoch = table.epoch;
        let table = Arc::new(table);
        {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            if !wanted(&table) {
                return false;
            }
            if history.len() >= HISTORY {
                history.pop_front();
            }
            history.push_back(table.clone());
            self.table.store(table);
        }
        self.published.send_replace(epoch);
        true
    }

    /// The newest recent table whose epoch ends in the low 16 bits `epoch16`, if it is
    /// still in the history.
    pub fn table_at(&self, epoch16: u16) -> Option<Arc<SegmentTable>> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history
            .iter()
            .rev()
            .find(|t| t.epoch as u16 == epoch16)
            .cloned()
    }

    /// Notified with the epoch of every table published from now on.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// The state of instance `id` now: as an action last set it, else as configured.
    pub fn state(&self, id: InstanceId) -> InstanceState {
        self.state_in(&self.table.load(), id)
    }

    /// The state of instance `id` in `table`: the one an action set there, or the
    /// configured one.
    pub fn state_in(&self, table: &SegmentTable, id: InstanceId) -> InstanceState {
        table.states.get(id as usize).copied().unwrap_or_else(|| {
            self.instances
                .get(id as usize)
                .map(|i| i.state)
                .unwrap_or(InstanceState::Down)
        })
    }

    /// The state of every instance now, by id.
    pub fn states(&self) -> Vec<InstanceState> {
        self.states_in(&self.table.load())
    }

    /// The state of every instance in `table`, by id.
    pub fn states_in(&self, table: &SegmentTable) -> Vec<InstanceState> {
        (0..self.instances.len() as InstanceId)
            .map(|i| self.state_in(table, i))
            .collect()
    }

    /// Ids of the instances that may own segments: active and draining.
    pub fn serving(&self) -> Vec<InstanceId> {
        self.states()
            .into_iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, InstanceState::Active | InstanceState::Draining))
            .map(|(i, _)| i as InstanceId)
            .collect()
    }

    /// Ids of the active instances.
    pub fn active(&self) -> Vec<InstanceId> {
        self.states()
            .into_iter()
            .enumerate()
            .filter(|(_, s)| *s == InstanceState::Active)
            .map(|(i, _)| i as InstanceId)
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

    fn fleet(names: &[&str]) -> Vec<Instance> {
        names
            .iter()
            .enumerate()
            .map(|(id, name)| Instance {
                id: id as InstanceId,
                name: (*name).into(),
                address: format!("127.0.0.1:{}", 7000 + id),
                zone: String::new(),
                capacity: 1.0,
                state: InstanceState::Active,
            })
            .collect()
    }

    #[test]
    fn a_saved_table_loads_back_and_a_gap_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("table.json");
        let abc = fleet(&["a", "b", "c"]);
        assert!(
            SegmentTable::load(&path, &abc)
                .expect("absent is fine")
                .is_none()
        );
        let t = SegmentTable::uniform(8, &[0, 1, 2]).with_owner(2, 1);
        t.save(&path, &abc).expect("save");
        let back = SegmentTable::load(&path, &abc)
            .expect("load")
            .expect("present");
        assert_eq!(back.epoch, 2);
        assert_eq!(back.owner(back.segments[2].slot_start), 1);
        let mut gap = t.segments.clone();
        gap.remove(4);
        SegmentTable::from_segments(3, gap)
            .save(&path, &abc)
            .expect("save");
        let e = SegmentTable::load(&path, &abc).expect_err("gap");
        assert!(e.to_string().contains("segment 5 starts at slot"), "{e}");
    }

    #[test]
    fn a_table_saved_by_position_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("table.json");
        let t = SegmentTable::uniform(4, &[0, 1]).with_owner(0, 1);
        let old = serde_json::json!({ "epoch": t.epoch, "segments": t.segments, "states": [] });
        std::fs::write(&path, old.to_string()).expect("write");
        let back = SegmentTable::load(&path, &fleet(&["a", "b"]))
            .expect("load")
            .expect("present");
        assert_eq!(back.segments, t.segments);
        assert_eq!(back.epoch, t.epoch);
    }

    #[test]
    fn owners_are_saved_by_name_so_a_reordered_fleet_keeps_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("table.json");
        let abc = fleet(&["a", "b", "c"]);
        let t = SegmentTable::uniform(6, &[0, 1, 2])
            .with_owner(0, 2)
            .with_states(vec![
                InstanceState::Active,
                InstanceState::Draining,
                InstanceState::Active,
            ]);
        t.save(&path, &abc).expect("save");
        // Reordered, with a new instance in front: each segment keeps its owner's name.
        let reordered = fleet(&["new", "c", "a", "b"]);
        let back = SegmentTable::load(&path, &reordered)
            .expect("load")
            .expect("present");
        let owner_names = |table: &SegmentTable, fleet: &[Instance]| -> Vec<String> {
            table
                .segments
                .iter()
                .map(|s| fleet[s.owner as usize].name.clone())
                .collect()
        };
        assert_eq!(owner_names(&back, &reordered), owner_names(&t, &abc));
        assert_eq!(back.states[3], InstanceState::Draining, "b's state by name");
        assert_eq!(back.states[0], InstanceState::Active, "new: as configured");
        // An instance that owns segments cannot silently disappear.
        let e = SegmentTable::load(&path, &fleet(&["a", "c"])).expect_err("b is gone");
        let text = e.to_string();
        assert!(
            text.contains("instance `b`") && text.contains("drain"),
            "{text}"
        );
    }

    #[test]
    fn split_and_merge_change_only_the_table() {
        let t = SegmentTable::uniform(4, &[0, 1]);
        let mid = t.segments[1].slot_start + 10;
        let s = t.split(1, mid).expect("split");
        assert_eq!(s.segments.len(), 5);
        assert_eq!((s.segments[2].id, s.segments[2].slot_start), (4, mid));
        assert_eq!(s.owner(mid), t.owner(mid));
        let m = s.merge(1, 4).expect("merge");
        assert_eq!(m.segments, t.segments);
        assert_eq!(m.epoch, t.epoch + 2);
        assert!(t.merge(1, 2).is_err(), "different owners");
        assert!(t.merge(0, 2).is_err(), "not adjacent");
        assert!(t.split(1, t.segments[1].slot_start).is_err());
    }
}

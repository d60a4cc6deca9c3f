//! The gate: what the proxy does with a request for a hash slot that is moving.
//!
//! Every slot is in one of three states:
//! - `Open`: route as the segment table says;
//! - `Tracking`: a migration is copying the slot; every write that completes records its key
//!   in the dirty set, so the migration copies it again (a key that no longer exists on the
//!   source is deleted on the target: a tombstone);
//! - `Held`: cutover; new requests for the slot wait until it opens again (then route by the
//!   new table), or fail with a retryable error past the hold bound.
//!
//! Writes are counted while in flight, per slot, so a cutover can wait for the ones already
//! sent to the source before it copies the last dirty keys. A writer first counts itself,
//! then reads the state; the executor first sets `Held`, then waits for the count to reach
//! zero: with both sequentially consistent, no write can reach the source unseen once the
//! cutover has started.
//!
//! A write that stays in flight for as long as a client likes (a WATCH until its
//! transaction ends, a blocking command until it is served) is also counted as pinned, so
//! the executor can see before holding anything that a cutover would only wait and abort.
//!
//! The executor drives the states; the proxy only reads them, records keys and waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashSet;
use tokio::sync::watch;

use super::slot::{SLOTS, slot};

/// What the proxy does with requests for one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// Route normally.
    Open = 0,
    /// Route normally; record written keys.
    Tracking = 1,
    /// Hold new requests.
    Held = 2,
}

/// The gate of every slot, shared by the proxy and the migration executor.
pub struct Gate {
    state: Vec<AtomicU8>,
    /// Slots not open, and slots held: a request checks these first, one load each.
    moving: AtomicU64,
    holding: AtomicU64,
    inflight: Vec<AtomicU32>,
    pinned: Vec<AtomicU32>,
    dirty: DashSet<DirtyKey>,
    changed: watch::Sender<u64>,
    cutover_holds: HoldClock,
    instance_holds: HoldClock,
    /// `CLIENT PAUSE`, across every loop.
    pub pause: super::pause::ClientPause,
    /// Cluster mode's fence: no request is served while this proxy's lease is not alive.
    pub fence: Arc<super::fence::Fence>,
    /// Cluster mode: migrations the cluster's journal holds unfinished, wherever they run.
    journaled: AtomicU64,
}

/// Counts of requests held and how long.
#[derive(Debug, Default)]
struct HoldClock {
    requests: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
}

impl HoldClock {
    fn record(&self, held: Duration) {
        let us = held.as_micros() as u64;
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    fn stats(&self) -> HeldStats {
        HeldStats {
            requests: self.requests.load(Ordering::Relaxed),
            total_us: self.total_us.load(Ordering::Relaxed),
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("dirty", &self.dirty.len())
            .finish_non_exhaustive()
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            state: (0..SLOTS).map(|_| AtomicU8::new(0)).collect(),
            moving: AtomicU64::new(0),
            holding: AtomicU64::new(0),
            inflight: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            pinned: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            dirty: DashSet::new(),
            changed: watch::channel(0).0,
            cutover_holds: HoldClock::default(),
            instance_holds: HoldClock::default(),
            pause: Default::default(),
            fence: Default::default(),
            journaled: AtomicU64::new(0),
        }
    }
}

/// Totals of requests held at the gate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldStats {
    /// Requests that waited.
    pub requests: u64,
    /// Total time they waited, in microseconds.
    pub total_us: u64,
    /// The longest wait, in microseconds.
    pub max_us: u64,
}

/// A key written while its slot moved: its database and its name.
pub type DirtyKey = (u32, Bytes);

/// A write in flight: counted on its slots until dropped, which records its keys (in its
/// database) as dirty wherever a migration is tracking.
pub struct WriteGuard {
    gate: Arc<Gate>,
    db: u32,
    keys: Vec<(u16, Bytes)>,
    pinned: bool,
}

impl WriteGuard {
    /// True when this guard counts a write on `slot`.
    pub fn covers(&self, slot: u16) -> bool {
        self.keys.iter().any(|(s, _)| *s == slot)
    }

    /// Mark this write as one that lasts as long as the client wants (a WATCH, a blocking
    /// command): its slots count as pinned until it is dropped.
    pub fn pin(mut self) -> Self {
        if !self.pinned {
            for (s, _) in &self.keys {
                self.gate.pinned[usize::from(*s)].fetch_add(1, Ordering::SeqCst);
            }
            self.pinned = true;
        }
        self
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        for (s, key) in self.keys.drain(..) {
            if self.gate.state(s) != SlotState::Open {
                self.gate.dirty.insert((self.db, key));
            }
            if self.pinned {
                self.gate.pinned[usize::from(s)].fetch_sub(1, Ordering::SeqCst);
            }
            self.gate.inflight[usize::from(s)].fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Gate {
    /// A gate with every slot open.
    pub fn new() -> Arc<Self> {
        Arc::new(Gate::default())
    }

    /// The state of `slot`.
    pub fn state(&self, slot: u16) -> SlotState {
        match self.state[usize::from(slot % SLOTS)].load(Ordering::SeqCst) {
            0 => SlotState::Open,
            1 => SlotState::Tracking,
            _ => SlotState::Held,
        }
    }

    /// Count a write of `keys` (in database `db`) in flight. Fails with a held slot if any
    /// of them is held (nothing stays counted then): wait for it with [`Gate::wait_open`]
    /// and route again.
    pub fn begin_write(self: &Arc<Self>, db: u32, keys: &[&Bytes]) -> Result<WriteGuard, u16> {
        let keys: Vec<(u16, Bytes)> = keys.iter().map(|k| (slot(k), (*k).clone())).collect();
        for (s, _) in &keys {
            self.inflight[usize::from(*s)].fetch_add(1, Ordering::SeqCst);
        }
        let held = keys
            .iter()
            .find(|(s, _)| self.state(*s) == SlotState::Held)
            .map(|(s, _)| *s);
        if let Some(s) = held {
            for (s, _) in &keys {
                self.inflight[usize::from(*s)].fetch_sub(1, Ordering::SeqCst);
            }
            return Err(s);
        }
        Ok(WriteGuard {
            gate: self.clone(),
            db,
            keys,
            pinned: false,
        })
    }

    /// Count a write of `keys` in flight without checking for a hold: only for a caller
    /// whose own guard already keeps those slots from being cut over (a session's WATCH).
    pub fn force_write(self: &Arc<Self>, db: u32, keys: &[&Bytes]) -> WriteGuard {
        let keys: Vec<(u16, Bytes)> = keys.iter().map(|k| (slot(k), (*k).clone())).collect();
        for (s, _) in &keys {
            self.inflight[usize::from(*s)].fetch_add(1, Ordering::SeqCst);
        }
        WriteGuard {
            gate: self.clone(),
            db,
            keys,
            pinned: false,
        }
    }

    /// Wait until `slot` is no longer held, at most `bound`. True if it opened.
    pub async fn wait_open(&self, slot: u16, bound: Duration) -> bool {
        if self.state(slot) != SlotState::Held {
            return true;
        }
        let started = Instant::now();
        let mut rx = self.changed.subscribe();
        let opened = tokio::time::timeout(bound, async {
            while self.state(slot) == SlotState::Held {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok();
        self.cutover_holds.record(started.elapsed());
        opened
    }

    /// Requests held by cutovers so far and how long they waited.
    pub fn held(&self) -> HeldStats {
        self.cutover_holds.stats()
    }

    /// Count a request held while its instance could not be reached.
    pub fn record_instance_hold(&self, held: Duration) {
        self.instance_holds.record(held);
    }

    /// Requests held for unreachable instances so far and how long they waited.
    pub fn instance_holds(&self) -> HeldStats {
        self.instance_holds.stats()
    }

    /// Set every slot of `range` to `state` and wake waiting requests.
    pub fn set(&self, range: std::ops::RangeInclusive<u16>, state: SlotState) {
        let open = SlotState::Open as u8;
        let held = SlotState::Held as u8;
        for s in range {
            let was = self.state[usize::from(s % SLOTS)].swap(state as u8, Ordering::SeqCst);
            let now = state as u8;
            match (was != open, now != open) {
                (false, true) => self.moving.fetch_add(1, Ordering::SeqCst),
                (true, false) => self.moving.fetch_sub(1, Ordering::SeqCst),
                _ => 0,
            };
            match (was == held, now == held) {
                (false, true) => self.holding.fetch_add(1, Ordering::SeqCst),
                (true, false) => self.holding.fetch_sub(1, Ordering::SeqCst),
                _ => 0,
            };
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// True while any slot is being migrated.
    pub fn any_moving(&self) -> bool {
        self.moving.load(Ordering::SeqCst) > 0 || self.journaled.load(Ordering::SeqCst) > 0
    }

    /// Cluster mode: `n` migrations are unfinished in the cluster's journal (a segment
    /// may be moving, though no slot here is marked).
    pub fn set_journaled(&self, n: u64) {
        self.journaled.store(n, Ordering::SeqCst);
    }

    /// True while any slot is held.
    pub fn any_held(&self) -> bool {
        self.holding.load(Ordering::SeqCst) > 0
    }

    /// Writes in flight on the slots of `range`.
    pub fn inflight(&self, range: std::ops::RangeInclusive<u16>) -> u64 {
        range
            .map(|s| u64::from(self.inflight[usize::from(s % SLOTS)].load(Ordering::SeqCst)))
            .sum()
    }

    /// Pinned writes (open WATCHes, blocking commands) on the slots of `range`.
    pub fn pinned(&self, range: std::ops::RangeInclusive<u16>) -> u64 {
        range
            .map(|s| u64::from(self.pinned[usize::from(s % SLOTS)].load(Ordering::SeqCst)))
            .sum()
    }

    /// Wait (at most `bound`, without holding anything) until nothing pins `range`. True
    /// if nothing does.
    pub async fn unpinned(&self, range: std::ops::RangeInclusive<u16>, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            if self.pinned(range.clone()) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Wait (at most `bound`) until no write is in flight on `range`. True if none is.
    pub async fn drain(&self, range: std::ops::RangeInclusive<u16>, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        for spin in 0u32.. {
            if self.inflight(range.clone()) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            // Writes already sent usually land within a round trip: yield first, then
            // stop spinning.
            if spin < 200 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        false
    }

    /// Record `key` (in database `db`) as written while its slot moves: what a migration
    /// learns of writes other proxies sent (cluster mode's keyspace tap).
    pub fn mark_dirty(&self, db: u32, key: Bytes) {
        self.dirty.insert((db, key));
    }

    /// Take the dirty keys whose slots fall in `range`.
    pub fn take_dirty(&self, range: std::ops::RangeInclusive<u16>) -> Vec<DirtyKey> {
        let keys: Vec<DirtyKey> = self
            .dirty
            .iter()
            .filter(|k| range.contains(&slot(&k.key().1)))
            .map(|k| k.key().clone())
            .collect();
        for k in &keys {
            self.dirty.remove(k);
        }
        keys
    }

    /// How many dirty keys fall in `range`.
    pub fn dirty_len(&self, range: std::ops::RangeInclusive<u16>) -> usize {
        self.dirty
            .iter()
            .filter(|k| range.contains(&slot(&k.key().1)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_in(range: std::ops::RangeInclusive<u16>) -> Bytes {
        (0..)
            .map(|i| Bytes::from(format!("k{i}")))
            .find(|k| range.contains(&slot(k)))
            .expect("some key hashes into the range")
    }

    #[test]
    fn writes_on_tracked_slots_become_dirty_when_they_complete() {
        let gate = Gate::new();
        let k = key_in(0..=1000);
        let other = key_in(2000..=3000);
        gate.set(0..=1000, SlotState::Tracking);
        assert!(gate.any_moving() && !gate.any_held());
        let w = gate.begin_write(3, &[&k, &other]).expect("not held");
        assert_eq!(gate.inflight(0..=1000), 1);
        assert_eq!(gate.dirty_len(0..=1000), 0, "recorded on completion");
        drop(w);
        assert_eq!(gate.inflight(0..=SLOTS - 1), 0);
        assert_eq!(gate.take_dirty(0..=1000), vec![(3, k)]);
        assert_eq!(
            gate.dirty_len(0..=SLOTS - 1),
            0,
            "untracked slot not recorded"
        );
    }

    #[test]
    fn a_held_slot_refuses_writes_and_leaves_nothing_counted() {
        let gate = Gate::new();
        let k = key_in(0..=10);
        gate.set(0..=10, SlotState::Held);
        assert!(gate.any_held());
        assert_eq!(gate.begin_write(0, &[&k]).err(), Some(slot(&k)));
        assert_eq!(gate.inflight(0..=10), 0);
        gate.set(0..=10, SlotState::Open);
        assert!(!gate.any_moving() && !gate.any_held());
    }

    #[tokio::test]
    async fn held_requests_wait_for_the_gate_to_open() {
        let gate = Gate::new();
        gate.set(5..=5, SlotState::Held);
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.wait_open(5, Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        gate.set(5..=5, SlotState::Open);
        assert!(waiter.await.expect("joins"));
        assert!(
            gate.wait_open(5, Duration::ZERO).await,
            "open slots do not wait"
        );
        gate.set(6..=6, SlotState::Held);
        assert!(!gate.wait_open(6, Duration::from_millis(10)).await, "bound");
        assert_eq!(gate.held().requests, 2);
    }
}

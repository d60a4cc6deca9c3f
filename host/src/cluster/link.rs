//! The controller's side of cluster mode: what the executor does through etcd while this
//! proxy holds the office.
//!
//! - The journal: each unfinished migration's latest step under `<prefix>/journal/<id>`,
//!   deleted when the migration ends; a new controller resumes or rolls back from it.
//! - The commit: the flip's journal record and the new table in one transaction, on the
//!   condition that the table's epoch is the one read and the office is still held, so a
//!   commit and its table change happen together or not at all.
//! - The cutover: `<prefix>/holds/<segment>` (bound to the controller's lease, so it goes
//!   when the controller dies) tells every proxy to hold the segment; each answers under
//!   `<prefix>/acks/<migration>/<proxy>` once its writes in flight there have drained. The
//!   controller goes on only when every live member has answered; a proxy whose lease ends
//!   is no longer a member.
//!
//! Every write is conditional on the office, and every operation first checks the fence
//! for the lease the office was won with: a controller deposed (or frozen past its lease)
//! does nothing more, and leaves what it started to its successor.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use shardcast_sdk::types::Instance;

use super::store::failed;
use super::{Leadership, Store};
use crate::migrate::journal::Record;
use crate::proxy::fence::Fence;
use crate::topology::SegmentTable;

/// The office of controller as this process holds it: won with `lease`.
pub struct Office {
    leadership: Leadership,
    /// The lease the office was won with.
    pub lease: i64,
    /// The journal's unfinished migrations have been resumed or rolled back: until then no
    /// new decision is carried out (a new move could collide with a rollback's cleanup).
    recovered: std::sync::atomic::AtomicBool,
}

/// A hold of one segment, as stored under `<prefix>/holds/<segment>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The migration cutting over.
    pub migration: u64,
    /// Its first slot.
    pub slot_start: u16,
    /// Its last slot.
    pub slot_end: u16,
}

impl Hold {
    /// Its slots.
    pub fn range(&self) -> std::ops::RangeInclusive<u16> {
        self.slot_start..=self.slot_end
    }
}

/// The executor's handle on the cluster.
pub struct Link {
    store: Store,
    fence: Arc<Fence>,
    instances: Vec<Instance>,
    office: Mutex<Option<Arc<Office>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Link {
    /// A link over `store`, acting while `fence` holds the office's lease; tables are
    /// stored with owners named from `instances`.
    pub fn new(store: Store, fence: Arc<Fence>, instances: Vec<Instance>) -> Arc<Self> {
        Arc::new(Link {
            store,
            fence,
            instances,
            office: Mutex::new(None),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This process won the office with `lease`.
    pub fn take_office(&self, leadership: Leadership, lease: i64) {
        *lock(&self.office) = Some(Arc::new(Office {
            leadership,
            lease,
            recovered: std::sync::atomic::AtomicBool::new(false),
        }));
    }

    /// The office won with `lease` has recovered the journal: decisions may be carried out.
    pub fn recovered(&self, lease: i64) {
        if let Some(o) = lock(&self.office).as_ref().filter(|o| o.lease == lease) {
            o.recovered.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// This process no longer holds the office.
    pub fn leave_office(&self) -> Option<Arc<Office>> {
        lock(&self.office).take()
    }

    /// The lease of the office this process holds now, if it holds it and that lease is
    /// alive: the term a migration is started in, and checked against from then on.
    pub fn term(&self) -> Option<i64> {
        let lease = lock(&self.office).as_ref()?.lease;
        self.fence.holds(lease).then_some(lease)
    }

    /// True while this proxy holds the office, has recovered the journal, and etcd answers
    /// its keep-alives: a lease
    /// renewed within the last keep-alive interval or so has more than 40 % of its TTL
    /// left. Decisions pause when it has not (etcd restarting, unreachable), so that
    /// nothing is started that could not be journaled.
    pub fn deciding(&self) -> bool {
        let ttl = Duration::from_secs(self.store.config.lease_ttl_s);
        let recovered = lock(&self.office)
            .as_ref()
            .is_some_and(|o| o.recovered.load(std::sync::atomic::Ordering::SeqCst));
        recovered && self.term().is_some() && self.fence.remaining() > ttl.mul_f64(0.4)
    }

    /// True while `term` is the office held now and its lease is alive.
    pub fn serving(&self, term: i64) -> bool {
        self.term() == Some(term)
    }

    fn office_in(&self, term: i64) -> Result<Arc<Office>, String> {
        let office = lock(&self.office).clone();
        match office {
            Some(o) if o.lease == term && self.fence.holds(term) => Ok(o),
            _ => Err("this proxy no longer holds the controller's office; the next controller resumes or rolls back from the journal".into()),
        }
    }

    fn journal_key(&self, id: u64) -> String {
        self.store.key(&format!("journal/{id:020}"))
    }

    fn hold_key(&self, segment: u32) -> String {
        self.store.key(&format!("holds/{segment:010}"))
    }

    fn acks_prefix(&self, migration: u64) -> String {
        self.store.key(&format!("acks/{migration:020}/"))
    }

    async fn txn(&self, txn: Txn, doing: &'static str) -> Result<bool, String> {
        let mut client = self.store.client.clone();
        client
            .txn(txn)
            .await
            .map(|r| r.succeeded())
            .map_err(|e| failed(doing)(e).to_string())
    }

    /// Apply `ops` in `term`, on the condition that the office is still held.
    pub async fn guarded(
        &self,
        term: i64,
        ops: Vec<TxnOp>,
        doing: &'static str,
    ) -> Result<(), String> {
        let office = self.office_in(term)?;
        let txn = Txn::new()
            .when(vec![office.leadership.guard()])
            .and_then(ops);
        match self.txn(txn, doing).await? {
            true => Ok(()),
            false => Err("the controller's office was lost".into()),
        }
    }

    /// Write `table` in `term`, if the stored table's epoch is still `read` and the office
    /// is held. `Ok(false)`: not written. An error: whether it was is unknown.
    pub async fn swap_table(
        &self,
        term: i64,
        read: u64,
        table: &SegmentTable,
    ) -> Result<bool, String> {
        let office = self.office_in(term)?;
        self.store
            .swap_table(Some(read), Some(&office.leadership), table, &self.instances)
            .await
            .map_err(|e| e.to_string())
    }

    /// The table stored now.
    pub async fn stored_table(&self) -> Result<SegmentTable, String> {
        self.store
            .table(&self.instances)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "etcd holds no segment table".into())
    }

    /// Journal `record` in `term`: its migration's latest step, or, for a final step, the
    /// end of its entry.
    pub async fn journal(&self, term: i64, record: &Record) -> Result<(), String> {
        let key = self.journal_key(record.id);
        let op = if record.is_final() {
            TxnOp::delete(key, None)
        } else {
            let bytes = serde_json::to_vec(record).map_err(|e| e.to_string())?;
            TxnOp::put(key, bytes, None)
        };
        self.guarded(term, vec![op], "journaling a migration step")
            .await
    }

    /// Commit a flip in `term`: `record` (the commit) and `table` together, if the stored
    /// table's epoch is still `read` and the office is held. `Ok(false)`: neither was
    /// written. An error: whether they were is unknown.
    pub async fn commit(
        &self,
        term: i64,
        record: &Record,
        read: u64,
        table: &SegmentTable,
    ) -> Result<bool, String> {
        let office = self.office_in(term).map_err(|e| {
            // Not an unknown outcome: nothing was sent.
            tracing::warn!("{e}");
            e
        });
        let Ok(office) = office else {
            return Ok(false);
        };
        let bytes = table.to_bytes(&self.instances).map_err(|e| e.to_string())?;
        let line = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        let epoch_key = self.store.key("table-epoch");
        let txn = Txn::new()
            .when(vec![
                Compare::value(epoch_key.clone(), CompareOp::Equal, read.to_string()),
                office.leadership.guard(),
            ])
            .and_then(vec![
                TxnOp::put(self.store.key("table"), bytes, None),
                TxnOp::put(epoch_key, table.epoch.to_string(), None),
                TxnOp::put(self.journal_key(record.id), line, None),
            ]);
        self.txn(txn, "committing a flip").await
    }

    /// Hold `hold`'s segment on every proxy and wait (at most `bound`) until every live
    /// member has acknowledged that its writes in flight there have drained.
    pub async fn hold(
        &self,
        term: i64,
        segment: u32,
        hold: &Hold,
        bound: Duration,
    ) -> Result<(), String> {
        let office = self.office_in(term)?;
        let deadline = Instant::now() + bound;
        let bytes = serde_json::to_vec(hold).map_err(|e| e.to_string())?;
        let txn = Txn::new()
            .when(vec![office.leadership.guard()])
            .and_then(vec![TxnOp::put(
                self.hold_key(segment),
                bytes,
                Some(PutOptions::new().with_lease(office.lease)),
            )]);
        if !self.txn(txn, "holding a segment on every proxy").await? {
            return Err("the controller's office was lost".into());
        }
        let prefix = self.acks_prefix(hold.migration);
        loop {
            let members: BTreeSet<String> = self
                .store
                .members()
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .collect();
            let mut client = self.store.client.clone();
            let got = client
                .get(
                    prefix.clone(),
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                )
                .await
                .map_err(|e| failed("reading acknowledgements")(e).to_string())?;
            let acked: BTreeSet<String> = got
                .kvs()
                .iter()
                .filter_map(|kv| kv.key().strip_prefix(prefix.as_bytes()))
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .collect();
            let missing: Vec<&String> = members.difference(&acked).collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "proxies {missing:?} did not acknowledge the hold within {} ms (they are waited for until their leases end)",
                    bound.as_millis()
                ));
            }
            self.office_in(term)?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// End the hold of `segment` (if it is still `hold`'s) and its acknowledgements: every
    /// proxy reads the table again and serves the segment by it.
    pub async fn release(&self, segment: u32, hold: &Hold) {
        let Ok(bytes) = serde_json::to_vec(hold) else {
            return;
        };
        let key = self.hold_key(segment);
        let txn = Txn::new()
            .when(vec![Compare::value(key.clone(), CompareOp::Equal, bytes)])
            .and_then(vec![
                TxnOp::delete(key, None),
                TxnOp::delete(
                    self.acks_prefix(hold.migration),
                    Some(DeleteOptions::new().with_prefix()),
                ),
            ]);
        if let Err(e) = self.txn(txn, "releasing a hold").await {
            // Bound to the controller's lease: it goes when the lease does.
            tracing::warn!(segment, "{e}; the hold ends with the controller's lease");
        }
    }

    /// The journal's unfinished migrations: each one's latest step.
    pub async fn unfinished(&self) -> Result<Vec<Record>, String> {
        let mut client = self.store.client.clone();
        let got = client
            .get(
                self.store.key("journal/"),
                Some(GetOptions::new().with_prefix()),
            )
            .await
            .map_err(|e| failed("reading the journal")(e).to_string())?;
        let mut records = Vec::new();
        for kv in got.kvs() {
            match serde_json::from_slice::<Record>(kv.value()) {
                Ok(r) => records.push(r),
                Err(e) => tracing::error!(
                    key = %String::from_utf8_lossy(kv.key()),
                    "an unreadable journal entry is left alone: {e}"
                ),
            }
        }
        Ok(records)
    }
}

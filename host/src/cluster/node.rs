//! One proxy's life in the cluster: register, catch up, serve, and start over when the
//! lease lapses.
//!
//! - **Joining.** The proxy takes a lease, reads the holds in force and the table (seeding
//!   it from its configuration when etcd has none), applies them, and only then opens its
//!   fence. Until then, and again from the moment its lease may have lapsed, it serves no
//!   request (self-fencing).
//! - **Following.** It watches the holds: a hold sets the segment's slots to held, waits for
//!   its writes in flight there to drain (within the cutover bound) and acknowledges under
//!   its lease; the end of a hold makes it read the table (which the controller wrote
//!   before ending the hold) and then open the slots. It follows the table's epoch and
//!   publishes every newer table, and counts the journal's unfinished migrations (a flush
//!   is refused while there are any).
//! - **Campaigning.** With a policy configured it campaigns for the controller's office
//!   with its lease; once elected it recovers the journal's unfinished migrations and its
//!   executor acts from then on.
//!
//! Holds and the table are re-read in full after any watch fails, so a missed event (etcd
//! restarted, the connection dropped) costs a read, never a wrong state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{EventType, GetOptions, PutOptions};

use super::link::{Hold, Link};
use super::store::failed;
use super::{Report, Store, StoreError};
use shardcast_sdk::types::Session;

use crate::migrate::Executor;
use crate::proxy::gate::{Gate, SlotState};
use crate::telemetry::Interval;
use crate::topology::Topology;

/// Pause before trying etcd again after a failure.
const RETRY: Duration = Duration::from_millis(250);

/// One proxy of the cluster.
pub struct Node {
    store: Store,
    link: Arc<Link>,
    topology: Arc<Topology>,
    gate: Arc<Gate>,
    /// How long a hold waits for this proxy's writes in flight to drain.
    drain: Duration,
    /// Campaign for the controller's office (a policy is configured).
    campaigns: bool,
    /// Holds in force here, by key.
    holds: Mutex<HashMap<String, Hold>>,
    /// The lease served under (0: none): what counters are published with.
    lease: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Node {
    /// A node over `link`'s store; `drain` bounds a hold's wait for writes in flight.
    pub fn new(
        link: Arc<Link>,
        topology: Arc<Topology>,
        gate: Arc<Gate>,
        drain: Duration,
        campaigns: bool,
    ) -> Arc<Self> {
        gate.fence.arm();
        Arc::new(Node {
            store: link.store().clone(),
            link,
            topology,
            gate,
            drain,
            campaigns,
            holds: Mutex::new(HashMap::new()),
            lease: AtomicI64::new(0),
        })
    }

    /// The lease served under, if any.
    pub fn lease(&self) -> Option<i64> {
        match self.lease.load(Ordering::SeqCst) {
            0 => None,
            l => Some(l),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// True while this proxy holds the controller's office.
    pub fn leading(&self) -> bool {
        self.link.term().is_some()
    }

    /// Run the proxy's part in the cluster for as long as the process lives.
    pub async fn run(self: Arc<Self>, executor: Arc<Executor>) {
        let name = self.store.config.name.clone();
        loop {
            let mut membership = match self.store.register(&self.gate.fence).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(proxy = %name, "cannot join the cluster: {e}; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let lease = membership.lease;
            tracing::info!(proxy = %name, lease, "registered; catching up with the cluster");
            let mut campaign = None;
            loop {
                let caught_up = tokio::select! {
                    r = self.catch_up(lease) => r,
                    () = membership.until_lapsed() => break,
                };
                let revision = match caught_up {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(proxy = %name, "cannot catch up: {e}; retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                };
                if self.lease() != Some(lease) {
                    self.gate.fence.open(lease, membership.alive_until());
                    self.lease.store(lease, Ordering::SeqCst);
                    tracing::info!(proxy = %name, epoch = self.topology.table().epoch, "joined: serving requests");
                }
                if self.campaigns && campaign.is_none() {
                    campaign = Some(tokio::spawn(self.clone().campaign(lease, executor.clone())));
                }
                tokio::select! {
                    e = self.follow(revision, lease) => {
                        tracing::warn!(proxy = %name, "lost track of the cluster: {e}; reading it again");
                        tokio::time::sleep(RETRY).await;
                    }
                    () = membership.until_lapsed() => break,
                }
            }
            self.lease.store(0, Ordering::SeqCst);
            if let Some(c) = campaign {
                c.abort();
            }
            if self.link.leave_office().is_some() {
                tracing::error!(proxy = %name, "the lease lapsed: no longer the controller");
            }
            tracing::error!(proxy = %name, lease, "the lease lapsed: no request is served until this proxy has registered again and caught up");
            drop(membership);
        }
    }

    /// Campaign with `lease` until elected, then recover what the journal left unfinished.
    async fn campaign(self: Arc<Self>, lease: i64, executor: Arc<Executor>) {
        let name = &self.store.config.name;
        let leadership = loop {
            match self.store.campaign(lease).await {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!(proxy = %name, "campaign failed: {e}; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        self.link.take_office(leadership, lease);
        tracing::warn!(proxy = %name, "elected controller");
        for sentence in executor.recover().await {
            tracing::warn!("recovery: {sentence}");
        }
        self.link.recovered(lease);
        executor.resume_drains();
    }

    /// Publish this proxy's counters for `interval` and its busiest sessions of `live`
    /// and, as the controller, add every other proxy's counters it has not added yet
    /// (`seen`: the latest tick added per proxy) and every other live proxy's sessions, so
    /// the policy sees the traffic and the clients of every proxy. Counters of a proxy that
    /// has not published since are left for the next tick; a failure to reach etcd leaves
    /// the interval and the sessions as this proxy counted them.
    pub async fn exchange(
        &self,
        interval: &mut Interval,
        live: &mut Vec<(Session, u64)>,
        seen: &mut HashMap<String, u64>,
    ) {
        let Some(lease) = self.lease() else { return };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let report = Report {
            tick: now_ms,
            segments: interval
                .table
                .segments
                .iter()
                .map(|s| s.id)
                .zip(interval.segments.iter().cloned())
                .collect(),
            instances: self
                .topology
                .instances
                .iter()
                .map(|i| i.name.clone())
                .zip(interval.instances.iter().cloned())
                .collect(),
            sessions: super::sessions::report(live, &self.topology.instances),
        };
        if let Err(e) = self.store.publish_report(lease, &report).await {
            tracing::debug!("cannot publish counters: {e}");
        }
        if !self.leading() {
            return;
        }
        let reports = match self.store.reports().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("cannot read other proxies' counters: {e}");
                return;
            }
        };
        let me = &self.store.config.name;
        for (name, r) in reports {
            if &name == me {
                continue;
            }
            let fresh = seen.get(&name).is_none_or(|t| *t < r.tick);
            live.extend(super::sessions::adopt(
                &r.sessions,
                fresh,
                &self.topology.instances,
            ));
            if !fresh {
                continue;
            }
            seen.insert(name, r.tick);
            for (id, t) in &r.segments {
                if let Some(row) = interval.table.segments.iter().position(|s| s.id == *id) {
                    interval.segments[row].merge(t);
                }
            }
            for (instance, t) in &r.instances {
                if let Some(i) = self
                    .topology
                    .instances
                    .iter()
                    .position(|i| &i.name == instance)
                {
                    interval.instances[i].merge(t);
                }
            }
        }
    }

    /// Read the holds and the table and apply them; the revision read at.
    async fn catch_up(&self, lease: i64) -> Result<i64, StoreError> {
        let mut client = self.store.client.clone();
        let prefix = self.store.key("holds/");
        let got = client
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(failed("reading holds"))?;
        let revision = got.header().map_or(0, |h| h.revision());
        let stored: HashMap<String, Hold> = got
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                Some((key, serde_json::from_slice(kv.value()).ok()?))
            })
            .collect();
        self.adopt_table().await?;
        let ended: Vec<String> = lock(&self.holds)
            .iter()
            .filter(|(k, h)| stored.get(*k) != Some(h))
            .map(|(k, _)| k.clone())
            .collect();
        for key in ended {
            self.unhold(&key);
        }
        for (key, hold) in stored {
            if lock(&self.holds).get(&key) != Some(&hold) {
                self.hold(key, hold, lease);
            }
        }
        Ok(revision)
    }

    /// Read the stored table and publish it if it is newer; seed it from this proxy's
    /// table when etcd has none.
    async fn adopt_table(&self) -> Result<(), StoreError> {
        let instances = &self.topology.instances;
        match self.store.table(instances).await? {
            Some(t) => {
                self.topology.publish_newer(t);
            }
            None => {
                let mine = (*self.topology.table()).clone();
                if self.store.swap_table(None, None, &mine, instances).await? {
                    tracing::info!(
                        epoch = mine.epoch,
                        "seeded the cluster's table from this proxy's configuration"
                    );
                } else if let Some(t) = self.store.table(instances).await? {
                    self.topology.publish_newer(t);
                }
            }
        }
        Ok(())
    }

    /// Hold `hold`'s slots here, and acknowledge once writes in flight there drained.
    fn hold(&self, key: String, hold: Hold, lease: i64) {
        tracing::debug!(
            migration = hold.migration,
            "holding slots {:?}",
            hold.range()
        );
        self.gate.set(hold.range(), SlotState::Held);
        lock(&self.holds).insert(key, hold.clone());
        let (gate, store, bound) = (self.gate.clone(), self.store.clone(), self.drain);
        tokio::spawn(async move {
            if !gate.drain(hold.range(), bound).await {
                tracing::warn!(
                    migration = hold.migration,
                    "writes in flight did not drain within {} ms; not acknowledging the hold",
                    bound.as_millis()
                );
                return;
            }
            let key = store.key(&format!(
                "acks/{:020}/{}",
                hold.migration, store.config.name
            ));
            let mut client = store.client.clone();
            let put = client
                .put(key, "drained", Some(PutOptions::new().with_lease(lease)))
                .await;
            if let Err(e) = put {
                tracing::warn!(migration = hold.migration, "cannot acknowledge a hold: {e}");
            }
        });
    }

    /// End the hold under `key`: its slots open, routed by the table already adopted.
    fn unhold(&self, key: &str) {
        if let Some(hold) = lock(&self.holds).remove(key) {
            tracing::debug!(
                migration = hold.migration,
                "releasing slots {:?}",
                hold.range()
            );
            self.gate.set(hold.range(), SlotState::Open);
        }
    }

    /// Follow holds (from `revision` on) and the table until a watch fails.
    async fn follow(&self, revision: i64, lease: i64) -> StoreError {
        let tables = async {
            loop {
                let epoch = self.topology.table().epoch;
                match self.store.next_table(epoch, &self.topology.instances).await {
                    Ok(t) => {
                        self.topology.publish_newer(t);
                    }
                    Err(e) => return e,
                }
            }
        };
        tokio::select! {
            e = tables => e,
            e = self.follow_holds(revision, lease) => e,
            e = self.follow_journal() => e,
        }
    }

    /// Count the migrations the journal holds unfinished into the gate (so a flush is
    /// refused while a segment may be moving), until a watch fails.
    async fn follow_journal(&self) -> StoreError {
        let prefix = self.store.key("journal/");
        let mut client = self.store.client.clone();
        let got = client
            .get(
                prefix.clone(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await;
        let got = match got {
            Ok(g) => g,
            Err(e) => return failed("reading the journal")(e),
        };
        let mut unfinished: std::collections::HashSet<Vec<u8>> =
            got.kvs().iter().map(|kv| kv.key().to_vec()).collect();
        self.gate.set_journaled(unfinished.len() as u64);
        let from = got.header().map_or(0, |h| h.revision()) + 1;
        const DOING: &str = "watching the journal";
        let mut stream = match self.store.watch_prefix("journal/", from, DOING).await {
            Ok(w) => w,
            Err(e) => return e,
        };
        loop {
            let answer = match Store::next_events(&mut stream, DOING).await {
                Ok(a) => a,
                Err(e) => return e,
            };
            for event in answer.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => unfinished.insert(kv.key().to_vec()),
                    EventType::Delete => unfinished.remove(kv.key()),
                };
            }
            self.gate.set_journaled(unfinished.len() as u64);
        }
    }

    async fn follow_holds(&self, revision: i64, lease: i64) -> StoreError {
        const DOING: &str = "watching holds";
        let mut stream = match self.store.watch_prefix("holds/", revision + 1, DOING).await {
            Ok(w) => w,
            Err(e) => return e,
        };
        loop {
            let answer = match Store::next_events(&mut stream, DOING).await {
                Ok(a) => a,
                Err(e) => return e,
            };
            for event in answer.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                match event.event_type() {
                    EventType::Put => match serde_json::from_slice::<Hold>(kv.value()) {
                        Ok(hold) => self.hold(key, hold, lease),
                        Err(e) => tracing::error!(%key, "an unreadable hold is ignored: {e}"),
                    },
                    EventType::Delete => {
                        // The controller wrote the table before it ended the hold: read it
                        // before opening, so the slots open on the new owner.
                        if let Err(e) = self.adopt_table().await {
                            return e;
                        }
                        self.unhold(&key);
                    }
                }
            }
        }
    }
}

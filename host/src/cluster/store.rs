//! The store: every call shardcast makes to etcd, each with its deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, LeaderKey, PutOptions, ResignOptions,
    Txn, TxnOp, WatchOptions,
};
use shardcast_sdk::types::Instance;
use tokio::sync::watch;

use super::ClusterConfig;
use crate::proxy::fence::Fence;
use crate::telemetry::counters::Taken;
use crate::topology::SegmentTable;

/// A failed call to etcd: what was being done, and why.
#[derive(Debug, thiserror::Error)]
#[error("etcd ({doing}): {why}")]
pub struct StoreError {
    doing: &'static str,
    why: String,
}

impl StoreError {
    pub(super) fn new(doing: &'static str, why: impl ToString) -> Self {
        StoreError {
            doing,
            why: why.to_string(),
        }
    }
}

pub(super) fn failed(doing: &'static str) -> impl FnOnce(etcd_client::Error) -> StoreError {
    move |e| StoreError {
        doing,
        why: e.to_string(),
    }
}

/// One proxy's handle on the cluster's store.
#[derive(Clone)]
pub struct Store {
    pub(super) client: Client,
    /// A connection without a per-request deadline, for campaigns and watches, which wait
    /// by design.
    pub(super) elections: Client,
    pub(super) config: ClusterConfig,
}

/// This proxy's membership: its lease, kept alive until this is dropped.
pub struct Membership {
    /// The lease id.
    pub lease: i64,
    alive: watch::Receiver<tokio::time::Instant>,
    lapsed: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Membership {
    /// True once the lease has lapsed: etcd refused a keep-alive or could not be reached
    /// for the lease's TTL. Keys bound to it are gone, and so is any office held with it.
    pub fn lapsed(&self) -> bool {
        *self.lapsed.borrow()
    }

    /// Until when the lease is alive at least, as reckoned from its latest renewal.
    pub fn alive_until(&self) -> std::time::Instant {
        self.alive.borrow().into_std()
    }

    /// Wait until the lease lapses.
    pub async fn until_lapsed(&mut self) {
        let _ = self.lapsed.wait_for(|l| *l).await;
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// One proxy's counters for one tick, published for the controller to merge: per segment
/// (by id) and per instance (by name, as ids are positions in each proxy's configuration).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// When the counters were taken (ms since the Unix epoch; any number that grows).
    pub tick: u64,
    /// Per segment id.
    pub segments: Vec<(u32, Taken)>,
    /// Per instance name.
    pub instances: Vec<(String, Taken)>,
    /// Its most active client sessions (at most [`SESSIONS_REPORTED`]), with the commands
    /// each ran this tick.
    #[serde(default)]
    pub sessions: Vec<SessionReport>,
}

/// Sessions a proxy reports per tick at most: its most active ones.
pub const SESSIONS_REPORTED: usize = 256;

/// One client session as a proxy reports it: the instance it is pinned to by name, as
/// instance ids are positions in each proxy's configuration.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SessionReport {
    /// The session (its `pinned` is carried by name instead).
    pub session: shardcast_sdk::types::Session,
    /// The instance it is pinned to, by name.
    pub pinned: Option<String>,
    /// Commands it ran in the tick.
    pub ops: u64,
}

/// Every live proxy's counters for one tick, summed: per segment id and per instance name.
#[derive(Debug, Default, PartialEq)]
pub struct Merged {
    /// The proxies whose reports were merged.
    pub proxies: Vec<String>,
    /// Per segment id.
    pub segments: BTreeMap<u32, Taken>,
    /// Per instance name.
    pub instances: BTreeMap<String, Taken>,
}

/// Sum the reports made at `tick` (older ones, from a proxy that has not reported this
/// tick yet, are left out and named by omission in [`Merged::proxies`]).
pub fn merge(reports: &[(String, Report)], tick: u64) -> Merged {
    let mut merged = Merged::default();
    for (proxy, r) in reports.iter().filter(|(_, r)| r.tick == tick) {
        merged.proxies.push(proxy.clone());
        for (id, t) in &r.segments {
            merged.segments.entry(*id).or_default().merge(t);
        }
        for (name, t) in &r.instances {
            merged.instances.entry(name.clone()).or_default().merge(t);
        }
    }
    merged
}

/// The office of controller, held until resigned or until the lease ends.
pub struct Leadership {
    key: LeaderKey,
}

impl Leadership {
    /// The condition that this office is still held: its election key is the one won.
    pub(super) fn guard(&self) -> Compare {
        Compare::create_revision(self.key.key().to_vec(), CompareOp::Equal, self.key.rev())
    }
}

impl Store {
    /// Connect to etcd.
    pub async fn connect(config: &ClusterConfig) -> Result<Store, StoreError> {
        let limit = Duration::from_millis(config.request_timeout_ms);
        // HTTP/2 pings no more often than etcd accepts them (`--grpc-keepalive-min-time`,
        // 5 s by default; more often, and it closes the connection).
        let options = ConnectOptions::new()
            .with_connect_timeout(limit)
            .with_keep_alive(Duration::from_secs(10), limit);
        let client = Client::connect(&config.etcd, Some(options.clone().with_timeout(limit)))
            .await
            .map_err(failed("connecting"))?;
        let elections = Client::connect(&config.etcd, Some(options))
            .await
            .map_err(failed("connecting"))?;
        Ok(Store {
            client,
            elections,
            config: config.clone(),
        })
    }

    pub(super) fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.config.prefix.trim_end_matches('/'))
    }

    /// Take a lease, register under `members/<name>` with it, and keep it alive in the
    /// background, extending `fence`'s deadline with every renewal (the fence is not
    /// opened here: the caller opens it once it has caught up with the cluster).
    pub async fn register(&self, fence: &Arc<Fence>) -> Result<Membership, StoreError> {
        let granted = tokio::time::Instant::now();
        let mut client = self.client.clone();
        let ttl = self.config.lease_ttl_s.max(1) as i64;
        let lease = client
            .lease_grant(ttl, None)
            .await
            .map_err(failed("granting a lease"))?
            .id();
        client
            .put(
                self.key(&format!("members/{}", self.config.name)),
                self.config.name.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(failed("registering"))?;
        let (tx, lapsed) = watch::channel(false);
        let (renewed, alive) = watch::channel(granted + trusted(ttl));
        let fence = fence.clone();
        let keeper = tokio::spawn(async move {
            keep_alive(client, lease, ttl, &renewed, &fence).await;
            if fence.holds(lease) {
                fence.close();
            }
            tx.send_replace(true);
        });
        Ok(Membership {
            lease,
            alive,
            lapsed,
            keeper,
        })
    }

    /// The names of the proxies whose leases are alive.
    pub async fn members(&self) -> Result<Vec<String>, StoreError> {
        let mut client = self.client.clone();
        let got = client
            .get(self.key("members/"), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(failed("listing members"))?;
        Ok(got
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            .collect())
    }

    /// Whether proxy `name` is alive: a member that published counters within the last
    /// three ticks (at least 300 ms) is; one that is no longer a member is not; a member
    /// that stopped publishing is watched until its lease ends (at most `ttl` and a
    /// second), then counted alive if it still holds it. Unknown (etcd not answering)
    /// counts as alive.
    pub async fn alive(&self, name: &str, ttl: Duration, tick: Duration) -> bool {
        let until = tokio::time::Instant::now() + ttl + Duration::from_secs(1);
        let fresh_ms = (tick * 3).max(Duration::from_millis(300)).as_millis() as u64;
        loop {
            let Ok(members) = self.members().await else {
                return true;
            };
            if !members.iter().any(|m| m == name) {
                return false;
            }
            let Ok(reports) = self.reports().await else {
                return true;
            };
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let fresh = reports
                .iter()
                .any(|(n, r)| n == name && now_ms.saturating_sub(r.tick) < fresh_ms);
            if fresh || tokio::time::Instant::now() >= until {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Publish this proxy's counters under `counters/<name>`, bound to its membership's
    /// `lease` (a proxy that dies stops counting).
    pub async fn publish_report(&self, lease: i64, report: &Report) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(report).map_err(|e| StoreError {
            doing: "publishing counters",
            why: e.to_string(),
        })?;
        let mut client = self.client.clone();
        client
            .put(
                self.key(&format!("counters/{}", self.config.name)),
                bytes,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(failed("publishing counters"))?;
        Ok(())
    }

    /// Every live proxy's latest counters, by proxy name (unreadable ones are skipped).
    pub async fn reports(&self) -> Result<Vec<(String, Report)>, StoreError> {
        let mut client = self.client.clone();
        let prefix = self.key("counters/");
        let got = client
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(failed("reading counters"))?;
        Ok(got
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = String::from_utf8_lossy(kv.key().strip_prefix(prefix.as_bytes())?);
                Some((name.into_owned(), serde_json::from_slice(kv.value()).ok()?))
            })
            .collect())
    }

    /// The stored segment table, with owners resolved against `instances`; `None` before
    /// any was written.
    pub async fn table(&self, instances: &[Instance]) -> Result<Option<SegmentTable>, StoreError> {
        let mut client = self.client.clone();
        let got = client
            .get(self.key("table"), None)
            .await
            .map_err(failed("reading the segment table"))?;
        got.kvs()
            .first()
            .map(|kv| {
                SegmentTable::from_bytes(kv.value(), instances).map_err(|e| StoreError {
                    doing: "reading the segment table",
                    why: e.to_string(),
                })
            })
            .transpose()
    }

    /// Write `table` if the stored table's epoch is still `read` (`None`: no table stored
    /// yet) and, when `office` is given, this proxy still holds the controller's office (its
    /// election key is the one it won: a deposed controller cannot write). False when
    /// either no longer holds: read the table again.
    pub async fn swap_table(
        &self,
        read: Option<u64>,
        office: Option<&Leadership>,
        table: &SegmentTable,
        instances: &[Instance],
    ) -> Result<bool, StoreError> {
        let bytes = table.to_bytes(instances).map_err(|e| StoreError {
            doing: "writing the segment table",
            why: e.to_string(),
        })?;
        let epoch_key = self.key("table-epoch");
        let unchanged = match read {
            Some(epoch) => Compare::value(epoch_key.clone(), CompareOp::Equal, epoch.to_string()),
            None => Compare::create_revision(epoch_key.clone(), CompareOp::Equal, 0),
        };
        let mut conditions = vec![unchanged];
        if let Some(o) = office {
            conditions.push(o.guard());
        }
        let txn = Txn::new().when(conditions).and_then(vec![
            TxnOp::put(self.key("table"), bytes, None),
            TxnOp::put(epoch_key, table.epoch.to_string(), None),
        ]);
        let mut client = self.client.clone();
        let done = client
            .txn(txn)
            .await
            .map_err(failed("writing the segment table"))?;
        Ok(done.succeeded())
    }

    /// The stored table once its epoch is past `after` (at once if it already is): every
    /// proxy follows the table the controller writes.
    pub async fn next_table(
        &self,
        after: u64,
        instances: &[Instance],
    ) -> Result<SegmentTable, StoreError> {
        let mut client = self.client.clone();
        let epoch_key = self.key("table-epoch");
        let got = client
            .get(epoch_key.clone(), None)
            .await
            .map_err(failed("reading the table's epoch"))?;
        let stored = |v: &[u8]| std::str::from_utf8(v).ok()?.parse::<u64>().ok();
        let newer = got
            .kvs()
            .first()
            .and_then(|kv| stored(kv.value()))
            .is_some_and(|e| e > after);
        if !newer {
            // Watch from just after what was read, so no change in between is missed.
            let from = got.header().map_or(0, |h| h.revision()) + 1;
            let mut watch = self
                .elections
                .clone()
                .watch(
                    epoch_key,
                    Some(WatchOptions::new().with_start_revision(from)),
                )
                .await
                .map_err(failed("watching the table"))?;
            'wait: loop {
                let Some(answer) = watch
                    .message()
                    .await
                    .map_err(failed("watching the table"))?
                else {
                    return Err(StoreError {
                        doing: "watching the table",
                        why: "the watch ended".into(),
                    });
                };
                for event in answer.events() {
                    if event
                        .kv()
                        .and_then(|kv| stored(kv.value()))
                        .is_some_and(|e| e > after)
                    {
                        break 'wait;
                    }
                }
            }
        }
        self.table(instances).await?.ok_or(StoreError {
            doing: "reading the segment table",
            why: "its epoch is stored but the table is not".into(),
        })
    }

    /// Watch every key under `<prefix>/<rest>` from revision `from` on.
    pub(super) async fn watch_prefix(
        &self,
        rest: &str,
        from: i64,
        doing: &'static str,
    ) -> Result<etcd_client::WatchStream, StoreError> {
        self.elections
            .clone()
            .watch(
                self.key(rest),
                Some(WatchOptions::new().with_prefix().with_start_revision(from)),
            )
            .await
            .map_err(failed(doing))
    }

    /// The next answer of `stream`; an error once the watch failed, ended or was cancelled.
    pub(super) async fn next_events(
        stream: &mut etcd_client::WatchStream,
        doing: &'static str,
    ) -> Result<etcd_client::WatchResponse, StoreError> {
        match stream.message().await {
            Ok(Some(a)) if a.canceled() => Err(StoreError::new(doing, "etcd cancelled the watch")),
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(StoreError::new(doing, "the watch ended")),
            Err(e) => Err(failed(doing)(e)),
        }
    }

    /// Campaign for the controller's office with a membership's `lease`; returns once this
    /// proxy holds it (which may be never, while another holds it).
    pub async fn campaign(&self, lease: i64) -> Result<Leadership, StoreError> {
        let mut client = self.elections.clone();
        let won = client
            .campaign(self.key("controller"), self.config.name.clone(), lease)
            .await
            .map_err(failed("campaigning"))?;
        let key = won.leader().cloned().ok_or(StoreError {
            doing: "campaigning",
            why: "etcd elected no leader key".into(),
        })?;
        Ok(Leadership { key })
    }

    /// The name of the proxy holding the controller's office, if any.
    pub async fn leader(&self) -> Result<Option<String>, StoreError> {
        let mut client = self.client.clone();
        match client.leader(self.key("controller")).await {
            Ok(r) => Ok(r
                .kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
            // etcd answers "election: no leader" as an error.
            Err(e) if e.to_string().contains("no leader") => Ok(None),
            Err(e) => Err(failed("reading the leader")(e)),
        }
    }

    /// Give the office up.
    pub async fn resign(&self, leadership: Leadership) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        client
            .resign(Some(ResignOptions::new().with_leader(leadership.key)))
            .await
            .map_err(failed("resigning"))?;
        Ok(())
    }
}

/// How long after a renewal was sent its holder counts on the lease: the TTL less a sixth,
/// a margin for the two clocks' rates, so it stops before etcd's end of the lease.
fn trusted(ttl: i64) -> Duration {
    let ttl = Duration::from_secs(ttl as u64);
    ttl - ttl / 6
}

/// Keep `lease` alive (from the end `renewed` holds), a keep-alive every sixth of its TTL, so
/// an etcd outage that starts just before a renewal still leaves two thirds of the TTL; returns
/// when the lease may have lapsed: etcd says it expired, or the lease is within a sixth of
/// its TTL of its end with no renewal answered. The end is reckoned from when each renewal
/// was *sent* (plus the TTL etcd granted), so the lapse is reported before etcd can hand
/// the office to another proxy, never after; each renewal is sent to `renewed` and extends `fence`.
async fn keep_alive(
    mut client: Client,
    lease: i64,
    ttl: i64,
    renewed: &watch::Sender<tokio::time::Instant>,
    fence: &Fence,
) {
    use tokio::time::Instant;
    let step = Duration::from_secs(ttl as u64) / 6;
    let mut alive = *renewed.borrow();
    let mut stream = None;
    loop {
        let left = alive.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let sent = Instant::now();
        let answer = tokio::time::timeout(left.min(step), async {
            if stream.is_none() {
                stream = Some(client.lease_keep_alive(lease).await.ok()?);
            }
            let (keeper, answers) = stream.as_mut()?;
            keeper.keep_alive().await.ok()?;
            answers.message().await.ok()?
        })
        .await;
        match answer {
            Ok(Some(a)) if a.ttl() <= 0 => return,
            Ok(Some(a)) => {
                alive = sent + trusted(a.ttl());
                renewed.send_replace(alive);
                fence.extend(lease, alive.into_std());
                tokio::time::sleep(step).await;
            }
            // The stream failed or stalled: open another.
            _ => {
                stream = None;
                tokio::time::sleep(Duration::from_millis(100).min(left)).await;
            }
        }
    }
}

//! Live sessions and their activity counters, for the view.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use shardcast_sdk::types::Session;

use super::repository::{Partition, SessionRepository};

/// One live session's record.
#[derive(Debug)]
pub struct Entry {
    /// What the view shows.
    pub session: Session,
    /// Commands served since the last collection, shared by every update of the record,
    /// so a session counting on an older copy still counts.
    pub ops: Arc<AtomicU64>,
    /// Its connection's addresses, last command and kill switch, kept across updates.
    pub control: Arc<Control>,
}

/// What `CLIENT LIST` shows of a session's connection beyond its state, and how
/// `CLIENT KILL` ends it.
#[derive(Debug, Default)]
pub struct Control {
    /// The client's address and the proxy's address it connected to.
    pub addrs: std::sync::OnceLock<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// When it last sent a command, in ms since the Unix epoch.
    pub last_ms: AtomicU64,
    /// Set by `CLIENT KILL`: the session's next wait ends at once (a kill while it is
    /// busy is kept as the notifier's permit).
    pub kill: tokio::sync::Notify,
}

impl Control {
    /// End the session: it closes its connection at its next wait.
    pub fn kill(&self) {
        self.kill.notify_one();
    }
}

/// The first session id of this process: a 31-bit prefix drawn from the clock and the
/// process id, then a 32-bit counter. Ids stay unique across the proxies sharing one
/// session repository, and fit a positive 64-bit integer (`CLIENT ID`).
pub fn first_session_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    session_base(nanos, std::process::id())
}

fn session_base(nanos: u64, pid: u32) -> u64 {
    let mixed = (nanos ^ (u64::from(pid) << 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
    (mixed.max(1) << 32) | 1
}

/// Whether the proxy named by its argument is alive now (cluster mode), as a future.
pub type Liveness = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
        + Send
        + Sync,
>;

/// Every live session, and the repository holding their partitions.
pub struct Registry {
    sessions: DashMap<u64, Arc<Entry>>,
    repository: Arc<dyn SessionRepository>,
    /// Cluster mode: this proxy's name, and how to ask whether another proxy is alive.
    cluster: std::sync::OnceLock<(String, Liveness)>,
}

impl Registry {
    /// A registry over `repository`.
    pub fn new(repository: Arc<dyn SessionRepository>) -> Self {
        Registry {
            sessions: DashMap::new(),
            repository,
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// Cluster mode: this proxy is `name`, and `alive` tells whether another proxy is.
    pub fn join_cluster(&self, name: String, alive: Liveness) {
        let _ = self.cluster.set((name, alive));
    }

    /// Cluster mode's proxy name and liveness check.
    pub fn cluster(&self) -> Option<&(String, Liveness)> {
        self.cluster.get()
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The repository.
    pub fn repository(&self) -> &Arc<dyn SessionRepository> {
        &self.repository
    }

    /// Register or update a session; returns its counters.
    pub fn upsert(&self, session: Session) -> Arc<Entry> {
        let id = session.id;
        let (ops, control) = self
            .sessions
            .get(&id)
            .map(|e| (e.ops.clone(), e.control.clone()))
            .unwrap_or_default();
        let entry = Arc::new(Entry {
            session,
            ops,
            control,
        });
        self.sessions.insert(id, entry.clone());
        entry
    }

    /// A session's subscription count changed (its record in the view, `CLIENT LIST`).
    pub fn set_subscriptions(&self, session: u64, count: u32) {
        let Some(current) = self.sessions.get(&session).map(|e| e.session.clone()) else {
            return;
        };
        self.upsert(Session {
            subscriptions: count,
            ..current
        });
    }

    /// Store one of a session's partitions.
    pub fn put(&self, session: u64, partition: &str, fields: Partition) {
        self.repository.put(session, partition, fields);
    }

    /// Forget a session that disconnected.
    pub fn remove(&self, session: u64) {
        self.sessions.remove(&session);
        self.repository.remove(session);
    }

    /// Every live session's record, by id.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let mut out: Vec<Arc<Entry>> = self.sessions.iter().map(|e| e.value().clone()).collect();
        out.sort_by_key(|e| e.session.id);
        out
    }

    /// Every live session, and the ops each served since the last call (reset).
    pub fn take(&self) -> Vec<(Session, u64)> {
        let mut out: Vec<(Session, u64)> = self
            .sessions
            .iter()
            .map(|e| (e.session.clone(), e.ops.swap(0, Ordering::Relaxed)))
            .collect();
        out.sort_by_key(|(s, _)| s.id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::session_base;

    #[test]
    fn session_ids_are_positive_and_differ_between_processes() {
        let a = super::first_session_id();
        assert!(a > u64::from(u32::MAX) && a < i64::MAX as u64, "{a}");
        let bases: std::collections::BTreeSet<u64> = (0..1000u64)
            .flat_map(|t| [session_base(t, 7), session_base(1_000_000 + t, 8)])
            .map(|b| b >> 32)
            .collect();
        assert_eq!(
            bases.len(),
            2000,
            "other moments or processes draw other prefixes"
        );
    }
}

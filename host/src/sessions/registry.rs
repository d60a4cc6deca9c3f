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
    /// Commands served since the last collection.
    pub ops: AtomicU64,
}

/// Every live session, and the repository holding their partitions.
pub struct Registry {
    sessions: DashMap<u64, Arc<Entry>>,
    repository: Arc<dyn SessionRepository>,
}

impl Registry {
    /// A registry over `repository`.
    pub fn new(repository: Arc<dyn SessionRepository>) -> Self {
        Registry {
            sessions: DashMap::new(),
            repository,
        }
    }

    /// The repository.
    pub fn repository(&self) -> &Arc<dyn SessionRepository> {
        &self.repository
    }

    /// Register or update a session; returns its counters.
    pub fn upsert(&self, session: Session) -> Arc<Entry> {
        let id = session.id;
        let ops = self
            .sessions
            .get(&id)
            .map(|e| e.ops.load(Ordering::Relaxed))
            .unwrap_or(0);
        let entry = Arc::new(Entry {
            session,
            ops: AtomicU64::new(ops),
        });
        self.sessions.insert(id, entry.clone());
        entry
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

//! Where session state partitions are kept, behind one trait.
//!
//! A partition is a small map of fields. The proxy writes a partition whenever the client
//! changes it (`SELECT`, `CLIENT SETNAME`, `HELLO`, `MULTI`, `WATCH`, `SUBSCRIBE`, ...);
//! policies and the controller read them. Writes must never slow the request path, so the
//! Redis-backed repository writes behind a queue.
//!
//! The Redis-backed repository is shared by the proxies of a cluster. Besides each
//! session's partitions it keeps, under `shardcast:named:<client name>`, the newest
//! `connection` partition of every named client for [`NAMED_TTL`], with the session that
//! wrote it and, once that session ended, `ended`: a client that reconnects to another
//! proxy with the same name finds its database there.
//!
//! The queue is bounded by construction: it holds the newest version of each partition
//! not yet written (a newer write replaces an older one, a session's removal replaces its
//! writes), so it never holds more than the live sessions' state plus the sessions that
//! ended meanwhile, and at most [`PENDING`] sessions (past that, the oldest state is dropped
//! with a warning: it is a copy for policies, the sessions themselves keep theirs). Every
//! call to Redis has a deadline.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// A partition: field/value pairs.
pub type Partition = Vec<(String, String)>;

/// Storage of session partitions.
pub trait SessionRepository: Send + Sync {
    /// Replace one partition of a session.
    fn put(&self, session: u64, partition: &str, fields: Partition);
    /// Forget a session.
    fn remove(&self, session: u64);
    /// The partition names a session has.
    fn partitions(&self, session: u64) -> Vec<String>;
    /// One partition.
    fn get(&self, session: u64, partition: &str) -> Option<Partition>;
    /// Write what is queued, waiting at most `deadline`; true when nothing is left.
    fn flush(&self, deadline: Duration) -> bool {
        let _ = deadline;
        true
    }
    /// True when other proxies share this repository: a client reconnecting with its
    /// name may then find its `connection` partition ([`SessionRepository::named`]).
    fn shared(&self) -> bool {
        false
    }
    /// The newest `connection` partition of a session that had the client name `name`,
    /// kept for [`NAMED_TTL`] after it was written (by any proxy sharing the repository).
    fn named(&self, name: &str) -> Option<Partition> {
        let _ = name;
        None
    }
}

/// How long a named session's `connection` partition outlives its last change, for a
/// client that reconnects with the same name.
pub const NAMED_TTL: Duration = Duration::from_secs(3600);

/// The default: partitions in this process's memory.
#[derive(Debug, Default)]
pub struct InProcess {
    sessions: DashMap<u64, BTreeMap<String, Partition>>,
}

impl SessionRepository for InProcess {
    fn put(&self, session: u64, partition: &str, fields: Partition) {
        self.sessions
            .entry(session)
            .or_default()
            .insert(partition.to_owned(), fields);
    }
    fn remove(&self, session: u64) {
        self.sessions.remove(&session);
    }
    fn partitions(&self, session: u64) -> Vec<String> {
        self.sessions
            .get(&session)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
    fn get(&self, session: u64, partition: &str) -> Option<Partition> {
        self.sessions.get(&session)?.get(partition).cloned()
    }
}

/// Sessions whose state may wait to be written to Redis.
pub const PENDING: usize = 65_536;

/// What waits to be written for one session: its removal, or its newest partitions.
enum Pending {
    Removed,
    Put(BTreeMap<String, Partition>),
}

/// The write-behind queue, shared with the writer thread.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    drained: Condvar,
}

#[derive(Default)]
struct QueueState {
    pending: HashMap<u64, Pending>,
    /// The writer holds a batch it has not finished writing.
    writing: bool,
    /// The repository was dropped: the writer ends once the queue is empty.
    closed: bool,
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Deadline of each call to the repository's Redis.
const IO_TIMEOUT: Duration = Duration::from_millis(500);

/// Partitions in a Redis server, as hashes `shardcast:session:<id>:<partition>` plus a set
/// `shardcast:session:<id>` of partition names. Writes go through a queue drained by a
/// background thread; reads go to Redis.
pub struct InRedis {
    queue: std::sync::Arc<Queue>,
    client: redis::Client,
    url: String,
    /// The connection reads use; none after a failure (reopened by the next read), and
    /// reads give nothing until the instant noted, so one unreachable Redis costs a tick
    /// one deadline, not one per session.
    reads: Mutex<(Option<redis::Connection>, Option<Instant>)>,
    /// What this process wrote, newest first: its own sessions are read from here (the
    /// controller reads every session's partitions every tick), only other proxies'
    /// sessions from Redis.
    mine: InProcess,
}

fn connection(client: &redis::Client, url: &str) -> Result<redis::Connection, String> {
    let c = client
        .get_connection_with_timeout(IO_TIMEOUT)
        .map_err(|e| format!("session repository {url}: {e}"))?;
    c.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| c.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("session repository {url}: {e}"))?;
    Ok(c)
}

fn write(writer: &mut redis::Connection, id: u64, pending: Pending) -> redis::RedisResult<()> {
    let index = format!("shardcast:session:{id}");
    match pending {
        Pending::Put(partitions) => {
            let mut pipe = redis::pipe();
            for (name, fields) in partitions {
                let key = format!("{index}:{name}");
                pipe.del(&key).ignore();
                if !fields.is_empty() {
                    pipe.hset_multiple(&key, &fields).ignore();
                }
                pipe.sadd(&index, &name).ignore();
                // A named client's connection, found again by name from any proxy.
                let field = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v);
                let owns = field("owns-name").is_none_or(|o| o == "1");
                let client =
                    field("name").filter(|c| owns && name == "connection" && !c.is_empty());
                if let Some(client) = client {
                    let named = format!("shardcast:named:{client}");
                    pipe.del(&named).ignore();
                    pipe.hset_multiple(&named, &fields).ignore();
                    pipe.hset(&named, "session", id).ignore();
                    pipe.expire(&named, NAMED_TTL.as_secs() as i64).ignore();
                }
            }
            pipe.query::<()>(writer)
        }
        Pending::Removed => {
            // A named client's record says its session ended, if the record is still its.
            let client: Option<String> = redis::cmd("HGET")
                .arg(format!("{index}:connection"))
                .arg("name")
                .query(writer)?;
            if let Some(client) = client.filter(|c| !c.is_empty()) {
                let named = format!("shardcast:named:{client}");
                let owner: Option<u64> = redis::cmd("HGET")
                    .arg(&named)
                    .arg("session")
                    .query(writer)?;
                if owner == Some(id) {
                    redis::cmd("HSET")
                        .arg(&named)
                        .arg("ended")
                        .arg(1)
                        .query::<()>(writer)?;
                }
            }
            let names: Vec<String> = redis::cmd("SMEMBERS").arg(&index).query(writer)?;
            let mut keys: Vec<String> = names.iter().map(|n| format!("{index}:{n}")).collect();
            keys.push(index);
            redis::cmd("DEL").arg(keys).query::<()>(writer)
        }
    }
}

impl InRedis {
    /// Connect to the Redis at `url` (e.g. `redis://127.0.0.1:6379/`).
    pub fn connect(url: &str) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("session repository {url}: {e}"))?;
        let reads = connection(&client, url)?;
        let mut writer = Some(connection(&client, url)?);
        let queue = std::sync::Arc::new(Queue::default());
        let shared = queue.clone();
        let (reader, url) = (client.clone(), url.to_owned());
        let writer_url = url.clone();
        std::thread::Builder::new()
            .name("shardcast-sessions".into())
            .spawn(move || {
                loop {
                    let batch: Vec<(u64, Pending)> = {
                        let mut q = guard(&shared.state);
                        while q.pending.is_empty() && !q.closed {
                            q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                        }
                        if q.pending.is_empty() {
                            return;
                        }
                        q.writing = true;
                        q.pending.drain().collect()
                    };
                    let mut failed = Vec::new();
                    for (id, pending) in batch {
                        let conn = match writer.as_mut() {
                            Some(c) => c,
                            None => match connection(&client, &writer_url) {
                                Ok(c) => writer.insert(c),
                                Err(_) => {
                                    failed.push((id, pending));
                                    continue;
                                }
                            },
                        };
                        // Kept to try again unless a newer version arrived meanwhile.
                        let retry = match &pending {
                            Pending::Removed => Pending::Removed,
                            Pending::Put(p) => Pending::Put(p.clone()),
                        };
                        if let Err(e) = write(conn, id, pending) {
                            tracing::warn!(error = %e, "session repository write failed; retrying");
                            writer = None;
                            failed.push((id, retry));
                        }
                    }
                    let mut q = guard(&shared.state);
                    q.writing = false;
                    let all_written = failed.is_empty();
                    for (id, pending) in failed {
                        q.pending.entry(id).or_insert(pending);
                    }
                    if q.pending.is_empty() {
                        shared.drained.notify_all();
                    }
                    let closed = q.closed;
                    drop(q);
                    if closed && !all_written {
                        // Dropped while Redis is unreachable: what is left is lost.
                        return;
                    }
                    if !all_written {
                        std::thread::sleep(IO_TIMEOUT);
                    }
                }
            })
            .map_err(|e| format!("cannot start the session repository writer: {e}"))?;
        Ok(InRedis {
            queue,
            client: reader,
            url,
            reads: Mutex::new((Some(reads), None)),
            mine: InProcess::default(),
        })
    }

    /// Run `f` on the read connection, within its deadline; nothing while reads are
    /// backing off after a failure.
    fn read<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        let mut reads = guard(&self.reads);
        if reads.1.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        if reads.0.is_none() {
            reads.0 = connection(&self.client, &self.url).ok();
        }
        let result = reads.0.as_mut().map(f);
        match result {
            Some(Ok(v)) => {
                reads.1 = None;
                Some(v)
            }
            _ => {
                // A late reply would answer the next read: start from a new connection.
                *reads = (None, Some(Instant::now() + Duration::from_secs(1)));
                None
            }
        }
    }

    fn enqueue(&self, id: u64, change: impl FnOnce(Option<Pending>) -> Pending) {
        let mut q = guard(&self.queue.state);
        let before = q.pending.remove(&id);
        if before.is_none() && q.pending.len() >= PENDING {
            tracing::warn!(
                limit = PENDING,
                "session repository queue full (its Redis is not keeping up); dropping the newest session state"
            );
            return;
        }
        q.pending.insert(id, change(before));
        self.queue.ready.notify_one();
    }
}

impl Drop for InRedis {
    fn drop(&mut self) {
        guard(&self.queue.state).closed = true;
        self.queue.ready.notify_all();
    }
}

impl SessionRepository for InRedis {
    fn put(&self, session: u64, partition: &str, fields: Partition) {
        self.mine.put(session, partition, fields.clone());
        self.enqueue(session, |before| {
            let mut partitions = match before {
                Some(Pending::Put(p)) => p,
                _ => BTreeMap::new(),
            };
            partitions.insert(partition.to_owned(), fields);
            Pending::Put(partitions)
        });
    }
    fn remove(&self, session: u64) {
        self.mine.remove(session);
        self.enqueue(session, |_| Pending::Removed);
    }
    fn flush(&self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        let mut q = guard(&self.queue.state);
        while !q.pending.is_empty() || q.writing {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            q = self
                .queue
                .drained
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
    fn shared(&self) -> bool {
        true
    }
    fn named(&self, name: &str) -> Option<Partition> {
        let fields: Vec<(String, String)> = self.read(|c| {
            redis::cmd("HGETALL")
                .arg(format!("shardcast:named:{name}"))
                .query(c)
        })?;
        (!fields.is_empty()).then_some(fields)
    }
    fn partitions(&self, session: u64) -> Vec<String> {
        if self.mine.sessions.contains_key(&session) {
            return self.mine.partitions(session);
        }
        let mut names: Vec<String> = self
            .read(|c| {
                redis::cmd("SMEMBERS")
                    .arg(format!("shardcast:session:{session}"))
                    .query(c)
            })
            .unwrap_or_default();
        names.sort();
        names
    }
    fn get(&self, session: u64, partition: &str) -> Option<Partition> {
        if self.mine.sessions.contains_key(&session) {
            return self.mine.get(session, partition);
        }
        let (fields, known): (Vec<(String, String)>, bool) = self.read(|c| {
            redis::pipe()
                .cmd("HGETALL")
                .arg(format!("shardcast:session:{session}:{partition}"))
                .cmd("SISMEMBER")
                .arg(format!("shardcast:session:{session}"))
                .arg(partition)
                .query(c)
        })?;
        known.then_some(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_process_keeps_partitions_per_session() {
        let r = InProcess::default();
        r.put(1, "connection", vec![("db".into(), "3".into())]);
        r.put(1, "transaction", vec![]);
        assert_eq!(r.partitions(1), vec!["connection", "transaction"]);
        assert_eq!(
            r.get(1, "connection"),
            Some(vec![("db".into(), "3".into())])
        );
        assert_eq!(r.get(2, "connection"), None);
        r.remove(1);
        assert!(r.partitions(1).is_empty());
    }
}

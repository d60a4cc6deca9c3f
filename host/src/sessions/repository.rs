//! Where session state partitions are kept, behind one trait.
//!
//! A partition is a small map of fields. The proxy writes a partition whenever the client
//! changes it (`SELECT`, `CLIENT SETNAME`, `HELLO`, `MULTI`, `WATCH`, `SUBSCRIBE`, ...);
//! policies and the controller read them. Writes must never slow the request path, so the
//! Redis-backed repository writes behind a queue.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc;

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
}

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

enum Write {
    Put(u64, String, Partition),
    Remove(u64),
}

/// Partitions in a Redis server, as hashes `shardcast:session:<id>:<partition>` plus a set
/// `shardcast:session:<id>` of partition names. Writes go through a queue drained by a
/// background thread; reads go to Redis.
pub struct InRedis {
    writes: Mutex<mpsc::Sender<Write>>,
    reads: Mutex<redis::Connection>,
}

impl InRedis {
    /// Connect to the Redis at `url` (e.g. `redis://127.0.0.1:6379/`).
    pub fn connect(url: &str) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("session repository {url}: {e}"))?;
        let reads = client
            .get_connection()
            .map_err(|e| format!("session repository {url}: {e}"))?;
        let mut writer = client
            .get_connection()
            .map_err(|e| format!("session repository {url}: {e}"))?;
        let (tx, rx) = mpsc::channel::<Write>();
        std::thread::Builder::new()
            .name("shardcast-sessions".into())
            .spawn(move || {
                for w in rx {
                    let result = match w {
                        Write::Put(id, name, fields) => {
                            let key = format!("shardcast:session:{id}:{name}");
                            let mut pipe = redis::pipe();
                            pipe.del(&key).ignore();
                            if !fields.is_empty() {
                                pipe.hset_multiple(&key, &fields).ignore();
                            }
                            pipe.sadd(format!("shardcast:session:{id}"), &name).ignore();
                            pipe.query::<()>(&mut writer)
                        }
                        Write::Remove(id) => {
                            let index = format!("shardcast:session:{id}");
                            let names: Vec<String> = redis::cmd("SMEMBERS")
                                .arg(&index)
                                .query(&mut writer)
                                .unwrap_or_default();
                            let mut keys: Vec<String> =
                                names.iter().map(|n| format!("{index}:{n}")).collect();
                            keys.push(index);
                            redis::cmd("DEL").arg(keys).query::<()>(&mut writer)
                        }
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "session repository write failed");
                    }
                }
            })
            .map_err(|e| format!("cannot start the session repository writer: {e}"))?;
        Ok(InRedis {
            writes: Mutex::new(tx),
            reads: Mutex::new(reads),
        })
    }

    fn send(&self, w: Write) {
        let tx = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let _ = tx.send(w);
    }
}

impl SessionRepository for InRedis {
    fn put(&self, session: u64, partition: &str, fields: Partition) {
        self.send(Write::Put(session, partition.to_owned(), fields));
    }
    fn remove(&self, session: u64) {
        self.send(Write::Remove(session));
    }
    fn partitions(&self, session: u64) -> Vec<String> {
        let mut c = self.reads.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("shardcast:session:{session}"))
            .query(&mut *c)
            .unwrap_or_default();
        names.sort();
        names
    }
    fn get(&self, session: u64, partition: &str) -> Option<Partition> {
        let mut c = self.reads.lock().unwrap_or_else(|e| e.into_inner());
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(format!("shardcast:session:{session}:{partition}"))
            .query(&mut *c)
            .ok()?;
        let known: bool = redis::cmd("SISMEMBER")
            .arg(format!("shardcast:session:{session}"))
            .arg(partition)
            .query(&mut *c)
            .unwrap_or(false);
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

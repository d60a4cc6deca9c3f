//! The chaos checker: a writer that records what was acknowledged, and the check that
//! every acknowledged write survived exactly once.
//!
//! The writer sends uniquely identifiable writes through the proxy: SETs of unique keys,
//! INCRs of a few counters, RPUSHes of unique ids, HSETs of unique fields and DELs of keys
//! it set. A write that failed may or may not have been applied (the connection can die
//! after the instance applied it), so it is recorded as uncertain: an uncertain INCR may
//! have counted, an uncertain RPUSH may be present once, an uncertain DEL may have deleted.
//! A write refused with `TRYAGAIN` was promised not to have run, so it is recorded as
//! refused and checked: a refused SET's key must not exist, a refused INCR must not have
//! counted, a refused RPUSH's id must be absent, a refused DEL's key must still be there.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Commands;

use crate::artifacts;
use crate::servers::RedisServer;

/// What the writer knows about its writes.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Acknowledged SETs (key = value), not deleted since.
    pub sets: Vec<String>,
    /// Acknowledged DELs.
    pub deleted: Vec<String>,
    /// Acknowledged and uncertain increments per counter.
    pub counters: HashMap<String, (u64, u64)>,
    /// Acknowledged and uncertain ids pushed per list.
    pub lists: HashMap<String, (Vec<u64>, Vec<u64>)>,
    /// Acknowledged HSET fields: (hash, field).
    pub fields: Vec<(String, String)>,
    /// Writes that failed (uncertain outcome).
    pub failed: u64,
    /// Writes refused with `TRYAGAIN` (promised not to have run).
    pub refused: u64,
    /// Keys of refused SETs.
    pub refused_sets: Vec<String>,
    /// Ids of refused RPUSHes, per list.
    pub refused_ids: HashMap<String, Vec<u64>>,
}

/// How a write ended.
enum Outcome {
    Acknowledged,
    /// `TRYAGAIN`: it did not run.
    Refused,
    /// Any other failure: it may have run.
    Uncertain,
}

fn outcome<T>(r: &redis::RedisResult<T>) -> Outcome {
    match r {
        Ok(_) => Outcome::Acknowledged,
        Err(e) if e.code() == Some("TRYAGAIN") => Outcome::Refused,
        Err(_) => Outcome::Uncertain,
    }
}

impl Ledger {
    /// Acknowledged writes in all.
    pub fn acknowledged(&self) -> u64 {
        (self.sets.len()
            + self.deleted.len()
            + self.fields.len()
            + self.lists.values().map(|l| l.0.len()).sum::<usize>()) as u64
            + self.counters.values().map(|c| c.0).sum::<u64>()
    }
}

fn connect(port: u16) -> Option<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .ok()?
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()
        .inspect(|c| {
            let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
        })
}

/// Write through the proxy on `port` until `stop`, reconnecting whenever the proxy is
/// away; `tag` keeps two writers' keys apart.
pub fn write_until(port: u16, stop: Arc<AtomicBool>, tag: &str) -> Ledger {
    let mut ledger = Ledger::default();
    let mut conn: Option<redis::Connection> = None;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = conn.as_mut() else {
            conn = connect(port);
            if conn.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        };
        i += 1;
        let ended = match i % 6 {
            0 | 1 => {
                let key = format!("{tag}:k:{i}");
                let r = outcome(&c.set::<_, _, ()>(&key, &key));
                match r {
                    Outcome::Acknowledged => ledger.sets.push(key),
                    Outcome::Refused => ledger.refused_sets.push(key),
                    Outcome::Uncertain => {}
                }
                r
            }
            2 => {
                let counter = format!("{tag}:c:{}", i % 4);
                let r = outcome(&c.incr::<_, _, i64>(&counter, 1));
                let e = ledger.counters.entry(counter).or_default();
                match r {
                    Outcome::Acknowledged => e.0 += 1,
                    Outcome::Uncertain => e.1 += 1,
                    Outcome::Refused => {}
                }
                r
            }
            3 => {
                let list = format!("{tag}:l:{}", i % 3);
                let r = outcome(&c.rpush::<_, _, i64>(&list, i));
                match r {
                    Outcome::Acknowledged => ledger.lists.entry(list).or_default().0.push(i),
                    Outcome::Uncertain => ledger.lists.entry(list).or_default().1.push(i),
                    Outcome::Refused => ledger.refused_ids.entry(list).or_default().push(i),
                }
                r
            }
            4 => {
                let (hash, field) = (format!("{tag}:h:{}", i % 5), format!("f{i}"));
                let r = outcome(&c.hset::<_, _, _, i64>(&hash, &field, i));
                if let Outcome::Acknowledged = r {
                    ledger.fields.push((hash, field));
                }
                r
            }
            _ => {
                if ledger.sets.len() < 20 {
                    continue;
                }
                let key = ledger.sets.swap_remove(ledger.sets.len() / 2);
                let r = outcome(&c.del::<_, i64>(&key));
                match r {
                    Outcome::Acknowledged => ledger.deleted.push(key),
                    // Not deleted: it must still read back.
                    Outcome::Refused => ledger.sets.push(key),
                    Outcome::Uncertain => {}
                }
                r
            }
        };
        match ended {
            Outcome::Acknowledged => {}
            Outcome::Refused => {
                ledger.refused += 1;
                conn = None;
                std::thread::sleep(Duration::from_millis(5));
            }
            Outcome::Uncertain => {
                ledger.failed += 1;
                conn = None;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    ledger
}

/// Check `ledger` against what the proxy on `port` serves now; a list of violations.
pub fn check(port: u16, ledger: &Ledger) -> Vec<String> {
    let mut c = connect(port).expect("the proxy answers for the check");
    let mut bad = Vec::new();
    for key in &ledger.sets {
        let got: Option<String> = c.get(key).expect("GET");
        if got.as_deref() != Some(key.as_str()) {
            bad.push(format!("acknowledged SET {key} reads back as {got:?}"));
        }
    }
    for key in &ledger.refused_sets {
        let there: bool = c.exists(key).expect("EXISTS");
        if there {
            bad.push(format!(
                "SET {key} was refused with TRYAGAIN yet was applied"
            ));
        }
    }
    for (list, ids) in &ledger.refused_ids {
        let items: Vec<u64> = c.lrange(list, 0, -1).expect("LRANGE");
        for id in ids.iter().filter(|id| items.contains(id)) {
            bad.push(format!(
                "RPUSH {list} {id} was refused with TRYAGAIN yet was applied"
            ));
        }
    }
    for key in &ledger.deleted {
        let back: bool = c.exists(key).expect("EXISTS");
        if back {
            bad.push(format!("deleted key {key} reappeared"));
        }
    }
    for (counter, (acked, uncertain)) in &ledger.counters {
        let n: u64 = c.get::<_, Option<u64>>(counter).expect("GET").unwrap_or(0);
        if n < *acked || n > acked + uncertain {
            bad.push(format!(
                "counter {counter} is {n}; acknowledged increments {acked}, uncertain {uncertain}"
            ));
        }
    }
    for (list, (acked, uncertain)) in &ledger.lists {
        let items: Vec<u64> = c.lrange(list, 0, -1).expect("LRANGE");
        let mut seen: HashMap<u64, usize> = HashMap::new();
        for x in items {
            *seen.entry(x).or_default() += 1;
        }
        for id in acked {
            if seen.get(id) != Some(&1) {
                bad.push(format!(
                    "list {list}: acknowledged id {id} present {:?} times",
                    seen.get(id)
                ));
            }
        }
        for (id, n) in &seen {
            let allowed = acked.contains(id) || (uncertain.contains(id) && *n == 1);
            if !allowed {
                bad.push(format!("list {list}: id {id} present {n} times"));
            }
        }
    }
    for (hash, field) in &ledger.fields {
        let there: bool = c.hexists(hash, field).expect("HEXISTS");
        if !there {
            bad.push(format!("acknowledged HSET {hash} {field} is missing"));
        }
    }
    bad
}

/// Every step a migration journals, where `SHARDCAST_CRASH_AT` can stop the process.
pub const STEPS: &[&str] = &[
    "start",
    "copy",
    "catch-up",
    "cutover",
    "committed",
    "cleanup",
];

/// A `shardcast run` configuration for the chaos runs: `tick_ms = 100`, two event loops (so
/// that a cutover holds a segment on every loop), four segments over
/// `servers`, a state directory, deadlines short enough for a paused instance to exceed
/// them (1 s per request, 1.5 s per copy read or write, 2 s per cutover), and with `policy`
/// the `ping-pong` policy moving segments 0 and 2 back and forth.
pub fn config(port: u16, servers: &[RedisServer], state: &std::path::Path, policy: bool) -> String {
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\ntick_ms = 100\nthreads = 2\n[segments]\ncount = 4\n[limits]\nrequest_timeout_ms = 1000\n[churn]\nmoves_per_window = 100000\nwindow_ticks = 10\nmax_concurrent_migrations = 2\n[migration]\nstate_dir = \"{}\"\nper_instance = 2\nio_timeout_ms = 1500\ncutover_timeout_ms = 2000\n",
        state.display()
    );
    if policy {
        let settings = state.join("ping-pong.toml");
        std::fs::write(&settings, "segments = [0, 2]\n").expect("settings");
        text.push_str(&format!(
            "[policy]\nfile = \"{}\"\nsettings = \"{}\"\n",
            artifacts::PING_PONG,
            settings.display()
        ));
    }
    for (i, s) in servers.iter().enumerate() {
        text.push_str(&format!(
            "[[instances]]\nname = \"redis-{i}\"\naddress = \"{}\"\n",
            s.address()
        ));
    }
    text
}

/// A chaos run's fixture: two durable instances, a state directory, a configuration file
/// for `shardcast run`, and a writer through the proxy's port.
pub struct Rig {
    /// The instances.
    pub servers: Vec<RedisServer>,
    /// The state directory (table, journal, decision log).
    pub state: std::path::PathBuf,
    /// The proxy's port.
    pub port: u16,
    /// The configuration file.
    pub file: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    writer: Option<std::thread::JoinHandle<Ledger>>,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Start the instances, write the configuration (with the `ping-pong` policy) and
    /// start a writer tagged `tag`.
    pub fn start(tag: &'static str) -> Self {
        let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start_durable()).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let port = crate::servers::free_port();
        let file = dir.path().join("shardcast.toml");
        std::fs::write(&file, config(port, &servers, &state, true)).expect("config");
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || write_until(port, stop, tag))
        };
        Rig {
            servers,
            state,
            port,
            file,
            stop,
            writer: Some(writer),
            _dir: dir,
        }
    }

    /// Rewrite the configuration without a policy: the next start only recovers.
    pub fn quiet(&self) {
        std::fs::write(
            &self.file,
            config(self.port, &self.servers, &self.state, false),
        )
        .expect("config");
    }

    /// Stop the writer and return what it had acknowledged.
    pub fn stop_writer(&mut self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        self.writer
            .take()
            .expect("the writer is stopped once")
            .join()
            .expect("writer")
    }
}

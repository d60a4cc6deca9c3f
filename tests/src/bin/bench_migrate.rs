//! Live-migration figures, with Redis Cluster's own resharding as the peer, in one run.
//!
//! `cargo run --release -p shardcast-tests --bin bench_migrate [-- <keys>]`
//!
//! 1. Copy throughput: `<keys>` keys of 100 bytes (default 200,000) in slots 0–5460 move
//!    from one instance to another
//!    - by `redis-cli --cluster reshard` between two nodes of a local 3-node Redis Cluster
//!      (all 5,461 slots of the first node, default options: MIGRATE in pipelines of 10);
//!    - by shardcast's copy step alone (SCAN, DUMP/PEXPIRETIME, RESTORE REPLACE) between two
//!      standalone instances;
//!    - by a whole shardcast live migration of the same slots (start → flip, through the
//!      executor, with clients connected).
//! 2. Cutover hold. (a) The cutover's copy of 1,000 keys alone, beside redis-rs doing the
//!    same DUMP/PEXPIRETIME and RESTORE pipelines. (b) A segment of 20,000 keys moves back and forth 20 times while clients
//!    write 15,000 keys/s over the whole keyspace; the catch-up hands the cutover at most
//!    1,000 dirty keys. Prints the hold's p50, p99 and max and the most keys moved in a hold.
//! 3. Client p99 during those migrations against the p99 of the same load with no migration.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shardcast::migrate::copy::{Budget, End, copy_and_verify, copy_range};
use shardcast::proxy::slot::slot;
use shardcast_sdk::types::MigrationOutcome;
use shardcast_tests::load::{Load, LoadShape};
use shardcast_tests::servers::{Proxy, RedisServer, free_port, wait_for};

const FIRST: std::ops::RangeInclusive<u16> = 0..=5460;

/// `n` keys whose slots fall in `range`.
fn keys_in(n: usize, range: &std::ops::RangeInclusive<u16>, prefix: &str) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}:{i}"))
        .filter(|k| range.contains(&slot(k.as_bytes())))
        .take(n)
        .collect()
}

fn fill(port: u16, keys: &[String]) {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection())
        .expect("connect to fill");
    let value = [b'v'; 100];
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.set(k, &value[..]).ignore();
        }
        pipe.query::<()>(&mut c).expect("fill");
    }
}

fn dbsize(port: u16) -> u64 {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection())
        .expect("connect");
    redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE")
}

/// One node of a local Redis Cluster.
struct ClusterNode {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl ClusterNode {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--cluster-enabled", "yes"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        wait_for("a cluster node", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        ClusterNode {
            port,
            child,
            _dir: dir,
        }
    }

    fn id(&self) -> String {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection())
            .expect("connect");
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut c)
            .expect("MYID")
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seconds `redis-cli --cluster reshard` takes to move slots 0–5460 (holding `keys`).
fn reshard(keys: &[String]) -> f64 {
    let nodes: Vec<ClusterNode> = (0..3).map(|_| ClusterNode::start()).collect();
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let created = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addresses)
        .arg("--cluster-yes")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli (apt-get install redis-tools)");
    assert!(created.success(), "redis-cli --cluster create failed");
    wait_for("the cluster to be ok", Duration::from_secs(30), || {
        nodes.iter().all(|n| {
            redis::Client::open(format!("redis://127.0.0.1:{}/", n.port))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
    });
    fill(nodes[0].port, keys);
    let (from, to) = (nodes[0].id(), nodes[1].id());
    let started = Instant::now();
    let moved = Command::new("redis-cli")
        .args(["--cluster", "reshard", &addresses[0]])
        .args(["--cluster-from", &from, "--cluster-to", &to])
        .args(["--cluster-slots", "5461", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli --cluster reshard");
    let secs = started.elapsed().as_secs_f64();
    assert!(moved.success(), "redis-cli --cluster reshard failed");
    assert_eq!(
        dbsize(nodes[1].port),
        keys.len() as u64,
        "reshard moved every key"
    );
    secs
}

/// Seconds shardcast's copy step takes to move `keys` between two standalone instances.
fn copy_step(keys: &[String]) -> f64 {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    fill(a.port, keys);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let secs = rt.block_on(async {
        let mut source = End::connect(&a.address(), std::time::Duration::from_secs(60))
            .await
            .expect("source");
        let mut target = End::connect(&b.address(), std::time::Duration::from_secs(60))
            .await
            .expect("target");
        let budget = Budget {
            keys_per_sec: 0,
            bytes_per_sec: 0,
            chunk: 512,
        };
        let started = Instant::now();
        copy_range(&mut source, &mut target, &FIRST, budget, |_| {})
            .await
            .expect("copy");
        started.elapsed().as_secs_f64()
    });
    assert_eq!(
        dbsize(b.port),
        keys.len() as u64,
        "the copy moved every key"
    );
    secs
}

/// p50 and p99 in ms of copying and verifying `n` keys in one round trip to each side.
fn final_copy(n: usize) -> (f64, f64) {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let keys = keys_in(n, &FIRST, "dirty");
    fill(a.port, &keys);
    let keys: Vec<bytes::Bytes> = keys.into_iter().map(bytes::Bytes::from).collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut times: Vec<f64> = rt.block_on(async {
        let mut source = End::connect(&a.address(), std::time::Duration::from_secs(60))
            .await
            .expect("source");
        let mut target = End::connect(&b.address(), std::time::Duration::from_secs(60))
            .await
            .expect("target");
        let mut times = Vec::new();
        for _ in 0..100 {
            let started = Instant::now();
            let (_, (s, t)) = copy_and_verify(&mut source, &mut target, &keys)
                .await
                .expect("copy");
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!((s, t), (n as i64, n as i64));
        }
        times
    });
    times.sort_by(f64::total_cmp);
    (times[49], times[98])
}

/// p50 and p99 in ms of the same work done by redis-rs: one pipeline of `DUMP` and
/// `PEXPIRETIME`
/// for `n` keys to one instance, then one of `RESTORE ... REPLACE` to another.
fn redis_rs_copy(n: usize) -> (f64, f64) {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let keys = keys_in(n, &FIRST, "dirty");
    fill(a.port, &keys);
    let (mut source, mut target) = (a.client(), b.client());
    let mut times = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let mut reads = redis::pipe();
        for k in &keys {
            reads.cmd("DUMP").arg(k).cmd("PEXPIRETIME").arg(k);
        }
        let replies: Vec<redis::Value> = reads.query(&mut source).expect("DUMP");
        let mut writes = redis::pipe();
        for (k, pair) in keys.iter().zip(replies.chunks(2)) {
            if let redis::Value::BulkString(payload) = &pair[0] {
                writes
                    .cmd("RESTORE")
                    .arg(k)
                    .arg(0)
                    .arg(payload)
                    .arg("REPLACE")
                    .ignore();
            }
        }
        writes.query::<()>(&mut target).expect("RESTORE");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (times[49], times[98])
}

fn move_and_wait(proxy: &Proxy, segment: u32, target: u32) -> String {
    let m = proxy.move_segment(segment, target, Duration::from_secs(300));
    assert_eq!(m.outcome, MigrationOutcome::Completed, "{}", m.detail);
    m.detail
}

/// The number after `word` in `text` ("... in 123 ms" → 123).
fn after(text: &str, word: &str) -> f64 {
    text.split(word)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Seconds a whole live migration (start → flip) of slots 0–5460 holding `keys` takes.
fn live_migration(keys: &[String]) -> f64 {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    fill(servers[0].port, keys);
    let proxy = Proxy::start(
        &servers.iter().collect::<Vec<_>>(),
        "[segments]\ncount = 3\n[migration]\nbytes_per_sec = 0",
    );
    let detail = move_and_wait(&proxy, 0, 1);
    assert_eq!(dbsize(servers[1].port), keys.len() as u64);
    after(&detail, " in ") / 1000.0
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let keys = keys_in(n, &FIRST, "key");
    let mb = (n * 100) as f64 / 1e6;
    println!("1. copy throughput: {n} keys of 100 bytes ({mb:.0} MB of values) in slots 0-5460\n");
    let t_reshard = reshard(&keys);
    let t_copy = copy_step(&keys);
    let t_live = live_migration(&keys);
    println!("| mover | seconds | keys/s | MB/s | vs reshard |");
    println!("|---|---|---|---|---|");
    for (name, t) in [
        (
            "redis-cli --cluster reshard (3-node Redis Cluster)",
            t_reshard,
        ),
        ("shardcast copy step", t_copy),
        ("shardcast live migration, start to flip", t_live),
    ] {
        println!(
            "| {name} | {t:.2} | {:.0} | {:.1} | {:.2}x |",
            n as f64 / t,
            mb / t,
            t_reshard / t
        );
    }

    let (p50, p99) = final_copy(1000);
    let (rs50, rs99) = redis_rs_copy(1000);
    println!(
        "\n2a. copying 1,000 keys between idle instances, 100 runs (ms)\n\n| copier | p50 | p99 |\n|---|---|---|\n| shardcast's cutover copy (with verification) | {p50:.2} | {p99:.2} |\n| redis-rs: one DUMP+PEXPIRETIME pipeline, then one RESTORE pipeline | {rs50:.2} | {rs99:.2} |"
    );
    println!("\n2b. cutover hold and 3. client p99, 20 moves of a 20,000-key segment under load\n");
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let proxy = Proxy::start(
        &servers.iter().collect::<Vec<_>>(),
        "tick_ms = 200\n[segments]\ncount = 4",
    );
    let segment = proxy.topology.table().segments[0];
    let range = segment.slot_start..=segment.slot_end;
    fill(proxy.port, &keys_in(20_000, &range, "seg"));
    let shape = LoadShape {
        threads: 6,
        rate_per_thread: 2500,
        hot_share: 0.0,
        keys: 40_000,
        write_share: 1.0,
    };
    let load = Load::start(proxy.port, shape);
    std::thread::sleep(Duration::from_secs(1));
    let _ = load.stats.take_window();
    std::thread::sleep(Duration::from_secs(5));
    let quiet = load.stats.take_window();
    let mut most_final = 0.0f64;
    let started = Instant::now();
    for round in 0..20 {
        let detail = move_and_wait(&proxy, segment.id, if round % 2 == 0 { 1 } else { 0 });
        most_final = most_final.max(after(&detail, " for "));
    }
    let busy_secs = started.elapsed().as_secs_f64();
    let busy = load.stats.take_window();
    let stats = load.stop();
    let holds = proxy.executor.holds();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| cutovers | {} |", holds.count);
    println!(
        "| cutover hold p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
        holds.p50_us as f64 / 1000.0,
        holds.p99_us as f64 / 1000.0,
        holds.max_us as f64 / 1000.0
    );
    println!("| most keys copied inside one hold | {most_final:.0} |");
    println!(
        "| client p99 with no migration ({} requests) | {:.2} ms |",
        quiet.len(),
        quiet.value_at_quantile(0.99) as f64 / 1000.0
    );
    println!(
        "| client p99 during 20 migrations ({} requests over {busy_secs:.1} s) | {:.2} ms |",
        busy.len(),
        busy.value_at_quantile(0.99) as f64 / 1000.0
    );
    println!(
        "| ratio | {:.2}x |",
        busy.value_at_quantile(0.99) as f64 / quiet.value_at_quantile(0.99).max(1) as f64
    );
    println!(
        "| client errors | {} |",
        stats.errors.load(std::sync::atomic::Ordering::Relaxed)
    );
}

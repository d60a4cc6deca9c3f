//! Telemetry from live traffic: per-segment and per-instance rates, instance health, and
//! a killed instance in the failure history and the view.

use std::time::Duration;

use redis::Commands;
use shardcast::proxy::slot::slot;
use shardcast::topology::SegmentTable;
use shardcast_sdk::types::{FailureKind, InstanceState, Metric};
use shardcast_tests::servers::{Proxy, RedisServer, wait_for};

#[test]
fn segment_and_instance_rates_follow_the_traffic() {
    let mut servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let p = Proxy::start(
        &servers.iter().collect::<Vec<_>>(),
        "tick_ms = 200\n[segments]\ncount = 16",
    );
    let mut c = p.client();
    let table = SegmentTable::uniform(16, &[0, 1]);
    let key = "hot-key";
    let row = table.segment_row(slot(key.as_bytes()));
    let owner = table.owner(slot(key.as_bytes())) as usize;
    // Keep writing until a whole interval has been seen with traffic in it; take that
    // interval's latency and byte figures together.
    let at = |m: Metric| {
        p.telemetry
            .segments_latest(m)
            .get(row)
            .copied()
            .unwrap_or(0.0)
    };
    let mut seen = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    wait_for("the hot segment's rate", Duration::from_secs(20), || {
        for _ in 0..200 {
            let _: () = c.set(key, "v").expect("SET");
        }
        seen = (
            at(Metric::Ops),
            at(Metric::LatencyP50Us),
            at(Metric::LatencyP99Us),
            at(Metric::BytesIn),
            at(Metric::BytesOut),
            p.telemetry
                .instances_latest(Metric::LatencyP99Us)
                .get(owner)
                .copied()
                .unwrap_or(0.0),
        );
        seen.0 > 100.0 && at(Metric::Ops) == seen.0
    });
    let (ops_now, p50, p99, bytes_in, bytes_out, inst_p99) = seen;
    assert!(
        p50 > 0.0 && p99 >= p50 && p99 < 1e6,
        "p50 {p50} µs, p99 {p99} µs"
    );
    // Each SET's reply is `+OK\r\n`; each request is a few dozen bytes.
    let per_reply = bytes_out / ops_now;
    assert!(
        (4.9..5.1).contains(&per_reply),
        "reply bytes per op {per_reply}"
    );
    assert!(
        bytes_in / ops_now > 20.0,
        "request bytes per op {}",
        bytes_in / ops_now
    );
    assert!(inst_p99 > 0.0, "instance latency: {inst_p99}");
    let writes = p.telemetry.segments_latest(Metric::Writes);
    let ops = p.telemetry.segments_latest(Metric::Ops);
    assert!(
        writes[row] > 0.0 && writes[row] <= ops[row],
        "SET counts as a write"
    );
    let quiet: f64 = ops
        .iter()
        .enumerate()
        .filter(|(r, _)| *r != row)
        .map(|(_, o)| o)
        .sum();
    assert_eq!(quiet, 0.0, "only the hot segment has traffic: {ops:?}");
    let inst = p.telemetry.instances_latest(Metric::Ops);
    assert!(inst[owner] > 100.0 && inst[1 - owner] == 0.0, "{inst:?}");
    let rtt = p.telemetry.instances_latest(Metric::PingRttUs);
    assert!(
        rtt.iter().all(|r| r.is_finite() && *r > 0.0),
        "PING round trips: {rtt:?}"
    );
    let keys = p.telemetry.instances_latest(Metric::Keys);
    assert_eq!(keys[owner], 1.0, "INFO keyspace: {keys:?}");

    // Kill the other instance: the view shows it down, the history says it crashed.
    let victim = 1 - owner;
    servers[victim].kill();
    wait_for("the crash to be noticed", Duration::from_secs(20), || {
        p.telemetry.view(&p.topology, 0).instances[victim].state == InstanceState::Down
    });
    let view = p.telemetry.view(&p.topology, 0);
    assert!(
        view.failures
            .iter()
            .any(|f| f.instance == victim as u32 && f.kind == FailureKind::Crash)
    );
    assert_eq!(view.instances[owner].state, InstanceState::Active);
    assert!(view.metrics.segments.contains_key(&Metric::Ops));
}

#[test]
fn sessions_and_their_state_reach_the_view() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let p = Proxy::start(&servers.iter().collect::<Vec<_>>(), "tick_ms = 200");
    let mut a = p.client();
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("billing-worker")
        .query(&mut a)
        .expect("SETNAME");
    let _: () = redis::cmd("SELECT").arg(2).query(&mut a).expect("SELECT");
    let mut b = p.client();
    let view = || shardcast::run::view(&p.parts, 0);
    wait_for(
        "both sessions in the view, with activity",
        Duration::from_secs(20),
        || {
            for _ in 0..20 {
                let _: () = b.set("k", 1).expect("SET");
            }
            let v = view();
            v.sessions.len() == 2
                && v.sessions
                    .iter()
                    .any(|s| s.name == "billing-worker" && s.db == 2)
                && v.metrics.sessions.values().any(|m| {
                    m.get(&Metric::Ops)
                        .is_some_and(|q| q.last().is_some_and(|&x| x > 0.0))
                })
        },
    );
    let v = view();
    let worker = v
        .sessions
        .iter()
        .find(|s| s.name == "billing-worker")
        .expect("named session");
    let connection = &v.session_state[&worker.id]["connection"];
    assert!(
        connection.contains(&("db".to_owned(), "2".to_owned())),
        "{connection:?}"
    );
    assert!(
        connection.contains(&("name".to_owned(), "billing-worker".to_owned())),
        "{connection:?}"
    );
    drop(a);
    wait_for(
        "the closed session to leave the view",
        Duration::from_secs(20),
        || view().sessions.iter().all(|s| s.name != "billing-worker"),
    );
}

#[test]
fn the_redis_backed_session_repository_round_trips() {
    use shardcast::sessions::repository::{InRedis, SessionRepository};
    let store = RedisServer::start();
    let repo = InRedis::connect(&format!("redis://{}/", store.address())).expect("connects");
    // What another proxy sharing the Redis reads (the writer answers its own sessions
    // from memory).
    let other = InRedis::connect(&format!("redis://{}/", store.address())).expect("connects");
    repo.put(
        7,
        "connection",
        vec![("db".into(), "4".into()), ("name".into(), "w".into())],
    );
    repo.put(7, "subscriptions", vec![]);
    wait_for(
        "the write-behind queue to drain",
        Duration::from_secs(10),
        || other.partitions(7).len() == 2,
    );
    assert_eq!(other.partitions(7), vec!["connection", "subscriptions"]);
    assert_eq!(repo.partitions(7), vec!["connection", "subscriptions"]);
    let mut got = other.get(7, "connection").expect("stored");
    got.sort();
    assert_eq!(
        got,
        vec![
            ("db".to_owned(), "4".to_owned()),
            ("name".to_owned(), "w".to_owned())
        ]
    );
    assert_eq!(
        other.get(7, "subscriptions"),
        Some(vec![]),
        "an empty partition still exists"
    );
    assert_eq!(other.get(8, "connection"), None);
    repo.remove(7);
    wait_for("the removal", Duration::from_secs(10), || {
        other.partitions(7).is_empty()
    });
}

#[test]
fn the_redis_backed_repository_survives_its_redis_going_away_and_catches_up() {
    use shardcast::sessions::repository::{InRedis, SessionRepository};
    let mut store = RedisServer::start_durable();
    let repo = InRedis::connect(&format!("redis://{}/", store.address())).expect("connects");
    let other = InRedis::connect(&format!("redis://{}/", store.address())).expect("connects");
    // Many writes of one partition queue as one: the newest.
    for i in 0..10_000 {
        repo.put(1, "connection", vec![("n".into(), i.to_string())]);
    }
    assert!(repo.flush(Duration::from_secs(10)), "flushed");
    assert_eq!(
        other.get(1, "connection"),
        Some(vec![("n".to_owned(), "9999".to_owned())])
    );
    store.kill();
    // Writes go on (queued); reads give nothing rather than wait.
    for i in 0..1000 {
        repo.put(2, "connection", vec![("n".into(), i.to_string())]);
    }
    repo.remove(1);
    assert_eq!(other.get(2, "connection"), None);
    assert_eq!(
        repo.get(2, "connection"),
        Some(vec![("n".to_owned(), "999".to_owned())]),
        "the writer reads its own sessions from memory, Redis or not"
    );
    assert!(!repo.flush(Duration::from_millis(200)), "Redis is away");
    store.restart();
    assert!(repo.flush(Duration::from_secs(20)), "caught up");
    wait_for("reads to resume", Duration::from_secs(10), || {
        other.get(2, "connection") == Some(vec![("n".to_owned(), "999".to_owned())])
    });
    assert!(
        other.partitions(1).is_empty(),
        "the removal was written too"
    );
}

#[test]
fn segment_keys_and_bytes_are_estimated_from_sampled_keys() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let p = Proxy::start(
        &servers.iter().collect::<Vec<_>>(),
        "tick_ms = 200\n[segments]\ncount = 4",
    );
    let mut c = p.client();
    // Instance 0 owns segments 0 and 1: 3,000 small values in 0, 1,000 large ones in 1.
    let table = p.topology.table();
    let in_segment = |row: usize, n: usize, prefix: &str| -> Vec<String> {
        let seg = table.segments[row];
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .filter(|k| (seg.slot_start..=seg.slot_end).contains(&slot(k.as_bytes())))
            .take(n)
            .collect()
    };
    for k in in_segment(0, 3000, "small:") {
        let _: () = c.set(&k, "x").expect("SET");
    }
    let big = "y".repeat(4000);
    for k in in_segment(1, 1000, "large:") {
        let _: () = c.set(&k, &big).expect("SET");
    }
    let mut last = Vec::new();
    wait_for("estimates near the truth", Duration::from_secs(30), || {
        let view = shardcast::run::view(&p.parts, 1);
        last = view.segments.iter().map(|s| (s.keys, s.bytes)).collect();
        let (k0, b0) = last[0];
        let (k1, b1) = last[1];
        // Sampling is noisy: within a third of the truth, and the large values show.
        (2000..=4000).contains(&k0)
            && (600..=1400).contains(&k1)
            && last[2].0 == 0
            && last[3].0 == 0
            && b1 > b0
    });
    let keys = p.telemetry.segments_latest(Metric::Keys);
    assert!(keys[0] > 1000.0, "the Keys series is filled: {keys:?}");
}

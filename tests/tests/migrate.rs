//! Live migration against real redis-server instances, with clients writing through the
//! proxy the whole time (redis-rs as the independent client).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Commands;
use shardcast::proxy::slot::slot;
use shardcast_sdk::types::{Action, InstanceState, MigrationOutcome, MoveSegment, RejectionReason};
use shardcast_tests::decisions::last_planner;
use shardcast_tests::servers::{Proxy, RedisServer, wait_for};

/// Keys of `conn` (a direct connection to one instance) whose slots fall in `range`.
fn keys_in(conn: &mut redis::Connection, range: &std::ops::RangeInclusive<u16>) -> Vec<String> {
    let keys: Vec<String> = conn.keys("*").expect("KEYS");
    keys.into_iter()
        .filter(|k| range.contains(&slot(k.as_bytes())))
        .collect()
}

/// What a writer had acknowledged.
#[derive(Default)]
struct Acked {
    sets: Vec<(String, String)>,
    incrs: u64,
    deleted: Vec<String>,
}

/// Write through the proxy until `stop`: unique SETs, one INCR counter, HSET fields and
/// DELs of keys it set earlier. Only acknowledged writes are recorded.
fn writer(port: u16, stop: Arc<AtomicBool>, tag: &str) -> Acked {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection())
        .expect("client");
    let mut acked = Acked::default();
    let counter = format!("counter:{tag}");
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let key = format!("w:{tag}:{i}");
        let value = format!("v{i}");
        if c.set::<_, _, ()>(&key, &value).is_ok() {
            acked.sets.push((key.clone(), value));
        }
        if c.incr::<_, _, i64>(&counter, 1).is_ok() {
            acked.incrs += 1;
        }
        if c.hset::<_, _, _, ()>(format!("h:{tag}"), format!("f{i}"), i)
            .is_ok()
        {
            // Checked through the key set below.
        }
        if i.is_multiple_of(10) {
            let (gone, _) = acked.sets.remove(acked.sets.len() - 5);
            if c.del::<_, i64>(&gone).is_ok() {
                acked.deleted.push(gone);
            } else {
                acked.sets.push((gone, String::new()));
            }
        }
    }
    acked
}

#[test]
fn a_segment_moves_live_while_clients_write_and_nothing_is_lost() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let p = Proxy::start(&servers.iter().collect::<Vec<_>>(), "[segments]\ncount = 4");
    let mut c = p.client();
    for i in 0..5000 {
        let _: () = c.set(format!("seed:{i}"), i).expect("seed");
    }
    let table = p.topology.table();
    let seg = table.segments[0];
    let range = seg.slot_start..=seg.slot_end;
    assert_eq!(seg.owner, 0);
    let expiring = (0..)
        .map(|i| format!("ttl:{i}"))
        .find(|k| range.contains(&slot(k.as_bytes())))
        .expect("a key in the segment");
    let _: () = redis::cmd("SET")
        .arg(&expiring)
        .arg("soon")
        .arg("PX")
        .arg(600_000)
        .query(&mut c)
        .expect("SET PX");

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let stop = stop.clone();
            let port = p.port;
            std::thread::spawn(move || writer(port, stop, &format!("t{w}")))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let m = p.move_segment(seg.id, 1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Acked> = writers
        .into_iter()
        .map(|w| w.join().expect("writer"))
        .collect();

    assert_eq!(m.outcome, MigrationOutcome::Completed, "{}", m.detail);
    assert_eq!(p.topology.table().owner(seg.slot_start), 1);
    assert!(p.topology.table().epoch > table.epoch);
    // Every acknowledged write reads back through the proxy.
    for (w, a) in acked.iter().enumerate() {
        assert!(
            a.sets.len() > 50,
            "writer {w} made progress: {}",
            a.sets.len()
        );
        for (k, v) in &a.sets {
            if v.is_empty() {
                continue;
            }
            let got: Option<String> = c.get(k).expect("GET");
            assert_eq!(got.as_deref(), Some(v.as_str()), "acknowledged SET of {k}");
        }
        let n: u64 = c.get(format!("counter:t{w}")).expect("GET counter");
        assert_eq!(
            n, a.incrs,
            "counter t{w} equals its acknowledged increments"
        );
        for k in &a.deleted {
            let back: bool = c.exists(k).expect("EXISTS");
            assert!(!back, "deleted key {k} stays deleted");
        }
    }
    for i in 0..5000 {
        let v: Option<i64> = c.get(format!("seed:{i}")).expect("GET seed");
        assert_eq!(v, Some(i));
    }
    let ttl: i64 = c.pttl(&expiring).expect("PTTL");
    assert!(
        ttl > 0 && ttl <= 600_000,
        "the expiry moved with the key: {ttl}"
    );
    // The source no longer holds the segment; the target holds all of it.
    let mut src = servers[0].client();
    let mut dst = servers[1].client();
    assert!(keys_in(&mut src, &range).is_empty(), "source cleaned up");
    assert!(keys_in(&mut dst, &range).len() > 1000);
    let holds = p.executor.holds();
    assert_eq!(holds.count, 1);
    assert!(holds.max_us > 0);
}

/// A key of segment `seg`.
fn key_in(seg: &shardcast_sdk::types::Segment, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| (seg.slot_start..=seg.slot_end).contains(&slot(k.as_bytes())))
        .expect("a key in the segment")
}

#[test]
fn an_open_watch_refuses_the_move_before_anything_is_held_and_the_policy_is_told() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let p = Proxy::start(
        &servers.iter().collect::<Vec<_>>(),
        "[segments]\ncount = 2\n[migration]\ncutover_wait_ms = 300",
    );
    let seg = p.topology.table().segments[0];
    let key = key_in(&seg, "acct:");
    let mut c = p.client();
    let _: () = c.set(&key, 100).expect("SET");
    let mut tx = p.client();
    let _: () = redis::cmd("WATCH").arg(&key).query(&mut tx).expect("WATCH");
    let before = p.executor.migrations().len();
    p.executor.submit(
        Action::MoveSegment(MoveSegment {
            segment: seg.id,
            target: 1,
        }),
        "test",
    );
    assert_eq!(
        p.executor.migrations().len(),
        before,
        "no migration started"
    );
    let view = shardcast::run::view(&p.parts, 1);
    let refusal = view
        .rejections
        .iter()
        .find(|r| r.reason == RejectionReason::Busy)
        .expect("the refusal reaches the next view");
    assert!(refusal.message.contains("WATCH"), "{}", refusal.message);
    assert_eq!(p.gate.held().requests, 0, "nothing was held");
    // The transaction still works, on the source.
    let _: () = redis::cmd("MULTI").query(&mut tx).expect("MULTI");
    let _: () = redis::cmd("INCRBY")
        .arg(&key)
        .arg(5)
        .query(&mut tx)
        .expect("queued");
    let r: Vec<i64> = redis::cmd("EXEC").query(&mut tx).expect("EXEC");
    assert_eq!(r, vec![105]);
    // With the transaction over, the segment moves.
    let m = p.move_segment(seg.id, 1, Duration::from_secs(30));
    assert_eq!(m.outcome, MigrationOutcome::Completed, "{}", m.detail);
    let v: i64 = c.get(&key).expect("GET");
    assert_eq!(v, 105);
}

#[test]
fn a_watch_opened_during_the_copy_aborts_the_move_without_holding_and_moves_back_off() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let p = Proxy::start(
        &servers.iter().collect::<Vec<_>>(),
        "[segments]\ncount = 2\n[migration]\ncutover_wait_ms = 300\nkeys_per_sec = 1000\nchunk_keys = 50",
    );
    let seg = p.topology.table().segments[0];
    let mut c = p.client();
    for i in 0..1500 {
        let _: () = c.set(key_in(&seg, &format!("fill{i}:")), i).expect("SET");
    }
    let key = key_in(&seg, "acct:");
    let _: () = c.set(&key, 100).expect("SET");
    p.executor.submit(
        Action::MoveSegment(MoveSegment {
            segment: seg.id,
            target: 1,
        }),
        "test",
    );
    // The copy takes over a second at 1,000 keys/s: the WATCH comes during it.
    let mut tx = p.client();
    let _: () = redis::cmd("WATCH").arg(&key).query(&mut tx).expect("WATCH");
    let mut ended = None;
    wait_for("the migration to end", Duration::from_secs(30), || {
        ended = p
            .executor
            .migrations()
            .into_iter()
            .find(|m| m.outcome != MigrationOutcome::Running);
        ended.is_some()
    });
    let m = ended.expect("ended");
    assert_eq!(m.outcome, MigrationOutcome::Aborted);
    assert!(m.detail.contains("WATCH"), "{}", m.detail);
    assert_eq!(p.gate.held().requests, 0, "nothing was held");
    assert_eq!(
        p.topology.table().owner(seg.slot_start),
        0,
        "still on the source"
    );
    let _: () = redis::cmd("UNWATCH").query(&mut tx).expect("UNWATCH");
    // The next attempt right away is refused: moves of the segment back off.
    let _ = p.executor.take_refusals();
    p.executor.submit(
        Action::MoveSegment(MoveSegment {
            segment: seg.id,
            target: 1,
        }),
        "test",
    );
    let refusals = p.executor.take_refusals();
    assert!(
        refusals
            .iter()
            .any(|r| r.reason == RejectionReason::Busy && r.message.contains("backing off")),
        "{refusals:?}"
    );
    let mut dst = servers[1].client();
    assert!(
        keys_in(&mut dst, &(seg.slot_start..=seg.slot_end)).is_empty(),
        "the target's partial copy was deleted"
    );
}

#[test]
fn a_standby_is_activated_and_a_drained_instance_ends_standby_with_its_data_moved() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let port = shardcast_tests::servers::free_port();
    let state = tempfile::tempdir().expect("tempdir");
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\n[segments]\ncount = 6\n[migration]\nstate_dir = \"{}\"\nper_instance = 2\n",
        state.path().display()
    );
    for (i, s) in servers.iter().enumerate() {
        let st = if i == 2 { "standby" } else { "active" };
        text.push_str(&format!(
            "[[instances]]\nname = \"redis-{i}\"\naddress = \"{}\"\nstate = \"{st}\"\n",
            s.address()
        ));
    }
    let p = Proxy::start_config(port, &text);
    let mut c = p.client();
    for i in 0..3000 {
        let _: () = c.set(format!("d:{i}"), i).expect("SET");
    }
    assert_eq!(p.topology.active(), vec![0, 1]);
    p.executor.submit(Action::ActivateStandby(2), "test");
    assert_eq!(p.topology.state(2), InstanceState::Active);
    p.executor.submit(Action::DrainInstance(0), "test");
    assert_eq!(p.topology.state(0), InstanceState::Draining);
    wait_for("the drain to finish", Duration::from_secs(60), || {
        p.topology.state(0) == InstanceState::Standby
    });
    let table = p.topology.table();
    assert!(
        table.segments.iter().all(|s| s.owner != 0),
        "nothing left on the drained instance"
    );
    assert!(
        table.segments.iter().any(|s| s.owner == 2),
        "the activated standby took segments"
    );
    for i in 0..3000 {
        let v: i64 = c.get(format!("d:{i}")).expect("GET");
        assert_eq!(v, i);
    }
    let mut drained = servers[0].client();
    let left: u64 = redis::cmd("DBSIZE").query(&mut drained).expect("DBSIZE");
    assert_eq!(left, 0, "the drained instance was cleaned up");
    let saved = shardcast::topology::SegmentTable::load(
        &state.path().join("table.json"),
        &p.topology.instances,
    )
    .expect("load")
    .expect("saved");
    assert_eq!(
        saved.states.first(),
        Some(&InstanceState::Standby),
        "states are saved"
    );
}

#[test]
fn a_drain_of_a_migrations_target_never_leaves_a_segment_on_a_standby() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let port = shardcast_tests::servers::free_port();
    let state = tempfile::tempdir().expect("tempdir");
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\n[segments]\ncount = 6\n[migration]\nstate_dir = \"{}\"\nper_instance = 2\n",
        state.path().display()
    );
    for (i, s) in servers.iter().enumerate() {
        text.push_str(&format!(
            "[[instances]]\nname = \"redis-{i}\"\naddress = \"{}\"\n",
            s.address()
        ));
    }
    let p = Proxy::start_config(port, &text);
    let mut c = p.client();
    for i in 0..3000 {
        let _: () = c.set(format!("t:{i}"), i).expect("SET");
    }
    // The executor gets both at once, past the validator (which refuses this pair): a move
    // onto instance 2, then a drain of instance 2 while that move runs.
    let segment = p
        .topology
        .table()
        .segments
        .iter()
        .find(|s| s.owner == 0)
        .map(|s| s.id)
        .expect("instance 0 owns a segment");
    p.executor.submit(
        Action::MoveSegment(shardcast_sdk::types::MoveSegment { segment, target: 2 }),
        "test",
    );
    p.executor.submit(Action::DrainInstance(2), "test");
    wait_for("the drain to finish", Duration::from_secs(60), || {
        p.topology.state(2) == InstanceState::Standby
    });
    let table = p.topology.table();
    for s in &table.segments {
        assert_eq!(
            p.topology.state(s.owner),
            InstanceState::Active,
            "segment {} is owned by a {:?} instance",
            s.id,
            p.topology.state(s.owner)
        );
    }
    for i in 0..3000 {
        let v: i64 = c.get(format!("t:{i}")).expect("GET");
        assert_eq!(v, i);
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("t:*").query(&mut c).expect("KEYS");
    assert_eq!(keys.len(), 3000, "fan-out commands see every key");
    let path = state.path().join("decisions.jsonl");
    wait_for(
        "the drain's completion in the log",
        Duration::from_secs(10),
        || std::fs::read_to_string(&path).is_ok_and(|t| t.contains("\"kind\":\"drained\"")),
    );
    let log = std::fs::read_to_string(&path).expect("log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let drains = lines
        .iter()
        .filter(|v| v["kind"] == "applied" && v["action"].to_string().contains("DrainInstance"))
        .count();
    assert_eq!(drains, 1, "the drain is applied once: {log}");
    assert_eq!(
        lines.iter().filter(|v| v["kind"] == "drained").count(),
        1,
        "and completes once"
    );
}

/// Publish `message` on `channel` through `publisher` until a subscriber receives it.
fn publish_until_heard(publisher: &mut redis::Connection, channel: &str, message: &str) {
    wait_for(
        "a subscriber to hear the channel",
        Duration::from_secs(20),
        || {
            let receivers: i64 = publisher.publish(channel, message).expect("PUBLISH");
            receivers == 1
        },
    );
}

#[test]
fn subscriptions_follow_their_channel_across_a_move_and_a_restart() {
    let mut servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    // The proxy waits for a restarting instance as long as the test lets it take to
    // restart (10 s): past `hold_ms` a subscribed session gives up and is closed.
    let p = Proxy::start(
        &servers.iter().collect::<Vec<_>>(),
        "[segments]\ncount = 2\n[limits]\nhold_ms = 20000",
    );
    let table = p.topology.table();
    let channel = "news";
    let row = table.segment_row(slot(channel.as_bytes()));
    let seg = table.segments[row];
    let mut sub_conn = p.client();
    let mut sub = sub_conn.as_pubsub();
    sub.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    sub.subscribe(channel).expect("SUBSCRIBE");
    let mut publisher = p.client_within(Duration::from_secs(30));
    let next = |sub: &mut redis::PubSub<'_>| -> String {
        sub.get_message()
            .and_then(|m| m.get_payload::<String>())
            .expect("a message")
    };
    publish_until_heard(&mut publisher, channel, "before");
    assert_eq!(next(&mut sub), "before");

    // The channel's segment moves: the subscription follows it to the new owner.
    let target = 1 - seg.owner;
    p.executor.submit(
        Action::MoveSegment(MoveSegment {
            segment: seg.id,
            target,
        }),
        "test",
    );
    wait_for("the move", Duration::from_secs(30), || {
        p.topology.table().owner(slot(channel.as_bytes())) == target
    });
    publish_until_heard(&mut publisher, channel, "after the move");
    assert_eq!(next(&mut sub), "after the move");

    // The new owner restarts: the session reconnects and subscribes again.
    servers[target as usize].kill();
    servers[target as usize].restart();
    publish_until_heard(&mut publisher, channel, "after the restart");
    assert_eq!(next(&mut sub), "after the restart");
}

#[test]
fn keys_in_every_database_move_with_their_segment() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let p = Proxy::start(&servers.iter().collect::<Vec<_>>(), "[segments]\ncount = 2");
    let seg = p.topology.table().segments[0];
    let range = seg.slot_start..=seg.slot_end;
    let keys: Vec<String> = (0..)
        .map(|i| format!("db-key:{i}"))
        .filter(|k| range.contains(&slot(k.as_bytes())))
        .take(200)
        .collect();
    let mut db3 = p.client();
    let _: () = redis::cmd("SELECT")
        .arg(3)
        .query(&mut db3)
        .expect("SELECT 3");
    let mut db0 = p.client();
    for k in &keys {
        let _: () = db3.set(k, "in db 3").expect("SET db 3");
        let _: () = db0.set(k, "in db 0").expect("SET db 0");
    }
    // A writer in database 3 keeps writing while the segment moves.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, port, keys) = (stop.clone(), p.port, keys.clone());
        std::thread::spawn(move || {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/3"))
                .and_then(|c| c.get_connection())
                .expect("db 3 client");
            let mut last = std::collections::HashMap::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let k = &keys[(n % keys.len() as u64) as usize];
                if c.set::<_, _, ()>(k, n).is_ok() {
                    last.insert(k.clone(), n);
                }
            }
            last
        })
    };
    let m = p.move_segment(seg.id, 1, Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    let last = writer.join().expect("writer");
    assert_eq!(m.outcome, MigrationOutcome::Completed, "{}", m.detail);
    for k in &keys {
        let v0: String = db0.get(k).expect("GET db 0");
        assert_eq!(v0, "in db 0");
        let v3: String = db3.get(k).expect("GET db 3");
        let want = last
            .get(k)
            .map(|n| n.to_string())
            .unwrap_or("in db 3".into());
        assert_eq!(v3, want, "the last acknowledged write to {k} in db 3");
    }
    let mut src = servers[0].client();
    let _: () = redis::cmd("SELECT").arg(3).query(&mut src).expect("SELECT");
    assert!(
        keys_in(&mut src, &range).is_empty(),
        "the source's db 3 was cleaned up"
    );
}

#[test]
fn a_watched_policy_file_is_swapped_with_its_new_settings_and_table_changes_are_logged() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.wasm");
    let settings = dir.path().join("policy.toml");
    std::fs::copy(shardcast_tests::artifacts::THRESHOLD, &policy).expect("install");
    std::fs::write(&settings, "high = 90000.0\nlow = 80000.0\n").expect("settings");
    let state = dir.path().join("state");
    let p = Proxy::start(
        &servers.iter().collect::<Vec<_>>(),
        &format!(
            "tick_ms = 100\n[segments]\ncount = 4\n[migration]\nstate_dir = \"{}\"\n[policy]\nfile = \"{}\"\nsettings = \"{}\"\nwatch = true",
            state.display(),
            policy.display(),
            settings.display()
        ),
    );
    let log = state.join("decisions.jsonl");
    wait_for("ticks by threshold", Duration::from_secs(20), || {
        last_planner(&log).is_some_and(|p| p.starts_with("threshold@"))
    });
    // `static` takes no settings: write them first, then rename the component into place.
    std::fs::write(&settings, "").expect("settings");
    let incoming = dir.path().join("policy.incoming");
    std::fs::copy(shardcast_tests::artifacts::STATIC, &incoming).expect("copy");
    std::fs::rename(&incoming, &policy).expect("rename");
    wait_for("ticks by static", Duration::from_secs(20), || {
        last_planner(&log).is_some_and(|p| p.starts_with("static@"))
    });

    // Table-only actions: split a segment, merge it back; both are logged.
    let before = p.topology.table();
    let seg = before.segments[1];
    p.executor.submit(
        Action::SplitSegment(shardcast_sdk::types::SplitSegment {
            segment: seg.id,
            at_slot: seg.slot_start + 100,
        }),
        "test",
    );
    let split = p.topology.table();
    assert_eq!(split.segments.len(), before.segments.len() + 1);
    let upper = split.segments[2].id;
    p.executor.submit(
        Action::MergeSegments(shardcast_sdk::types::MergeSegments {
            low: seg.id,
            high: upper,
        }),
        "test",
    );
    let merged = p.topology.table();
    assert_eq!(merged.segments, before.segments);
    assert_eq!(merged.epoch, before.epoch + 2);
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        text.matches("\"kind\":\"applied\"").count(),
        2,
        "both table changes logged"
    );
}

//! The RESP proxy against real redis-server processes, driven by redis-rs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use redis::{Commands, RedisResult, Value};
use shardcast::proxy::slot::slot;
use shardcast::topology::SegmentTable;
use shardcast_sdk::types::InstanceState;
use shardcast_tests::servers::{Proxy, RedisServer, wait_for};

fn fleet(n: usize) -> Vec<RedisServer> {
    (0..n).map(|_| RedisServer::start()).collect()
}

fn proxy(servers: &[RedisServer], extra: &str) -> Proxy {
    let refs: Vec<&RedisServer> = servers.iter().collect();
    Proxy::start(&refs, extra)
}

#[test]
fn keys_land_on_the_instance_that_owns_their_slot() {
    let servers = fleet(3);
    let p = proxy(&servers, "");
    let mut c = p.client();
    let table = SegmentTable::uniform(1024, &[0, 1, 2]);
    for i in 0..300 {
        let key = format!("key:{i}");
        let _: () = c.set(&key, i).expect("SET through the proxy");
    }
    let mut direct: Vec<redis::Connection> = servers.iter().map(|s| s.client()).collect();
    let mut per_instance = [0; 3];
    for i in 0..300 {
        let key = format!("key:{i}");
        let owner = table.owner(slot(key.as_bytes())) as usize;
        per_instance[owner] += 1;
        for (j, d) in direct.iter_mut().enumerate() {
            let v: Option<i64> = d.get(&key).expect("direct GET");
            assert_eq!(
                v.is_some(),
                j == owner,
                "{key} belongs on instance {owner} only"
            );
        }
        let v: i64 = c.get(&key).expect("GET through the proxy");
        assert_eq!(v, i);
    }
    assert!(
        per_instance.iter().all(|&n| n > 50),
        "keys spread: {per_instance:?}"
    );
    // Hash tags keep related keys together.
    let _: () = c.set("{user:7}:name", "ada").expect("SET");
    let _: () = c.set("{user:7}:mail", "ada@example.com").expect("SET");
    let owner = table.owner(slot(b"{user:7}:name")) as usize;
    let both: Vec<Option<String>> = direct[owner]
        .mget(&["{user:7}:name", "{user:7}:mail"])
        .expect("direct MGET");
    assert!(
        both.iter().all(Option::is_some),
        "tagged keys share an instance"
    );
}

#[test]
fn multi_key_commands_are_split_and_merged() {
    let servers = fleet(3);
    let p = proxy(&servers, "");
    let mut c = p.client();
    let pairs: Vec<(String, String)> = (0..40)
        .map(|i| (format!("m{i}"), format!("v{i}")))
        .collect();
    let _: () = c.mset(&pairs).expect("MSET across instances");
    let keys: Vec<String> = pairs
        .iter()
        .map(|(k, _)| k.clone())
        .chain(["missing".to_owned()])
        .collect();
    let values: Vec<Option<String>> = c.mget(&keys).expect("MGET across instances");
    assert_eq!(values.len(), 41);
    for (i, v) in values.iter().take(40).enumerate() {
        assert_eq!(
            v.as_deref(),
            Some(format!("v{i}").as_str()),
            "MGET keeps key order"
        );
    }
    assert_eq!(values[40], None);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&keys)
        .query(&mut c)
        .expect("EXISTS");
    assert_eq!(exists, 40);
    let touched: i64 = redis::cmd("TOUCH")
        .arg(&keys[..10])
        .query(&mut c)
        .expect("TOUCH");
    assert_eq!(touched, 10);
    let deleted: i64 = c.del(&keys[..20]).expect("DEL");
    assert_eq!(deleted, 20);
    let unlinked: i64 = redis::cmd("UNLINK")
        .arg(&keys)
        .query(&mut c)
        .expect("UNLINK");
    assert_eq!(unlinked, 20);
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE");
    assert_eq!(dbsize, 0);
}

#[test]
fn cross_slot_commands_are_refused_and_hash_tags_allow_them() {
    let servers = fleet(2);
    let p = proxy(&servers, "");
    let mut c = p.client();
    let _: () = c.set("a", 1).expect("SET");
    let err = redis::cmd("RENAME")
        .arg("a")
        .arg("b")
        .query::<()>(&mut c)
        .expect_err("cross slot");
    assert!(
        err.to_string().to_lowercase().contains("crossslot"),
        "{err}"
    );
    let _: () = c.set("{t}a", 1).expect("SET");
    let _: () = redis::cmd("RENAME")
        .arg("{t}a")
        .arg("{t}b")
        .query(&mut c)
        .expect("same slot");
    let v: i64 = c.get("{t}b").expect("GET");
    assert_eq!(v, 1);
    let err = redis::cmd("SUNIONSTORE")
        .arg("x")
        .arg("y")
        .arg("z")
        .query::<i64>(&mut c)
        .expect_err("cross");
    assert!(
        err.to_string().to_lowercase().contains("crossslot"),
        "{err}"
    );
}

#[test]
fn transactions_run_on_one_instance() {
    let servers = fleet(3);
    let p = proxy(&servers, "");
    let mut c = p.client();
    let (set, incr): (Value, i64) = redis::pipe()
        .atomic()
        .set("{acct}:balance", 10)
        .incr("{acct}:balance", 5)
        .query(&mut c)
        .expect("MULTI/EXEC in one slot");
    assert_eq!((set, incr), (Value::Okay, 15));
    let err = redis::pipe()
        .atomic()
        .set("alpha", 1)
        .set("beta", 2)
        .query::<Value>(&mut c)
        .expect_err("a transaction across slots");
    let text = err.to_string().to_lowercase();
    assert!(
        text.contains("crossslot") || text.contains("execabort"),
        "{err}"
    );
    // WATCH then a conflicting write from another client aborts the transaction.
    let _: () = redis::cmd("WATCH")
        .arg("{acct}:balance")
        .query(&mut c)
        .expect("WATCH");
    let mut other = p.client();
    let _: () = other.set("{acct}:balance", 0).expect("conflicting write");
    let r: Value = redis::pipe()
        .atomic()
        .incr("{acct}:balance", 1)
        .query(&mut c)
        .expect("EXEC answers");
    assert_eq!(r, Value::Nil, "the watched transaction aborted");
    let b: i64 = c.get("{acct}:balance").expect("GET");
    assert_eq!(b, 0);
}

#[test]
fn scan_walks_every_instance() {
    let servers = fleet(3);
    let p = proxy(&servers, "");
    let mut c = p.client();
    for i in 0..500 {
        let _: () = c.set(format!("scan:{i}"), i).expect("SET");
    }
    // A copy on an instance that does not own the key's slot (a migration's partial copy,
    // or one awaiting cleanup) is not listed.
    let table = SegmentTable::uniform(1024, &[0, 1, 2]);
    let stray = "scan:0";
    let elsewhere = (table.owner(slot(stray.as_bytes())) as usize + 1) % 3;
    let _: () = servers[elsewhere]
        .client()
        .set(stray, "stale")
        .expect("plant a stray copy");
    let mut seen = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("scan:*")
            .arg("COUNT")
            .arg(100)
            .query(&mut c)
            .expect("SCAN");
        seen.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 500, "every key once");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 500, "no key twice");
    let all: Vec<String> = c.keys("scan:*").expect("KEYS fans out");
    assert_eq!(all.len(), 500);
}

#[test]
fn connect_handshakes_and_connection_state_work() {
    let servers = fleet(2);
    let p = proxy(&servers, "");
    // RESP3 through HELLO, as redis-rs sends it.
    let mut c = p.client_url("?protocol=resp3");
    let _: () = c.set("h", "v").expect("SET over RESP3");
    let v: String = c.get("h").expect("GET over RESP3");
    assert_eq!(v, "v");
    let mut c = p.client();
    let pong: String = redis::cmd("PING").query(&mut c).expect("PING");
    assert_eq!(pong, "PONG");
    let echo: String = redis::cmd("ECHO").arg("hi").query(&mut c).expect("ECHO");
    assert_eq!(echo, "hi");
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("worker-1")
        .query(&mut c)
        .expect("SETNAME");
    let name: String = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query(&mut c)
        .expect("GETNAME");
    assert_eq!(name, "worker-1");
    let _: () = redis::cmd("CLIENT")
        .arg("SETINFO")
        .arg("LIB-NAME")
        .arg("redis-rs")
        .query(&mut c)
        .expect("SETINFO");
    let _: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c).expect("ID");
    // SELECT is replayed on every instance connection.
    let _: () = redis::cmd("SELECT").arg(3).query(&mut c).expect("SELECT");
    for i in 0..20 {
        let _: () = c.set(format!("db3:{i}"), i).expect("SET in db 3");
    }
    let in_db0: usize = servers
        .iter()
        .map(|s| {
            s.client()
                .keys::<_, Vec<String>>("db3:*")
                .expect("KEYS")
                .len()
        })
        .sum();
    assert_eq!(in_db0, 0, "nothing written to db 0");
    let in_db3: usize = servers
        .iter()
        .map(|s| {
            let mut d = s.client();
            let _: () = redis::cmd("SELECT").arg(3).query(&mut d).expect("SELECT");
            d.keys::<_, Vec<String>>("db3:*").expect("KEYS").len()
        })
        .sum();
    assert_eq!(in_db3, 20);
    let time: Vec<String> = redis::cmd("TIME").query(&mut c).expect("TIME");
    assert_eq!(time.len(), 2);
    let info: String = redis::cmd("INFO").query(&mut c).expect("INFO");
    assert!(info.contains("redis_version"), "{info}");
    let _: () = redis::cmd("FLUSHDB").query(&mut c).expect("FLUSHDB");
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE");
    assert_eq!(size, 0);
}

#[test]
fn unsupported_commands_get_an_error_and_the_connection_stays() {
    let servers = fleet(1);
    let p = proxy(&servers, "");
    let mut c = p.client();
    let err = redis::cmd("CLUSTER")
        .arg("INFO")
        .query::<String>(&mut c)
        .expect_err("unsupported");
    assert!(
        err.to_string()
            .contains("unsupported command 'CLUSTER' through the shardcast proxy"),
        "{err}"
    );
    let err = redis::cmd("GET")
        .query::<String>(&mut c)
        .expect_err("arity");
    assert!(
        err.to_string().contains("wrong number of arguments"),
        "{err}"
    );
    let pong: String = redis::cmd("PING").query(&mut c).expect("still connected");
    assert_eq!(pong, "PONG");
}

#[test]
fn pipelines_keep_replies_in_order_across_instances() {
    let servers = fleet(3);
    let p = proxy(&servers, "");
    let mut c = p.client();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.set(format!("p{i}"), i).ignore();
    }
    for i in 0..1000 {
        pipe.get(format!("p{i}"));
    }
    let values: Vec<i64> = pipe.query(&mut c).expect("pipeline");
    assert_eq!(values, (0..1000).collect::<Vec<i64>>());
}

#[test]
fn blocking_commands_wait_on_their_instance() {
    let servers = fleet(2);
    let p = proxy(&servers, "");
    let port = p.port;
    let waiter = std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection())
            .expect("client");
        redis::cmd("BLPOP")
            .arg("queue")
            .arg(10)
            .query::<(String, String)>(&mut c)
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut c = p.client();
    let _: i64 = c.rpush("queue", "job-1").expect("RPUSH");
    let (list, item) = waiter.join().expect("waiter").expect("BLPOP returns");
    assert_eq!((list.as_str(), item.as_str()), ("queue", "job-1"));
}

#[test]
fn a_killed_instance_hurts_only_its_own_keys() {
    let mut servers = fleet(3);
    let p = proxy(&servers, "[limits]\nhold_ms = 100");
    let mut c = p.client();
    let table = SegmentTable::uniform(1024, &[0, 1, 2]);
    let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    for k in &keys {
        let _: () = c.set(k, 1).expect("SET");
    }
    servers[1].kill();
    let mut failed = 0;
    for k in &keys {
        let owner = table.owner(slot(k.as_bytes()));
        let r: RedisResult<i64> = c.get(k);
        match owner {
            1 => {
                let e = r.expect_err("its instance is down");
                let text = e.to_string();
                assert!(
                    text.contains("redis-1") && text.to_lowercase().contains("tryagain"),
                    "{text}"
                );
                failed += 1;
            }
            _ => assert_eq!(r.expect("other instances still serve"), 1),
        }
    }
    assert!(failed > 0);
    let pong: String = redis::cmd("PING")
        .query(&mut c)
        .expect("the client connection survives");
    assert_eq!(pong, "PONG");
}

#[test]
fn requests_for_a_restarting_instance_are_held_and_sessions_replayed() {
    let mut servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start_durable()).collect();
    let p = proxy(&servers, "");
    let table = SegmentTable::uniform(1024, &[0, 1]);
    let on = |i: u32| {
        (0..)
            .map(|n| format!("key:{n}"))
            .find(|k| table.owner(slot(k.as_bytes())) == i)
            .expect("a key on the instance")
    };
    let (mine, other) = (on(1), on(0));
    // A shared-connection session and a pinned one (database 3, a client name).
    let mut shared = p.client();
    let _: () = shared.set(&mine, "shared").expect("SET");
    let mut pinned = p.client();
    let _: () = redis::cmd("SELECT")
        .arg(3)
        .query(&mut pinned)
        .expect("SELECT");
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("pinned-one")
        .query(&mut pinned)
        .expect("SETNAME");
    let _: () = pinned.set(&mine, "db3").expect("SET in db 3");

    servers[1].kill();
    wait_for(
        "the proxy to see the instance down",
        Duration::from_secs(20),
        || shardcast::run::view(&p.parts, 0).instances[1].state == InstanceState::Down,
    );
    let started = std::time::Instant::now();
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        servers[1].restart();
        servers
    });
    // Held until the instance is back, then answered; other instances never wait.
    let v: String = shared.get(&mine).expect("held, then served");
    assert_eq!(v, "shared");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "it was held"
    );
    let _: () = shared.set(&other, 1).expect("other instances serve");
    let v: String = pinned.get(&mine).expect("the pinned session reconnects");
    assert_eq!(v, "db3", "database 3 replayed on the new connection");
    let servers = restarter.join().expect("restarter");
    let mut direct = servers[1].client();
    let names: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut direct)
        .expect("LIST");
    assert!(
        names.contains("name=pinned-one"),
        "client name replayed: {names}"
    );
    let held = p.gate.instance_holds();
    assert!(held.requests >= 1 && held.max_us >= 300_000, "{held:?}");
}

fn raw(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn malformed_and_oversized_input_closes_only_that_connection() {
    let servers = fleet(1);
    let p = proxy(&servers, "[limits]\nmax_bulk_bytes = 1024\n");
    let mut bystander = p.client();
    let reply = raw(p.port, b"*1\r\n$abc\r\n");
    assert!(
        reply.starts_with("-ERR Protocol error: invalid bulk length"),
        "{reply:?}"
    );
    let reply = raw(p.port, b"*2\r\n$3\r\nSET\r\n$5000\r\n");
    assert!(
        reply.contains("bulk of 5000 bytes exceeds the limit of 1024"),
        "{reply:?}"
    );
    let reply = raw(p.port, b"*1\r\n:5\r\n");
    assert!(
        reply.contains("Protocol error: invalid type byte ':'"),
        "{reply:?}"
    );
    let pong: String = redis::cmd("PING")
        .query(&mut bystander)
        .expect("others are unaffected");
    assert_eq!(pong, "PONG");
}

#[test]
fn pub_sub_across_instances_then_back_to_commands() {
    let servers = fleet(3);
    let p = proxy(&servers, "");
    let mut sub_conn = p.client();
    let mut publisher = p.client();
    {
        let mut sub = sub_conn.as_pubsub();
        sub.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        sub.subscribe(&["news", "sport", "weather"])
            .expect("SUBSCRIBE over several instances");
        sub.psubscribe("alert:*")
            .expect("PSUBSCRIBE on every instance");
        for (channel, payload) in [
            ("news", "n1"),
            ("sport", "s1"),
            ("weather", "w1"),
            ("alert:fire", "a1"),
        ] {
            let receivers: i64 = publisher.publish(channel, payload).expect("PUBLISH");
            assert_eq!(receivers, 1, "{channel} reached its subscriber");
            let msg = sub.get_message().expect("message");
            assert_eq!(msg.get_channel_name(), channel);
            assert_eq!(msg.get_payload::<String>().expect("payload"), payload);
        }
        // The session's subscriptions partition says what it listens to.
        let repo = p.sessions.repository().clone();
        let ids: Vec<u64> = p.sessions.take().into_iter().map(|(s, _)| s.id).collect();
        let partition = ids
            .iter()
            .find_map(|&id| repo.get(id, "subscriptions"))
            .expect("a session with a subscriptions partition");
        assert!(
            partition.contains(&("channels".to_owned(), "news,sport,weather".to_owned())),
            "{partition:?}"
        );
        assert!(
            partition.contains(&("patterns".to_owned(), "alert:*".to_owned())),
            "{partition:?}"
        );
        // Dropping the pub/sub handle unsubscribes from everything and drains the
        // confirmations, which the proxy merges into one count.
    }
    let _: () = sub_conn
        .set("after", 1)
        .expect("the connection is back to commands");
    let v: i64 = sub_conn.get("after").expect("GET");
    assert_eq!(v, 1);
}

#[test]
fn pipelines_that_change_connection_state_keep_every_reply_in_place() {
    let servers = fleet(2);
    let p = proxy(&servers, "");
    let mut c = p.client();
    let replies: Vec<Value> = redis::pipe()
        .cmd("SET")
        .arg("pipe:a")
        .arg("zero")
        .cmd("SELECT")
        .arg(2)
        .cmd("SET")
        .arg("pipe:a")
        .arg("two")
        .cmd("GET")
        .arg("pipe:a")
        .cmd("SELECT")
        .arg(0)
        .cmd("GET")
        .arg("pipe:a")
        .cmd("WATCH")
        .arg("pipe:a")
        .cmd("GET")
        .arg("pipe:a")
        .cmd("UNWATCH")
        .cmd("GET")
        .arg("pipe:a")
        .query(&mut c)
        .expect("pipeline");
    let text: Vec<String> = replies
        .iter()
        .map(|v| match v {
            Value::Okay => "OK".to_owned(),
            Value::SimpleString(s) => s.clone(),
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        text,
        [
            "OK", "OK", "OK", "two", "OK", "zero", "OK", "zero", "OK", "zero"
        ],
        "each reply answers its own request"
    );
}

//! Every queue or buffer a client can grow is bounded: a client over `maxclients` is told
//! so and closed, a subscriber that never reads is disconnected instead of piling up
//! messages, and a reply of 64 MiB crosses the proxy intact on both kinds of connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use shardcast_tests::servers::{Proxy, RedisServer, wait_for};

/// Whatever `stream` says within `timeout`.
fn read_some(stream: &mut TcpStream, timeout: Duration) -> String {
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn a_client_over_maxclients_is_told_and_closed() {
    let server = RedisServer::start();
    let p = Proxy::start(&[&server], "[limits]\nmaxclients = 2");
    // The start-up probe's connection holds a place until the proxy sees it closed: take
    // the two places as they come free.
    let client = || {
        let mut conn = None;
        wait_for("a place for a client", Duration::from_secs(10), || {
            conn = redis::Client::open(format!("redis://127.0.0.1:{}/", p.port))
                .and_then(|c| c.get_connection())
                .ok();
            conn.as_mut()
                .is_some_and(|c| redis::cmd("PING").query::<String>(c).is_ok())
        });
        conn.expect("found above")
    };
    let first = client();
    let _second = client();
    let mut third = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    assert_eq!(
        read_some(&mut third, Duration::from_secs(5)),
        "-ERR max number of clients reached\r\n"
    );
    drop(first);
    wait_for("a place to free up", Duration::from_secs(10), || {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
        s.write_all(b"*1\r\n$4\r\nPING\r\n").expect("write");
        read_some(&mut s, Duration::from_secs(2)) == "+PONG\r\n"
    });
}

#[test]
fn a_subscriber_that_never_reads_is_disconnected() {
    let server = RedisServer::start();
    let p = Proxy::start(&[&server], "[limits]\nclient_write_timeout_ms = 300");
    let mut subscriber = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    subscriber
        .write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n")
        .expect("subscribe");
    assert!(read_some(&mut subscriber, Duration::from_secs(5)).contains("subscribe"));
    let mut publisher = p.client_within(Duration::from_secs(10));
    let message = "m".repeat(64 << 10);
    let mut sessions = 0;
    // 64 KiB messages until the proxy gives up on the subscriber (or 256 MiB were sent).
    for _ in 0..4096 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("news")
            .arg(&message)
            .query(&mut publisher)
            .expect("PUBLISH");
        sessions = p.sessions.take().len();
        if sessions == 1 {
            break;
        }
    }
    assert_eq!(
        sessions, 1,
        "only the publisher is left: the subscriber that reads nothing was closed"
    );
    // The publisher and the instance are fine.
    let _: String = redis::cmd("PING").query(&mut publisher).expect("PING");
}

#[test]
fn a_64_mib_reply_crosses_the_proxy_intact() {
    let server = RedisServer::start();
    let p = Proxy::start(&[&server], "");
    let value: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut shared = p.client_within(Duration::from_secs(60));
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut shared)
        .expect("SET 64 MiB");
    let back: Vec<u8> = redis::cmd("GET")
        .arg("big")
        .query(&mut shared)
        .expect("GET");
    assert!(
        back == value,
        "the shared connection returns it byte for byte"
    );
    let mut own = p.client_within(Duration::from_secs(60));
    let _: () = redis::cmd("HELLO")
        .arg(3)
        .query(&mut own)
        .map(|_: redis::Value| ())
        .expect("HELLO");
    let back: Vec<u8> = redis::cmd("GET").arg("big").query(&mut own).expect("GET");
    assert!(
        back == value,
        "a session's own connection returns it byte for byte"
    );
}

#[test]
fn the_decision_log_rotates_past_its_bound() {
    use shardcast_sdk::types::{Action, MoveSegment};
    let server = RedisServer::start();
    let state = tempfile::tempdir().expect("tempdir");
    let p = Proxy::start(
        &[&server],
        &format!(
            "[migration]\nstate_dir = \"{}\"\ndecision_log_bytes = 4096\n",
            state.path().display()
        ),
    );
    // Every refused action is a line of the log (segment 9999 does not exist), up to 16 a
    // tick; each tick's view takes the refusals.
    for _ in 0..20 {
        for _ in 0..16 {
            p.executor.submit(
                Action::MoveSegment(MoveSegment {
                    segment: 9999,
                    target: 0,
                }),
                "test",
            );
        }
        assert_eq!(p.executor.take_refusals().len(), 16);
    }
    let log = state.path().join("decisions.jsonl");
    let size = std::fs::metadata(&log).expect("log").len();
    assert!(size <= 4096, "the live log stays under its bound: {size}");
    let old = std::fs::metadata(state.path().join("decisions.jsonl.1")).expect("rotated");
    assert!(old.len() > 0 && old.len() <= 4096);
}

#[test]
fn a_tick_of_refusals_writes_sixteen_lines_and_counts_the_rest() {
    use shardcast_sdk::types::{Action, MoveSegment};
    let server = RedisServer::start();
    let state = tempfile::tempdir().expect("tempdir");
    let p = Proxy::start(
        &[&server],
        &format!("[migration]\nstate_dir = \"{}\"\n", state.path().display()),
    );
    for _ in 0..100 {
        p.executor.submit(
            Action::MoveSegment(MoveSegment {
                segment: 9999,
                target: 0,
            }),
            "test",
        );
    }
    assert_eq!(
        p.executor.take_refusals().len(),
        100,
        "the policy sees every refusal"
    );
    let log = std::fs::read_to_string(state.path().join("decisions.jsonl")).expect("log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.iter().filter(|v| v["kind"] == "refused").count(), 16);
    let cut: Vec<_> = lines
        .iter()
        .filter(|v| v["kind"] == "refusals-cut")
        .collect();
    assert_eq!(cut.len(), 1, "{log}");
    assert_eq!(cut[0]["count"], 84);
}

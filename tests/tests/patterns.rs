//! Pattern subscriptions cover the whole fleet as it changes: a standby activated after
//! `PSUBSCRIBE`, and given segments, delivers its channels' messages to the subscriber.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use shardcast_sdk::types::{Action, MigrationOutcome};
use shardcast_tests::servers::{Proxy, RedisServer, free_port, wait_for};

#[test]
fn a_pattern_subscription_reaches_an_activated_standby() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let port = free_port();
    let p = Proxy::start_config(
        port,
        &format!(
            "listen = \"127.0.0.1:{port}\"\n[segments]\ncount = 2\n[[instances]]\nname = \"a\"\naddress = \"{}\"\n[[instances]]\nname = \"spare\"\naddress = \"{}\"\nstate = \"standby\"\n",
            servers[0].address(),
            servers[1].address()
        ),
    );
    let mut sub = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sub.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    sub.write_all(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$6\r\nnews.*\r\n")
        .expect("PSUBSCRIBE");
    let mut buf = vec![0u8; 4096];
    let n = sub.read(&mut buf).expect("confirmation");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("psubscribe"));

    p.executor.submit(Action::ActivateStandby(1), "test");
    let segment = p.topology.table().segments[1];
    let m = p.move_segment(segment.id, 1, Duration::from_secs(30));
    assert_eq!(m.outcome, MigrationOutcome::Completed, "{}", m.detail);
    let channel = p.key_on(1, "news.");
    let mut publisher = p.client_within(Duration::from_secs(10));
    // Published until it arrives: the subscription on the new instance is made when the
    // session sees the table change.
    let mut got = String::new();
    wait_for(
        "the message on the activated standby's channel",
        Duration::from_secs(10),
        || {
            let _: i64 = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg("hello")
                .query(&mut publisher)
                .expect("PUBLISH");
            sub.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            if let Ok(n) = sub.read(&mut buf) {
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            got.contains("pmessage") && got.contains(&channel)
        },
    );
}

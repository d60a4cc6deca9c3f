//! Subscribed mode answers in request order, as redis-server does, although the channels
//! live on different instances that confirm in their own order: a pipelined `SUBSCRIBE a
//! b`, `UNSUBSCRIBE`, `SUBSCRIBE a`, `PING` gets its replies in that order with Redis's
//! counts, and a pattern dropped and taken again is confirmed in order too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use shardcast_tests::servers::{Proxy, RedisServer};

/// Read one RESP reply of bulk strings, integers and arrays as flat words.
fn words(r: &mut BufReader<TcpStream>, out: &mut Vec<String>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("a reply line");
    let line = line.trim_end().to_owned();
    let (kind, rest) = line.split_at(1);
    match kind {
        "*" | ">" => {
            for _ in 0..rest.parse::<i64>().expect("a length").max(0) {
                words(r, out);
            }
        }
        "$" => {
            let n: i64 = rest.parse().expect("a length");
            if n < 0 {
                out.push("nil".into());
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf).expect("bulk");
                out.push(String::from_utf8_lossy(&buf[..n as usize]).into_owned());
            }
        }
        _ => out.push(rest.to_owned()),
    }
}

fn reply(r: &mut BufReader<TcpStream>) -> String {
    let mut out = Vec::new();
    words(r, &mut out);
    out.join(" ")
}

#[test]
fn pipelined_subscription_commands_are_answered_in_order_across_instances() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let p = Proxy::start(&[&servers[0], &servers[1]], "");
    let (a, b) = (p.key_on(0, "chan"), p.key_on(1, "chan"));
    let stream = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    for round in 0..20 {
        write!(
            w,
            "SUBSCRIBE {a} {b}\r\nUNSUBSCRIBE\r\nSUBSCRIBE {a}\r\nPING\r\nPSUBSCRIBE f*\r\nPUNSUBSCRIBE\r\nPSUBSCRIBE f*\r\nPUNSUBSCRIBE f*\r\nUNSUBSCRIBE {a}\r\n"
        )
        .expect("write");
        let got: Vec<String> = (0..11).map(|_| reply(&mut r)).collect();
        let unsub_ab = [format!("unsubscribe {a} 1"), format!("unsubscribe {b} 0")];
        let want_first = [format!("subscribe {a} 1"), format!("subscribe {b} 2")];
        assert_eq!(got[..2], want_first[..], "round {round}: {got:?}");
        // UNSUBSCRIBE without names drops every channel; Redis's order among them is its
        // own, so only the set and the final count are fixed.
        let mut middle = got[2..4].to_vec();
        middle.sort();
        let mut expected = unsub_ab.to_vec();
        expected.sort();
        assert_eq!(middle, expected, "round {round}: {got:?}");
        assert!(got[3].ends_with(" 0"), "round {round}: {got:?}");
        assert_eq!(
            got[4..],
            [
                format!("subscribe {a} 1"),
                "pong ".to_owned(),
                "psubscribe f* 2".to_owned(),
                "punsubscribe f* 1".to_owned(),
                "psubscribe f* 2".to_owned(),
                "punsubscribe f* 1".to_owned(),
                format!("unsubscribe {a} 0"),
            ][..],
            "round {round}: {got:?}"
        );
    }
    // Back in normal mode: a plain command works on the same connection.
    write!(w, "PING\r\n").expect("write");
    assert_eq!(reply(&mut r), "PONG");
}

/// A client that subscribed and left takes its subscriptions, and the proxy's connections
/// that carried them, with it: no connection on the instances is left whose last command
/// was a (un)subscription (read directly with `CLIENT LIST`), whether the client closed its
/// socket while subscribed, or unsubscribed first and then went on with other commands.
#[test]
fn a_subscriber_that_leaves_leaves_no_subscription_on_the_instances() {
    use shardcast_tests::servers::wait_for;
    let servers = [RedisServer::start(), RedisServer::start()];
    let p = Proxy::start(&[&servers[0], &servers[1]], "");
    let carrying = || -> usize {
        servers
            .iter()
            .map(|s| {
                let list: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .query(&mut s.client())
                    .expect("CLIENT LIST");
                list.lines()
                    .filter(|l| l.contains("subscribe user="))
                    .count()
            })
            .sum()
    };
    for unsubscribe_first in [false, true] {
        let stream = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut r = BufReader::new(stream.try_clone().expect("clone"));
        let mut w = stream;
        w.write_all(
            b"*2\r\n$9\r\nSUBSCRIBE\r\n$7\r\nleaving\r\n*2\r\n$10\r\nPSUBSCRIBE\r\n$5\r\nleav*\r\n",
        )
        .expect("write");
        let mut seen = Vec::new();
        words(&mut r, &mut seen);
        words(&mut r, &mut seen);
        assert!(carrying() >= 2, "{seen:?}");
        if unsubscribe_first {
            w.write_all(b"*1\r\n$11\r\nUNSUBSCRIBE\r\n*1\r\n$12\r\nPUNSUBSCRIBE\r\n")
                .expect("write");
            words(&mut r, &mut seen);
            words(&mut r, &mut seen);
            w.write_all(b"*1\r\n$4\r\nPING\r\n").expect("write");
            assert_eq!(reply(&mut r), "PONG", "{seen:?}");
            wait_for(
                "the carrying connections to close",
                Duration::from_secs(10),
                || carrying() == 0,
            );
        }
        drop(r);
        drop(w);
        wait_for(
            "the subscriptions to go with the client",
            Duration::from_secs(10),
            || carrying() == 0,
        );
    }
}

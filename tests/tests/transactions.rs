//! A WATCH lives on one connection to one instance, as in Redis: when that connection is
//! lost (the instance restarted, `HELLO` replaced it), `EXEC` fails instead of running
//! unguarded on a new connection and overwriting a newer write. An `EXEC` refused for
//! crossing slots ends the watch like any other `EXEC`.

use std::time::Duration;

use shardcast_tests::servers::{Proxy, RedisServer};

fn query<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")))
}

/// `MULTI; SET key value; EXEC` on `c`: the EXEC reply.
fn set_in_transaction(c: &mut redis::Connection, key: &str, value: &str) -> redis::Value {
    let _: () = query(c, &["MULTI"]);
    let queued: String = query(c, &["SET", key, value]);
    assert_eq!(queued, "QUEUED");
    query(c, &["EXEC"])
}

#[test]
fn an_exec_after_its_instance_restarted_fails_and_keeps_the_newer_write() {
    let mut server = RedisServer::start_durable();
    let p = Proxy::start(&[&server], "[limits]\nhold_ms = 10000");
    let mut a = p.client_within(Duration::from_secs(20));
    let mut b = p.client_within(Duration::from_secs(20));
    let _: () = query(&mut a, &["SET", "cas", "1"]);
    let _: () = query(&mut a, &["WATCH", "cas"]);
    let read: String = query(&mut a, &["GET", "cas"]);
    assert_eq!(read, "1");
    server.restart();
    let _: () = query(&mut b, &["SET", "cas", "100"]);
    let exec = set_in_transaction(&mut a, "cas", "2");
    assert_eq!(
        exec,
        redis::Value::Nil,
        "the watch died with its connection"
    );
    let now: String = query(&mut b, &["GET", "cas"]);
    assert_eq!(now, "100", "the acknowledged write stays");
    // The session goes on: the next transaction runs.
    let exec = set_in_transaction(&mut a, "cas", "3");
    assert_ne!(exec, redis::Value::Nil);
    let now: String = query(&mut b, &["GET", "cas"]);
    assert_eq!(now, "3");
}

#[test]
fn hello_replacing_the_connection_ends_the_watch_too() {
    let server = RedisServer::start();
    let p = Proxy::start(&[&server], "");
    let mut a = p.client_within(Duration::from_secs(20));
    let mut b = p.client_within(Duration::from_secs(20));
    let _: () = query(&mut a, &["WATCH", "k"]);
    let _: redis::Value = query(&mut a, &["HELLO", "3"]);
    let _: () = query(&mut b, &["SET", "k", "newer"]);
    let exec = set_in_transaction(&mut a, "k", "older");
    assert_eq!(exec, redis::Value::Nil);
    let now: String = query(&mut b, &["GET", "k"]);
    assert_eq!(now, "newer");
}

#[test]
fn an_exec_refused_for_crossing_slots_ends_its_watch() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let p = Proxy::start(&[&servers[0], &servers[1]], "[segments]\ncount = 2");
    let watched = p.key_on(0, "w:");
    let elsewhere = p.key_on(1, "e:");
    let mut a = p.client_within(Duration::from_secs(20));
    let mut b = p.client_within(Duration::from_secs(20));
    let _: () = query(&mut a, &["WATCH", &watched]);
    let _: () = query(&mut a, &["MULTI"]);
    let _: String = query(&mut a, &["SET", &elsewhere, "x"]);
    let refused = redis::cmd("EXEC").query::<redis::Value>(&mut a);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().to_lowercase().contains("crossslot")),
        "{refused:?}"
    );
    // Nothing is watched any more: a change by another client does not fail the next one.
    let _: () = query(&mut b, &["SET", &watched, "other"]);
    let exec = set_in_transaction(&mut a, &watched, "mine");
    assert_ne!(exec, redis::Value::Nil, "no watch left behind");
    let now: String = query(&mut b, &["GET", &watched]);
    assert_eq!(now, "mine");
}

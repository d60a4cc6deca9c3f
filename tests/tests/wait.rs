//! `WAIT` through the proxy waits for the session's own writes to reach replicas, on every
//! instance it wrote to, although those writes went over shared connections: checked
//! against a real replica, read directly, and against a replica frozen with SIGSTOP (a
//! `WAIT` that counted only its own connection's writes would return 1 at once).

use std::time::Duration;

use shardcast_tests::servers::{Proxy, RedisServer, wait_for};

fn wait(c: &mut redis::Connection, replicas: u32, ms: u64) -> i64 {
    redis::cmd("WAIT")
        .arg(replicas)
        .arg(ms)
        .query(c)
        .expect("WAIT")
}

#[test]
fn wait_counts_the_replicas_that_have_the_sessions_writes() {
    let primary = RedisServer::start();
    let replica = RedisServer::start();
    let plain = RedisServer::start();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .query(&mut replica.client())
        .expect("REPLICAOF");
    wait_for("the replica to sync", Duration::from_secs(20), || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica.client())
            .expect("INFO");
        info.contains("master_link_status:up")
    });
    let p = Proxy::start(&[&primary, &plain], "");
    let on_primary = p.key_on(0, "wait:a:");
    let on_plain = p.key_on(1, "wait:b:");
    let mut c = p.client_within(Duration::from_secs(20));
    let mut direct_replica = replica.client();

    let _: () = redis::cmd("SET")
        .arg(&on_primary)
        .arg("one")
        .query(&mut c)
        .expect("SET");
    assert_eq!(
        wait(&mut c, 1, 10_000),
        1,
        "the replica acknowledged the write"
    );
    let there: Option<String> = redis::cmd("GET")
        .arg(&on_primary)
        .query(&mut direct_replica)
        .expect("GET on the replica");
    assert_eq!(there.as_deref(), Some("one"));

    // A frozen replica cannot acknowledge the next write: WAIT times out with 0.
    replica.pause();
    let _: () = redis::cmd("SET")
        .arg(&on_primary)
        .arg("two")
        .query(&mut c)
        .expect("SET");
    assert_eq!(wait(&mut c, 1, 300), 0, "WAIT did not wait for the write");
    replica.resume();
    assert_eq!(wait(&mut c, 1, 10_000), 1, "the replica caught up");

    // A write to an instance without replicas: the least over the instances written to.
    let _: () = redis::cmd("SET")
        .arg(&on_plain)
        .arg("x")
        .query(&mut c)
        .expect("SET");
    assert_eq!(wait(&mut c, 1, 200), 0);
    // Pipelined on a new session: the WAIT waits for the write sent just before it.
    let mut fresh = p.client_within(Duration::from_secs(20));
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg(&on_primary).arg("three").ignore();
    pipe.cmd("WAIT").arg(1).arg(10_000);
    let (n,): (i64,) = pipe.query(&mut fresh).expect("pipelined SET and WAIT");
    assert_eq!(n, 1);
    let there: Option<String> = redis::cmd("GET")
        .arg(&on_primary)
        .query(&mut direct_replica)
        .expect("GET on the replica");
    assert_eq!(there.as_deref(), Some("three"));
}

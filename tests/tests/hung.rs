//! A hung instance (SIGSTOP: it accepts connections and answers nothing) fails its
//! requests within their deadlines instead of holding its clients forever, and only a
//! request that never reached it is called retryable: a read gets `TRYAGAIN`, a write an
//! error saying its outcome is unknown (the write does run once the instance resumes). The
//! poller marks the instance down, and a migration to it rolls back within its deadlines.

use std::time::{Duration, Instant};

use shardcast_sdk::types::{InstanceState, MigrationOutcome};
use shardcast_tests::servers::{Proxy, RedisServer, wait_for};

const LIMITS: &str = "[segments]\ncount = 2\n[limits]\nrequest_timeout_ms = 500\nhold_ms = 500\n[migration]\nio_timeout_ms = 1000\ncutover_timeout_ms = 1000\n";

fn error_text(r: redis::RedisResult<redis::Value>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        // redis-rs names the error code its own way (`TryAgain`): compare in lower case.
        Err(e) => e.to_string().to_lowercase(),
    }
}

#[test]
fn requests_to_a_paused_instance_fail_within_their_deadline_saying_what_ran() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let p = Proxy::start(&[&servers[0], &servers[1]], LIMITS);
    let hung = p.key_on(0, "hung:");
    let fine = p.key_on(1, "fine:");
    let mut shared = p.client_within(Duration::from_secs(10));
    // A session of its own (another database) uses connections of its own.
    let mut own = p.client_within(Duration::from_secs(10));
    let _: () = redis::cmd("SELECT").arg(1).query(&mut own).expect("SELECT");
    let _: Option<String> = redis::cmd("GET").arg(&hung).query(&mut own).expect("GET");
    servers[0].pause();

    let started = Instant::now();
    let read = error_text(redis::cmd("GET").arg(&hung).query(&mut shared));
    assert!(
        read.contains("tryagain") && read.contains("redis-0"),
        "a read that got no reply is retryable and names the instance: {read}"
    );
    let write = error_text(redis::cmd("SET").arg(&hung).arg("w").query(&mut shared));
    assert!(
        write.contains("outcome unknown") && !write.contains("tryagain"),
        "a write sent without a reply is not called retryable: {write}"
    );
    let pinned = error_text(redis::cmd("SET").arg(&hung).arg("p").query(&mut own));
    assert!(
        pinned.contains("outcome unknown") && !pinned.contains("tryagain"),
        "the same on a session's own connection: {pinned}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "each failed within its deadline, not the client's"
    );
    // The other instance is unaffected, on both kinds of connection.
    let _: () = redis::cmd("SET")
        .arg(&fine)
        .arg(1)
        .query(&mut shared)
        .expect("the other instance serves");
    let _: () = redis::cmd("SET")
        .arg(&fine)
        .arg(1)
        .query(&mut own)
        .expect("the other instance serves a pinned session");
    wait_for(
        "the poller to mark the instance down",
        Duration::from_secs(10),
        || p.telemetry.view(&p.topology, 0).instances[0].state == InstanceState::Down,
    );
    // A request that cannot even be sent (a new connection's handshake gets no answer)
    // never ran: that one is retryable. (SELECT is checked on an instance that is up.)
    let mut fresh = p.client_within(Duration::from_secs(10));
    let _: () = redis::cmd("SELECT")
        .arg(2)
        .query(&mut fresh)
        .expect("SELECT");
    let unsent = error_text(redis::cmd("SET").arg(&hung).arg("u").query(&mut fresh));
    assert!(unsent.contains("tryagain"), "{unsent}");

    servers[0].resume();
    // The write whose outcome was unknown did run: TRYAGAIN would have invited a double.
    wait_for(
        "the unanswered write to land",
        Duration::from_secs(10),
        || {
            redis::cmd("GET")
                .arg(&hung)
                .query::<Option<String>>(&mut servers[0].client())
                .ok()
                .flatten()
                .as_deref()
                == Some("w")
        },
    );
    wait_for(
        "the instance to serve again",
        Duration::from_secs(10),
        || {
            redis::cmd("SET")
                .arg(&hung)
                .arg("again")
                .query::<()>(&mut shared)
                .is_ok()
        },
    );
    // The pinned session reconnects; its unanswered write (database 1) landed as well.
    wait_for(
        "the pinned session's write to land",
        Duration::from_secs(10),
        || {
            redis::cmd("GET")
                .arg(&hung)
                .query::<Option<String>>(&mut own)
                .ok()
                .flatten()
                .as_deref()
                == Some("p")
        },
    );
}

#[test]
fn a_migration_to_a_paused_instance_rolls_back_within_its_deadlines() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let p = Proxy::start(&[&servers[0], &servers[1]], LIMITS);
    let mut c = p.client_within(Duration::from_secs(10));
    let keys: Vec<String> = (0..200).map(|i| format!("m:{i}")).collect();
    for k in &keys {
        let _: () = redis::cmd("SET").arg(k).arg(k).query(&mut c).expect("SET");
    }
    servers[1].pause();
    let m = p.move_segment(0, 1, Duration::from_secs(30));
    servers[1].resume();
    assert_ne!(m.outcome, MigrationOutcome::Completed, "{m:?}");
    assert_eq!(
        p.topology.table().segments[0].owner,
        0,
        "the source still owns it"
    );
    for k in &keys {
        let v: String = redis::cmd("GET").arg(k).query(&mut c).expect("GET");
        assert_eq!(&v, k);
    }
}

#[test]
fn a_split_write_that_partly_ran_is_not_called_retryable() {
    let mut servers = [RedisServer::start(), RedisServer::start()];
    let p = Proxy::start(
        &[&servers[0], &servers[1]],
        "[segments]\ncount = 2\n[limits]\nhold_ms = 300",
    );
    let (here, gone) = (p.key_on(0, "here:"), p.key_on(1, "gone:"));
    let mut c = p.client_within(Duration::from_secs(10));
    servers[1].kill();
    let mixed = error_text(
        redis::cmd("MSET")
            .arg(&here)
            .arg("1")
            .arg(&gone)
            .arg("1")
            .query(&mut c),
    );
    assert!(
        mixed.contains("outcome unknown") && !mixed.starts_with("tryagain"),
        "the part on the live instance ran: {mixed}"
    );
    let applied: Option<String> = redis::cmd("GET")
        .arg(&here)
        .query(&mut servers[0].client())
        .expect("GET");
    assert_eq!(
        applied.as_deref(),
        Some("1"),
        "which is why TRYAGAIN would lie"
    );
    // All parts unsent: that one is retryable.
    let unsent = error_text(redis::cmd("SET").arg(&gone).arg("2").query(&mut c));
    assert!(unsent.contains("tryagain"), "{unsent}");
}

//! A migration that rolls back while its target is unreachable leaves the target's partial
//! copy behind; it is journaled and deleted once the target answers again, so no key is
//! readable on an instance that does not own it and `DBSIZE` through the proxy agrees with
//! what was written.

use std::time::Duration;

use shardcast_sdk::types::{Action, MigrationOutcome, MoveSegment};
use shardcast_tests::servers::{Proxy, RedisServer, wait_for};

fn dbsize(c: &mut redis::Connection) -> u64 {
    redis::cmd("DBSIZE").query(c).expect("DBSIZE")
}

#[test]
fn a_partial_copy_left_on_a_dead_target_is_deleted_when_it_returns() {
    let source = RedisServer::start();
    let mut target = RedisServer::start_durable();
    let state = tempfile::tempdir().expect("tempdir");
    let p = Proxy::start(
        &[&source, &target],
        &format!(
            "[segments]\ncount = 2\n[migration]\nstate_dir = \"{}\"\nkeys_per_sec = 2000\nchunk_keys = 50\nio_timeout_ms = 1000\n",
            state.path().display()
        ),
    );
    let mut c = p.client_within(Duration::from_secs(10));
    let keys: Vec<String> = (0..4000).map(|i| p.key_on(0, &format!("s{i}:"))).collect();
    for k in &keys {
        let _: () = redis::cmd("SET").arg(k).arg(1).query(&mut c).expect("SET");
    }
    let written = dbsize(&mut c);
    p.executor.submit(
        Action::MoveSegment(MoveSegment {
            segment: 0,
            target: 1,
        }),
        "test",
    );
    wait_for(
        "part of the copy to reach the target",
        Duration::from_secs(30),
        || dbsize(&mut target.client()) >= 200,
    );
    target.kill();
    wait_for(
        "the migration to roll back",
        Duration::from_secs(30),
        || {
            p.executor.migrations().iter().any(|m| {
                m.outcome == MigrationOutcome::Aborted || m.outcome == MigrationOutcome::Failed
            })
        },
    );
    assert_eq!(p.executor.strays(), 1, "the partial copy is remembered");
    target.restart();
    let left = dbsize(&mut target.client());
    assert!(
        left > 0,
        "the durable target came back with its partial copy"
    );
    wait_for(
        "the stray copy to be deleted",
        Duration::from_secs(30),
        || dbsize(&mut target.client()) == 0,
    );
    assert_eq!(p.executor.strays(), 0);
    assert_eq!(
        dbsize(&mut c),
        written,
        "DBSIZE agrees with what was written"
    );
    let journal = std::fs::read_to_string(state.path().join("journal.jsonl")).expect("journal");
    assert!(
        journal.contains("\"step\":\"stray\""),
        "the stray is journaled"
    );
}

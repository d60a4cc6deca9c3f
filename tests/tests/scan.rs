//! SCAN across instances misses no key when a segment moves behind the walk: the cursor
//! carries the table it was made under, and a move onto an instance already walked starts
//! the walk over.

use std::collections::BTreeSet;
use std::time::Duration;

use shardcast_sdk::types::MigrationOutcome;
use shardcast_tests::servers::{Proxy, RedisServer};

#[test]
fn a_segment_moving_behind_the_cursor_is_still_listed() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let p = Proxy::start(&[&servers[0], &servers[1]], "[segments]\ncount = 4");
    let mut c = p.client_within(Duration::from_secs(10));
    let keys: BTreeSet<String> = (0..2000).map(|i| format!("walk:{i}")).collect();
    for k in &keys {
        let _: () = redis::cmd("SET").arg(k).arg(1).query(&mut c).expect("SET");
    }
    let mut seen = BTreeSet::new();
    let mut cursor: u64 = 0;
    let mut moved = false;
    let mut steps = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(20)
            .query(&mut c)
            .expect("SCAN");
        seen.extend(batch);
        cursor = next;
        steps += 1;
        assert!(steps < 10_000, "the walk ends");
        if cursor == 0 {
            break;
        }
        // Part-way through instance 1, its last segment moves to instance 0, walked already.
        if !moved && cursor & 0xff == 1 && cursor >> 24 != 0 {
            let segment = p.topology.table().segments[3].id;
            let m = p.move_segment(segment, 0, Duration::from_secs(30));
            assert_eq!(m.outcome, MigrationOutcome::Completed, "{}", m.detail);
            moved = true;
        }
    }
    assert!(moved, "the move happened during the walk");
    let missing: Vec<&String> = keys.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{} keys missed, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
}

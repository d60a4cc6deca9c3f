//! Telemetry from live traffic: per-segment and per-instance rates, instance health, and
//! a killed instance in the failure history and the view.

use std::time::Duration;

use redis::Commands;
use shardcast::proxy::slot::slot;
use shardcast::topology::SegmentTable;
use shardcast_sdk::types::{FailureKind, InstanceState, Metric};
use shardcast_tests::servers::{Proxy, RedisServer, wait_for};

#[test]
fn segment_and_instance_rates_follow_the_traffic() {
    let mut servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let p = Proxy::start(
        &servers.iter().collect::<Vec<_>>(),
        "tick_ms = 200\n[segments]\ncount = 16",
    );
    let mut c = p.client();
    let table = SegmentTable::uniform(16, &[0, 1]);
    let key = "hot-key";
    let row = table.segment_row(slot(key.as_bytes()));
    let owner = table.owner(slot(key.as_bytes())) as usize;
    // Keep writing until a whole interval has been seen with traffic in it.
    wait_for("the hot segment's rate", Duration::from_secs(20), || {
        for _ in 0..200 {
            let _: () = c.set(key, "v").expect("SET");
        }
        let ops = p.telemetry.segments_latest(Metric::Ops);
        ops.get(row).is_some_and(|&o| o > 100.0)
    });
    let writes = p.telemetry.segments_latest(Metric::Writes);
    let ops = p.telemetry.segments_latest(Metric::Ops);
    assert!(
        writes[row] > 0.0 && writes[row] <= ops[row],
        "SET counts as a write"
    );
    let quiet: f64 = ops
        .iter()
        .enumerate()
        .filter(|(r, _)| *r != row)
        .map(|(_, o)| o)
        .sum();
    assert_eq!(quiet, 0.0, "only the hot segment has traffic: {ops:?}");
    let inst = p.telemetry.instances_latest(Metric::Ops);
    assert!(inst[owner] > 100.0 && inst[1 - owner] == 0.0, "{inst:?}");
    let rtt = p.telemetry.instances_latest(Metric::PingRttUs);
    assert!(
        rtt.iter().all(|r| r.is_finite() && *r > 0.0),
        "PING round trips: {rtt:?}"
    );
    let keys = p.telemetry.instances_latest(Metric::Keys);
    assert_eq!(keys[owner], 1.0, "INFO keyspace: {keys:?}");

    // Kill the other instance: the view shows it down, the history says it crashed.
    let victim = 1 - owner;
    servers[victim].kill();
    wait_for("the crash to be noticed", Duration::from_secs(20), || {
        p.telemetry.view(&p.topology, 0).instances[victim].state == InstanceState::Down
    });
    let view = p.telemetry.view(&p.topology, 0);
    assert!(
        view.failures
            .iter()
            .any(|f| f.instance == victim as u32 && f.kind == FailureKind::Crash)
    );
    assert_eq!(view.instances[owner].state, InstanceState::Active);
    assert!(view.metrics.segments.contains_key(&Metric::Ops));
}

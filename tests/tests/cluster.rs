//! Cluster mode's coordination store against a real etcd: membership by lease (and a
//! lapsed lease noticed when etcd goes away), the segment table written by
//! compare-and-swap on its epoch, and the controller's election with a take-over when the
//! leader's lease ends.

use std::time::Duration;

use shardcast::cluster::{ClusterConfig, Store};
use shardcast::topology::SegmentTable;
use shardcast_sdk::types::{Instance, InstanceState};
use shardcast_tests::etcd::EtcdServer;

fn config(etcd: &EtcdServer, name: &str, ttl: u64) -> ClusterConfig {
    ClusterConfig {
        etcd: vec![etcd.endpoint()],
        name: name.into(),
        prefix: "/shardcast-test".into(),
        lease_ttl_s: ttl,
        request_timeout_ms: 2_000,
        checkpoint_ticks: 50,
    }
}

fn fleet() -> Vec<Instance> {
    (0..3)
        .map(|i| Instance {
            id: i,
            name: format!("redis-{i}"),
            address: format!("127.0.0.1:{}", 7000 + i),
            zone: String::new(),
            state: InstanceState::Active,
            capacity: 1.0,
        })
        .collect()
}

/// A proxy's store, registered with a 2 s lease.
async fn member(etcd: &EtcdServer, name: &str) -> (Store, shardcast::cluster::Membership) {
    let store = Store::connect(&config(etcd, name, 2))
        .await
        .expect("connects");
    let membership = store
        .register(&Default::default())
        .await
        .expect("registers");
    (store, membership)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn the_segment_table_is_written_by_compare_and_swap_on_its_epoch() {
    let etcd = EtcdServer::start();
    runtime().block_on(async {
        let a = Store::connect(&config(&etcd, "a", 5))
            .await
            .expect("a connects");
        let b = Store::connect(&config(&etcd, "b", 5))
            .await
            .expect("b connects");
        let instances = fleet();
        assert!(a.table(&instances).await.expect("read").is_none());
        let first = SegmentTable::uniform(8, &[0, 1, 2]);
        assert!(
            a.swap_table(None, None, &first, &instances)
                .await
                .expect("write")
        );
        // B read nothing too, and is told it lost.
        assert!(
            !b.swap_table(None, None, &first, &instances)
                .await
                .expect("write")
        );
        let seen = b.table(&instances).await.expect("read").expect("a table");
        assert_eq!(seen.epoch, first.epoch);
        assert_eq!(seen.segments, first.segments);
        // B moves a segment from the table it read; A, still on the first, is refused.
        let moved = seen.with_owner(0, 2);
        assert!(
            b.swap_table(Some(seen.epoch), None, &moved, &instances)
                .await
                .expect("write")
        );
        let stale = first.with_owner(1, 0);
        assert!(
            !a.swap_table(Some(first.epoch), None, &stale, &instances)
                .await
                .expect("write")
        );
        let now = a.table(&instances).await.expect("read").expect("a table");
        assert_eq!(now.epoch, moved.epoch);
        assert_eq!(now.segments[0].owner, 2);
    });
}

#[test]
fn one_controller_is_elected_and_another_takes_over_when_its_lease_ends() {
    let etcd = EtcdServer::start();
    runtime().block_on(async {
        let ((a, a_member), (b, b_member)) = (member(&etcd, "a").await, member(&etcd, "b").await);
        let mut members = b.members().await.expect("members");
        members.sort();
        assert_eq!(members, ["a", "b"]);
        let _office = a.campaign(a_member.lease).await.expect("a is elected");
        assert_eq!(b.leader().await.expect("leader").as_deref(), Some("a"));
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move {
                let office = b.campaign(b_member.lease).await.expect("b is elected");
                (office, b_member)
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !waiting.is_finished(),
            "b was elected while a held the office"
        );
        // A dies: its keep-alives stop, and its lease ends within the TTL.
        drop(a_member);
        let (_b_office, _b_member) = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("b takes over within the lease's TTL and a margin")
            .expect("the campaign");
        assert_eq!(a.leader().await.expect("leader").as_deref(), Some("b"));
        assert_eq!(a.members().await.expect("members"), ["b"]);
    });
}

#[test]
fn a_proxy_learns_its_lease_lapsed_when_etcd_is_gone() {
    let mut etcd = EtcdServer::start();
    runtime().block_on(async {
        let a = Store::connect(&config(&etcd, "a", 2))
            .await
            .expect("a connects");
        let mut member = a.register(&Default::default()).await.expect("a registers");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!member.lapsed(), "the lease is kept alive past its TTL");
        etcd.kill();
        tokio::time::timeout(Duration::from_secs(10), member.until_lapsed())
            .await
            .expect("the lapse is noticed within the TTL and a margin");
        etcd.restart();
        let again = a
            .register(&Default::default())
            .await
            .expect("a registers again once etcd is back");
        assert!(!again.lapsed());
        assert_eq!(a.members().await.expect("members"), ["a"]);
    });
}

#[test]
fn a_deposed_controller_cannot_write_the_table_and_every_proxy_follows_the_new_one() {
    let etcd = EtcdServer::start();
    runtime().block_on(async {
        let a = Store::connect(&config(&etcd, "a", 2))
            .await
            .expect("a connects");
        let b = Store::connect(&config(&etcd, "b", 2))
            .await
            .expect("b connects");
        let instances = fleet();
        let first = SegmentTable::uniform(6, &[0, 1, 2]);
        assert!(
            a.swap_table(None, None, &first, &instances)
                .await
                .expect("write")
        );
        // B follows the table: it waits for an epoch past the one it has.
        let following = {
            let b = b.clone();
            let instances = instances.clone();
            tokio::spawn(async move { b.next_table(first.epoch, &instances).await })
        };
        let a_member = a.register(&Default::default()).await.expect("a registers");
        let a_office = a.campaign(a_member.lease).await.expect("a is elected");
        let moved = first.with_owner(0, 1);
        assert!(
            a.swap_table(Some(first.epoch), Some(&a_office), &moved, &instances)
                .await
                .expect("write")
        );
        let seen = tokio::time::timeout(Duration::from_secs(10), following)
            .await
            .expect("b sees the new table")
            .expect("the task")
            .expect("the watch");
        assert_eq!(seen.epoch, moved.epoch);
        assert_eq!(seen.segments[0].owner, 1);
        // A loses its office (its lease ends); B is elected. A, still believing it leads,
        // is refused; B writes.
        drop(a_member);
        let b_member = b.register(&Default::default()).await.expect("b registers");
        let b_office = tokio::time::timeout(Duration::from_secs(10), b.campaign(b_member.lease))
            .await
            .expect("b is elected once a's lease ends")
            .expect("campaign");
        let stale = moved.with_owner(1, 0);
        assert!(
            !a.swap_table(Some(moved.epoch), Some(&a_office), &stale, &instances)
                .await
                .expect("write"),
            "a deposed controller wrote the table"
        );
        let next = moved.with_owner(2, 0);
        assert!(
            b.swap_table(Some(moved.epoch), Some(&b_office), &next, &instances)
                .await
                .expect("write")
        );
        // Already past: returns at once.
        let now = a.next_table(moved.epoch, &instances).await.expect("read");
        assert_eq!(now.epoch, next.epoch);
    });
}

/// Counters with `reads` reads, `writes` writes and `slow` requests in latency bucket 10.
fn taken(reads: u64, writes: u64, slow: u64) -> shardcast::telemetry::counters::Taken {
    let mut t = shardcast::telemetry::counters::Taken {
        reads,
        writes,
        bytes_in: 100 * (reads + writes),
        ..Default::default()
    };
    t.latency[10] = slow;
    t
}

#[test]
fn the_controller_merges_every_live_proxys_counters_for_a_tick() {
    use shardcast::cluster::{Report, merge};
    let etcd = EtcdServer::start();
    runtime().block_on(async {
        let ((a, a_member), (b, b_member)) = (member(&etcd, "a").await, member(&etcd, "b").await);
        let report = |tick, seg: (u64, u64, u64), inst: (u64, u64, u64)| Report {
            tick,
            segments: vec![(3, taken(seg.0, seg.1, seg.2))],
            instances: vec![("redis-1".into(), taken(inst.0, inst.1, inst.2))],
            sessions: Vec::new(),
        };
        a.publish_report(a_member.lease, &report(7, (10, 2, 1), (30, 5, 2)))
            .await
            .expect("a publishes");
        b.publish_report(b_member.lease, &report(7, (4, 6, 3), (8, 1, 0)))
            .await
            .expect("b publishes");
        let reports = a.reports().await.expect("reports");
        let merged = merge(&reports, 7);
        assert_eq!(merged.proxies.len(), 2);
        // Sums worked out by hand: 10+4 reads, 2+6 writes, 1+3 slow requests.
        assert_eq!(merged.segments[&3], taken(14, 8, 4));
        assert_eq!(merged.instances["redis-1"], taken(38, 6, 2));
        // A report from an older tick is left out.
        b.publish_report(b_member.lease, &report(6, (1, 1, 1), (1, 1, 1)))
            .await
            .expect("b publishes late");
        let merged = merge(&a.reports().await.expect("reports"), 7);
        assert_eq!(merged.proxies, ["a"]);
        assert_eq!(merged.segments[&3], taken(10, 2, 1));
        // A proxy that dies stops counting: its report goes with its lease.
        drop(b_member);
        let mut names = Vec::new();
        for _ in 0..100 {
            names = a
                .reports()
                .await
                .expect("reports")
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            if names == ["a"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(names, ["a"], "the dead proxy's counters stay");
    });
}

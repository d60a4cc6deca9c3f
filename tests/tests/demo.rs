//! The demo's story, end to end on real redis-servers at a quarter of its load:
//! `predictive` brings in the standby while a tenant ramps, and empties the instance that
//! degrades before it is killed, with no client request failing.

use shardcast_tests::demo::{self, Plan};

#[test]
fn predictive_empties_the_degrading_instance_before_the_kill_and_no_request_fails() {
    let plan = Plan::small();
    let mut story = Vec::new();
    let s = demo::run(&plan, &mut story).expect("the demo runs");
    let story = String::from_utf8_lossy(&story);
    let victim = format!("redis-{}", demo::VICTIM);
    let drained = s
        .reasons
        .iter()
        .find(|(_, r)| r.starts_with("risk") && r.contains(&format!("on {victim}: draining")));
    assert!(
        drained.is_some(),
        "the policy gave no risk reason for draining {victim}:\n{story}"
    );
    let (empty, killed) = (
        s.empty_at.expect("the victim was emptied"),
        s.killed_at.expect("the victim was killed"),
    );
    assert!(
        empty < killed && s.owned_at_kill == 0,
        "{victim} empty at {empty:.1} s, killed at {killed:.1} s owning {} segments:\n{story}",
        s.owned_at_kill
    );
    assert!(
        empty > plan.sick_at as f64,
        "{victim} was emptied before it degraded, at {empty:.1} s:\n{story}"
    );
    assert_eq!(
        s.errors, 0,
        "client requests failed (last: {:?}):\n{story}",
        s.last_error
    );
    assert!(s.ok > 0, "no request was answered:\n{story}");
    assert!(
        s.scored_sessions.len() >= plan.threads,
        "{} client sessions got a health score; the load opened {} connections",
        s.scored_sessions.len(),
        plan.threads
    );
    assert!(
        s.standby_at.is_some_and(|t| t > plan.ramp.0 as f64),
        "the standby was not brought in during the tenant's ramp ({:?}):\n{story}",
        s.standby_at
    );
    assert_eq!(
        s.layout[demo::VICTIM],
        0,
        "the killed instance owns segments at the end:\n{story}"
    );
}

//! The README tells the truth: its policy example is the `hot-shed` crate, which builds,
//! loads as a planner and decides as described.

use shardcast::engine::{ChurnLimits, PolicyEngine};
use shardcast_sdk::types::Metric;
use shardcast_sdk::view::{Dense, ViewSnapshot};
use shardcast_tests::fixture::render;
use shardcast_tests::{artifacts, component, runtime};

#[test]
fn readme_example_is_the_hot_shed_crate() {
    let readme = include_str!("../../README.md");
    let code = include_str!("../policies/hot-shed/src/lib.rs");
    let marker = "```rust\n// policies/hot-shed/src/lib.rs\n";
    let start = readme.find(marker).expect("README has the example") + marker.len();
    let end = start + readme[start..].find("```").expect("closing fence");
    assert_eq!(
        &readme[start..end],
        code,
        "README example and tests/policies/hot-shed differ"
    );
}

#[test]
fn readme_simulator_example_is_the_hot_shed_test() {
    let readme = include_str!("../../README.md");
    let code = include_str!("../policies/hot-shed/tests/simulator.rs");
    let marker = "```rust\n// policies/hot-shed/tests/simulator.rs\n";
    let start = readme
        .find(marker)
        .expect("README has the simulator example")
        + marker.len();
    let end = start + readme[start..].find("```").expect("closing fence");
    assert_eq!(
        &readme[start..end],
        code,
        "README simulator example and hot-shed's test differ"
    );
}

#[test]
fn readme_example_sheds_the_hottest_segment_to_the_coolest_instance() {
    let mut engine = PolicyEngine::new(runtime(), ChurnLimits::default());
    let version = engine
        .load_planner(&component(artifacts::HOT_SHED), "")
        .expect("loads as a planner");
    assert_eq!(version.world.name(), "planner");
    let mut view = ViewSnapshot::synthetic(3, 6, 1, 1);
    let mut load = Dense::nan(3, 1);
    load.data.copy_from_slice(&[80_000.0, 20_000.0, 10_000.0]);
    view.metrics.instances.insert(Metric::Load, load);
    let mut ops = Dense::nan(6, 1);
    ops.data.copy_from_slice(&[10.0, 0.0, 0.0, 700.0, 0.0, 0.0]);
    view.metrics.segments.insert(Metric::Ops, ops);
    let report = engine.tick(view);
    assert_eq!(render(&report.accepted), vec!["move-segment 3 -> 2"]);
}

#[test]
fn readme_proxy_configuration_is_valid() {
    let readme = include_str!("../../README.md");
    let marker = "```toml\n# shardcast.toml\n";
    let start = readme.find(marker).expect("README has the configuration") + marker.len();
    let end = start + readme[start..].find("```").expect("closing fence");
    let config = shardcast::config::Config::parse(&readme[start..end])
        .expect("the README's configuration parses");
    assert_eq!(config.instances().len(), 3);
    assert!(config.policy.is_some());
}

/// The README's `[auth]`, `[instance_auth]` and `[tls]` examples parse as part of a
/// configuration.
#[test]
fn readme_login_and_tls_configurations_are_valid() {
    let readme = include_str!("../../README.md");
    let base = "listen = \"127.0.0.1:7380\"\n[[instances]]\nname = \"redis-0\"\naddress = \"127.0.0.1:6379\"\n";
    for marker in [
        "```toml\n[auth]\n",
        "```toml\n[instance_auth]",
        "```toml\n[tls]",
    ] {
        let start = readme.find(marker).expect("README has the example") + "```toml\n".len();
        let end = start + readme[start..].find("```").expect("closing fence");
        let config = shardcast::config::Config::parse(&format!("{base}{}", &readme[start..end]))
            .unwrap_or_else(|e| panic!("the README's {marker:?} example: {e}"));
        assert!(
            config.auth.requirepass_file.is_some()
                || config.instance_auth.password_file.is_some()
                || (config.tls.is_some() && config.instance_tls.is_some())
        );
    }
}

#[test]
fn readme_cluster_configuration_is_valid() {
    let readme = include_str!("../../README.md");
    let marker = "```toml\n# proxy-1.toml";
    let start = readme
        .find(marker)
        .expect("README has the cluster configuration")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("closing fence");
    let config = shardcast::config::Config::parse(&readme[start..end])
        .expect("the README's cluster configuration parses");
    let cluster = config.cluster.expect("a [cluster] section");
    assert_eq!(cluster.name, "proxy-1");
    assert_eq!(config.sessions.repository(), "redis://127.0.0.1:6390/");
}

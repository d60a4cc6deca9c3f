//! `predictive`: the component of [`shardcast_policy_kit::predictive`], where its logic and tests
//! live.

pub use shardcast_policy_kit::predictive::Predictive;

shardcast_sdk::export_policy!(Predictive);

//! `failure-guard`: the component of [`shardcast_policy_kit::failure_guard`], where its logic and tests
//! live.

pub use shardcast_policy_kit::failure_guard::FailureGuard;

shardcast_sdk::export_policy!(FailureGuard);

//! `forecast`: the component of [`shardcast_policy_kit::forecast`], where its logic and tests
//! live.

pub use shardcast_policy_kit::forecast::Forecast;

shardcast_sdk::export_policy!(Forecast);

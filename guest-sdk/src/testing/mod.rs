//! The scenario simulator and policy test harness (feature `testing`).
//!
//! Write a `cargo test` that runs a shipped scenario against your policy and asserts on the
//! report:
//!
//! ```
//! use shardcast_sdk::testing::{Scenario, run_native, scenarios};
//!
//! # #[derive(Default)] struct Mine;
//! # impl shardcast_sdk::Policy for Mine { fn describe(&self) -> shardcast_sdk::types::PolicyInfo { shardcast_sdk::info("mine", "0", "") } }
//! # impl shardcast_sdk::Predictor for Mine { fn predict(&mut self, _: &dyn shardcast_sdk::HostView) -> shardcast_sdk::types::Predictions { Default::default() } }
//! # impl shardcast_sdk::Planner for Mine { fn plan(&mut self, _: &dyn shardcast_sdk::HostView, _: &shardcast_sdk::types::Predictions) -> Vec<shardcast_sdk::types::Action> { vec![] } }
//! let mut scenario = Scenario::parse(scenarios::FLASH_CROWD).unwrap();
//! scenario.duration_s = 60; // keep the doc test short
//! let report = run_native(&scenario, Mine, "").unwrap();
//! assert_eq!(report.moves, 0);
//! ```
//!
//! The simulator implements [`HostView`](crate::HostView), so a policy sees in simulation
//! exactly the view it gets from the host; the SDK's validator applies the host's rules.

mod chart;
mod harness;
pub mod recorded;
mod report;
mod rings;
mod scenario;
pub mod scenarios;
mod sim;
mod workload;

pub use chart::svg;
pub use harness::{Decision, Native, Runner, run, run_native, run_native_planner};
pub use report::{DownEvent, Report, THRASH_WINDOW_S, Timeline, Timing, compare_table};
pub use scenario::{
    Diurnal, FailureKind, FailureSpec, Fleet, Hotspot, Ramp, Scenario, Sessions, Slo, Workload,
};
pub use sim::{EPOCH_MS, INSTANCE_METRICS, SEGMENT_METRICS, Simulator, StepOutcome, TIMEOUT_S};

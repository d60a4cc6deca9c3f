//! The logic of shardcast's predictive policies. Each component crate (`failure-guard`,
//! `forecast`, `predictive`) is a thin export of one type from here, so that `predictive`
//! can run the other two's halves in one instance, sharing their state.
//!
//! - [`failure_guard`]: a logistic failure-risk predictor and a planner that drains an
//!   instance before it fails;
//! - [`forecast`]: a Holt load forecaster and a planner that moves segments, or brings in a
//!   standby, before an instance overloads;
//! - [`predictive`]: both, in one policy;
//! - [`sessions`]: each client session's health score;
//! - [`fitted`]: augurs' AutoETS and MSTL, refitted on a schedule, for each instance's
//!   load and the fleet's total;
//! - [`owned`]: each instance's load history as its current segments made it, kept
//!   incrementally for the forecaster.

pub mod failure_guard;
pub mod fitted;
pub mod forecast;
pub mod owned;
pub mod predictive;
pub mod sessions;

//! The shipped policies, linked in natively for comparison with their components.

use shardcast_sdk::{Planner, Predictor};

/// A policy that predicts and plans.
pub trait NativePolicy: Predictor + Planner {}
impl<T: Predictor + Planner> NativePolicy for T {}

/// The native build of the policy called `name`, if it is linked in.
pub fn by_name(name: &str) -> Option<Box<dyn NativePolicy>> {
    match name {
        "static" => Some(Box::new(shardcast_policy_static::Static)),
        "threshold" => Some(Box::new(shardcast_policy_threshold::Threshold::default())),
        "forecast" => Some(Box::new(shardcast_policy_kit::forecast::Forecast::default())),
        "failure-guard" => Some(Box::new(
            shardcast_policy_kit::failure_guard::FailureGuard::default(),
        )),
        "predictive" => Some(Box::new(
            shardcast_policy_kit::predictive::Predictive::default(),
        )),
        _ => None,
    }
}

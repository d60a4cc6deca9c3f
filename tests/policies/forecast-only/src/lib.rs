//! `forecast-only`: a component of world `predictor`, used to check world checks.

use shardcast_sdk::prelude::*;

/// Forecasts nothing, and cannot plan.
#[derive(Default)]
pub struct ForecastOnly;

impl Policy for ForecastOnly {
    fn describe(&self) -> PolicyInfo {
        info(
            "forecast-only",
            env!("CARGO_PKG_VERSION"),
            "A predictor with no planner half.",
        )
    }
}

impl Predictor for ForecastOnly {
    fn predict(&mut self, _host: &dyn HostView) -> Predictions {
        Predictions::empty()
    }
}

shardcast_sdk::export_predictor!(ForecastOnly);

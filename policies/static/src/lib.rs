//! `static`: the baseline policy. It forecasts nothing and never moves anything, so every
//! other policy can be compared with doing nothing.

use shardcast_sdk::prelude::*;

/// The do-nothing policy.
#[derive(Default)]
pub struct Static;

impl Policy for Static {
    fn describe(&self) -> PolicyInfo {
        info(
            "static",
            env!("CARGO_PKG_VERSION"),
            "Baseline: never moves anything.",
        )
    }
}

impl Predictor for Static {
    fn predict(&mut self, _host: &dyn HostView) -> Predictions {
        Predictions::empty()
    }
}

impl Planner for Static {
    fn plan(&mut self, _host: &dyn HostView, _predictions: &Predictions) -> Vec<Action> {
        Vec::new()
    }
}

shardcast_sdk::export_policy!(Static);

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_sdk::view::ViewSnapshot;

    #[test]
    fn never_acts_and_takes_no_settings() {
        let view = ViewSnapshot::synthetic(4, 64, 2, 8);
        let mut policy = Static;
        assert!(policy.configure("").is_ok());
        assert!(policy.configure("x = 1").is_err());
        let p = policy.predict(&view);
        assert!(policy.plan(&view, &p).is_empty());
    }
}

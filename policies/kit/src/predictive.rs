//! `predictive`: the failure guard and the load forecaster in one policy, sharing state.
//!
//! It predicts both failure risk and load. It plans the failure guard's evacuations first:
//! while an instance is being emptied, load moves wait, so the two never pull segments in
//! opposite directions, and no segment goes to an instance the guard drained. Otherwise the forecaster's moves and contingent
//! pool run, and an instance that came back empty is refilled.

use serde::{Deserialize, Serialize};

use shardcast_sdk::prelude::*;

use crate::failure_guard::FailureGuard;
use crate::forecast::Forecast;

#[derive(Serialize, Deserialize)]
struct State {
    failure: Vec<u8>,
    load: Vec<u8>,
}

/// Both halves.
#[derive(Default)]
pub struct Predictive {
    failure: FailureGuard,
    load: Forecast,
}

impl Policy for Predictive {
    fn describe(&self) -> PolicyInfo {
        info(
            "predictive",
            env!("CARGO_PKG_VERSION"),
            "Predictive: drains an instance before it fails, moves load before it overloads.",
        )
    }

    fn configure(&mut self, settings: &str) -> Result<(), String> {
        let (failure, load) = split_sections(settings)?;
        // The forecaster balances load here; the guard only evacuates, unless told otherwise.
        let failure = if failure.contains("refill") {
            failure
        } else {
            format!("refill = false\n{failure}")
        };
        self.failure
            .configure(&failure)
            .map_err(|e| format!("[failure] {e}"))?;
        self.load
            .configure(&load)
            .map_err(|e| format!("[load] {e}"))
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&State {
            failure: self.failure.snapshot(),
            load: self.load.snapshot(),
        })
        .unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let state: State =
            serde_json::from_slice(state).map_err(|e| format!("bad predictive state: {e}"))?;
        self.failure.restore(&state.failure)?;
        self.load.restore(&state.load)
    }
}

impl Predictor for Predictive {
    fn predict(&mut self, host: &dyn HostView) -> Predictions {
        let mut p = self.load.predict(host);
        p.failures = self.failure.predict(host).failures;
        p
    }
}

impl Planner for Predictive {
    fn plan(&mut self, host: &dyn HostView, predictions: &Predictions) -> Vec<Action> {
        // Latency that load explains is the load half's to cure, not a reason to drain;
        // an overloaded instance that is also sick (CPU per operation, errors) is drained.
        let mut overloaded = self.load.overloaded(host);
        overloaded.retain(|&id| !self.failure.sick_beyond_load(id));
        let guard = self.failure.plan_guard(host, predictions, &overloaded);
        let draining = host
            .instances()
            .iter()
            .any(|i| i.state == InstanceState::Draining);
        if !guard.is_empty() || draining {
            return guard;
        }
        // No segment goes to an instance the guard drained or is worried about.
        let mut avoid = self.failure.quarantined(host);
        avoid.extend(self.failure.worried());
        self.load.plan_load(host, predictions, &avoid)
    }
}

/// Split settings into the `[failure]` and `[load]` tables, as TOML text for each half.
fn split_sections(settings: &str) -> Result<(String, String), String> {
    let mut table: toml::Table = toml::from_str(settings)
        .map_err(|e| format!("settings are not valid TOML: {}", e.to_string().trim_end()))?;
    let mut take = |name: &str| -> Result<String, String> {
        match table.remove(name) {
            None => Ok(String::new()),
            Some(toml::Value::Table(t)) => toml::to_string(&t).map_err(|e| e.to_string()),
            Some(_) => Err(format!("invalid settings: `{name}` must be a table")),
        }
    };
    let (failure, load) = (take("failure")?, take("load")?);
    if let Some(key) = table.keys().next() {
        return Err(format!(
            "invalid settings: unknown key `{key}` (settings go in the [failure] and [load] tables)"
        ));
    }
    Ok((failure, load))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_go_to_their_half_and_strays_are_named() {
        let mut p = Predictive::default();
        p.configure("[failure]\nthreshold = 0.7\n[load]\ncapacity = 50000.0\n")
            .expect("valid");
        let err = p.configure("threshold = 0.7").expect_err("top-level key");
        assert!(err.contains("threshold"), "{err}");
        let err = p
            .configure("[load]\ncapacity = -1.0")
            .expect_err("bad value");
        assert!(
            err.starts_with("[load]") && err.contains("capacity"),
            "{err}"
        );
    }
}

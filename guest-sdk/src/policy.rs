//! The traits a policy implements: [`Policy`] for identity and settings, then
//! [`Predictor`], [`Planner`] or both for the work.
//!
//! They are object-safe, so the host can hold a native policy as `Box<dyn Planner>` and run
//! it beside the compiled one.

use crate::host_view::HostView;
use crate::types::{Action, PolicyInfo, Predictions};

/// Identity, settings and state hand-over, shared by every policy.
pub trait Policy {
    /// Name, version and one-sentence summary.
    fn describe(&self) -> PolicyInfo;

    /// Apply settings given as TOML (possibly empty). Return an error naming the offending
    /// key when they are invalid; [`crate::settings::parse`] does this for serde types.
    fn configure(&mut self, settings: &str) -> Result<(), String> {
        crate::settings::reject_unless_empty(settings)
    }

    /// Learned state to hand to a successor version. Empty by default.
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Take over a predecessor's state. Ignores it by default.
    fn restore(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// Forecasts load and failure risk.
pub trait Predictor: Policy {
    /// Forecast from the current view.
    fn predict(&mut self, host: &dyn HostView) -> Predictions;
}

/// Decides what to migrate.
pub trait Planner: Policy {
    /// Decide what to do given this tick's predictions. The host validates every action.
    fn plan(&mut self, host: &dyn HostView, predictions: &Predictions) -> Vec<Action>;
}

/// A convenience for building [`PolicyInfo`] from `&str`s.
pub fn info(name: &str, version: &str, summary: &str) -> PolicyInfo {
    PolicyInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        summary: summary.to_owned(),
    }
}

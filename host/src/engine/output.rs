//! Sanity checks on what a policy returns, before anything else looks at it.
//!
//! Output that no sane policy produces (more items than the limits allow, NaN or infinite
//! numbers, probabilities outside [0, 1], forecasts about things that do not exist) is a
//! fault of the policy, not a set of actions to reject one by one.

use std::collections::HashSet;

use shardcast_sdk::HostView;
use shardcast_sdk::types::{Action, Predictions, Scope};

use super::limits::Limits;

/// Check a `predict` result; the error says what is wrong with it.
pub fn check_predictions(
    p: &Predictions,
    view: &dyn HostView,
    limits: &Limits,
) -> Result<(), String> {
    let total = p.load.len() + p.failures.len() + p.sessions.len();
    if total > limits.max_forecasts as usize {
        return Err(format!(
            "returned {total} forecasts, more than the limit of {} (raise [limits] max_forecasts)",
            limits.max_forecasts
        ));
    }
    let ids = Ids::of(view, p);
    for (i, f) in p.load.iter().enumerate() {
        let numbers = [f.expected, f.low, f.high, f.confidence];
        if numbers.iter().any(|x| !x.is_finite()) {
            return Err(format!("load forecast #{i} has a NaN or infinite value"));
        }
        if f.low > f.high {
            return Err(format!(
                "load forecast #{i} has low {} above high {}",
                f.low, f.high
            ));
        }
        if !(f.confidence > 0.0 && f.confidence < 1.0) {
            return Err(format!(
                "load forecast #{i} has confidence {} outside (0, 1)",
                f.confidence
            ));
        }
        if !(f.low <= f.expected && f.expected <= f.high) {
            return Err(format!(
                "load forecast #{i} expects {} outside its own interval [{}, {}]",
                f.expected, f.low, f.high
            ));
        }
        let known = match f.scope {
            Scope::Instance(id) => ids.instances.contains(&id),
            Scope::Segment(id) => ids.segments.contains(&id),
            Scope::Session(id) => ids.sessions.contains(&id),
        };
        if !known {
            return Err(format!(
                "load forecast #{i} is about {:?}, which does not exist",
                f.scope
            ));
        }
    }
    for (i, f) in p.failures.iter().enumerate() {
        if !f.probability.is_finite() || !(0.0..=1.0).contains(&f.probability) {
            return Err(format!(
                "failure risk #{i} has probability {} outside [0, 1]",
                f.probability
            ));
        }
        if !ids.instances.contains(&f.instance) {
            return Err(format!(
                "failure risk #{i} is about instance {}, which does not exist",
                f.instance
            ));
        }
    }
    for (i, h) in p.sessions.iter().enumerate() {
        if !h.activity.is_finite() || h.activity < 0.0 {
            return Err(format!(
                "session health #{i} has activity {} (must be a number, at least 0)",
                h.activity
            ));
        }
        for (name, x) in [("churn", h.churn), ("health", h.health)] {
            if !x.is_finite() || !(0.0..=1.0).contains(&x) {
                return Err(format!("session health #{i} has {name} {x} outside [0, 1]"));
            }
        }
        if !ids.sessions.contains(&h.session) {
            return Err(format!(
                "session health #{i} is about session {}, which does not exist",
                h.session
            ));
        }
    }
    Ok(())
}

/// The ids the predictions may name, gathered only for the scopes they use.
#[derive(Default)]
struct Ids {
    instances: HashSet<u32>,
    segments: HashSet<u32>,
    sessions: HashSet<u64>,
}

impl Ids {
    fn of(view: &dyn HostView, p: &Predictions) -> Self {
        let mut ids = Ids::default();
        if p.load.is_empty() && p.failures.is_empty() && p.sessions.is_empty() {
            return ids;
        }
        ids.instances = view.instances().iter().map(|i| i.id).collect();
        if p.load.iter().any(|f| matches!(f.scope, Scope::Segment(_))) {
            ids.segments = view.segment_columns().ids.into_iter().collect();
        }
        if !p.sessions.is_empty() || p.load.iter().any(|f| matches!(f.scope, Scope::Session(_))) {
            ids.sessions = view.sessions().iter().map(|s| s.id).collect();
        }
        ids
    }
}

/// Check a `plan` result's size; its content is the validator's business.
pub fn check_actions(actions: &[Action], limits: &Limits) -> Result<(), String> {
    if actions.len() > limits.max_actions as usize {
        return Err(format!(
            "returned {} actions, more than the limit of {} (raise [limits] max_actions)",
            actions.len(),
            limits.max_actions
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_sdk::types::{FailureRisk, LoadForecast, Metric, SessionHealth};
    use shardcast_sdk::view::ViewSnapshot;

    fn forecast(scope: Scope, expected: f64) -> LoadForecast {
        LoadForecast {
            scope,
            metric: Metric::Ops,
            horizon_ms: 1000,
            expected,
            low: expected - 1.0,
            high: expected + 1.0,
            confidence: 0.9,
        }
    }

    #[test]
    fn flags_nan_unknown_ids_and_bad_probabilities() {
        let view = ViewSnapshot::synthetic(2, 4, 1, 2);
        let limits = Limits::default();
        let ok = Predictions {
            load: vec![forecast(Scope::Segment(3), 5.0)],
            failures: vec![FailureRisk {
                instance: 1,
                horizon_ms: 1,
                probability: 0.5,
            }],
            sessions: Vec::new(),
        };
        assert!(check_predictions(&ok, &view, &limits).is_ok());
        let mut nan = ok.clone();
        nan.load[0].expected = f64::NAN;
        assert!(
            check_predictions(&nan, &view, &limits)
                .unwrap_err()
                .contains("NaN")
        );
        let mut unknown = ok.clone();
        unknown.load[0].scope = Scope::Segment(99);
        assert!(
            check_predictions(&unknown, &view, &limits)
                .unwrap_err()
                .contains("does not exist")
        );
        let mut confidence = ok.clone();
        confidence.load[0].confidence = 1.5;
        let err = check_predictions(&confidence, &view, &limits).unwrap_err();
        assert!(
            err.contains("confidence 1.5") && !err.contains("low"),
            "{err}"
        );
        let mut inverted = ok.clone();
        inverted.load[0].low = 9.0;
        let err = check_predictions(&inverted, &view, &limits).unwrap_err();
        assert!(err.contains("low 9 above high 6"), "{err}");
        let mut prob = ok.clone();
        prob.failures[0].probability = 1.5;
        assert!(
            check_predictions(&prob, &view, &limits)
                .unwrap_err()
                .contains("outside [0, 1]")
        );
    }

    #[test]
    fn flags_session_health_out_of_range_or_about_no_session() {
        // Sessions 1 to 7.
        let view = ViewSnapshot::synthetic(2, 4, 1, 2).with_sessions(7);
        let limits = Limits::default();
        let health = |session, activity, churn, health| Predictions {
            sessions: vec![SessionHealth {
                session,
                horizon_ms: 30_000,
                activity,
                churn,
                health,
            }],
            ..Predictions::empty()
        };
        assert!(check_predictions(&health(7, 12.0, 0.2, 0.8), &view, &limits).is_ok());
        for (bad, says) in [
            (health(8, 12.0, 0.2, 0.8), "session 8, which does not exist"),
            (health(7, 12.0, 1.5, 0.8), "churn 1.5 outside [0, 1]"),
            (health(7, 12.0, 0.2, f64::NAN), "health NaN outside [0, 1]"),
            (health(7, -1.0, 0.2, 0.8), "activity -1"),
        ] {
            let err = check_predictions(&bad, &view, &limits).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn flags_too_many_actions() {
        let limits = Limits {
            max_actions: 2,
            ..Limits::default()
        };
        let actions = vec![Action::DrainInstance(0); 3];
        assert!(
            check_actions(&actions, &limits)
                .unwrap_err()
                .contains("3 actions")
        );
        assert!(check_actions(&actions[..2], &limits).is_ok());
    }
}

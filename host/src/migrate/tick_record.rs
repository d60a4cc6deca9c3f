//! A tick's line in the decision log, bounded in size whatever the policy returned.
//!
//! Small predictions are recorded whole. Past [`MAX_ITEMS`] forecasts, the line keeps the
//! instance forecasts and failure risks (at most [`MAX_ITEMS`] of each) and counts what it
//! left out; lists of actions, rejections and faults are cut the same way. A policy that
//! returns a quarter of a million forecasts per tick thus writes a line of a few kilobytes.

use serde::Serialize;
use shardcast_sdk::types::{Action, LoadForecast, Predictions, Rejection, Scope};

use crate::engine::{ShadowTick, TickReport};

/// Most items of each list a tick line records.
pub const MAX_ITEMS: usize = 64;

/// Forecasts and other items a tick line left out, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cut {
    /// Segment-scope load forecasts.
    pub segment_forecasts: usize,
    /// Session-scope load forecasts.
    pub session_forecasts: usize,
    /// Instance-scope load forecasts past the cap.
    pub instance_forecasts: usize,
    /// Failure risks past the cap.
    pub failures: usize,
    /// Session health scores past the cap.
    pub sessions: usize,
    /// Accepted actions past the cap.
    pub accepted: usize,
    /// Rejections past the cap.
    pub rejected: usize,
    /// Faults past the cap.
    pub faults: usize,
    /// Policy notes past the cap.
    pub notes: usize,
}

impl Cut {
    fn is_empty(&self) -> bool {
        *self == Cut::default()
    }
}

/// What a tick line holds.
#[derive(Serialize)]
pub struct TickRecord<'a> {
    tick: u64,
    predictor: &'a Option<String>,
    planner: &'a Option<String>,
    predictions: Predictions,
    accepted: &'a [Action],
    rejected: &'a [Rejection],
    faults: &'a [String],
    policy_us: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    notes: &'a [String],
    #[serde(skip_serializing_if = "Cut::is_empty")]
    cut: Cut,
}

/// A shadow candidate's line in the decision log, bounded like a tick's.
#[derive(Serialize)]
pub struct ShadowRecord<'a> {
    tick: u64,
    policy: &'a str,
    agrees: bool,
    predictions: Predictions,
    accepted: &'a [Action],
    rejected: &'a [Rejection],
    faults: &'a [String],
    #[serde(skip_serializing_if = "Cut::is_empty")]
    cut: Cut,
}

fn capped<T>(items: &[T], cut: &mut usize) -> usize {
    *cut = items.len().saturating_sub(MAX_ITEMS);
    items.len().min(MAX_ITEMS)
}

impl<'a> TickRecord<'a> {
    /// The bounded record of `report`.
    pub fn of(report: &'a TickReport) -> Self {
        let mut cut = Cut::default();
        let predictions = bounded(&report.predictions, &mut cut);
        TickRecord {
            tick: report.tick,
            predictor: &report.predictor,
            planner: &report.planner,
            predictions,
            accepted: &report.accepted[..capped(&report.accepted, &mut cut.accepted)],
            rejected: &report.rejected[..capped(&report.rejected, &mut cut.rejected)],
            faults: &report.faults[..capped(&report.faults, &mut cut.faults)],
            policy_us: report.policy_us,
            notes: &report.notes[..capped(&report.notes, &mut cut.notes)],
            cut,
        }
    }
}

impl<'a> ShadowRecord<'a> {
    /// The bounded record of `s`.
    pub fn of(s: &'a ShadowTick) -> Self {
        let mut cut = Cut::default();
        ShadowRecord {
            tick: s.tick,
            policy: &s.policy,
            agrees: s.agrees,
            predictions: bounded(&s.predictions, &mut cut),
            accepted: &s.accepted[..capped(&s.accepted, &mut cut.accepted)],
            rejected: &s.rejected[..capped(&s.rejected, &mut cut.rejected)],
            faults: &s.faults[..capped(&s.faults, &mut cut.faults)],
            cut,
        }
    }
}

/// `p` whole when it is small; else its instance forecasts and failure risks up to the
/// cap, with what was left out counted in `cut`.
fn bounded(p: &Predictions, cut: &mut Cut) -> Predictions {
    {
        if p.load.len() + p.failures.len() + p.sessions.len() <= MAX_ITEMS {
            p.clone()
        } else {
            let mut load: Vec<LoadForecast> = Vec::new();
            for f in &p.load {
                match f.scope {
                    Scope::Segment(_) => cut.segment_forecasts += 1,
                    Scope::Session(_) => cut.session_forecasts += 1,
                    Scope::Instance(_) if load.len() < MAX_ITEMS => load.push(*f),
                    Scope::Instance(_) => cut.instance_forecasts += 1,
                }
            }
            let failures = p.failures[..capped(&p.failures, &mut cut.failures)].to_vec();
            let sessions = p.sessions[..capped(&p.sessions, &mut cut.sessions)].to_vec();
            Predictions {
                load,
                failures,
                sessions,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_sdk::types::Metric;

    fn forecast(scope: Scope) -> LoadForecast {
        LoadForecast {
            scope,
            metric: Metric::Ops,
            horizon_ms: 1000,
            expected: 1.0,
            low: 0.0,
            high: 2.0,
            confidence: 0.9,
        }
    }

    #[test]
    fn notes_are_kept_up_to_the_cap_and_the_rest_counted() {
        let report = TickReport {
            notes: (0..100).map(|i| format!("note {i}")).collect(),
            ..TickReport::default()
        };
        let v = serde_json::to_value(TickRecord::of(&report)).expect("serializes");
        assert_eq!(v["notes"].as_array().map(Vec::len), Some(MAX_ITEMS));
        assert_eq!(v["notes"][0], "note 0");
        assert_eq!(v["cut"]["notes"], 100 - MAX_ITEMS);
        let quiet = serde_json::to_value(TickRecord::of(&TickReport::default())).expect("json");
        assert!(quiet.get("notes").is_none(), "no notes, no key: {quiet}");
    }

    #[test]
    fn a_flood_of_forecasts_becomes_a_short_line() {
        let mut report = TickReport::default();
        report.predictions.load = (0..262_144)
            .map(|i| forecast(Scope::Segment(i % 16_384)))
            .chain((0..3).map(|i| forecast(Scope::Instance(i))))
            .collect();
        let line = serde_json::to_string(&TickRecord::of(&report)).expect("serializes");
        assert!(line.len() < 4096, "{} bytes", line.len());
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["cut"]["segment_forecasts"], 262_144);
        assert_eq!(v["predictions"]["load"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn small_predictions_are_recorded_whole() {
        let mut report = TickReport::default();
        report.predictions.load = vec![forecast(Scope::Segment(7)); 10];
        let v = serde_json::to_value(TickRecord::of(&report)).expect("json");
        assert_eq!(v["predictions"]["load"].as_array().map(Vec::len), Some(10));
        assert!(v.get("cut").is_none());
    }
}

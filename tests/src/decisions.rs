//! Reading shardcast's decision log (`state_dir/decisions.jsonl`) from outside the process,
//! as the tests and the demo do.

use std::path::Path;

use shardcast_sdk::types::{LoadForecast, Migration, MigrationOutcome, Predictions};

/// The last tick line of the log at `log`, if there is one.
pub fn last_tick(log: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["kind"] == "tick").then_some(v)
    })
}

/// The `name@version` of the planner that answered the last tick.
pub fn last_planner(log: &Path) -> Option<String> {
    last_tick(log)?["planner"].as_str().map(str::to_owned)
}

/// The load forecasts of the last tick.
pub fn last_forecasts(log: &Path) -> Vec<LoadForecast> {
    last_tick(log)
        .and_then(|t| serde_json::from_value::<Predictions>(t["predictions"].clone()).ok())
        .map(|p| p.load)
        .unwrap_or_default()
}

/// Migrations the log at `log` records as completed.
pub fn completed_moves(log: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(log) else {
        return 0;
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "outcome")
        .filter_map(|v| serde_json::from_value::<Migration>(v["migration"].clone()).ok())
        .filter(|m| m.outcome == MigrationOutcome::Completed)
        .count()
}

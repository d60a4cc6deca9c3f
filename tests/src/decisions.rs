//! Reading shardcast's decision log (`state_dir/decisions.jsonl`) from outside the process,
//! as the tests and the demo do.

use std::path::Path;

use shardcast_sdk::types::{LoadForecast, Migration, MigrationOutcome, Predictions};

/// Reads the tick lines a decision log gains, as they are written.
pub struct Tail {
    path: std::path::PathBuf,
    offset: u64,
}

impl Tail {
    /// Follow the log at `path` from its start (it need not exist yet).
    pub fn new(path: &Path) -> Self {
        Tail {
            path: path.to_owned(),
            offset: 0,
        }
    }

    /// The whole tick lines written since the last call.
    pub fn ticks(&mut self) -> Vec<serde_json::Value> {
        use std::io::{Read, Seek, SeekFrom};
        let mut text = String::new();
        let read = std::fs::File::open(&self.path).and_then(|mut f| {
            if f.metadata()?.len() < self.offset {
                // Rotated: the new file starts over.
                self.offset = 0;
            }
            f.seek(SeekFrom::Start(self.offset))?;
            f.read_to_string(&mut text)
        });
        if read.is_err() {
            return Vec::new();
        }
        // Only whole lines: a line being written is read next time.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        self.offset += whole as u64;
        text[..whole]
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "tick")
            .collect()
    }
}

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

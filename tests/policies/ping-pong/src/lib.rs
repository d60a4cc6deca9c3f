//! `ping-pong`: keeps moving the listed segments to the next active instance, one move
//! per segment whenever it is not already migrating. The chaos tests use it to move
//! segments back and forth while clients write and processes are killed.

use serde::Deserialize;
use shardcast_sdk::prelude::*;

/// Settings: which segments to keep moving.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    segments: Vec<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { segments: vec![0] }
    }
}

/// Moves segments back and forth.
#[derive(Default)]
pub struct PingPong {
    settings: Settings,
}

impl Policy for PingPong {
    fn describe(&self) -> PolicyInfo {
        info(
            "ping-pong",
            env!("CARGO_PKG_VERSION"),
            "Moves the listed segments to the next active instance, again and again.",
        )
    }

    fn configure(&mut self, settings: &str) -> Result<(), String> {
        self.settings = shardcast_sdk::settings::parse(settings)?;
        Ok(())
    }
}

impl Planner for PingPong {
    fn plan(&mut self, host: &dyn HostView, _predictions: &Predictions) -> Vec<Action> {
        let active: Vec<InstanceId> = host
            .instances()
            .iter()
            .filter(|i| i.state == InstanceState::Active)
            .map(|i| i.id)
            .collect();
        let busy: Vec<SegmentId> = host
            .migrations()
            .iter()
            .filter(|m| m.outcome == MigrationOutcome::Running)
            .map(|m| m.segment)
            .collect();
        host.segments()
            .iter()
            .filter(|s| self.settings.segments.contains(&s.id) && !busy.contains(&s.id))
            .filter_map(|s| {
                let at = active.iter().position(|&i| i == s.owner)?;
                let target = active[(at + 1) % active.len()];
                (target != s.owner).then_some(Action::MoveSegment(MoveSegment {
                    segment: s.id,
                    target,
                }))
            })
            .collect()
    }
}

shardcast_sdk::export_planner!(PingPong);

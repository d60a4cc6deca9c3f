//! `ping-pong`: keeps moving the listed segments to the next active instance, one move
//! per segment whenever it is not already migrating. The chaos tests use it to move
//! segments back and forth while clients write and processes are killed. It can also
//! activate listed standby instances, drain listed active ones, and split listed segments
//! while they are wider than a given number of slots.

use serde::Deserialize;
use shardcast_sdk::prelude::*;

/// Settings: which segments to keep moving, and the table chores to do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    segments: Vec<u32>,
    /// Instances to activate while they are standby.
    activate: Vec<u32>,
    /// Instances to drain while they are active.
    drain: Vec<u32>,
    /// Segments to split in two while they span more than `split_above` slots.
    split: Vec<u32>,
    split_above: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            segments: vec![0],
            activate: Vec::new(),
            drain: Vec::new(),
            split: Vec::new(),
            split_above: u32::MAX,
        }
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
        let mut actions: Vec<Action> = host
            .instances()
            .iter()
            .filter_map(|i| match i.state {
                InstanceState::Standby if self.settings.activate.contains(&i.id) => {
                    Some(Action::ActivateStandby(i.id))
                }
                InstanceState::Active if self.settings.drain.contains(&i.id) => {
                    Some(Action::DrainInstance(i.id))
                }
                _ => None,
            })
            .collect();
        actions.extend(
            host.segments()
                .iter()
                .filter(|s| self.settings.split.contains(&s.id) && !busy.contains(&s.id))
                .filter(|s| s.slot_count() > self.settings.split_above)
                .map(|s| {
                    Action::SplitSegment(SplitSegment {
                        segment: s.id,
                        at_slot: s.slot_start + (s.slot_end - s.slot_start).div_ceil(2),
                    })
                }),
        );
        actions.extend(
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
                }),
        );
        actions
    }
}

shardcast_sdk::export_planner!(PingPong);

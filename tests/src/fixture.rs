//! Decision fixtures: a test case is data (cluster, settings, expected actions), evaluated
//! in one call natively and through the real engine.

use serde::Deserialize;
use shardcast_sdk::types::{Action, InstanceState, Metric};
use shardcast_sdk::view::{Dense, ViewSnapshot};
use shardcast_sdk::{Planner, Predictor};

/// The file of cases.
#[derive(Debug, Deserialize)]
pub struct Cases {
    /// Every case.
    pub case: Vec<Case>,
}

/// One instance of a case.
#[derive(Debug, Deserialize)]
pub struct InstanceFixture {
    /// Load series, oldest first.
    pub load: Vec<f64>,
    /// `active` (default), `standby`, `draining` or `down`.
    #[serde(default)]
    pub state: Option<String>,
}

/// One case.
#[derive(Debug, Deserialize)]
pub struct Case {
    /// What the case shows.
    pub name: String,
    /// `static` or `threshold`.
    pub policy: String,
    /// Settings TOML.
    pub settings: String,
    /// Identical ticks to run; the last one's actions are checked.
    pub ticks: u64,
    /// The instances.
    pub instances: Vec<InstanceFixture>,
    /// Latest ops per segment.
    pub segment_ops: Vec<f64>,
    /// Expected actions, as `Action::describe` renders them.
    pub expect: Vec<String>,
}

impl Case {
    /// The view of tick `tick`.
    pub fn view(&self, tick: u64) -> ViewSnapshot {
        let points = self
            .instances
            .iter()
            .map(|i| i.load.len())
            .max()
            .unwrap_or(1);
        let mut v =
            ViewSnapshot::synthetic(self.instances.len(), self.segment_ops.len(), 0, points);
        v.tick = tick;
        let mut load = Dense::nan(self.instances.len(), points);
        for (row, fixture) in self.instances.iter().enumerate() {
            let dst = load.row_mut(row);
            dst[points - fixture.load.len()..].copy_from_slice(&fixture.load);
            v.instances[row].state = match fixture.state.as_deref() {
                None | Some("active") => InstanceState::Active,
                Some("standby") => InstanceState::Standby,
                Some("draining") => InstanceState::Draining,
                Some("down") => InstanceState::Down,
                Some(other) => panic!("case {:?}: unknown state {other:?}", self.name),
            };
        }
        v.metrics.instances.insert(Metric::Load, load);
        let mut ops = Dense::nan(self.segment_ops.len(), 1);
        ops.data.copy_from_slice(&self.segment_ops);
        v.metrics.segments.insert(Metric::Ops, ops);
        v.reindex();
        v
    }

    /// Run the case against a native policy; returns the last tick's actions.
    pub fn run_native<P: Predictor + Planner>(&self, mut policy: P) -> Vec<String> {
        policy
            .configure(&self.settings)
            .expect("fixture settings are valid");
        let mut last = Vec::new();
        for tick in 1..=self.ticks {
            let view = self.view(tick);
            let predictions = policy.predict(&view);
            last = policy.plan(&view, &predictions);
        }
        render(&last)
    }
}

/// Render actions as `Action::describe` does.
pub fn render(actions: &[Action]) -> Vec<String> {
    actions.iter().map(Action::describe).collect()
}

/// Load the shipped decision fixtures.
pub fn cases() -> Vec<Case> {
    let text = include_str!("../fixtures/decisions.toml");
    toml::from_str::<Cases>(text)
        .expect("fixtures/decisions.toml parses")
        .case
}

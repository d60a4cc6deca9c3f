//! Running a scenario against a policy: the simulator plays the host.
//!
//! Each tick the simulator steps, the policy decides on its view (through a [`Runner`]:
//! natively, or compiled through the real engine on the host side), the SDK's validator
//! checks the actions exactly as the host does, and the accepted ones are applied. The same
//! scenario, seed and policy give the same [`Report`] whichever runner is used.

use std::sync::Arc;
use std::time::Instant;

use super::report::{Accumulator, Report};
use super::scenario::Scenario;
use super::sim::Simulator;
use crate::policy::{Planner, Predictor};
use crate::types::{Action, Predictions};
use crate::validate::{MoveHistory, validate};

/// What a policy decided in one tick.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// Its predictions.
    pub predictions: Predictions,
    /// Its actions, before validation.
    pub actions: Vec<Action>,
    /// Faults contained while deciding (compiled policies).
    pub faults: Vec<String>,
}

/// Runs a policy on a view. Implementations must not keep the view past `decide`.
pub trait Runner {
    /// `name@version` of the policy.
    fn label(&mut self) -> String;
    /// Predict and plan on `view`.
    fn decide(&mut self, view: Arc<Simulator>) -> Decision;
}

/// A policy run natively, in this process.
pub struct Native {
    label: String,
    decide: Box<dyn FnMut(&Simulator) -> Decision>,
}

impl Native {
    /// A policy that predicts and plans, configured with `settings` (TOML).
    pub fn policy<P: Predictor + Planner + 'static>(
        mut policy: P,
        settings: &str,
    ) -> Result<Self, String> {
        policy.configure(settings)?;
        Ok(Native {
            label: label(&policy),
            decide: Box::new(move |view| {
                let predictions = policy.predict(view);
                let actions = policy.plan(view, &predictions);
                Decision {
                    predictions,
                    actions,
                    faults: Vec::new(),
                }
            }),
        })
    }

    /// A planner alone: it plans on empty predictions.
    pub fn planner<P: Planner + 'static>(mut policy: P, settings: &str) -> Result<Self, String> {
        policy.configure(settings)?;
        Ok(Native {
            label: label(&policy),
            decide: Box::new(move |view| Decision {
                actions: policy.plan(view, &Predictions::empty()),
                ..Decision::default()
            }),
        })
    }
}

fn label(policy: &dyn crate::policy::Policy) -> String {
    let info = policy.describe();
    format!("{}@{}", info.name, info.version)
}

impl Runner for Native {
    fn label(&mut self) -> String {
        self.label.clone()
    }
    fn decide(&mut self, view: Arc<Simulator>) -> Decision {
        (self.decide)(&view)
    }
}

/// Run `scenario` against the policy behind `runner`.
pub fn run(scenario: &Scenario, runner: &mut dyn Runner) -> Report {
    let mut sim = Arc::new(Simulator::new(scenario));
    let mut acc = Accumulator::new(scenario, runner.label());
    acc.set_owners(sim.segments_now().map(|s| (s.id, s.owner)));
    let mut history = MoveHistory::default();
    for tick in 0..scenario.ticks() {
        let state = Arc::make_mut(&mut sim);
        let out = state.step();
        acc.step(tick, state.t(), &out);
        let started = Instant::now();
        let decision = runner.decide(sim.clone());
        let policy_us = started.elapsed().as_secs_f64() * 1e6;
        let verdict = validate(decision.actions, &*sim, &scenario.limits, &mut history);
        let state = Arc::make_mut(&mut sim);
        acc.decision(
            state.t(),
            &decision.predictions,
            &verdict,
            decision.faults.len(),
            policy_us,
        );
        state.apply(&verdict.accepted);
        state.set_rejections(verdict.rejected);
    }
    acc.finish()
}

/// Run `scenario` against a native policy configured with `settings`.
pub fn run_native<P: Predictor + Planner + 'static>(
    scenario: &Scenario,
    policy: P,
    settings: &str,
) -> Result<Report, String> {
    Ok(run(scenario, &mut Native::policy(policy, settings)?))
}

/// Run `scenario` against a native planner (no predictor) configured with `settings`.
pub fn run_native_planner<P: Planner + 'static>(
    scenario: &Scenario,
    policy: P,
    settings: &str,
) -> Result<Report, String> {
    Ok(run(scenario, &mut Native::planner(policy, settings)?))
}

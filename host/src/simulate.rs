//! Compiled policies in the SDK's simulator, through the real engine.
//!
//! [`WasmRunner`] is the simulator's [`Runner`] for a component: each tick's view goes to
//! the policy through the same slot, limits, sanity checks and containment as in
//! production. With the same scenario and seed it produces the same report as the native
//! build of the policy (timing aside).

use std::sync::Arc;

use shardcast_sdk::testing::{Decision, EPOCH_MS, Runner, Scenario, Simulator};

use crate::engine::output::{check_actions, check_predictions};
use crate::engine::{Determinism, Error, Role, Runtime, RuntimeOptions, SharedView, Slot};

/// A compiled policy run by the simulator.
pub struct WasmRunner {
    slot: Slot,
}

impl WasmRunner {
    /// Load `bytes` (world `planner` or `policy`) with `settings`, on a runtime whose
    /// clock and randomness are fixed by the scenario.
    pub fn load(scenario: &Scenario, bytes: &[u8], settings: &str) -> Result<Self, Error> {
        let runtime = Runtime::new(RuntimeOptions {
            deterministic: Some(Determinism {
                clock_ms: EPOCH_MS,
                seed: scenario.seed,
            }),
            pool_instances: 4,
            ..RuntimeOptions::default()
        })?;
        Self::with_runtime(runtime, bytes, settings)
    }

    /// Load on an existing runtime.
    pub fn with_runtime(
        runtime: Arc<Runtime>,
        bytes: &[u8],
        settings: &str,
    ) -> Result<Self, Error> {
        let mut slot = Slot::new(runtime, Role::Planner);
        slot.load(bytes, settings)?;
        Ok(WasmRunner { slot })
    }
}

impl Runner for WasmRunner {
    fn label(&mut self) -> String {
        self.slot.active().map(|v| v.label()).unwrap_or_default()
    }

    fn decide(&mut self, view: Arc<Simulator>) -> Decision {
        self.slot.begin_tick();
        let shared: SharedView = view;
        let (predictions, mut faults) = self
            .slot
            .predict(&shared, |v, p| check_predictions(p, &*shared, &v.limits));
        let (actions, more) = self
            .slot
            .plan(&shared, &predictions, |v, a| check_actions(a, &v.limits));
        faults.extend(more);
        Decision {
            predictions,
            actions,
            faults: faults.iter().map(ToString::to_string).collect(),
        }
    }
}

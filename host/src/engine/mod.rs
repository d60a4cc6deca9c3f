//! The policy engine: runs sandboxed WebAssembly policies against each tick's view.
//!
//! Each tick the engine adopts any pending hot swap, runs the predictor slot, then the
//! planner slot with the predictions, checks the output for sanity and validates every
//! action against the view. It returns a [`TickReport`]; executing the accepted actions is
//! the caller's business. Rejections are fed back to the policy in the next tick's view.
//!
//! Everything here is synchronous and CPU-bound: run it on a dedicated thread
//! ([`tick_loop`]) or `spawn_blocking`, never on an async worker.

mod cache;
mod ctx;
mod error;
pub mod ledger;
mod limits;
mod nonblocking;
pub mod output;
mod runtime;
pub mod shadow;
mod slot;
mod stdio;
pub mod text;
pub mod tick_loop;
mod version;
mod voice;
pub mod watch;
mod wit;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use shardcast_sdk::types::{Action, Predictions, Rejection};
use shardcast_sdk::view::ViewSnapshot;

pub use cache::{ArtifactCache, sha256_hex};
pub use ctx::SharedView;
pub use error::{Error, Fault, FaultKind};
pub use ledger::{Ledger, VersionStats};
pub use limits::{DEFAULT_DEADLINE_MS, DEFAULT_MEMORY_MIB, Limits, split_settings};
pub use runtime::{Determinism, Runtime, RuntimeOptions};
pub use shadow::{ShadowHandle, ShadowStatus, ShadowTick};
pub use shardcast_sdk::validate::{ChurnLimits, Facts, MoveHistory, Verdict, validate};
pub use slot::{Checkpoint, MAX_CONSECUTIVE_FAULTS, Slot, SlotStatus, SwapHandle};
pub use version::{LiveInstance, PolicyVersion, Role, Source, World, version_id, world_of};

/// Rejections written to the log one by one per tick; the rest are counted.
const LOGGED_REJECTIONS: usize = 16;

/// What one tick produced.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TickReport {
    /// The tick number.
    pub tick: u64,
    /// `name@version` of the predictor that answered, if any.
    pub predictor: Option<String>,
    /// `name@version` of the planner that answered, if any.
    pub planner: Option<String>,
    /// The predictions.
    pub predictions: Predictions,
    /// Actions the validator accepted.
    pub accepted: Vec<Action>,
    /// Actions the validator refused, with reasons.
    pub rejected: Vec<Rejection>,
    /// Faults contained this tick, as sentences.
    pub faults: Vec<String>,
    /// Wall time of the policy calls, in microseconds.
    pub policy_us: u64,
    /// What the policies logged this tick at `info` or above: their reasons.
    pub notes: Vec<String>,
}

/// What the shadow candidate needs of a tick, kept until [`PolicyEngine::shadow_tick`].
struct ShadowInput {
    shared: SharedView,
    view: Arc<ViewSnapshot>,
    planner: Option<String>,
    predictions: Predictions,
    accepted: Vec<Action>,
    history: MoveHistory,
}

/// The predictor and planner slots, with the validator's state.
pub struct PolicyEngine {
    runtime: Arc<Runtime>,
    predictor: Option<Slot>,
    planner: Slot,
    churn: ChurnLimits,
    history: MoveHistory,
    last_rejections: Vec<Rejection>,
    ledger: Arc<Ledger>,
    shadow: shadow::Shadow,
    shadow_input: Option<ShadowInput>,
}

impl PolicyEngine {
    /// An engine with an empty planner slot and no predictor slot.
    pub fn new(runtime: Arc<Runtime>, churn: ChurnLimits) -> Self {
        let ledger = Ledger::new();
        PolicyEngine {
            planner: Slot::in_ledger(runtime.clone(), Role::Both, ledger.clone()),
            predictor: None,
            shadow: shadow::Shadow::new(runtime.clone(), ledger.clone()),
            shadow_input: None,
            ledger,
            runtime,
            churn,
            history: MoveHistory::default(),
            last_rejections: Vec::new(),
        }
    }

    /// The statistics of every version this engine has loaded.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Starts and stops a shadow candidate; reads how it compares.
    pub fn shadow_handle(&self) -> ShadowHandle {
        self.shadow.handle()
    }

    /// The shared runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Load one component of world `policy` to both predict and plan.
    pub fn load_policy(
        &mut self,
        bytes: &[u8],
        settings: &str,
    ) -> Result<Arc<PolicyVersion>, Error> {
        self.predictor = None;
        self.planner = Slot::in_ledger(self.runtime.clone(), Role::Both, self.ledger.clone());
        self.planner.load(bytes, settings)
    }

    /// Load a separate predictor (world `predictor` or `policy`); it answers `predict`
    /// from now on, even if the planner could predict too.
    pub fn load_predictor(
        &mut self,
        bytes: &[u8],
        settings: &str,
    ) -> Result<Arc<PolicyVersion>, Error> {
        let mut slot = Slot::in_ledger(self.runtime.clone(), Role::Predictor, self.ledger.clone());
        let version = slot.load(bytes, settings)?;
        self.predictor = Some(slot);
        Ok(version)
    }

    /// Load a planner (world `planner` or `policy`). Without a separate predictor, a
    /// `policy` component also predicts, and a `planner` plans on empty predictions.
    pub fn load_planner(
        &mut self,
        bytes: &[u8],
        settings: &str,
    ) -> Result<Arc<PolicyVersion>, Error> {
        let mut slot = Slot::in_ledger(self.runtime.clone(), Role::Planner, self.ledger.clone());
        let version = slot.load(bytes, settings)?;
        self.planner = slot;
        Ok(version)
    }

    /// Hot-swap handle of the planner slot.
    pub fn planner_handle(&self) -> SwapHandle {
        self.planner.handle()
    }

    /// Hot-swap handle of the predictor slot, when there is a separate one.
    pub fn predictor_handle(&self) -> Option<SwapHandle> {
        self.predictor.as_ref().map(Slot::handle)
    }

    /// Run one tick over `view`. The engine puts last tick's rejections by the validator
    /// before those the view already carries (the executor's refusals).
    pub fn tick(&mut self, mut view: ViewSnapshot) -> TickReport {
        if let Some(p) = self.predictor.as_mut() {
            p.begin_tick();
        }
        self.planner.begin_tick();
        let mut rejections = std::mem::take(&mut self.last_rejections);
        rejections.append(&mut view.rejections);
        view.rejections = rejections;
        view.prepare();
        let view = Arc::new(view);
        let shared: SharedView = view.clone();
        let started = Instant::now();
        let mut faults = Vec::new();
        let predict_check =
            |v: &PolicyVersion, p: &Predictions| output::check_predictions(p, &*view, &v.limits);
        let predictions = match self.predictor.as_mut() {
            Some(slot) => {
                let (p, f) = slot.predict(&shared, predict_check);
                faults.extend(f);
                p
            }
            None => {
                let (p, f) = self.planner.predict(&shared, predict_check);
                faults.extend(f);
                p
            }
        };
        let (actions, f) = self.planner.plan(&shared, &predictions, |v, a| {
            output::check_actions(a, &v.limits)
        });
        faults.extend(f);
        let policy_us = started.elapsed().as_micros() as u64;
        let mut notes = self
            .predictor
            .as_ref()
            .map(Slot::take_notes)
            .unwrap_or_default();
        notes.extend(self.planner.take_notes());
        // The shadow's budgets are those the active policy had before this tick's moves.
        let history_before = self.shadow.wanted().then(|| self.history.clone());
        let verdict = validate(actions, &*view, &self.churn, &mut self.history);
        if let Some(v) = self.planner.active() {
            self.ledger.rejected(v, verdict.rejected.len() as u64);
        }
        let label = self.planner.active().map(|v| v.label()).unwrap_or_default();
        for r in verdict.rejected.iter().take(LOGGED_REJECTIONS) {
            tracing::info!(tick = view.tick, policy = %label, segment = ?r.action.segment(), reason = r.reason.name(), "{}", r.message);
        }
        if verdict.rejected.len() > LOGGED_REJECTIONS {
            tracing::info!(
                tick = view.tick,
                "{} more rejections this tick (all of them are in the decision log's count and the policy's next view)",
                verdict.rejected.len() - LOGGED_REJECTIONS
            );
        }
        self.last_rejections = verdict.rejected.clone();
        let planner = self.planner.active().map(|v| v.label());
        // Only kept while a shadow candidate runs or is about to: without one, the tick
        // copies nothing for it.
        if let Some(history) = history_before {
            self.shadow_input = Some(ShadowInput {
                shared,
                view: view.clone(),
                planner: planner.clone(),
                predictions: predictions.clone(),
                accepted: verdict.accepted.clone(),
                history,
            });
        }
        TickReport {
            tick: view.tick,
            predictor: self
                .predictor
                .as_ref()
                .unwrap_or(&self.planner)
                .active()
                .map(|v| v.label()),
            planner,
            predictions,
            accepted: verdict.accepted,
            rejected: verdict.rejected,
            faults: faults.iter().map(ToString::to_string).collect(),
            policy_us,
            notes,
        }
    }

    /// Run the shadow candidate, if one runs, on the last tick's view, after the active
    /// policy's report has been handed on: its time never delays the active policy's
    /// actions. What it would have done, compared with what the active policy did.
    pub fn shadow_tick(&mut self) -> Option<ShadowTick> {
        let input = self.shadow_input.take()?;
        self.shadow.tick(
            &input.shared,
            &input.view,
            (&input.planner, &input.predictions, &input.accepted),
            &self.churn,
            &input.history,
        )
    }
}

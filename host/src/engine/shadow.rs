//! Shadow mode: a candidate version runs every tick on the same view as the active policy.
//! Its predictions and actions are validated like the active policy's and reported beside
//! them, but never executed; the shadow counts how often the two agree.
//!
//! The candidate runs in its own slot, after the active policy, on the tick thread; its
//! faults are contained there and never reach the active policy. It validates against a
//! copy of the validator's history, so that its budgets are those the active policy had.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;
use shardcast_sdk::types::{Action, Predictions, Rejection};
use shardcast_sdk::validate::{ChurnLimits, MoveHistory, validate};
use shardcast_sdk::view::ViewSnapshot;

use super::ctx::SharedView;
use super::ledger::Ledger;
use super::output;
use super::runtime::Runtime;
use super::slot::Slot;
use super::version::{PolicyVersion, Role, World};

/// How the shadow candidate compares with the active policy so far.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ShadowStatus {
    /// `name@version` of the candidate, if one runs.
    pub candidate: Option<String>,
    /// Its version id.
    pub id: Option<String>,
    /// `name@version` of the active planner it is compared with (the latest tick's).
    pub against: Option<String>,
    /// Ticks the candidate has run.
    pub ticks: u64,
    /// Ticks where both accepted the same actions (as a set).
    pub agreed: u64,
    /// Ticks where at least one of them acted.
    pub acting_ticks: u64,
    /// Of those, ticks where both accepted the same actions.
    pub acting_agreed: u64,
    /// `agreed / ticks`, or none before the first tick.
    pub agreement: Option<f64>,
    /// `acting_agreed / acting_ticks`: agreement on the ticks where anything was done.
    pub acting_agreement: Option<f64>,
    /// Ticks where the candidate faulted.
    pub faulted_ticks: u64,
    /// The latest tick where the two disagreed, described.
    pub last_disagreement: Option<String>,
}

/// What the shadow did in one tick.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowTick {
    /// The tick.
    pub tick: u64,
    /// `name@version` of the candidate.
    pub policy: String,
    /// Its predictions.
    pub predictions: Predictions,
    /// Actions the validator would have accepted.
    pub accepted: Vec<Action>,
    /// Actions it would have refused.
    pub rejected: Vec<Rejection>,
    /// Faults contained this tick, as sentences.
    pub faults: Vec<String>,
    /// True when it accepted the same actions as the active policy.
    pub agrees: bool,
}

enum Request {
    Run(Arc<PolicyVersion>),
    Stop,
}

/// Starts and stops the shadow from other threads; reads its status.
#[derive(Clone)]
pub struct ShadowHandle {
    request: Arc<Mutex<Option<Request>>>,
    status: Arc<ArcSwap<ShadowStatus>>,
}

impl ShadowHandle {
    /// Run `version` in shadow from the next tick, replacing any candidate (its counts
    /// start again).
    pub fn run(&self, version: Arc<PolicyVersion>) {
        *lock(&self.request) = Some(Request::Run(version));
    }

    /// Stop the shadow at the next tick.
    pub fn stop(&self) {
        *lock(&self.request) = Some(Request::Stop);
    }

    /// How the candidate compares so far.
    pub fn status(&self) -> Arc<ShadowStatus> {
        self.status.load_full()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shadow slot, owned by the engine.
pub struct Shadow {
    runtime: Arc<Runtime>,
    ledger: Arc<Ledger>,
    slot: Option<Slot>,
    status: ShadowStatus,
    handle: ShadowHandle,
}

impl Shadow {
    /// No candidate yet.
    pub fn new(runtime: Arc<Runtime>, ledger: Arc<Ledger>) -> Self {
        Shadow {
            runtime,
            ledger,
            slot: None,
            status: ShadowStatus::default(),
            handle: ShadowHandle {
                request: Arc::new(Mutex::new(None)),
                status: Arc::new(ArcSwap::from_pointee(ShadowStatus::default())),
            },
        }
    }

    /// The handle other threads use.
    pub fn handle(&self) -> ShadowHandle {
        self.handle.clone()
    }

    /// True while a candidate runs or a start or stop waits for the next tick: only then
    /// does the engine keep a tick's inputs for it.
    pub fn wanted(&self) -> bool {
        self.slot.is_some() || lock(&self.handle.request).is_some()
    }

    /// Take a start or stop asked for since the last tick.
    fn adopt(&mut self) {
        let Some(request) = lock(&self.handle.request).take() else {
            return;
        };
        self.slot = None;
        self.status = ShadowStatus::default();
        if let Request::Run(version) = request {
            let mut slot =
                Slot::in_ledger(self.runtime.clone(), Role::Planner, self.ledger.clone());
            match slot.handle().propose_loaded(&version, true) {
                Ok(()) => {
                    slot.adopt_pending();
                    self.status.candidate = Some(version.label());
                    self.status.id = Some(version.id.clone());
                    tracing::info!(policy = %version.label(), "shadow candidate started");
                    self.slot = Some(slot);
                }
                Err(e) => {
                    tracing::warn!(policy = %version.label(), error = %e, "the shadow candidate cannot start");
                    self.status.last_disagreement = Some(format!("cannot start: {e}"));
                }
            }
        }
        self.handle.status.store(Arc::new(self.status.clone()));
    }

    /// Run the candidate on `shared` after the active policy, whose predictions and
    /// accepted actions are given; none when no candidate runs.
    #[allow(clippy::too_many_arguments)]
    pub fn tick(
        &mut self,
        shared: &SharedView,
        view: &ViewSnapshot,
        active: (&Option<String>, &Predictions, &[Action]),
        churn: &ChurnLimits,
        history: &MoveHistory,
    ) -> Option<ShadowTick> {
        self.adopt();
        let slot = self.slot.as_mut()?;
        slot.begin_tick();
        let version = slot.active()?.clone();
        let (against, active_predictions, active_accepted) = active;
        let mut faults = Vec::new();
        // A planner-only candidate plans on the active policy's predictions.
        let predictions = if version.world == World::Planner {
            active_predictions.clone()
        } else {
            let (p, f) = slot.predict(shared, |v, p| output::check_predictions(p, view, &v.limits));
            faults.extend(f);
            p
        };
        let (actions, f) = slot.plan(shared, &predictions, |v, a| {
            output::check_actions(a, &v.limits)
        });
        faults.extend(f);
        let mut history = history.clone();
        let verdict = validate(actions, view, churn, &mut history);
        self.ledger
            .rejected(&version, verdict.rejected.len() as u64);
        let agrees = same_actions(&verdict.accepted, active_accepted);
        let s = &mut self.status;
        s.against = against.clone();
        s.ticks += 1;
        s.agreed += u64::from(agrees);
        if !verdict.accepted.is_empty() || !active_accepted.is_empty() {
            s.acting_ticks += 1;
            s.acting_agreed += u64::from(agrees);
        }
        if !faults.is_empty() {
            s.faulted_ticks += 1;
        }
        if !agrees {
            s.last_disagreement = Some(format!(
                "tick {}: active [{}], candidate [{}]",
                view.tick,
                describe(active_accepted),
                describe(&verdict.accepted)
            ));
        }
        s.agreement = Some(s.agreed as f64 / s.ticks as f64);
        s.acting_agreement =
            (s.acting_ticks > 0).then(|| s.acting_agreed as f64 / s.acting_ticks as f64);
        self.handle.status.store(Arc::new(self.status.clone()));
        Some(ShadowTick {
            tick: view.tick,
            policy: version.label(),
            predictions,
            accepted: verdict.accepted,
            rejected: verdict.rejected,
            faults: faults.iter().map(ToString::to_string).collect(),
            agrees,
        })
    }
}

fn describe(actions: &[Action]) -> String {
    actions
        .iter()
        .map(Action::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// True when `a` and `b` hold the same actions, in any order.
fn same_actions(a: &[Action], b: &[Action]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut a: Vec<String> = a.iter().map(Action::describe).collect();
    let mut b: Vec<String> = b.iter().map(Action::describe).collect();
    a.sort();
    b.sort();
    a == b
}

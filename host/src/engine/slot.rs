//! A policy slot: the running version of one role, its last good version, and the
//! candidate waiting to replace it.
//!
//! The slot is owned by the tick thread, which alone touches the running store. Other
//! threads reach it through a [`SwapHandle`]: they prepare a candidate (compile, type-check,
//! configure) on their own time and leave it to be adopted at the start of the next tick.
//! The slot's status is published through `arc-swap` for readers that must not wait.
//!
//! Containment: when a call faults, the store is discarded and the slot falls back to the
//! last good version, which answers the same tick; without one the tick gets no answer and
//! the version is restarted fresh, until it faults [`MAX_CONSECUTIVE_FAULTS`] times in a
//! row and is disabled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;
use shardcast_sdk::types::{Action, Predictions};

use super::ctx::SharedView;
use super::error::{Error, Fault, FaultKind};
use super::ledger::Ledger;
use super::runtime::Runtime;
use super::version::{LiveInstance, PolicyVersion, Role, World};

/// Consecutive faults after which a version with no fallback is disabled.
pub const MAX_CONSECUTIVE_FAULTS: u32 = 3;

/// What readers see of a slot.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SlotStatus {
    /// The role the slot serves.
    pub role: String,
    /// `name@version` running now, if any.
    pub active: Option<String>,
    /// World of the running version.
    pub world: Option<World>,
    /// sha256 of the running component.
    pub sha256: Option<String>,
    /// `name@version` kept for rollback.
    pub fallback: Option<String>,
    /// Version id of the running version.
    pub active_id: Option<String>,
    /// Version id of the version kept for rollback.
    pub fallback_id: Option<String>,
    /// Faults counted, by kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Versions swapped in.
    pub swaps: u64,
    /// Times the slot fell back to its last good version.
    pub rollbacks: u64,
    /// The last fault.
    pub last_error: Option<String>,
    /// True when the running version faulted too often and is disabled.
    pub disabled: bool,
    /// Swaps whose state hand-over failed, so that the new version started fresh.
    pub fresh_starts: u64,
    /// Why the last failed hand-over failed.
    pub last_handover_error: Option<String>,
}

/// A running version's state, taken between two ticks ([`SwapHandle::ask_checkpoint`]),
/// to be handed to the same version on another host ([`SwapHandle::resume`]).
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// sha256 of the component that gave it.
    pub sha256: String,
    /// Its `name@version`.
    pub label: String,
    /// What `snapshot` returned.
    pub state: Vec<u8>,
}

/// A configured instance waiting to be swapped in.
pub struct Candidate {
    live: LiveInstance,
    /// Swap in with fresh state, without asking the running version for its state.
    forced: bool,
}

/// Prepares candidates off the tick path and hands them to the slot; asks for rollbacks.
#[derive(Clone)]
pub struct SwapHandle {
    runtime: Arc<Runtime>,
    role: Role,
    pending: Arc<Mutex<Option<Candidate>>>,
    rollback: Arc<Mutex<bool>>,
    status: Arc<ArcSwap<SlotStatus>>,
    refused: Arc<ArcSwapOption<String>>,
    running: Arc<ArcSwapOption<PolicyVersion>>,
    checkpoint_asked: Arc<AtomicBool>,
    checkpoint: Arc<ArcSwapOption<Checkpoint>>,
    resume: Arc<Mutex<Option<Checkpoint>>>,
    ledger: Arc<Ledger>,
}

impl SwapHandle {
    /// Compile, type-check and configure `bytes` with `settings` for this slot's role,
    /// without swapping it in: a version to look at, shadow or propose later.
    pub fn prepare(&self, bytes: &[u8], settings: &str) -> Result<Arc<PolicyVersion>, Error> {
        let (version, live) = PolicyVersion::load(&self.runtime, bytes, settings, self.role)?;
        drop(live);
        self.ledger.register(&version);
        Ok(version)
    }

    /// Leave a loaded `version` to be swapped in at the start of the next tick, with its
    /// predecessor's state unless `forced`. Fails, leaving the running version, when it cannot start.
    pub fn propose_loaded(&self, version: &Arc<PolicyVersion>, forced: bool) -> Result<(), Error> {
        if !version.world.serves(self.role) {
            return Err(Error::WrongWorld(format!(
                "the component implements world `{}`, which cannot serve the {} slot",
                version.world.name(),
                self.role.name()
            )));
        }
        self.pend(version.instantiate()?, forced);
        Ok(())
    }

    /// Leave `live` to be swapped in at the start of the next tick.
    fn pend(&self, live: LiveInstance, forced: bool) {
        let version = live.version();
        tracing::info!(role = self.role.name(), policy = %version.label(), sha256 = %version.sha256, forced, "candidate ready; swapping at the next tick");
        let mut pending = lock(&self.pending);
        // A forced swap still waiting stays forced when a later candidate replaces it.
        let forced = forced || pending.as_ref().is_some_and(|c| c.forced);
        *pending = Some(Candidate { live, forced });
    }

    /// The versions this slot's engine has loaded and run, with their statistics.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The role this handle's slot serves.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Compile, type-check and configure `bytes` with `settings`, then leave it to be
    /// swapped in at the start of the next tick. On error the running version is untouched.
    pub fn propose(&self, bytes: &[u8], settings: &str) -> Result<Arc<PolicyVersion>, Error> {
        self.stage(bytes, settings, false)
    }

    /// Like [`SwapHandle::propose`], but the candidate starts with fresh state: the running
    /// version is not asked for its state, so nothing it does can keep the candidate out.
    pub fn force(&self, bytes: &[u8], settings: &str) -> Result<Arc<PolicyVersion>, Error> {
        self.stage(bytes, settings, true)
    }

    fn stage(
        &self,
        bytes: &[u8],
        settings: &str,
        forced: bool,
    ) -> Result<Arc<PolicyVersion>, Error> {
        match PolicyVersion::load(&self.runtime, bytes, settings, self.role) {
            Ok((version, live)) => {
                self.ledger.register(&version);
                self.pend(live, forced);
                Ok(version)
            }
            Err(e) => {
                tracing::error!(role = self.role.name(), error = %e, "candidate refused; the running version stays");
                self.refused.store(Some(Arc::new(e.to_string())));
                Err(e)
            }
        }
    }

    /// Ask the slot to return to its last good version at the next tick.
    pub fn rollback(&self) {
        *lock(&self.rollback) = true;
    }

    /// Why the last proposed candidate was refused, if it was.
    pub fn last_refusal(&self) -> Option<Arc<String>> {
        self.refused.load_full()
    }

    /// The slot's current status.
    pub fn status(&self) -> Arc<SlotStatus> {
        self.status.load_full()
    }

    /// The version running now.
    pub fn running(&self) -> Option<Arc<PolicyVersion>> {
        self.running.load_full()
    }

    /// Ask for the running version's state between the next two ticks; it is then
    /// available from [`SwapHandle::take_checkpoint`].
    pub fn ask_checkpoint(&self) {
        self.checkpoint_asked.store(true, Ordering::Relaxed);
    }

    /// The state taken since the last call, if any.
    pub fn take_checkpoint(&self) -> Option<Arc<Checkpoint>> {
        self.checkpoint.swap(None)
    }

    /// Give `checkpoint` to the running version at the start of the next tick, when it is
    /// the version that took it (same sha256); otherwise it is dropped with a warning.
    pub fn resume(&self, checkpoint: Checkpoint) {
        *lock(&self.resume) = Some(checkpoint);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One role's running policy, fallback and pending candidate.
pub struct Slot {
    role: Role,
    active: Option<Arc<PolicyVersion>>,
    live: Option<LiveInstance>,
    fallback: Option<Arc<PolicyVersion>>,
    proven: bool,
    /// The running version took its predecessor's state and has not answered yet.
    handed: bool,
    /// The fallback may be used when the running version faults (not after a forced swap:
    /// the operator removed that version; only an operator's rollback brings it back).
    auto_fallback: bool,
    consecutive_faults: u32,
    faulted: bool,
    handle: SwapHandle,
    status: SlotStatus,
}

impl Slot {
    /// An empty slot for `role`: it answers nothing until a version is proposed.
    pub fn new(runtime: Arc<Runtime>, role: Role) -> Self {
        Slot::in_ledger(runtime, role, Ledger::new())
    }

    /// An empty slot for `role` that counts its versions' calls and faults in `ledger`.
    pub fn in_ledger(runtime: Arc<Runtime>, role: Role, ledger: Arc<Ledger>) -> Self {
        let status = SlotStatus {
            role: role.name().into(),
            ..SlotStatus::default()
        };
        Slot {
            role,
            active: None,
            live: None,
            fallback: None,
            proven: false,
            handed: false,
            auto_fallback: true,
            consecutive_faults: 0,
            faulted: false,
            handle: SwapHandle {
                runtime,
                role,
                pending: Arc::new(Mutex::new(None)),
                rollback: Arc::new(Mutex::new(false)),
                status: Arc::new(ArcSwap::from_pointee(status.clone())),
                refused: Arc::new(ArcSwapOption::empty()),
                running: Arc::new(ArcSwapOption::empty()),
                checkpoint_asked: Arc::new(AtomicBool::new(false)),
                checkpoint: Arc::new(ArcSwapOption::empty()),
                resume: Arc::new(Mutex::new(None)),
                ledger,
            },
            status,
        }
    }

    /// Load a first version directly (at start-up).
    pub fn load(&mut self, bytes: &[u8], settings: &str) -> Result<Arc<PolicyVersion>, Error> {
        let version = self.handle.propose(bytes, settings)?;
        self.adopt_pending();
        Ok(version)
    }

    /// The role this slot serves.
    pub fn role(&self) -> Role {
        self.role
    }

    /// A handle for hot swaps and status from other threads.
    pub fn handle(&self) -> SwapHandle {
        self.handle.clone()
    }

    /// The version running now.
    pub fn active(&self) -> Option<&Arc<PolicyVersion>> {
        self.active.as_ref()
    }

    /// The notes the running instance logged since the last call.
    pub fn take_notes(&self) -> Vec<String> {
        self.live
            .as_ref()
            .map(LiveInstance::take_notes)
            .unwrap_or_default()
    }

    /// Start a tick: a clean previous tick clears the fault streak, then any pending swap
    /// or rollback takes effect, then a state to resume from is restored and a checkpoint
    /// asked for is taken.
    pub fn begin_tick(&mut self) {
        if let Some(live) = &self.live {
            live.settle_log();
        }
        if !std::mem::take(&mut self.faulted) {
            self.consecutive_faults = 0;
        }
        self.adopt_pending();
        let resume = lock(&self.handle.resume).take();
        if let Some(checkpoint) = resume {
            self.resume_from(&checkpoint);
        }
        if self.handle.checkpoint_asked.swap(false, Ordering::Relaxed) {
            self.take_checkpoint();
        }
    }

    /// Restore `checkpoint` into the running version when it took it. A refusal or a
    /// fault leaves the version running with fresh state: a state that another host's
    /// version gave can never keep this one from running.
    fn resume_from(&mut self, checkpoint: &Checkpoint) {
        let role = self.role.name();
        let mine = self.active.as_ref().map(|v| v.sha256.as_str());
        if mine != Some(checkpoint.sha256.as_str()) {
            tracing::warn!(role, checkpoint = %checkpoint.label, "a checkpoint of another version is not restored; the running version keeps its state");
            return;
        }
        let Some(live) = self.live_instance() else {
            return;
        };
        match live.restore(&checkpoint.state) {
            Ok(Ok(())) => {
                tracing::info!(role, policy = %checkpoint.label, bytes = checkpoint.state.len(), "policy state restored from a checkpoint");
                return;
            }
            Ok(Err(refusal)) => {
                tracing::warn!(role, policy = %checkpoint.label, refusal = %refusal, "the checkpoint was refused; the policy starts with fresh state");
            }
            Err(fault) => {
                tracing::warn!(role, policy = %checkpoint.label, error = %fault, "restoring the checkpoint faulted; the policy starts with fresh state");
            }
        }
        // A refused or faulted restore may have left half a state behind.
        self.live = None;
        self.status.fresh_starts += 1;
        self.publish();
    }

    /// Take the running version's state. A failure gives no checkpoint and a warning: the
    /// running instance keeps its state and is not counted as faulting (a snapshot past
    /// `snapshot_mib` leaves it intact; one that trapped is restarted at its next call).
    fn take_checkpoint(&mut self) {
        let (Some(live), Some(version)) = (self.live.as_mut(), self.active.as_ref()) else {
            return;
        };
        match live.snapshot() {
            Ok(state) => self.handle.checkpoint.store(Some(Arc::new(Checkpoint {
                sha256: version.sha256.clone(),
                label: version.label(),
                state,
            }))),
            Err(fault) => {
                tracing::warn!(role = self.role.name(), policy = %version.label(), error = %fault, "no checkpoint of the policy's state this time");
                if fault.kind != FaultKind::AbsurdOutput {
                    // A trap may leave the store unusable: the next call starts it again.
                    self.live = None;
                }
            }
        }
    }

    /// Swap in a pending candidate or honour a rollback request. Called between ticks.
    ///
    /// The running version hands its state to the candidate (`snapshot`, then `restore`).
    /// When the hand-over fails, whichever side fails, the candidate starts with fresh state
    /// and the log says so: the operator's choice of version wins over the old version's
    /// state.
    pub fn adopt_pending(&mut self) {
        if std::mem::take(&mut *lock(&self.handle.rollback))
            && !self.roll_back("the operator asked for a rollback")
        {
            tracing::warn!(
                role = self.role.name(),
                "rollback asked for, but there is no earlier version to roll back to"
            );
        }
        let Some(Candidate { mut live, forced }) = lock(&self.handle.pending).take() else {
            return;
        };
        let label = live.version().label();
        let mut handed = false;
        if forced {
            tracing::warn!(role = self.role.name(), policy = %label, "forced swap: the candidate starts with fresh state");
        } else if let Some(old) = self.live.as_mut() {
            match hand_over(old, &mut live) {
                Ok(took) => handed = took,
                Err(e) => {
                    tracing::warn!(role = self.role.name(), policy = %label, error = %e, "state hand-over failed; the candidate starts with fresh state");
                    // A failed restore may have left half a state behind: start it again.
                    live = match live.version().clone().instantiate() {
                        Ok(fresh) => fresh,
                        Err(e) => {
                            tracing::error!(role = self.role.name(), policy = %label, error = %e, "candidate refused: it cannot start fresh; the running version stays");
                            self.handle.refused.store(Some(Arc::new(format!(
                                "candidate {label} refused: it cannot start fresh: {e}"
                            ))));
                            return;
                        }
                    };
                    self.status.fresh_starts += 1;
                    self.status.last_handover_error = Some(e);
                }
            }
        }
        if self.proven {
            self.fallback = self.active.take();
            self.auto_fallback = !forced;
        }
        self.handed = handed;
        self.active = Some(live.version().clone());
        self.live = Some(live);
        self.proven = false;
        self.consecutive_faults = 0;
        self.status.disabled = false;
        self.status.swaps += 1;
        tracing::info!(role = self.role.name(), policy = %label, "policy swapped in");
        self.publish();
    }

    fn roll_back(&mut self, why: &str) -> bool {
        let Some(fallback) = self.fallback.take() else {
            return false;
        };
        let from = self.active.as_ref().map(|v| v.label()).unwrap_or_default();
        match fallback.instantiate() {
            Ok(live) => {
                tracing::warn!(role = self.role.name(), from = %from, to = %fallback.label(), why, "rolled back to the last good version");
                self.active = Some(fallback);
                self.live = Some(live);
                self.proven = true;
                self.handed = false;
                self.consecutive_faults = 0;
                self.status.rollbacks += 1;
                self.status.disabled = false;
                self.publish();
                true
            }
            Err(e) => {
                tracing::error!(role = self.role.name(), to = %fallback.label(), error = %e, "the last good version failed to start");
                false
            }
        }
    }

    /// Run `predict`, containing any fault.
    pub fn predict(
        &mut self,
        view: &SharedView,
        check: impl Fn(&PolicyVersion, &Predictions) -> Result<(), String>,
    ) -> (Predictions, Vec<Fault>) {
        self.run(Predictions::empty(), |live| {
            let p = live.predict(view.clone())?;
            check(live.version(), &p).map_err(|detail| absurd(live, "predict", detail))?;
            Ok(p)
        })
    }

    /// Run `plan`, containing any fault.
    pub fn plan(
        &mut self,
        view: &SharedView,
        predictions: &Predictions,
        check: impl Fn(&PolicyVersion, &[Action]) -> Result<(), String>,
    ) -> (Vec<Action>, Vec<Fault>) {
        self.run(Vec::new(), |live| {
            let actions = live.plan(view.clone(), predictions)?;
            check(live.version(), &actions).map_err(|detail| absurd(live, "plan", detail))?;
            Ok(actions)
        })
    }

    /// Run one call on the live instance; on a fault, discard the store and retry once on
    /// the last good version. Returns the answer (or `nothing`) and the faults seen.
    fn run<R>(
        &mut self,
        nothing: R,
        mut call: impl FnMut(&mut LiveInstance) -> Result<R, Fault>,
    ) -> (R, Vec<Fault>) {
        let mut faults = Vec::new();
        for _attempt in 0..2 {
            if self.status.disabled {
                break;
            }
            let Some(live) = self.live_instance() else {
                break;
            };
            let version = live.version().clone();
            let started = std::time::Instant::now();
            let answer = call(live);
            match answer {
                Ok(answer) => {
                    self.handle
                        .ledger
                        .call(&version, started.elapsed().as_micros() as u64);
                    self.proven = true;
                    self.handed = false;
                    return (answer, faults);
                }
                Err(fault) => {
                    self.handle.ledger.fault(&version, fault.kind);
                    self.faulted = true;
                    self.record(&fault);
                    faults.push(fault);
                    self.live = None;
                    if std::mem::take(&mut self.handed) {
                        // The state its predecessor handed over may be what made it fault:
                        // the predecessor must not get back in that way. Restart it fresh.
                        tracing::warn!(
                            role = self.role.name(),
                            "the version faulted at its first call after taking its predecessor's state; restarting it with fresh state"
                        );
                        self.status.fresh_starts += 1;
                        self.publish();
                        continue;
                    }
                    if !(self.auto_fallback && self.roll_back("the running version faulted")) {
                        self.consecutive_faults += 1;
                        if self.consecutive_faults >= MAX_CONSECUTIVE_FAULTS {
                            self.status.disabled = true;
                            tracing::error!(
                                role = self.role.name(),
                                faults = self.consecutive_faults,
                                "policy disabled after repeated faults; no actions until a new version is loaded"
                            );
                        }
                        self.publish();
                        break;
                    }
                }
            }
        }
        (nothing, faults)
    }

    /// The live instance, restarting the active version if its store was discarded.
    fn live_instance(&mut self) -> Option<&mut LiveInstance> {
        if self.live.is_none() {
            let version = self.active.clone()?;
            match version.instantiate() {
                Ok(live) => self.live = Some(live),
                Err(e) => {
                    tracing::error!(role = self.role.name(), policy = %version.label(), error = %e, "cannot restart policy");
                    self.consecutive_faults += 1;
                    if self.consecutive_faults >= MAX_CONSECUTIVE_FAULTS {
                        self.status.disabled = true;
                    }
                    self.publish();
                    return None;
                }
            }
        }
        self.live.as_mut()
    }

    fn record(&mut self, fault: &Fault) {
        let still = match (&self.fallback, self.auto_fallback, self.handed) {
            (_, _, true) => "restarting it with fresh state".to_owned(),
            (Some(v), true, false) => format!("falling back to {}", v.label()),
            _ => "no fallback version; this tick gets no answer".to_owned(),
        };
        tracing::error!(
            role = self.role.name(),
            policy = %fault.policy,
            kind = fault.kind.name(),
            call = fault.call,
            "{fault}; {still}"
        );
        *self.status.faults.entry(fault.kind).or_insert(0) += 1;
        self.status.last_error = Some(format!("{fault}; {still}"));
    }

    fn publish(&mut self) {
        self.status.active = self.active.as_ref().map(|v| v.label());
        self.status.world = self.active.as_ref().map(|v| v.world);
        self.status.sha256 = self.active.as_ref().map(|v| v.sha256.clone());
        self.status.fallback = self.fallback.as_ref().map(|v| v.label());
        self.status.active_id = self.active.as_ref().map(|v| v.id.clone());
        self.status.fallback_id = self.fallback.as_ref().map(|v| v.id.clone());
        self.handle.status.store(Arc::new(self.status.clone()));
        self.handle.running.store(self.active.clone());
    }
}

/// Hand `old`'s state to `new`: `snapshot` (bounded in size and time), then `restore`.
/// True when there was state to take.
fn hand_over(old: &mut LiveInstance, new: &mut LiveInstance) -> Result<bool, String> {
    let state = old.snapshot().map_err(|f| f.to_string())?;
    if state.is_empty() {
        return Ok(false);
    }
    match new.restore(&state) {
        Ok(Ok(())) => Ok(true),
        Ok(Err(refusal)) => Err(format!(
            "{} refused its predecessor's state: {refusal}",
            new.version().label()
        )),
        Err(fault) => Err(fault.to_string()),
    }
}

fn absurd(live: &LiveInstance, call: &'static str, detail: String) -> Fault {
    Fault {
        kind: FaultKind::AbsurdOutput,
        call,
        policy: live.version().label(),
        detail,
    }
}

//! Loading a policy component into a checked, configured, ready-to-run version.
//!
//! A [`PolicyVersion`] is the immutable part (compiled, linked, world-checked, limits and
//! settings); a [`LiveInstance`] is one running store of it. Every call on a live instance
//! runs under the version's epoch deadline and memory cap, and any failure comes back as a
//! [`Fault`] after which the instance must be dropped.

use std::sync::Arc;

use shardcast_sdk::types::{Action, PolicyInfo, Predictions};
use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap};

use super::cache::sha256_hex;
use super::ctx::{PolicyCtx, SharedView};
use super::error::{Error, Fault, FaultKind, one_line};
use super::limits::{Limits, split_settings};
use super::nonblocking::Blocked;
use super::runtime::{EPOCH_TICK, Runtime};
use super::text;
use super::voice::Voice;
use super::wit::{forecast, lifecycle, placement};

/// The world a component implements, from its exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Exports `forecast`.
    Predictor,
    /// Exports `placement`.
    Planner,
    /// Exports both.
    Policy,
}

impl World {
    /// The WIT name of the world.
    pub fn name(self) -> &'static str {
        match self {
            World::Predictor => "predictor",
            World::Planner => "planner",
            World::Policy => "policy",
        }
    }

    /// True when a component of this world can serve `role`.
    pub fn serves(self, role: Role) -> bool {
        matches!(
            (self, role),
            (World::Policy, _)
                | (World::Predictor, Role::Predictor)
                | (World::Planner, Role::Planner)
        )
    }
}

/// What a slot needs its policy to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Forecast only.
    Predictor,
    /// Plan only.
    Planner,
    /// Forecast and plan, in one instance sharing state.
    Both,
}

impl Role {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Predictor => "predictor",
            Role::Planner => "planner",
            Role::Both => "predictor+planner",
        }
    }
}

#[derive(Clone)]
struct Indices {
    lifecycle: lifecycle::GuestIndices,
    forecast: Option<forecast::GuestIndices>,
    placement: Option<placement::GuestIndices>,
}

/// A compiled, linked, type-checked policy with its limits and settings.
pub struct PolicyVersion {
    /// What the policy says it is.
    pub info: PolicyInfo,
    /// Its world.
    pub world: World,
    /// sha256 of the component bytes.
    pub sha256: String,
    /// The version's id: the first 16 hex digits of the sha256 of the component and the
    /// settings as given, so that one component with other settings is another version.
    pub id: String,
    /// When it was loaded, in ms since the Unix epoch.
    pub loaded_at_ms: u64,
    /// Its limits.
    pub limits: Limits,
    /// The settings handed to `configure` (the `[limits]` table removed).
    pub settings: String,
    /// The component's bytes and the settings as given (with `[limits]`): what another
    /// host needs to load the same version.
    pub source: Arc<Source>,
    linked: Linked,
}

/// What a version was loaded from.
#[derive(Debug)]
pub struct Source {
    /// The component.
    pub component: Vec<u8>,
    /// The settings, with their `[limits]` table.
    pub settings: String,
}

/// The compiled component, linked and indexed; cheap to clone.
#[derive(Clone)]
struct Linked {
    runtime: Arc<Runtime>,
    pre: InstancePre<PolicyCtx>,
    indices: Indices,
}

impl std::fmt::Debug for PolicyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyVersion")
            .field("info", &self.info)
            .field("world", &self.world)
            .field("sha256", &self.sha256)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PolicyVersion {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.info.name, self.info.version)
    }

    /// Compile, link and type-check `bytes` for `role`, then instantiate and configure it
    /// with `settings` (TOML, with an optional `[limits]` table). Returns the version and
    /// its first live instance, ready to run.
    pub fn load(
        runtime: &Arc<Runtime>,
        bytes: &[u8],
        settings: &str,
        role: Role,
    ) -> Result<(Arc<Self>, LiveInstance), Error> {
        let (limits, policy_settings) = split_settings(settings, runtime.options().max_memory_mib)?;
        let (linked, world) = link(runtime, bytes)?;
        if !world.serves(role) {
            return Err(Error::WrongWorld(format!(
                "the component implements world `{}` but the {} slot needs world `{}`",
                world.name(),
                role.name(),
                match role {
                    Role::Predictor => "predictor",
                    Role::Planner => "planner",
                    Role::Both => "policy",
                }
            )));
        }
        // Until it says its name, a component is known by its digest.
        let sha256 = sha256_hex(bytes);
        let unnamed: Arc<str> = format!("component sha256:{}", &sha256[..12]).into();
        let mut parts = Parts::start(&linked, unnamed, limits)?;
        let info = parts.describe().map_err(Error::Fault)?;
        let id = version_id(&sha256, settings);
        let version = Arc::new(PolicyVersion {
            info,
            world,
            sha256,
            id,
            loaded_at_ms: super::ledger::now_ms(),
            limits,
            settings: policy_settings,
            source: Arc::new(Source {
                component: bytes.to_vec(),
                settings: settings.to_owned(),
            }),
            linked,
        });
        parts.store.data().voice.rename(version.label().into());
        let mut first = LiveInstance { version, parts };
        first.configure()?;
        Ok((version_of(&first), first))
    }

    /// A new live instance of this version, configured with its settings.
    pub fn instantiate(self: &Arc<Self>) -> Result<LiveInstance, Error> {
        let parts = Parts::start(&self.linked, self.label().into(), self.limits)?;
        let mut live = LiveInstance {
            version: self.clone(),
            parts,
        };
        live.configure()?;
        Ok(live)
    }
}

/// The id of the component with sha256 `sha256` loaded with `settings` (as given).
pub fn version_id(sha256: &str, settings: &str) -> String {
    let mut text = String::with_capacity(sha256.len() + 1 + settings.len());
    text.push_str(sha256);
    text.push('\n');
    text.push_str(settings);
    sha256_hex(text.as_bytes())[..16].to_owned()
}

/// The world of the component `bytes`, from its exports, without running any of it.
pub fn world_of(runtime: &Arc<Runtime>, bytes: &[u8]) -> Result<World, Error> {
    link(runtime, bytes).map(|(_, world)| world)
}

/// Compile, link and index `bytes`; which world its exports make it.
fn link(runtime: &Arc<Runtime>, bytes: &[u8]) -> Result<(Linked, World), Error> {
    let component = runtime.compile(bytes)?;
    let pre = runtime
        .linker()
        .instantiate_pre(&component)
        .map_err(|e| Error::Link(format!("{e:#}")))?;
    let lifecycle = lifecycle::GuestIndices::new(&pre).map_err(|_| {
            Error::WrongWorld(
                "the component does not export shardcast:policy/lifecycle@0.1.0; build it with shardcast-sdk's export_predictor!, export_planner! or export_policy!".into(),
            )
        })?;
    let forecast = forecast::GuestIndices::new(&pre).ok();
    let placement = placement::GuestIndices::new(&pre).ok();
    let world = match (forecast.is_some(), placement.is_some()) {
        (true, true) => World::Policy,
        (true, false) => World::Predictor,
        (false, true) => World::Planner,
        (false, false) => {
            return Err(Error::WrongWorld(
                    "the component exports neither shardcast:policy/forecast nor shardcast:policy/placement".into(),
                ));
        }
    };
    let linked = Linked {
        runtime: runtime.clone(),
        pre,
        indices: Indices {
            lifecycle,
            forecast,
            placement,
        },
    };
    Ok((linked, world))
}

fn version_of(live: &LiveInstance) -> Arc<PolicyVersion> {
    live.version.clone()
}

/// The store and export handles of one instance.
struct Parts {
    store: Store<PolicyCtx>,
    limits: Limits,
    lifecycle: lifecycle::Guest,
    forecast: Option<forecast::Guest>,
    placement: Option<placement::Guest>,
}

impl Parts {
    fn start(linked: &Linked, label: Arc<str>, limits: Limits) -> Result<Self, Error> {
        let voice = Voice::new(label.clone(), limits.log_bytes_per_tick);
        let mut store = linked.runtime.store(voice, limits.memory_mib);
        store.set_epoch_deadline(deadline_ticks(limits.deadline_ms));
        let instance = linked
            .pre
            .instantiate(&mut store)
            .map_err(|e| Error::Fault(classify(&e, &store, "instantiate", &label, limits)))?;
        let load_err = |e: wasmtime::Error| {
            Error::WrongWorld(format!("export signatures do not match the WIT: {e:#}"))
        };
        let lifecycle = linked
            .indices
            .lifecycle
            .load(&mut store, &instance)
            .map_err(load_err)?;
        let forecast = match &linked.indices.forecast {
            Some(i) => Some(i.load(&mut store, &instance).map_err(load_err)?),
            None => None,
        };
        let placement = match &linked.indices.placement {
            Some(i) => Some(i.load(&mut store, &instance).map_err(load_err)?),
            None => None,
        };
        Ok(Parts {
            store,
            limits,
            lifecycle,
            forecast,
            placement,
        })
    }

    /// Run one export under the deadline and memory cap, with `view` installed.
    fn call<R>(
        &mut self,
        name: &'static str,
        view: Option<SharedView>,
        f: impl FnOnce(&mut Self) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        let limits = self.limits;
        self.store
            .set_epoch_deadline(deadline_ticks(limits.deadline_ms));
        self.store.data_mut().memory.hit = false;
        self.store.data_mut().view = view;
        let result = f(self);
        self.store.data_mut().view = None;
        result.map_err(|e| {
            let label = self.store.data().voice.label();
            classify(&e, &self.store, name, &label, limits)
        })
    }

    /// Call `describe`; what the policy says of itself is cleaned and cut to length.
    fn describe(&mut self) -> Result<PolicyInfo, Fault> {
        let info: PolicyInfo = self.call("describe", None, |me| {
            me.lifecycle.call_describe(&mut me.store).map(Into::into)
        })?;
        Ok(PolicyInfo {
            name: text::clean(&info.name, text::MAX_NAME),
            version: text::clean(&info.version, text::MAX_NAME),
            summary: text::clean(&info.summary, text::MAX_SUMMARY),
        })
    }
}

/// One running instance of a [`PolicyVersion`].
pub struct LiveInstance {
    version: Arc<PolicyVersion>,
    parts: Parts,
}

impl LiveInstance {
    /// The version this instance runs.
    pub fn version(&self) -> &Arc<PolicyVersion> {
        &self.version
    }

    /// Call `describe`.
    pub fn describe(&mut self) -> Result<PolicyInfo, Fault> {
        self.parts.describe()
    }

    /// Call `configure` with the version's settings.
    pub fn configure(&mut self) -> Result<(), Error> {
        let settings = self.version.settings.clone();
        let result = self.parts.call("configure", None, |me| {
            me.lifecycle.call_configure(&mut me.store, &settings)
        });
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Error::Settings(format!(
                "policy {} refused its settings: {}",
                self.version.label(),
                text::clean(&message, text::MAX_MESSAGE)
            ))),
            Err(fault) => Err(Error::Fault(fault)),
        }
    }

    /// The notes the policy logged since the last call.
    pub fn take_notes(&self) -> Vec<String> {
        self.parts.store.data().voice.take_notes()
    }

    /// Start a new log budget period, reporting what the last one suppressed.
    pub fn settle_log(&self) {
        self.parts.store.data().voice.settle()
    }

    /// Call `snapshot`. A state larger than `[limits] snapshot_mib` is absurd output.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, Fault> {
        let state = self.parts.call("snapshot", None, |me| {
            me.lifecycle.call_snapshot(&mut me.store)
        })?;
        let limit = self.version.limits.snapshot_mib << 20;
        if state.len() as u64 > limit {
            return Err(Fault {
                kind: FaultKind::AbsurdOutput,
                call: "snapshot",
                policy: self.version.label(),
                detail: format!(
                    "returned a state of {} bytes, more than the limit of {} MiB (raise [limits] snapshot_mib)",
                    state.len(),
                    self.version.limits.snapshot_mib
                ),
            });
        }
        Ok(state)
    }

    /// Call `restore`; a refusal comes back as the policy's message, cleaned.
    pub fn restore(&mut self, state: &[u8]) -> Result<Result<(), String>, Fault> {
        let answer = self.parts.call("restore", None, |me| {
            me.lifecycle.call_restore(&mut me.store, state)
        })?;
        Ok(answer.map_err(|m| text::clean(&m, text::MAX_MESSAGE)))
    }

    /// Call `predict`. A planner-only instance predicts nothing.
    pub fn predict(&mut self, view: SharedView) -> Result<Predictions, Fault> {
        if self.parts.forecast.is_none() {
            return Ok(Predictions::empty());
        }
        self.parts.call("predict", Some(view), |me| {
            let forecast = me.forecast.as_ref().expect("checked above");
            forecast.call_predict(&mut me.store).map(Into::into)
        })
    }

    /// Call `plan`. A predictor-only instance plans nothing.
    pub fn plan(
        &mut self,
        view: SharedView,
        predictions: &Predictions,
    ) -> Result<Vec<Action>, Fault> {
        if self.parts.placement.is_none() {
            return Ok(Vec::new());
        }
        let input = predictions.clone().into();
        self.parts.call("plan", Some(view), |me| {
            let placement = me.placement.as_ref().expect("checked above");
            placement
                .call_plan(&mut me.store, &input)
                .map(|actions| actions.into_iter().map(Into::into).collect())
        })
    }
}

fn deadline_ticks(deadline_ms: u64) -> u64 {
    (deadline_ms * 1000 / EPOCH_TICK.as_micros() as u64).max(1)
}

/// Turn a wasmtime error into a fault with a sentence a user can act on.
fn classify(
    e: &wasmtime::Error,
    store: &Store<PolicyCtx>,
    call: &'static str,
    label: &str,
    limits: Limits,
) -> Fault {
    let (kind, detail) = if store.data().memory.hit {
        (
            FaultKind::MemoryLimit,
            format!(
                "memory limit of {} MiB exceeded (raise [limits] memory_mib)",
                limits.memory_mib
            ),
        )
    } else if let Some(blocked) = e.downcast_ref::<Blocked>() {
        (FaultKind::Blocking, blocked.to_string())
    } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        (
            FaultKind::Timeout,
            format!(
                "deadline of {} ms exceeded (raise [limits] deadline_ms)",
                limits.deadline_ms
            ),
        )
    } else {
        let trace = text::clean(&format!("{e:?}"), text::MAX_MESSAGE);
        tracing::debug!(policy = label, call, "trap: {trace}");
        let trap = match e.downcast_ref::<Trap>() {
            Some(Trap::UnreachableCodeReached) => {
                "wasm `unreachable` executed: the policy panicked or aborted (its stderr is in the log)".to_owned()
            }
            Some(trap) => trap.to_string(),
            None => one_line(&format!("{}", e.root_cause())),
        };
        (FaultKind::Trap, trap)
    };
    Fault {
        kind,
        call,
        policy: label.to_owned(),
        detail,
    }
}

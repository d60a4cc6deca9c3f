//! `/v1/policies`: the versions an operator can see, upload, activate, roll back to and
//! run in shadow.
//!
//! The desk keeps every version it has seen (uploaded, or found running after a swap by
//! file, signal or cluster sync), up to [`KEPT`]. Uploads are compiled, type-checked and
//! configured before they are kept; a refused upload leaves everything as it was.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::http::{Failure, Handled, json, json_with};
use crate::engine::{
    PolicyVersion, ShadowHandle, ShadowStatus, SlotStatus, SwapHandle, VersionStats,
};

/// Versions kept (the oldest that is neither running nor kept for rollback goes first).
pub const KEPT: usize = 16;

/// How long an activation or rollback waits to see the swap before answering 202.
const SWAP_WAIT: Duration = Duration::from_secs(5);

/// The controller's policy as the admin API reaches it.
pub struct PolicyDesk {
    planner: SwapHandle,
    shadow: ShadowHandle,
    kept: Mutex<Vec<Arc<PolicyVersion>>>,
}

/// One version, as listed.
#[derive(Debug, Serialize)]
pub struct VersionView {
    /// Its id: give it to `activate` and `shadow`.
    pub id: String,
    /// `name@version`.
    pub label: String,
    /// sha256 of the component.
    pub sha256: String,
    /// Its world.
    pub world: String,
    /// Where it stands: `active`, `previous`, `shadow` or `candidate`.
    pub role: &'static str,
    /// The settings as given.
    pub settings: String,
    /// Calls, call times, faults and rejections so far.
    pub stats: VersionStats,
}

/// The answer of `GET /v1/policies`.
#[derive(Debug, Serialize)]
pub struct PolicyList {
    /// The running version.
    pub active: Option<VersionView>,
    /// The version a rollback returns to.
    pub previous: Option<VersionView>,
    /// Uploaded versions not running.
    pub candidates: Vec<VersionView>,
    /// The shadow candidate's comparison with the active version.
    pub shadow: ShadowStatus,
    /// The planner slot's status: faults, swaps, rollbacks, last error.
    pub slot: SlotStatus,
}

/// Where the version `id` stands: `active`, `previous`, `shadow` or `candidate`.
fn role(id: &str, status: &SlotStatus, shadow: &ShadowStatus) -> &'static str {
    if status.active_id.as_deref() == Some(id) {
        "active"
    } else if status.fallback_id.as_deref() == Some(id) {
        "previous"
    } else if shadow.id.as_deref() == Some(id) {
        "shadow"
    } else {
        "candidate"
    }
}

/// An upload in JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    /// The component, base64.
    component_base64: String,
    /// Settings TOML, with an optional `[limits]` table.
    #[serde(default)]
    settings: String,
}

impl PolicyDesk {
    /// A desk over the planner slot's handle and the shadow's.
    pub fn new(planner: SwapHandle, shadow: ShadowHandle) -> Self {
        let desk = PolicyDesk {
            planner,
            shadow,
            kept: Mutex::new(Vec::new()),
        };
        desk.notice_running();
        desk
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<Arc<PolicyVersion>>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `version`, dropping the oldest unused one past [`KEPT`].
    fn keep(&self, version: Arc<PolicyVersion>) {
        let status = self.planner.status();
        let shadow = self.shadow.status();
        let mut kept = self.kept();
        if kept.iter().any(|v| v.id == version.id) {
            return;
        }
        kept.push(version);
        while kept.len() > KEPT {
            let in_use = |v: &PolicyVersion| role(&v.id, &status, &shadow) != "candidate";
            match kept.iter().position(|v| !in_use(v)) {
                Some(i) => {
                    let dropped = kept.remove(i);
                    self.planner.ledger().forget(&dropped.id);
                }
                None => break,
            }
        }
    }

    /// A version swapped in by other means (file, signal, cluster) is kept too.
    fn notice_running(&self) {
        if let Some(v) = self.planner.running() {
            self.keep(v);
        }
    }

    fn find(&self, id: &str) -> Result<Arc<PolicyVersion>, Failure> {
        self.notice_running();
        self.kept()
            .iter()
            .find(|v| v.id == id || (id.len() >= 6 && v.id.starts_with(id)))
            .cloned()
            .ok_or_else(|| {
                Failure::not_found(format!(
                    "no policy version `{id}` here; list them with GET /v1/policies (ids are the first 6 or more digits of `id`)"
                ))
            })
    }

    fn view(&self, v: &PolicyVersion, role: &'static str) -> VersionView {
        VersionView {
            id: v.id.clone(),
            label: v.label(),
            sha256: v.sha256.clone(),
            world: v.world.name().into(),
            role,
            settings: v.source.settings.clone(),
            stats: self.planner.ledger().get(&v.id).unwrap_or_default(),
        }
    }

    /// `GET /v1/policies`.
    pub fn list(&self) -> PolicyList {
        self.notice_running();
        let status = self.planner.status();
        let shadow = self.shadow.status();
        let kept = self.kept().clone();
        let mut list = PolicyList {
            active: None,
            previous: None,
            candidates: Vec::new(),
            shadow: (*shadow).clone(),
            slot: (*status).clone(),
        };
        for v in &kept {
            let view = self.view(v, role(&v.id, &status, &shadow));
            match view.role {
                "active" => list.active = Some(view),
                "previous" => list.previous = Some(view),
                _ => list.candidates.push(view),
            }
        }
        list
    }

    /// `GET /v1/policies/{id}`.
    pub fn get(&self, id: &str) -> Handled {
        let v = self.find(id)?;
        let role = role(&v.id, &self.planner.status(), &self.shadow.status());
        json(&self.view(&v, role))
    }

    /// `POST /v1/policies`: a component (`application/wasm`, settings empty) or JSON
    /// `{"component_base64": ..., "settings": ...}`.
    pub async fn upload(&self, content_type: &str, body: Bytes) -> Handled {
        let (component, settings) = if content_type.starts_with("application/json") {
            let upload: Upload = serde_json::from_slice(&body).map_err(|e| {
                Failure::bad(format!(
                    "the upload is not JSON of the form {{\"component_base64\": \"...\", \"settings\": \"...\"}}: {e}"
                ))
            })?;
            let component = base64::engine::general_purpose::STANDARD
                .decode(upload.component_base64.trim())
                .map_err(|e| Failure::bad(format!("`component_base64` is not base64: {e}")))?;
            (component, upload.settings)
        } else {
            (body.to_vec(), String::new())
        };
        // Compiling and configuring takes CPU for a while: off the async workers, which
        // also release held requests.
        let planner = self.planner.clone();
        let prepared = tokio::task::spawn_blocking(move || planner.prepare(&component, &settings))
            .await
            .map_err(|e| {
                Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the upload's compilation did not finish: {e}"),
                )
            })?;
        let version = prepared.map_err(|e| {
            Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the policy was refused and the running version is unchanged: {e}. Check it locally with `shardcast policy check <file.wasm> --settings <file.toml>`"
                ),
            )
        })?;
        tracing::info!(policy = %version.label(), id = %version.id, "policy version uploaded");
        self.keep(version.clone());
        json_with(StatusCode::CREATED, &self.view(&version, "candidate"))
    }

    /// `POST /v1/policies/{id}/activate[?force=true]`: swap it in at the next tick.
    pub async fn activate(&self, id: &str, forced: bool) -> Handled {
        let v = self.find(id)?;
        if self.planner.status().active_id.as_deref() == Some(v.id.as_str()) {
            return Err(Failure::conflict(format!(
                "{} ({}) is already active",
                v.label(),
                v.id
            )));
        }
        let (planner, candidate) = (self.planner.clone(), v.clone());
        let proposed =
            tokio::task::spawn_blocking(move || planner.propose_loaded(&candidate, forced))
                .await
                .map_err(|e| {
                    Failure::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("starting the version did not finish: {e}"),
                    )
                })?;
        proposed.map_err(|e| {
            Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{} cannot start; the running version stays: {e}", v.label()),
            )
        })?;
        if self.shadow.status().id.as_deref() == Some(v.id.as_str()) {
            self.shadow.stop();
        }
        tracing::warn!(policy = %v.label(), id = %v.id, forced, "the operator activated a policy version");
        let target = v.id.clone();
        self.settle(move |s| s.active_id.as_deref() == Some(target.as_str()))
            .await
    }

    /// `POST /v1/policies/rollback`: back to the previous version at the next tick.
    pub async fn rollback(&self) -> Handled {
        let before = self.planner.status();
        let Some(previous) = before.fallback_id.clone() else {
            return Err(Failure::conflict(
                "there is no previous version to roll back to (none has been replaced since the start)",
            ));
        };
        self.planner.rollback();
        tracing::warn!(to = ?before.fallback, "the operator asked for a rollback");
        self.settle(move |s| s.active_id.as_deref() == Some(previous.as_str()))
            .await
    }

    /// Wait for the slot to reach `done`: 200 with the list once it has, 202 if it has not
    /// within [`SWAP_WAIT`] (the swap happens at the start of a tick).
    async fn settle(&self, done: impl Fn(&SlotStatus) -> bool) -> Handled {
        let until = Instant::now() + SWAP_WAIT;
        while !done(&self.planner.status()) {
            if Instant::now() >= until {
                return json_with(StatusCode::ACCEPTED, &self.list());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        json(&self.list())
    }

    /// `POST /v1/policies/{id}/shadow`: run it in shadow from the next tick.
    pub fn shadow(&self, id: &str) -> Handled {
        let v = self.find(id)?;
        if self.planner.status().active_id.as_deref() == Some(v.id.as_str()) {
            return Err(Failure::conflict(format!(
                "{} ({}) is the active version; shadow a different one",
                v.label(),
                v.id
            )));
        }
        tracing::info!(policy = %v.label(), id = %v.id, "the operator started a shadow candidate");
        self.shadow.run(v.clone());
        json_with(StatusCode::ACCEPTED, &self.view(&v, "shadow"))
    }

    /// `DELETE /v1/shadow`: stop the shadow.
    pub fn stop_shadow(&self) -> Handled {
        self.shadow.stop();
        json_with(
            StatusCode::ACCEPTED,
            &serde_json::json!({"message": "the shadow candidate stops at the next tick"}),
        )
    }

    /// The shadow's comparison so far.
    pub fn shadow_status(&self) -> Arc<ShadowStatus> {
        self.shadow.status()
    }

    /// The planner slot's handle (its ledger feeds `/metrics`).
    pub fn planner(&self) -> &SwapHandle {
        &self.planner
    }
}

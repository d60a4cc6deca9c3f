//! The cluster's policy: the controller's running version, its settings and its learned
//! state, kept in etcd so that every proxy runs the same version and a new controller
//! starts from its predecessor's state.
//!
//! - **Publishing.** While it holds the office, the controller writes the version it runs
//!   (component and settings, as given) whenever it changes: a swap on the controller,
//!   by its file watcher or by signal, reaches the cluster. Components are stored by their
//!   sha256 under `<prefix>/components/<sha256>/`, in chunks that fit etcd's request
//!   limit; `<prefix>/policy` names the one in force. The two versions named last are
//!   kept, the others deleted.
//! - **Following.** Every other proxy watches `<prefix>/policy` and swaps the named
//!   version in (with its own state handed over) when it runs another, so that its policy
//!   is warm when it is elected. A component whose bytes do not match their sha256 is
//!   refused.
//! - **Checkpoints.** Every `checkpoint_ticks` ticks the controller asks its policy for
//!   its state (`snapshot`, between two ticks) and stores it under `<prefix>/policy-state`.
//!   A proxy elected controller restores the latest checkpoint (`restore`) before its first
//!   decision when it runs the version that took it; otherwise it keeps its own state.
//!
//! Every write is conditional on the office, so a deposed controller cannot overwrite
//! its successor's policy or state.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{DeleteOptions, GetOptions, TxnOp, WatchOptions};
use serde::{Deserialize, Serialize};

use super::Store;
use super::link::Link;
use super::store::failed;
use crate::engine::{Checkpoint, SwapHandle, sha256_hex};

/// The largest chunk of a stored component or state: well under etcd's default request
/// limit of 1.5 MiB.
const CHUNK: usize = 512 * 1024;

/// Pause before trying etcd again after a failure.
const RETRY: Duration = Duration::from_millis(500);

/// `<prefix>/policy`: the version in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// sha256 of the component.
    pub sha256: String,
    /// Its `name@version`.
    pub label: String,
    /// Its settings, as given (with `[limits]`).
    pub settings: String,
    /// Its size in bytes.
    pub bytes: usize,
    /// The version named before, kept for a rollback.
    pub previous: Option<String>,
}

/// `<prefix>/policy-state`: the controller's latest checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    /// sha256 of the component that took it.
    sha256: String,
    label: String,
    /// sha256 of the state.
    digest: String,
    bytes: usize,
    /// Where its chunks are: `<prefix>/policy-state/<generation>/`.
    generation: u64,
}

/// Keeps this proxy's policy in step with the cluster's.
pub struct PolicySync {
    store: Store,
    link: Arc<Link>,
    handle: SwapHandle,
    /// Ticks between two checkpoints.
    checkpoint_ticks: u64,
    /// The tick interval.
    interval: Duration,
}

impl PolicySync {
    /// Sync `handle`'s slot through `link`, a checkpoint every `checkpoint_ticks` ticks of
    /// `interval`.
    pub fn new(
        link: Arc<Link>,
        handle: SwapHandle,
        checkpoint_ticks: u64,
        interval: Duration,
    ) -> Self {
        PolicySync {
            store: link.store().clone(),
            link,
            handle,
            checkpoint_ticks: checkpoint_ticks.max(1),
            interval,
        }
    }

    /// Publish while leading and follow otherwise, for as long as the process lives.
    pub async fn run(self) {
        let this = Arc::new(self);
        tokio::join!(this.clone().lead(), this.follow());
    }

    /// The controller's part: resume the last checkpoint once per term, publish each new
    /// version, store checkpoints.
    async fn lead(self: Arc<Self>) {
        let mut term_seen = None;
        let mut published: Option<Published> = None;
        let mut ticks = 0u64;
        loop {
            tokio::time::sleep(self.interval).await;
            let Some(term) = self.link.term() else {
                term_seen = None;
                continue;
            };
            if term_seen != Some(term) {
                // Elected: learn what is in force, and start from the last checkpoint. A
                // checkpoint taken in an earlier term and never stored is dropped.
                let _ = self.handle.take_checkpoint();
                match self.read_json::<Published>("policy").await {
                    Ok(p) => published = p,
                    Err(e) => {
                        tracing::warn!("cannot read the cluster's policy: {e}; retrying");
                        continue;
                    }
                }
                if let Err(e) = self.resume().await {
                    tracing::warn!("cannot read the policy's checkpoint: {e}; retrying");
                    continue;
                }
                term_seen = Some(term);
                ticks = 0;
            }
            let Some(running) = self.handle.running() else {
                continue;
            };
            let same = published.as_ref().is_some_and(|p| {
                p.sha256 == running.sha256 && p.settings == running.source.settings
            });
            if !same {
                let previous = match &published {
                    Some(p) if p.sha256 != running.sha256 => Some(p.sha256.clone()),
                    Some(p) => p.previous.clone(),
                    None => None,
                };
                let header = Published {
                    sha256: running.sha256.clone(),
                    label: running.label(),
                    settings: running.source.settings.clone(),
                    bytes: running.source.component.len(),
                    previous,
                };
                match self.publish(term, &header, &running.source.component).await {
                    Ok(()) => {
                        tracing::info!(policy = %header.label, sha256 = %header.sha256, "published the controller's policy to the cluster");
                        published = Some(header);
                    }
                    Err(e) => tracing::warn!("cannot publish the policy: {e}"),
                }
            }
            ticks += 1;
            if ticks.is_multiple_of(self.checkpoint_ticks) {
                self.handle.ask_checkpoint();
            }
            if let Some(checkpoint) = self.handle.take_checkpoint()
                && let Err(e) = self.store_checkpoint(term, &checkpoint).await
            {
                tracing::warn!("cannot store the policy's checkpoint: {e}");
            }
        }
    }

    /// A follower's part: swap in the version the controller publishes.
    async fn follow(self: Arc<Self>) {
        let mut refused: Option<String> = None;
        loop {
            let revision = match self.sync(&mut refused).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("cannot read the cluster's policy: {e}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            // Wait for the next change (or a failed watch) before reading again.
            let watched = self
                .store
                .elections
                .clone()
                .watch(
                    self.store.key("policy"),
                    Some(WatchOptions::new().with_start_revision(revision + 1)),
                )
                .await;
            match watched {
                // Wait for an event: the watch's first answer may only confirm it.
                Ok(mut w) => loop {
                    match w.message().await {
                        Ok(Some(a)) if a.events().is_empty() && !a.canceled() => continue,
                        _ => break,
                    }
                },
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        }
    }

    /// Read what is in force and, unless leading, swap it in when this proxy runs
    /// another; the revision read at.
    async fn sync(&self, refused: &mut Option<String>) -> Result<i64, String> {
        let mut client = self.store.client.clone();
        let got = client
            .get(self.store.key("policy"), None)
            .await
            .map_err(|e| failed("reading the policy")(e).to_string())?;
        let revision = got.header().map_or(0, |h| h.revision());
        let Some(kv) = got.kvs().first() else {
            return Ok(revision);
        };
        let header: Published = serde_json::from_slice(kv.value())
            .map_err(|e| format!("an unreadable policy header: {e}"))?;
        let identity = format!(
            "{}:{}",
            header.sha256,
            sha256_hex(header.settings.as_bytes())
        );
        let running = self
            .handle
            .running()
            .map(|v| format!("{}:{}", v.sha256, sha256_hex(v.source.settings.as_bytes())));
        if self.link.term().is_some()
            || running.as_deref() == Some(identity.as_str())
            || refused.as_deref() == Some(identity.as_str())
        {
            return Ok(revision);
        }
        let component = self
            .read_chunks(&format!("components/{}/", header.sha256), header.bytes)
            .await?;
        if sha256_hex(&component) != header.sha256 {
            // Chunks still being written, or deleted by a newer publication: read again.
            return Err(format!(
                "the component of {} does not match its sha256 yet",
                header.label
            ));
        }
        let handle = self.handle.clone();
        let settings = header.settings.clone();
        let proposed =
            tokio::task::spawn_blocking(move || handle.propose(&component, &settings)).await;
        match proposed {
            Ok(Ok(_)) => {
                tracing::info!(policy = %header.label, sha256 = %header.sha256, "following the controller's policy");
            }
            Ok(Err(e)) => {
                *refused = Some(identity);
                tracing::error!(policy = %header.label, "the controller's policy was refused here: {e}");
            }
            Err(e) => return Err(e.to_string()),
        }
        Ok(revision)
    }

    /// The JSON value under `<prefix>/<rest>`, if there is a readable one.
    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        rest: &str,
    ) -> Result<Option<T>, String> {
        let mut client = self.store.client.clone();
        let got = client
            .get(self.store.key(rest), None)
            .await
            .map_err(|e| failed("reading the cluster's policy")(e).to_string())?;
        Ok(got
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok()))
    }

    /// The `bytes` bytes stored in chunks under `<prefix>/<rest>`, read a chunk a request (a
    /// whole blob in one answer could pass the client's message limit).
    async fn read_chunks(&self, rest: &str, bytes: usize) -> Result<Vec<u8>, String> {
        let mut client = self.store.client.clone();
        let mut out = Vec::with_capacity(bytes);
        for i in 0..bytes.div_ceil(CHUNK) {
            let got = client
                .get(self.store.key(&format!("{rest}{i:06}")), None)
                .await
                .map_err(|e| failed("reading a stored blob")(e).to_string())?;
            match got.kvs().first() {
                Some(kv) => out.extend_from_slice(kv.value()),
                None => return Err(format!("chunk {i} of {rest} is missing")),
            }
        }
        Ok(out)
    }

    /// Write `bytes` in chunks under `<prefix>/<rest>`, each conditional on `term`'s
    /// office.
    async fn write_chunks(&self, term: i64, rest: &str, bytes: &[u8]) -> Result<(), String> {
        for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
            let key = self.store.key(&format!("{rest}{i:06}"));
            self.link
                .guarded(
                    term,
                    vec![TxnOp::put(key, chunk.to_vec(), None)],
                    "storing a blob",
                )
                .await?;
        }
        Ok(())
    }

    /// Write `value` as JSON under `<prefix>/<rest>` in `term`.
    async fn put_json(
        &self,
        term: i64,
        rest: &str,
        value: &impl Serialize,
        doing: &'static str,
    ) -> Result<(), String> {
        let line = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        let op = TxnOp::put(self.store.key(rest), line, None);
        self.link.guarded(term, vec![op], doing).await
    }

    /// Delete every key under `<prefix>/<rest>` in `term`.
    async fn delete_prefix(
        &self,
        term: i64,
        rest: &str,
        doing: &'static str,
    ) -> Result<(), String> {
        let op = TxnOp::delete(
            self.store.key(rest),
            Some(DeleteOptions::new().with_prefix()),
        );
        self.link.guarded(term, vec![op], doing).await
    }

    /// Store the component, then name it in force; delete components named neither now
    /// nor before.
    async fn publish(&self, term: i64, header: &Published, component: &[u8]) -> Result<(), String> {
        let rest = format!("components/{}/", header.sha256);
        let stored = self.read_chunks(&rest, component.len()).await;
        if !stored.is_ok_and(|s| s == component) {
            self.write_chunks(term, &rest, component).await?;
        }
        self.put_json(term, "policy", header, "publishing the policy")
            .await?;
        let mut client = self.store.client.clone();
        let prefix = self.store.key("components/");
        let got = client
            .get(
                prefix.clone(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .map_err(|e| failed("listing components")(e).to_string())?;
        let keep = [Some(&header.sha256), header.previous.as_ref()];
        let mut stale: Vec<String> = got
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                let sha = key.strip_prefix(&prefix)?.split('/').next()?.to_owned();
                (!keep.contains(&Some(&sha))).then_some(sha)
            })
            .collect();
        stale.dedup();
        for sha in stale {
            let _ = self
                .delete_prefix(term, &format!("components/{sha}/"), "deleting a component")
                .await;
        }
        Ok(())
    }

    /// Store `checkpoint` as the latest, then delete the one before.
    async fn store_checkpoint(&self, term: i64, checkpoint: &Checkpoint) -> Result<(), String> {
        let before = self.read_json::<Stored>("policy-state").await?;
        let generation = before.as_ref().map_or(0, |s| s.generation + 1);
        let rest = format!("policy-state/{generation:020}/");
        self.write_chunks(term, &rest, &checkpoint.state).await?;
        let stored = Stored {
            sha256: checkpoint.sha256.clone(),
            label: checkpoint.label.clone(),
            digest: sha256_hex(&checkpoint.state),
            bytes: checkpoint.state.len(),
            generation,
        };
        self.put_json(
            term,
            "policy-state",
            &stored,
            "storing the policy's checkpoint",
        )
        .await?;
        if let Some(b) = before {
            let rest = format!("policy-state/{:020}/", b.generation);
            let _ = self
                .delete_prefix(term, &rest, "deleting a checkpoint")
                .await;
        }
        tracing::debug!(policy = %stored.label, bytes = stored.bytes, "stored the policy's checkpoint");
        Ok(())
    }

    /// Hand the last checkpoint to this proxy's policy, when there is a whole one; an error
    /// when etcd could not be read (the caller tries again).
    async fn resume(&self) -> Result<(), String> {
        let Some(stored) = self.read_json::<Stored>("policy-state").await? else {
            return Ok(());
        };
        let rest = format!("policy-state/{:020}/", stored.generation);
        let state = match self.read_chunks(&rest, stored.bytes).await {
            Ok(s) if sha256_hex(&s) == stored.digest => s,
            _ => {
                tracing::warn!(policy = %stored.label, "the policy's checkpoint is incomplete; the policy keeps its own state");
                return Ok(());
            }
        };
        tracing::info!(policy = %stored.label, bytes = state.len(), "resuming the previous controller's policy state");
        self.handle.resume(Checkpoint {
            sha256: stored.sha256,
            label: stored.label,
            state,
        });
        Ok(())
    }
}

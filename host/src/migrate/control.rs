//! What an operator sees of and does to migrations beyond the policy's view: keys copied,
//! which policy asked, cancellation, and the recent decision log kept in memory for paging.
//!
//! A migration can be cancelled until its cutover begins; it then rolls back like any
//! failure before the flip (the target's partial copy is deleted, the segment stays on the
//! source). Once requests are held, cancelling is refused: the cutover ends, one way or the
//! other, within `migration.cutover_timeout_ms`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use shardcast_sdk::types::{Migration, MigrationOutcome, MigrationPhase};
use tokio::sync::watch;

use super::{Executor, lock};

/// Lines of the decision log kept in memory.
pub const DECISIONS_KEPT: usize = 4096;

/// Bytes of the decision log kept in memory (the oldest lines go first past either bound).
pub const DECISIONS_KEPT_BYTES: usize = 16 << 20;

/// A migration as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct MigrationDetail {
    /// Its id.
    pub id: u64,
    /// The segment.
    pub segment: u32,
    /// Where it was.
    pub source: u32,
    /// Where it goes.
    pub target: u32,
    /// Its step: `start`, `copy`, `catch-up`, `cutover`, `cleanup`, `watch`.
    pub phase: &'static str,
    /// `running`, `completed`, `aborted` or `failed`.
    pub outcome: &'static str,
    /// When it started, ms since the Unix epoch.
    pub started_at: u64,
    /// When it ended.
    pub finished_at: Option<u64>,
    /// Bytes copied so far.
    pub bytes_moved: u64,
    /// How it ended, or what it is doing.
    pub detail: String,
    /// Keys copied so far (restored on the target).
    pub keys_moved: u64,
    /// The policy (`name@version`) that asked for it, or `recovery`.
    pub policy: String,
    /// Whether a cancellation was asked for.
    pub cancelling: bool,
}

/// Why a migration cannot be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No migration with that id is known here.
    #[error(
        "no migration {0} on this process (list them with GET /v1/migrations; in cluster mode only the controller runs migrations)"
    )]
    Unknown(u64),
    /// It has ended.
    #[error("migration {0} has already ended ({1})")]
    Ended(u64, &'static str),
    /// Its cutover has begun.
    #[error(
        "migration {0} is in its {1} step: requests are held and it ends within migration.cutover_timeout_ms; it cannot be cancelled now"
    )]
    TooLate(u64, &'static str),
}

/// Per-migration control state.
pub(super) struct Control {
    keys: u64,
    policy: String,
    cancel: watch::Sender<bool>,
}

/// The controls of the migrations in the executor's list.
#[derive(Default)]
pub(super) struct Controls {
    by_id: Mutex<HashMap<u64, Control>>,
    /// Migrations ended since the start, by outcome.
    outcomes: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// Lines of the decision log with their numbers, oldest first.
type Numbered = VecDeque<(u64, Arc<str>)>;

/// The recent decision log, numbered.
pub(super) struct Recent {
    /// The last line's number, the lines kept, and their bytes.
    lines: Mutex<(u64, Numbered, usize)>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            lines: Mutex::new((0, VecDeque::with_capacity(DECISIONS_KEPT), 0)),
        }
    }
}

impl Recent {
    pub(super) fn push(&self, line: &[u8]) {
        let Ok(text) = std::str::from_utf8(line) else {
            return;
        };
        let text: Arc<str> = Arc::from(text.trim_end());
        let mut lines = lock(&self.lines);
        let (next, kept, bytes) = &mut *lines;
        *next += 1;
        *bytes += text.len();
        kept.push_back((*next, text));
        while kept.len() > DECISIONS_KEPT || (*bytes > DECISIONS_KEPT_BYTES && kept.len() > 1) {
            if let Some((_, old)) = kept.pop_front() {
                *bytes -= old.len();
            }
        }
    }
}

/// A page of the decision log.
#[derive(Debug, Serialize)]
pub struct DecisionPage {
    /// The lines, oldest first, each `{"seq": n, ...the line}`.
    pub decisions: Vec<serde_json::Value>,
    /// The newest line's number overall (0 when none was written).
    pub latest: u64,
    /// The oldest line still kept.
    pub oldest: u64,
    /// Pass as `before` to page back, when older lines are kept.
    pub before: Option<u64>,
}

/// Which lines of the decision log to return.
#[derive(Clone, Debug, Default)]
pub struct DecisionQuery {
    /// Only lines numbered above this (tailing).
    pub after: Option<u64>,
    /// Only lines numbered below this (paging back).
    pub before: Option<u64>,
    /// At most this many (the newest of those matching, unless `after` is given).
    pub limit: usize,
    /// Only lines of this kind (`tick`, `shadow`, `outcome`, `refused`, `applied`,
    /// `drained`).
    pub kind: Option<String>,
    /// Only tick and shadow lines where the policy acted (or was refused, or faulted), and
    /// every other line.
    pub acting: bool,
}

/// The step's name, as the WIT spells it.
pub fn phase_name(p: MigrationPhase) -> &'static str {
    match p {
        MigrationPhase::Start => "start",
        MigrationPhase::Copy => "copy",
        MigrationPhase::CatchUp => "catch-up",
        MigrationPhase::Cutover => "cutover",
        MigrationPhase::Cleanup => "cleanup",
        MigrationPhase::Watch => "watch",
    }
}

/// The outcome's name, as the WIT spells it.
pub fn outcome_name(o: MigrationOutcome) -> &'static str {
    match o {
        MigrationOutcome::Running => "running",
        MigrationOutcome::Completed => "completed",
        MigrationOutcome::Aborted => "aborted",
        MigrationOutcome::Failed => "failed",
    }
}

fn acted(line: &serde_json::Value) -> bool {
    let nonempty = |v: &serde_json::Value| v.as_array().is_some_and(|a| !a.is_empty());
    !matches!(line["kind"].as_str(), Some("tick" | "shadow"))
        || nonempty(&line["accepted"])
        || nonempty(&line["rejected"])
        || nonempty(&line["faults"])
}

impl Executor {
    /// Track a migration's control state from its start.
    pub(super) fn control(&self, id: u64, policy: &str) -> watch::Receiver<bool> {
        let (cancel, rx) = watch::channel(false);
        lock(&self.controls.by_id).insert(
            id,
            Control {
                keys: 0,
                policy: policy.to_owned(),
                cancel,
            },
        );
        rx
    }

    /// The cancellation signal of migration `id` (one that never fires when it has none).
    pub(super) fn cancel_signal(&self, id: u64) -> watch::Receiver<bool> {
        match lock(&self.controls.by_id).get(&id) {
            Some(c) => c.cancel.subscribe(),
            None => watch::channel(false).1,
        }
    }

    /// Keys copied so far by migration `id`.
    pub(super) fn keys_moved(&self, id: u64, keys: u64) {
        if let Some(c) = lock(&self.controls.by_id).get_mut(&id) {
            c.keys = keys;
        }
    }

    /// Count a migration that ended with `outcome`.
    pub(super) fn count_outcome(&self, outcome: MigrationOutcome) {
        if outcome != MigrationOutcome::Running {
            *lock(&self.controls.outcomes)
                .entry(outcome_name(outcome))
                .or_insert(0) += 1;
        }
    }

    /// Migrations ended since the start, by outcome (`completed`, `aborted`).
    pub fn outcomes(&self) -> std::collections::BTreeMap<&'static str, u64> {
        lock(&self.controls.outcomes).clone()
    }

    /// Forget the controls of migrations no longer in the list.
    pub(super) fn prune_controls(&self, kept: &[Migration]) {
        lock(&self.controls.by_id).retain(|id, _| kept.iter().any(|m| m.id == *id));
    }

    /// Migrations in flight and recently finished, with keys moved and who asked.
    pub fn migration_details(&self) -> Vec<MigrationDetail> {
        let migrations = self.migrations();
        let controls = lock(&self.controls.by_id);
        migrations
            .into_iter()
            .map(|m| {
                let c = controls.get(&m.id);
                MigrationDetail {
                    id: m.id,
                    segment: m.segment,
                    source: m.source,
                    target: m.target,
                    phase: phase_name(m.phase),
                    outcome: outcome_name(m.outcome),
                    started_at: m.started_at,
                    finished_at: m.finished_at,
                    bytes_moved: m.bytes_moved,
                    detail: m.detail,
                    keys_moved: c.map_or(0, |c| c.keys),
                    policy: c.map_or_else(|| "recovery".to_owned(), |c| c.policy.clone()),
                    cancelling: c.is_some_and(|c| *c.cancel.borrow()),
                }
            })
            .collect()
    }

    /// Enter the cutover step unless a cancellation came first: false when it did. The step
    /// changes under the migrations' lock, which [`Executor::cancel`] holds while it checks
    /// the step and raises the flag, so a cancellation is either seen here or refused.
    pub(super) fn enter_cutover(&self, id: u64) -> bool {
        let mut migrations = lock(&self.migrations);
        let cancelled = lock(&self.controls.by_id)
            .get(&id)
            .is_some_and(|c| *c.cancel.borrow());
        if cancelled {
            return false;
        }
        if let Some(m) = migrations.iter_mut().find(|m| m.id == id) {
            m.phase = MigrationPhase::Cutover;
        }
        true
    }

    /// Ask migration `id` to stop and roll back, when its cutover has not begun.
    pub fn cancel(&self, id: u64) -> Result<(), CancelError> {
        // Held until the flag is raised: the migration cannot enter its cutover meanwhile.
        let migrations = lock(&self.migrations);
        let migration = migrations
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .ok_or(CancelError::Unknown(id))?;
        if migration.outcome != MigrationOutcome::Running {
            return Err(CancelError::Ended(id, outcome_name(migration.outcome)));
        }
        if !matches!(
            migration.phase,
            MigrationPhase::Start | MigrationPhase::Copy | MigrationPhase::CatchUp
        ) {
            return Err(CancelError::TooLate(id, phase_name(migration.phase)));
        }
        let controls = lock(&self.controls.by_id);
        let control = controls.get(&id).ok_or(CancelError::Unknown(id))?;
        control.cancel.send_replace(true);
        drop(migrations);
        tracing::warn!(
            migration = id,
            segment = migration.segment,
            policy = %control.policy,
            "the operator cancelled the migration; it rolls back"
        );
        Ok(())
    }

    /// A page of the recent decision log (the last [`DECISIONS_KEPT`] lines, at most
    /// [`DECISIONS_KEPT_BYTES`]).
    pub fn decisions(&self, q: &DecisionQuery) -> DecisionPage {
        // The lines are copied (shared pointers) under the lock and parsed outside it: the
        // tick thread appends under the same lock.
        let (latest, oldest, candidates) = {
            let lines = lock(&self.recent.lines);
            let (latest, kept, _) = &*lines;
            let candidates: Vec<(u64, Arc<str>)> = kept
                .iter()
                .filter(|(n, _)| q.after.is_none_or(|a| *n > a) && q.before.is_none_or(|b| *n < b))
                .cloned()
                .collect();
            (*latest, kept.front().map_or(0, |(n, _)| *n), candidates)
        };
        let matching = candidates.iter().filter_map(|(n, text)| {
            let mut v: serde_json::Value = serde_json::from_str(text).ok()?;
            if q.kind.as_ref().is_some_and(|k| v["kind"] != k.as_str()) || (q.acting && !acted(&v))
            {
                return None;
            }
            v["seq"] = (*n).into();
            Some(v)
        });
        let limit = q.limit.clamp(1, 1000);
        let decisions: Vec<serde_json::Value> = if q.after.is_some() {
            matching.take(limit).collect()
        } else {
            let all: Vec<_> = matching.collect();
            all[all.len().saturating_sub(limit)..].to_vec()
        };
        let first = decisions.first().and_then(|d| d["seq"].as_u64());
        DecisionPage {
            before: first.filter(|f| *f > oldest),
            decisions,
            latest,
            oldest,
        }
    }
}

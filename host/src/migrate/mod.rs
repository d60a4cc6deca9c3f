//! The executor: carries out the actions the controller accepted, against live instances.
//!
//! - `end`: one end of a copy (a raw connection and the commands sent on it);
//! - [`copy`]: moving keys between two instances (SCAN, DUMP/PEXPIRETIME, RESTORE REPLACE);
//! - [`journal`]: every migration step, durable before it runs;
//! - [`segment`]: one segment migration, start to watch;
//! - segment moves (`moves`): checked, run, their outcome recorded;
//! - instance actions (`instances`): activate a standby, drain an instance;
//! - recovery (`recover`): after a crash, every unfinished migration is resumed (past the
//!   flip) or rolled back (before it);
//! - stray copies (`stray`): keys an unreachable instance kept, deleted once it answers;
//! - [`tick_record`]: a tick's line in the decision log, bounded in size;
//! - the keyspace tap (`tap`): cluster mode's dirty-key tracking, from the source itself.
//!
//! In cluster mode (a link attached), the journal and the table live in etcd, the cutover
//! holds the segment on every proxy, table-only changes are written to etcd before they
//! are published (`table_change`), and nothing is done outside the controller's office.
//!
//! The executor owns the segment table's changes: a migration's flip and the table-only
//! split and merge go through one lock, are saved (when a state directory is configured),
//! then published to the proxy. It records migrations for the next tick's view and appends
//! every tick's decisions and every migration's outcome to the decision log.

pub mod control;
pub mod copy;
mod durable;
mod end;
mod instances;
pub mod journal;
mod moves;
mod recover;
pub mod segment;
mod stray;
mod table_change;
mod tap;
pub mod tick_record;

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use shardcast_sdk::types::{
    Action, InstanceId, Migration, MigrationOutcome, MigrationPhase, Rejection, RejectionReason,
    SegmentId,
};

use crate::config::MigrationConfig;
use crate::engine::TickReport;
use crate::proxy::gate::Gate;
use crate::telemetry::Telemetry;
use crate::topology::{SegmentTable, Topology};
use durable::{Durable, JournalFile};
use journal::{Journal, Record, Step};
use segment::{Plan, crash_point};

/// Finished migrations kept for the view.
const RECENT: usize = 64;

/// Refusals kept for the next tick's view (the oldest go first).
const REFUSALS: usize = 256;

/// Refusals written to the logs per tick; the rest are counted in one line.
const REFUSALS_LOGGED: usize = 16;

/// The first back-off after a cutover that pinned writes kept waiting; it doubles with each
/// such failure of the same segment, up to [`BACKOFF_MAX`].
const BACKOFF: Duration = Duration::from_secs(1);

/// The longest back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The executor could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory or a file in it is unusable.
    #[error("migration state {path}: {message}")]
    State {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the executor keeps its files.
pub struct StatePaths {
    /// The saved segment table.
    pub table: PathBuf,
    /// The migration journal.
    pub journal: PathBuf,
    /// The decision log.
    pub decisions: PathBuf,
}

impl StatePaths {
    /// The files under `config.state_dir`, creating the directory; `None` without one.
    pub fn of(config: &MigrationConfig) -> Result<Option<Self>, Error> {
        let Some(dir) = &config.state_dir else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::State {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Some(StatePaths {
            table: dir.join("table.json"),
            journal: dir.join("journal.jsonl"),
            decisions: dir.join("decisions.jsonl"),
        }))
    }
}

/// Cutover hold times, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct HoldStats {
    /// Cutovers measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Longest.
    pub max_us: u64,
}

/// Carries out accepted actions.
pub struct Executor {
    topology: Arc<Topology>,
    gate: Arc<Gate>,
    telemetry: Arc<Telemetry>,
    config: MigrationConfig,
    paths: Option<StatePaths>,
    journal: Mutex<Journal>,
    /// The state directory's lock, held for the executor's life.
    _held: Option<File>,
    /// The thread that makes journal records and table versions durable.
    durable: Durable,
    /// Serializes table changes (compute, then publish); no I/O happens under it.
    table_lock: Mutex<()>,
    migrations: Mutex<Vec<Migration>>,
    holds: Mutex<hdrhistogram::Histogram<u64>>,
    decisions: Option<Mutex<File>>,
    runtime: std::sync::OnceLock<tokio::runtime::Handle>,
    /// Copies to delete once their instance answers.
    strays: Mutex<Vec<stray::Stray>>,
    /// Slot ranges a sweep is deleting from now: no move of them may start.
    sweeping: Mutex<Vec<std::ops::RangeInclusive<u16>>>,
    /// Refusals since the last tick's view took them, and how many there were in all.
    refusals: Mutex<(Vec<Rejection>, usize)>,
    /// Segments whose moves back off: until when, and after how many failures.
    backoff: Mutex<std::collections::HashMap<SegmentId, (Instant, u32)>>,
    /// Cluster mode: the link to etcd.
    cluster: std::sync::OnceLock<Arc<crate::cluster::link::Link>>,
    /// Keys moved, who asked and cancellation, per migration.
    controls: control::Controls,
    /// The decision log's latest lines, for the admin API.
    recent: control::Recent,
}

/// One line of the decision log.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Decision<'a> {
    Tick {
        at_ms: u64,
        #[serde(flatten)]
        report: Box<tick_record::TickRecord<'a>>,
    },
    Outcome {
        at_ms: u64,
        policy: &'a str,
        migration: &'a Migration,
        hold_us: Option<u64>,
    },
    Refused {
        at_ms: u64,
        policy: &'a str,
        action: &'a Action,
        reason: &'a str,
    },
    Applied {
        at_ms: u64,
        policy: &'a str,
        action: &'a Action,
        epoch: u64,
    },
    /// What a shadow candidate would have done in a tick.
    Shadow {
        at_ms: u64,
        #[serde(flatten)]
        report: Box<tick_record::ShadowRecord<'a>>,
    },
    /// Refusals of one tick past those logged one by one.
    RefusalsCut { at_ms: u64, count: usize },
    /// A drain applied earlier has moved everything off: the instance is standby.
    Drained {
        at_ms: u64,
        policy: &'a str,
        instance: InstanceId,
        epoch: u64,
    },
}

impl Executor {
    /// An executor over `topology`, driving `gate`. Migrations run on the tokio runtime
    /// given to [`Executor::attach`].
    pub fn open(
        topology: Arc<Topology>,
        gate: Arc<Gate>,
        telemetry: Arc<Telemetry>,
        config: MigrationConfig,
    ) -> Result<Arc<Self>, Error> {
        let paths = StatePaths::of(&config)?;
        let state = |path: &PathBuf, message: String| Error::State {
            path: path.display().to_string(),
            message,
        };
        // One process per state directory: two would recover each other's migrations.
        let held = match &paths {
            Some(p) => {
                let path = p.journal.with_file_name("lock");
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| state(&path, e.to_string()))?;
                file.try_lock().map_err(|_| {
                    state(
                        &path,
                        "another shardcast process uses this state_dir; give each process its own [migration] state_dir".into(),
                    )
                })?;
                Some(file)
            }
            None => None,
        };
        let mut journal = match &paths {
            Some(p) => Journal::open(&p.journal).map_err(|e| state(&p.journal, e.to_string()))?,
            None => Journal::in_memory(),
        };
        let durable = Durable::start(
            journal.take_file().map(|(file, path)| JournalFile {
                file,
                path,
                compact_bytes: config.journal_compact_bytes,
            }),
            paths.as_ref().map(|p| p.table.clone()),
            topology.instances.clone(),
        )
        .map_err(|e| Error::State {
            path: "(durability thread)".into(),
            message: e.to_string(),
        })?;
        let decisions = match &paths {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p.decisions)
                    .map_err(|e| state(&p.decisions, e.to_string()))?,
            )),
            None => None,
        };
        Ok(Arc::new(Executor {
            topology,
            gate,
            telemetry,
            config,
            paths,
            journal: Mutex::new(journal),
            _held: held,
            durable,
            table_lock: Mutex::new(()),
            migrations: Mutex::new(Vec::new()),
            holds: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
                    .expect("static histogram bounds are valid"),
            ),
            decisions,
            runtime: std::sync::OnceLock::new(),
            strays: Mutex::new(Vec::new()),
            sweeping: Mutex::new(Vec::new()),
            refusals: Mutex::new((Vec::new(), 0)),
            backoff: Mutex::new(std::collections::HashMap::new()),
            cluster: std::sync::OnceLock::new(),
            controls: control::Controls::default(),
            recent: control::Recent::default(),
        }))
    }

    /// Run migrations, and the sweep of stray copies, on `runtime` from now on.
    pub fn attach(self: &Arc<Self>, runtime: tokio::runtime::Handle) {
        if self.runtime.set(runtime.clone()).is_ok() {
            self.start_sweeper(&runtime);
        }
    }

    /// Work in cluster mode through `link` from now on: the journal and the table in
    /// etcd, cutovers held on every proxy, and actions only while holding the office.
    pub fn attach_cluster(&self, link: Arc<crate::cluster::link::Link>) {
        let _ = self.cluster.set(link);
    }

    /// The cluster link, in cluster mode.
    pub(crate) fn link(&self) -> Option<&Arc<crate::cluster::link::Link>> {
        self.cluster.get()
    }

    /// The check for the instance work of controller `term` (none outside cluster mode).
    fn guard(&self, term: Option<i64>) -> Option<end::Guard> {
        let (term, link) = (term?, self.link()?.clone());
        Some(Arc::new(move || link.serving(term)))
    }

    /// True when this executor carries out actions: always in single-process mode; in
    /// cluster mode while this proxy holds the controller's office and etcd answers.
    pub fn acting(&self) -> bool {
        self.link().is_none_or(|l| l.deciding())
    }

    /// Migrations in flight and recently finished, for the view.
    pub fn migrations(&self) -> Vec<Migration> {
        lock(&self.migrations).clone()
    }

    /// The executor's refusals since the last call, for the next tick's view.
    pub fn take_refusals(&self) -> Vec<Rejection> {
        let (refusals, count) = std::mem::take(&mut *lock(&self.refusals));
        if count > REFUSALS_LOGGED {
            let unlogged = count - REFUSALS_LOGGED;
            tracing::info!(
                unlogged,
                "more refusals by the executor this tick than the log takes"
            );
            self.log(&Decision::RefusalsCut {
                at_ms: now_ms(),
                count: unlogged,
            });
        }
        refusals
    }

    /// How long moves of `segment` still back off, if they do.
    fn backing_off(&self, segment: SegmentId) -> Option<Duration> {
        let backoff = lock(&self.backoff);
        let (until, _) = backoff.get(&segment)?;
        until.checked_duration_since(Instant::now())
    }

    /// A cutover of `segment` found it pinned: back off, twice as long as last time.
    fn strike(&self, segment: SegmentId) {
        let mut backoff = lock(&self.backoff);
        let strikes = backoff.get(&segment).map(|(_, n)| n + 1).unwrap_or(0);
        let wait = BACKOFF
            .saturating_mul(1 << strikes.min(16))
            .min(BACKOFF_MAX);
        backoff.insert(segment, (Instant::now() + wait, strikes));
    }

    /// A move of `segment` completed: no more back-off.
    fn forgive(&self, segment: SegmentId) {
        lock(&self.backoff).remove(&segment);
    }

    /// Segments with a migration in flight.
    pub fn moving(&self) -> Vec<SegmentId> {
        lock(&self.migrations)
            .iter()
            .filter(|m| m.outcome == MigrationOutcome::Running)
            .map(|m| m.segment)
            .collect()
    }

    /// Cutover hold times so far.
    pub fn holds(&self) -> HoldStats {
        let h = lock(&self.holds);
        HoldStats {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }

    /// Append a tick's predictions, decisions and faults to the decision log.
    pub fn log_tick(&self, report: &TickReport) {
        self.log(&Decision::Tick {
            at_ms: now_ms(),
            report: Box::new(tick_record::TickRecord::of(report)),
        });
    }

    /// Append what a shadow candidate would have done to the decision log, as its own line
    /// (`kind: shadow`) after the tick's.
    pub fn log_shadow(&self, shadow: &crate::engine::ShadowTick) {
        self.log(&Decision::Shadow {
            at_ms: now_ms(),
            report: Box::new(tick_record::ShadowRecord::of(shadow)),
        });
    }

    /// Append to the decision log, rotating it past `migration.decision_log_bytes` (the
    /// previous log is kept as `decisions.jsonl.1`).
    fn log(&self, line: &Decision<'_>) {
        let Ok(mut text) = serde_json::to_vec(line) else {
            return;
        };
        self.recent.push(&text);
        let (Some(file), Some(paths)) = (&self.decisions, &self.paths) else {
            return;
        };
        text.push(b'\n');
        let mut file = lock(file);
        let full = file
            .metadata()
            .is_ok_and(|m| m.len() + text.len() as u64 > self.config.decision_log_bytes);
        if full {
            let rotated = paths.decisions.with_extension("jsonl.1");
            let reopened = std::fs::rename(&paths.decisions, &rotated).and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&paths.decisions)
            });
            match reopened {
                Ok(f) => *file = f,
                Err(e) => tracing::warn!(error = %e, "cannot rotate the decision log"),
            }
        }
        if let Err(e) = file.write_all(&text) {
            tracing::warn!(error = %e, "cannot append to the decision log");
        }
    }

    /// Refuse `action`: logged, in the decision log, and shown to the policy on its next
    /// tick as a rejection of `kind`.
    /// The runtime background work runs on; without one, `action` is refused as busy.
    fn runtime_for(&self, policy: &str, action: &Action) -> Option<&tokio::runtime::Handle> {
        let runtime = self.runtime.get();
        if runtime.is_none() {
            self.refuse(
                policy,
                action,
                RejectionReason::Busy,
                "the executor is not attached to a runtime",
            );
        }
        runtime
    }

    fn refuse(&self, policy: &str, action: &Action, kind: RejectionReason, reason: &str) {
        let count = {
            let mut refusals = lock(&self.refusals);
            let (list, count) = &mut *refusals;
            if list.len() >= REFUSALS {
                list.remove(0);
            }
            list.push(Rejection {
                action: *action,
                reason: kind,
                message: format!("executor: {reason}"),
            });
            *count += 1;
            *count
        };
        if count > REFUSALS_LOGGED {
            return;
        }
        tracing::info!(policy, segment = ?action.segment(), action = %action.describe(), reason, "executor refused an action");
        self.log(&Decision::Refused {
            at_ms: now_ms(),
            policy,
            action,
            reason,
        });
    }

    /// Carry out `action`, which `policy` (name@version) asked for.
    pub fn submit(self: &Arc<Self>, action: Action, policy: &str) {
        match &action {
            Action::MoveSegment(m) => self.start_move(m.segment, m.target, policy, &action),
            Action::SplitSegment(s) => {
                let (segment, at) = (s.segment, s.at_slot);
                self.reshape(policy, &action, &[segment], move |t| t.split(segment, at));
            }
            Action::MergeSegments(m) => {
                let (low, high) = (m.low, m.high);
                self.reshape(policy, &action, &[low, high], move |t| t.merge(low, high));
            }
            Action::ActivateStandby(i) => self.activate(*i, policy, &action),
            Action::DrainInstance(i) => self.drain(*i, policy, &action),
            Action::MoveSession(_) => {
                self.refuse(
                    policy,
                    &action,
                    RejectionReason::Invalid,
                    "not carried out by this version of the executor",
                );
            }
        }
    }

    fn reshape(
        self: &Arc<Self>,
        policy: &str,
        action: &Action,
        segments: &[SegmentId],
        change: impl Fn(&SegmentTable) -> Result<SegmentTable, String> + Send + Sync + 'static,
    ) {
        if self.link().is_some() {
            return self.reshape_in_cluster(policy, action, segments.to_vec(), change);
        }
        let next = {
            let _table = lock(&self.table_lock);
            // Checked under the table lock, which a flip takes to check its segment's range.
            if self.moving().iter().any(|s| segments.contains(s)) {
                return self.refuse(
                    policy,
                    action,
                    RejectionReason::AlreadyMigrating,
                    "the segment is migrating",
                );
            }
            let next = match change(&self.topology.table()) {
                Ok(t) => t,
                Err(reason) => {
                    return self.refuse(policy, action, RejectionReason::Invalid, &reason);
                }
            };
            self.topology.publish(next.clone());
            next
        };
        let epoch = next.epoch;
        // A table-only change moves no data: published first, then saved off the caller's
        // thread (a crash in between leaves the older table, which still routes every key
        // right).
        self.saved_later(self.save(next), "a split or merge");
        self.log(&Decision::Applied {
            at_ms: now_ms(),
            policy,
            action,
            epoch,
        });
    }

    /// Report a save's failure when it settles, without waiting for it here: the tick
    /// thread never waits for the disk.
    fn saved_later(&self, saved: durable::Outcome, what: &'static str) {
        let report = move |r: Result<(), String>| {
            if let Err(e) = r {
                tracing::error!(error = %e, "{what} is live but not saved; the next save includes it");
            }
        };
        match self.runtime.get() {
            Some(rt) => {
                rt.spawn(async move { report(durable::settled(saved).await) });
            }
            None => report(durable::wait(saved)),
        }
    }

    /// Queue `table` to be saved (by the durability thread).
    fn save(&self, table: SegmentTable) -> durable::Outcome {
        self.durable.save(Arc::new(table))
    }

    /// Flip `plan`'s segment to its target: journal the commit (durably, on the durability
    /// thread), then publish. The table is changed from the version current at publishing:
    /// recovery applies a journaled flip by ownership, not by epoch.
    async fn flip(&self, plan: &Plan) -> Result<(), String> {
        if let (Some(link), Some(term)) = (self.link(), plan.term) {
            return self.commit_in_cluster(link, term, plan).await;
        }
        let epoch = {
            let _table = lock(&self.table_lock);
            let table = self.topology.table();
            let target = self.topology.state(plan.target);
            if target != shardcast_sdk::types::InstanceState::Active {
                return Err(format!(
                    "the target is {} now, no longer active",
                    target.name()
                ));
            }
            match table.segments.iter().find(|s| s.id == plan.segment) {
                Some(s) if (s.slot_start..=s.slot_end) == plan.range => table.epoch + 1,
                Some(_) => return Err("the segment was split or merged meanwhile".into()),
                None => return Err("the segment is no longer in the table".into()),
            }
        };
        if let Err(e) = self.journal(plan, Step::Committed { epoch }).await {
            // Whether the commit reached the disk is unknown: rolling back could delete the
            // only copy a restart would then route to. Stop instead (nothing held has been
            // acknowledged); recovery decides from what the journal holds.
            tracing::error!(migration = plan.id, segment = plan.segment, error = %e, "cannot journal a commit; stopping so that recovery decides");
            std::process::abort();
        }
        crash_point("committed");
        let _table = lock(&self.table_lock);
        let table = self.topology.table();
        let row = table
            .segments
            .iter()
            .position(|s| s.id == plan.segment)
            .expect("a migrating segment is never split or merged");
        self.topology.publish(table.with_owner(row, plan.target));
        Ok(())
    }

    /// Cluster mode's flip: the commit record and the new table in one conditional
    /// transaction, then published here. An unknown outcome stops the process, as a
    /// journal failure does: the next controller decides from what etcd holds.
    async fn commit_in_cluster(
        &self,
        link: &crate::cluster::link::Link,
        term: i64,
        plan: &Plan,
    ) -> Result<(), String> {
        let mut table = (*self.topology.table()).clone();
        // A split, merge or instance change elsewhere in the table may get in first: the
        // flip is then worked out again from the stored table.
        for _ in 0..3 {
            let next = self.flipped(&table, plan)?;
            let record = self.record(plan, Step::Committed { epoch: next.epoch });
            match link.commit(term, &record, table.epoch, &next).await {
                Ok(true) => {
                    crash_point("committed");
                    self.topology.publish_newer(next);
                    return Ok(());
                }
                Ok(false) if link.serving(term) => {
                    table = link.stored_table().await?;
                }
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(migration = plan.id, segment = plan.segment, error = %e, "cannot tell whether a commit reached etcd; stopping so that the next controller decides");
                    std::process::abort();
                }
            }
        }
        Err(
            "the table kept changing in etcd or the controller's office was lost; nothing was committed"
                .into(),
        )
    }

    /// `table` with `plan`'s segment flipped to its target, if the segment is still the one
    /// planned, still on its source, and the target still active.
    fn flipped(&self, table: &SegmentTable, plan: &Plan) -> Result<SegmentTable, String> {
        let target = self.topology.state_in(table, plan.target);
        if target != shardcast_sdk::types::InstanceState::Active {
            return Err(format!(
                "the target is {} now, no longer active",
                target.name()
            ));
        }
        let Some(row) = table.segments.iter().position(|s| s.id == plan.segment) else {
            return Err("the segment is no longer in the table".into());
        };
        let s = &table.segments[row];
        if (s.slot_start..=s.slot_end) != plan.range {
            return Err("the segment was split or merged meanwhile".into());
        }
        if s.owner != plan.source {
            return Err("the segment's owner changed meanwhile".into());
        }
        Ok(table.with_owner(row, plan.target))
    }

    /// Save the current table; a failure is logged and returned.
    async fn save_current(&self) -> Result<(), String> {
        let saved = durable::settled(self.save((*self.topology.table()).clone())).await;
        if let Err(e) = &saved {
            tracing::warn!(error = %e, "cannot save the segment table; recovery applies flips from the journal");
        }
        saved
    }

    async fn journal(&self, plan: &Plan, step: Step) -> Result<(), String> {
        let record = self.record(plan, step);
        if let (Some(link), Some(term)) = (self.link(), plan.term) {
            return link.journal(term, &record).await;
        }
        if self.link().is_some() {
            return Err("this proxy does not hold the controller's office".into());
        }
        durable::settled(self.durable.append(record.line())).await
    }

    /// The journal record of `plan` at `step`, now.
    fn record(&self, plan: &Plan, step: Step) -> Record {
        Record {
            id: plan.id,
            segment: plan.segment,
            slot_start: *plan.range.start(),
            slot_end: *plan.range.end(),
            source: plan.source,
            target: plan.target,
            source_name: self.name(plan.source),
            target_name: self.name(plan.target),
            at_ms: now_ms(),
            step,
        }
    }

    fn phase(&self, id: u64, phase: MigrationPhase) {
        if let Some(m) = lock(&self.migrations).iter_mut().find(|m| m.id == id) {
            m.phase = phase;
        }
    }

    fn progress(&self, id: u64, copied: copy::Copied) {
        if let Some(m) = lock(&self.migrations).iter_mut().find(|m| m.id == id) {
            m.bytes_moved = copied.bytes;
        }
        self.keys_moved(id, copied.keys);
    }

    /// The deadline of each read and write of a copy.
    fn io_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.io_timeout_ms)
    }

    fn name(&self, id: InstanceId) -> Option<String> {
        self.topology
            .instances
            .get(id as usize)
            .map(|i| i.name.clone())
    }

    /// The id of the instance named `name` in the configuration as it is now.
    fn id_named(&self, name: &str) -> Option<InstanceId> {
        self.topology
            .instances
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.id)
    }

    fn address(&self, id: InstanceId) -> String {
        self.topology
            .instances
            .get(id as usize)
            .map(|i| i.address.clone())
            .unwrap_or_default()
    }
}

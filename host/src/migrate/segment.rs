//! One segment migration, step by step: start → copy → catch up → cutover → cleanup → watch.
//!
//! Each step is journaled before it runs. Until the table flips, the source is the owner:
//! any failure rolls back (the gate opens again, the target's partial copy is deleted).
//! After the flip the target is the owner and only the source's cleanup is left.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcast_sdk::types::{InstanceId, MigrationPhase, SegmentId};

use super::Executor;
use super::copy::{Budget, Copied, CopyError, End, copy_databases, copy_dirty};
use super::journal::Step;
use super::stray::Stray;
use super::tap::Tap;
use crate::cluster::link::Hold;
use crate::proxy::gate::SlotState;

/// What to move.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Cluster mode: the lease of the controller's office the migration runs in; its work
    /// stops when that office ends.
    pub term: Option<i64>,
    /// Migration id.
    pub id: u64,
    /// The segment.
    pub segment: SegmentId,
    /// Its slots.
    pub range: RangeInclusive<u16>,
    /// Where it is.
    pub source: InstanceId,
    /// Where it goes.
    pub target: InstanceId,
}

impl Plan {
    /// The hold of this migration's cutover, as every proxy reads it (cluster mode).
    pub fn hold(&self) -> Hold {
        Hold {
            migration: self.id,
            slot_start: *self.range.start(),
            slot_end: *self.range.end(),
        }
    }
}

/// How a migration ended.
#[derive(Debug)]
pub enum Ended {
    /// The segment is on the target; the cutover held requests this long.
    Completed {
        /// Time from holding the segment to releasing it.
        hold: Duration,
        /// Keys and bytes moved in all.
        copied: Copied,
        /// False when the source still holds its old copy (retried at the next start).
        cleaned: bool,
        /// Keys copied while requests were held.
        final_keys: usize,
        /// Time from the start to the flip.
        elapsed: Duration,
    },
    /// Rolled back; the segment stays on the source.
    RolledBack(String),
}

/// Why a migration the operator cancelled rolled back.
const CANCELLED: &str = "cancelled by the operator before its cutover";

/// Completes when `signal` turns true; never, when its sender is gone.
async fn cancelled(signal: &mut tokio::sync::watch::Receiver<bool>) {
    if signal.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Stop the process without unwinding at a named step, when `SHARDCAST_CRASH_AT` names it:
/// the fault injection the crash tests use to kill shardcast at every step.
pub fn crash_point(step: &str) {
    static AT: std::sync::LazyLock<Option<String>> =
        std::sync::LazyLock::new(|| std::env::var("SHARDCAST_CRASH_AT").ok());
    if AT.as_deref() == Some(step) {
        tracing::error!(step, "SHARDCAST_CRASH_AT: stopping the process here");
        std::process::abort();
    }
}

impl Executor {
    /// Run `plan` to its end.
    pub(super) async fn migrate(self: &Arc<Self>, plan: &Plan) -> Ended {
        match self.forward(plan).await {
            Ok(done) => done,
            Err(reason) => {
                let _ = self.gate.take_dirty(plan.range.clone());
                match (self.link(), plan.term) {
                    (Some(link), Some(term)) => {
                        link.release(plan.segment, &plan.hold()).await;
                        if !link.serving(term) {
                            return Ended::RolledBack(format!(
                                "{reason}; left to the next controller, which resumes or rolls it back from the journal"
                            ));
                        }
                    }
                    _ => self.gate.set(plan.range.clone(), SlotState::Open),
                }
                let (reason, step) = match self.clear(plan.target, &plan.range, plan.term).await {
                    Ok(()) => (reason.clone(), Step::RolledBack { reason }),
                    Err(e) => {
                        let reason = format!(
                            "{reason}; the target's partial copy is deleted once it answers: {e}"
                        );
                        self.leave_stray(Stray {
                            plan: plan.clone(),
                            on: plan.target,
                            then: vec![Step::RolledBack {
                                reason: format!("{reason} (deleted later)"),
                            }],
                        });
                        (reason.clone(), Step::Stray { reason })
                    }
                };
                if let Err(e) = self.journal(plan, step).await {
                    tracing::warn!(migration = plan.id, segment = plan.segment, error = %e, "cannot journal a rollback");
                }
                Ended::RolledBack(reason)
            }
        }
    }

    async fn forward(self: &Arc<Self>, plan: &Plan) -> Result<Ended, String> {
        let range = plan.range.clone();
        let started = Instant::now();
        // The budgets are per instance: an instance takes part in at most `per_instance`
        // migrations at once, so each gets that share.
        let share = u64::from(self.config.per_instance.max(1));
        let budget = Budget {
            keys_per_sec: self.config.keys_per_sec.div_ceil(share),
            bytes_per_sec: self.config.bytes_per_sec.div_ceil(share),
            chunk: self.config.chunk_keys.max(1),
        };
        let e = |e: CopyError| e.to_string();

        let cluster = self.link().zip(plan.term);
        self.journal(plan, Step::Start).await?;
        crash_point("start");
        self.phase(plan.id, MigrationPhase::Start);
        if cluster.is_none() {
            self.gate.set(range.clone(), SlotState::Tracking);
        }
        let io = self.io_timeout();
        let guard = self.guard(plan.term);
        let mut source = End::connect(&self.address(plan.source), io)
            .await
            .map_err(e)?
            .guarded(guard.clone());
        let mut target = End::connect(&self.address(plan.target), io)
            .await
            .map_err(e)?
            .guarded(guard);
        // Keys a crashed or rolled-back earlier attempt left behind must not come back.
        target.clear(&range).await.map_err(e)?;
        // Cluster mode: every proxy's writes are seen at the source, from before the copy.
        let tap = match cluster {
            Some(_) => Some(
                Tap::start(&mut source, range.clone(), self.gate.clone(), io)
                    .await
                    .map_err(e)?,
            ),
            None => None,
        };

        self.journal(plan, Step::Copy).await?;
        crash_point("copy");
        self.phase(plan.id, MigrationPhase::Copy);
        // Until the cutover, an operator's cancellation stops the copy where it is; the
        // rollback deletes what reached the target.
        let mut cancel = self.cancel_signal(plan.id);
        let bulk = async {
            let progress = |c: Copied| self.progress(plan.id, c);
            let mut copied = copy_databases(&mut source, &mut target, &range, budget, progress)
                .await
                .map_err(e)?;

            self.journal(plan, Step::CatchUp).await?;
            crash_point("catch-up");
            self.phase(plan.id, MigrationPhase::CatchUp);
            let mut rounds = 0;
            while self.gate.dirty_len(range.clone()) > self.config.cutover_dirty_keys {
                rounds += 1;
                if rounds > self.config.catch_up_rounds {
                    return Err(format!(
                        "catch-up did not converge in {} rounds: writes outpace the copy",
                        self.config.catch_up_rounds
                    ));
                }
                let dirty = self.gate.take_dirty(range.clone());
                copied += copy_dirty(&mut source, &mut target, &dirty, budget.chunk, false)
                    .await
                    .map_err(e)?
                    .0;
                self.progress(plan.id, copied);
            }
            Ok(copied)
        };
        let mut copied = tokio::select! {
            copied = bulk => copied?,
            () = cancelled(&mut cancel) => return Err(CANCELLED.into()),
        };
        // Past this point a cancellation is refused: the step changes and the flag is read
        // under the lock `cancel` takes.
        if !self.enter_cutover(plan.id) {
            return Err(CANCELLED.into());
        }

        self.journal(plan, Step::Cutover).await?;
        crash_point("cutover");
        // Open WATCHes and blocking commands last as long as their clients like: wait for
        // them without holding anything, and give up (backing off) if they stay.
        let wait = Duration::from_millis(self.config.cutover_wait_ms);
        if !self.gate.unpinned(range.clone(), wait).await {
            self.strike(plan.segment);
            return Err(format!(
                "an open WATCH or a blocking command pinned the segment for {} ms; nothing was held, and moves of it back off",
                wait.as_millis()
            ));
        }
        let held_at = Instant::now();
        if cluster.is_none() {
            self.gate.set(range.clone(), SlotState::Held);
        }
        // The whole hold is bounded: a hung instance or a slow last copy rolls back (and
        // releases the held requests to the source) instead of holding the segment.
        let bound = Duration::from_millis(self.config.cutover_timeout_ms);
        let last = tokio::time::timeout(bound, async {
            if let (Some((link, term)), Some(tap)) = (cluster, &tap) {
                // Every live proxy holds the segment and has drained its writes there;
                // then every key event the source queued for them has arrived.
                link.hold(term, plan.segment, &plan.hold(), bound).await?;
                tap.barrier(bound).await?;
            } else if !self.gate.drain(range.clone(), wait).await {
                self.strike(plan.segment);
                return Err(format!(
                    "writes were still in flight on the segment after {} ms (an open WATCH/MULTI or a blocking command); the transaction was left alone",
                    wait.as_millis()
                ));
            }
            // The last keys in one round trip to each side, verified in the same pipelines.
            let dirty = self.gate.take_dirty(range.clone());
            let (last, (on_source, on_target)) =
                copy_dirty(&mut source, &mut target, &dirty, budget.chunk, true)
                    .await
                    .map_err(e)?;
            if on_source != on_target {
                return Err(format!(
                    "verification failed: {on_source} of the last {} keys on the source, {on_target} on the target",
                    dirty.len()
                ));
            }
            Ok((last, dirty.len()))
        })
        .await
        .map_err(|_| {
            format!(
                "the cutover took longer than {} ms (migration.cutover_timeout_ms)",
                bound.as_millis()
            )
        })?;
        let (last, final_keys) = last?;
        copied += last;
        self.progress(plan.id, copied);
        self.flip(plan)
            .await
            .map_err(|e| format!("cannot commit the flip: {e}"))?;
        match cluster {
            Some((link, _)) => link.release(plan.segment, &plan.hold()).await,
            None => self.gate.set(range.clone(), SlotState::Open),
        }
        drop(tap);
        let hold = held_at.elapsed();
        let elapsed = started.elapsed();
        // The journal's commit record is what recovery trusts; the saved table catches up
        // here, outside the hold, and must be on disk before the source's copy goes (a
        // finished migration is not replayed at recovery). In cluster mode the commit
        // wrote the table.
        let saved = match cluster {
            Some(_) => Ok(()),
            None => self.save_current().await,
        };

        self.phase(plan.id, MigrationPhase::Cleanup);
        let cleaned = match saved {
            Ok(()) => source.clear(&range).await,
            Err(e) => Err(super::copy::CopyError {
                instance: "(state_dir)".into(),
                doing: "saving the table before cleanup",
                message: e,
            }),
        };
        let cleaned = match cleaned {
            Ok(()) => match self.journal(plan, Step::CleanedUp).await {
                Ok(()) => {
                    crash_point("cleanup");
                    true
                }
                Err(e) => {
                    tracing::warn!(migration = plan.id, segment = plan.segment, error = %e, "cannot journal the cleanup");
                    false
                }
            },
            Err(err) => {
                tracing::warn!(migration = plan.id, segment = plan.segment, error = %err, "source cleanup failed; retried when the source answers");
                self.leave_stray(Stray {
                    plan: plan.clone(),
                    on: plan.source,
                    then: vec![Step::CleanedUp, Step::Done],
                });
                false
            }
        };
        self.phase(plan.id, MigrationPhase::Watch);
        Ok(Ended::Completed {
            hold,
            copied,
            cleaned,
            final_keys,
            elapsed,
        })
    }
}

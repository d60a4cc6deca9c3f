//! Segment moves: checking a move against what is running (segment, per-instance limit),
//! recording it, running it to its end, and recording the outcome (with the watch step's
//! before-and-after p99) in the view and the decision log.

use std::sync::Arc;
use std::time::Duration;

use shardcast_sdk::types::{
    Action, InstanceId, Migration, MigrationOutcome, MigrationPhase, RejectionReason, SegmentId,
};

use super::journal::Step;
use super::segment::{Ended, Plan};
use super::{Decision, Executor, RECENT, lock, now_ms};

impl Executor {
    pub(super) fn start_move(
        self: &Arc<Self>,
        segment: SegmentId,
        target: InstanceId,
        policy: &str,
        action: &Action,
    ) {
        let Some(runtime) = self.runtime_for(policy, action) else {
            return;
        };
        match self.begin_move(segment, target) {
            Ok(plan) => {
                let me = self.clone();
                let policy = policy.to_owned();
                runtime.spawn(async move { me.run_move(&plan, &policy).await });
            }
            Err((kind, reason)) => self.refuse(policy, action, kind, &reason),
        }
    }

    /// Check a move and record it as running: its plan, or why it cannot start now.
    pub(super) fn begin_move(
        &self,
        segment: SegmentId,
        target: InstanceId,
    ) -> Result<Plan, (RejectionReason, String)> {
        let no = |kind, why: &str| Err((kind, why.to_owned()));
        let table = self.topology.table();
        let Some(seg) = table.segments.iter().find(|s| s.id == segment).copied() else {
            return no(RejectionReason::UnknownSegment, "unknown segment");
        };
        if self.topology.instances.get(target as usize).is_none() {
            return no(RejectionReason::UnknownInstance, "unknown target instance");
        }
        if self.topology.state(target) != shardcast_sdk::types::InstanceState::Active {
            return no(RejectionReason::TargetNotActive, "the target is not active");
        }
        if seg.owner == target {
            return no(
                RejectionReason::Invalid,
                "the segment is already on the target",
            );
        }
        let range = seg.slot_start..=seg.slot_end;
        if let Some(wait) = self.backing_off(segment) {
            return Err((
                RejectionReason::Busy,
                format!(
                    "moves of segment {segment} are backing off after a cutover that open transactions or blocking commands kept waiting; next try in {} ms",
                    wait.as_millis()
                ),
            ));
        }
        let pins = self.gate.pinned(range.clone());
        if pins > 0 {
            return Err((
                RejectionReason::Busy,
                format!(
                    "{pins} open WATCH(es) or blocking command(s) pin segment {segment}; a cutover would only wait for them"
                ),
            ));
        }
        let mut migrations = lock(&self.migrations);
        let running: Vec<&Migration> = migrations
            .iter()
            .filter(|m| m.outcome == MigrationOutcome::Running)
            .collect();
        if running.iter().any(|m| m.segment == segment) {
            return no(
                RejectionReason::AlreadyMigrating,
                "the segment is already migrating",
            );
        }
        if self.sweeping(&range) {
            return no(
                RejectionReason::Busy,
                "a stray copy of the segment's slots is being deleted; ask again",
            );
        }
        let busy = |i: InstanceId| {
            running
                .iter()
                .filter(|m| m.source == i || m.target == i)
                .count() as u32
        };
        if busy(seg.owner) >= self.config.per_instance || busy(target) >= self.config.per_instance {
            return no(
                RejectionReason::MigrationLimit,
                "per-instance migration limit reached",
            );
        }
        let term = match self.link() {
            Some(link) => match link.term() {
                Some(t) => Some(t),
                None => {
                    return no(
                        RejectionReason::Busy,
                        "this proxy does not hold the controller's office",
                    );
                }
            },
            None => None,
        };
        let id = match term {
            // Unique across controllers: a successor is elected a lease later at least.
            Some(_) => (now_ms() << 10) | (lock(&self.journal).next_id() & 0x3ff),
            None => lock(&self.journal).next_id(),
        };
        migrations.push(Migration {
            id,
            segment,
            source: seg.owner,
            target,
            phase: MigrationPhase::Start,
            outcome: MigrationOutcome::Running,
            started_at: now_ms(),
            finished_at: None,
            bytes_moved: 0,
            detail: String::new(),
        });
        Ok(Plan {
            term,
            id,
            segment,
            range: seg.slot_start..=seg.slot_end,
            source: seg.owner,
            target,
        })
    }

    /// Run a started move to its end and record the outcome; true if it completed.
    ///
    /// Every line logged on the way is inside a `migration` span naming the migration, its
    /// segment and the policy that asked for it.
    pub(super) async fn run_move(self: &Arc<Self>, plan: &Plan, policy: &str) -> bool {
        use tracing::Instrument as _;
        let span = tracing::info_span!("migration", id = plan.id, segment = plan.segment, policy);
        async {
            let before = self.instance_p99(plan);
            let _control = self.control(plan.id, policy);
            let ended = self.migrate(plan).await;
            let completed = matches!(ended, Ended::Completed { .. });
            if completed {
                self.forgive(plan.segment);
            }
            self.finish(plan, ended, before, policy).await;
            completed
        }
        .instrument(span)
        .await
    }

    pub(super) fn instance_p99(&self, plan: &Plan) -> (f64, f64) {
        let p99 = self
            .telemetry
            .instances_latest(shardcast_sdk::types::Metric::LatencyP99Us);
        let at = |i: InstanceId| p99.get(i as usize).copied().unwrap_or(0.0);
        (at(plan.source), at(plan.target))
    }

    pub(super) async fn finish(&self, plan: &Plan, ended: Ended, before: (f64, f64), policy: &str) {
        let (outcome, detail, hold_us) = match ended {
            Ended::Completed {
                hold,
                copied,
                cleaned,
                final_keys,
                elapsed,
            } => {
                let hold_us = hold.as_micros() as u64;
                let _ = lock(&self.holds).record(hold_us.max(1));
                // Watch: one interval later, how the two instances' tails moved.
                tokio::time::sleep(self.telemetry.interval().max(Duration::from_millis(10))).await;
                let after = self.instance_p99(plan);
                if cleaned {
                    let _ = self.journal(plan, Step::Done).await;
                }
                (
                    MigrationOutcome::Completed,
                    format!(
                        "{} keys ({} bytes), {} deleted, in {} ms; cutover held {hold_us} µs for {final_keys} keys; p99 source {:.0}→{:.0} µs, target {:.0}→{:.0} µs{}",
                        copied.keys,
                        copied.bytes,
                        copied.deleted,
                        elapsed.as_millis(),
                        before.0,
                        after.0,
                        before.1,
                        after.1,
                        if cleaned {
                            ""
                        } else {
                            "; source cleanup pending"
                        }
                    ),
                    Some(hold_us),
                )
            }
            Ended::RolledBack(reason) => (MigrationOutcome::Aborted, reason, None),
        };
        let record = {
            let mut migrations = lock(&self.migrations);
            let Some(m) = migrations.iter_mut().find(|m| m.id == plan.id) else {
                return;
            };
            m.outcome = outcome;
            m.finished_at = Some(now_ms());
            m.detail = detail;
            let record = m.clone();
            let finished = migrations
                .iter()
                .filter(|m| m.outcome != MigrationOutcome::Running)
                .count();
            if finished > RECENT
                && let Some(oldest) = migrations
                    .iter()
                    .position(|m| m.outcome != MigrationOutcome::Running)
            {
                migrations.remove(oldest);
            }
            self.prune_controls(&migrations);
            record
        };
        self.count_outcome(record.outcome);
        tracing::info!(migration = plan.id, segment = plan.segment, policy, outcome = ?record.outcome, "{}", record.detail);
        self.log(&Decision::Outcome {
            at_ms: now_ms(),
            policy,
            migration: &record,
            hold_us,
        });
    }
}

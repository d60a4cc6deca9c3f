//! Stray copies: keys left on an instance that does not own their slots, because the
//! instance could not be reached when they were to be deleted (the partial copy of a
//! migration rolled back while its target was down, the source's old copy after a flip).
//!
//! Each is journaled until it is gone and kept in a pending list, which a background sweep
//! works through every [`SWEEP`] and recovery at every start. A sweep deletes only the keys
//! of the stray's slots that the instance does not own in the current table, and never
//! while a migration moves any of those slots: a move that starts meanwhile waits for the
//! sweep (it is refused with a reason, and the policy asks again).

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use shardcast_sdk::types::{InstanceId, MigrationOutcome};

use super::copy::{CopyError, End};
use super::journal::Step;
use super::segment::Plan;
use super::{Executor, lock};

/// How often pending stray copies are tried again.
pub const SWEEP: Duration = Duration::from_secs(2);

/// A copy to delete: where, which slots, and what to journal once it is gone.
#[derive(Clone, Debug)]
pub struct Stray {
    /// The migration that left it.
    pub plan: Plan,
    /// The instance holding it.
    pub on: InstanceId,
    /// Steps journaled for the migration once it is deleted.
    pub then: Vec<Step>,
}

impl Executor {
    /// Delete the keys of `range` on `instance` whose slots it does not own now, for work
    /// of controller `term` (cluster mode).
    pub(super) async fn clear(
        &self,
        instance: InstanceId,
        range: &RangeInclusive<u16>,
        term: Option<i64>,
    ) -> Result<(), CopyError> {
        let table = self.topology.table();
        let mut end = End::connect(&self.address(instance), self.io_timeout())
            .await?
            .guarded(self.guard(term));
        end.clear_where(&|s| range.contains(&s) && table.owner(s) != instance)
            .await
    }

    /// Remember a copy that could not be deleted now.
    pub(super) fn leave_stray(&self, stray: Stray) {
        tracing::warn!(
            migration = stray.plan.id,
            segment = stray.plan.segment,
            instance = stray.on,
            "a stray copy waits for its instance; deletion is retried"
        );
        lock(&self.strays).push(stray);
    }

    /// Stray copies still to delete.
    pub fn strays(&self) -> usize {
        lock(&self.strays).len()
    }

    /// True when a sweep is deleting keys of slots that overlap `range`.
    pub(super) fn sweeping(&self, range: &RangeInclusive<u16>) -> bool {
        lock(&self.sweeping)
            .iter()
            .any(|r| r.start() <= range.end() && range.start() <= r.end())
    }

    /// Try every pending stray copy once; how many are left.
    pub async fn sweep(&self) -> usize {
        let pending = std::mem::take(&mut *lock(&self.strays));
        let mut left = Vec::new();
        for stray in pending {
            let range = stray.plan.range.clone();
            {
                // Checked and marked under the migrations' lock, which a move takes to start.
                let migrations = lock(&self.migrations);
                let table = self.topology.table();
                let moving = migrations
                    .iter()
                    .filter(|m| m.outcome == MigrationOutcome::Running)
                    .filter_map(|m| table.segments.iter().find(|s| s.id == m.segment))
                    .any(|s| s.slot_start <= *range.end() && *range.start() <= s.slot_end);
                if moving {
                    left.push(stray);
                    continue;
                }
                lock(&self.sweeping).push(range.clone());
            }
            let cleared = self.clear(stray.on, &range, stray.plan.term).await;
            lock(&self.sweeping).retain(|r| *r != range);
            match cleared {
                Ok(()) => {
                    for step in &stray.then {
                        let _ = self.journal(&stray.plan, step.clone()).await;
                    }
                    tracing::info!(
                        migration = stray.plan.id,
                        segment = stray.plan.segment,
                        instance = stray.on,
                        "stray copy deleted"
                    );
                }
                Err(e) => {
                    tracing::debug!(migration = stray.plan.id, segment = stray.plan.segment, error = %e, "stray copy still unreachable");
                    left.push(stray);
                }
            }
        }
        let mut strays = lock(&self.strays);
        strays.extend(left);
        strays.len()
    }

    /// Sweep every [`SWEEP`] for as long as the executor lives.
    pub(super) fn start_sweeper(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let me = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(SWEEP).await;
                let Some(me) = me.upgrade() else { return };
                if me.strays() > 0 {
                    me.sweep().await;
                }
            }
        });
    }
}

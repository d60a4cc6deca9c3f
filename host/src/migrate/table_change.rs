//! Table-only changes in cluster mode: splits, merges and instance states.
//!
//! One process publishes such a change and saves it. In cluster mode the table lives in
//! etcd, so the controller writes the change there first, by compare-and-swap on the
//! table's epoch and on its office, and publishes it here once written; every other proxy
//! follows the stored table. When a flip got in first (the epoch moved), the change is
//! worked out again from the stored table. Nothing moves data, so either outcome of a
//! write whose answer was lost is safe: the table in etcd is the one every proxy follows,
//! this one included.

use std::sync::Arc;

use shardcast_sdk::types::{Action, InstanceId, InstanceState, RejectionReason, SegmentId};

use super::{Decision, Executor, now_ms};
use crate::topology::SegmentTable;

/// Attempts at one change while flips keep changing the stored table.
const ATTEMPTS: usize = 5;

impl Executor {
    /// Apply `change` to the stored table in the controller's term, then publish it here;
    /// the new epoch.
    pub(super) async fn change_in_cluster(
        &self,
        change: impl Fn(&SegmentTable) -> Result<SegmentTable, String>,
    ) -> Result<u64, String> {
        let link = self.link().ok_or("not in cluster mode")?;
        let term = link
            .term()
            .ok_or("this proxy no longer holds the controller's office")?;
        let mut table = (*self.topology.table()).clone();
        for _ in 0..ATTEMPTS {
            let next = change(&table)?;
            if link.swap_table(term, table.epoch, &next).await? {
                let epoch = next.epoch;
                self.topology.publish_newer(next);
                return Ok(epoch);
            }
            table = link.stored_table().await?;
        }
        Err("the table kept changing in etcd; try again".into())
    }

    /// Cluster mode's split or merge of `segments`: off the tick thread, then logged.
    pub(super) fn reshape_in_cluster(
        self: &Arc<Self>,
        policy: &str,
        action: &Action,
        segments: Vec<SegmentId>,
        change: impl Fn(&SegmentTable) -> Result<SegmentTable, String> + Send + Sync + 'static,
    ) {
        let me = self.clone();
        self.in_cluster(policy, action, async move {
            me.change_in_cluster(|t| {
                if me.moving().iter().any(|s| segments.contains(s)) {
                    return Err("the segment is migrating".into());
                }
                change(t)
            })
            .await
        });
    }

    /// Set instance `id` to `state` in the cluster's table, if it is `from` there now.
    pub(super) async fn set_state_in_cluster(
        &self,
        id: InstanceId,
        from: InstanceState,
        state: InstanceState,
    ) -> Result<u64, String> {
        self.change_in_cluster(|t| {
            let mut states = self.topology.states_in(t);
            let others = states
                .iter()
                .enumerate()
                .filter(|&(i, s)| i != id as usize && *s == InstanceState::Active)
                .count();
            if state == InstanceState::Draining && others == 0 {
                return Err("no other active instance to drain to".into());
            }
            match states.get_mut(id as usize) {
                Some(s) if *s == from => *s = state,
                Some(s) => {
                    return Err(format!("the instance is {}, not {}", s.name(), from.name()));
                }
                None => return Err(format!("unknown instance {id}")),
            }
            Ok(t.with_states(states))
        })
        .await
    }

    /// Run `change` on the executor's runtime; log it as applied at the epoch it returns,
    /// or refuse `action` with its error.
    pub(super) fn in_cluster(
        self: &Arc<Self>,
        policy: &str,
        action: &Action,
        change: impl std::future::Future<Output = Result<u64, String>> + Send + 'static,
    ) {
        let Some(runtime) = self.runtime_for(policy, action) else {
            return;
        };
        let (me, policy, action) = (self.clone(), policy.to_owned(), *action);
        runtime.spawn(async move {
            match change.await {
                Ok(epoch) => me.log(&Decision::Applied {
                    at_ms: now_ms(),
                    policy: &policy,
                    action: &action,
                    epoch,
                }),
                Err(e) => me.refuse(&policy, &action, RejectionReason::Busy, &e),
            }
        });
    }
}

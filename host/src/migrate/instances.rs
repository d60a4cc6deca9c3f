//! Instance actions: bring a standby into service, and drain an instance (move every
//! segment off it, hottest first, one migration at a time, then make it standby).
//!
//! Instance states live in the segment table (versioned, saved with it), so a restart keeps
//! them; a draining instance takes no new segments because moves to a non-active target are
//! refused, and an instance becomes standby only once no migration onto it is in flight
//! (a migration's flip also checks that its target is still active).

use std::sync::Arc;
use std::time::Duration;

use shardcast_sdk::types::{Action, InstanceId, InstanceState, Metric, RejectionReason};

use super::{Decision, Executor, durable, lock, now_ms};

/// Attempts at moving one segment off a draining instance before the drain stops.
const DRAIN_ATTEMPTS: u32 = 5;

/// Refusals in a row (one each 200 ms) before a drain stops waiting to start a move.
const BUSY_WAITS: u32 = 300;

impl Executor {
    /// Set instance `id` to `state`: a new table version, published, and queued to be
    /// saved; its epoch and the save's outcome.
    fn set_state(
        &self,
        id: InstanceId,
        state: InstanceState,
    ) -> Result<(u64, durable::Outcome), String> {
        let next = {
            let _table = lock(&self.table_lock);
            let mut states = self.topology.states();
            let slot = states
                .get_mut(id as usize)
                .ok_or_else(|| format!("unknown instance {id}"))?;
            *slot = state;
            let next = self.topology.table().with_states(states);
            self.topology.publish(next.clone());
            next
        };
        Ok((next.epoch, self.save(next)))
    }

    /// One more wait of a drain (200 ms); past [`BUSY_WAITS`] in a row, the drain is refused
    /// with `why` and this returns false.
    async fn wait_a_little(
        &self,
        waits: &mut u32,
        policy: &str,
        action: &Action,
        why: impl FnOnce() -> String,
    ) -> bool {
        *waits += 1;
        if *waits > BUSY_WAITS {
            let reason = format!("{} for {} s; drain stopped", why(), BUSY_WAITS / 5);
            self.refuse(policy, action, RejectionReason::Busy, &reason);
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        true
    }

    /// True while a migration onto `id` is in flight.
    fn incoming(&self, id: InstanceId) -> bool {
        lock(&self.migrations)
            .iter()
            .any(|m| m.target == id && m.outcome == shardcast_sdk::types::MigrationOutcome::Running)
    }

    fn applied(&self, policy: &str, action: &Action, epoch: u64) {
        self.log(&Decision::Applied {
            at_ms: now_ms(),
            policy,
            action,
            epoch,
        });
    }

    pub(super) fn activate(self: &Arc<Self>, id: InstanceId, policy: &str, action: &Action) {
        if self.link().is_some() {
            let me = self.clone();
            return self.in_cluster(policy, action, async move {
                me.set_state_in_cluster(id, InstanceState::Standby, InstanceState::Active)
                    .await
            });
        }
        if self.topology.state(id) != InstanceState::Standby {
            return self.refuse(
                policy,
                action,
                RejectionReason::Invalid,
                "the instance is not standby",
            );
        }
        match self.set_state(id, InstanceState::Active) {
            Ok((epoch, saved)) => {
                self.saved_later(saved, "an activation");
                tracing::info!(policy, instance = id, "standby instance activated");
                self.applied(policy, action, epoch);
            }
            Err(e) => self.refuse(policy, action, RejectionReason::Busy, &e),
        }
    }

    pub(super) fn drain(self: &Arc<Self>, id: InstanceId, policy: &str, action: &Action) {
        if self.topology.state(id) != InstanceState::Active {
            return self.refuse(
                policy,
                action,
                RejectionReason::Invalid,
                "the instance is not active",
            );
        }
        if self.topology.active().len() < 2 {
            return self.refuse(
                policy,
                action,
                RejectionReason::Invalid,
                "no other active instance to drain to",
            );
        }
        let Some(runtime) = self.runtime_for(policy, action) else {
            return;
        };
        let me = self.clone();
        let (policy, action) = (policy.to_owned(), *action);
        if self.link().is_some() {
            runtime.spawn(async move {
                let draining = me
                    .set_state_in_cluster(id, InstanceState::Active, InstanceState::Draining)
                    .await;
                match draining {
                    Ok(epoch) => me.applied(&policy, &action, epoch),
                    Err(e) => return me.refuse(&policy, &action, RejectionReason::Busy, &e),
                }
                me.drain_off(id, &policy, &action).await
            });
            return;
        }
        match self.set_state(id, InstanceState::Draining) {
            Ok((epoch, saved)) => {
                self.saved_later(saved, "a drain");
                self.applied(&policy, &action, epoch)
            }
            Err(e) => return self.refuse(&policy, &action, RejectionReason::Busy, &e),
        }
        runtime.spawn(async move { me.drain_off(id, &policy, &action).await });
    }

    /// Go on with every drain the table shows unfinished (an instance still `draining`):
    /// after a restart, or in a controller that took over from one that was draining.
    pub fn resume_drains(self: &Arc<Self>) {
        let Some(runtime) = self.runtime.get() else {
            return;
        };
        for (id, state) in self.topology.states().into_iter().enumerate() {
            if state != InstanceState::Draining {
                continue;
            }
            let id = id as InstanceId;
            tracing::warn!(instance = id, "resuming an unfinished drain");
            let me = self.clone();
            let action = Action::DrainInstance(id);
            runtime.spawn(async move { me.drain_off(id, "recovery", &action).await });
        }
    }

    /// Make the drained instance `id` standby: in the cluster's table in cluster mode, else
    /// here, saved; the new epoch.
    async fn standby(&self, id: InstanceId) -> Result<u64, String> {
        if self.link().is_some() {
            return self
                .set_state_in_cluster(id, InstanceState::Draining, InstanceState::Standby)
                .await;
        }
        let (epoch, saved) = self.set_state(id, InstanceState::Standby)?;
        if let Err(e) = durable::settled(saved).await {
            tracing::error!(error = %e, "the drained state is live but not saved");
        }
        Ok(epoch)
    }

    /// Move every segment off `id`, each to the active instance owning the fewest, then
    /// make it standby. A segment that cannot be moved after a few attempts stops the drain
    /// (the instance stays `draining`, serving what it still owns).
    async fn drain_off(self: &Arc<Self>, id: InstanceId, policy: &str, action: &Action) {
        let mut failures = 0;
        let mut waits = 0;
        loop {
            let table = self.topology.table();
            // Hottest first: the load it carries leaves the instance soonest.
            let ops = self.telemetry.segments_latest(Metric::Ops);
            let hot = |row: usize| {
                (ops.len() == table.segments.len())
                    .then(|| ops[row])
                    .filter(|x| x.is_finite())
                    .unwrap_or(0.0)
            };
            let hottest = table
                .segments
                .iter()
                .enumerate()
                .filter(|(_, s)| s.owner == id)
                .max_by(|(a, _), (b, _)| hot(*a).total_cmp(&hot(*b)).then(b.cmp(a)));
            let Some(segment) = hottest.map(|(_, s)| *s) else {
                // A migration onto it that started before the drain may still flip: wait
                // for it, then move its segment off too.
                if self.incoming(id) {
                    if !self
                        .wait_a_little(&mut waits, policy, action, || {
                            format!("a migration onto instance {id} did not end")
                        })
                        .await
                    {
                        return;
                    }
                    continue;
                }
                match self.standby(id).await {
                    Ok(epoch) => {
                        tracing::info!(policy, instance = id, "drained; now standby");
                        self.log(&Decision::Drained {
                            at_ms: now_ms(),
                            policy,
                            instance: id,
                            epoch,
                        });
                    }
                    Err(e) => self.refuse(policy, action, RejectionReason::Busy, &e),
                }
                return;
            };
            let active = self.topology.active();
            let Some(&target) = active
                .iter()
                .filter(|&&i| i != id)
                .min_by_key(|&&i| table.segments.iter().filter(|s| s.owner == i).count())
            else {
                return self.refuse(
                    policy,
                    action,
                    RejectionReason::Invalid,
                    "no active instance left to drain to",
                );
            };
            let moved = match self.begin_move(segment.id, target) {
                Ok(plan) => {
                    waits = 0;
                    self.run_move(&plan, policy).await
                }
                Err((_, reason)) => {
                    // Busy (per-instance limit, a move of this segment in flight, a pinned
                    // segment): later, but not forever.
                    if !self
                        .wait_a_little(&mut waits, policy, action, || {
                            format!(
                                "segment {} could not start moving off ({reason})",
                                segment.id
                            )
                        })
                        .await
                    {
                        return;
                    }
                    continue;
                }
            };
            if !moved {
                failures += 1;
                if failures >= DRAIN_ATTEMPTS {
                    return self.refuse(
                        policy,
                        action,
                        RejectionReason::Busy,
                        &format!(
                            "segment {} could not be moved off; drain stopped",
                            segment.id
                        ),
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

//! Recovery after a crash: every migration the journal left unfinished is finished or
//! rolled back before the proxy serves a request.
//!
//! First every journaled flip is applied to the table (in journal order), so that what
//! follows sees who owns what now. Then, for each migration:
//! - Committed (the flip is journaled): the target owns the segment; the source's copy is
//!   deleted.
//! - Cleaned up: only the final record is missing.
//! - Stray: rolled back earlier, the target's partial copy is still to delete.
//! - Any earlier step: the source still owns the segment and has every acknowledged write
//!   (requests were held, never acknowledged, from the cutover on). The target's partial
//!   copy is deleted and the migration is journaled as rolled back.
//!
//! Deletion only ever touches slots the instance does not own in the table, so a later
//! migration that made it the owner keeps its keys. An instance that cannot be reached
//! keeps its copy as a stray, retried in the background.

use super::Executor;
use super::journal::{Journal, Record, Step};
use super::segment::Plan;
use super::stray::Stray;

impl Executor {
    /// Finish or roll back every unfinished migration; one sentence per migration.
    pub async fn recover(&self) -> Vec<String> {
        let read = match (self.link(), &self.paths) {
            (Some(link), _) => link.unfinished().await,
            (None, Some(paths)) => Journal::read(&paths.journal).map_err(|e| e.to_string()),
            (None, None) => return Vec::new(),
        };
        let records = match read {
            Ok(r) => r,
            Err(e) => return vec![format!("cannot read the journal: {e}")],
        };
        let mut said = Vec::new();
        let mut open = Vec::new();
        for r in Journal::unfinished(&records) {
            match self.plan_of(&r) {
                Ok(plan) => open.push((r, plan)),
                Err(sentence) => {
                    tracing::error!(migration = r.id, segment = r.segment, "{sentence}");
                    said.push(sentence);
                }
            }
        }
        let mut flips = Vec::new();
        for (r, plan) in &open {
            if let Step::Committed { .. } | Step::CleanedUp = r.step {
                let later = records.iter().any(|l| {
                    l.id > r.id && l.slot_start <= r.slot_end && r.slot_start <= l.slot_end
                });
                flips.push((r.id, self.apply_flip(plan, later).await));
            }
        }
        for (r, plan) in open {
            let flip = flips
                .iter()
                .find(|(id, _)| *id == r.id)
                .map(|(_, said)| format!("; {said}"))
                .unwrap_or_default();
            let sentence = match &r.step {
                Step::CleanedUp => {
                    let _ = self.journal(&plan, Step::Done).await;
                    format!("migration {} of segment {}: finished", r.id, r.segment)
                }
                Step::Committed { .. } => {
                    let then = vec![Step::CleanedUp, Step::Done];
                    let cleared = self.clear_or_leave(&plan, plan.source, then).await;
                    format!(
                        "migration {} of segment {}: committed before the stop{flip}; the source's copy {cleared}",
                        r.id, r.segment
                    )
                }
                Step::Stray { reason } => {
                    let then = vec![Step::RolledBack {
                        reason: format!("{reason} (deleted later)"),
                    }];
                    let cleared = self.clear_or_leave(&plan, plan.target, then).await;
                    format!(
                        "migration {} of segment {}: rolled back earlier; the target's partial copy {cleared}",
                        r.id, r.segment
                    )
                }
                step => {
                    let reason =
                        format!("shardcast stopped during {step:?}; rolled back on restart");
                    let then = vec![Step::RolledBack { reason }];
                    let cleared = self.clear_or_leave(&plan, plan.target, then).await;
                    format!(
                        "migration {} of segment {}: stopped during {step:?}; rolled back, the segment stays on instance {}; the target's partial copy {cleared}",
                        r.id, r.segment, plan.source
                    )
                }
            };
            tracing::warn!(migration = r.id, segment = r.segment, "{sentence}");
            said.push(sentence);
        }
        said
    }

    /// The plan a journal record describes, with its instances resolved by name.
    fn plan_of(&self, r: &Record) -> Result<Plan, String> {
        let resolve = |name: &Option<String>, id: u32| match name {
            Some(n) => self.id_named(n).ok_or_else(|| n.clone()),
            None => Ok(id),
        };
        match (
            resolve(&r.source_name, r.source),
            resolve(&r.target_name, r.target),
        ) {
            (Ok(source), Ok(target)) => Ok(Plan {
                term: self.link().and_then(|l| l.term()),
                id: r.id,
                segment: r.segment,
                range: r.slot_start..=r.slot_end,
                source,
                target,
            }),
            (Err(missing), _) | (_, Err(missing)) => Err(format!(
                "migration {} of segment {}: instance `{missing}` is no longer configured; left unfinished until it is listed again",
                r.id, r.segment
            )),
        }
    }

    /// Delete `plan`'s slots on `on` (those it does not own) and journal `then`, or leave
    /// them as a stray copy when `on` cannot be reached; says which.
    async fn clear_or_leave(&self, plan: &Plan, on: u32, then: Vec<Step>) -> String {
        match self.clear(on, &plan.range, plan.term).await {
            Ok(()) => {
                for step in then {
                    let _ = self.journal(plan, step).await;
                }
                "deleted".into()
            }
            Err(e) => {
                if on == plan.target
                    && let Some(Step::RolledBack { reason }) = then.first()
                {
                    let _ = self
                        .journal(
                            plan,
                            Step::Stray {
                                reason: reason.clone(),
                            },
                        )
                        .await;
                }
                self.leave_stray(Stray {
                    plan: plan.clone(),
                    on,
                    then,
                });
                format!("stays until the instance answers ({e})")
            }
        }
    }

    /// Make sure the table names `plan`'s target, unless a `later` migration of the same
    /// slots took over (its own records decide). Decided by ownership, not by epoch: other
    /// table changes may have been published between the commit and the flip.
    async fn apply_flip(&self, plan: &Plan, later: bool) -> String {
        let next = {
            let _table = super::lock(&self.table_lock);
            let table = self.topology.table();
            if table.owner(*plan.range.start()) == plan.target {
                return "the table had been saved".into();
            }
            if later {
                return "a later migration of its slots took over".into();
            }
            if table.owner(*plan.range.start()) != plan.source {
                return "the table names neither end of it: left as it is".into();
            }
            let Some(row) = table.segments.iter().position(|s| s.id == plan.segment) else {
                return "the segment is no longer in the table".into();
            };
            let next = table.with_owner(row, plan.target);
            self.topology.publish(next.clone());
            next
        };
        match super::durable::settled(self.save(next)).await {
            Ok(()) => "the flip applied to the saved table".into(),
            Err(e) => format!("the flip applied; saving the table failed: {e}"),
        }
    }
}

//! Recovery after a crash: every migration the journal left unfinished is finished or
//! rolled back before the proxy serves a request.
//!
//! - Committed (the flip is journaled): the target owns the segment. The flip is applied to
//!   the saved table if the crash came before it was saved, and the source's copy is
//!   deleted.
//! - Cleaned up: only the final record is missing.
//! - Any earlier step: the source still owns the segment and has every acknowledged write
//!   (requests were held, never acknowledged, from the cutover on). The target's partial
//!   copy is deleted and the migration is journaled as rolled back.

use super::Executor;
use super::journal::{Journal, Step};
use super::segment::Plan;

impl Executor {
    /// Finish or roll back every unfinished migration; one sentence per migration.
    pub async fn recover(&self) -> Vec<String> {
        let Some(paths) = &self.paths else {
            return Vec::new();
        };
        let records = match Journal::read(&paths.journal) {
            Ok(r) => r,
            Err(e) => return vec![format!("cannot read the journal: {e}")],
        };
        // A later migration of any overlapping slots (the same segment, or a piece of it
        // after a split) supersedes this one.
        let superseded = |r: &super::journal::Record| {
            records.iter().any(|later| {
                later.id > r.id && later.slot_start <= r.slot_end && r.slot_start <= later.slot_end
            })
        };
        let mut said = Vec::new();
        for r in Journal::unfinished(&records) {
            let resolve = |name: &Option<String>, id: u32| match name {
                Some(n) => self.id_named(n).ok_or_else(|| n.clone()),
                None => Ok(id),
            };
            let (source, target) = match (
                resolve(&r.source_name, r.source),
                resolve(&r.target_name, r.target),
            ) {
                (Ok(s), Ok(t)) => (s, t),
                (Err(missing), _) | (_, Err(missing)) => {
                    let sentence = format!(
                        "migration {} of segment {}: instance `{missing}` is no longer configured; left unfinished until it is listed again",
                        r.id, r.segment
                    );
                    tracing::error!(migration = r.id, "{sentence}");
                    said.push(sentence);
                    continue;
                }
            };
            let plan = Plan {
                id: r.id,
                segment: r.segment,
                range: r.slot_start..=r.slot_end,
                source,
                target,
            };
            if superseded(&r) {
                // A later migration of the segment started, and began by clearing its
                // target: whatever this one left is already gone.
                let _ = self.journal(&plan, Step::Done);
                continue;
            }
            let sentence = match &r.step {
                Step::Committed { epoch } => {
                    let applied = self.apply_flip(&plan, *epoch);
                    match self.clear(plan.source, &plan.range).await {
                        Ok(()) => {
                            let _ = self.journal(&plan, Step::CleanedUp);
                            let _ = self.journal(&plan, Step::Done);
                            format!(
                                "migration {} of segment {}: committed before the stop; {applied}; source cleaned up",
                                r.id, r.segment
                            )
                        }
                        Err(e) => format!(
                            "migration {} of segment {}: committed before the stop; {applied}; source cleanup failed ({e}), retried at the next start",
                            r.id, r.segment
                        ),
                    }
                }
                Step::CleanedUp => {
                    let _ = self.journal(&plan, Step::Done);
                    format!("migration {} of segment {}: finished", r.id, r.segment)
                }
                step => {
                    let cleared = match self.clear(plan.target, &plan.range).await {
                        Ok(()) => "the target's partial copy deleted".to_owned(),
                        Err(e) => {
                            format!("the target's partial copy stays until its next use ({e})")
                        }
                    };
                    let reason =
                        format!("shardcast stopped during {step:?}; rolled back on restart");
                    let _ = self.journal(&plan, Step::RolledBack { reason });
                    format!(
                        "migration {} of segment {}: stopped during {step:?}; rolled back, the segment stays on instance {}; {cleared}",
                        r.id, r.segment, plan.source
                    )
                }
            };
            tracing::warn!(migration = r.id, "{sentence}");
            said.push(sentence);
        }
        said
    }

    /// Make sure the table names `plan`'s target from `epoch` on.
    fn apply_flip(&self, plan: &Plan, epoch: u64) -> String {
        let _table = super::lock(&self.table_lock);
        let table = self.topology.table();
        if table.epoch >= epoch {
            return "the table had been saved".into();
        }
        let Some(row) = table.segments.iter().position(|s| s.id == plan.segment) else {
            return "the segment is no longer in the table".into();
        };
        let mut next = table.with_owner(row, plan.target);
        next.epoch = epoch;
        if let Err(e) = self.save(&next) {
            return format!("the flip could not be saved: {e}");
        }
        self.topology.publish(next);
        "the flip applied to the saved table".into()
    }
}

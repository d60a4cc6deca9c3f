//! The validator: every action a planner returns is checked against the view.
//!
//! Pure logic over plain data: the view, the limits and the recent-move history go in, the
//! accepted actions and the rejections (with reasons) come out. Rejections are shown to the
//! policy on its next tick. The host and the simulator both use it, so a policy meets the
//! same rules in simulation as in production.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::host_view::HostView;
use crate::types::{
    Action, Instance, InstanceId, InstanceState, MigrationOutcome, Rejection, RejectionReason,
    Segment, SegmentId, SessionId,
};
use serde::{Deserialize, Serialize};

/// The controller's churn limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnLimits {
    /// Segment moves allowed per window.
    pub moves_per_window: u32,
    /// Length of the window, in ticks.
    pub window_ticks: u64,
    /// Migrations in flight at once.
    pub max_concurrent_migrations: u32,
    /// Segment splits and merges allowed per window (each rewrites the segment table).
    pub reshapes_per_window: u32,
}

impl Default for ChurnLimits {
    fn default() -> Self {
        ChurnLimits {
            moves_per_window: 8,
            window_ticks: 60,
            max_concurrent_migrations: 2,
            reshapes_per_window: 16,
        }
    }
}

/// Ticks at which recent moves and reshapes (splits, merges) were accepted, for the
/// per-window budgets.
#[derive(Clone, Debug, Default)]
pub struct MoveHistory {
    ticks: VecDeque<u64>,
    reshapes: VecDeque<u64>,
}

fn in_window(ticks: &mut VecDeque<u64>, tick: u64, window: u64) -> usize {
    while ticks.front().is_some_and(|&t| t + window <= tick) {
        ticks.pop_front();
    }
    ticks.len()
}

/// The validator's answer for one tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verdict {
    /// Actions to execute, in the policy's order.
    pub accepted: Vec<Action>,
    /// Actions refused, with reasons.
    pub rejected: Vec<Rejection>,
}

/// What the validator needs to know of a view, indexed by id.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The tick being validated.
    pub tick: u64,
    instances: HashMap<InstanceId, Instance>,
    segments: HashMap<SegmentId, Segment>,
    sessions: HashSet<SessionId>,
    in_flight: usize,
    /// Targets of the migrations in flight.
    incoming: HashSet<InstanceId>,
}

impl Facts {
    /// Index what `view` holds.
    pub fn of(view: &dyn HostView) -> Self {
        Facts {
            tick: view.tick(),
            instances: view.instances().into_iter().map(|i| (i.id, i)).collect(),
            segments: view.segments().into_iter().map(|s| (s.id, s)).collect(),
            sessions: view.sessions().into_iter().map(|s| s.id).collect(),
            in_flight: view
                .migrations()
                .iter()
                .filter(|m| m.outcome == MigrationOutcome::Running)
                .count(),
            incoming: view
                .migrations()
                .iter()
                .filter(|m| m.outcome == MigrationOutcome::Running)
                .map(|m| m.target)
                .collect(),
        }
    }

    fn segment(&self, id: SegmentId) -> Option<&Segment> {
        self.segments.get(&id)
    }

    fn instance(&self, id: InstanceId) -> Option<&Instance> {
        self.instances.get(&id)
    }

    fn active(&self) -> usize {
        self.instances
            .values()
            .filter(|x| x.state == InstanceState::Active)
            .count()
    }
}

/// Check `actions` against `view`, the churn limits and the move history. The view is
/// indexed only when there is something to check.
pub fn validate(
    actions: Vec<Action>,
    view: &dyn HostView,
    limits: &ChurnLimits,
    history: &mut MoveHistory,
) -> Verdict {
    if actions.is_empty() {
        return Verdict::default();
    }
    validate_with(actions, &Facts::of(view), limits, history)
}

/// [`validate`] against already indexed facts.
///
/// The plan is checked as a whole, in order: each action is checked against the view as the
/// earlier accepted actions of the same plan leave it. A standby activated earlier may take
/// segments; an instance drained earlier may not, and an instance that earlier actions (or
/// migrations in flight) move data onto may not be drained.
pub fn validate_with(
    actions: Vec<Action>,
    view: &Facts,
    limits: &ChurnLimits,
    history: &mut MoveHistory,
) -> Verdict {
    let mut verdict = Verdict::default();
    let mut plan = PlanState::default();
    let mut seen = Vec::new();
    let in_flight = view.in_flight;
    let mut moves_now = 0usize;
    for action in actions {
        let mut check = Check {
            view,
            plan: &mut plan,
        };
        let result = if seen.contains(&action) {
            Err((
                RejectionReason::Duplicate,
                "the same action came earlier in this tick".to_owned(),
            ))
        } else {
            match &action {
                Action::MoveSegment(m) => check.move_segment(m.segment, m.target).and_then(|()| {
                    if in_flight + moves_now >= limits.max_concurrent_migrations as usize {
                        return Err((
                            RejectionReason::MigrationLimit,
                            format!(
                                "{} migrations in flight, the limit is {}",
                                in_flight + moves_now,
                                limits.max_concurrent_migrations
                            ),
                        ));
                    }
                    let recent = in_window(&mut history.ticks, view.tick, limits.window_ticks);
                    if recent >= limits.moves_per_window as usize {
                        return Err((
                            RejectionReason::MoveBudgetExceeded,
                            format!(
                                "{recent} moves in the last {} ticks, the budget is {}",
                                limits.window_ticks, limits.moves_per_window
                            ),
                        ));
                    }
                    Ok(())
                }),
                Action::SplitSegment(s) => reshape_budget(history, view.tick, limits)
                    .and_then(|()| check.split(s.segment, s.at_slot)),
                Action::MergeSegments(m) => reshape_budget(history, view.tick, limits)
                    .and_then(|()| check.merge(m.low, m.high)),
                Action::MoveSession(m) => check.move_session(m.session, m.target),
                Action::ActivateStandby(i) => check.activate(*i),
                Action::DrainInstance(i) => check.drain(*i),
            }
        };
        match result {
            Ok(()) => {
                check_commit(&mut plan, &action);
                match action {
                    Action::MoveSegment(_) => {
                        moves_now += 1;
                        history.ticks.push_back(view.tick);
                    }
                    Action::SplitSegment(_) | Action::MergeSegments(_) => {
                        history.reshapes.push_back(view.tick);
                    }
                    _ => {}
                }
                seen.push(action);
                verdict.accepted.push(action);
            }
            Err((reason, message)) => {
                seen.push(action);
                verdict.rejected.push(Rejection {
                    message: format!("{}: {message}", action.describe()),
                    action,
                    reason,
                });
            }
        }
    }
    verdict
}

fn reshape_budget(
    history: &mut MoveHistory,
    tick: u64,
    limits: &ChurnLimits,
) -> Result<(), Refusal> {
    let recent = in_window(&mut history.reshapes, tick, limits.window_ticks);
    if recent >= limits.reshapes_per_window as usize {
        return Err((
            RejectionReason::MoveBudgetExceeded,
            format!(
                "{recent} splits and merges in the last {} ticks, the budget is {}",
                limits.window_ticks, limits.reshapes_per_window
            ),
        ));
    }
    Ok(())
}

/// What the accepted actions of one plan have done so far.
#[derive(Default)]
struct PlanState {
    segments: HashSet<SegmentId>,
    instances: HashSet<InstanceId>,
    sessions: HashSet<SessionId>,
    /// Instances that accepted actions move data onto.
    targets: HashSet<InstanceId>,
    /// Standby instances activated by accepted actions.
    activated: HashSet<InstanceId>,
    /// Instances drained by accepted actions.
    drained: HashSet<InstanceId>,
}

/// Record what an accepted action does to the plan's picture of the fleet.
fn check_commit(plan: &mut PlanState, action: &Action) {
    match action {
        Action::MoveSegment(m) => {
            plan.targets.insert(m.target);
        }
        Action::MoveSession(m) => {
            plan.targets.insert(m.target);
        }
        Action::ActivateStandby(i) => {
            plan.activated.insert(*i);
        }
        Action::DrainInstance(i) => {
            plan.drained.insert(*i);
        }
        Action::SplitSegment(_) | Action::MergeSegments(_) => {}
    }
}

type Refusal = (RejectionReason, String);

struct Check<'a> {
    view: &'a Facts,
    plan: &'a mut PlanState,
}

impl Check<'_> {
    fn segment(&self, id: u32) -> Result<&Segment, Refusal> {
        self.view.segment(id).ok_or((
            RejectionReason::UnknownSegment,
            format!("segment {id} does not exist"),
        ))
    }

    fn claim_segment(&mut self, segment: &Segment) -> Result<(), Refusal> {
        if segment.migrating {
            return Err((
                RejectionReason::AlreadyMigrating,
                format!("segment {} is already migrating", segment.id),
            ));
        }
        if !self.plan.segments.insert(segment.id) {
            return Err((
                RejectionReason::Duplicate,
                format!(
                    "segment {} is already touched by an earlier action this tick",
                    segment.id
                ),
            ));
        }
        Ok(())
    }

    fn active_target(&self, target: InstanceId) -> Result<(), Refusal> {
        let instance = self.view.instance(target).ok_or((
            RejectionReason::UnknownInstance,
            format!("instance {target} does not exist"),
        ))?;
        if self.plan.drained.contains(&target) {
            return Err((
                RejectionReason::TargetNotActive,
                format!(
                    "target {} is drained by an earlier action of this plan",
                    instance.name
                ),
            ));
        }
        let activated = self.plan.activated.contains(&target);
        if instance.state != InstanceState::Active && !activated {
            return Err((
                RejectionReason::TargetNotActive,
                format!(
                    "target {} is {}, not active",
                    instance.name,
                    instance.state.name()
                ),
            ));
        }
        Ok(())
    }

    fn move_segment(&mut self, id: u32, target: InstanceId) -> Result<(), Refusal> {
        let segment = *self.segment(id)?;
        self.active_target(target)?;
        if segment.owner == target {
            return Err((
                RejectionReason::Invalid,
                format!("segment {id} is already on instance {target}"),
            ));
        }
        self.claim_segment(&segment)
    }

    fn split(&mut self, id: u32, at: u16) -> Result<(), Refusal> {
        let segment = *self.segment(id)?;
        if at <= segment.slot_start || at > segment.slot_end {
            return Err((
                RejectionReason::Invalid,
                format!(
                    "split point {at} is not inside segment {id} ({}..={}) above its first slot",
                    segment.slot_start, segment.slot_end
                ),
            ));
        }
        self.claim_segment(&segment)
    }

    fn merge(&mut self, low: u32, high: u32) -> Result<(), Refusal> {
        let a = *self.segment(low)?;
        let b = *self.segment(high)?;
        if a.slot_end as u32 + 1 != b.slot_start as u32 || a.owner != b.owner {
            return Err((
                RejectionReason::Invalid,
                format!("segments {low} and {high} are not adjacent on the same instance"),
            ));
        }
        self.claim_segment(&a)?;
        self.claim_segment(&b)
    }

    fn move_session(&mut self, session: u64, target: InstanceId) -> Result<(), Refusal> {
        if !self.view.sessions.contains(&session) {
            return Err((
                RejectionReason::UnknownSession,
                format!("session {session} does not exist"),
            ));
        }
        self.active_target(target)?;
        if !self.plan.sessions.insert(session) {
            return Err((
                RejectionReason::Duplicate,
                format!("session {session} is already moved this tick"),
            ));
        }
        Ok(())
    }

    fn activate(&mut self, id: InstanceId) -> Result<(), Refusal> {
        self.instance_in(id, InstanceState::Standby, "activate-standby")
    }

    fn drain(&mut self, id: InstanceId) -> Result<(), Refusal> {
        if self.plan.targets.contains(&id) {
            return Err((
                RejectionReason::Invalid,
                format!("instance {id} is the target of an earlier action of this plan"),
            ));
        }
        if self.view.incoming.contains(&id) {
            return Err((
                RejectionReason::Busy,
                format!("a migration onto instance {id} is in flight"),
            ));
        }
        self.instance_in(id, InstanceState::Active, "drain-instance")?;
        let active = self.view.active() + self.plan.activated.len();
        if active <= 1 + self.plan.drained.len() {
            self.plan.instances.remove(&id);
            return Err((
                RejectionReason::Invalid,
                "draining it would leave no active instance".to_owned(),
            ));
        }
        Ok(())
    }

    fn instance_in(
        &mut self,
        id: InstanceId,
        state: InstanceState,
        what: &str,
    ) -> Result<(), Refusal> {
        let instance = self.view.instance(id).ok_or((
            RejectionReason::UnknownInstance,
            format!("instance {id} does not exist"),
        ))?;
        if instance.state != state {
            return Err((
                RejectionReason::Invalid,
                format!(
                    "{what} needs a {} instance, {} is {}",
                    state.name(),
                    instance.name,
                    instance.state.name()
                ),
            ));
        }
        if !self.plan.instances.insert(id) {
            return Err((
                RejectionReason::Duplicate,
                format!("instance {id} is already touched this tick"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{MergeSegments, Migration, MoveSegment, SplitSegment};
    use crate::view::ViewSnapshot;

    fn mv(segment: u32, target: u32) -> Action {
        Action::MoveSegment(MoveSegment { segment, target })
    }

    fn view() -> ViewSnapshot {
        let mut v = ViewSnapshot::synthetic(3, 6, 0, 1);
        v.instances[2].state = InstanceState::Standby;
        v.segments[4].migrating = true;
        v.reindex();
        v
    }

    fn reasons(verdict: &Verdict) -> Vec<RejectionReason> {
        verdict.rejected.iter().map(|r| r.reason).collect()
    }

    #[test]
    fn each_rule_rejects_with_its_reason() {
        let limits = ChurnLimits {
            max_concurrent_migrations: 10,
            ..ChurnLimits::default()
        };
        let actions = vec![
            mv(99, 1), // unknown segment
            mv(0, 9),  // unknown instance
            mv(0, 2),  // standby target
            mv(4, 0),  // already migrating
            mv(0, 1),  // fine
            mv(0, 1),  // exact duplicate
            Action::SplitSegment(SplitSegment {
                segment: 0,
                at_slot: 100,
            }), // segment touched
            Action::ActivateStandby(0), // not standby
        ];
        let verdict = validate(actions, &view(), &limits, &mut MoveHistory::default());
        assert_eq!(verdict.accepted, vec![mv(0, 1)]);
        assert_eq!(
            reasons(&verdict),
            vec![
                RejectionReason::UnknownSegment,
                RejectionReason::UnknownInstance,
                RejectionReason::TargetNotActive,
                RejectionReason::AlreadyMigrating,
                RejectionReason::Duplicate,
                RejectionReason::Duplicate,
                RejectionReason::Invalid,
            ]
        );
        assert!(
            verdict.rejected[2].message.contains("standby"),
            "{}",
            verdict.rejected[2].message
        );
    }

    #[test]
    fn concurrent_limit_and_window_budget() {
        let limits = ChurnLimits {
            moves_per_window: 2,
            window_ticks: 10,
            max_concurrent_migrations: 1,
            ..ChurnLimits::default()
        };
        let mut history = MoveHistory::default();
        let mut v = view();
        v.segments[4].migrating = false;
        let verdict = validate(vec![mv(0, 1), mv(1, 0)], &v, &limits, &mut history);
        assert_eq!(reasons(&verdict), vec![RejectionReason::MigrationLimit]);
        let limits = ChurnLimits {
            max_concurrent_migrations: 10,
            ..limits
        };
        v.tick = 1;
        let verdict = validate(vec![mv(1, 0), mv(3, 1)], &v, &limits, &mut history);
        assert_eq!(reasons(&verdict), vec![RejectionReason::MoveBudgetExceeded]);
        v.tick = 11;
        let verdict = validate(vec![mv(3, 1)], &v, &limits, &mut history);
        assert!(
            verdict.rejected.is_empty(),
            "window has passed: {:?}",
            verdict.rejected
        );
    }

    #[test]
    fn split_and_merge_shape_rules() {
        let v = view();
        let limits = ChurnLimits::default();
        let s0 = v.segments[0];
        let ok = Action::SplitSegment(SplitSegment {
            segment: 0,
            at_slot: s0.slot_start + 1,
        });
        let bad = Action::SplitSegment(SplitSegment {
            segment: 1,
            at_slot: s0.slot_start,
        });
        let merge = Action::MergeSegments(MergeSegments { low: 1, high: 2 });
        let verdict = validate(
            vec![ok, bad, merge],
            &v,
            &limits,
            &mut MoveHistory::default(),
        );
        assert_eq!(verdict.accepted, vec![ok]);
        assert_eq!(
            reasons(&verdict),
            vec![RejectionReason::Invalid, RejectionReason::Invalid]
        );
    }

    #[test]
    fn cannot_drain_the_last_active_instance() {
        let mut v = view();
        v.instances[1].state = InstanceState::Standby;
        v.reindex();
        let verdict = validate(
            vec![Action::DrainInstance(0)],
            &v,
            &ChurnLimits::default(),
            &mut MoveHistory::default(),
        );
        assert_eq!(reasons(&verdict), vec![RejectionReason::Invalid]);
    }

    #[test]
    fn a_plan_is_checked_as_a_whole() {
        let limits = ChurnLimits {
            max_concurrent_migrations: 10,
            ..ChurnLimits::default()
        };
        let v = view();
        // Data onto instance 1, then a drain of it: the drain is refused.
        let verdict = validate(
            vec![mv(0, 1), Action::DrainInstance(1)],
            &v,
            &limits,
            &mut MoveHistory::default(),
        );
        assert_eq!(verdict.accepted, vec![mv(0, 1)]);
        assert_eq!(reasons(&verdict), vec![RejectionReason::Invalid]);
        // A drain, then data onto the drained instance: the move is refused.
        let verdict = validate(
            vec![Action::DrainInstance(1), mv(0, 1)],
            &v,
            &limits,
            &mut MoveHistory::default(),
        );
        assert_eq!(verdict.accepted, vec![Action::DrainInstance(1)]);
        assert_eq!(reasons(&verdict), vec![RejectionReason::TargetNotActive]);
        // A standby activated earlier in the plan may take segments at once.
        let verdict = validate(
            vec![Action::ActivateStandby(2), mv(0, 2)],
            &v,
            &limits,
            &mut MoveHistory::default(),
        );
        assert_eq!(verdict.accepted, vec![Action::ActivateStandby(2), mv(0, 2)]);
    }

    #[test]
    fn no_drain_of_an_instance_a_migration_is_moving_onto() {
        let mut v = view();
        v.migrations.push(Migration {
            id: 1,
            segment: 4,
            source: 0,
            target: 1,
            phase: crate::types::MigrationPhase::Copy,
            outcome: MigrationOutcome::Running,
            started_at: 0,
            finished_at: None,
            bytes_moved: 0,
            detail: String::new(),
        });
        let verdict = validate(
            vec![Action::DrainInstance(1)],
            &v,
            &ChurnLimits::default(),
            &mut MoveHistory::default(),
        );
        assert_eq!(reasons(&verdict), vec![RejectionReason::Busy]);
    }

    #[test]
    fn splits_and_merges_have_a_budget() {
        let v = ViewSnapshot::synthetic(2, 64, 0, 1);
        let limits = ChurnLimits {
            reshapes_per_window: 3,
            window_ticks: 10,
            ..ChurnLimits::default()
        };
        let splits: Vec<Action> = v
            .segments
            .iter()
            .map(|s| {
                Action::SplitSegment(SplitSegment {
                    segment: s.id,
                    at_slot: s.slot_start + 1,
                })
            })
            .collect();
        let mut history = MoveHistory::default();
        let verdict = validate(splits.clone(), &v, &limits, &mut history);
        assert_eq!(verdict.accepted.len(), 3);
        assert!(
            reasons(&verdict)
                .iter()
                .all(|r| *r == RejectionReason::MoveBudgetExceeded)
        );
        let mut later = v.clone();
        later.tick = 10;
        assert_eq!(
            validate(splits, &later, &limits, &mut history)
                .accepted
                .len(),
            3
        );
    }
}

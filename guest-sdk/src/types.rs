//! Plain Rust types mirroring the WIT package `shardcast:policy@0.1.0`.
//!
//! They are generated from the WIT, so they cannot drift from the contract, and they derive
//! `Clone`, `PartialEq`, `Debug` and serde's traits so that fixtures and reports can be
//! written as data. This module adds the conveniences the generated code lacks.

pub use crate::__bindings::types::{
    Action, Failure, FailureKind, FailureRisk, Instance, InstanceId, InstanceState, Level,
    LoadForecast, MergeSegments, Metric, Migration, MigrationOutcome, MigrationPhase, MoveSegment,
    MoveSession, PolicyInfo, Predictions, Rejection, RejectionReason, Scope, Segment,
    SegmentColumns, SegmentId, Session, SessionHealth, SessionId, SplitSegment, TimestampMs,
};

/// Number of hash slots, as in Redis Cluster.
pub const SLOTS: u16 = 16_384;

impl Metric {
    /// Every metric, in WIT order.
    pub const ALL: [Metric; 14] = [
        Metric::Ops,
        Metric::Reads,
        Metric::Writes,
        Metric::BytesIn,
        Metric::BytesOut,
        Metric::LatencyP50Us,
        Metric::LatencyP99Us,
        Metric::Errors,
        Metric::Cpu,
        Metric::MemoryBytes,
        Metric::Clients,
        Metric::PingRttUs,
        Metric::Keys,
        Metric::Load,
    ];

    /// The WIT name of the metric, e.g. `latency-p99-us`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Ops => "ops",
            Metric::Reads => "reads",
            Metric::Writes => "writes",
            Metric::BytesIn => "bytes-in",
            Metric::BytesOut => "bytes-out",
            Metric::LatencyP50Us => "latency-p50-us",
            Metric::LatencyP99Us => "latency-p99-us",
            Metric::Errors => "errors",
            Metric::Cpu => "cpu",
            Metric::MemoryBytes => "memory-bytes",
            Metric::Clients => "clients",
            Metric::PingRttUs => "ping-rtt-us",
            Metric::Keys => "keys",
            Metric::Load => "load",
        }
    }
}

impl RejectionReason {
    /// The WIT name of the reason, e.g. `move-budget-exceeded`.
    pub fn name(self) -> &'static str {
        match self {
            RejectionReason::UnknownInstance => "unknown-instance",
            RejectionReason::UnknownSegment => "unknown-segment",
            RejectionReason::UnknownSession => "unknown-session",
            RejectionReason::TargetNotActive => "target-not-active",
            RejectionReason::AlreadyMigrating => "already-migrating",
            RejectionReason::MoveBudgetExceeded => "move-budget-exceeded",
            RejectionReason::MigrationLimit => "migration-limit",
            RejectionReason::Duplicate => "duplicate",
            RejectionReason::Invalid => "invalid",
            RejectionReason::Busy => "busy",
        }
    }
}

impl InstanceState {
    /// The WIT name of the state, e.g. `standby`.
    pub fn name(self) -> &'static str {
        match self {
            InstanceState::Active => "active",
            InstanceState::Draining => "draining",
            InstanceState::Standby => "standby",
            InstanceState::Down => "down",
        }
    }
}

impl Segment {
    /// Number of slots the segment spans.
    pub fn slot_count(&self) -> u32 {
        u32::from(self.slot_end) - u32::from(self.slot_start) + 1
    }

    /// True when `slot` falls in the segment.
    pub fn contains(&self, slot: u16) -> bool {
        (self.slot_start..=self.slot_end).contains(&slot)
    }
}

impl SegmentColumns {
    /// Split segments into columns.
    pub fn from_segments(segments: &[Segment]) -> Self {
        SegmentColumns {
            ids: segments.iter().map(|s| s.id).collect(),
            slot_starts: segments.iter().map(|s| s.slot_start).collect(),
            slot_ends: segments.iter().map(|s| s.slot_end).collect(),
            owners: segments.iter().map(|s| s.owner).collect(),
            keys: segments.iter().map(|s| s.keys).collect(),
            bytes: segments.iter().map(|s| s.bytes).collect(),
            migrating: segments.iter().map(|s| u8::from(s.migrating)).collect(),
        }
    }

    /// Join the columns back into segments; extra entries in longer columns are ignored.
    pub fn to_segments(&self) -> Vec<Segment> {
        self.ids
            .iter()
            .zip(&self.slot_starts)
            .zip(&self.slot_ends)
            .zip(&self.owners)
            .zip(&self.keys)
            .zip(&self.bytes)
            .zip(&self.migrating)
            .map(
                |((((((&id, &slot_start), &slot_end), &owner), &keys), &bytes), &migrating)| {
                    Segment {
                        id,
                        slot_start,
                        slot_end,
                        owner,
                        keys,
                        bytes,
                        migrating: migrating != 0,
                    }
                },
            )
            .collect()
    }
}

impl Predictions {
    /// Predictions that say nothing.
    pub fn empty() -> Self {
        Predictions {
            load: Vec::new(),
            failures: Vec::new(),
            sessions: Vec::new(),
        }
    }
}

impl Default for Predictions {
    fn default() -> Self {
        Predictions::empty()
    }
}

impl Action {
    /// The segment the action touches first, if any.
    pub fn segment(&self) -> Option<SegmentId> {
        match self {
            Action::MoveSegment(m) => Some(m.segment),
            Action::SplitSegment(s) => Some(s.segment),
            Action::MergeSegments(m) => Some(m.low),
            _ => None,
        }
    }

    /// A short human-readable rendering, e.g. `move-segment 12 -> 3`.
    pub fn describe(&self) -> String {
        match self {
            Action::MoveSegment(m) => format!("move-segment {} -> {}", m.segment, m.target),
            Action::SplitSegment(s) => format!("split-segment {} at {}", s.segment, s.at_slot),
            Action::MergeSegments(m) => format!("merge-segments {} + {}", m.low, m.high),
            Action::MoveSession(m) => format!("move-session {} -> {}", m.session, m.target),
            Action::ActivateStandby(i) => format!("activate-standby {i}"),
            Action::DrainInstance(i) => format!("drain-instance {i}"),
        }
    }
}

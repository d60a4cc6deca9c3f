//! Host-side bindings of the WIT package, and conversions to and from the SDK's types.
//!
//! The host speaks the SDK's plain types everywhere (views, validation, decision records);
//! only this module knows wasmtime's generated types. Conversions are by hand because the
//! hot ones (segments, metric lists) run every tick.

use shardcast_sdk::types as sdk;

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
});

pub use self::exports::shardcast::policy::{forecast, lifecycle, placement};
pub use self::shardcast::policy::types as wit;

macro_rules! enum_map {
    ($a:ty, $b:ty, [$($v:ident),* $(,)?]) => {
        impl From<$a> for $b {
            fn from(x: $a) -> Self {
                match x { $(<$a>::$v => <$b>::$v,)* }
            }
        }
        impl From<$b> for $a {
            fn from(x: $b) -> Self {
                match x { $(<$b>::$v => <$a>::$v,)* }
            }
        }
    };
}

enum_map!(
    sdk::InstanceState,
    wit::InstanceState,
    [Active, Draining, Standby, Down]
);
enum_map!(
    sdk::MigrationPhase,
    wit::MigrationPhase,
    [Start, Copy, CatchUp, Cutover, Cleanup, Watch]
);
enum_map!(
    sdk::MigrationOutcome,
    wit::MigrationOutcome,
    [Running, Completed, Aborted, Failed]
);
enum_map!(
    sdk::FailureKind,
    wit::FailureKind,
    [Crash, Restart, Timeout, Errors, Maintenance]
);
enum_map!(sdk::Level, wit::Level, [Trace, Debug, Info, Warn, Error]);
enum_map!(
    sdk::RejectionReason,
    wit::RejectionReason,
    [
        UnknownInstance,
        UnknownSegment,
        UnknownSession,
        TargetNotActive,
        AlreadyMigrating,
        MoveBudgetExceeded,
        MigrationLimit,
        Duplicate,
        Invalid,
        Busy,
    ]
);
enum_map!(
    sdk::Metric,
    wit::Metric,
    [
        Ops,
        Reads,
        Writes,
        BytesIn,
        BytesOut,
        LatencyP50Us,
        LatencyP99Us,
        Errors,
        Cpu,
        MemoryBytes,
        Clients,
        PingRttUs,
        Keys,
        Load,
    ]
);

impl From<&sdk::Instance> for wit::Instance {
    fn from(x: &sdk::Instance) -> Self {
        wit::Instance {
            id: x.id,
            name: x.name.clone(),
            address: x.address.clone(),
            zone: x.zone.clone(),
            capacity: x.capacity,
            state: x.state.into(),
        }
    }
}

impl From<&sdk::Segment> for wit::Segment {
    fn from(x: &sdk::Segment) -> Self {
        wit::Segment {
            id: x.id,
            slot_start: x.slot_start,
            slot_end: x.slot_end,
            owner: x.owner,
            keys: x.keys,
            bytes: x.bytes,
            migrating: x.migrating,
        }
    }
}

impl From<&sdk::Session> for wit::Session {
    fn from(x: &sdk::Session) -> Self {
        wit::Session {
            id: x.id,
            name: x.name.clone(),
            lib: x.lib.clone(),
            db: x.db,
            user: x.user.clone(),
            protocol: x.protocol,
            pinned: x.pinned,
            in_transaction: x.in_transaction,
            subscriptions: x.subscriptions,
            connected_at: x.connected_at,
        }
    }
}

impl From<&sdk::Migration> for wit::Migration {
    fn from(x: &sdk::Migration) -> Self {
        wit::Migration {
            id: x.id,
            segment: x.segment,
            source: x.source,
            target: x.target,
            phase: x.phase.into(),
            outcome: x.outcome.into(),
            started_at: x.started_at,
            finished_at: x.finished_at,
            bytes_moved: x.bytes_moved,
            detail: x.detail.clone(),
        }
    }
}

impl From<&sdk::Failure> for wit::Failure {
    fn from(x: &sdk::Failure) -> Self {
        wit::Failure {
            instance: x.instance,
            kind: x.kind.into(),
            at: x.at,
            detail: x.detail.clone(),
        }
    }
}

impl From<&sdk::Rejection> for wit::Rejection {
    fn from(x: &sdk::Rejection) -> Self {
        wit::Rejection {
            action: x.action.into(),
            reason: x.reason.into(),
            message: x.message.clone(),
        }
    }
}

impl From<sdk::Scope> for wit::Scope {
    fn from(x: sdk::Scope) -> Self {
        match x {
            sdk::Scope::Instance(i) => wit::Scope::Instance(i),
            sdk::Scope::Segment(s) => wit::Scope::Segment(s),
            sdk::Scope::Session(s) => wit::Scope::Session(s),
        }
    }
}

impl From<wit::Scope> for sdk::Scope {
    fn from(x: wit::Scope) -> Self {
        match x {
            wit::Scope::Instance(i) => sdk::Scope::Instance(i),
            wit::Scope::Segment(s) => sdk::Scope::Segment(s),
            wit::Scope::Session(s) => sdk::Scope::Session(s),
        }
    }
}

impl From<sdk::Action> for wit::Action {
    fn from(x: sdk::Action) -> Self {
        match x {
            sdk::Action::MoveSegment(m) => wit::Action::MoveSegment(wit::MoveSegment {
                segment: m.segment,
                target: m.target,
            }),
            sdk::Action::SplitSegment(s) => wit::Action::SplitSegment(wit::SplitSegment {
                segment: s.segment,
                at_slot: s.at_slot,
            }),
            sdk::Action::MergeSegments(m) => wit::Action::MergeSegments(wit::MergeSegments {
                low: m.low,
                high: m.high,
            }),
            sdk::Action::MoveSession(m) => wit::Action::MoveSession(wit::MoveSession {
                session: m.session,
                target: m.target,
            }),
            sdk::Action::ActivateStandby(i) => wit::Action::ActivateStandby(i),
            sdk::Action::DrainInstance(i) => wit::Action::DrainInstance(i),
        }
    }
}

impl From<wit::Action> for sdk::Action {
    fn from(x: wit::Action) -> Self {
        match x {
            wit::Action::MoveSegment(m) => sdk::Action::MoveSegment(sdk::MoveSegment {
                segment: m.segment,
                target: m.target,
            }),
            wit::Action::SplitSegment(s) => sdk::Action::SplitSegment(sdk::SplitSegment {
                segment: s.segment,
                at_slot: s.at_slot,
            }),
            wit::Action::MergeSegments(m) => sdk::Action::MergeSegments(sdk::MergeSegments {
                low: m.low,
                high: m.high,
            }),
            wit::Action::MoveSession(m) => sdk::Action::MoveSession(sdk::MoveSession {
                session: m.session,
                target: m.target,
            }),
            wit::Action::ActivateStandby(i) => sdk::Action::ActivateStandby(i),
            wit::Action::DrainInstance(i) => sdk::Action::DrainInstance(i),
        }
    }
}

impl From<sdk::Predictions> for wit::Predictions {
    fn from(x: sdk::Predictions) -> Self {
        wit::Predictions {
            load: x
                .load
                .into_iter()
                .map(|f| wit::LoadForecast {
                    scope: f.scope.into(),
                    metric: f.metric.into(),
                    horizon_ms: f.horizon_ms,
                    expected: f.expected,
                    low: f.low,
                    high: f.high,
                    confidence: f.confidence,
                })
                .collect(),
            failures: x
                .failures
                .into_iter()
                .map(|f| wit::FailureRisk {
                    instance: f.instance,
                    horizon_ms: f.horizon_ms,
                    probability: f.probability,
                })
                .collect(),
            sessions: x
                .sessions
                .into_iter()
                .map(|h| wit::SessionHealth {
                    session: h.session,
                    horizon_ms: h.horizon_ms,
                    activity: h.activity,
                    churn: h.churn,
                    health: h.health,
                })
                .collect(),
        }
    }
}

impl From<wit::Predictions> for sdk::Predictions {
    fn from(x: wit::Predictions) -> Self {
        sdk::Predictions {
            load: x
                .load
                .into_iter()
                .map(|f| sdk::LoadForecast {
                    scope: f.scope.into(),
                    metric: f.metric.into(),
                    horizon_ms: f.horizon_ms,
                    expected: f.expected,
                    low: f.low,
                    high: f.high,
                    confidence: f.confidence,
                })
                .collect(),
            failures: x
                .failures
                .into_iter()
                .map(|f| sdk::FailureRisk {
                    instance: f.instance,
                    horizon_ms: f.horizon_ms,
                    probability: f.probability,
                })
                .collect(),
            sessions: x
                .sessions
                .into_iter()
                .map(|h| sdk::SessionHealth {
                    session: h.session,
                    horizon_ms: h.horizon_ms,
                    activity: h.activity,
                    churn: h.churn,
                    health: h.health,
                })
                .collect(),
        }
    }
}

impl From<wit::PolicyInfo> for sdk::PolicyInfo {
    fn from(x: wit::PolicyInfo) -> Self {
        sdk::PolicyInfo {
            name: x.name,
            version: x.version,
            summary: x.summary,
        }
    }
}

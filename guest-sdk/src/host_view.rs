//! The `HostView` trait: everything the host offers a policy, as plain Rust.
//!
//! In a compiled policy the SDK implements it over the WIT imports ([`WasmHost`]); natively
//! it is implemented by [`crate::view::ViewSnapshot`] and, for simulation, by the simulator.
//! A policy written against `&dyn HostView` therefore runs unchanged in all three places.

use crate::types::{
    Failure, Instance, InstanceId, Level, Metric, Migration, Rejection, Scope, Segment,
    SegmentColumns, Session, SessionId, TimestampMs,
};

/// Read-only access to the cluster, its metrics and its sessions for one tick.
pub trait HostView {
    /// The clock at the start of the tick, in milliseconds since the Unix epoch.
    fn now(&self) -> TimestampMs;
    /// The tick number.
    fn tick(&self) -> u64;
    /// The segment-table epoch.
    fn epoch(&self) -> u64;
    /// Every instance, in id order.
    fn instances(&self) -> Vec<Instance>;
    /// Every segment, in slot order.
    fn segments(&self) -> Vec<Segment>;
    /// Every segment, in slot order, as columns. Hosts that keep columns override this.
    fn segment_columns(&self) -> SegmentColumns {
        SegmentColumns::from_segments(&self.segments())
    }
    /// Every client session.
    fn sessions(&self) -> Vec<Session>;
    /// Migrations in flight and recently finished.
    fn migrations(&self) -> Vec<Migration>;
    /// Failure history of one instance, or of all.
    fn failures(&self, instance: Option<InstanceId>) -> Vec<Failure>;
    /// Actions refused last tick.
    fn rejections(&self) -> Vec<Rejection>;
    /// Milliseconds between two points of a series.
    fn interval_ms(&self) -> u32;
    /// Points retained per series.
    fn retention(&self) -> u32;
    /// The last `points` values of one series, oldest first.
    fn series(&self, scope: Scope, metric: Metric, points: u32) -> Vec<f64>;
    /// Latest value of `metric` per segment, in `segments()` order.
    fn segments_latest(&self, metric: Metric) -> Vec<f64>;
    /// Last `points` values of `metric` per segment, row-major.
    fn segments_window(&self, metric: Metric, points: u32) -> Vec<f64>;
    /// Latest value of `metric` per instance, in `instances()` order.
    fn instances_latest(&self, metric: Metric) -> Vec<f64>;
    /// Last `points` values of `metric` per instance, row-major.
    fn instances_window(&self, metric: Metric, points: u32) -> Vec<f64>;
    /// Names of a session's state partitions.
    fn partitions(&self, session: SessionId) -> Vec<String>;
    /// A session partition as field/value pairs.
    fn partition(&self, session: SessionId, name: &str) -> Option<Vec<(String, String)>>;
    /// Emit a log line through the host.
    fn log(&self, level: Level, message: &str);
}

/// The `HostView` of a compiled policy: every call is a WIT import answered by the host.
#[derive(Debug, Default, Clone, Copy)]
pub struct WasmHost;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::*;
    use crate::__bindings::policy_world::shardcast::policy::{
        cluster_view, logging, metrics, session_state,
    };

    impl HostView for WasmHost {
        fn now(&self) -> TimestampMs {
            cluster_view::now()
        }
        fn tick(&self) -> u64 {
            cluster_view::tick()
        }
        fn epoch(&self) -> u64 {
            cluster_view::epoch()
        }
        fn instances(&self) -> Vec<Instance> {
            cluster_view::instances()
        }
        fn segments(&self) -> Vec<Segment> {
            cluster_view::segment_table().to_segments()
        }
        fn segment_columns(&self) -> SegmentColumns {
            cluster_view::segment_table()
        }
        fn sessions(&self) -> Vec<Session> {
            cluster_view::sessions()
        }
        fn migrations(&self) -> Vec<Migration> {
            cluster_view::migrations()
        }
        fn failures(&self, instance: Option<InstanceId>) -> Vec<Failure> {
            cluster_view::failures(instance)
        }
        fn rejections(&self) -> Vec<Rejection> {
            cluster_view::rejections()
        }
        fn interval_ms(&self) -> u32 {
            metrics::interval_ms()
        }
        fn retention(&self) -> u32 {
            metrics::retention()
        }
        fn series(&self, scope: Scope, metric: Metric, points: u32) -> Vec<f64> {
            metrics::series(scope, metric, points)
        }
        fn segments_latest(&self, metric: Metric) -> Vec<f64> {
            metrics::segments_latest(metric)
        }
        fn segments_window(&self, metric: Metric, points: u32) -> Vec<f64> {
            metrics::segments_window(metric, points)
        }
        fn instances_latest(&self, metric: Metric) -> Vec<f64> {
            metrics::instances_latest(metric)
        }
        fn instances_window(&self, metric: Metric, points: u32) -> Vec<f64> {
            metrics::instances_window(metric, points)
        }
        fn partitions(&self, session: SessionId) -> Vec<String> {
            session_state::partitions(session)
        }
        fn partition(&self, session: SessionId, name: &str) -> Option<Vec<(String, String)>> {
            session_state::partition(session, name)
        }
        fn log(&self, level: Level, message: &str) {
            logging::log(level, message)
        }
    }
}

//! The per-store state of a running policy, and the WIT imports it answers.
//!
//! Every import reads from the view installed for the current call; outside a call (in
//! `describe`, `configure`) the view is empty. Requests are clamped to what the view holds,
//! so a policy cannot make the host allocate more than the view itself.

use std::sync::{Arc, LazyLock};

use shardcast_sdk::HostView;
use shardcast_sdk::types as sdk;
use shardcast_sdk::view::ViewSnapshot;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::voice::Voice;
use super::wit::shardcast::policy::{cluster_view, logging, metrics, session_state, types};
use super::wit::wit;

/// A view shared with a running call.
pub type SharedView = Arc<dyn HostView + Send + Sync>;

static EMPTY_VIEW: LazyLock<SharedView> = LazyLock::new(|| Arc::new(ViewSnapshot::default()));

/// Caps a policy's linear memories and records when it hits the cap.
pub struct MemoryCap {
    /// Bytes allowed per linear memory.
    pub bytes: usize,
    /// Set when a growth was refused.
    pub hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        if desired > self.bytes {
            self.hit = true;
            wasmtime::bail!(
                "memory limit of {} MiB exceeded (wanted {} MiB)",
                self.bytes >> 20,
                desired >> 20
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The data of one policy's store.
pub struct PolicyCtx {
    /// What the policy says, under its `name@version`, within its budget.
    pub voice: Arc<Voice>,
    /// WASI with no files, no network and no environment.
    pub wasi: WasiCtx,
    /// WASI resources.
    pub table: ResourceTable,
    /// The memory cap.
    pub memory: MemoryCap,
    /// The view of the call in progress.
    pub view: Option<SharedView>,
}

impl PolicyCtx {
    fn view(&self) -> &(dyn HostView + Send + Sync) {
        self.view.as_deref().unwrap_or(&**EMPTY_VIEW)
    }

    fn points(&self, points: u32) -> u32 {
        points.min(self.view().retention())
    }
}

impl WasiView for PolicyCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PolicyCtx {}

impl cluster_view::Host for PolicyCtx {
    fn now(&mut self) -> u64 {
        self.view().now()
    }
    fn tick(&mut self) -> u64 {
        self.view().tick()
    }
    fn epoch(&mut self) -> u64 {
        self.view().epoch()
    }
    fn instances(&mut self) -> Vec<wit::Instance> {
        self.view().instances().iter().map(Into::into).collect()
    }
    fn segments(&mut self) -> Vec<wit::Segment> {
        self.view().segments().iter().map(Into::into).collect()
    }
    fn segment_table(&mut self) -> wit::SegmentColumns {
        let c = self.view().segment_columns();
        wit::SegmentColumns {
            ids: c.ids,
            slot_starts: c.slot_starts,
            slot_ends: c.slot_ends,
            owners: c.owners,
            keys: c.keys,
            bytes: c.bytes,
            migrating: c.migrating,
        }
    }
    fn sessions(&mut self) -> Vec<wit::Session> {
        self.view().sessions().iter().map(Into::into).collect()
    }
    fn migrations(&mut self) -> Vec<wit::Migration> {
        self.view().migrations().iter().map(Into::into).collect()
    }
    fn failures(&mut self, instance: Option<u32>) -> Vec<wit::Failure> {
        self.view()
            .failures(instance)
            .iter()
            .map(Into::into)
            .collect()
    }
    fn rejections(&mut self) -> Vec<wit::Rejection> {
        self.view().rejections().iter().map(Into::into).collect()
    }
}

impl metrics::Host for PolicyCtx {
    fn interval_ms(&mut self) -> u32 {
        self.view().interval_ms()
    }
    fn retention(&mut self) -> u32 {
        self.view().retention()
    }
    fn series(&mut self, scope: wit::Scope, metric: wit::Metric, points: u32) -> Vec<f64> {
        let points = self.points(points);
        self.view().series(scope.into(), metric.into(), points)
    }
    fn segments_latest(&mut self, metric: wit::Metric) -> Vec<f64> {
        self.view().segments_latest(metric.into())
    }
    fn segments_window(&mut self, metric: wit::Metric, points: u32) -> Vec<f64> {
        let points = self.points(points);
        self.view().segments_window(metric.into(), points)
    }
    fn instances_latest(&mut self, metric: wit::Metric) -> Vec<f64> {
        self.view().instances_latest(metric.into())
    }
    fn instances_window(&mut self, metric: wit::Metric, points: u32) -> Vec<f64> {
        let points = self.points(points);
        self.view().instances_window(metric.into(), points)
    }
}

impl session_state::Host for PolicyCtx {
    fn partitions(&mut self, session: u64) -> Vec<String> {
        self.view().partitions(session)
    }
    fn partition(&mut self, session: u64, name: String) -> Option<Vec<(String, String)>> {
        self.view().partition(session, &name)
    }
}

impl logging::Host for PolicyCtx {
    fn log(&mut self, level: wit::Level, message: String) {
        self.voice.say(sdk::Level::from(level), "log", &message);
    }
}

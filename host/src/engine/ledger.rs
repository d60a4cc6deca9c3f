//! The ledger of policy versions: for every version the engine has run, how long its calls
//! took, how often it faulted (by kind) and how many of its actions the validator refused.
//!
//! Slots write to it from the tick thread; the admin API and `/metrics` read a
//! [`Ledger::snapshot`] from any thread. A version is known by its [`PolicyVersion::id`]
//! (component and settings), so two uploads of one `name@version` with different settings
//! are counted apart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::error::FaultKind;
use super::version::PolicyVersion;

/// What the ledger says about one version.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VersionStats {
    /// The version's id (component and settings).
    pub id: String,
    /// `name@version`.
    pub label: String,
    /// sha256 of the component.
    pub sha256: String,
    /// Its world.
    pub world: String,
    /// When it was loaded, in ms since the Unix epoch.
    pub loaded_at_ms: u64,
    /// Calls (predict, plan) that answered.
    pub calls: u64,
    /// Median call time, in microseconds.
    pub call_p50_us: u64,
    /// 99th percentile call time, in microseconds.
    pub call_p99_us: u64,
    /// Longest call, in microseconds.
    pub call_max_us: u64,
    /// Total time in calls, in microseconds.
    pub call_total_us: u64,
    /// Faults, by kind (`trap`, `timeout`, ...).
    pub faults: BTreeMap<String, u64>,
    /// Actions the validator refused.
    pub rejections: u64,
}

struct Entry {
    stats: VersionStats,
    calls: hdrhistogram::Histogram<u64>,
}

/// Per-version statistics, shared by every slot of an engine.
#[derive(Default)]
pub struct Ledger {
    versions: Mutex<BTreeMap<String, Entry>>,
}

/// The time now in ms since the Unix epoch, as versions record their load time.
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Arc<Self> {
        Arc::new(Ledger::default())
    }

    fn with(&self, version: &PolicyVersion, f: impl FnOnce(&mut Entry)) {
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let entry = versions.entry(version.id.clone()).or_insert_with(|| Entry {
            stats: VersionStats {
                id: version.id.clone(),
                label: version.label(),
                sha256: version.sha256.clone(),
                world: version.world.name().into(),
                loaded_at_ms: version.loaded_at_ms,
                ..VersionStats::default()
            },
            calls: hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)
                .expect("static histogram bounds are valid"),
        });
        f(entry);
    }

    /// Note that `version` exists (loaded, not yet run).
    pub fn register(&self, version: &PolicyVersion) {
        self.with(version, |_| {});
    }

    /// A call of `version` answered in `us` microseconds.
    pub fn call(&self, version: &PolicyVersion, us: u64) {
        self.with(version, |e| {
            let _ = e.calls.record(us.max(1));
            e.stats.calls += 1;
            e.stats.call_total_us += us;
        });
    }

    /// A call of `version` faulted.
    pub fn fault(&self, version: &PolicyVersion, kind: FaultKind) {
        self.with(version, |e| {
            *e.stats.faults.entry(kind.name().to_owned()).or_insert(0) += 1;
        });
    }

    /// The validator refused `count` actions of `version`.
    pub fn rejected(&self, version: &PolicyVersion, count: u64) {
        if count > 0 {
            self.with(version, |e| e.stats.rejections += count);
        }
    }

    /// Stop counting the version `id` (it was dropped and is not running).
    pub fn forget(&self, id: &str) {
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions.remove(id);
    }

    /// The statistics of the version `id`.
    pub fn get(&self, id: &str) -> Option<VersionStats> {
        let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions.get(id).map(Entry::stats)
    }

    /// Every version's statistics, oldest load first.
    pub fn snapshot(&self) -> Vec<VersionStats> {
        let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<VersionStats> = versions.values().map(Entry::stats).collect();
        all.sort_by_key(|s| s.loaded_at_ms);
        all
    }
}

impl Entry {
    fn stats(&self) -> VersionStats {
        let mut s = self.stats.clone();
        if !self.calls.is_empty() {
            s.call_p50_us = self.calls.value_at_quantile(0.5);
            s.call_p99_us = self.calls.value_at_quantile(0.99);
            s.call_max_us = self.calls.max();
        }
        s
    }
}

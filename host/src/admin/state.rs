//! Read-only views of the running process for the admin API: status, topology, the
//! segment table, migrations, sessions, decisions, forecasts and per-instance series.
//! Each is computed from the process's own state at the time of the request.

use std::collections::BTreeMap;

use serde::Serialize;
use shardcast_sdk::types::{InstanceState, Metric, Session};

use super::Admin;
use super::forecasts::ForecastPoint;
use crate::migrate::control::MigrationDetail;

/// `GET /v1/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// shardcast's version.
    pub version: &'static str,
    /// Seconds since the process started serving.
    pub uptime_s: u64,
    /// Where clients connect.
    pub listen: String,
    /// Cluster mode: this proxy's name, and whether it holds the controller's office.
    pub cluster: Option<ClusterStatus>,
    /// The segment table's epoch.
    pub epoch: u64,
    /// Segments in the table.
    pub segments: usize,
    /// Instances by state (`active`, `standby`, `draining`, `down`).
    pub instances: BTreeMap<String, usize>,
    /// Migrations running now.
    pub migrations_running: usize,
    /// Client sessions open on this proxy.
    pub sessions: usize,
    /// The running policy (`name@version`) and its id.
    pub policy: Option<String>,
    /// The running policy's version id.
    pub policy_id: Option<String>,
    /// The shadow candidate, if one runs.
    pub shadow: Option<String>,
    /// The shadow candidate's agreement with the active policy so far.
    pub shadow_agreement: Option<f64>,
    /// Requests held by cutovers so far, and their total and longest wait.
    pub held: HeldView,
}

/// Cluster mode, as seen by this proxy.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    /// This proxy's name.
    pub name: String,
    /// True while this proxy is the controller.
    pub controller: bool,
}

/// Held requests.
#[derive(Debug, Serialize)]
pub struct HeldView {
    /// Requests that waited.
    pub requests: u64,
    /// Their total wait, µs.
    pub total_us: u64,
    /// The longest wait, µs.
    pub max_us: u64,
}

/// One instance in `GET /v1/topology`.
#[derive(Debug, Serialize)]
pub struct InstanceView {
    /// Its id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// `active`, `standby`, `draining` or `down`.
    pub state: &'static str,
    /// Answering the poller.
    pub up: bool,
    /// Configured capacity, ops/s.
    pub capacity: f64,
    /// Operations per second through the proxy.
    pub ops: f64,
    /// 99th percentile latency through the proxy, µs.
    pub p99_us: f64,
    /// Load (ops over capacity).
    pub load: f64,
    /// Segments it owns.
    pub segments: usize,
    /// Slots it owns.
    pub slots: usize,
}

/// `GET /v1/topology`.
#[derive(Debug, Serialize)]
pub struct TopologyView {
    /// The table's epoch.
    pub epoch: u64,
    /// The instances.
    pub instances: Vec<InstanceView>,
}

/// One row of `GET /v1/segments`.
#[derive(Debug, Serialize)]
pub struct SegmentView {
    /// Its id.
    pub id: u32,
    /// First slot.
    pub slot_start: u16,
    /// Last slot.
    pub slot_end: u16,
    /// Owner id.
    pub owner: u32,
    /// Owner name.
    pub owner_name: String,
    /// A migration of it is running.
    pub migrating: bool,
    /// Operations per second, latest.
    pub ops: f64,
    /// Estimated keys.
    pub keys: u64,
}

/// `GET /v1/segments`.
#[derive(Debug, Serialize)]
pub struct SegmentsView {
    /// The table's epoch.
    pub epoch: u64,
    /// The segments in slot order.
    pub segments: Vec<SegmentView>,
}

/// One session in `GET /v1/sessions`.
#[derive(Debug, Serialize)]
pub struct SessionView {
    /// The session as policies see it.
    #[serde(flatten)]
    pub session: Session,
    /// The client's address.
    pub addr: Option<String>,
    /// When it last sent a command, ms since the Unix epoch.
    pub last_ms: u64,
    /// Its state partitions in the session repository, by name.
    pub partitions: BTreeMap<String, BTreeMap<String, String>>,
}

/// Per-instance series for charts: `GET /v1/series`.
#[derive(Debug, Serialize)]
pub struct SeriesView {
    /// Milliseconds between points.
    pub interval_ms: u32,
    /// When the last point was taken, ms since the Unix epoch.
    pub now_ms: u64,
    /// One entry per instance.
    pub instances: Vec<InstanceSeries>,
}

/// One instance's series.
#[derive(Debug, Serialize)]
pub struct InstanceSeries {
    /// Its id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Operations per second, oldest first (NaN-free: missing points are null).
    pub ops: Vec<Option<f64>>,
    /// Load, oldest first.
    pub load: Vec<Option<f64>>,
    /// p99 latency, µs, oldest first.
    pub p99_us: Vec<Option<f64>>,
    /// The policy's forecasts for this instance, oldest first.
    pub forecasts: Vec<ForecastPoint>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn at(values: &[f64], i: usize) -> f64 {
    values
        .get(i)
        .copied()
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
}

impl Admin {
    /// `GET /v1/status`.
    pub fn status(&self) -> Status {
        let table = self.parts.topology.table();
        let mut instances = BTreeMap::new();
        for (i, state) in self.parts.topology.states().into_iter().enumerate() {
            let state = if state == InstanceState::Active && !self.parts.telemetry.is_up(i as u32) {
                InstanceState::Down
            } else {
                state
            };
            *instances.entry(state.name().to_owned()).or_insert(0) += 1;
        }
        let held = self.parts.gate.held();
        let (policy, policy_id, shadow, shadow_agreement) = match &self.policy {
            Some(desk) => {
                let s = desk.planner().status();
                let sh = desk.shadow_status();
                (
                    s.active.clone(),
                    s.active_id.clone(),
                    sh.candidate.clone(),
                    sh.agreement,
                )
            }
            None => (None, None, None, None),
        };
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: self.started.elapsed().as_secs(),
            listen: self.listen.clone(),
            cluster: self
                .parts
                .registry
                .cluster()
                .map(|(name, _)| ClusterStatus {
                    name: name.clone(),
                    controller: self.parts.executor.acting(),
                }),
            epoch: table.epoch,
            segments: table.segments.len(),
            instances,
            migrations_running: self.parts.executor.moving().len(),
            sessions: self.parts.registry.len(),
            policy,
            policy_id,
            shadow,
            shadow_agreement,
            held: HeldView {
                requests: held.requests,
                total_us: held.total_us,
                max_us: held.max_us,
            },
        }
    }

    /// `GET /v1/topology`.
    pub fn topology(&self) -> TopologyView {
        let table = self.parts.topology.table();
        let t = &self.parts.telemetry;
        let (ops, p99, load) = (
            t.instances_latest(Metric::Ops),
            t.instances_latest(Metric::LatencyP99Us),
            t.instances_latest(Metric::Load),
        );
        let states = self.parts.topology.states_in(&table);
        let instances = self
            .parts
            .topology
            .instances
            .iter()
            .map(|i| {
                let idx = i.id as usize;
                let up = t.is_up(i.id);
                let mut state = states.get(idx).copied().unwrap_or(i.state);
                if state == InstanceState::Active && !up {
                    state = InstanceState::Down;
                }
                let owned = table.segments.iter().filter(|s| s.owner == i.id);
                let (segments, slots) = owned.fold((0, 0), |(n, slots), s| {
                    (n + 1, slots + usize::from(s.slot_end - s.slot_start) + 1)
                });
                InstanceView {
                    id: i.id,
                    name: i.name.clone(),
                    address: i.address.clone(),
                    state: state.name(),
                    up,
                    capacity: i.capacity,
                    ops: at(&ops, idx),
                    p99_us: at(&p99, idx),
                    load: at(&load, idx),
                    segments,
                    slots,
                }
            })
            .collect();
        TopologyView {
            epoch: table.epoch,
            instances,
        }
    }

    /// `GET /v1/segments`.
    pub fn segments(&self) -> SegmentsView {
        let table = self.parts.topology.table();
        let ops = self.parts.telemetry.segments_latest_by_id(Metric::Ops);
        let keys = self.parts.telemetry.segment_keys();
        let moving = self.parts.executor.moving();
        let names = &self.parts.topology.instances;
        let segments = table
            .segments
            .iter()
            .map(|s| SegmentView {
                id: s.id,
                slot_start: s.slot_start,
                slot_end: s.slot_end,
                owner: s.owner,
                owner_name: names
                    .get(s.owner as usize)
                    .map(|i| i.name.clone())
                    .unwrap_or_default(),
                migrating: moving.contains(&s.id),
                ops: ops
                    .get(&s.id)
                    .copied()
                    .filter(|v| v.is_finite())
                    .unwrap_or(0.0),
                keys: keys.get(&s.id).copied().unwrap_or(0),
            })
            .collect();
        SegmentsView {
            epoch: table.epoch,
            segments,
        }
    }

    /// `GET /v1/migrations`.
    pub fn migrations(&self) -> Vec<MigrationDetail> {
        self.parts.executor.migration_details()
    }

    /// `GET /v1/sessions`.
    pub fn sessions(&self) -> Vec<SessionView> {
        let repository = self.parts.registry.repository();
        let mut sessions: Vec<SessionView> = self
            .parts
            .registry
            .entries()
            .into_iter()
            .map(|e| {
                let id = e.session.id;
                let partitions = repository
                    .partitions(id)
                    .into_iter()
                    .filter_map(|p| {
                        let fields = repository.get(id, &p)?;
                        Some((p, fields.into_iter().collect()))
                    })
                    .collect();
                SessionView {
                    addr: e.control.addrs.get().map(|(client, _)| client.to_string()),
                    last_ms: e.control.last_ms.load(std::sync::atomic::Ordering::Relaxed),
                    session: e.session.clone(),
                    partitions,
                }
            })
            .collect();
        sessions.sort_by_key(|s| s.session.id);
        sessions
    }

    /// `GET /v1/series`: per-instance ops, load and p99 with the policy's forecasts.
    pub fn series(&self) -> SeriesView {
        let instances = &self.parts.topology.instances;
        let history = self.parts.telemetry.instance_history(instances.len());
        let series = |row: usize, m: Metric| -> Vec<Option<f64>> {
            history
                .get(&m)
                .map(|d| d.row(row).iter().copied().map(finite).collect())
                .unwrap_or_default()
        };
        SeriesView {
            interval_ms: self.parts.telemetry.interval().as_millis() as u32,
            now_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            instances: instances
                .iter()
                .enumerate()
                .map(|(row, i)| InstanceSeries {
                    id: i.id,
                    name: i.name.clone(),
                    ops: series(row, Metric::Ops),
                    load: series(row, Metric::Load),
                    p99_us: series(row, Metric::LatencyP99Us),
                    forecasts: self.forecasts.of_instance(i.id as usize),
                })
                .collect(),
        }
    }
}

//! History: each tick's instance metrics and the failures observed, as CSV, written by
//! `shardcast run` (`[history] file`) and by `shardcast sim --history`, read back by
//! `shardcast train`.
//!
//! One row per instance per tick (`kind = point`: state, ops, p99, errors, CPU, memory)
//! and one row per failure event (`kind = failure`: its kind), in time order:
//!
//! ```text
//! kind,t_ms,instance,name,state,ops,p99_us,errors,cpu,memory_bytes,failure
//! point,1767225600000,0,redis-0,active,50213.0,812.5,0.0,31.2,1043333120.0,
//! failure,1767225912000,2,redis-2,,,,,,,crash
//! ```
//!
//! [`Replay`] turns rows back into a [`HostView`] with the instance windows a policy's
//! predictor reads, so that training computes features with the policy's own code.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use shardcast_sdk::prelude::*;

/// Metrics a history keeps, in column order.
const METRICS: [Metric; 5] = [
    Metric::Ops,
    Metric::LatencyP99Us,
    Metric::Errors,
    Metric::Cpu,
    Metric::MemoryBytes,
];

/// One row of a history file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `point` or `failure`.
    pub kind: String,
    /// Milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// The instance's id.
    pub instance: InstanceId,
    /// The instance's name.
    pub name: String,
    /// Its state (points only).
    pub state: Option<InstanceState>,
    /// Commands per second.
    pub ops: Option<f64>,
    /// p99 latency, µs.
    pub p99_us: Option<f64>,
    /// Errors per second.
    pub errors: Option<f64>,
    /// CPU, percent of one core.
    pub cpu: Option<f64>,
    /// Memory used, bytes.
    pub memory_bytes: Option<f64>,
    /// The failure's kind (failures only).
    pub failure: Option<FailureKind>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Appends each tick of a view to a history file.
pub struct Recorder {
    out: csv::Writer<std::io::BufWriter<std::fs::File>>,
    /// Failures already written, by (instance, time, kind).
    written: std::collections::BTreeSet<(InstanceId, TimestampMs, String)>,
}

impl Recorder {
    /// Create (or truncate) the history file at `path`.
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create the history file {}", path.display()))?;
        Ok(Recorder {
            out: csv::Writer::from_writer(std::io::BufWriter::new(file)),
            written: Default::default(),
        })
    }

    /// Append to the history file at `path`, creating it (with its header) if need be: a
    /// restarted process goes on with the same file.
    pub fn append(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the history file {}", path.display()))?;
        let empty = file.metadata().map(|m| m.len() == 0).unwrap_or(true);
        Ok(Recorder {
            out: csv::WriterBuilder::new()
                .has_headers(empty)
                .from_writer(std::io::BufWriter::new(file)),
            written: Default::default(),
        })
    }

    /// Write the tick `view` shows: a point per instance, then the failures not written yet.
    pub fn record(&mut self, view: &dyn HostView) -> Result<()> {
        let now = view.now();
        let instances = view.instances();
        let latest: Vec<Vec<f64>> = METRICS.iter().map(|&m| view.instances_latest(m)).collect();
        let value = |m: usize, i: usize| latest[m].get(i).copied().and_then(finite);
        for (i, instance) in instances.iter().enumerate() {
            self.out.serialize(Row {
                kind: "point".into(),
                t_ms: now,
                instance: instance.id,
                name: instance.name.clone(),
                state: Some(instance.state),
                ops: value(0, i),
                p99_us: value(1, i),
                errors: value(2, i),
                cpu: value(3, i),
                memory_bytes: value(4, i),
                failure: None,
            })?;
        }
        let mut failures = view.failures(None);
        failures.sort_by_key(|f| f.at);
        // Remember only failures the view still holds: its history is bounded, so is this.
        let held: std::collections::BTreeSet<(InstanceId, TimestampMs, String)> = failures
            .iter()
            .map(|f| (f.instance, f.at, format!("{:?}", f.kind)))
            .collect();
        self.written.retain(|k| held.contains(k));
        for f in failures {
            let key = (f.instance, f.at, format!("{:?}", f.kind));
            if !self.written.insert(key) {
                continue;
            }
            let name = instances
                .iter()
                .find(|i| i.id == f.instance)
                .map(|i| i.name.clone())
                .unwrap_or_default();
            self.out.serialize(Row {
                kind: "failure".into(),
                t_ms: f.at,
                instance: f.instance,
                name,
                state: None,
                ops: None,
                p99_us: None,
                errors: None,
                cpu: None,
                memory_bytes: None,
                failure: Some(f.kind),
            })?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// Read a history file; errors name the file and the line.
pub fn read(path: &Path) -> Result<Vec<Row>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the history file {}", path.display()))?;
    let mut rows = Vec::new();
    for (n, row) in csv::Reader::from_reader(file)
        .deserialize::<Row>()
        .enumerate()
    {
        let row = row.with_context(|| format!("{}: row {}", path.display(), n + 2))?;
        if row.kind != "point" && row.kind != "failure" {
            bail!(
                "{}: row {}: kind must be `point` or `failure`, got `{}`",
                path.display(),
                n + 2,
                row.kind
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

/// One tick of a history: its time and its point rows.
pub struct Tick<'a> {
    /// Milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// One row per instance.
    pub points: Vec<&'a Row>,
}

/// The ticks of `rows`, in time order.
pub fn ticks(rows: &[Row]) -> Vec<Tick<'_>> {
    let mut by_time: BTreeMap<u64, Vec<&Row>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.kind == "point") {
        by_time.entry(r.t_ms).or_default().push(r);
    }
    by_time
        .into_iter()
        .map(|(t_ms, points)| Tick { t_ms, points })
        .collect()
}

/// The failures of `rows`.
pub fn failures(rows: &[Row]) -> Vec<Failure> {
    rows.iter()
        .filter_map(|r| {
            Some(Failure {
                instance: r.instance,
                kind: r.failure?,
                at: r.t_ms,
                detail: String::new(),
            })
        })
        .collect()
}

/// A history replayed tick by tick as a [`HostView`]: instances, their metric windows and
/// the failures seen so far. Segments, sessions and migrations are empty.
pub struct Replay {
    retention: usize,
    interval_ms: u32,
    tick: u64,
    now: TimestampMs,
    instances: Vec<Instance>,
    /// Per metric, per instance row: the last `retention` values, oldest first.
    windows: Vec<Vec<Vec<f64>>>,
    failures: Vec<Failure>,
    seen: Vec<Failure>,
}

impl Replay {
    /// A replay of a history whose failures are `failures`, keeping `retention` points.
    pub fn new(failures: Vec<Failure>, retention: usize) -> Self {
        Replay {
            retention: retention.max(1),
            interval_ms: 1000,
            tick: 0,
            now: 0,
            instances: Vec::new(),
            windows: vec![Vec::new(); METRICS.len()],
            failures,
            seen: Vec::new(),
        }
    }

    /// Advance to `tick`.
    pub fn advance(&mut self, tick: &Tick<'_>) {
        if self.now > 0 && tick.t_ms > self.now {
            self.interval_ms = (tick.t_ms - self.now).min(u64::from(u32::MAX)) as u32;
        }
        self.now = tick.t_ms;
        self.tick += 1;
        // Every instance gets one point per tick: its row's values (the last, if a tick has
        // two), or NaN when this tick has none, so that windows stay aligned in time.
        for r in &tick.points {
            if !self.instances.iter().any(|i| i.id == r.instance) {
                self.instances.push(Instance {
                    id: r.instance,
                    name: r.name.clone(),
                    address: String::new(),
                    zone: String::new(),
                    capacity: 1.0,
                    state: InstanceState::Active,
                });
                for w in &mut self.windows {
                    w.push(Vec::new());
                }
            }
        }
        for row in 0..self.instances.len() {
            let id = self.instances[row].id;
            let point = tick.points.iter().rev().find(|r| r.instance == id);
            if let Some(state) = point.and_then(|r| r.state) {
                self.instances[row].state = state;
            }
            let values = point.map_or([None; 5], |r| {
                [r.ops, r.p99_us, r.errors, r.cpu, r.memory_bytes]
            });
            for (m, v) in values.iter().enumerate() {
                let w = &mut self.windows[m][row];
                w.push(v.unwrap_or(f64::NAN));
                if w.len() > self.retention {
                    w.remove(0);
                }
            }
        }
        let now = self.now;
        self.seen = self
            .failures
            .iter()
            .filter(|f| f.at <= now)
            .cloned()
            .collect();
    }

    fn window(&self, metric: Metric, points: u32) -> Option<Vec<f64>> {
        let m = METRICS.iter().position(|&x| x == metric)?;
        let k = (points as usize).min(self.retention);
        let mut out = Vec::with_capacity(k * self.instances.len());
        for w in &self.windows[m] {
            let pad = k.saturating_sub(w.len());
            out.extend(std::iter::repeat_n(f64::NAN, pad));
            out.extend(&w[w.len().saturating_sub(k)..]);
        }
        Some(out)
    }
}

impl HostView for Replay {
    fn now(&self) -> TimestampMs {
        self.now
    }
    fn tick(&self) -> u64 {
        self.tick
    }
    fn epoch(&self) -> u64 {
        0
    }
    fn instances(&self) -> Vec<Instance> {
        self.instances.clone()
    }
    fn segments(&self) -> Vec<Segment> {
        Vec::new()
    }
    fn sessions(&self) -> Vec<Session> {
        Vec::new()
    }
    fn migrations(&self) -> Vec<Migration> {
        Vec::new()
    }
    fn failures(&self, instance: Option<InstanceId>) -> Vec<Failure> {
        self.seen
            .iter()
            .filter(|f| instance.is_none_or(|i| f.instance == i))
            .cloned()
            .collect()
    }
    fn rejections(&self) -> Vec<Rejection> {
        Vec::new()
    }
    fn interval_ms(&self) -> u32 {
        self.interval_ms
    }
    fn retention(&self) -> u32 {
        self.retention as u32
    }
    fn series(&self, scope: Scope, metric: Metric, points: u32) -> Vec<f64> {
        let Scope::Instance(id) = scope else {
            return Vec::new();
        };
        let Some(row) = self.instances.iter().position(|i| i.id == id) else {
            return Vec::new();
        };
        let k = (points as usize).min(self.retention);
        self.window(metric, points)
            .map(|w| w[row * k..(row + 1) * k].to_vec())
            .unwrap_or_default()
    }
    fn segments_latest(&self, _metric: Metric) -> Vec<f64> {
        Vec::new()
    }
    fn segments_window(&self, _metric: Metric, _points: u32) -> Vec<f64> {
        Vec::new()
    }
    fn instances_latest(&self, metric: Metric) -> Vec<f64> {
        self.window(metric, 1)
            .unwrap_or_else(|| vec![f64::NAN; self.instances.len()])
    }
    fn instances_window(&self, metric: Metric, points: u32) -> Vec<f64> {
        self.window(metric, points).unwrap_or_else(|| {
            vec![f64::NAN; self.instances.len() * (points as usize).min(self.retention)]
        })
    }
    fn partitions(&self, _session: SessionId) -> Vec<String> {
        Vec::new()
    }
    fn partition(&self, _session: SessionId, _name: &str) -> Option<Vec<(String, String)>> {
        None
    }
    fn log(&self, _level: Level, _message: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_sdk::view::ViewSnapshot;

    #[test]
    fn a_recorded_view_replays_to_the_same_latest_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.csv");
        let mut view = ViewSnapshot::synthetic(3, 12, 16, 8);
        view.failures.push(Failure {
            instance: 1,
            kind: FailureKind::Crash,
            at: view.now,
            detail: "gone".into(),
        });
        let mut recorder = Recorder::create(&path).expect("create");
        recorder.record(&view).expect("record");
        recorder
            .record(&view)
            .expect("the same failure is not written twice");
        let rows = read(&path).expect("read");
        assert_eq!(rows.iter().filter(|r| r.kind == "failure").count(), 1);
        let ticks = ticks(&rows);
        assert_eq!(ticks.len(), 1, "one time, two records of it");
        let mut replay = Replay::new(failures(&rows), 60);
        replay.advance(&ticks[0]);
        for m in METRICS {
            let want = view.instances_latest(m);
            let got = replay.instances_latest(m);
            for (w, g) in want.iter().zip(&got) {
                assert!(
                    (w.is_nan() && g.is_nan()) || (w - g).abs() <= 1e-9 * w.abs().max(1.0),
                    "{m:?}: {want:?} vs {got:?}"
                );
            }
        }
        assert_eq!(replay.failures(Some(1)).len(), 1);
    }

    #[test]
    fn a_bad_row_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.csv");
        std::fs::write(
            &path,
            "kind,t_ms,instance,name,state,ops,p99_us,errors,cpu,memory_bytes,failure\n\
             point,1,0,a,Active,1,1,0,1,1,\nsample,2,0,a,Active,1,1,0,1,1,\n",
        )
        .expect("write");
        let err = format!("{:#}", read(&path).expect_err("bad kind"));
        assert!(err.contains("row 3") && err.contains("sample"), "{err}");
    }
}

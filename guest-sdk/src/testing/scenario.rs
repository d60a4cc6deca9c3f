//! Scenario files: what the simulator runs, as TOML.
//!
//! A scenario names its seed, duration, tick, fleet, workload, failures and SLO. Every
//! field has a default except the name, so a scenario states only what makes it special.
//! Unknown keys are errors, and so are values that make no sense (checked by
//! [`Scenario::check`]).

use serde::{Deserialize, Serialize};

use super::recorded::Series;

/// One simulation scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated seconds.
    #[serde(default = "default_duration")]
    pub duration_s: u64,
    /// Milliseconds per tick.
    #[serde(default = "default_tick")]
    pub tick_ms: u64,
    /// The fleet.
    #[serde(default)]
    pub fleet: Fleet,
    /// The workload.
    #[serde(default)]
    pub workload: Workload,
    /// Failures and maintenance.
    #[serde(default)]
    pub failures: Vec<FailureSpec>,
    /// The service-level objective.
    #[serde(default)]
    pub slo: Slo,
    /// The controller's churn limits.
    #[serde(default)]
    pub limits: crate::validate::ChurnLimits,
}

fn default_seed() -> u64 {
    1
}
fn default_duration() -> u64 {
    3600
}
fn default_tick() -> u64 {
    1000
}

/// Instances, segments and data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fleet {
    /// Active instances at the start.
    pub instances: u32,
    /// Standby instances (configured, owning nothing).
    pub standby: u32,
    /// Operations per second one instance serves at 100% utilisation.
    pub capacity_ops: f64,
    /// Service time of one request at no load, in microseconds.
    pub service_us: f64,
    /// Segments the 16,384 slots are cut into.
    pub segments: u32,
    /// Keys per segment (on average; skew follows the workload's Zipf weights).
    pub keys_per_segment: u64,
    /// Bytes per value.
    pub value_bytes: u64,
    /// Migration copy bandwidth per migration, bytes per second.
    pub bandwidth_bytes_per_s: f64,
    /// Load a running migration adds to its source and its target, ops per second.
    pub migration_load_ops: f64,
    /// How long a cutover holds the segment's requests, in milliseconds.
    pub cutover_ms: f64,
    /// Points of metric history the view keeps per series.
    pub retention: u32,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            instances: 4,
            standby: 1,
            capacity_ops: 100_000.0,
            service_us: 100.0,
            segments: 256,
            keys_per_segment: 20_000,
            value_bytes: 100,
            bandwidth_bytes_per_s: 50_000_000.0,
            migration_load_ops: 5_000.0,
            cutover_ms: 5.0,
            retention: 60,
        }
    }
}

/// Where the load comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Fleet-wide operations per second before the multipliers.
    pub base_ops: f64,
    /// Zipf exponent of the load across segments (0 is uniform).
    pub zipf_theta: f64,
    /// Share of operations that are writes.
    pub write_ratio: f64,
    /// Daily cycle.
    pub diurnal: Diurnal,
    /// A second, longer cycle (a week), multiplied with the first.
    pub weekly: Weekly,
    /// Load taken from recorded series: the fleet's, or a tenant's.
    pub recorded: Vec<RecordedLoad>,
    /// Ramps of the total load.
    pub ramps: Vec<Ramp>,
    /// Hot spots over ranges of segments.
    pub hotspots: Vec<Hotspot>,
    /// Client sessions.
    pub sessions: Sessions,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            base_ops: 200_000.0,
            zipf_theta: 0.0,
            write_ratio: 0.3,
            diurnal: Diurnal::default(),
            weekly: Weekly::default(),
            recorded: Vec::new(),
            ramps: Vec::new(),
            hotspots: Vec::new(),
            sessions: Sessions::default(),
        }
    }
}

/// A sinusoidal daily cycle: `1 + amplitude * sin(2π (t / period + phase))`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Diurnal {
    /// Relative swing, 0 for none.
    pub amplitude: f64,
    /// Period in seconds.
    pub period_s: f64,
    /// Phase, in periods.
    pub phase: f64,
}

impl Default for Diurnal {
    fn default() -> Self {
        Diurnal {
            amplitude: 0.0,
            period_s: 86_400.0,
            phase: 0.0,
        }
    }
}

/// A second cycle, as [`Diurnal`], whose period defaults to a week.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weekly {
    /// Relative swing, 0 for none.
    pub amplitude: f64,
    /// Period in seconds.
    pub period_s: f64,
    /// Phase, in periods.
    pub phase: f64,
}

impl Default for Weekly {
    fn default() -> Self {
        Weekly {
            amplitude: 0.0,
            period_s: 604_800.0,
            phase: 0.0,
        }
    }
}

/// Load from a recorded series ([`Series`]), resampled to the tick and scaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedLoad {
    /// The CSV file, relative to the scenario file.
    pub file: String,
    /// In a shardcast history: the instance (by name) whose series to take.
    #[serde(default)]
    pub instance: Option<String>,
    /// In a shardcast history: the column.
    #[serde(default = "ops_column")]
    pub column: String,
    /// Operations per second per recorded unit.
    #[serde(default = "one")]
    pub scale: f64,
    /// Seconds into the recording at which the scenario starts.
    #[serde(default)]
    pub skip_s: f64,
    /// A tenant's segments start here (with `width`).
    #[serde(default)]
    pub first: u32,
    /// A tenant's segments: the recorded load is spread evenly over `width` segments from
    /// `first`, on top of the rest. 0 (the default) means the fleet: the recorded load
    /// replaces `base_ops`.
    #[serde(default)]
    pub width: u32,
    /// The series, read when the scenario is loaded.
    #[serde(skip)]
    pub series: Series,
}

impl RecordedLoad {
    /// Operations per second at scenario time `t`.
    pub fn ops_at(&self, t: f64) -> f64 {
        (self.series.at(t + self.skip_s) * self.scale).max(0.0)
    }
}

/// A precursor from a recorded series: the instance's latency (or another metric) before a
/// labelled failure, replayed so that the recorded failure lands on the scenario's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedPrecursor {
    /// The CSV file, relative to the scenario file.
    pub file: String,
    /// In a shardcast history: the instance (by name).
    #[serde(default)]
    pub instance: Option<String>,
    /// In a shardcast history: the column.
    #[serde(default = "p99_column")]
    pub column: String,
    /// Seconds from the recording's first point to the failure. Default: the history's
    /// first crash of the instance, or else the recording's end.
    #[serde(default)]
    pub failure_s: Option<f64>,
    /// The series, read when the scenario is loaded.
    #[serde(skip)]
    pub series: Series,
}

impl RecordedPrecursor {
    /// When the recorded failure happens, seconds from the recording's start.
    pub fn failure_at(&self) -> f64 {
        self.failure_s
            .or_else(|| self.series.failures.first().copied())
            .unwrap_or_else(|| self.series.end())
    }

    /// The latency factor `before_failure` seconds before the failure: the recorded value
    /// over its median before the precursor began (`precursor_s` before the failure).
    pub fn factor(&self, before_failure: f64, precursor_s: f64) -> f64 {
        let fail = self.failure_at();
        let start = fail - precursor_s;
        let base = self
            .series
            .median_between(f64::NEG_INFINITY, start)
            .or_else(|| self.series.v.first().copied())
            .filter(|b| *b > 0.0)
            .unwrap_or(1.0);
        (self.series.at(fail - before_failure) / base).max(1.0)
    }
}

fn ops_column() -> String {
    "ops".into()
}
fn p99_column() -> String {
    "p99_us".into()
}
fn one() -> f64 {
    1.0
}

/// A change of the total load: linear from 1 to `factor` over `duration_s` from `start_s`.
/// With `abort_s`, the ramp stops there and falls back to 1 over the same duration: a
/// forecast ramp that never comes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    /// Start, in seconds.
    pub start_s: f64,
    /// Time to reach the factor, in seconds.
    pub duration_s: f64,
    /// The multiplier reached.
    pub factor: f64,
    /// Where the ramp gives up, if it does.
    #[serde(default)]
    pub abort_s: Option<f64>,
    /// Only these instances' segments ramp (all when empty).
    #[serde(default)]
    pub instances: Vec<u32>,
}

/// Extra load on a window of segments that may move or jump.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hotspot {
    /// Start, in seconds.
    pub start_s: f64,
    /// End, in seconds.
    pub end_s: f64,
    /// Multiplier of the segments in the window.
    pub factor: f64,
    /// Segments in the window.
    pub width: u32,
    /// First segment of the window at the start.
    #[serde(default)]
    pub first: u32,
    /// Segments the window slides per second.
    #[serde(default)]
    pub speed: f64,
    /// Jump to a random position every this many seconds (rotating hot tenants); 0 never.
    #[serde(default)]
    pub jump_every_s: f64,
}

/// The client sessions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sessions {
    /// Sessions connected throughout.
    pub count: u32,
    /// Share of bursty sessions.
    pub bursty: f64,
    /// Share of batch sessions.
    pub batch: f64,
    /// Hours of the day (0-23) when batch sessions run.
    pub batch_hours: Vec<u32>,
    /// Sessions that leave per hour, as a share of all sessions (0 = none ever leave).
    /// A leaving session's activity fades to nothing over `fade_s`, then it disconnects
    /// and a new session of the same kind connects in its place.
    pub churn_per_hour: f64,
    /// Seconds a leaving session takes to fade out.
    pub fade_s: f64,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            count: 50,
            bursty: 0.2,
            batch: 0.1,
            batch_hours: vec![2],
            churn_per_hour: 0.0,
            fade_s: 120.0,
        }
    }
}

/// What happens to an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Latency, errors and CPU creep up over `precursor_s`, then the instance crashes.
    Degrade,
    /// The instance crashes with no warning.
    Crash,
    /// Precursors as for `degrade`, but no crash follows.
    Warn,
    /// The instance restarts: down for `duration_s`, then back with its data.
    Restart,
    /// Planned maintenance announced `notice_s` ahead: down for `duration_s`.
    Drain,
}

/// One failure or maintenance event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureSpec {
    /// What happens.
    pub kind: FailureKind,
    /// Which instance (index among the active instances at the start).
    pub instance: u32,
    /// When the crash, restart or drain happens, in seconds.
    pub at_s: f64,
    /// Length of the precursor phase for `degrade` and `warn`.
    #[serde(default = "default_precursor")]
    pub precursor_s: f64,
    /// How long the instance stays down.
    #[serde(default = "default_down")]
    pub duration_s: f64,
    /// How far ahead a drain is announced.
    #[serde(default = "default_notice")]
    pub notice_s: f64,
    /// For `degrade` and `warn`: the precursor's latency from a recorded series instead of
    /// the built-in linear creep (errors and CPU follow it).
    #[serde(default)]
    pub precursor_from: Option<RecordedPrecursor>,
}

fn default_precursor() -> f64 {
    300.0
}
fn default_down() -> f64 {
    600.0
}
fn default_notice() -> f64 {
    300.0
}

/// The service-level objective.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Slo {
    /// Target p99 latency, in microseconds.
    pub p99_us: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo { p99_us: 2_000.0 }
    }
}

impl Scenario {
    /// Parse a scenario from TOML, with errors naming the key and line. Recorded series
    /// are read relative to the working directory.
    pub fn parse(toml_text: &str) -> Result<Self, String> {
        Scenario::parse_in(toml_text, std::path::Path::new("."))
    }

    /// Read and parse a scenario file; its recorded series are read relative to it.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read scenario {}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        Scenario::parse_in(&text, dir).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn parse_in(toml_text: &str, dir: &std::path::Path) -> Result<Self, String> {
        let mut scenario: Scenario = toml::from_str(toml_text)
            .map_err(|e| format!("invalid scenario: {}", e.to_string().trim_end()))?;
        scenario.check()?;
        for r in &mut scenario.workload.recorded {
            r.series = Series::load(&dir.join(&r.file), r.instance.as_deref(), &r.column)?;
        }
        for f in &mut scenario.failures {
            if let Some(p) = f.precursor_from.as_mut() {
                p.series = Series::load(&dir.join(&p.file), p.instance.as_deref(), &p.column)?;
            }
        }
        Ok(scenario)
    }

    /// Check values that parse but make no sense.
    pub fn check(&self) -> Result<(), String> {
        let f = &self.fleet;
        let bad = |what: &str| Err(format!("invalid scenario: {what}"));
        if self.tick_ms == 0 || self.duration_s == 0 {
            return bad("`tick_ms` and `duration_s` must be positive");
        }
        if f.instances == 0 {
            return bad("`fleet.instances` must be at least 1");
        }
        if f.segments == 0 || f.segments > 16_384 {
            return bad("`fleet.segments` must be between 1 and 16384");
        }
        if !(f.capacity_ops > 0.0 && f.service_us > 0.0 && f.bandwidth_bytes_per_s > 0.0) {
            return bad(
                "`fleet.capacity_ops`, `fleet.service_us` and `fleet.bandwidth_bytes_per_s` must be positive",
            );
        }
        if f.retention == 0 {
            return bad("`fleet.retention` must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.workload.write_ratio) {
            return bad("`workload.write_ratio` must be between 0 and 1");
        }
        for r in &self.workload.recorded {
            if !(r.scale.is_finite() && r.scale >= 0.0) {
                return bad("`workload.recorded.scale` must be a number at least 0");
            }
            if r.width > 0 && r.first + r.width > f.segments {
                return Err(format!(
                    "invalid scenario: recorded load on segments {}..{} of {}",
                    r.first,
                    r.first + r.width,
                    f.segments
                ));
            }
        }
        for failure in &self.failures {
            if failure.precursor_from.is_some()
                && !matches!(failure.kind, FailureKind::Degrade | FailureKind::Warn)
            {
                return bad("`precursor_from` is for `degrade` and `warn` failures");
            }
            if failure.instance >= f.instances {
                return Err(format!(
                    "invalid scenario: a failure names instance {}, but the fleet has {} active instances",
                    failure.instance, f.instances
                ));
            }
        }
        Ok(())
    }

    /// Number of ticks the scenario runs.
    pub fn ticks(&self) -> u64 {
        self.duration_s * 1000 / self.tick_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_a_minimal_scenario() {
        let s = Scenario::parse("name = \"x\"").expect("minimal");
        assert_eq!(s.fleet.instances, 4);
        assert_eq!(s.ticks(), 3600);
    }

    #[test]
    fn errors_name_the_key() {
        let err = Scenario::parse("name = \"x\"\n[fleet]\ninstancs = 3").expect_err("typo");
        assert!(err.contains("instancs"), "{err}");
        let err = Scenario::parse("name = \"x\"\n[fleet]\nsegments = 0").expect_err("zero");
        assert!(err.contains("fleet.segments"), "{err}");
        let err = Scenario::parse(
            "name = \"x\"\n[[failures]]\nkind = \"crash\"\ninstance = 9\nat_s = 1.0",
        )
        .expect_err("instance");
        assert!(err.contains("instance 9"), "{err}");
    }
}

//! `GET /metrics`: the process in Prometheus's text exposition format (OpenMetrics), built
//! with the prometheus-client crate from the process's state at each scrape.
//!
//! Per instance: operations, p99, load, state. Segments in aggregate. Per policy version:
//! calls, call time, faults by kind, rejections. Migrations by step and outcome, held
//! requests and cutover holds, sessions, and the process's own CPU and memory.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use shardcast_sdk::types::{MigrationOutcome, MigrationPhase};

use super::Admin;
use crate::migrate::control::phase_name;

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;

/// Label pairs, their values escaped as the exposition format asks (`\\`, `\"`, `\n`):
/// a policy names itself, and prometheus-client writes values as given.
fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| {
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            ((*k).to_owned(), escaped)
        })
        .collect()
}

/// A registry being filled for one scrape.
struct Scrape {
    registry: Registry,
}

impl Scrape {
    fn gauges(&mut self, name: &str, help: &str, values: Vec<(Labels, f64)>) {
        let family = Family::<Labels, GaugeF>::default();
        for (l, v) in values {
            family.get_or_create(&l).set(v);
        }
        self.registry.register(name, help, family);
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        let g = GaugeF::default();
        g.set(value);
        self.registry.register(name, help, g);
    }

    /// A counter; the exposition adds `_total` to `name`.
    fn counters(&mut self, name: &str, help: &str, values: Vec<(Labels, f64)>) {
        let family = Family::<Labels, CounterF>::default();
        for (l, v) in values {
            family.get_or_create(&l).inc_by(v.max(0.0));
        }
        self.registry.register(name, help, family);
    }

    fn counter(&mut self, name: &str, help: &str, value: f64) {
        let c = CounterF::default();
        c.inc_by(value.max(0.0));
        self.registry.register(name, help, c);
    }
}

impl Admin {
    /// The exposition text of every metric.
    pub fn metrics(&self) -> String {
        let mut s = Scrape {
            registry: Registry::default(),
        };
        self.instance_metrics(&mut s);
        self.segment_metrics(&mut s);
        self.policy_metrics(&mut s);
        self.migration_metrics(&mut s);
        process_metrics(&mut s);
        s.gauge(
            "shardcast_sessions",
            "Client sessions open on this proxy",
            self.parts.registry.len() as f64,
        );
        let mut text = String::new();
        if encode(&mut text, &s.registry).is_err() {
            text = "# the metrics could not be encoded\n".into();
        }
        text
    }

    fn instance_metrics(&self, s: &mut Scrape) {
        let topology = self.topology();
        let by = |f: &dyn Fn(&super::state::InstanceView) -> f64| {
            topology
                .instances
                .iter()
                .map(|i| (labels(&[("instance", &i.name)]), f(i)))
                .collect::<Vec<_>>()
        };
        s.gauges(
            "shardcast_instance_ops_per_second",
            "Operations per second the proxy sent to the instance (latest interval)",
            by(&|i| i.ops),
        );
        s.gauges(
            "shardcast_instance_latency_p99_seconds",
            "99th percentile latency of requests to the instance through the proxy (latest interval)",
            by(&|i| i.p99_us / 1e6),
        );
        s.gauges(
            "shardcast_instance_load_ratio",
            "Operations per second over the instance's configured capacity",
            by(&|i| i.load),
        );
        s.gauges(
            "shardcast_instance_up",
            "1 when the instance answers the poller",
            by(&|i| f64::from(u8::from(i.up))),
        );
        s.gauges(
            "shardcast_instance_segments",
            "Segments the instance owns",
            by(&|i| i.segments as f64),
        );
        let mut states = Vec::new();
        for i in &topology.instances {
            for state in ["active", "standby", "draining", "down"] {
                states.push((
                    labels(&[("instance", &i.name), ("state", state)]),
                    f64::from(u8::from(i.state == state)),
                ));
            }
        }
        s.gauges(
            "shardcast_instance_state",
            "1 for the instance's state (down: configured active but not answering)",
            states,
        );
    }

    fn segment_metrics(&self, s: &mut Scrape) {
        let segments = self.segments();
        s.gauge(
            "shardcast_segments",
            "Segments in the table",
            segments.segments.len() as f64,
        );
        s.gauge(
            "shardcast_segment_table_epoch",
            "The segment table's epoch (it grows with every change)",
            segments.epoch as f64,
        );
        s.gauge(
            "shardcast_segments_migrating",
            "Segments with a migration running",
            segments.segments.iter().filter(|x| x.migrating).count() as f64,
        );
        let total: f64 = segments.segments.iter().map(|x| x.ops).sum();
        let hottest = segments.segments.iter().map(|x| x.ops).fold(0.0, f64::max);
        s.gauge(
            "shardcast_segment_ops_max",
            "Operations per second of the busiest segment",
            hottest,
        );
        s.gauge(
            "shardcast_segment_ops_hottest_share",
            "The busiest segment's share of all operations (0 when idle)",
            if total > 0.0 { hottest / total } else { 0.0 },
        );
    }

    fn policy_metrics(&self, s: &mut Scrape) {
        let Some(desk) = &self.policy else {
            return;
        };
        let status = desk.planner().status();
        let stats = desk.planner().ledger().snapshot();
        let mut calls = Vec::new();
        let mut seconds = Vec::new();
        let mut p99 = Vec::new();
        let mut faults = Vec::new();
        let mut rejections = Vec::new();
        let mut active = Vec::new();
        for v in &stats {
            let l = labels(&[("policy", &v.label), ("version_id", &v.id)]);
            calls.push((l.clone(), v.calls as f64));
            seconds.push((l.clone(), v.call_total_us as f64 / 1e6));
            p99.push((l.clone(), v.call_p99_us as f64 / 1e6));
            rejections.push((l.clone(), v.rejections as f64));
            active.push((
                l,
                f64::from(u8::from(status.active_id.as_deref() == Some(v.id.as_str()))),
            ));
            for kind in crate::engine::FaultKind::ALL {
                let n = v.faults.get(kind.name()).copied().unwrap_or(0);
                faults.push((
                    labels(&[
                        ("policy", &v.label),
                        ("version_id", &v.id),
                        ("kind", kind.name()),
                    ]),
                    n as f64,
                ));
            }
        }
        s.counters(
            "shardcast_policy_calls",
            "Policy calls (predict, plan) that answered, per version",
            calls,
        );
        s.counters(
            "shardcast_policy_call_seconds",
            "Time spent in policy calls that answered, per version",
            seconds,
        );
        s.gauges(
            "shardcast_policy_call_p99_seconds",
            "99th percentile policy call time, per version",
            p99,
        );
        s.counters(
            "shardcast_policy_faults",
            "Policy calls that faulted, per version and kind (trap, timeout, memory-limit, absurd-output, blocking-call)",
            faults,
        );
        s.counters(
            "shardcast_policy_rejections",
            "Actions the validator refused, per version",
            rejections,
        );
        s.gauges(
            "shardcast_policy_active",
            "1 for the version running now",
            active,
        );
        let shadow = desk.shadow_status();
        s.gauge(
            "shardcast_shadow_agreement_ratio",
            "Share of ticks where the shadow candidate accepted the same actions as the active policy (0 without one)",
            shadow.agreement.unwrap_or(0.0),
        );
        s.gauge(
            "shardcast_shadow_ticks",
            "Ticks the shadow candidate has run",
            shadow.ticks as f64,
        );
    }

    fn migration_metrics(&self, s: &mut Scrape) {
        let executor = &self.parts.executor;
        let outcomes = executor.outcomes();
        s.counters(
            "shardcast_migrations",
            "Migrations ended since the start, by outcome",
            ["completed", "aborted", "failed"]
                .into_iter()
                .map(|o| {
                    (
                        labels(&[("outcome", o)]),
                        outcomes.get(o).copied().unwrap_or(0) as f64,
                    )
                })
                .collect(),
        );
        let running = executor.migrations();
        let phases = [
            MigrationPhase::Start,
            MigrationPhase::Copy,
            MigrationPhase::CatchUp,
            MigrationPhase::Cutover,
            MigrationPhase::Cleanup,
            MigrationPhase::Watch,
        ];
        s.gauges(
            "shardcast_migrations_running",
            "Migrations running now, by step",
            phases
                .iter()
                .map(|p| {
                    let n = running
                        .iter()
                        .filter(|m| m.outcome == MigrationOutcome::Running && m.phase == *p)
                        .count();
                    (labels(&[("step", phase_name(*p))]), n as f64)
                })
                .collect(),
        );
        let held = self.parts.gate.held();
        s.counter(
            "shardcast_held_requests",
            "Requests held by cutovers and instance restarts",
            held.requests as f64,
        );
        s.counter(
            "shardcast_held_seconds",
            "Total time requests were held",
            held.total_us as f64 / 1e6,
        );
        s.gauge(
            "shardcast_held_max_seconds",
            "The longest any request was held",
            held.max_us as f64 / 1e6,
        );
        let holds = executor.holds();
        s.counter(
            "shardcast_cutovers",
            "Cutovers completed (the segment held, then flipped)",
            holds.count as f64,
        );
        s.gauge(
            "shardcast_cutover_hold_p99_seconds",
            "99th percentile time a cutover held its segment",
            holds.p99_us as f64 / 1e6,
        );
    }
}

/// The process's CPU time, resident memory and start time, from `/proc/self`.
fn process_metrics(s: &mut Scrape) {
    let Some(p) = ProcessStats::read() else {
        return;
    };
    s.counter(
        "process_cpu_seconds",
        "User and system CPU time of the shardcast process",
        p.cpu_seconds,
    );
    s.gauge(
        "process_resident_memory_bytes",
        "Resident memory of the shardcast process",
        p.resident_bytes,
    );
    s.gauge(
        "process_threads",
        "Threads of the shardcast process",
        p.threads,
    );
}

/// What `/proc/self/stat` says of the process.
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: f64,
    threads: f64,
}

impl ProcessStats {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name is in parentheses and may hold spaces: fields follow the last `)`.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the name: state(3) ... utime(14) stime(15) ... num_threads(20) ... rss(24).
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        let ticks = clock_ticks();
        let page = 4096.0;
        Some(ProcessStats {
            cpu_seconds: (field(14)? + field(15)?) / ticks,
            threads: field(20)?,
            resident_bytes: field(24)? * page,
        })
    }
}

/// Clock ticks per second (`getconf CLK_TCK`); 100 on every Linux this runs on.
fn clock_ticks() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        let l = super::labels(&[("policy", "a\"b\\c\nd")]);
        assert_eq!(l[0].1, "a\\\"b\\\\c\\nd");
    }
}

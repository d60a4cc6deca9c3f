//! The demo's run: a live fleet of real `redis-server` processes behind shardcast running
//! `predictive`, a tenant whose load ramps predictably, and an instance that degrades and
//! is then killed with SIGKILL.
//!
//! [`run`] writes what happens as it happens (one row per second, and a line for every
//! reason the policy gives, every finished migration and every event of the plan) and
//! returns a [`Summary`]. The `demo` binary prints it; an end-to-end test asserts on it.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shardcast::proxy::slot::slot;
use shardcast_sdk::types::{
    FailureRisk, InstanceState, LoadForecast, Metric, Migration, MigrationOutcome, Predictions,
    Scope,
};

use crate::artifacts;
use crate::decisions::Tail;
use crate::load::{Load, LoadShape, LoadStats};
use crate::servers::{Proxy, RedisServer, free_port};
use crate::sickness::Sickness;

/// Active instances at the start; one more is a standby.
pub const ACTIVE: usize = 3;
/// The instance that degrades and is killed.
pub const VICTIM: usize = 1;
/// The instance whose tenant ramps.
pub const RAMPED: usize = 0;
/// Segments in the table.
const SEGMENTS: usize = 12;

/// A policy swapped in while the load runs.
#[derive(Clone, Debug)]
pub struct Swap {
    /// Second of the run at which the file is replaced.
    pub at: u64,
    /// `static`, `threshold`, `hot-shed`, `forecast`, `failure-guard` or `predictive`.
    pub policy: String,
}

/// What the run does and when (seconds from the start of the load).
#[derive(Clone, Debug)]
pub struct Plan {
    /// How long the load runs.
    pub seconds: u64,
    /// Client threads of the steady load.
    pub threads: usize,
    /// Requests per second of each steady thread.
    pub rate_per_thread: u64,
    /// Client threads of the ramping tenant.
    pub ramp_threads: usize,
    /// The tenant's requests per second at the top of its ramp (all threads).
    pub ramp_peak: u64,
    /// When the ramp starts and when it reaches its peak.
    pub ramp: (u64, u64),
    /// Operations per second one instance serves well (the policy's capacity).
    pub capacity: f64,
    /// When the victim starts to degrade.
    pub sick_at: u64,
    /// Milliseconds of each 100 ms the victim is busy at first and after `sick_ramp` s.
    pub busy_ms: (u64, u64),
    /// Seconds over which the victim's sickness grows.
    pub sick_ramp: u64,
    /// When the victim is killed with SIGKILL.
    pub kill_at: u64,
    /// A policy swapped in while the load runs.
    pub swap: Option<Swap>,
    /// Where the admin API, `/metrics` and the dashboard listen (another free port when
    /// this one is taken); none: no admin listener.
    pub admin: Option<String>,
}

impl Plan {
    /// The demo's plan: 8,400 ops/s steady, a tenant ramping to 6,000 ops/s, instances
    /// good for 5,000 ops/s each, and `redis-1` degrading from second 50 and killed at 85.
    pub fn demo() -> Self {
        Plan {
            seconds: 95,
            threads: 6,
            rate_per_thread: 1400,
            ramp_threads: 4,
            ramp_peak: 6000,
            ramp: (10, 40),
            capacity: 5000.0,
            sick_at: 50,
            busy_ms: (2, 40),
            sick_ramp: 20,
            kill_at: 85,
            swap: None,
            admin: Some(shardcast::config::DEFAULT_ADMIN_LISTEN.into()),
        }
    }

    /// The same story at a quarter of the rates, for a debug build on a small machine.
    pub fn small() -> Self {
        Plan {
            threads: 3,
            rate_per_thread: 700,
            ramp_threads: 2,
            ramp_peak: 1500,
            capacity: 1250.0,
            admin: None,
            ..Plan::demo()
        }
    }

    /// `predictive`'s settings for this plan.
    pub fn settings(&self) -> String {
        format!(
            "[failure]\ngrace_s = 15\nmax_load = {max_load:.0}\n\
             [load]\ncapacity = {capacity:.0}\nhorizon_ticks = 20\ncooldown_ticks = 60\n\
             relief_ticks = 5\n",
            capacity = self.capacity,
            max_load = self.capacity * 1.3,
        )
    }
}

/// The built component of the policy called `name`.
pub fn component(name: &str) -> Option<&'static str> {
    match name {
        "static" => Some(artifacts::STATIC),
        "threshold" => Some(artifacts::THRESHOLD),
        "hot-shed" => Some(artifacts::HOT_SHED),
        "forecast" => Some(artifacts::FORECAST),
        "failure-guard" => Some(artifacts::FAILURE_GUARD),
        "predictive" => Some(artifacts::PREDICTIVE),
        _ => None,
    }
}

/// What the run saw.
#[derive(Debug, Default)]
pub struct Summary {
    /// Requests answered without error.
    pub ok: u64,
    /// Requests that failed.
    pub errors: u64,
    /// The last client error.
    pub last_error: Option<String>,
    /// Client latency percentiles (µs): p50, p99, max.
    pub latency_us: (u64, u64, u64),
    /// Migrations completed and aborted.
    pub completed: usize,
    /// Migrations aborted.
    pub aborted: usize,
    /// Cutover holds (µs): p50, p99, max.
    pub holds_us: (u64, u64, u64),
    /// Requests held at cutovers, and the longest hold (µs).
    pub held: (u64, u64),
    /// Segments per instance at the end.
    pub layout: Vec<usize>,
    /// Seconds into the run when the standby was activated.
    pub standby_at: Option<f64>,
    /// Seconds into the run when the victim started draining.
    pub drain_at: Option<f64>,
    /// Seconds into the run when the victim held no segment any more.
    pub empty_at: Option<f64>,
    /// Seconds into the run of the kill.
    pub killed_at: Option<f64>,
    /// Segments the victim owned when it was killed.
    pub owned_at_kill: usize,
    /// Client errors from the kill to the end.
    pub errors_after_kill: u64,
    /// The reasons the policy gave, with the second each was given.
    pub reasons: Vec<(u64, String)>,
    /// The planner running at the end, and client errors across the swap.
    pub swap: Option<(String, u64)>,
    /// Lines in the decision log.
    pub log_lines: usize,
    /// Client sessions the policy gave a health score.
    pub scored_sessions: std::collections::BTreeSet<u64>,
    /// The lowest session health score seen.
    pub lowest_health: Option<f64>,
}

impl Summary {
    /// Seconds the victim was empty before it was killed (negative: it was not).
    pub fn emptied_before_kill(&self) -> Option<f64> {
        Some(self.killed_at? - self.empty_at?)
    }
}

fn config(
    port: u16,
    servers: &[RedisServer],
    dir: &Path,
    policy: &Path,
    admin: Option<&str>,
) -> String {
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\ntick_ms = 1000\n[segments]\ncount = {SEGMENTS}\n\
         [churn]\nmoves_per_window = 12\nwindow_ticks = 30\nmax_concurrent_migrations = 2\n\
         [migration]\nstate_dir = \"{}\"\n\
         [policy]\nfile = \"{}\"\nsettings = \"{}\"\nwatch = true\n",
        dir.join("state").display(),
        policy.display(),
        dir.join("policy.toml").display()
    );
    if let Some(admin) = admin {
        text.push_str(&format!("[admin]\nlisten = \"{admin}\"\n"));
    }
    for (i, s) in servers.iter().enumerate() {
        let state = if i < ACTIVE { "active" } else { "standby" };
        text.push_str(&format!(
            "[[instances]]\nname = \"redis-{i}\"\naddress = \"{}\"\nstate = \"{state}\"\n",
            s.address()
        ));
    }
    text
}

/// Put `from` at `to` in one rename, as a deployment would, so the watcher sees a whole file.
fn install(from: &str, to: &Path) -> std::io::Result<()> {
    let tmp = to.with_extension("incoming");
    std::fs::copy(from, &tmp)?;
    std::fs::rename(&tmp, to)
}

/// A tenant (hash tag) whose keys live on `instance`.
fn tenant_on(proxy: &Proxy, instance: u32) -> String {
    let table = proxy.topology.table();
    (0..100_000)
        .map(|n| format!("tenant-{n}"))
        .find(|t| table.owner(slot(t.as_bytes())) == instance)
        .unwrap_or_else(|| "tenant-0".into())
}

fn seed(port: u16, tenant: &str) -> redis::RedisResult<usize> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?.get_connection()?;
    let value = [b'v'; 100];
    for chunk in 0..20 {
        let mut pipe = redis::pipe();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            pipe.set(format!("key:{i}"), &value[..]).ignore();
        }
        pipe.query::<()>(&mut c)?;
    }
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.set(format!("{{{tenant}}}:{i}"), &value[..]).ignore();
    }
    pipe.query::<()>(&mut c)?;
    Ok(21_000)
}

/// 12345 → `12k`, 1234 → `1.2k`.
pub fn short(n: f64) -> String {
    if n >= 10_000.0 {
        format!("{:.0}k", n / 1000.0)
    } else if n >= 1000.0 {
        format!("{:.1}k", n / 1000.0)
    } else {
        format!("{n:.0}")
    }
}

/// `Phase::CatchUp` → `catch-up`.
fn kebab(v: &impl std::fmt::Debug) -> String {
    let text = format!("{v:?}");
    let last = text.rsplit("::").next().unwrap_or(&text);
    let mut out = String::new();
    for (i, c) in last.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn moving(m: &[Migration]) -> String {
    let running: Vec<String> = m
        .iter()
        .filter(|m| m.outcome == MigrationOutcome::Running)
        .map(|m| {
            format!(
                "seg {} {}→{} {}",
                m.segment,
                m.source,
                m.target,
                kebab(&m.phase)
            )
        })
        .collect();
    if running.is_empty() {
        "-".into()
    } else {
        running.join(", ")
    }
}

/// The busiest instance forecast: `redis-0 5.9k/5.0k`.
fn forecast_cell(load: &[LoadForecast], names: &[String], capacity: f64) -> String {
    load.iter()
        .filter(|f| f.metric == Metric::Load)
        .filter_map(|f| match f.scope {
            Scope::Instance(i) => Some((i as usize, f.high)),
            _ => None,
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, high)| format!("{} {}/{}", names[i], short(high), short(capacity)))
        .unwrap_or_else(|| "-".into())
}

/// The riskiest instance: `redis-1 0.93`.
fn risk_cell(failures: &[FailureRisk], names: &[String]) -> String {
    failures
        .iter()
        .max_by(|a, b| a.probability.total_cmp(&b.probability))
        .map(|r| format!("{} {:.2}", names[r.instance as usize], r.probability))
        .unwrap_or_else(|| "-".into())
}

fn write_line(out: &mut dyn Write, line: &str) {
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Run `plan` on real redis-servers, writing the story to `out`.
pub fn run(plan: &Plan, out: &mut dyn Write) -> Result<Summary, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut servers: Vec<RedisServer> = (0..=ACTIVE).map(|_| RedisServer::start()).collect();
    let policy = dir.path().join("policy.wasm");
    std::fs::write(dir.path().join("policy.toml"), plan.settings()).map_err(|e| e.to_string())?;
    install(artifacts::PREDICTIVE, &policy).map_err(|e| e.to_string())?;
    let port = free_port();
    // The admin address asked for, or a free one when it is taken.
    let admin = plan.admin.as_ref().map(|a| {
        if std::net::TcpListener::bind(a.as_str()).is_ok() {
            a.clone()
        } else {
            format!("127.0.0.1:{}", free_port())
        }
    });
    let proxy = Proxy::start_config(
        port,
        &config(port, &servers, dir.path(), &policy, admin.as_deref()),
    );
    let names: Vec<String> = (0..=ACTIVE).map(|i| format!("redis-{i}")).collect();
    let tenant = tenant_on(&proxy, RAMPED as u32);
    let seeded = seed(port, &tenant).map_err(|e| format!("cannot seed through shardcast: {e}"))?;
    write_line(
        out,
        &format!(
            "shardcast on 127.0.0.1:{port}: {ACTIVE} active redis-server instances and 1 standby \
             ({}), {SEGMENTS} segments, {seeded} keys seeded; policy predictive, capacity {} ops/s \
             per instance",
            names[ACTIVE],
            short(plan.capacity)
        ),
    );
    if let Some(admin) = &admin {
        write_line(
            out,
            &format!(
                "dashboard http://{admin}/ ; admin API http://{admin}/v1 ; metrics http://{admin}/metrics \
                 (e.g. `cargo run --release -p shardcast -- status --admin http://{admin}`); \
                 the policy's settings: {}",
                dir.path().join("policy.toml").display()
            ),
        );
    }
    let steady = Load::start(
        port,
        LoadShape {
            threads: plan.threads,
            rate_per_thread: plan.rate_per_thread,
            hot_share: 0.0,
            keys: 20_000,
            write_share: 0.2,
        },
    );
    let ramp = Load::start(
        port,
        LoadShape {
            threads: plan.ramp_threads,
            rate_per_thread: 0,
            hot_share: 1.0,
            keys: 20_000,
            write_share: 0.2,
        },
    );
    *ramp.hot.write().unwrap_or_else(|e| e.into_inner()) = vec![tenant.clone()];
    let mut header = format!("{:>4} |", "t");
    for n in &names {
        header.push_str(&format!(" {n:>7} ops  p99 |"));
    }
    header.push_str(" client p99 | errors | forecast high/cap | risk | migrating");
    write_line(out, &header);

    let mut summary = Summary::default();
    let log = dir.path().join("state").join("decisions.jsonl");
    let mut tail = Tail::new(&log);
    let mut last = Predictions::empty();
    let mut printed = std::collections::BTreeSet::new();
    let mut sickness: Option<Sickness> = None;
    let mut errors_at_kill = 0;
    let mut swapped: Option<u64> = None;
    let errors = |a: &LoadStats, b: &LoadStats| {
        a.errors.load(Ordering::Relaxed) + b.errors.load(Ordering::Relaxed)
    };
    let started = Instant::now();
    let step = Duration::from_millis(100);
    for n in 1..=plan.seconds * 10 {
        std::thread::sleep((started + step * n as u32).saturating_duration_since(Instant::now()));
        let now = started.elapsed().as_secs_f64();
        let second = n / 10;
        let whole = n % 10 == 0;
        // The ramp.
        let (from, to) = plan.ramp;
        if now >= from as f64 {
            let share = ((now - from as f64) / (to.saturating_sub(from)).max(1) as f64).min(1.0);
            let total = share * plan.ramp_peak as f64;
            ramp.set_rate((total / plan.ramp_threads.max(1) as f64).round() as u64);
        }
        if whole && second == from {
            write_line(
                out,
                &format!(
                    "     tenant {tenant} on {} starts ramping to {} ops/s over {} s",
                    names[RAMPED],
                    short(plan.ramp_peak as f64),
                    to - from
                ),
            );
        }
        // The sickness and the kill.
        if whole && second == plan.sick_at {
            write_line(
                out,
                &format!(
                    "     {} starts to degrade: busy {} ms of every 100 ms, rising to {} ms over {} s; it is killed at {} s",
                    names[VICTIM], plan.busy_ms.0, plan.busy_ms.1, plan.sick_ramp, plan.kill_at
                ),
            );
            sickness = Some(Sickness::start(
                &servers[VICTIM].address(),
                Duration::from_millis(plan.busy_ms.0),
                Duration::from_millis(plan.busy_ms.1),
                Duration::from_secs(plan.sick_ramp),
            ));
        }
        if whole && second == plan.kill_at {
            summary.owned_at_kill = proxy
                .topology
                .table()
                .segments
                .iter()
                .filter(|s| s.owner == VICTIM as u32)
                .count();
            if let Some(s) = sickness.take() {
                s.stop();
            }
            servers[VICTIM].kill();
            summary.killed_at = Some(now);
            errors_at_kill = errors(&steady.stats, &ramp.stats);
            write_line(
                out,
                &format!(
                    "     kill -9 {} (it owns {} segments)",
                    names[VICTIM], summary.owned_at_kill
                ),
            );
        }
        if let Some(swap) = &plan.swap
            && whole
            && second == swap.at
        {
            let from = component(&swap.policy).ok_or("unknown policy to swap in")?;
            let settings = if swap.policy == "predictive" {
                plan.settings()
            } else {
                String::new()
            };
            std::fs::write(dir.path().join("policy.toml"), settings)
                .and_then(|()| install(from, &policy))
                .map_err(|e| e.to_string())?;
            write_line(
                out,
                &format!(
                    "     swapping in policy {} while the load runs",
                    swap.policy
                ),
            );
            swapped = Some(errors(&steady.stats, &ramp.stats));
        }
        // The victim's drain.
        if summary.killed_at.is_none() && now >= plan.sick_at as f64 {
            let state = proxy.topology.state(VICTIM as u32);
            if summary.drain_at.is_none() && state == InstanceState::Draining {
                summary.drain_at = Some(now);
            }
            let owned = proxy
                .topology
                .table()
                .segments
                .iter()
                .any(|s| s.owner == VICTIM as u32);
            if summary.empty_at.is_none() && !owned {
                summary.empty_at = Some(now);
                write_line(
                    out,
                    &format!(
                        "     {} holds no segment any more ({:.1} s after it started to degrade)",
                        names[VICTIM],
                        now - plan.sick_at as f64
                    ),
                );
            }
        }
        if summary.standby_at.is_none()
            && proxy.topology.state(ACTIVE as u32) == InstanceState::Active
        {
            summary.standby_at = Some(now);
        }
        // What the policy said and predicted.
        for tick in tail.ticks() {
            if let Ok(p) = serde_json::from_value::<Predictions>(tick["predictions"].clone()) {
                for h in &p.sessions {
                    summary.scored_sessions.insert(h.session);
                    summary.lowest_health =
                        Some(summary.lowest_health.map_or(h.health, |x| x.min(h.health)));
                }
                last = p;
            }
            for note in tick["notes"].as_array().into_iter().flatten() {
                if let Some(text) = note.as_str() {
                    write_line(out, &format!("     why: {text}"));
                    summary.reasons.push((second, text.to_owned()));
                }
            }
        }
        let migrations = proxy.executor.migrations();
        let done: Vec<&Migration> = migrations
            .iter()
            .filter(|m| m.outcome != MigrationOutcome::Running)
            .collect();
        for m in done.iter().filter(|m| printed.insert(m.id)) {
            write_line(
                out,
                &format!(
                    "     segment {} {}→{} {}: {}",
                    m.segment,
                    names[m.source as usize],
                    names[m.target as usize],
                    kebab(&m.outcome),
                    m.detail
                ),
            );
        }
        if !whole {
            continue;
        }
        let ops = proxy.telemetry.instances_latest(Metric::Ops);
        let p99 = proxy.telemetry.instances_latest(Metric::LatencyP99Us);
        let window = steady.stats.take_window();
        let _ = ramp.stats.take_window();
        let mut row = format!("{second:>3}s |");
        for i in 0..names.len() {
            let o = ops.get(i).copied().filter(|x| x.is_finite()).unwrap_or(0.0);
            let l = p99.get(i).copied().filter(|x| x.is_finite()).unwrap_or(0.0);
            row.push_str(&format!(
                " {:>11} {:>4} |",
                short(o),
                if o > 0.0 { short(l) } else { "-".into() }
            ));
        }
        row.push_str(&format!(
            " {:>7} µs | {:>6} | {:>17} | {} | {}",
            window.value_at_quantile(0.99),
            errors(&steady.stats, &ramp.stats),
            forecast_cell(&last.load, &names, plan.capacity),
            risk_cell(&last.failures, &names),
            moving(&migrations)
        ));
        write_line(out, &row);
    }
    drop(sickness);
    let ramp = ramp.stop();
    let steady = steady.stop();
    let mut total = steady.total();
    let _ = total.add(ramp.total());
    summary.ok = steady.ok.load(Ordering::Relaxed) + ramp.ok.load(Ordering::Relaxed);
    summary.errors = errors(&steady, &ramp);
    summary.last_error = [&steady, &ramp]
        .iter()
        .find_map(|s| s.last_error.lock().ok().and_then(|e| e.clone()));
    summary.latency_us = (
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.99),
        total.max(),
    );
    let migrations = proxy.executor.migrations();
    let count = |o: MigrationOutcome| migrations.iter().filter(|m| m.outcome == o).count();
    summary.completed = count(MigrationOutcome::Completed);
    summary.aborted = count(MigrationOutcome::Aborted);
    let holds = proxy.executor.holds();
    summary.holds_us = (holds.p50_us, holds.p99_us, holds.max_us);
    let held = proxy.gate.held();
    summary.held = (held.requests, held.max_us);
    let table = proxy.topology.table();
    summary.layout = (0..names.len() as u32)
        .map(|i| table.segments.iter().filter(|s| s.owner == i).count())
        .collect();
    if summary.killed_at.is_some() {
        summary.errors_after_kill = summary.errors - errors_at_kill;
    }
    if let Some(before) = swapped {
        summary.swap = Some((
            crate::decisions::last_planner(&log).unwrap_or_else(|| "?".into()),
            summary.errors - before,
        ));
    }
    summary.log_lines = std::fs::read_to_string(&log)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    Ok(summary)
}

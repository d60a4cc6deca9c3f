//! The shardcast demo: a live fleet of real `redis-server` processes behind shardcast, a
//! client load whose hot spot moves, and the `threshold` policy moving segments live.
//!
//! `cargo run --release -p shardcast-tests --bin demo [-- --seconds 45 --swap static]`
//!
//! It starts three active instances and one standby, shardcast with `threshold` (watched,
//! so it can be swapped), and a paced load in which a share of the requests goes to three
//! hot tenants on one instance; the hot spot jumps to another instance every phase. Every
//! second it prints per-instance ops and p99, migrations in flight, held requests and
//! client errors; at the end, a summary. `--swap <policy>` replaces the running policy file
//! half-way through, while the load runs, and the summary counts client errors across it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use shardcast::proxy::slot::slot;
use shardcast_sdk::types::{Metric, Migration, MigrationOutcome, Scope};
use shardcast_tests::artifacts;
use shardcast_tests::decisions::{last_forecasts, last_planner};
use shardcast_tests::load::{Load, LoadShape};
use shardcast_tests::servers::{Proxy, RedisServer, free_port};

#[derive(Parser)]
#[command(about = "Watch shardcast move hot segments live between real redis-server instances")]
struct Args {
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 45)]
    seconds: u64,
    /// Seconds between two jumps of the hot spot.
    #[arg(long, default_value_t = 15)]
    phase: u64,
    /// Swap this policy in half-way through: `static`, `threshold` or `hot-shed`.
    #[arg(long)]
    swap: Option<String>,
}

const ACTIVE: usize = 3;

/// `threshold`'s settings for this load: act above 5,000 ops/s per instance.
const THRESHOLD_SETTINGS: &str = "high = 5000.0\nlow = 4000.0\nticks = 2\ncooldown_ticks = 3\n";

fn component(name: &str) -> Option<&'static str> {
    match name {
        "static" => Some(artifacts::STATIC),
        "threshold" => Some(artifacts::THRESHOLD),
        "hot-shed" => Some(artifacts::HOT_SHED),
        _ => None,
    }
}

/// Put `from` at `to` in one rename, as a deployment would, so the watcher sees a whole file.
fn install(from: &str, to: &Path) -> std::io::Result<()> {
    let tmp = to.with_extension("incoming");
    std::fs::copy(from, &tmp)?;
    std::fs::rename(&tmp, to)
}

fn config(port: u16, servers: &[RedisServer], dir: &Path, policy: &Path) -> String {
    let settings = dir.join("policy.toml");
    std::fs::write(&settings, THRESHOLD_SETTINGS).expect("write the policy settings");
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\ntick_ms = 1000\n[segments]\ncount = 12\n\
         [churn]\nmoves_per_window = 12\nwindow_ticks = 30\nmax_concurrent_migrations = 2\n\
         [migration]\nstate_dir = \"{}\"\n\
         [policy]\nfile = \"{}\"\nsettings = \"{}\"\nwatch = true\n",
        dir.join("state").display(),
        policy.display(),
        settings.display()
    );
    for (i, s) in servers.iter().enumerate() {
        let state = if i < ACTIVE { "active" } else { "standby" };
        text.push_str(&format!(
            "[[instances]]\nname = \"redis-{i}\"\naddress = \"{}\"\nstate = \"{state}\"\n",
            s.address()
        ));
    }
    text
}

/// Three tenants (hash tags) whose keys fall in three different segments of `instance`.
fn tenants_on(proxy: &Proxy, instance: u32) -> Vec<String> {
    let table = proxy.topology.table();
    let mut rows = Vec::new();
    let mut tenants = Vec::new();
    for n in 0.. {
        let tag = format!("tenant-{n}");
        let s = slot(tag.as_bytes());
        let row = table.segment_row(s);
        if table.owner(s) == instance && !rows.contains(&row) {
            rows.push(row);
            tenants.push(tag);
            if tenants.len() == 3 {
                break;
            }
        }
        if n > 100_000 {
            break;
        }
    }
    tenants
}

fn seed(port: u16, tenants: &[Vec<String>]) -> redis::RedisResult<()> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?.get_connection()?;
    let value = [b'v'; 100];
    for chunk in 0..20 {
        let mut pipe = redis::pipe();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            pipe.set(format!("key:{i}"), &value[..]).ignore();
        }
        pipe.query::<()>(&mut c)?;
    }
    for t in tenants.iter().flatten() {
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            pipe.set(format!("{{{t}}}:{i}"), &value[..]).ignore();
        }
        pipe.query::<()>(&mut c)?;
    }
    Ok(())
}

fn short(n: f64) -> String {
    if n >= 10_000.0 {
        format!("{:.0}k", n / 1000.0)
    } else if n >= 1000.0 {
        format!("{:.1}k", n / 1000.0)
    } else {
        format!("{n:.0}")
    }
}

/// `Phase::CatchUp` → `catch-up`.
fn name(v: &impl std::fmt::Debug) -> String {
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
                "seg {} {}→{} {} {:.1}MB",
                m.segment,
                m.source,
                m.target,
                name(&m.phase),
                m.bytes_moved as f64 / 1e6
            )
        })
        .collect();
    if running.is_empty() {
        "-".into()
    } else {
        running.join(", ")
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "redis-server is not installed: install Debian's package with `sudo apt-get install redis-server`"
        );
        return ExitCode::FAILURE;
    }
    if let Some(name) = &args.swap
        && component(name).is_none()
    {
        eprintln!("--swap {name}: unknown policy; use static, threshold or hot-shed");
        return ExitCode::FAILURE;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let servers: Vec<RedisServer> = (0..=ACTIVE).map(|_| RedisServer::start()).collect();
    let policy: PathBuf = dir.path().join("policy.wasm");
    install(artifacts::THRESHOLD, &policy).expect("install the threshold component");
    let port = free_port();
    let proxy = Proxy::start_config(port, &config(port, &servers, dir.path(), &policy));
    let log = dir.path().join("state").join("decisions.jsonl");
    println!(
        "shardcast on 127.0.0.1:{port}: {ACTIVE} active redis-server instances and 1 standby, 12 segments, policy threshold (high 5000 ops/s, low 4000)"
    );
    let phases: Vec<Vec<String>> = (0..ACTIVE as u32).map(|i| tenants_on(&proxy, i)).collect();
    if let Err(e) = seed(port, &phases) {
        eprintln!("cannot seed keys through shardcast: {e}");
        return ExitCode::FAILURE;
    }
    let seeded = 20_000 + 1000 * phases.iter().map(Vec::len).sum::<usize>();
    println!("seeded {seeded} keys of 100 bytes through shardcast");
    let load = Load::start(
        port,
        LoadShape {
            threads: 8,
            rate_per_thread: 1500,
            hot_share: 0.45,
            keys: 20_000,
            write_share: 0.2,
        },
    );
    let names: Vec<String> = (0..=ACTIVE).map(|i| format!("redis-{i}")).collect();
    println!(
        "redis-{ACTIVE} is the standby; ops and p99 (µs) per instance are measured by the proxy"
    );
    print!("{:>4} |", "t");
    for n in &names {
        print!(" {n:>7} ops  p99 |");
    }
    println!(" client p99 | held | errors | forecast | migrating");
    let started = Instant::now();
    let mut phase = usize::MAX;
    let mut seen_done = 0;
    let mut swapped_at: Option<(u64, u64)> = None;
    for second in 1..=args.seconds {
        let p = ((second - 1) / args.phase.max(1)) as usize % ACTIVE;
        if p != phase {
            phase = p;
            let tenants = tenants_on(&proxy, p as u32);
            println!(
                "     hot spot moves to {} (tenants {})",
                names[p],
                tenants.join(", ")
            );
            *load.hot.write().unwrap_or_else(|e| e.into_inner()) = tenants;
        }
        if let Some(name) = &args.swap
            && second == args.seconds / 2
        {
            let from = component(name).expect("checked above");
            // Settings first (the watcher reads them with the new component), then the
            // component, in one rename.
            let settings = if name == "threshold" {
                THRESHOLD_SETTINGS
            } else {
                ""
            };
            let staged = std::fs::write(dir.path().join("policy.toml"), settings)
                .and_then(|()| install(from, &policy));
            match staged {
                Ok(()) => println!("     swapping in policy {name} while the load runs"),
                Err(e) => println!("     cannot swap in {name}: {e}"),
            }
            swapped_at = Some((second, load.stats.errors.load(Ordering::Relaxed)));
        }
        std::thread::sleep(
            (started + Duration::from_secs(second)).saturating_duration_since(Instant::now()),
        );
        let ops = proxy.telemetry.instances_latest(Metric::Ops);
        let p99 = proxy.telemetry.instances_latest(Metric::LatencyP99Us);
        let window = load.stats.take_window();
        let migrations = proxy.executor.migrations();
        print!("{second:>3}s |");
        for i in 0..names.len() {
            let o = ops.get(i).copied().unwrap_or(0.0);
            let l = p99.get(i).copied().unwrap_or(0.0);
            print!(
                " {:>11} {:>4} |",
                short(o),
                if o > 0.0 { short(l) } else { "-".into() }
            );
        }
        // The policy's forecast for the instance it expects to be busiest.
        let forecast = last_forecasts(&log)
            .into_iter()
            .filter(|f| f.metric == Metric::Load && f.expected > 0.0)
            .filter_map(|f| match f.scope {
                Scope::Instance(i) => Some((i, f.expected, f.horizon_ms / 1000)),
                _ => None,
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, load, h)| format!("{} {} in {h}s", names[i as usize], short(load)))
            .unwrap_or_else(|| "-".into());
        println!(
            " {:>7} µs | {:>4} | {:>6} | {forecast} | {}",
            window.value_at_quantile(0.99),
            proxy.gate.held().requests,
            load.stats.errors.load(Ordering::Relaxed),
            moving(&migrations)
        );
        let done: Vec<&Migration> = migrations
            .iter()
            .filter(|m| m.outcome != MigrationOutcome::Running)
            .collect();
        for m in done.iter().skip(seen_done) {
            println!(
                "     segment {} {}→{} {}: {}",
                m.segment,
                names[m.source as usize],
                names[m.target as usize],
                name(&m.outcome),
                m.detail
            );
        }
        seen_done = done.len();
        let _ = std::io::stdout().flush();
    }
    let stats = load.stop();
    let total = stats.total();
    let migrations = proxy.executor.migrations();
    let count = |o: MigrationOutcome| migrations.iter().filter(|m| m.outcome == o).count();
    let holds = proxy.executor.holds();
    let held = proxy.gate.held();
    let errors = stats.errors.load(Ordering::Relaxed);
    println!("\nsummary");
    println!(
        "  requests: {} answered, {errors} client errors{}",
        stats.ok.load(Ordering::Relaxed),
        stats
            .last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .map(|e| format!(" (last: {e})"))
            .unwrap_or_default()
    );
    println!(
        "  client latency: p50 {} µs, p99 {} µs, max {} µs",
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.99),
        total.max()
    );
    println!(
        "  migrations: {} completed, {} aborted; cutover hold p50 {} µs, p99 {} µs, max {} µs",
        count(MigrationOutcome::Completed),
        count(MigrationOutcome::Aborted),
        holds.p50_us,
        holds.p99_us,
        holds.max_us
    );
    println!(
        "  requests held at cutovers: {} (longest {} µs)",
        held.requests, held.max_us
    );
    let table = proxy.topology.table();
    let layout: Vec<String> = (0..names.len() as u32)
        .map(|i| {
            let n = table.segments.iter().filter(|s| s.owner == i).count();
            format!("{} {n}", names[i as usize])
        })
        .collect();
    println!("  segments per instance now: {}", layout.join(", "));
    if let Some((second, before)) = swapped_at {
        println!(
            "  policy swap at {second}s: now running {}; client errors across the swap: {}",
            last_planner(&log).unwrap_or_else(|| "?".into()),
            errors - before
        );
    }
    println!(
        "  decision log: {} lines",
        std::fs::read_to_string(&log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    );
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! The shardcast demo: a live fleet of real `redis-server` processes behind shardcast
//! running `predictive`, a tenant whose load ramps predictably, and an instance that
//! degrades before it is killed.
//!
//! `cargo run --release -p shardcast-tests --bin demo [-- --swap static --swap-at 30]`
//!
//! It starts three active instances and one standby, shardcast with `predictive` (watched,
//! so it can be swapped) and a paced client load. A tenant on `redis-0` ramps up until the
//! fleet outgrows its active instances; `redis-1` then degrades (a side connection keeps it
//! busy for a growing share of every 100 ms) and is killed with SIGKILL. Every second it
//! prints per-instance ops and p99, client p99 and errors, the policy's highest forecast
//! against capacity, its highest failure risk and the migrations in flight; every reason
//! the policy gives and every finished migration gets its own line. The summary says how
//! long before the kill `redis-1` was empty and how many client requests failed; it exits
//! non-zero if any did.

use std::process::ExitCode;

use clap::Parser;
use shardcast_tests::demo::{self, Plan, Swap, component};

#[derive(Parser)]
#[command(
    about = "Watch shardcast's predictive policy grow the fleet and empty an instance before it dies"
)]
struct Args {
    /// Run at a quarter of the load (for a debug build or a busy machine).
    #[arg(long)]
    small: bool,
    /// Swap this policy in while the load runs: static, threshold, hot-shed, forecast,
    /// failure-guard or predictive.
    #[arg(long)]
    swap: Option<String>,
    /// Second of the run at which `--swap` happens.
    #[arg(long, default_value_t = 30)]
    swap_at: u64,
    /// Where the dashboard, the admin API and `/metrics` listen.
    #[arg(long, default_value = shardcast::config::DEFAULT_ADMIN_LISTEN)]
    admin: String,
    /// Keep the load running this many seconds in all (at least 95, the story's length),
    /// to try the operator commands against it.
    #[arg(long)]
    seconds: Option<u64>,
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
    let mut plan = if args.small {
        Plan::small()
    } else {
        Plan::demo()
    };
    plan.admin = Some(args.admin.clone());
    if let Some(seconds) = args.seconds {
        plan.seconds = seconds.max(plan.seconds);
    }
    if let Some(policy) = args.swap {
        if component(&policy).is_none() {
            eprintln!(
                "--swap {policy}: unknown policy; use static, threshold, hot-shed, forecast, failure-guard or predictive"
            );
            return ExitCode::FAILURE;
        }
        plan.swap = Some(Swap {
            at: args.swap_at,
            policy,
        });
    }
    let s = match demo::run(&plan, &mut std::io::stdout()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("\nsummary");
    println!(
        "  requests: {} answered, {} client errors{}",
        s.ok,
        s.errors,
        s.last_error
            .as_ref()
            .map(|e| format!(" (last: {e})"))
            .unwrap_or_default()
    );
    let (p50, p99, max) = s.latency_us;
    println!("  client latency: p50 {p50} µs, p99 {p99} µs, max {max} µs");
    let (h50, h99, hmax) = s.holds_us;
    println!(
        "  migrations: {} completed, {} aborted; cutover hold p50 {h50} µs, p99 {h99} µs, max {hmax} µs; {} requests held (longest {} µs)",
        s.completed, s.aborted, s.held.0, s.held.1
    );
    match s.standby_at {
        Some(t) => println!(
            "  standby redis-{} activated at {t:.0} s, before the tenant's ramp peaked at {} s",
            demo::ACTIVE,
            plan.ramp.1
        ),
        None => println!("  the standby was not activated"),
    }
    match (s.drain_at, s.empty_at, s.killed_at) {
        (_, Some(empty), Some(kill)) if empty <= kill => println!(
            "  redis-{}: degraded from {} s, drain started at {}, empty at {empty:.1} s: {:.1} s before the kill at {kill:.0} s; client errors after the kill: {}",
            demo::VICTIM,
            plan.sick_at,
            s.drain_at
                .map(|d| format!("{d:.1} s"))
                .unwrap_or_else(|| "?".into()),
            kill - empty,
            s.errors_after_kill
        ),
        (_, _, Some(kill)) => println!(
            "  redis-{} still owned {} segments when it was killed at {kill:.0} s; client errors after the kill: {}",
            demo::VICTIM,
            s.owned_at_kill,
            s.errors_after_kill
        ),
        _ => println!("  redis-{} was not killed", demo::VICTIM),
    }
    let layout: Vec<String> = s
        .layout
        .iter()
        .enumerate()
        .map(|(i, n)| format!("redis-{i} {n}"))
        .collect();
    println!("  segments per instance now: {}", layout.join(", "));
    if let Some((planner, errors)) = &s.swap {
        println!("  after the swap: running {planner}; client errors across the swap: {errors}");
    }
    println!(
        "  client sessions given a health score: {} (lowest score {})",
        s.scored_sessions.len(),
        s.lowest_health
            .map_or_else(|| "-".into(), |h| format!("{h:.2}"))
    );
    println!("  decision log: {} lines", s.log_lines);
    if s.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

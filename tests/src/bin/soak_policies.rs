//! The hostile-policy soak: a running `shardcast run` under client load gets a random
//! hostile policy swapped in every few seconds, for as long as asked. At the end it prints
//! the ticks missed, the client's errors, the host's peak resident memory, and the bytes
//! the host wrote per tick (to disk, and to its log).
//!
//! `cargo run --release -p shardcast-tests --bin soak_policies [-- --seconds 300 --every-ms 3000 --seed 7]`
//!
//! The binary also serves as the shardcast process it drives (`soak_policies --node run ...`).

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use shardcast_sdk::view::SplitMix;
use shardcast_tests::artifacts;
use shardcast_tests::hostile::{HostileRig, TICK_MS, ticks_missed};

#[derive(Parser)]
#[command(about = "Swap hostile policies into a running shardcast under client load")]
struct Args {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Time between swaps, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    every_ms: u64,
    /// Seed of the schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// What may be swapped in: a component and its settings.
const MODES: &[(&str, &str)] = &[
    ("hostile", "calm"),
    ("hostile", "spin"),
    ("hostile", "memory-bomb"),
    ("hostile", "panic"),
    ("hostile", "flood"),
    ("hostile", "nan"),
    ("hostile", "invalid"),
    ("hostile", "escape"),
    ("hostile", "chatty"),
    ("hostile", "sleep"),
    ("hostile", "sleep-configure"),
    ("hostile", "snapshot-garbage"),
    ("hostile", "snapshot-huge"),
    ("hostile", "snapshot-spin"),
    ("hostile", "drain-target"),
    ("hostile", "forge"),
    ("hostile", "log-flood"),
    ("hostile", "forecast-flood"),
    ("hostile", "split-storm"),
    ("hostile", "inverted-interval"),
    ("hostile", "overconfident"),
    ("hostile", "impossible-risk"),
    ("hostile", "recurse"),
    ("hostile", "snapshot-poison"),
    ("hostile", "big-write"),
    ("hostile", "random-flood"),
    ("hostile", "resource-flood"),
    ("impostor", ""),
    ("stuck-describe", ""),
    ("counter", ""),
    ("threshold", ""),
];

fn component(name: &str) -> &'static str {
    match name {
        "impostor" => artifacts::IMPOSTOR,
        "stuck-describe" => artifacts::STUCK_DESCRIBE,
        "counter" => artifacts::COUNTER,
        "threshold" => artifacts::THRESHOLD,
        _ => artifacts::HOSTILE,
    }
}

/// A field of `/proc/<pid>/<file>`, in the unit the file uses.
fn proc_field(pid: u32, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let program = match shardcast_tests::servers::node_or_program() {
        Ok(program) => program,
        Err(code) => return code,
    };
    let args = Args::parse();
    let program = [program[0].as_str(), program[1].as_str()];
    let mut rig = HostileRig::start(&program, artifacts::HOSTILE, "mode = \"calm\"\n", true);
    let pid = rig.process().pid().expect("shardcast runs");
    let (disk_before, log_before, first_tick) = (
        proc_field(pid, "io", "write_bytes:"),
        rig.log_bytes(),
        rig.last_tick(),
    );
    let mut rng = SplitMix(args.seed);
    let mut swaps = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        let (name, mode) = MODES[(rng.next_u64() % MODES.len() as u64) as usize];
        let settings = match (name, mode) {
            ("hostile", m) => format!("mode = \"{m}\"\n"),
            _ => String::new(),
        };
        rig.swap(component(name), &settings);
        swaps += 1;
        print!(
            "\r{:>4} s: {swaps} swaps, last {name} {mode:<20} client errors {}",
            started.elapsed().as_secs(),
            rig.load().errors.load(Ordering::Relaxed)
        );
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::thread::sleep(Duration::from_millis(args.every_ms));
    }
    println!();
    let peak_kib = proc_field(pid, "status", "VmHWM:");
    let disk = proc_field(pid, "io", "write_bytes:").saturating_sub(disk_before);
    let logged = rig.log_bytes().saturating_sub(log_before);
    let load = rig.stop_load();
    let ticks: Vec<_> = rig
        .ticks()
        .into_iter()
        .filter(|t| t.tick >= first_tick)
        .collect();
    let n = ticks.len().max(1) as u64;
    let missed = ticks_missed(&ticks);
    let errors = load.errors.load(Ordering::Relaxed);
    let stopped = rig.process().terminate(Duration::from_secs(20)).is_some();
    println!(
        "{swaps} swaps in {} s; {} ticks of {TICK_MS} ms, {missed} missed; client: {} ok, {errors} errors; host peak RSS {} MiB; written per tick: {} bytes to disk, {} bytes of log; SIGTERM {}",
        started.elapsed().as_secs(),
        ticks.len(),
        load.ok.load(Ordering::Relaxed),
        peak_kib / 1024,
        disk / n,
        logged / n,
        if stopped {
            "stopped it"
        } else {
            "did NOT stop it"
        }
    );
    if let Some(e) = load.last_error.lock().ok().and_then(|e| e.clone()) {
        println!("  last client error: {e}");
    }
    if errors == 0 && stopped {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

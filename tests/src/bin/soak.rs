//! The long chaos run: segments move back and forth between two durable redis-server
//! instances while a writer works through shardcast, and at random moments shardcast is
//! stopped at a random migration step or killed with SIGKILL, or one instance is killed and
//! restarted. At the end the checker verifies every acknowledged write.
//!
//! `cargo run --release -p shardcast-tests --bin soak [-- --seconds 300 --seed 7]`
//!
//! The binary also serves as the shardcast process it kills (`soak --node run ...`).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use shardcast::migrate::journal::{Journal, Step};
use shardcast_tests::chaos::{STEPS, check, config, write_until};
use shardcast_tests::servers::{RedisServer, ShardcastProcess, free_port, wait_for};

#[derive(Parser)]
#[command(
    about = "Kill shardcast and its instances at random while segments move; check every write"
)]
struct Args {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Seed of the kill schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// SplitMix64.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--node") {
        argv.remove(1);
        return shardcast::cli::main_with(argv);
    }
    let args = Args::parse();
    let me = std::env::current_exe().expect("the soak binary's path");
    let me = me.to_string_lossy().into_owned();
    let program = [me.as_str(), "--node"];
    let mut servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start_durable()).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let port = free_port();
    let file = dir.path().join("shardcast.toml");
    std::fs::write(&file, config(port, &servers, &state, true)).expect("config");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || write_until(port, stop, "soak"))
    };
    let mut rng = Mix(args.seed);
    let (mut step_kills, mut sigkills, mut instance_kills) = (0, 0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        match rng.next() % 3 {
            0 => {
                let step = STEPS[(rng.next() % STEPS.len() as u64) as usize];
                let mut p =
                    ShardcastProcess::start(&program, &file, port, &[("SHARDCAST_CRASH_AT", step)]);
                wait_for("a crash point", Duration::from_secs(60), || p.exited());
                step_kills += 1;
            }
            1 => {
                let mut p = ShardcastProcess::start(&program, &file, port, &[]);
                std::thread::sleep(Duration::from_millis(200 + rng.next() % 1500));
                p.kill();
                sigkills += 1;
            }
            _ => {
                let _p = ShardcastProcess::start(&program, &file, port, &[]);
                std::thread::sleep(Duration::from_millis(200 + rng.next() % 800));
                let victim = (rng.next() % 2) as usize;
                servers[victim].kill();
                std::thread::sleep(Duration::from_millis(rng.next() % 500));
                servers[victim].restart();
                instance_kills += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        print!(
            "\r{:>4} s: {step_kills} stops at a migration step, {sigkills} SIGKILLs of shardcast, {instance_kills} instance kills",
            started.elapsed().as_secs()
        );
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
    println!();
    std::fs::write(&file, config(port, &servers, &state, false)).expect("config");
    let _quiet = ShardcastProcess::start(&program, &file, port, &[]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let ledger = writer.join().expect("writer");
    let violations = check(port, &ledger);
    let records = Journal::read(&state.join("journal.jsonl")).unwrap_or_default();
    let done = records.iter().filter(|r| r.step == Step::Done).count();
    let rolled = records
        .iter()
        .filter(|r| matches!(r.step, Step::RolledBack { .. }))
        .count();
    println!(
        "checked {} acknowledged writes ({} failed and uncertain) after {} kills ({step_kills} at migration steps, {sigkills} SIGKILLs, {instance_kills} instance kills); {done} migrations completed, {rolled} rolled back; {} violations",
        ledger.acknowledged(),
        ledger.failed,
        step_kills + sigkills + instance_kills,
        violations.len()
    );
    for v in violations.iter().take(20) {
        println!("  {v}");
    }
    if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

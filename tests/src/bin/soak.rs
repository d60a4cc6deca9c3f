//! The long chaos run: segments move back and forth between two durable redis-server
//! instances while a writer works through shardcast, and at random moments shardcast is
//! stopped at a random migration step or killed with SIGKILL, or one instance is killed and
//! restarted, or hung with SIGSTOP past the request deadline and resumed. At the end the
//! checker verifies every acknowledged write, and that no write refused with `TRYAGAIN` ran.
//!
//! `cargo run --release -p shardcast-tests --bin soak [-- --seconds 300 --seed 7]`
//!
//! The binary also serves as the shardcast process it kills (`soak --node run ...`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use shardcast::migrate::journal::{Journal, Step};
use shardcast_sdk::view::SplitMix;
use shardcast_tests::chaos::{Rig, STEPS, check};
use shardcast_tests::servers::{ShardcastProcess, wait_for};

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

fn main() -> ExitCode {
    let program = match shardcast_tests::servers::node_or_program() {
        Ok(program) => program,
        Err(code) => return code,
    };
    let args = Args::parse();
    let program = [program[0].as_str(), program[1].as_str()];
    let mut rig = Rig::start("soak");
    let (file, port, state) = (rig.file.clone(), rig.port, rig.state.clone());
    let mut rng = SplitMix(args.seed);
    let (mut step_kills, mut sigkills, mut instance_kills, mut pauses) = (0, 0, 0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        match rng.next_u64() % 4 {
            0 => {
                let step = STEPS[(rng.next_u64() % STEPS.len() as u64) as usize];
                let mut p =
                    ShardcastProcess::start(&program, &file, port, &[("SHARDCAST_CRASH_AT", step)]);
                wait_for("a crash point", Duration::from_secs(60), || p.exited());
                step_kills += 1;
            }
            1 => {
                let mut p = ShardcastProcess::start(&program, &file, port, &[]);
                std::thread::sleep(Duration::from_millis(200 + rng.next_u64() % 1500));
                p.kill();
                sigkills += 1;
            }
            2 => {
                let _p = ShardcastProcess::start(&program, &file, port, &[]);
                std::thread::sleep(Duration::from_millis(200 + rng.next_u64() % 800));
                let victim = (rng.next_u64() % 2) as usize;
                rig.servers[victim].pause();
                std::thread::sleep(Duration::from_millis(200 + rng.next_u64() % 2300));
                rig.servers[victim].resume();
                pauses += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
            _ => {
                let _p = ShardcastProcess::start(&program, &file, port, &[]);
                std::thread::sleep(Duration::from_millis(200 + rng.next_u64() % 800));
                let victim = (rng.next_u64() % 2) as usize;
                rig.servers[victim].kill();
                std::thread::sleep(Duration::from_millis(rng.next_u64() % 500));
                rig.servers[victim].restart();
                instance_kills += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        print!(
            "\r{:>4} s: {step_kills} stops at a migration step, {sigkills} SIGKILLs of shardcast, {instance_kills} instance kills, {pauses} instance pauses",
            started.elapsed().as_secs()
        );
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
    println!();
    rig.quiet();
    let _quiet = ShardcastProcess::start(&program, &file, port, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let ledger = rig.stop_writer();
    let violations = check(port, &ledger);
    let records = Journal::read(&state.join("journal.jsonl")).unwrap_or_default();
    let done = records.iter().filter(|r| r.step == Step::Done).count();
    let rolled = records
        .iter()
        .filter(|r| matches!(r.step, Step::RolledBack { .. }))
        .count();
    println!(
        "checked {} acknowledged writes ({} failed and uncertain, {} refused with TRYAGAIN) after {} faults ({step_kills} stops at migration steps, {sigkills} SIGKILLs, {instance_kills} instance kills, {pauses} instance pauses); {done} migrations completed, {rolled} rolled back; {} violations",
        ledger.acknowledged(),
        ledger.failed,
        ledger.refused,
        step_kills + sigkills + instance_kills + pauses,
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

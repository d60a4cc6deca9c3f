//! What cluster mode costs etcd: the requests etcd receives per tick from a quiet cluster
//! and per completed migration, by gRPC method, read from etcd's own counters.
//!
//! Two runs of one etcd, three redis-servers and `proxies` cluster-mode proxies (default
//! 3; 100 ms ticks; leases of 5 s, the default; a policy checkpoint every 10 ticks, where
//! the default is 50). First the `ping-pong` policy is given no
//! segments: for `seconds` (default 10) the cluster only keeps its leases, publishes each
//! proxy's counters and merges them on the controller. Then it moves segments 0 and 2 back
//! and forth for as long: the requests beyond the quiet rate, per completed migration.
//! From the two, the cost at another number of proxies can be estimated (the per-proxy
//! terms are printed separately).
//!
//! `cargo run --release -p shardcast-tests --bin etcd_cost [-- <seconds> [<proxies>]]`

use std::collections::BTreeMap;
use std::time::Duration;

use shardcast_tests::cluster::ClusterRig;
use shardcast_tests::servers::node_or_program;

/// Requests by method over `seconds` of `rig` running, and the migrations completed then.
fn measure(rig: &ClusterRig, seconds: u64) -> (BTreeMap<String, f64>, usize) {
    let (before, moves) = (rig.etcd.requests(), rig.completed_moves());
    std::thread::sleep(Duration::from_secs(seconds));
    let (after, moved) = (rig.etcd.requests(), rig.completed_moves());
    let delta = after
        .into_iter()
        .map(|(m, v)| {
            let was = before.get(&m).copied().unwrap_or(0.0);
            (m, v - was)
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    (delta, moved - moves)
}

fn main() -> std::process::ExitCode {
    let program = match node_or_program() {
        Ok(program) => program,
        Err(code) => return code,
    };
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let seconds = arg(1, 10).max(1);
    let proxies = arg(2, 3).max(1) as usize;
    let program = [program[0].as_str(), program[1].as_str()];
    let ticks = seconds as f64 * 10.0;

    let mut quiet = ClusterRig::new(&program, 3, proxies, 5);
    quiet.moving(&[]);
    quiet.start_all(&[]);
    std::thread::sleep(Duration::from_secs(2));
    let (idle, _) = measure(&quiet, seconds);
    drop(quiet);

    let mut busy = ClusterRig::new(&program, 3, proxies, 5);
    busy.start_all(&[]);
    let from = busy.completed_moves();
    busy.wait_for_moves(from, 2, Duration::from_secs(60));
    let (moving, moves) = measure(&busy, seconds);
    drop(busy);

    println!(
        "etcd requests by gRPC method, {proxies} proxies, 100 ms ticks, 5 s leases, {seconds} s each run; {moves} migrations completed in the second"
    );
    println!("| method | per tick, quiet | per tick per proxy, quiet | per migration |");
    println!("|---|---|---|---|");
    let methods: std::collections::BTreeSet<&String> = idle.keys().chain(moving.keys()).collect();
    let (mut tick_sum, mut move_sum) = (0.0, 0.0);
    for m in methods {
        let quiet_tick = idle.get(m).copied().unwrap_or(0.0) / ticks;
        let extra = moving.get(m).copied().unwrap_or(0.0) - quiet_tick * ticks;
        let per_move = match moves {
            0 => f64::NAN,
            // A difference under a twentieth is noise between the two runs.
            n => Some(extra / n as f64)
                .filter(|x| x.abs() >= 0.05)
                .unwrap_or(0.0),
        };
        tick_sum += quiet_tick;
        move_sum += per_move;
        println!(
            "| {m} | {quiet_tick:.2} | {:.2} | {per_move:.1} |",
            quiet_tick / proxies as f64
        );
    }
    println!(
        "| all | {tick_sum:.2} | {:.2} | {move_sum:.1} |",
        tick_sum / proxies as f64
    );
    std::process::ExitCode::SUCCESS
}

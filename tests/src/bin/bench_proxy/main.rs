//! Side-by-side data-plane benchmark: redis-benchmark against one redis-server directly,
//! twemproxy (nutcracker) over 3 instances, and shardcast over the same 3 instances, in
//! one run. SET and GET with `-c 50`, at `-P 1` and `-P 16`; prints requests/s, p50, p99,
//! the CPU seconds (user + system) each server process spent per million requests, and
//! the ratios; each cell is the median of `runs` runs (default 5), throughput with its
//! range. A second, shorter pass counts each proxy's system calls per request with
//! `strace -c -f` attached (strace slows the traced process, so throughput is not taken
//! from that pass); it is skipped, with a note, when strace is missing or cannot attach.
//! Further cells, one run each at `-P 1`: 1,000 clients, 1 KiB values, and MGET of 10 keys
//! that fall on different instances (direct gets the same MGET on its one instance); then
//! each proxy's resident memory with 10,000 idle client connections. Last, a TLS cell:
//! redis-benchmark `--tls` against a TLS-only redis-server and against a second shardcast
//! with `[tls]` in front of the same plain fleet (twemproxy has no TLS), with a
//! certificate made at run time.
//! shardcast runs as its own process (this binary, called with `--node`), as twemproxy
//! does, so that its CPU and system calls are its own and not the benchmark client's.
//!
//! `cargo run --release -p shardcast-tests --bin bench_proxy [-- <requests> [<runs>]]`
//!
//! With `--proxies N` first, it runs the cluster-mode scaling cells instead (see `scale`):
//! `cargo run --release -p shardcast-tests --bin bench_proxy -- --proxies 2 [<requests> [<runs>]]`

mod scale;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shardcast_tests::servers::{
    RedisServer, ShardcastProcess, free_port, node_or_program, wait_for,
};

/// Idle client connections for the memory cell.
const IDLE: usize = 10_000;

struct Row {
    target: &'static str,
    test: String,
    pipeline: u32,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU seconds of the target's process per million requests (both tests of the run).
    cpu_per_m: f64,
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/<pid>/stat`.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the first, utime
    // the 12th and stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
    ticks / clock_ticks()
}

/// Clock ticks per second, for `/proc` times (asked of `getconf` once).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The TLS cell: a self-signed certificate for 127.0.0.1, a TLS-only redis-server (no
/// client certificates), and a second shardcast with `[tls]` over `fleet`; SET and GET
/// with redis-benchmark `--tls --insecure` against each.
fn tls_cells(
    program: &[String; 2],
    fleet: &[&RedisServer],
    dir: &std::path::Path,
    requests: u32,
) -> Result<Vec<Row>, String> {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .map_err(|e| format!("certificate: {e}"))?;
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, made.cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&key, made.signing_key.serialize_pem()).map_err(|e| e.to_string())?;
    let direct_port = free_port();
    let mut direct = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &direct_port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--tls-auth-clients", "no", "--tls-cert-file"])
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&cert)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e}"))?;
    let up = (0..250).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        std::net::TcpStream::connect(("127.0.0.1", direct_port)).is_ok()
    });
    if !up || direct.try_wait().ok().flatten().is_some() {
        let _ = direct.kill();
        return Err("the installed redis-server does not serve TLS".into());
    }
    let port = free_port();
    let mut config = format!(
        "listen = \"127.0.0.1:{port}\"\nthreads = {}\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        std::env::var("SHARDCAST_THREADS").unwrap_or_else(|_| "0".into()),
        cert.display().to_string(),
        key.display().to_string()
    );
    for (i, r) in fleet.iter().enumerate() {
        config.push_str(&format!(
            "[[instances]]\nname = \"redis-{i}\"\naddress = \"{}\"\n",
            r.address()
        ));
    }
    let file = dir.join("shardcast-tls.toml");
    std::fs::write(&file, config).map_err(|e| e.to_string())?;
    let shard = ShardcastProcess::start(&[&program[0], &program[1]], &file, port, &[]);
    let args = ["-c", "50", "-t", "set,get", "--tls", "--insecure"];
    let mut rows = Vec::new();
    for (target, pid, port) in [
        ("direct TLS", direct.id(), direct_port),
        ("shardcast TLS", shard.pid().unwrap_or(0), port),
    ] {
        let before = cpu_s(pid);
        let got = run_with(target, port, requests, 1, &args);
        let cpu = cpu_s(pid) - before;
        for mut r in got {
            r.cpu_per_m = cpu / (2.0 * f64::from(requests)) * 1e6;
            rows.push(r);
        }
    }
    let _ = direct.kill();
    let _ = direct.wait();
    Ok(rows)
}

/// Run redis-benchmark against `port`, and the CPU process `pid` spent meanwhile.
fn bench(target: &'static str, pid: u32, port: u16, requests: u32, pipeline: u32) -> Vec<Row> {
    let before = cpu_s(pid);
    let mut rows = run_benchmark(target, port, requests, pipeline);
    let cpu_per_m = (cpu_s(pid) - before) / (2.0 * f64::from(requests)) * 1e6;
    for r in &mut rows {
        r.cpu_per_m = cpu_per_m;
    }
    rows
}

fn run_benchmark(target: &'static str, port: u16, requests: u32, pipeline: u32) -> Vec<Row> {
    let args = ["-c", "50", "-t", "set,get"];
    run_with(target, port, requests, pipeline, &args)
}

/// Run redis-benchmark against `port` with `args` after the common ones (a custom command
/// goes last); one row per test it reports.
fn run_with(
    target: &'static str,
    port: u16,
    requests: u32,
    pipeline: u32,
    args: &[&str],
) -> Vec<Row> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-n", &requests.to_string(), "-P", &pipeline.to_string()])
        .args(["-r", "100000", "--csv"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run redis-benchmark ({e}): apt-get install redis-tools")
        });
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<String> = line
                .split(',')
                .map(|x| x.trim_matches('"').to_owned())
                .collect();
            let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
            Some(Row {
                target,
                test: f.first()?.clone(),
                pipeline,
                rps: num(1)?,
                p50_ms: num(4)?,
                p99_ms: num(6)?,
                cpu_per_m: 0.0,
            })
        })
        .collect()
}

struct Nutcracker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nutcracker {
    fn start(servers: &[&RedisServer]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut conf = format!(
            "pool:\n  listen: 127.0.0.1:{port}\n  hash: crc16\n  distribution: modula\n  redis: true\n  auto_eject_hosts: false\n  servers:\n"
        );
        for s in servers {
            conf.push_str(&format!("   - {}:1\n", s.address()));
        }
        let path = dir.path().join("nutcracker.yml");
        std::fs::write(&path, conf).expect("write nutcracker config");
        let child = Command::new("nutcracker")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nutcracker ({e}): apt-get install nutcracker")
            });
        wait_for("nutcracker to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Nutcracker {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid`, in KiB (`VmRSS` in `/proc/<pid>/status`).
fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Process `pid`'s resident memory before and with `count` idle client connections to
/// `port` (MiB), or why it could not be measured.
fn idle_memory(pid: u32, port: u16, count: usize) -> Result<(f64, f64), String> {
    let before = rss_kib(pid);
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => conns.push(c),
            Err(e) => return Err(format!("connection {i} failed: {e}")),
        }
    }
    // Let every connection be accepted and settle.
    std::thread::sleep(Duration::from_secs(2));
    let with = rss_kib(pid);
    drop(conns);
    std::thread::sleep(Duration::from_millis(500));
    Ok((before / 1024.0, with / 1024.0))
}

/// The median of `xs` (the mean of the middle two of an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// The same cell of every run.
fn cells<'a>(runs: &'a [Vec<Row>], like: &'a Row) -> impl Iterator<Item = &'a Row> {
    runs.iter().filter_map(move |rows| {
        rows.iter()
            .find(|r| r.target == like.target && r.test == like.test && r.pipeline == like.pipeline)
    })
}

/// Each cell's medians over the runs, in the first run's order.
fn medians(runs: &[Vec<Row>]) -> Vec<Row> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|like| {
            let of = |f: fn(&Row) -> f64| median(cells(runs, like).map(f).collect());
            Row {
                target: like.target,
                test: like.test.clone(),
                pipeline: like.pipeline,
                rps: of(|r| r.rps),
                p50_ms: of(|r| r.p50_ms),
                p99_ms: of(|r| r.p99_ms),
                cpu_per_m: of(|r| r.cpu_per_m),
            }
        })
        .collect()
}

/// The lowest and highest of one value of a cell over the runs.
fn range(runs: &[Vec<Row>], like: &Row, f: fn(&Row) -> f64) -> (f64, f64) {
    cells(runs, like)
        .map(f)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        })
}

/// System calls process `pid` (all its threads) makes per request over a SET and GET run
/// of `requests` each, counted by `strace -c -f`; `None` when strace cannot attach.
fn syscalls_per_request(pid: u32, port: u16, requests: u32, pipeline: u32) -> Option<f64> {
    let dir = tempfile::tempdir().ok()?;
    let out = dir.path().join("strace.txt");
    let mut strace = Command::new("strace")
        .args(["-c", "-f", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    // strace says it attached on stderr; give it time to attach to every thread.
    std::thread::sleep(Duration::from_millis(1500));
    if let Ok(Some(_)) = strace.try_wait() {
        return None;
    }
    run_benchmark("traced", port, requests, pipeline);
    let _ = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait();
    let text = std::fs::read_to_string(&out).ok()?;
    // The summary's last line: `100.00 seconds usecs/call calls errors total`.
    let total = text
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with("total"))?;
    let f: Vec<&str> = total.split_whitespace().collect();
    let calls: f64 = f.get(f.len().checked_sub(3)?)?.parse().ok()?;
    Some(calls / (2.0 * f64::from(requests)))
}

fn main() -> std::process::ExitCode {
    let program = match node_or_program() {
        Ok(program) => program,
        Err(code) => return code,
    };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let proxies = match args.first().map(String::as_str) {
        Some("--proxies") => {
            let n = args.get(1).and_then(|a| a.parse::<usize>().ok());
            let Some(n) = n.filter(|&n| n >= 2) else {
                eprintln!("--proxies takes a number of proxies, at least 2");
                return std::process::ExitCode::from(2);
            };
            args.drain(..2);
            Some(n)
        }
        _ => None,
    };
    let requests: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let runs: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(if proxies.is_some() { 3 } else { 5 })
        .max(1);
    if let Some(n) = proxies {
        scale::run(&program, n, requests, runs);
        return std::process::ExitCode::SUCCESS;
    }
    let direct = RedisServer::start();
    let fleet: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = fleet.iter().collect();
    let twem = Nutcracker::start(&refs);
    let threads = std::env::var("SHARDCAST_THREADS").unwrap_or_else(|_| "0".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut config = format!(
        "listen = \"127.0.0.1:{port}\"\nthreads = {threads}\n[limits]\nmaxclients = {}\n",
        IDLE + 1000
    );
    for (i, r) in refs.iter().enumerate() {
        config.push_str(&format!(
            "[[instances]]\nname = \"redis-{i}\"\naddress = \"{}\"\n",
            r.address()
        ));
    }
    let file = dir.path().join("shardcast.toml");
    std::fs::write(&file, config).expect("write the shardcast config");
    let shard = ShardcastProcess::start(&[&program[0], &program[1]], &file, port, &[]);
    let me = shard.pid().expect("shardcast runs");
    let twem_pid = twem.child.id();
    let direct_pid = direct.pid().unwrap_or(0);
    let mut runs_rows: Vec<Vec<Row>> = Vec::new();
    for _ in 0..runs {
        let mut rows = Vec::new();
        for pipeline in [1, 16] {
            rows.extend(bench("direct", direct_pid, direct.port, requests, pipeline));
            rows.extend(bench("twemproxy", twem_pid, twem.port, requests, pipeline));
            rows.extend(bench("shardcast", me, shard.port, requests, pipeline));
        }
        runs_rows.push(rows);
    }
    let rows = medians(&runs_rows);
    // Further cells, one run each: many clients, large values, a multi-key read.
    let mget: Vec<String> = (0..10).map(|i| format!("k{i}:__rand_int__")).collect();
    let mut mget_args = vec!["-c", "50", "MGET"];
    mget_args.extend(mget.iter().map(String::as_str));
    let cells_of: [(&str, Vec<&str>); 3] = [
        ("-c 1000", vec!["-c", "1000", "-t", "set,get"]),
        ("-d 1024", vec!["-c", "50", "-d", "1024", "-t", "set,get"]),
        ("MGET x10", mget_args),
    ];
    let mut cells = Vec::new();
    for (label, args) in &cells_of {
        for (target, pid, port) in [
            ("direct", direct_pid, direct.port),
            ("twemproxy", twem_pid, twem.port),
            ("shardcast", me, shard.port),
        ] {
            let before = cpu_s(pid);
            let got = run_with(target, port, requests / 2, 1, args);
            let cpu = cpu_s(pid) - before;
            let n = got.len().max(1) as f64;
            for mut r in got {
                r.cpu_per_m = cpu / (n * f64::from(requests / 2)) * 1e6;
                if r.test.starts_with("MGET") {
                    r.test = "MGET".into();
                }
                cells.push((*label, r));
            }
        }
    }
    let tls = tls_cells(&program, &refs, dir.path(), requests / 2);
    let idle = [
        ("twemproxy", twem_pid, twem.port),
        ("shardcast", me, shard.port),
    ]
    .map(|(target, pid, port)| (target, idle_memory(pid, port, IDLE)));
    let traced = (requests / 10).max(1000);
    let mut calls = Vec::new();
    for pipeline in [1, 16] {
        for (target, pid, port) in [
            ("twemproxy", twem_pid, twem.port),
            ("shardcast", me, shard.port),
        ] {
            calls.push((
                target,
                pipeline,
                syscalls_per_request(pid, port, traced, pipeline),
            ));
        }
    }
    println!(
        "redis-benchmark -c 50 -n {requests} -r 100000, same machine; medians of {runs} runs (requests/s: median [lowest-highest])\n"
    );
    println!("| test | -P | target | requests/s | p50 ms | p99 ms | CPU s per M requests |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        let (lo, hi) = range(&runs_rows, r, |x| x.rps);
        println!(
            "| {} | {} | {} | {:.0} [{lo:.0}-{hi:.0}] | {:.3} | {:.3} | {:.2} |",
            r.test, r.pipeline, r.target, r.rps, r.p50_ms, r.p99_ms, r.cpu_per_m
        );
    }
    println!(
        "\nCPU is per run of SET and GET together (the process's user + system time over both).\n"
    );
    println!(
        "| -P | target | system calls per request (strace -c -f, {traced} SET + {traced} GET) |"
    );
    println!("|---|---|---|");
    for (target, pipeline, c) in &calls {
        match c {
            Some(c) => println!("| {pipeline} | {target} | {c:.2} |"),
            None => println!(
                "| {pipeline} | {target} | not measured: strace missing or cannot attach |"
            ),
        }
    }
    println!(
        "\nFurther cells, -n {} -P 1, one run each:\n\n| cell | test | target | requests/s | p50 ms | p99 ms | CPU s per M requests | shardcast / twemproxy throughput |\n|---|---|---|---|---|---|---|---|",
        requests / 2
    );
    for (label, r) in &cells {
        let twem = cells
            .iter()
            .find(|(l, x)| l == label && x.test == r.test && x.target == "twemproxy")
            .map(|(_, x)| x.rps);
        let ratio = match (r.target, twem) {
            ("shardcast", Some(t)) => format!("{:.2}x", r.rps / t),
            _ => String::new(),
        };
        println!(
            "| {label} | {} | {} | {:.0} | {:.3} | {:.3} | {:.2} | {ratio} |",
            r.test, r.target, r.rps, r.p50_ms, r.p99_ms, r.cpu_per_m
        );
    }
    match &tls {
        Ok(tls_rows) => {
            println!(
                "\nTLS, -n {} -P 1 -c 50, one run (a TLS-only redis-server; shardcast with [tls] over the plain fleet):\n\n| test | target | requests/s | p50 ms | p99 ms | CPU s per M requests | shardcast / direct throughput | shardcast TLS / plain throughput (-P 1 median above) |\n|---|---|---|---|---|---|---|---|",
                requests / 2
            );
            for r in tls_rows {
                let direct = tls_rows
                    .iter()
                    .find(|x| x.test == r.test && x.target == "direct TLS")
                    .map(|x| x.rps);
                let plain = rows
                    .iter()
                    .find(|x| x.target == "shardcast" && x.pipeline == 1 && x.test == r.test)
                    .map(|x| x.rps);
                let (vs_direct, vs_plain) = match (r.target, direct, plain) {
                    ("shardcast TLS", Some(d), Some(p)) => {
                        (format!("{:.2}x", r.rps / d), format!("{:.2}x", r.rps / p))
                    }
                    _ => (String::new(), String::new()),
                };
                println!(
                    "| {} | {} | {:.0} | {:.3} | {:.3} | {:.2} | {vs_direct} | {vs_plain} |",
                    r.test, r.target, r.rps, r.p50_ms, r.p99_ms, r.cpu_per_m
                );
            }
        }
        Err(e) => println!("\nTLS cell not measured: {e}"),
    }
    if let Ok(tls_rows) = &tls
        && tls_rows.len() < 4
    {
        println!(
            "({} of the 4 TLS results missing: redis-benchmark printed none for them)",
            4 - tls_rows.len()
        );
    }
    println!(
        "\n| target | resident memory (MiB) | with {IDLE} idle client connections (MiB) |\n|---|---|---|"
    );
    for (target, m) in &idle {
        match m {
            Ok((before, with)) => println!("| {target} | {before:.1} | {with:.1} |"),
            Err(e) => println!("| {target} | not measured: {e} | |"),
        }
    }
    println!(
        "\n| test | -P | shardcast / twemproxy throughput (of medians [per run]) | shardcast / direct p50 | shardcast / direct throughput | shardcast / twemproxy CPU per request |"
    );
    println!("|---|---|---|---|---|---|");
    for pipeline in [1, 16] {
        for test in ["SET", "GET"] {
            let find = |t: &str| {
                rows.iter()
                    .find(|r| r.target == t && r.test == test && r.pipeline == pipeline)
            };
            if let (Some(s), Some(t), Some(d)) =
                (find("shardcast"), find("twemproxy"), find("direct"))
            {
                // The ratio in each run, for its range.
                let per_run: Vec<f64> = runs_rows
                    .iter()
                    .filter_map(|rows| {
                        let get = |t: &str| {
                            rows.iter()
                                .find(|r| r.target == t && r.test == test && r.pipeline == pipeline)
                        };
                        Some(get("shardcast")?.rps / get("twemproxy")?.rps)
                    })
                    .collect();
                let lo = per_run.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = per_run.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                println!(
                    "| {test} | {pipeline} | {:.2}x [{lo:.2}-{hi:.2}] | {:.2}x | {:.2}x | {:.2}x |",
                    s.rps / t.rps,
                    s.p50_ms / d.p50_ms.max(1e-9),
                    s.rps / d.rps,
                    s.cpu_per_m / t.cpu_per_m.max(1e-9)
                );
            }
        }
    }
    std::process::ExitCode::SUCCESS
}

//! `bench_proxy --proxies N`: aggregate throughput of N cluster-mode proxies against one.
//!
//! One etcd, three redis-servers, and shardcast proxies in cluster mode (`[cluster]`, no
//! policy) over the same fleet. Each cell sends the same requests with the same total
//! number of clients (50): to one proxy with one event loop, to one proxy with N loops,
//! and spread over N proxies of one loop each, one redis-benchmark per proxy started
//! together. Throughput is every benchmark's requests over the wall time until the last
//! one ended. Each cell is the median of `runs` runs. On a machine with fewer cores than
//! processes the figure is bounded by the cores: the proxies, the redis-servers and the
//! benchmark clients all share them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shardcast_tests::etcd::EtcdServer;
use shardcast_tests::servers::{RedisServer, ShardcastProcess, free_port, wait_for};

/// `n` cluster-mode proxies of `threads` loops each over `fleet`, serving.
fn start_proxies(
    program: &[String; 2],
    etcd: &EtcdServer,
    fleet: &[RedisServer],
    n: usize,
    threads: usize,
    dir: &Path,
    tag: &str,
) -> Vec<ShardcastProcess> {
    (0..n)
        .map(|i| {
            let port = free_port();
            let state = dir.join(format!("{tag}-state-{i}"));
            let mut config = format!(
                "listen = \"127.0.0.1:{port}\"\nthreads = {threads}\n[migration]\nstate_dir = \"{}\"\n[cluster]\netcd = [\"{}\"]\nname = \"{tag}-{i}\"\nprefix = \"/bench/{tag}\"\n[sessions]\nrepository = \"memory\"\n",
                state.display(),
                etcd.endpoint()
            );
            for (k, r) in fleet.iter().enumerate() {
                config.push_str(&format!(
                    "[[instances]]\nname = \"redis-{k}\"\naddress = \"{}\"\n",
                    r.address()
                ));
            }
            let file = dir.join(format!("{tag}-{i}.toml"));
            std::fs::write(&file, config).expect("write a proxy's config");
            let p = ShardcastProcess::start(&[&program[0], &program[1]], &file, port, &[]);
            wait_for("the proxy to join the cluster", Duration::from_secs(30), || {
                redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                    .and_then(|mut c| redis::cmd("SET").arg("probe").arg(1).query::<()>(&mut c))
                    .is_ok()
            });
            p
        })
        .collect()
}

/// SET and GET through `ports` at once (`-c` split between them): requests per second.
fn aggregate(ports: &[u16], requests: u32, pipeline: u32) -> f64 {
    let clients = (50 / ports.len()).max(1);
    let started = Instant::now();
    let children: Vec<_> = ports
        .iter()
        .map(|port| {
            Command::new("redis-benchmark")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-n", &requests.to_string(), "-P", &pipeline.to_string()])
                .args([
                    "-c",
                    &clients.to_string(),
                    "-r",
                    "100000",
                    "-t",
                    "set,get",
                    "-q",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run redis-benchmark ({e}): apt-get install redis-tools")
                })
        })
        .collect();
    for mut c in children {
        let status = c.wait().expect("redis-benchmark");
        assert!(status.success(), "redis-benchmark failed: {status}");
    }
    let wall = started.elapsed().as_secs_f64();
    2.0 * f64::from(requests) * ports.len() as f64 / wall
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Run the scaling cells with `n` proxies and print them.
pub fn run(program: &[String; 2], n: usize, requests: u32, runs: usize) {
    let n = n.max(2);
    let etcd = EtcdServer::start();
    let fleet: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let one = start_proxies(program, &etcd, &fleet, 1, 1, dir.path(), "one");
    let wide = start_proxies(program, &etcd, &fleet, 1, n, dir.path(), "wide");
    let many = start_proxies(program, &etcd, &fleet, n, 1, dir.path(), "many");
    let ports = |ps: &[ShardcastProcess]| ps.iter().map(|p| p.port).collect::<Vec<u16>>();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "{n} cluster-mode proxies against one, SET and GET, 50 clients in all, {requests} requests per test per benchmark, median of {runs} runs, {cores} cores"
    );
    println!(
        "| pipeline | 1 proxy, 1 loop | 1 proxy, {n} loops | {n} proxies, 1 loop each | {n} proxies / 1 proxy |"
    );
    println!("|---|---|---|---|---|");
    for pipeline in [1, 16] {
        let mut cells = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..runs {
            cells[0].push(aggregate(&ports(&one), requests, pipeline));
            cells[1].push(aggregate(&ports(&wide), requests, pipeline));
            cells[2].push(aggregate(&ports(&many), requests / n as u32, pipeline));
        }
        let [a, b, c] = cells.map(median);
        println!(
            "| {pipeline} | {a:.0}/s | {b:.0}/s | {c:.0}/s | {:.2}× |",
            c / a
        );
    }
    if cores < 2 * n + 2 {
        println!(
            "bounded by the cores: {cores} cores run the proxies, three redis-servers and the benchmark clients"
        );
    }
}

//! Side-by-side data-plane benchmark: redis-benchmark against one redis-server directly,
//! twemproxy (nutcracker) over 3 instances, and shardcast over the same 3 instances, in
//! one run. SET and GET with `-c 50`, at `-P 1` and `-P 16`; prints requests/s, p50, p99
//! and the ratios.
//!
//! `cargo run --release -p shardcast-tests --bin bench_proxy [-- <requests>]`

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shardcast_tests::servers::{Proxy, RedisServer, free_port, wait_for};

struct Row {
    target: &'static str,
    test: String,
    pipeline: u32,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn bench(target: &'static str, port: u16, requests: u32, pipeline: u32) -> Vec<Row> {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            "50",
            "-n",
            &requests.to_string(),
        ])
        .args([
            "-P",
            &pipeline.to_string(),
            "-t",
            "set,get",
            "-r",
            "100000",
            "--csv",
        ])
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

fn main() {
    let requests: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let direct = RedisServer::start();
    let fleet: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = fleet.iter().collect();
    let twem = Nutcracker::start(&refs);
    let threads = std::env::var("SHARDCAST_THREADS").unwrap_or_else(|_| "0".into());
    let shard = Proxy::start(&refs, &format!("threads = {threads}"));
    let mut rows = Vec::new();
    for pipeline in [1, 16] {
        rows.extend(bench("direct", direct.port, requests, pipeline));
        rows.extend(bench("twemproxy", twem.port, requests, pipeline));
        rows.extend(bench("shardcast", shard.port, requests, pipeline));
    }
    println!("redis-benchmark -c 50 -n {requests} -r 100000, one run, same machine\n");
    println!("| test | -P | target | requests/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.3} | {:.3} |",
            r.test, r.pipeline, r.target, r.rps, r.p50_ms, r.p99_ms
        );
    }
    println!(
        "\n| test | -P | shardcast / twemproxy throughput | shardcast / direct p50 | shardcast / direct throughput |"
    );
    println!("|---|---|---|---|---|");
    for pipeline in [1, 16] {
        for test in ["SET", "GET"] {
            let find = |t: &str| {
                rows.iter()
                    .find(|r| r.target == t && r.test == test && r.pipeline == pipeline)
            };
            if let (Some(s), Some(t), Some(d)) =
                (find("shardcast"), find("twemproxy"), find("direct"))
            {
                println!(
                    "| {test} | {pipeline} | {:.2}x | {:.2}x | {:.2}x |",
                    s.rps / t.rps,
                    s.p50_ms / d.p50_ms.max(1e-9),
                    s.rps / d.rps
                );
            }
        }
    }
}

//! A restart keeps every key where the last run put it: the README's configuration, as a
//! new user would run it (no `state_dir`), a segment moved live, SIGTERM, the same
//! configuration started again, every key read back. The saved table names instances, so
//! reordering the configuration is harmless, and removing an instance that owns segments
//! is refused with a message saying how to drain it first.

use std::time::Duration;

use shardcast_tests::artifacts;
use shardcast_tests::decisions::completed_moves;
use shardcast_tests::servers::{RedisServer, ShardcastProcess, free_port, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_shardcast_node");
const KEYS: usize = 2000;

/// The README's `shardcast.toml`, pointed at `servers` (two active, one standby) and
/// listening on `port`, with `ping-pong` moving segment 0 once per run in place of
/// `threshold`, and without its `state_dir` line: the default applies.
fn readme_config(port: u16, servers: &[RedisServer], dir: &std::path::Path) -> String {
    let readme = include_str!("../../README.md");
    let marker = "```toml\n# shardcast.toml\n";
    let start = readme.find(marker).expect("README has the configuration") + marker.len();
    let end = start + readme[start..].find("```").expect("closing fence");
    let settings = dir.join("ping-pong.toml");
    std::fs::write(&settings, "segments = [0]\n").expect("settings");
    let text = readme[start..end]
        .replace("127.0.0.1:7380", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:6379", &servers[0].address())
        .replace("127.0.0.1:6380", &servers[1].address())
        .replace("127.0.0.1:6381", &servers[2].address())
        .replace("127.0.0.1:7470", &format!("127.0.0.1:{}", free_port()))
        .replace(
            "target/wasm32-wasip2/release/shardcast_policy_threshold.wasm",
            artifacts::PING_PONG,
        )
        .replace(
            "\"threshold.toml\"",
            &format!("{:?}", settings.display().to_string()),
        )
        .replace("moves_per_window = 8", "moves_per_window = 1")
        .replace("window_ticks = 60", "window_ticks = 1000000");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("state_dir"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        !text.contains("state_dir"),
        "the default state directory applies"
    );
    format!("tick_ms = 200\n{text}")
}

fn write_keys(port: u16) {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection())
        .expect("client");
    for i in 0..KEYS {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(i)
            .query(&mut c)
            .expect("SET through shardcast");
    }
}

/// Keys of `0..KEYS` that do not read back with their value.
fn missing_keys(port: u16) -> Vec<usize> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection())
        .expect("client");
    (0..KEYS)
        .filter(|i| {
            redis::cmd("GET")
                .arg(format!("key:{i}"))
                .query::<Option<usize>>(&mut c)
                .ok()
                .flatten()
                != Some(*i)
        })
        .collect()
}

#[test]
fn a_plain_restart_of_the_readme_configuration_reads_every_key_back() {
    let servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = dir.path().join("shardcast.toml");
    std::fs::write(&file, readme_config(port, &servers, dir.path())).expect("config");
    let mut p = ShardcastProcess::start(&[BIN], &file, port, &[]);
    write_keys(port);
    let log = dir.path().join("shardcast.state").join("decisions.jsonl");
    wait_for(
        "segment 0 to move (decision log in the default state directory)",
        Duration::from_secs(60),
        || completed_moves(&log) >= 1,
    );
    assert_eq!(
        missing_keys(port),
        Vec::<usize>::new(),
        "before the restart"
    );
    let status = p.terminate(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM stops shardcast cleanly: {status:?}"
    );
    let _p = ShardcastProcess::start(&[BIN], &file, port, &[]);
    let missing = missing_keys(port);
    assert!(
        missing.is_empty(),
        "{} of {KEYS} keys missing after a plain restart, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn a_reordered_configuration_keeps_routing_and_a_removed_owner_is_refused() {
    let servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = dir.path().join("edge.toml");
    let instance = |i: usize| {
        format!(
            "[[instances]]\nname = \"redis-{i}\"\naddress = \"{}\"\n",
            servers[i].address()
        )
    };
    let head = format!("listen = \"127.0.0.1:{port}\"\n[segments]\ncount = 8\n");
    std::fs::write(&file, format!("{head}{}{}", instance(0), instance(1))).expect("config");
    {
        let _p = ShardcastProcess::start(&[BIN], &file, port, &[]);
        write_keys(port);
    }
    // A third instance in front and the first two swapped: ids change, names do not.
    std::fs::write(
        &file,
        format!("{head}{}{}{}", instance(2), instance(1), instance(0)),
    )
    .expect("config");
    {
        let _p = ShardcastProcess::start(&[BIN], &file, port, &[]);
        let missing = missing_keys(port);
        assert!(
            missing.is_empty(),
            "{} of {KEYS} keys missing after reordering the configuration",
            missing.len()
        );
        let on_new: usize = redis::cmd("DBSIZE")
            .query(&mut servers[2].client())
            .expect("DBSIZE");
        assert_eq!(on_new, 0, "a new instance owns nothing until segments move");
    }
    // Removing redis-1, which owns segments, is refused before anything is served.
    std::fs::write(&file, format!("{head}{}", instance(0))).expect("config");
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .expect("shardcast runs");
    assert!(!out.status.success(), "refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("instance `redis-1` owns") && err.contains("drain"),
        "{err}"
    );
}

#[test]
fn sigterm_answers_the_requests_in_flight_before_exiting() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = dir.path().join("shardcast.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[[instances]]\nname = \"r\"\naddress = \"{}\"\n",
            server.address()
        ),
    )
    .expect("config");
    let mut p = ShardcastProcess::start(&[BIN], &file, port, &[]);
    // A request that takes a second is in flight when SIGTERM arrives.
    let waiter = std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection())
            .expect("client");
        redis::cmd("BLPOP")
            .arg("nothing-here")
            .arg(1)
            .query::<Option<(String, String)>>(&mut c)
    });
    wait_for(
        "the BLPOP to wait on the instance",
        Duration::from_secs(10),
        || {
            redis::cmd("CLIENT")
                .arg("LIST")
                .query::<String>(&mut server.client())
                .is_ok_and(|list| list.contains("cmd=blpop"))
        },
    );
    let status = p.terminate(Duration::from_secs(20));
    let answer = waiter.join().expect("client thread");
    assert!(
        matches!(answer, Ok(None)),
        "the request in flight got its answer (a timed-out BLPOP), not a dropped connection: {answer:?}"
    );
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn a_second_process_on_the_same_state_directory_is_refused() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, other) = (free_port(), free_port());
    let body = format!(
        "[[instances]]\nname = \"r\"\naddress = \"{}\"\n[migration]\nstate_dir = \"{}\"\n",
        server.address(),
        dir.path().join("state").display()
    );
    let first = dir.path().join("a.toml");
    std::fs::write(&first, format!("listen = \"127.0.0.1:{port}\"\n{body}")).expect("config");
    let second = dir.path().join("b.toml");
    std::fs::write(&second, format!("listen = \"127.0.0.1:{other}\"\n{body}")).expect("config");
    let _running = ShardcastProcess::start(&[BIN], &first, port, &[]);
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&second)
        .output()
        .expect("shardcast runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another shardcast process uses this state_dir"),
        "{err}"
    );
}

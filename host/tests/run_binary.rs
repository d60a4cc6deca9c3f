//! The `shardcast` binary: `run` serves a real redis-server, stops cleanly on SIGTERM, and
//! refuses a bad configuration naming the key and line.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped, so a failing test leaves nothing running.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ask(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(request).expect("write");
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn run_serves_and_stops_on_sigterm() {
    let redis_port = free_port();
    let _redis = Guard(
        Command::new("redis-server")
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)"),
    );
    wait_for("redis-server", || {
        TcpStream::connect(("127.0.0.1", redis_port)).is_ok()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = dir.path().join("shardcast.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\n[[instances]]\nname = \"r\"\naddress = \"127.0.0.1:{redis_port}\"\n"),
    )
    .expect("write config");
    let mut proxy = Guard(
        Command::new(env!("CARGO_BIN_EXE_shardcast"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("shardcast starts"),
    );
    wait_for("the proxy", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert_eq!(
        ask(port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"),
        "+OK\r\n"
    );
    assert_eq!(ask(port, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), "$1\r\nv\r\n");
    let killed = Command::new("kill")
        .args(["-TERM", &proxy.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut status = None;
    wait_for("the proxy to exit", || {
        status = proxy.0.try_wait().expect("wait");
        status.is_some()
    });
    assert!(
        status.expect("exited").success(),
        "SIGTERM is a clean stop: {status:?}"
    );
}

#[test]
fn run_refuses_a_bad_configuration_naming_the_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shardcast.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:1\"\n\n[[instances]]\nname = \"r\"\naddress = \"not-an-address\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("shardcast runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("instances[0].address") && err.contains("line 5"),
        "{err}"
    );
}

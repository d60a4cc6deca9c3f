//! Real processes for end-to-end tests: `redis-server` instances on free ports, and a
//! shardcast proxy in front of them. Each is stopped when dropped.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// Poll `f` until it is true or `deadline` passes.
pub fn wait_for(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` child process.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start one on a free port, with persistence off. Panics with installation advice
    /// when `redis-server` is not installed.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install Debian's package with `apt-get install redis-server`")
            });
        let server = RedisServer {
            port,
            child: Some(child),
            _dir: dir,
        };
        wait_for("redis-server to answer", Duration::from_secs(10), || {
            server.ping()
        });
        server
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A direct client connection, bypassing the proxy.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection())
            .expect("direct connection to redis-server")
    }

    fn ping(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
    }

    /// Kill it with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A shardcast proxy running in this process, on its own runtime thread.
pub struct Proxy {
    /// Its port.
    pub port: u16,
    /// Its telemetry.
    pub telemetry: std::sync::Arc<shardcast::telemetry::Telemetry>,
    /// Its live sessions.
    pub sessions: std::sync::Arc<shardcast::sessions::registry::Registry>,
    /// Its topology: the segment table it routes by.
    pub topology: std::sync::Arc<shardcast::topology::Topology>,
    /// Its executor of accepted actions.
    pub executor: std::sync::Arc<shardcast::migrate::Executor>,
    /// Its gate (held requests, dirty keys).
    pub gate: std::sync::Arc<shardcast::proxy::gate::Gate>,
    /// All of the above, as the process holds them.
    pub parts: shardcast::run::Parts,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Start a proxy over `instances` with `extra` TOML appended to the configuration.
    pub fn start(instances: &[&RedisServer], extra: &str) -> Self {
        let port = free_port();
        let mut text = format!("listen = \"127.0.0.1:{port}\"\n{extra}\n");
        for (i, r) in instances.iter().enumerate() {
            text.push_str(&format!(
                "[[instances]]\nname = \"redis-{i}\"\naddress = \"{}\"\n",
                r.address()
            ));
        }
        let config = shardcast::config::Config::parse(&text).expect("test config is valid");
        let parts = shardcast::run::Parts::new(&config).expect("proxy parts");
        let running = parts.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = config.runtime().expect("runtime");
            rt.block_on(async move {
                shardcast::run::run_with(config, running, async {
                    let _ = rx.await;
                })
                .await
                .expect("proxy runs");
            });
        });
        wait_for("the proxy to listen", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Proxy {
            port,
            telemetry: parts.telemetry.clone(),
            topology: parts.topology.clone(),
            sessions: parts.registry.clone(),
            executor: parts.executor.clone(),
            gate: parts.gate.clone(),
            parts,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// A client connection through the proxy.
    pub fn client(&self) -> redis::Connection {
        self.client_url("")
    }

    /// A client connection through the proxy with URL options (e.g. `?protocol=resp3`).
    pub fn client_url(&self, suffix: &str) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/{suffix}", self.port))
            .and_then(|c| c.get_connection())
            .expect("connection through the proxy")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

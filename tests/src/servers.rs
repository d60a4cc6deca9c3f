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

/// Subscribe `subscriber` to `channel`, publish `message` there through `publisher`, and
/// return the payload the subscriber receives.
pub fn published_and_heard(
    subscriber: &mut redis::Connection,
    publisher: &mut redis::Connection,
    channel: &str,
    message: &str,
) -> String {
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe(channel).expect("SUBSCRIBE");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query(publisher)
        .expect("PUBLISH");
    pubsub
        .get_message()
        .expect("a message")
        .get_payload()
        .expect("payload")
}

/// `RPUSH key x`, then `BLPOP key 1` (a blocking command, on a session's own connection
/// to the instance); the value popped.
pub fn pushed_and_popped(c: &mut redis::Connection, key: &str) -> String {
    let _: () = redis::cmd("RPUSH")
        .arg(key)
        .arg("x")
        .query(c)
        .expect("RPUSH");
    let popped: (String, String) = redis::cmd("BLPOP").arg(key).arg(1).query(c).expect("BLPOP");
    popped.1
}

fn spawn_redis(port: u16, durable: bool, dir: &std::path::Path) -> Child {
    let persistence: &[&str] = if durable {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &["--appendonly", "no"]
    };
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(persistence)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}): install Debian's package with `apt-get install redis-server`")
        })
}

/// A `redis-server` child process.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    durable: bool,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Start one on a free port, with persistence off. Panics with installation advice
    /// when `redis-server` is not installed.
    pub fn start() -> Self {
        Self::launch(free_port(), false, tempfile::tempdir().expect("tempdir"))
    }

    /// Start one that fsyncs every write to its append-only file before answering, so a
    /// SIGKILL loses nothing it acknowledged; [`RedisServer::restart`] brings it back with
    /// its data.
    pub fn start_durable() -> Self {
        Self::launch(free_port(), true, tempfile::tempdir().expect("tempdir"))
    }

    fn launch(port: u16, durable: bool, dir: tempfile::TempDir) -> Self {
        let server = RedisServer {
            port,
            child: Some(spawn_redis(port, durable, dir.path())),
            durable,
            dir,
        };
        wait_for("redis-server to answer", Duration::from_secs(10), || {
            server.ping()
        });
        server
    }

    /// Start it again (after [`RedisServer::kill`]) on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_redis(self.port, self.durable, self.dir.path()));
        wait_for("redis-server to answer", Duration::from_secs(10), || {
            self.ping()
        });
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

    /// Freeze it with SIGSTOP: it keeps its sockets and accepts connections, but answers
    /// nothing until [`RedisServer::resume`] (a hung instance).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Let it run again with SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        if let Some(c) = &self.child {
            let sent = Command::new("kill")
                .args([which, &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(sent, "kill {which} redis-server");
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
        Self::start_config(port, &text)
    }

    /// Start a proxy listening on `port` with the whole configuration `text`.
    pub fn start_config(port: u16, text: &str) -> Self {
        let config = shardcast::config::Config::parse(text).expect("test config is valid");
        Self::start_loaded(port, config)
    }

    /// Start a proxy listening on `port` with a configuration already loaded.
    pub fn start_loaded(port: u16, config: shardcast::config::Config) -> Self {
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

    /// Ask the executor to move `segment` to `target` and wait (up to `deadline`) for that
    /// migration to end; its record.
    pub fn move_segment(
        &self,
        segment: u32,
        target: u32,
        deadline: Duration,
    ) -> shardcast_sdk::types::Migration {
        use shardcast_sdk::types::{Action, MigrationOutcome, MoveSegment};
        let earlier: Vec<u64> = self.executor.migrations().iter().map(|m| m.id).collect();
        self.executor
            .submit(Action::MoveSegment(MoveSegment { segment, target }), "test");
        let mut ended = None;
        wait_for("the migration to end", deadline, || {
            ended = self
                .executor
                .migrations()
                .into_iter()
                .find(|m| !earlier.contains(&m.id) && m.outcome != MigrationOutcome::Running);
            ended.is_some()
        });
        ended.expect("found above")
    }

    /// A client connection through the proxy.
    pub fn client(&self) -> redis::Connection {
        self.client_url("")
    }

    /// A client connection through the proxy whose every read gives up after `timeout`,
    /// so a test fails instead of hanging when a reply never comes.
    pub fn client_within(&self, timeout: Duration) -> redis::Connection {
        let c = self.client();
        c.set_read_timeout(Some(timeout)).expect("read timeout");
        c
    }

    /// A key (`prefix` plus a number) whose slot instance `id` owns now.
    pub fn key_on(&self, id: u32, prefix: &str) -> String {
        let table = self.topology.table();
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .find(|k| table.owner(shardcast::proxy::slot::slot(k.as_bytes())) == id)
            .expect("some key lands on every owner")
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

/// `shardcast run` as a separate process (the test crate's `shardcast_node` binary), so a
/// test can SIGKILL it.
pub struct ShardcastProcess {
    /// Its client port.
    pub port: u16,
    child: Option<Child>,
}

impl ShardcastProcess {
    /// Start `program run --config config` with `env` (`program`: the executable and any
    /// leading arguments), and wait until it listens on `port` (or exits, which a crash
    /// point may make it do first).
    pub fn start(
        program: &[&str],
        config: &std::path::Path,
        port: u16,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_logged(program, config, port, env, None)
    }

    /// [`ShardcastProcess::start`], with its stderr (the log) appended to `log` when given.
    pub fn start_logged(
        program: &[&str],
        config: &std::path::Path,
        port: u16,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Self {
        let bin = program.first().copied().unwrap_or("shardcast");
        let mut cmd = Command::new(bin);
        cmd.args(&program[1..])
            .arg("run")
            .arg("--config")
            .arg(config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let stderr = match log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .unwrap_or_else(|e| panic!("cannot open log {}: {e}", path.display())),
            None => Stdio::null(),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let mut p = ShardcastProcess {
            port,
            child: Some(child),
        };
        wait_for(
            "shardcast to listen or stop",
            Duration::from_secs(20),
            || TcpStream::connect(("127.0.0.1", port)).is_ok() || p.exited(),
        );
        p
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Send it `signal` (e.g. `USR1`), as an operator would with `kill -USR1`.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status();
        }
    }

    /// True once the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Kill it with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop it with SIGTERM, as an operator would, and wait for it to exit (SIGKILL past
    /// `deadline`); its exit status.
    pub fn terminate(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let until = Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            if Instant::now() >= until {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ShardcastProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// For a binary that is also the shardcast process it drives: when called as
/// `<binary> --node ...`, run shardcast with the rest and give its exit code; otherwise the
/// program (this binary and `--node`) that starts such a process.
pub fn node_or_program() -> Result<[String; 2], std::process::ExitCode> {
    let mut argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--node") {
        argv.remove(1);
        return Err(shardcast::cli::main_with(argv));
    }
    let me = std::env::current_exe().expect("this binary's path");
    Ok([me.to_string_lossy().into_owned(), "--node".to_owned()])
}

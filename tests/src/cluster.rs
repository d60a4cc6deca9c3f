//! A cluster-mode fixture: one etcd, durable redis-servers and several `shardcast run`
//! processes sharing them through `[cluster]`, each with its own port, state directory and
//! log, all running the `ping-pong` policy (segments 0 and 2 move back and forth; each
//! proxy from a policy file of its own), so that whichever proxy is elected moves segments;
//! the controller checkpoints its policy's state every 10 ticks.

use std::path::PathBuf;
use std::time::Duration;

use crate::artifacts;
use crate::etcd::EtcdServer;
use crate::servers::{RedisServer, ShardcastProcess, free_port, wait_for};

/// The line the rig writes into a proxy's log before each start.
const STARTED: &str = "== the test rig starts this proxy ==";

/// The fixture.
pub struct ClusterRig {
    /// etcd.
    pub etcd: EtcdServer,
    /// The instances.
    pub servers: Vec<RedisServer>,
    /// The Redis the proxies share sessions through (`[sessions] repository`).
    pub sessions: RedisServer,
    /// The proxies (`None`: stopped).
    pub proxies: Vec<Option<ShardcastProcess>>,
    /// Their client ports.
    pub ports: Vec<u16>,
    program: Vec<String>,
    ttl_s: u64,
    /// Instances configured as standby.
    standby: Vec<usize>,
    dir: tempfile::TempDir,
    /// One rig at a time in a test process (dropped last, after every process stopped):
    /// each runs seven servers and three proxies, too many to share two cores.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl ClusterRig {
    /// etcd, `instances` durable redis-servers and `proxies` configured proxies (none
    /// started yet), with leases of `ttl_s` seconds; `program` runs shardcast (the
    /// `shardcast_node` binary, or a binary and `--node`).
    pub fn new(program: &[&str], instances: usize, proxies: usize, ttl_s: u64) -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let rig = ClusterRig {
            etcd: EtcdServer::start(),
            servers: (0..instances)
                .map(|_| RedisServer::start_durable())
                .collect(),
            sessions: RedisServer::start(),
            proxies: (0..proxies).map(|_| None).collect(),
            ports: (0..proxies).map(|_| free_port()).collect(),
            program: program.iter().map(|p| (*p).to_owned()).collect(),
            ttl_s,
            standby: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
            _serial: serial,
        };
        rig.moving(&[0, 2]);
        rig
    }

    /// The segments the `ping-pong` policy keeps moving, for proxies started from now on
    /// (none: a quiet cluster).
    pub fn moving(&self, segments: &[u32]) {
        self.settings(&format!("segments = {segments:?}\n"));
    }

    /// Configure instances `ids` as standby, for proxies started from now on.
    pub fn standby(&mut self, ids: &[usize]) {
        self.standby = ids.to_vec();
    }

    /// Replace the settings file every proxy's policy reads.
    pub fn settings(&self, text: &str) {
        std::fs::write(self.dir.path().join("ping-pong.toml"), text).expect("settings");
    }

    /// Proxy `i`'s name.
    pub fn name(i: usize) -> String {
        format!("proxy-{i}")
    }

    /// Proxy `i`'s state directory (its decision log).
    pub fn state(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("state-{i}"))
    }

    /// Proxy `i`'s policy file: a copy of the `ping-pong` component of its own, made when
    /// it first starts, so that a swap on one proxy reaches the others only through the
    /// cluster.
    pub fn policy_file(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("policy-{i}.wasm"))
    }

    /// Proxy `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("proxy-{i}.log"))
    }

    /// Proxy `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Proxy `i`'s configuration: 4 segments, 100 ms ticks, the `ping-pong` policy.
    pub fn config(&self, i: usize) -> String {
        let mut text = format!(
            "listen = \"127.0.0.1:{}\"\ntick_ms = 100\nthreads = 1\n[segments]\ncount = 4\n[limits]\nrequest_timeout_ms = 2000\n[churn]\nmoves_per_window = 100000\nwindow_ticks = 10\nmax_concurrent_migrations = 2\n[migration]\nstate_dir = \"{}\"\nper_instance = 2\nio_timeout_ms = 1500\ncutover_timeout_ms = 1500\n[policy]\nfile = \"{}\"\nsettings = \"{}\"\nwatch = true\n[cluster]\netcd = [\"{}\"]\nname = \"{}\"\nlease_ttl_s = {}\ncheckpoint_ticks = 10\n[sessions]\nrepository = \"redis://{}/\"\n",
            self.ports[i],
            self.state(i).display(),
            self.policy_file(i).display(),
            self.dir.path().join("ping-pong.toml").display(),
            self.etcd.endpoint(),
            Self::name(i),
            self.ttl_s,
            self.sessions.address(),
        );
        for (n, s) in self.servers.iter().enumerate() {
            let state = if self.standby.contains(&n) {
                "standby"
            } else {
                "active"
            };
            text.push_str(&format!(
                "[[instances]]\nname = \"redis-{n}\"\naddress = \"{}\"\nstate = \"{state}\"\n",
                s.address()
            ));
        }
        text
    }

    /// Start proxy `i` with `env`, logging to its log file.
    pub fn start(&mut self, i: usize, env: &[(&str, &str)]) {
        if !self.policy_file(i).exists() {
            std::fs::copy(artifacts::PING_PONG, self.policy_file(i)).expect("copy the policy");
        }
        let file = self.dir.path().join(format!("proxy-{i}.toml"));
        std::fs::write(&file, self.config(i)).expect("config");
        let mut env = env.to_vec();
        env.push((
            "SHARDCAST_LOG",
            "warn,shardcast::cluster=info,shardcast::engine::slot=info,shardcast::engine::watch=info",
        ));
        // A line of the rig's own marks each start in the log, which outlives processes.
        {
            use std::io::Write;
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path(i))
                .expect("open the log");
            writeln!(log, "{STARTED}").expect("mark the start");
        }
        let program: Vec<&str> = self.program.iter().map(String::as_str).collect();
        let p = ShardcastProcess::start_logged(
            &program,
            &file,
            self.ports[i],
            &env,
            Some(&self.log_path(i)),
        );
        self.proxies[i] = Some(p);
    }

    /// Start proxy 0 (with `env`) and wait until it is the controller, then the others.
    pub fn start_all(&mut self, env: &[(&str, &str)]) {
        self.start(0, env);
        self.wait_for_log(0, "elected controller", Duration::from_secs(30));
        for i in 1..self.proxies.len() {
            self.start(i, &[]);
        }
        for i in 0..self.proxies.len() {
            self.wait_for_log(i, "joined: serving", Duration::from_secs(30));
        }
    }

    /// Wait until proxy `i`'s log contains `needle`.
    pub fn wait_for_log(&self, i: usize, needle: &str, deadline: Duration) {
        wait_for(&format!("proxy {i} to log `{needle}`"), deadline, || {
            self.log(i).contains(needle)
        });
    }

    /// Migrations completed, over every proxy's decision log.
    pub fn completed_moves(&self) -> usize {
        (0..self.proxies.len())
            .map(|i| crate::decisions::completed_moves(&self.state(i).join("decisions.jsonl")))
            .sum()
    }

    /// Wait until `n` more migrations than `from` have completed.
    pub fn wait_for_moves(&self, from: usize, n: usize, deadline: Duration) {
        wait_for(&format!("{n} more completed migrations"), deadline, || {
            self.completed_moves() >= from + n
        });
    }

    /// The proxy that holds the controller's office now, by its log's last word on it
    /// since it last started.
    pub fn leader(&self) -> Option<usize> {
        (0..self.proxies.len()).find(|&i| {
            self.proxies[i].is_some() && {
                let log = self.log(i);
                let elected = log.rfind("elected controller");
                let lost = log
                    .rfind("no longer the controller")
                    .max(log.rfind(STARTED));
                elected.is_some() && elected > lost
            }
        })
    }
}

//! `shardcast.toml`: the instances, the initial segment layout, the policy and all limits.
//!
//! Parse errors come from the TOML parser with the line and column; errors in values that
//! parse (an address that is not `host:port`, no active instance, duplicate names) name
//! the key and its line as well.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shardcast_sdk::types::{Instance, InstanceState};
use shardcast_sdk::validate::ChurnLimits;
use toml::Spanned;

use crate::proxy::resp::Limits;

mod admin;
mod auth;
mod tls;
pub use admin::{AdminConfig, DEFAULT_ADMIN_LISTEN};
pub use auth::{AuthConfig, InstanceLogin, UserConfig};
pub use tls::{InstanceTlsConfig, TlsConfig};

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where clients connect, `host:port`.
    pub listen: Spanned<String>,
    /// Milliseconds between two controller ticks.
    #[serde(default = "default_tick")]
    pub tick_ms: u64,
    /// Event loops serving clients, one thread each; 0 means one per core.
    #[serde(default)]
    pub threads: usize,
    /// The instances, active and standby.
    pub instances: Vec<InstanceConfig>,
    /// The initial segment layout.
    #[serde(default)]
    pub segments: SegmentsConfig,
    /// Protocol and buffer limits.
    #[serde(default)]
    pub limits: ProxyLimits,
    /// The policy the controller runs.
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// Churn limits for the validator.
    #[serde(default)]
    pub churn: ChurnLimits,
    /// Where session state is kept.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Live migration: budgets, bounds and where its journal lives.
    #[serde(default)]
    pub migration: MigrationConfig,
    /// Recording of history for `shardcast train`.
    #[serde(default)]
    pub history: HistoryConfig,
    /// Who may connect: the `default` user's password and ACL-style users.
    #[serde(default)]
    pub auth: AuthConfig,
    /// How the proxy logs in to instances that give no login of their own.
    #[serde(default)]
    pub instance_auth: InstanceLogin,
    /// TLS for clients: with it, `listen` serves TLS only.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// TLS to every instance.
    #[serde(default)]
    pub instance_tls: Option<InstanceTlsConfig>,
    /// Cluster mode: several proxies sharing one keyspace through etcd.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// The admin API, `/metrics` and the dashboard; off without an `[admin]` table.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
}

/// Recording of history: each controller tick's instance metrics and the failures seen,
/// appended to a CSV file that `shardcast train` reads ([`crate::history`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// The file; none (the default) records nothing. Recording runs with the controller,
    /// so a `[policy]` must be configured.
    pub file: Option<PathBuf>,
}

/// Live migration settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationConfig {
    /// Directory for the segment table, the migration journal and the decision log. A
    /// configuration read from a file ([`Config::load`]) defaults it to
    /// `<file's directory>/<file's stem>.state` (`shardcast.toml` → `shardcast.state/`), so
    /// a restart routes every segment where the last run left it. A configuration parsed
    /// from text without one keeps the table in memory only (tests, embedding).
    pub state_dir: Option<PathBuf>,
    /// Keys copied per second in and out of one instance, shared by the migrations touching
    /// it (0: unlimited).
    pub keys_per_sec: u64,
    /// Bytes copied per second in and out of one instance, shared likewise (0: unlimited).
    pub bytes_per_sec: u64,
    /// Keys per pipelined chunk.
    pub chunk_keys: usize,
    /// Catch-up ends when at most this many keys are dirty; the rest move during cutover.
    pub cutover_dirty_keys: usize,
    /// Catch-up rounds before the migration gives up.
    pub catch_up_rounds: u32,
    /// Milliseconds a cutover waits for writes in flight (an open WATCH, a blocking
    /// command) before it aborts the migration.
    pub cutover_wait_ms: u64,
    /// Migrations touching one instance at once.
    pub per_instance: u32,
    /// Milliseconds each read or write of a copy may take before the migration rolls back
    /// (a hung instance cannot stall a migration).
    pub io_timeout_ms: u64,
    /// Milliseconds the cutover may hold the segment, from holding to the flip (waiting
    /// for writes in flight, the last copy, the verification); past it the migration rolls
    /// back and the held requests go to the source.
    pub cutover_timeout_ms: u64,
    /// The migration journal is compacted (only unfinished migrations kept) once it is
    /// larger than this many bytes.
    pub journal_compact_bytes: u64,
    /// The decision log is rotated (to `decisions.jsonl.1`, replacing the one before) once
    /// it is larger than this many bytes.
    pub decision_log_bytes: u64,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            state_dir: None,
            keys_per_sec: 0,
            bytes_per_sec: 256 << 20,
            chunk_keys: 512,
            cutover_dirty_keys: 1000,
            catch_up_rounds: 50,
            cutover_wait_ms: 2000,
            per_instance: 1,
            io_timeout_ms: 10_000,
            cutover_timeout_ms: 4000,
            journal_compact_bytes: 1 << 20,
            decision_log_bytes: 64 << 20,
        }
    }
}

/// The session state repository.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// `memory`, or a Redis URL such as `redis://127.0.0.1:6379/` that proxies share
    /// sessions through. Unset: `memory` for one proxy; cluster mode needs it named (a
    /// Redis outside `[[instances]]`, or `memory` to keep each proxy's sessions to itself).
    pub repository: Option<String>,
}

impl SessionsConfig {
    /// The repository in use: `memory` or a Redis URL.
    pub fn repository(&self) -> &str {
        self.repository.as_deref().unwrap_or("memory")
    }
}

fn default_tick() -> u64 {
    1000
}

/// One instance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// Unique name.
    pub name: Spanned<String>,
    /// `host:port`.
    pub address: Spanned<String>,
    /// `active` (default) or `standby`.
    #[serde(default)]
    pub state: Option<Spanned<String>>,
    /// Capacity weight.
    #[serde(default = "one")]
    pub capacity: f64,
    /// Failure domain.
    #[serde(default)]
    pub zone: String,
    /// The ACL user the proxy logs in to this instance as (`[instance_auth]` when none of
    /// these three is given).
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password for this instance.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password for this instance.
    #[serde(default)]
    pub password_env: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// The initial layout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentsConfig {
    /// Segments the slots are cut into, dealt in blocks over the active instances.
    pub count: u32,
}

impl Default for SegmentsConfig {
    fn default() -> Self {
        SegmentsConfig { count: 1024 }
    }
}

/// Limits on clients and backends.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyLimits {
    /// Largest bulk string a client may send.
    pub max_bulk_bytes: usize,
    /// Most arguments in one command.
    pub max_array_len: usize,
    /// Longest inline command.
    pub max_inline_bytes: usize,
    /// Replies buffered for one client before it is disconnected.
    pub client_output_buffer_bytes: usize,
    /// Milliseconds to wait for a backend connection.
    pub connect_timeout_ms: u64,
    /// Milliseconds a request may be held (segment in cutover, instance restarting) before
    /// it fails with a retryable error.
    pub hold_ms: u64,
    /// Milliseconds an instance has to answer a request once it is sent (blocking commands:
    /// their own timeout plus this). Past it the connection is given up: a read gets
    /// `TRYAGAIN`, a write an error saying its outcome is unknown.
    pub request_timeout_ms: u64,
    /// Milliseconds a client may take to accept a reply (or a subscriber a message) before
    /// it is disconnected.
    pub client_write_timeout_ms: u64,
    /// Client connections served at once; one more is answered with an error and closed.
    pub maxclients: usize,
    /// Milliseconds a shutdown (SIGTERM) waits for requests in flight to be answered.
    pub shutdown_grace_ms: u64,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        let resp = Limits::default();
        ProxyLimits {
            max_bulk_bytes: resp.max_bulk_bytes,
            max_array_len: resp.max_array_len,
            max_inline_bytes: resp.max_inline_bytes,
            client_output_buffer_bytes: 256 << 20,
            connect_timeout_ms: 1000,
            hold_ms: 5000,
            request_timeout_ms: 5000,
            client_write_timeout_ms: 60_000,
            maxclients: 10_000,
            shutdown_grace_ms: 5000,
        }
    }
}

impl ProxyLimits {
    /// The RESP limits for clients.
    pub fn resp(&self) -> Limits {
        Limits {
            max_bulk_bytes: self.max_bulk_bytes,
            max_array_len: self.max_array_len,
            max_inline_bytes: self.max_inline_bytes,
            ..Limits::default()
        }
    }
}

/// The controller's policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The component (world `planner` or `policy`).
    pub file: PathBuf,
    /// Its settings (TOML), if any.
    #[serde(default)]
    pub settings: Option<PathBuf>,
    /// Watch the file's directory and hot-swap the policy when the file changes.
    #[serde(default)]
    pub watch: bool,
}

/// A configuration error, naming the key and line.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    path: String,
    message: String,
}

impl Config {
    /// The async runtime of the controller, the executor and telemetry collection (the
    /// request path runs on its own event loops: [`Config::loops`]).
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("shardcast-control")
            .build()
    }

    /// Event loops serving clients: `threads`, or one per core when it is 0.
    pub fn loops(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Read and check a configuration file. Without `[migration] state_dir`, the state
    /// lives beside the file: [`Config::default_state_dir`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError {
            path: path.display().to_string(),
            message,
        })?;
        if config.migration.state_dir.is_none() {
            config.migration.state_dir = Some(Config::default_state_dir(path));
        }
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let files = config
            .instances
            .iter_mut()
            .map(|i| &mut i.password_file)
            .chain([
                &mut config.auth.requirepass_file,
                &mut config.instance_auth.password_file,
            ])
            .chain(config.admin.as_mut().map(|a| &mut a.token_file));
        for file in files.flatten() {
            if file.is_relative() {
                *file = dir.join(&*file);
            }
        }
        for file in config.tls_files() {
            if file.is_relative() {
                *file = dir.join(&*file);
            }
        }
        Ok(config)
    }

    /// Where the state of the configuration file at `path` lives when it names no
    /// `state_dir`: `<directory>/<stem>.state`.
    pub fn default_state_dir(path: &Path) -> PathBuf {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "shardcast".into());
        path.parent()
            .unwrap_or_else(|| Path::new("."))
            .join(format!("{stem}.state"))
    }

    /// Parse and check configuration text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        config.check(text)?;
        Ok(config)
    }

    fn check(&self, text: &str) -> Result<(), String> {
        let line = |span: std::ops::Range<usize>| {
            text[..span.start.min(text.len())].matches('\n').count() + 1
        };
        let addr = |key: &str, s: &Spanned<String>| {
            s.get_ref().parse::<SocketAddr>().map(|_| ()).map_err(|_| {
                format!(
                    "`{key}` at line {}: `{}` is not host:port (e.g. 127.0.0.1:6379)",
                    line(s.span()),
                    s.get_ref()
                )
            })
        };
        addr("listen", &self.listen)?;
        if let Some(admin) = &self.admin {
            admin.check()?;
        }
        if let Some(c) = &self.cluster {
            if c.etcd.is_empty() {
                return Err(
                    "`cluster.etcd`: name at least one etcd endpoint, e.g. [\"127.0.0.1:2379\"]"
                        .into(),
                );
            }
            if c.name.is_empty() || c.name.contains('/') {
                return Err(format!(
                    "`cluster.name`: `{}` is not a proxy name (non-empty, no `/`)",
                    c.name
                ));
            }
            if c.lease_ttl_s < 2 {
                return Err(format!(
                    "`cluster.lease_ttl_s` must be 2 or more (etcd's shortest lease), got {}",
                    c.lease_ttl_s
                ));
            }
            if self.sessions.repository.is_none() {
                return Err("`sessions.repository`: cluster mode keeps sessions in Redis so that a client reconnecting to another proxy finds them: name a Redis outside `[[instances]]` (e.g. \"redis://10.0.0.9:6379/\"), or \"memory\" to keep each proxy's sessions to itself".into());
            }
        }
        if let Some(url) = self
            .sessions
            .repository
            .as_deref()
            .filter(|r| *r != "memory")
        {
            let (host, port) = redis::Client::open(url)
                .map(|c| match c.get_connection_info().addr() {
                    redis::ConnectionAddr::Tcp(h, p)
                    | redis::ConnectionAddr::TcpTls {
                        host: h, port: p, ..
                    } => (h.clone(), *p),
                    _ => (String::new(), 0),
                })
                .map_err(|e| format!("`sessions.repository`: `{url}` is not a Redis URL: {e}"))?;
            let target = format!("{host}:{port}");
            if let Some(i) = self
                .instances
                .iter()
                .find(|i| *i.address.get_ref() == target)
            {
                return Err(format!(
                    "`sessions.repository`: `{url}` is instance `{}`: its keys would be served to clients and moved with the segments; use a Redis outside `[[instances]]`",
                    i.name.get_ref()
                ));
            }
        }
        if self.instances.is_empty() {
            return Err("`instances`: configure at least one instance".into());
        }
        let mut names = Vec::new();
        for (i, inst) in self.instances.iter().enumerate() {
            addr(&format!("instances[{i}].address"), &inst.address)?;
            if names.contains(inst.name.get_ref()) {
                return Err(format!(
                    "`instances[{i}].name` at line {}: duplicate name `{}`",
                    line(inst.name.span()),
                    inst.name.get_ref()
                ));
            }
            names.push(inst.name.get_ref().clone());
            if let Some(state) = &inst.state
                && !matches!(state.get_ref().as_str(), "active" | "standby")
            {
                return Err(format!(
                    "`instances[{i}].state` at line {}: `{}` is not `active` or `standby`",
                    line(state.span()),
                    state.get_ref()
                ));
            }
            if !(inst.capacity.is_finite() && inst.capacity > 0.0) {
                return Err(format!(
                    "`instances[{i}].capacity` must be a positive number"
                ));
            }
        }
        if self
            .instances
            .iter()
            .all(|i| i.state.as_ref().is_some_and(|s| s.get_ref() == "standby"))
        {
            return Err("`instances`: at least one instance must be active".into());
        }
        if self.segments.count == 0 || self.segments.count > 16_384 {
            return Err(format!(
                "`segments.count` must be between 1 and 16384, got {}",
                self.segments.count
            ));
        }
        if self.tick_ms == 0 {
            return Err("`tick_ms` must be positive".into());
        }
        for (key, value) in [
            ("limits.connect_timeout_ms", self.limits.connect_timeout_ms),
            ("limits.request_timeout_ms", self.limits.request_timeout_ms),
            (
                "limits.client_write_timeout_ms",
                self.limits.client_write_timeout_ms,
            ),
            ("limits.maxclients", self.limits.maxclients as u64),
            ("migration.io_timeout_ms", self.migration.io_timeout_ms),
            (
                "migration.cutover_timeout_ms",
                self.migration.cutover_timeout_ms,
            ),
        ] {
            if value == 0 {
                return Err(format!("`{key}` must be positive"));
            }
        }
        if let Some(inline) = &self.auth.requirepass {
            return Err(format!(
                "`auth.requirepass` at line {}: a password is never written in the \
                 configuration; put it in a file (`requirepass_file`) or an environment \
                 variable (`requirepass_env`)",
                line(inline.span())
            ));
        }
        Ok(())
    }

    /// The listen address (checked by `parse`).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .get_ref()
            .parse()
            .expect("checked when the config was parsed")
    }

    /// The instances as the policies see them.
    pub fn instances(&self) -> Vec<Instance> {
        self.instances
            .iter()
            .enumerate()
            .map(|(i, c)| Instance {
                id: i as u32,
                name: c.name.get_ref().clone(),
                address: c.address.get_ref().clone(),
                zone: c.zone.clone(),
                capacity: c.capacity,
                state: match c.state.as_ref().map(|s| s.get_ref().as_str()) {
                    Some("standby") => InstanceState::Standby,
                    _ => InstanceState::Active,
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:7380"

[[instances]]
name = "a"
address = "127.0.0.1:7001"

[[instances]]
name = "b"
address = "127.0.0.1:7002"
state = "standby"
"#;

    #[test]
    fn a_good_config_parses() {
        let c = Config::parse(GOOD).expect("valid");
        assert_eq!(c.instances().len(), 2);
        assert_eq!(c.instances()[1].state, InstanceState::Standby);
        assert_eq!(c.segments.count, 1024);
    }

    #[test]
    fn a_file_without_state_dir_keeps_its_state_beside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("edge.toml");
        std::fs::write(&path, GOOD).expect("write");
        let c = Config::load(&path).expect("valid");
        assert_eq!(c.migration.state_dir, Some(dir.path().join("edge.state")));
        let text = format!("{GOOD}\n[migration]\nstate_dir = \"/elsewhere\"\n");
        std::fs::write(&path, text).expect("write");
        let c = Config::load(&path).expect("valid");
        assert_eq!(c.migration.state_dir, Some(PathBuf::from("/elsewhere")));
    }

    #[test]
    fn cluster_mode_names_its_session_repository_and_it_is_no_instance() {
        let cluster = "\n[cluster]\netcd = [\"127.0.0.1:2379\"]\nname = \"p1\"\n";
        let err = Config::parse(&format!("{GOOD}{cluster}")).expect_err("no repository");
        assert!(
            err.contains("sessions.repository") && err.contains("memory"),
            "{err}"
        );
        let shared = "[sessions]\nrepository = \"redis://127.0.0.1:7009/\"\n";
        let c = Config::parse(&format!("{GOOD}{cluster}{shared}")).expect("valid");
        assert_eq!(c.sessions.repository(), "redis://127.0.0.1:7009/");
        let alone = "[sessions]\nrepository = \"memory\"\n";
        assert!(Config::parse(&format!("{GOOD}{cluster}{alone}")).is_ok());
        let instance = "[sessions]\nrepository = \"redis://127.0.0.1:7002/\"\n";
        let err = Config::parse(&format!("{GOOD}{instance}")).expect_err("an instance");
        assert!(err.contains("instance `b`"), "{err}");
        assert_eq!(
            Config::parse(GOOD).expect("valid").sessions.repository(),
            "memory"
        );
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let err =
            Config::parse(&GOOD.replace("127.0.0.1:7002", "nowhere")).expect_err("bad address");
        assert!(
            err.contains("instances[1].address") && err.contains("line 10"),
            "{err}"
        );
        let err = Config::parse(&GOOD.replace("state = \"standby\"", "state = \"sleepy\""))
            .expect_err("bad state");
        assert!(
            err.contains("instances[1].state") && err.contains("line 11"),
            "{err}"
        );
        let err =
            Config::parse(&GOOD.replace("name = \"b\"", "name = \"a\"")).expect_err("duplicate");
        assert!(err.contains("duplicate name"), "{err}");
        let err = Config::parse(&format!("{GOOD}\nbogus = 1\n")).expect_err("unknown key");
        assert!(err.contains("bogus") && err.contains("line"), "{err}");
        let err = Config::parse("listen = \n").expect_err("syntax");
        assert!(err.contains("line 1"), "{err}");
    }
}

//! Talking to the admin API from tests with an independent HTTP client (ureq), and a small
//! fleet for it: redis-server instances and `shardcast run` as a separate process with an
//! `[admin]` listener.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::servers::{RedisServer, ShardcastProcess, free_port, wait_for};

/// The admin API at `base`, with an optional bearer token.
#[derive(Clone)]
pub struct Http {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// Sent as `Authorization: Bearer` when set.
    pub token: Option<String>,
    agent: ureq::Agent,
}

/// A status and a body.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The content type.
    pub content_type: String,
    /// The body.
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics, naming the body, when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Http {
    /// A client of `base`.
    pub fn new(base: String, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        Http { base, token, agent }
    }

    fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut r = r.expect("the admin API answers");
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        Reply {
            status: r.status().as_u16(),
            content_type,
            body: r
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .expect("a body"),
        }
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Reply {
        let req = self.auth(self.agent.get(&format!("{}{path}", self.base)));
        Self::finish(req.call())
    }

    /// `GET path`, expecting 200 and JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.json()
    }

    /// `POST path` with `body` of `content_type`.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let req = self
            .auth(self.agent.post(&format!("{}{path}", self.base)))
            .header("Content-Type", content_type);
        Self::finish(req.send(body))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Reply {
        let req = self.auth(self.agent.delete(&format!("{}{path}", self.base)));
        Self::finish(req.call())
    }
}

/// Redis instances and one shardcast process with its admin listener.
pub struct AdminFleet {
    /// The instances.
    pub servers: Vec<RedisServer>,
    /// The process.
    pub process: ShardcastProcess,
    /// Its admin API.
    pub http: Http,
    /// Where its configuration and state live.
    pub dir: tempfile::TempDir,
    /// The configuration file.
    pub config: PathBuf,
}

impl AdminFleet {
    /// Start `instances` redis-servers and `shardcast run` (`program`) with `policy` (a
    /// component path) and its `settings`, `extra` TOML appended, and `[admin]` with
    /// `admin` lines.
    pub fn start(
        program: &[&str],
        instances: usize,
        policy: &str,
        settings: &str,
        extra: &str,
        admin: &str,
    ) -> Self {
        let servers: Vec<RedisServer> = (0..instances).map(|_| RedisServer::start()).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let admin_port = free_port();
        let settings_file = dir.path().join("policy.toml");
        std::fs::write(&settings_file, settings).expect("settings");
        let mut text = format!(
            "listen = \"127.0.0.1:{port}\"\ntick_ms = 100\n[segments]\ncount = 64\n[policy]\nfile = {policy:?}\nsettings = {:?}\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n{admin}\n",
            settings_file.display().to_string()
        );
        for (i, s) in servers.iter().enumerate() {
            text.push_str(&format!(
                "[[instances]]\nname = \"r{i}\"\naddress = \"{}\"\n",
                s.address()
            ));
        }
        text.push_str(extra);
        let config = dir.path().join("shardcast.toml");
        std::fs::write(&config, &text).expect("config");
        let log = dir.path().join("shardcast.log");
        let process = ShardcastProcess::start_logged(
            program,
            &config,
            port,
            &[("SHARDCAST_LOG", "info")],
            Some(&log),
        );
        let http = Http::new(format!("http://127.0.0.1:{admin_port}"), None);
        wait_for("the admin API", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
        });
        AdminFleet {
            servers,
            process,
            http,
            dir,
            config,
        }
    }

    /// A client of the proxy.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.process.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("a client of shardcast")
    }

    /// Poll `f` until it is true; past `deadline`, fail with the process's log.
    pub fn wait(&self, what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
        let until = std::time::Instant::now() + deadline;
        while !f() {
            if std::time::Instant::now() >= until {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "timed out waiting for {what}; the log's last lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("shardcast.log")).unwrap_or_default()
    }
}

/// The hash slot of `key`, as Redis Cluster computes it (CRC16-XMODEM of the key or its
/// `{hash tag}`, modulo 16384), written here independently of shardcast's own.
pub fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let close = bytes[open + 1..].iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &bytes[open + 1..open + 1 + close])
        })
        .unwrap_or(bytes);
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    #[test]
    fn slots_match_redis_cluster_examples() {
        // From the Redis Cluster specification: "123456789" has CRC16 0x31C3.
        assert_eq!(super::slot_of("123456789"), 0x31C3);
        // From the CLUSTER KEYSLOT documentation.
        assert_eq!(super::slot_of("somekey"), 11058);
        assert_eq!(super::slot_of("foo{hash_tag}"), 2515);
        assert_eq!(super::slot_of("bar{hash_tag}"), 2515);
    }
}

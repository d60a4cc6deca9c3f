//! The instance poller: `PING` round trip and `INFO` fields, once per interval, with
//! down and restart detection, and a sample of [`SAMPLES`] random keys (`RANDOMKEY`, with
//! each one's `MEMORY USAGE`) from which telemetry estimates each segment's keys and bytes.
//!
//! When an instance first answers, and whenever it comes back with a new `run_id`, the
//! poller also reads its `COMMAND` metadata and installs it as the proxy's command table,
//! so key positions and read/write flags are the servers' own.

use std::time::{Duration, Instant};

use bytes::Bytes;
use shardcast_sdk::types::{Failure, FailureKind};

use crate::proxy::backend::Backend;
use crate::proxy::command::{self, Table};
use crate::proxy::resp::Frame;

/// What the poller knows of one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    /// Answering.
    pub up: bool,
    /// Last PING round trip, µs (NaN when down).
    pub rtt_us: f64,
    /// `used_memory`.
    pub memory_bytes: f64,
    /// `connected_clients`.
    pub clients: f64,
    /// CPU use since the last poll, percent of one core.
    pub cpu_percent: f64,
    /// Keys in db0.
    pub keys: f64,
    /// `run_id`, to notice restarts.
    pub run_id: String,
    /// `uptime_in_seconds`.
    pub uptime_s: u64,
    /// `used_cpu_sys + used_cpu_user` at the last poll.
    pub cpu_s: f64,
    /// Random keys of database 0 from the last poll: each one's slot and bytes.
    pub samples: Vec<(u16, u64)>,
}

/// Keys sampled per instance per poll.
pub const SAMPLES: usize = 64;

impl Default for Health {
    fn default() -> Self {
        Health {
            up: true,
            rtt_us: f64::NAN,
            memory_bytes: f64::NAN,
            clients: f64::NAN,
            cpu_percent: f64::NAN,
            keys: f64::NAN,
            run_id: String::new(),
            uptime_s: 0,
            cpu_s: f64::NAN,
            samples: Vec::new(),
        }
    }
}

/// Read the command table from `conn` (`COMMAND`), within `limit`.
pub async fn read_commands(conn: &mut Backend, limit: Duration) -> std::io::Result<Table> {
    conn.queue(b"*1\r\n$7\r\nCOMMAND\r\n");
    conn.flush().await?;
    let reply = tokio::time::timeout(limit, conn.read_frame())
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "COMMAND timed out"))??;
    Table::from_reply(&reply).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The value of `field` in INFO text.
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// Parse INFO into `h`, computing CPU use against the previous sample `interval` ago.
pub fn apply_info(h: &mut Health, info: &str, interval: Duration) {
    let num = |f: &str| info_field(info, f).and_then(|v| v.parse::<f64>().ok());
    h.memory_bytes = num("used_memory").unwrap_or(f64::NAN);
    h.clients = num("connected_clients").unwrap_or(f64::NAN);
    let cpu = num("used_cpu_sys").unwrap_or(0.0) + num("used_cpu_user").unwrap_or(0.0);
    h.cpu_percent = if h.cpu_s.is_finite() {
        ((cpu - h.cpu_s) / interval.as_secs_f64() * 100.0).max(0.0)
    } else {
        f64::NAN
    };
    h.cpu_s = cpu;
    h.keys = info_field(info, "db0")
        .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("keys=")))
        .and_then(|k| k.parse().ok())
        .unwrap_or(0.0);
    h.run_id = info_field(info, "run_id").unwrap_or_default().to_owned();
    h.uptime_s = num("uptime_in_seconds").unwrap_or(0.0) as u64;
}

/// Polls one instance.
pub struct Poller {
    address: String,
    conn: Option<Backend>,
    /// The `run_id` whose `COMMAND` metadata was installed.
    commands_of: String,
    /// What is known.
    pub health: Health,
}

impl Poller {
    /// A poller for `address`.
    pub fn new(address: String) -> Self {
        Poller {
            address,
            conn: None,
            commands_of: String::new(),
            health: Health::default(),
        }
    }

    /// Poll once; returns failure-history entries for instance `id` (down, restart).
    pub async fn poll(&mut self, id: u32, interval: Duration, now_ms: u64) -> Vec<Failure> {
        let was = self.health.clone();
        let mut failures = Vec::new();
        match self.sample(interval).await {
            Ok(()) => {
                self.health.up = true;
                let restarted = (!was.run_id.is_empty() && was.run_id != self.health.run_id)
                    || (was.uptime_s > 0 && self.health.uptime_s < was.uptime_s);
                if restarted || !was.up {
                    failures.push(Failure {
                        instance: id,
                        kind: FailureKind::Restart,
                        at: now_ms,
                        detail: format!("{} is back (run_id {})", self.address, self.health.run_id),
                    });
                }
                if self.commands_of != self.health.run_id {
                    self.install_commands(interval).await;
                }
            }
            Err(e) => {
                self.conn = None;
                self.health.rtt_us = f64::NAN;
                if was.up {
                    failures.push(Failure {
                        instance: id,
                        kind: FailureKind::Crash,
                        at: now_ms,
                        detail: format!("{} stopped answering: {e}", self.address),
                    });
                }
                self.health.up = false;
            }
        }
        failures
    }

    /// Read this instance's `COMMAND` metadata and route by it; on failure keep the table
    /// as it is and try again at the next poll.
    async fn install_commands(&mut self, interval: Duration) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match read_commands(conn, interval).await {
            Ok(table) => {
                tracing::info!(
                    instance = %self.address,
                    commands = table.len(),
                    "command table read from the instance"
                );
                command::install(table);
                self.commands_of = self.health.run_id.clone();
            }
            Err(e) => {
                tracing::warn!(instance = %self.address, "COMMAND could not be read: {e}");
                self.conn = None;
            }
        }
    }

    async fn sample(&mut self, interval: Duration) -> std::io::Result<()> {
        if self.conn.is_none() {
            self.conn = Some(Backend::connect(&self.address, interval, interval).await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let started = Instant::now();
        conn.queue(b"*1\r\n$4\r\nPING\r\n");
        conn.flush().await?;
        tokio::time::timeout(interval, conn.read_raw())
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "PING timed out"))??;
        self.health.rtt_us = started.elapsed().as_secs_f64() * 1e6;
        conn.queue(b"*1\r\n$4\r\nINFO\r\n");
        conn.flush().await?;
        let info = match tokio::time::timeout(interval, conn.read_frame()).await {
            Ok(Ok(Frame::Bulk(Some(b)) | Frame::Verbatim(b))) => b,
            Ok(Ok(_)) => Bytes::new(),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "INFO timed out",
                ));
            }
        };
        apply_info(&mut self.health, &String::from_utf8_lossy(&info), interval);
        self.health.samples = Self::sample_keys(conn).await?;
        Ok(())
    }

    /// [`SAMPLES`] random keys and their sizes, in two pipelines.
    async fn sample_keys(conn: &mut Backend) -> std::io::Result<Vec<(u16, u64)>> {
        for _ in 0..SAMPLES {
            conn.queue(b"*1\r\n$9\r\nRANDOMKEY\r\n");
        }
        conn.flush().await?;
        let mut keys = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            if let Frame::Bulk(Some(k)) = conn.read_frame().await? {
                keys.push(k);
            }
        }
        for k in &keys {
            conn.queue(
                &crate::proxy::request::Request::from_args(vec![
                    Bytes::from_static(b"MEMORY"),
                    Bytes::from_static(b"USAGE"),
                    k.clone(),
                ])
                .raw,
            );
        }
        conn.flush().await?;
        let mut samples = Vec::with_capacity(keys.len());
        for k in &keys {
            let bytes = match conn.read_frame().await? {
                Frame::Integer(n) => n.max(0) as u64,
                _ => 0,
            };
            samples.push((crate::proxy::slot::slot(k), bytes));
        }
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_fields_and_cpu_use() {
        let info = "# Server\r\nrun_id:abc\r\nuptime_in_seconds:42\r\n# Memory\r\nused_memory:1024\r\nconnected_clients:3\r\nused_cpu_sys:1.0\r\nused_cpu_user:1.0\r\n# Keyspace\r\ndb0:keys=7,expires=0,avg_ttl=0\r\n";
        let mut h = Health::default();
        apply_info(&mut h, info, Duration::from_secs(1));
        assert_eq!(
            (h.memory_bytes, h.clients, h.keys, h.uptime_s),
            (1024.0, 3.0, 7.0, 42)
        );
        assert_eq!(h.run_id, "abc");
        assert!(h.cpu_percent.is_nan(), "no previous sample");
        let later = info.replace("used_cpu_user:1.0", "used_cpu_user:1.5");
        apply_info(&mut h, &later, Duration::from_secs(1));
        assert!((h.cpu_percent - 50.0).abs() < 1e-9);
    }
}

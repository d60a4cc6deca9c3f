//! A running `shardcast run` whose policy file an operator (the test) keeps replacing, under
//! client load: the fixture of the containment tests and of the hostile-policy soak.
//!
//! Three active instances and a standby, 64 segments, 100 ms ticks and a state directory.
//! The policy is a copy of a built component in the rig's own directory, with a settings
//! file beside it; [`HostileRig::swap`] writes the settings, then the component, as an
//! operator would. The process logs at INFO to a file, so that what a policy makes the host
//! write can be measured.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::load::{Load, LoadShape, LoadStats};
use crate::servers::{RedisServer, ShardcastProcess, free_port, wait_for};

/// Milliseconds between ticks.
pub const TICK_MS: u64 = 100;

/// One tick line of the decision log.
#[derive(Clone, Debug)]
pub struct TickLine {
    /// The tick number.
    pub tick: u64,
    /// When it was logged, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The whole line.
    pub value: serde_json::Value,
}

/// The fixture.
pub struct HostileRig {
    /// The instances; the last is standby.
    pub servers: Vec<RedisServer>,
    /// The proxy's port.
    pub port: u16,
    /// The state directory.
    pub state: PathBuf,
    /// The log (the process's stderr).
    pub log: PathBuf,
    /// The policy file the configuration names.
    pub policy: PathBuf,
    /// Its settings file.
    pub settings: PathBuf,
    process: ShardcastProcess,
    load: Option<Load>,
    _dir: tempfile::TempDir,
}

impl HostileRig {
    /// Start the instances and `program run` with `component` and `settings` as its policy
    /// (`watch` as given), then a client load through it.
    pub fn start(program: &[&str], component: &str, settings: &str, watch: bool) -> Self {
        let servers: Vec<RedisServer> = (0..4).map(|_| RedisServer::start()).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let policy = dir.path().join("policy.wasm");
        let settings_file = dir.path().join("policy.toml");
        std::fs::write(&settings_file, settings).expect("settings");
        std::fs::copy(component, &policy).expect("policy");
        let port = free_port();
        let mut text = format!(
            "listen = \"127.0.0.1:{port}\"\ntick_ms = {TICK_MS}\n[segments]\ncount = 64\n[migration]\nstate_dir = \"{}\"\n[policy]\nfile = \"{}\"\nsettings = \"{}\"\nwatch = {watch}\n",
            state.display(),
            policy.display(),
            settings_file.display()
        );
        for (i, s) in servers.iter().enumerate() {
            let standby = if i == servers.len() - 1 {
                "state = \"standby\"\n"
            } else {
                ""
            };
            text.push_str(&format!(
                "[[instances]]\nname = \"redis-{i}\"\naddress = \"{}\"\n{standby}",
                s.address()
            ));
        }
        let file = dir.path().join("shardcast.toml");
        std::fs::write(&file, text).expect("config");
        let log = dir.path().join("shardcast.log");
        let process = ShardcastProcess::start_logged(
            program,
            &file,
            port,
            &[("SHARDCAST_LOG", "info")],
            Some(&log),
        );
        let load = Load::start(
            port,
            LoadShape {
                threads: 2,
                rate_per_thread: 500,
                hot_share: 0.0,
                keys: 10_000,
                write_share: 0.5,
            },
        );
        let rig = HostileRig {
            servers,
            port,
            state,
            log,
            policy,
            settings: settings_file,
            process,
            load: Some(load),
            _dir: dir,
        };
        rig.wait_for_ticks(3);
        rig
    }

    /// Replace the policy: its settings first, then the component.
    pub fn swap(&self, component: &str, settings: &str) {
        std::fs::write(&self.settings, settings).expect("settings");
        let bytes = std::fs::read(component).expect("component");
        std::fs::write(&self.policy, bytes).expect("policy");
    }

    /// The running process.
    pub fn process(&mut self) -> &mut ShardcastProcess {
        &mut self.process
    }

    /// The decision log's tick lines, oldest first (the rotated log included).
    pub fn ticks(&self) -> Vec<TickLine> {
        let mut lines = Vec::new();
        for name in ["decisions.jsonl.1", "decisions.jsonl"] {
            let Ok(text) = std::fs::read_to_string(self.state.join(name)) else {
                continue;
            };
            for l in text.lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                    continue;
                };
                if v["kind"] == "tick" {
                    lines.push(TickLine {
                        tick: v["tick"].as_u64().unwrap_or(0),
                        at_ms: v["at_ms"].as_u64().unwrap_or(0),
                        value: v,
                    });
                }
            }
        }
        lines
    }

    /// The decision log's lines of `kind` (e.g. `applied`).
    pub fn decisions(&self, kind: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.state.join("decisions.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == kind)
            .collect()
    }

    /// The last tick number logged.
    pub fn last_tick(&self) -> u64 {
        self.ticks().last().map(|t| t.tick).unwrap_or(0)
    }

    /// Wait for `n` more ticks to be logged.
    pub fn wait_for_ticks(&self, n: u64) {
        let from = self.last_tick();
        wait_for(
            &format!("{n} more ticks after tick {from}"),
            Duration::from_secs(30),
            || self.last_tick() >= from + n,
        );
    }

    /// Wait until a tick line satisfies `f`.
    pub fn wait_for_tick(&self, what: &str, f: impl Fn(&TickLine) -> bool) -> TickLine {
        let mut found = None;
        wait_for(what, Duration::from_secs(90), || {
            found = self.ticks().into_iter().rev().find(|t| f(t));
            found.is_some()
        });
        found.expect("found above")
    }

    /// The log as written so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Bytes in the log so far.
    pub fn log_bytes(&self) -> u64 {
        file_len(&self.log)
    }

    /// Bytes in the decision log so far (the rotated part included).
    pub fn decision_bytes(&self) -> u64 {
        file_len(&self.state.join("decisions.jsonl"))
            + file_len(&self.state.join("decisions.jsonl.1"))
    }

    /// Wait until the log holds `needle` `times` times or more.
    pub fn wait_for_log(&self, needle: &str, times: usize) {
        wait_for(
            &format!("{times} log lines with {needle:?}"),
            Duration::from_secs(90),
            || self.log_text().matches(needle).count() >= times,
        );
    }

    /// What the client load has seen so far.
    pub fn load(&self) -> &LoadStats {
        &self.load.as_ref().expect("the load runs").stats
    }

    /// Stop the client load; what it saw.
    pub fn stop_load(&mut self) -> std::sync::Arc<LoadStats> {
        self.load.take().expect("the load is stopped once").stop()
    }
}

impl Drop for HostileRig {
    fn drop(&mut self) {
        if let Some(load) = self.load.take() {
            load.stop();
        }
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Ticks missed among `ticks`: for each gap longer than one and a half intervals, the
/// intervals it spans past the first.
pub fn ticks_missed(ticks: &[TickLine]) -> u64 {
    ticks
        .windows(2)
        .map(|w| w[1].at_ms.saturating_sub(w[0].at_ms))
        .filter(|gap| *gap * 2 > TICK_MS * 3)
        .map(|gap| (gap / TICK_MS).saturating_sub(1).max(1))
        .sum()
}

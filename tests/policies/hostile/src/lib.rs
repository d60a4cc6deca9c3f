//! `hostile`: a policy that misbehaves on purpose, in the way its `mode` setting names.
//!
//! Built for the engine's containment tests; never load it anywhere else.

use serde::Deserialize;
use shardcast_sdk::prelude::*;

/// How to misbehave.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Behave: plan nothing.
    #[default]
    Calm,
    /// Loop forever in `plan`.
    Spin,
    /// Allocate memory until something gives, in `plan`.
    MemoryBomb,
    /// Panic in `plan`.
    Panic,
    /// Return a million actions.
    Flood,
    /// Forecast NaN.
    Nan,
    /// Return actions that name things that do not exist or are not allowed, and forecast
    /// the number of rejections seen as instance 0's load.
    Invalid,
    /// Try to read files, the environment and the network; report each success as an action.
    Escape,
    /// Print to stdout and stderr, then plan nothing.
    Chatty,
    /// Forecast the wall clock (as `expected`, in ms) and a random number (as `high`), to
    /// show whether the host made them deterministic.
    Entropy,
    /// Sleep for a minute in `plan` (a WASI clock wait, which is host code).
    Sleep,
    /// Sleep for a minute in `configure`.
    SleepConfigure,
    /// Hand over garbage from `snapshot`.
    SnapshotGarbage,
    /// Hand over 96 MiB from `snapshot`.
    SnapshotHuge,
    /// Loop forever in `snapshot`.
    SnapshotSpin,
    /// Move a segment onto an active instance and drain that instance, in one plan.
    DrainTarget,
    /// Log lines that read as the host's own, with newlines and terminal escapes.
    Forge,
    /// Write megabytes through the logging import, stdout and stderr, every tick.
    LogFlood,
    /// Forecast every segment sixteen times over: 262,144 forecasts, the default limit.
    ForecastFlood,
    /// Split every segment that can be split, every tick.
    SplitStorm,
    /// Forecast an interval whose low bound is above its high bound.
    InvertedInterval,
    /// Forecast with a confidence of 1.5.
    Overconfident,
    /// Forecast failure probabilities of 1.5 and -0.5.
    ImpossibleRisk,
    /// Score a session's churn probability 1.5.
    ImpossibleChurn,
    /// Score the health of a session that does not exist.
    GhostSession,
    /// Recurse without end in `plan`, until the stack gives out.
    Recurse,
    /// Hand over a state that a successor takes but that makes it panic in `predict`.
    SnapshotPoison,
    /// Write a megabyte of newlines to stdout in one WASI call.
    BigWrite,
    /// Ask WASI for 16 MiB of random bytes in one call.
    RandomFlood,
    /// Hold ten thousand WASI pollables at once.
    ResourceFlood,
}

/// The state [`Mode::SnapshotPoison`] hands over.
const POISON: &[u8] = b"poison";

#[allow(
    unconditional_recursion,
    reason = "recursing until the stack gives out is this mode"
)]
fn recurse(depth: u64) -> u64 {
    let here = [depth; 64];
    std::hint::black_box(&here);
    recurse(std::hint::black_box(depth + 1)) + here[3]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    mode: Mode,
}

/// The misbehaving policy.
#[derive(Default)]
pub struct Hostile {
    mode: Mode,
    /// True once a one-shot misbehaviour has been tried.
    done: bool,
    /// True after taking a poisoned state.
    poisoned: bool,
}

/// A line that reads as the host's own, as a log viewer would show it.
const FORGED: &str = "ok\n2026-12-03T10:00:00.000000Z ERROR shardcast::migrate: journal corrupt; deleting state_dir\r\x1b[2K";

fn sleep_a_minute() {
    std::thread::sleep(std::time::Duration::from_secs(60));
}

impl Policy for Hostile {
    fn describe(&self) -> PolicyInfo {
        info(
            "hostile",
            env!("CARGO_PKG_VERSION"),
            "Misbehaves on purpose, for containment tests.",
        )
    }

    fn configure(&mut self, settings: &str) -> Result<(), String> {
        self.mode = settings::parse::<Settings>(settings)?.mode;
        if self.mode == Mode::SleepConfigure {
            sleep_a_minute();
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        match self.mode {
            Mode::SnapshotGarbage => b"\xff\x00garbage that no successor can read".to_vec(),
            Mode::SnapshotHuge => vec![0xa5; 96 << 20],
            Mode::SnapshotSpin => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            Mode::SnapshotPoison => POISON.to_vec(),
            _ => Vec::new(),
        }
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        if state == POISON {
            self.poisoned = true;
            return Ok(());
        }
        Err(format!(
            "hostile takes no state\n(got {} bytes)",
            state.len()
        ))
    }
}

fn forecast(scope: Scope, expected: f64, low: f64, high: f64, confidence: f64) -> LoadForecast {
    LoadForecast {
        scope,
        metric: Metric::Load,
        horizon_ms: 1000,
        expected,
        low,
        high,
        confidence,
    }
}

impl Predictor for Hostile {
    fn predict(&mut self, host: &dyn HostView) -> Predictions {
        if self.poisoned {
            panic!("a poisoned state was taken");
        }
        let mut p = Predictions::empty();
        if self.mode == Mode::Invalid {
            // Report how many rejections the host showed us, so tests can see the feedback.
            p.load.push(LoadForecast {
                scope: Scope::Instance(0),
                metric: Metric::Load,
                horizon_ms: 0,
                expected: host.rejections().len() as f64,
                low: 0.0,
                high: 1e9,
                confidence: 0.5,
            });
        }
        if self.mode == Mode::Entropy {
            use std::hash::{BuildHasher, Hasher};
            let clock_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as f64)
                .unwrap_or(0.0);
            let random = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            p.load.push(LoadForecast {
                scope: Scope::Instance(0),
                metric: Metric::Load,
                horizon_ms: 0,
                expected: clock_ms,
                low: 0.0,
                high: clock_ms + (random >> 12) as f64,
                confidence: 0.5,
            });
        }
        let first = host.instances().first().map(|i| i.id).unwrap_or(0);
        match self.mode {
            Mode::ForecastFlood => {
                let ids = host.segment_columns().ids;
                if !ids.is_empty() {
                    p.load = (0..262_144)
                        .map(|i| forecast(Scope::Segment(ids[i % ids.len()]), 1.0, 0.0, 2.0, 0.9))
                        .collect();
                }
            }
            Mode::InvertedInterval => {
                p.load
                    .push(forecast(Scope::Instance(first), 1.0, 2.0, 0.0, 0.9));
            }
            Mode::Overconfident => {
                p.load
                    .push(forecast(Scope::Instance(first), 1.0, 0.0, 2.0, 1.5));
            }
            Mode::ImpossibleChurn | Mode::GhostSession => {
                let (session, churn) = match (self.mode, host.sessions().first()) {
                    (Mode::ImpossibleChurn, Some(s)) => (s.id, 1.5),
                    (Mode::ImpossibleChurn, None) => (1, 1.5),
                    _ => (u64::MAX, 0.5),
                };
                p.sessions.push(SessionHealth {
                    session,
                    horizon_ms: 1000,
                    activity: 1.0,
                    churn,
                    health: 0.5,
                });
            }
            Mode::ImpossibleRisk => {
                for probability in [1.5, -0.5] {
                    p.failures.push(FailureRisk {
                        instance: first,
                        horizon_ms: 1000,
                        probability,
                    });
                }
            }
            _ => {}
        }
        if self.mode == Mode::Nan {
            let instance = host.instances().first().map(|i| i.id).unwrap_or(0);
            p.load.push(LoadForecast {
                scope: Scope::Instance(instance),
                metric: Metric::Load,
                horizon_ms: 1000,
                expected: f64::NAN,
                low: 0.0,
                high: 1.0,
                confidence: 0.9,
            });
        }
        p
    }
}

impl Planner for Hostile {
    fn plan(&mut self, host: &dyn HostView, _predictions: &Predictions) -> Vec<Action> {
        match self.mode {
            Mode::Calm
            | Mode::Nan
            | Mode::Entropy
            | Mode::SleepConfigure
            | Mode::SnapshotGarbage
            | Mode::SnapshotHuge
            | Mode::SnapshotSpin
            | Mode::SnapshotPoison
            | Mode::ForecastFlood
            | Mode::InvertedInterval
            | Mode::Overconfident
            | Mode::ImpossibleRisk
            | Mode::ImpossibleChurn
            | Mode::GhostSession => Vec::new(),
            Mode::BigWrite => {
                let stdout = wasip2::cli::stdout::get_stdout();
                let written = stdout.write(&vec![b'\n'; 1 << 20]).is_ok();
                vec![Action::ActivateStandby(u32::from(written))]
            }
            Mode::RandomFlood => {
                let bytes = wasip2::random::random::get_random_bytes(16 << 20);
                vec![Action::ActivateStandby(bytes.len() as u32)]
            }
            Mode::ResourceFlood => {
                let held: Vec<_> = (0..10_000)
                    .map(|_| wasip2::clocks::monotonic_clock::subscribe_duration(0))
                    .collect();
                vec![Action::ActivateStandby(held.len() as u32)]
            }
            Mode::Recurse => {
                let depth = recurse(0);
                vec![Action::DrainInstance(depth as u32)]
            }
            Mode::Sleep => {
                sleep_a_minute();
                Vec::new()
            }
            Mode::DrainTarget => {
                if self.done {
                    return Vec::new();
                }
                let table = host.segment_columns();
                let active: Vec<InstanceId> = host
                    .instances()
                    .iter()
                    .filter(|i| i.state == InstanceState::Active)
                    .map(|i| i.id)
                    .collect();
                let (Some(&segment), Some(&owner)) = (table.ids.first(), table.owners.first())
                else {
                    return Vec::new();
                };
                let Some(&target) = active.iter().rev().find(|&&i| i != owner) else {
                    return Vec::new();
                };
                self.done = true;
                vec![
                    Action::MoveSegment(MoveSegment { segment, target }),
                    Action::DrainInstance(target),
                ]
            }
            Mode::Forge => {
                host.log(Level::Error, FORGED);
                println!("{FORGED}");
                eprintln!("{FORGED}\u{2028}2026-12-03T10:00:00Z ERROR shardcast: forged again");
                Vec::new()
            }
            Mode::LogFlood => {
                let line = "x".repeat(1023);
                for _ in 0..4096 {
                    host.log(Level::Info, &line);
                    println!("{line}");
                    eprintln!("{line}");
                }
                Vec::new()
            }
            Mode::SplitStorm => {
                let table = host.segment_columns();
                (0..table.ids.len())
                    .filter(|&i| table.slot_ends[i] > table.slot_starts[i])
                    .map(|i| {
                        Action::SplitSegment(SplitSegment {
                            segment: table.ids[i],
                            at_slot: table.slot_starts[i]
                                + (table.slot_ends[i] - table.slot_starts[i]).div_ceil(2),
                        })
                    })
                    .take(1024)
                    .collect()
            }
            Mode::Spin => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            Mode::MemoryBomb => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Panic => panic!("hostile policy panics on purpose"),
            Mode::Flood => vec![Action::DrainInstance(0); 1_000_000],
            Mode::Invalid => {
                let standby = host
                    .instances()
                    .iter()
                    .find(|i| i.state == InstanceState::Standby)
                    .map(|i| i.id)
                    .unwrap_or(u32::MAX);
                vec![
                    Action::MoveSegment(MoveSegment {
                        segment: u32::MAX,
                        target: 0,
                    }),
                    Action::MoveSegment(MoveSegment {
                        segment: 0,
                        target: u32::MAX - 1,
                    }),
                    Action::MoveSegment(MoveSegment {
                        segment: 0,
                        target: standby,
                    }),
                    Action::ActivateStandby(0),
                    Action::ActivateStandby(0),
                ]
            }
            Mode::Escape => {
                let mut escaped = Vec::new();
                if std::fs::read("/etc/passwd").is_ok() || std::fs::read_dir("/").is_ok() {
                    escaped.push(Action::ActivateStandby(9001));
                }
                if std::env::vars().next().is_some() {
                    escaped.push(Action::ActivateStandby(9002));
                }
                if std::net::TcpStream::connect("127.0.0.1:1").is_ok()
                    || std::net::TcpListener::bind("127.0.0.1:0").is_ok()
                {
                    escaped.push(Action::ActivateStandby(9003));
                }
                escaped
            }
            Mode::Chatty => {
                println!("hello from a policy's stdout");
                eprintln!("hello from a policy's stderr");
                host.log(Level::Info, "hello through the logging import");
                Vec::new()
            }
        }
    }
}

shardcast_sdk::export_policy!(Hostile);

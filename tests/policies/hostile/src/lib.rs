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
        Ok(())
    }
}

impl Predictor for Hostile {
    fn predict(&mut self, host: &dyn HostView) -> Predictions {
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
            Mode::Calm | Mode::Nan | Mode::Entropy => Vec::new(),
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

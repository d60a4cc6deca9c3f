//! Command-line glue: parses arguments, calls into the library and renders the answer as
//! text. `main.rs` only prints it and maps errors to a non-zero exit.

mod policy_bench;
mod policy_check;
pub mod sim;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// shardcast: a Redis-protocol sharding proxy whose placement policies are sandboxed
/// WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "shardcast", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the proxy and the controller.
    Run {
        /// The configuration file.
        #[arg(long, default_value = "shardcast.toml")]
        config: PathBuf,
    },
    /// Work with policy components.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run a scenario in the simulator against a compiled policy, or compare policies
    /// over a directory of scenarios.
    Sim {
        /// The scenario (TOML).
        #[arg(long, required_unless_present = "compare")]
        scenario: Option<PathBuf>,
        /// The policy component (world `planner` or `policy`).
        #[arg(long, required_unless_present = "compare")]
        policy: Option<PathBuf>,
        /// Settings TOML for the policy.
        #[arg(long)]
        settings: Option<PathBuf>,
        /// Write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the chart (per-instance load, migrations, failures) as SVG here.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Compare these policies (names or .wasm paths, comma-separated).
        #[arg(long, value_delimiter = ',', requires = "scenarios")]
        compare: Vec<String>,
        /// Directory of scenarios for --compare.
        #[arg(long)]
        scenarios: Option<PathBuf>,
        /// Where --compare finds policies given by name.
        #[arg(long, default_value = "target/wasm32-wasip2/release")]
        policy_dir: PathBuf,
        /// Write one chart per run here, with --compare.
        #[arg(long)]
        svg_dir: Option<PathBuf>,
        /// Record the run's history (per-tick instance metrics and failures) here, in the
        /// format `shardcast run` writes with `[history] file` and `shardcast train` reads.
        #[arg(long, conflicts_with = "compare")]
        history: Option<PathBuf>,
    },
    /// Fit the failure model's weights on recorded history; prints precision, recall and
    /// lead time on held-out instance series, and writes the settings.
    Train {
        /// A history file (`[history] file` of `shardcast run`, or `shardcast sim
        /// --history`); repeat for several.
        #[arg(long, required = true)]
        history: Vec<PathBuf>,
        /// Where to write the settings.
        #[arg(long)]
        out: PathBuf,
        /// Seconds ahead a failure counts for a point.
        #[arg(long, default_value_t = 300)]
        horizon_s: u64,
        /// Share of the instance series held out for evaluation.
        #[arg(long, default_value_t = 0.3)]
        holdout: f64,
        /// Write settings for `failure-guard` (top level) instead of a `[failure]` table
        /// for `predictive`.
        #[arg(long)]
        plain: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Load, type-check and configure a policy, run it once on a synthetic view, and print
    /// what it is. Exits non-zero naming the problem when anything is wrong.
    Check {
        /// The component (`.wasm`, built for wasm32-wasip2).
        file: PathBuf,
        /// Settings TOML; a `[limits]` table in it sets the policy's limits.
        #[arg(long)]
        settings: Option<PathBuf>,
    },
    /// Time one tick (predict + plan) on a synthetic view, in wasm and, for the shipped
    /// policies, natively.
    Bench {
        /// The component.
        file: PathBuf,
        /// Settings TOML.
        #[arg(long)]
        settings: Option<PathBuf>,
        /// Segments in the view.
        #[arg(long, default_value_t = 16_384)]
        segments: usize,
        /// Instances in the view.
        #[arg(long, default_value_t = 64)]
        instances: usize,
        /// Segment metrics in the view.
        #[arg(long, default_value_t = 8)]
        metrics: usize,
        /// Points per series.
        #[arg(long, default_value_t = 60)]
        points: usize,
        /// Ticks to time (after a warm-up of a tenth as many).
        #[arg(long, default_value_t = 200)]
        ticks: u32,
        /// Client sessions in the view, each with a commands-per-second series.
        #[arg(long, default_value_t = 1_000)]
        sessions: usize,
    },
}

/// The whole `shardcast` program: logging to stderr (filter in `SHARDCAST_LOG`, default
/// `warn`), arguments, the command's output, and the exit code.
pub fn main() -> std::process::ExitCode {
    main_with(std::env::args())
}

/// [`main`] with the given arguments (the first is the program name).
pub fn main_with(args: impl IntoIterator<Item = String>) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHARDCAST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = <Cli as clap::Parser>::parse_from(args);
    match run(args) {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Run a parsed command line; returns what to print.
pub fn run(cli: Cli) -> Result<String> {
    match cli.command {
        Command::Run { config } => {
            let config = crate::config::Config::load(&config)?;
            let runtime = config.runtime().context("cannot start the async runtime")?;
            runtime.block_on(crate::run::run(config, shutdown_signal()))?;
            Ok(String::new())
        }
        Command::Sim {
            scenario,
            policy,
            settings,
            json,
            svg,
            compare,
            scenarios,
            policy_dir,
            svg_dir,
            history,
        } => {
            let settings = read_settings(settings.as_ref())?;
            sim::run_cli(&sim::Options {
                scenario,
                policy,
                settings,
                json,
                svg,
                compare,
                scenarios,
                policy_dir,
                svg_dir,
                history,
            })
        }
        Command::Train {
            history,
            out,
            horizon_s,
            holdout,
            plain,
        } => crate::train::run_cli(&crate::train::Options {
            histories: history,
            out,
            horizon_s,
            holdout,
            plain,
        }),
        Command::Policy(PolicyCommand::Check { file, settings }) => {
            let settings = read_settings(settings.as_ref())?;
            policy_check::run(&file, &settings)
        }
        Command::Policy(PolicyCommand::Bench {
            file,
            settings,
            segments,
            instances,
            metrics,
            points,
            ticks,
            sessions,
        }) => {
            let settings = read_settings(settings.as_ref())?;
            policy_bench::run(&policy_bench::Options {
                file,
                settings,
                segments,
                instances,
                metrics,
                points,
                ticks,
                sessions,
            })
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn read_settings(path: Option<&PathBuf>) -> Result<String> {
    match path {
        None => Ok(String::new()),
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read settings file {}", p.display())),
    }
}

/// Read a component file with an error naming it.
fn read_component(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read policy file {}", path.display()))
}

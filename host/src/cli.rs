//! Command-line glue: parses arguments, calls into the library and renders the answer as
//! text. `main.rs` only prints it and maps errors to a non-zero exit.

mod dev;
mod operate;
mod policy_bench;
mod policy_check;
mod scaffold;
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
    /// Log lines as human-readable text, or as JSON lines for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The admin API of a running shardcast (operator commands); else SHARDCAST_ADMIN,
    /// else http://127.0.0.1:7470.
    #[arg(long, global = true)]
    admin: Option<String>,
    /// A file holding the admin API's bearer token; else SHARDCAST_TOKEN, if set.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
}

/// How an operator command prints its answer.
#[derive(Clone, Copy, Debug, clap::Args)]
struct Output {
    /// Print the admin API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, with every field.
    Json,
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
    /// A running shardcast's status: instances, table, policy (admin API).
    Status {
        #[command(flatten)]
        out: Output,
    },
    /// The segment table: slots, owners, load (admin API).
    Segments {
        #[command(flatten)]
        out: Output,
    },
    /// Migrations running and recently ended (admin API).
    Migrations {
        /// Follow the running migrations with a progress bar each until none runs.
        #[arg(long)]
        watch: bool,
        /// Cancel this migration (before its cutover).
        #[arg(long)]
        cancel: Option<u64>,
        #[command(flatten)]
        out: Output,
    },
    /// Client sessions and their state partitions (admin API).
    Sessions {
        #[command(flatten)]
        out: Output,
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
    /// Upload a version to a running shardcast and activate it (admin API).
    Push {
        /// The component.
        file: PathBuf,
        /// Settings TOML.
        #[arg(long)]
        settings: Option<PathBuf>,
        /// Start it with fresh state, without asking the running version for its state.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Return to the previous version (admin API).
    Rollback {
        #[command(flatten)]
        out: Output,
    },
    /// Run a version in shadow beside the active one, or stop the shadow (admin API).
    Shadow {
        /// The candidate's component.
        #[arg(required_unless_present = "stop")]
        file: Option<PathBuf>,
        /// Settings TOML.
        #[arg(long)]
        settings: Option<PathBuf>,
        /// Stop the shadow candidate.
        #[arg(long, conflicts_with = "file")]
        stop: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Compare two versions: by default the active one and the shadow candidate (admin API).
    Diff {
        /// A version id (default: the active version).
        a: Option<String>,
        /// Another (default: the shadow candidate, else the previous version).
        b: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// The versions a running shardcast knows (admin API).
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Make a policy crate that builds to a component and passes its tests as it is.
    New {
        /// The policy's name (lowercase, `-` between words), also its crate's.
        name: String,
        /// What it implements.
        #[arg(long, value_enum, default_value_t = scaffold::WorldKind::Planner)]
        world: scaffold::WorldKind,
        /// Where to make it (default: ./<name>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK's directory (default: this checkout's guest-sdk).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Rebuild a policy crate on every change, re-run its scenarios and print the figures
    /// against the last run's; with --push, send each good build to a running shardcast.
    Dev {
        /// The policy crate's directory.
        dir: PathBuf,
        /// Settings TOML (default: the crate's settings.toml).
        #[arg(long)]
        settings: Option<PathBuf>,
        /// Push each good build to this admin API (shadow mode unless --activate).
        #[arg(long)]
        push: Option<String>,
        /// Activate pushed builds instead of shadowing them.
        #[arg(long, requires = "push")]
        activate: bool,
        /// One round, then exit.
        #[arg(long)]
        once: bool,
    },
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
    let args = <Cli as clap::Parser>::parse_from(args);
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHARDCAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
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

/// The admin API client the global options name.
fn client(cli: &Cli) -> Result<crate::admin::client::Client> {
    let url = cli
        .admin
        .clone()
        .or_else(|| std::env::var("SHARDCAST_ADMIN").ok())
        .unwrap_or_else(|| format!("http://{}", crate::config::DEFAULT_ADMIN_LISTEN));
    let token = match &cli.token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the token file {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("SHARDCAST_TOKEN").ok(),
    };
    crate::admin::client::Client::new(&url, token)
}

/// Run a parsed command line; returns what to print.
pub fn run(cli: Cli) -> Result<String> {
    match &cli.command {
        Command::Status { out } => return operate::status(&client(&cli)?, out.json),
        Command::Segments { out } => return operate::segments(&client(&cli)?, out.json),
        Command::Migrations { watch, cancel, out } => {
            return operate::migrations(&client(&cli)?, out.json, *watch, *cancel);
        }
        Command::Sessions { out } => return operate::sessions(&client(&cli)?, out.json),
        Command::Policy(PolicyCommand::Push {
            file,
            settings,
            force,
            out,
        }) => {
            return operate::push(&client(&cli)?, file, settings.as_ref(), *force, out.json);
        }
        Command::Policy(PolicyCommand::Rollback { out }) => {
            return operate::rollback(&client(&cli)?, out.json);
        }
        Command::Policy(PolicyCommand::Shadow {
            file,
            settings,
            stop,
            out,
        }) => {
            return operate::shadow(
                &client(&cli)?,
                file.as_ref(),
                settings.as_ref(),
                *stop,
                out.json,
            );
        }
        Command::Policy(PolicyCommand::Diff { a, b, out }) => {
            return operate::diff(&client(&cli)?, a.clone(), b.clone(), out.json);
        }
        Command::Policy(PolicyCommand::List { out }) => {
            return operate::list(&client(&cli)?, out.json);
        }
        Command::Policy(PolicyCommand::New {
            name,
            world,
            dir,
            sdk,
        }) => {
            return scaffold::run(&scaffold::Options {
                name: name.clone(),
                world: *world,
                dir: dir.clone(),
                sdk: sdk.clone(),
            });
        }
        Command::Policy(PolicyCommand::Dev {
            dir,
            settings,
            push,
            activate,
            once,
        }) => {
            let token = client(&cli)?;
            let push = match push {
                Some(url) => Some(token.with_address(url)?),
                None => None,
            };
            return dev::run(&dev::Options {
                dir: dir.clone(),
                settings: settings.clone(),
                push,
                activate: *activate,
                once: *once,
            });
        }
        _ => {}
    }
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
        _ => unreachable!("operator commands are answered above"),
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_commands_own_json_file_and_an_operator_commands_json_flag_both_parse() {
        let sim = [
            "shardcast",
            "sim",
            "--scenario",
            "s.toml",
            "--policy",
            "p.wasm",
        ];
        assert!(Cli::try_parse_from(sim.iter().chain(&["--json", "r.json"])).is_ok());
        assert!(Cli::try_parse_from(["shardcast", "status", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["shardcast", "policy", "list", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["shardcast", "--log-format", "json", "status"]).is_ok());
    }
}

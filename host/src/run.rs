//! `shardcast run`: the proxy and the controller of one process.
//!
//! Until live migration lands, the controller runs the configured policy every tick over
//! the live view (topology plus telemetry) and logs its decisions without executing them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use shardcast_sdk::view::ViewSnapshot;

use crate::cluster::Store;
use crate::cluster::link::Link;
use crate::cluster::node::Node;
use crate::cluster::policy::PolicySync;
use crate::config::Config;
use crate::engine::tick_loop::TickLoop;
use crate::engine::watch::{Binding, PolicyWatcher};
use crate::engine::{PolicyEngine, Runtime, RuntimeOptions};
use crate::migrate::{Executor, StatePaths};
use crate::proxy::gate::Gate;
use crate::proxy::loops::{Common, Loops};
use crate::sessions::registry::Registry;
use crate::sessions::repository::{InProcess, InRedis, SessionRepository};
use crate::telemetry::Telemetry;
use crate::telemetry::poller::Poller;
use crate::topology::{SegmentTable, Topology};

/// Errors that stop `run` from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The session repository could not be reached.
    #[error("{0}")]
    Sessions(String),
    /// The migration state could not be used.
    #[error("{0}")]
    Migration(crate::migrate::Error),
    /// The history file could not be opened.
    #[error("history: {0}")]
    History(String),
    /// The users could not be set up (a secret's file or variable is missing).
    #[error("{0}")]
    Auth(String),
    /// TLS could not be set up (a certificate or key file is missing or unusable).
    #[error("{0}")]
    Tls(String),
    /// The admin listener's address or token is unusable.
    #[error("{0}")]
    Admin(String),
    /// etcd could not be reached at start.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The policy could not be loaded.
    #[error("policy {file}: {message}")]
    Policy {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
}

/// The topology a configuration describes.
///
/// With a state directory, the table saved there (by earlier runs' migrations) wins over the
/// configured layout; a new one is saved on first start.
pub fn topology(config: &Config) -> Result<Arc<Topology>, Error> {
    let instances = config.instances();
    let active: Vec<u32> = instances
        .iter()
        .filter(|i| i.state == shardcast_sdk::types::InstanceState::Active)
        .map(|i| i.id)
        .collect();
    let configured = || SegmentTable::uniform(config.segments.count as usize, &active);
    let saved = match &config.cluster {
        // Cluster mode: the table is etcd's; the configured one only seeds it.
        Some(_) => None,
        None => StatePaths::of(&config.migration).map_err(Error::Migration)?,
    };
    let table = match saved {
        Some(paths) => {
            let fail = |message: String| {
                Error::Migration(crate::migrate::Error::State {
                    path: paths.table.display().to_string(),
                    message,
                })
            };
            match SegmentTable::load(&paths.table, &instances).map_err(|e| fail(e.to_string()))? {
                Some(saved) => saved,
                None => {
                    let t = configured();
                    t.save(&paths.table, &instances)
                        .map_err(|e| fail(e.to_string()))?;
                    t
                }
            }
        }
        None => configured(),
    };
    Ok(Arc::new(Topology::new(instances, table)))
}

/// Everything one shardcast process shares, built from its configuration. Tests and the
/// demo keep these to watch the process from outside.
#[derive(Clone)]
pub struct Parts {
    /// Instances and the segment table.
    pub topology: Arc<Topology>,
    /// Metrics.
    pub telemetry: Arc<Telemetry>,
    /// Sessions.
    pub registry: Arc<Registry>,
    /// Holding and dirty-key tracking.
    pub gate: Arc<Gate>,
    /// The executor of accepted actions.
    pub executor: Arc<Executor>,
}

impl Parts {
    /// The parts `config` calls for.
    pub fn new(config: &Config) -> Result<Self, Error> {
        let topology = topology(config)?;
        let telemetry = telemetry(config);
        let gate = Gate::new();
        let executor = Executor::open(
            topology.clone(),
            gate.clone(),
            telemetry.clone(),
            config.migration.clone(),
        )
        .map_err(Error::Migration)?;
        Ok(Parts {
            topology,
            telemetry,
            registry: sessions(config)?,
            gate,
            executor,
        })
    }
}

fn controller(config: &Config, parts: &Parts) -> Result<Option<Controller>, Error> {
    let Some(policy) = &config.policy else {
        return Ok(None);
    };
    let fail = |message: String| Error::Policy {
        file: policy.file.display().to_string(),
        message,
    };
    let bytes = std::fs::read(&policy.file).map_err(|e| fail(e.to_string()))?;
    let settings = match &policy.settings {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| fail(format!("settings {}: {e}", p.display())))?,
        None => String::new(),
    };
    // Compiled policies are cached beside the other state, so that swapping a version in
    // again (a rollback, a forced swap, a file rewritten) does not compile it again.
    let options = RuntimeOptions {
        cache_dir: config
            .migration
            .state_dir
            .as_ref()
            .map(|dir| dir.join("artifacts")),
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::new(options).map_err(|e| fail(e.to_string()))?;
    let mut engine = PolicyEngine::new(runtime, config.churn);
    let version = engine
        .load_planner(&bytes, &settings)
        .map_err(|e| fail(e.to_string()))?;
    tracing::info!(policy = %version.label(), "controller loaded its policy");
    let watcher = if policy.watch {
        let file = std::fs::canonicalize(&policy.file).map_err(|e| fail(e.to_string()))?;
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let bindings = HashMap::from([(
            file,
            Binding {
                handle: engine.planner_handle(),
                settings: settings.clone(),
                settings_file: policy.settings.clone(),
            },
        )]);
        Some(PolicyWatcher::start(&dir, bindings).map_err(|e| fail(e.to_string()))?)
    } else {
        None
    };
    // Listening starts here, before anything could send the signals: their default action
    // would end the process.
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) {
        (Ok(force), Ok(rollback)) => {
            tokio::spawn(operator_signals(
                (force, rollback),
                engine.planner_handle(),
                policy.file.clone(),
                policy.settings.clone(),
                settings.clone(),
            ));
        }
        _ => tracing::warn!(
            "cannot listen for SIGUSR1 and SIGUSR2; forced swaps and rollbacks by signal are off"
        ),
    }
    let interval = Duration::from_millis(config.tick_ms);
    let watched = parts.clone();
    let executor = parts.executor.clone();
    let mut history = match &config.history.file {
        Some(path) => Some(
            crate::history::Recorder::append(path).map_err(|e| Error::History(format!("{e:#}")))?,
        ),
        None => None,
    };
    let handle = engine.planner_handle();
    let shadow = engine.shadow_handle();
    let forecasts = crate::admin::forecasts::Forecasts::new();
    let latest = forecasts.clone();
    let shadows = parts.executor.clone();
    let ticks = TickLoop::spawn_with_shadow(
        engine,
        interval,
        move |tick| {
            let v = view(&watched, tick);
            if let Some(recorder) = history.as_mut()
                && let Err(e) = recorder.record(&v)
            {
                // The proxy goes on; the history stops rather than fill the log.
                tracing::warn!("history recording stopped: {e:#}");
                history = None;
            }
            v
        },
        move |report| {
            executor.log_tick(&report);
            latest.record(&report);
            // Cluster mode, not the controller: the policy runs warm, nothing is done.
            if executor.acting() {
                let policy = report.planner.clone().unwrap_or_default();
                for action in &report.accepted {
                    tracing::info!(tick = report.tick, policy = %policy, segment = ?action.segment(), action = %action.describe(), "executing");
                    executor.submit(*action, &policy);
                }
            }
            for fault in &report.faults {
                tracing::warn!(tick = report.tick, "{fault}");
            }
        },
        move |shadow| shadows.log_shadow(&shadow),
    );
    Ok(Some(Controller {
        ticks,
        handle,
        shadow,
        forecasts,
        _watcher: watcher,
    }))
}

/// The operator's overrides, by signal:
/// - `SIGUSR1` loads the policy file as it is now and swaps it in at the next tick with
///   fresh state, without asking the running version for its state;
/// - `SIGUSR2` rolls back to the version that ran before, with fresh state.
///
/// Neither depends on anything the running version does.
async fn operator_signals(
    (mut force, mut rollback): (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
    handle: crate::engine::SwapHandle,
    file: PathBuf,
    settings_file: Option<PathBuf>,
    settings: String,
) {
    loop {
        tokio::select! {
            Some(()) = force.recv() => {
                let (handle, file) = (handle.clone(), file.clone());
                let settings = settings_file
                    .as_ref()
                    .and_then(|f| std::fs::read_to_string(f).ok())
                    .unwrap_or_else(|| settings.clone());
                tracing::warn!(file = %file.display(), "SIGUSR1: forcing the policy file in, with fresh state");
                let forced = tokio::task::spawn_blocking(move || {
                    std::fs::read(&file)
                        .map_err(|e| e.to_string())
                        .and_then(|bytes| handle.force(&bytes, &settings).map_err(|e| e.to_string()))
                })
                .await;
                if let Ok(Err(e)) = forced {
                    tracing::error!(error = %e, "SIGUSR1: the policy file was refused; the running version stays");
                }
            }
            Some(()) = rollback.recv() => {
                tracing::warn!("SIGUSR2: rolling back to the previous policy version at the next tick");
                handle.rollback();
            }
            else => return,
        }
    }
}

/// The running controller: its tick loop, its policy's swap handle and, when configured,
/// the policy file watcher.
struct Controller {
    ticks: TickLoop,
    handle: crate::engine::SwapHandle,
    shadow: crate::engine::ShadowHandle,
    forecasts: Arc<crate::admin::forecasts::Forecasts>,
    _watcher: Option<PolicyWatcher>,
}

/// Points of history telemetry keeps per series, and so what each tick's view carries.
/// The view is rebuilt every tick, so this bounds the tick's copying (segments × points ×
/// metrics); a minute at 1 s ticks is what the shipped policies read.
pub const RETENTION: usize = 60;

/// The telemetry a configuration calls for: sampled every tick, [`RETENTION`] points kept.
pub fn telemetry(config: &Config) -> Arc<Telemetry> {
    Telemetry::new(
        config.instances.len(),
        Duration::from_millis(config.tick_ms),
        RETENTION,
    )
}

/// Poll the instances and fold the counters into the store, every interval, until the
/// process ends. The instances are polled at once, each within its own deadline, so one
/// hung instance neither delays nor skews the others.
async fn collect(
    topology: Arc<Topology>,
    telemetry: Arc<Telemetry>,
    registry: Arc<Registry>,
    node: Option<Arc<Node>>,
) {
    let mut seen = HashMap::new();
    let interval = telemetry.interval();
    let fresh = |id: usize| Poller::new(topology.instances[id].address.clone());
    let mut pollers: Vec<Option<Poller>> = (0..topology.instances.len())
        .map(|id| Some(fresh(id)))
        .collect();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut polls = tokio::task::JoinSet::new();
        for (id, p) in pollers.iter_mut().enumerate() {
            let mut p = p.take().unwrap_or_else(|| fresh(id));
            polls.spawn(async move {
                let failures = p.poll(id as u32, interval, now_ms).await;
                (id, p, failures)
            });
        }
        let mut failures = Vec::new();
        while let Some(done) = polls.join_next().await {
            if let Ok((id, p, f)) = done {
                pollers[id] = Some(p);
                failures.extend(f);
            }
        }
        for f in &failures {
            tracing::warn!(instance = f.instance, kind = ?f.kind, "{}", f.detail);
        }
        let health = pollers
            .iter()
            .map(|p| p.as_ref().map(|p| p.health.clone()).unwrap_or_default())
            .collect();
        let mut interval = telemetry.take(&topology);
        let mut live = registry.take();
        if let Some(node) = &node {
            node.exchange(&mut interval, &mut live, &mut seen).await;
            live.sort_by_key(|(s, _)| s.id);
        }
        telemetry.fold(&topology, interval, health, failures);
        telemetry.collect_sessions(live);
    }
}

/// Bind the admin listener and serve it in the background.
async fn start_admin(
    admin: &crate::config::AdminConfig,
    config: &Config,
    parts: &Parts,
    ticker: Option<&Controller>,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let address = admin.address().map_err(Error::Admin)?;
    let token = admin.token().map_err(Error::Admin)?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| Error::Listen {
            address: format!("{address} ([admin] listen)"),
            source,
        })?;
    let state = crate::admin::Admin {
        parts: parts.clone(),
        policy: ticker
            .map(|t| crate::admin::policies::PolicyDesk::new(t.handle.clone(), t.shadow.clone())),
        forecasts: ticker.map_or_else(crate::admin::forecasts::Forecasts::new, |t| {
            t.forecasts.clone()
        }),
        token,
        max_upload: (admin.max_upload_mib << 20) as usize,
        started: std::time::Instant::now(),
        listen: config.listen.get_ref().clone(),
    };
    tracing::info!(%address, "admin API, /metrics and the dashboard are serving");
    Ok(tokio::spawn(crate::admin::serve(listener, Arc::new(state))))
}

/// Serve until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let parts = Parts::new(&config)?;
    run_with(config, parts, shutdown).await
}

/// The session registry a configuration calls for.
pub fn sessions(config: &Config) -> Result<Arc<Registry>, Error> {
    let repository: Arc<dyn SessionRepository> = match config.sessions.repository() {
        "memory" => Arc::new(InProcess::default()),
        url => Arc::new(InRedis::connect(url).map_err(Error::Sessions)?),
    };
    Ok(Arc::new(Registry::new(repository)))
}

/// The view of tick `tick`: topology, telemetry, migrations, sessions and their state
/// partitions.
pub fn view(parts: &Parts, tick: u64) -> ViewSnapshot {
    let mut v = parts.telemetry.view(&parts.topology, tick);
    v.migrations = parts.executor.migrations();
    v.rejections = parts.executor.take_refusals();
    let moving = parts.executor.moving();
    for s in &mut v.segments {
        s.migrating = moving.contains(&s.id);
    }
    let repository = parts.registry.repository();
    for s in &v.sessions {
        let state = v.session_state.entry(s.id).or_default();
        for p in repository.partitions(s.id) {
            if let Some(fields) = repository.get(s.id, &p) {
                state.insert(p, fields);
            }
        }
    }
    v
}

/// Serve with the given parts (so a caller can watch them) until `shutdown` completes.
///
/// Before accepting a client, every migration a crash left unfinished is finished or rolled
/// back.
pub async fn run_with(
    config: Config,
    parts: Parts,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let address = config.listen_addr();
    let users = Arc::new(config.auth.users().map_err(Error::Auth)?);
    crate::proxy::dial::set_logins(config.instance_logins().map_err(Error::Auth)?);
    let tls = config.client_tls().map_err(Error::Tls)?;
    crate::proxy::tls::set_instance_tls(config.instance_tls().map_err(Error::Tls)?);
    let listeners = Loops::bind(address, config.loops()).map_err(|source| Error::Listen {
        address: address.to_string(),
        source,
    })?;
    parts.executor.attach(tokio::runtime::Handle::current());
    let mut sync = None;
    let node = match &config.cluster {
        Some(cluster) => {
            let store = Store::connect(cluster)
                .await
                .map_err(|e| Error::Cluster(e.to_string()))?;
            let link = Link::new(
                store,
                parts.gate.fence.clone(),
                parts.topology.instances.clone(),
            );
            parts.executor.attach_cluster(link.clone());
            let store = link.store().clone();
            let ttl = Duration::from_secs(cluster.lease_ttl_s);
            let tick = Duration::from_millis(config.tick_ms);
            parts.registry.join_cluster(
                cluster.name.clone(),
                Arc::new(move |proxy: String| {
                    let store = store.clone();
                    Box::pin(async move { store.alive(&proxy, ttl, tick).await })
                }),
            );
            let node = Node::new(
                link.clone(),
                parts.topology.clone(),
                parts.gate.clone(),
                Duration::from_millis(config.migration.cutover_timeout_ms),
                config.policy.is_some(),
            );
            // Recovery waits for the office; requests wait for the fence to open.
            tokio::spawn(node.clone().run(parts.executor.clone()));
            sync = Some((link, cluster.checkpoint_ticks));
            Some(node)
        }
        None => {
            for sentence in parts.executor.recover().await {
                tracing::warn!("recovery: {sentence}");
            }
            parts.executor.resume_drains();
            None
        }
    };
    let ticker = controller(&config, &parts)?;
    if let (Some((link, every)), Some(ticker)) = (sync, &ticker) {
        let policy = PolicySync::new(
            link,
            ticker.handle.clone(),
            every,
            Duration::from_millis(config.tick_ms),
        );
        tokio::spawn(policy.run());
    }
    let admin = match &config.admin {
        Some(admin) => Some(start_admin(admin, &config, &parts, ticker.as_ref()).await?),
        None => None,
    };
    let collector = tokio::spawn(collect(
        parts.topology.clone(),
        parts.telemetry.clone(),
        parts.registry.clone(),
        node,
    ));
    let common = Common {
        topology: parts.topology.clone(),
        limits: config.limits,
        telemetry: parts.telemetry.clone(),
        sessions: parts.registry.clone(),
        gate: parts.gate.clone(),
        next_id: Arc::new(AtomicU64::new(crate::sessions::registry::first_session_id())),
        clients: Arc::new(AtomicUsize::new(0)),
        users,
        tls,
    };
    let loops = Loops::start(listeners, common).map_err(|source| Error::Listen {
        address: address.to_string(),
        source,
    })?;
    tracing::info!(
        %address,
        instances = parts.topology.instances.len(),
        loops = loops.count(),
        "shardcast is serving"
    );
    shutdown.await;
    tokio::task::spawn_blocking(move || loops.stop()).await.ok();
    // What the sessions last wrote reaches the repository before the process ends.
    let repository = parts.registry.repository().clone();
    let grace = Duration::from_millis(config.limits.shutdown_grace_ms);
    let flushed = tokio::task::spawn_blocking(move || repository.flush(grace))
        .await
        .unwrap_or(false);
    if !flushed {
        tracing::warn!("the session repository did not take every write before shutdown");
    }
    collector.abort();
    if let Some(a) = admin {
        a.abort();
    }
    if let Some(t) = ticker {
        tokio::task::spawn_blocking(move || drop(t.ticks.stop()))
            .await
            .ok();
    }
    Ok(())
}

//! `shardcast run`: the proxy and the controller of one process.
//!
//! Until live migration lands, the controller runs the configured policy every tick over
//! the current topology and logs its decisions without executing them.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use dashmap::DashMap;
use shardcast_sdk::view::ViewSnapshot;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::engine::tick_loop::TickLoop;
use crate::engine::{PolicyEngine, Runtime, RuntimeOptions};
use crate::proxy::mux::Mux;
use crate::proxy::server::serve;
use crate::proxy::session::Shared;
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
pub fn topology(config: &Config) -> Arc<Topology> {
    let instances = config.instances();
    let active: Vec<u32> = instances
        .iter()
        .filter(|i| i.state == shardcast_sdk::types::InstanceState::Active)
        .map(|i| i.id)
        .collect();
    let table = SegmentTable::uniform(config.segments.count as usize, &active);
    Arc::new(Topology::new(instances, table))
}

fn controller(config: &Config, topology: Arc<Topology>) -> Result<Option<TickLoop>, Error> {
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
    let runtime = Runtime::new(RuntimeOptions::default()).map_err(|e| fail(e.to_string()))?;
    let mut engine = PolicyEngine::new(runtime, config.churn);
    let version = engine
        .load_planner(&bytes, &settings)
        .map_err(|e| fail(e.to_string()))?;
    tracing::info!(policy = %version.label(), "controller loaded its policy");
    let interval = Duration::from_millis(config.tick_ms);
    Ok(Some(TickLoop::spawn(
        engine,
        interval,
        move |tick| {
            let table = topology.table();
            let mut view = ViewSnapshot::default();
            view.now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            view.tick = tick;
            view.epoch = table.epoch;
            view.interval_ms = interval.as_millis() as u32;
            view.instances = topology.instances.clone();
            view.segments = table.segments.clone();
            view
        },
        |report| {
            for action in &report.accepted {
                tracing::info!(tick = report.tick, action = %action.describe(), "decision (not executed: live migration is not wired yet)");
            }
            for fault in &report.faults {
                tracing::warn!(tick = report.tick, "{fault}");
            }
        },
    )))
}

/// Serve until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let address = config.listen_addr();
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| Error::Listen {
            address: address.to_string(),
            source,
        })?;
    let topology = topology(&config);
    let topology_addresses: Vec<String> = topology
        .instances
        .iter()
        .map(|i| i.address.clone())
        .collect();
    let ticker = controller(&config, topology.clone())?;
    let shared = Arc::new(Shared {
        topology,
        limits: config.limits,
        next_id: AtomicU64::new(1),
        unreachable: DashMap::new(),
        mux: Mux::new(
            &topology_addresses,
            Duration::from_millis(config.limits.connect_timeout_ms),
        ),
    });
    tracing::info!(%address, instances = shared.topology.instances.len(), "shardcast is serving");
    serve(listener, shared, shutdown).await;
    if let Some(t) = ticker {
        tokio::task::spawn_blocking(move || drop(t.stop()))
            .await
            .ok();
    }
    Ok(())
}

//! The request path's event loops, one thread each.
//!
//! Each loop is a single-threaded tokio runtime with its own listener on the shared port
//! (`SO_REUSEPORT`: the kernel spreads new connections over the loops) and its own
//! multiplexed connection to each instance. A session lives on the loop that accepted it
//! for its whole life: its requests, the multiplexer that writes them to an instance and
//! the replies all run on that one thread, so the request path has no cross-thread hop and
//! no work stealing. What the loops share is thread-safe and off the hot path's waits: the
//! segment table, the gate (a cutover holds and drains a segment on every loop), the
//! telemetry counters, the session registry, session ids and the client count.
//!
//! [`Loops::bind`] binds every listener first, so a taken address is an error at start and
//! clients queue while recovery runs; [`Loops::start`] starts serving; [`Loops::stop`] lets each loop drain its sessions (within
//! `limits.shutdown_grace_ms`) and waits for the threads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use super::auth::Users;
use super::mux::{Deadlines, Mux};
use super::server::serve;
use super::session::Shared;
use crate::config::ProxyLimits;
use crate::proxy::gate::Gate;
use crate::sessions::registry::Registry;
use crate::telemetry::Telemetry;
use crate::topology::Topology;

/// Pending connections each listener queues.
const BACKLOG: u32 = 1024;

/// What every loop shares.
#[derive(Clone)]
pub struct Common {
    /// Instances and the segment table.
    pub topology: Arc<Topology>,
    /// Limits.
    pub limits: ProxyLimits,
    /// Request counters.
    pub telemetry: Arc<Telemetry>,
    /// Live sessions.
    pub sessions: Arc<Registry>,
    /// Holding and dirty-key tracking.
    pub gate: Arc<Gate>,
    /// Next session id, across loops.
    pub next_id: Arc<AtomicU64>,
    /// Clients connected, across loops (for `limits.maxclients`).
    pub clients: Arc<AtomicUsize>,
    /// Who may connect.
    pub users: Arc<Users>,
    /// Clients' TLS, when `[tls]` is configured.
    pub tls: Option<super::tls::ClientTls>,
}

/// The running loops.
pub struct Loops {
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

/// A listener on `address` that other listeners on the same address share.
fn listener(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)?.into_std()
}

impl Loops {
    /// Bind `count` listeners (at least one) on `address`. Call from inside a tokio
    /// runtime. Connections queue on them until [`Loops::start`].
    pub fn bind(address: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
        // The address must be free: a plain bind fails where any listener holds it, ours
        // included (SO_REUSEPORT would otherwise let a second shardcast share the port).
        drop(std::net::TcpListener::bind(address)?);
        let first = listener(address)?;
        // Port 0: the others take the port the first was given.
        let address = first.local_addr()?;
        let mut all = vec![first];
        for _ in 1..count.max(1) {
            all.push(listener(address)?);
        }
        Ok(all)
    }

    /// Start one loop on each of `listeners`.
    pub fn start(listeners: Vec<std::net::TcpListener>, common: Common) -> std::io::Result<Self> {
        let count = listeners.len();
        let (stop, stopped) = watch::channel(false);
        let mut threads = Vec::with_capacity(count);
        for (i, std_listener) in listeners.into_iter().enumerate() {
            let common = common.clone();
            let mut stopped = stopped.clone();
            let thread = std::thread::Builder::new()
                .name(format!("shardcast-loop-{i}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(loop_index = i, error = %e, "cannot start an event loop");
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        let listener = match TcpListener::from_std(std_listener) {
                            Ok(l) => l,
                            Err(e) => {
                                tracing::error!(loop_index = i, error = %e, "cannot register a listener");
                                return;
                            }
                        };
                        let addresses: Vec<String> = common
                            .topology
                            .instances
                            .iter()
                            .map(|x| x.address.clone())
                            .collect();
                        let shared = Arc::new(Shared {
                            topology: common.topology,
                            limits: common.limits,
                            next_id: common.next_id,
                            clients: common.clients,
                            mux: Mux::new(&addresses, Deadlines::of(&common.limits)),
                            counters: common.telemetry.counters.add(),
                            telemetry: common.telemetry,
                            sessions: common.sessions,
                            gate: common.gate,
                            users: common.users,
                            closing: watch::channel(false).0,
                            tls: common.tls,
                        });
                        serve(listener, shared, async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        })
                        .await;
                    });
                })?;
            threads.push(thread);
        }
        Ok(Loops { stop, threads })
    }

    /// How many loops run.
    pub fn count(&self) -> usize {
        self.threads.len()
    }

    /// Stop accepting on every loop, let each drain its sessions, and wait for the
    /// threads (blocking: call from a blocking context).
    pub fn stop(self) {
        self.stop.send_replace(true);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

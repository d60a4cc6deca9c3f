//! One client connection: read requests, route them, forward, and answer in order.
//!
//! Each batch of pipelined requests is routed and queued on the backends it needs, every
//! backend is flushed once, and the replies are then read back in request order; a
//! multi-key command split over several instances is answered by merging its parts. State
//! the client set (database, name, protocol) is replayed on every backend connection the
//! session opens. A transaction is queued in the proxy and sent to its single instance at
//! `EXEC`.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use shardcast_sdk::types::InstanceId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::backend::Backend;
use super::command::{Class, Merge, classify, is_write, may_write};
use super::gate::{Gate, SlotState, WriteGuard};
use super::mux::Mux;
use super::request::{Request, next_request};
use super::resp::Frame;
use super::slot::slot;
use crate::config::ProxyLimits;
use crate::sessions::registry::{Entry, Registry};
use crate::telemetry::Telemetry;
use crate::telemetry::counters::Hit;
use crate::topology::Topology;

/// How often a held request tries an unreachable instance again.
const RETRY: Duration = Duration::from_millis(25);

/// What every session shares.
pub struct Shared {
    /// Instances and the segment table.
    pub topology: Arc<Topology>,
    /// Limits.
    pub limits: ProxyLimits,
    /// Next session id.
    pub next_id: AtomicU64,
    /// When each instance last refused a connection.
    pub unreachable: DashMap<InstanceId, Instant>,
    /// The shared connections sessions in the default state use.
    pub mux: Mux,
    /// Request counters.
    pub telemetry: Arc<Telemetry>,
    /// Live sessions and their state partitions.
    pub sessions: Arc<Registry>,
    /// Holding and dirty-key tracking for slots that are moving.
    pub gate: Arc<Gate>,
}

/// Connection state a client set, replayed on new backend connections.
#[derive(Clone, Debug, Default)]
struct ConnState {
    db: u32,
    name: Option<Bytes>,
    lib: Option<Bytes>,
    protocol: u8,
}

/// How one request will be answered.
enum Pending {
    /// A reply the proxy already has.
    Local(Frame),
    /// The next reply of one backend, forwarded as it is; timed when it carries a key.
    Forward(InstanceId, Ticket, Option<Timing>),
    /// Parts from several backends: (instance, positions of its keys in the answer); the
    /// error of a part that could not be sent (the parts sent are still read, so that no
    /// reply is left behind on a connection).
    Gather(
        Merge,
        Vec<(InstanceId, Vec<usize>, Ticket)>,
        usize,
        Option<WriteGuard>,
        Option<Frame>,
    ),
    /// The same command on several instances, merged; as for `Gather`, the error of an
    /// instance it could not be sent to.
    FanOut(FanOut, Vec<(InstanceId, Ticket)>, Option<Frame>),
    /// A transaction: skip `skip` replies, forward the last.
    Exec(InstanceId, usize, Vec<WriteGuard>),
    /// A SCAN step on one instance.
    Scan(InstanceId, Ticket),
}

/// When and for which slot a keyed request was routed: its reply's latency and size are
/// counted against that slot. A write also carries its guard, dropped once the reply is in.
struct Timing {
    slot: u16,
    start: Instant,
    /// Dropped with the request, once its reply is in.
    _write: Option<WriteGuard>,
}

/// Where a reply will come from: the shared multiplexer (with the request, to send again if
/// the instance could not be reached), or the session's own connection (`None`).
type Ticket = Option<(oneshot::Receiver<Result<Vec<Bytes>, String>>, Bytes)>;

#[derive(Clone, Copy)]
enum FanOut {
    SumIntegers,
    AllOk,
    /// Key lists, concatenated, each instance's filtered to the keys it owns.
    Keys,
    FirstNonNull,
}

/// One client session.
pub struct Session {
    id: u64,
    shared: Arc<Shared>,
    state: ConnState,
    backends: HashMap<InstanceId, Backend>,
    multi: Option<Vec<Request>>,
    multi_slot: Option<u16>,
    multi_dirty: bool,
    watched: Option<InstanceId>,
    /// Keep a cutover off the WATCHed keys' slot until the transaction ends.
    watch_guards: Vec<WriteGuard>,
    closing: bool,
    entry: Arc<Entry>,
    connected_at: u64,
}

/// The view's record of a session.
fn record(
    id: u64,
    state: &ConnState,
    pinned: Option<InstanceId>,
    in_transaction: bool,
    subscriptions: u32,
    connected_at: u64,
) -> shardcast_sdk::types::Session {
    let text = |b: &Option<Bytes>| {
        b.as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
            .into_owned()
    };
    shardcast_sdk::types::Session {
        id,
        name: text(&state.name),
        lib: text(&state.lib),
        db: state.db,
        user: "default".into(),
        protocol: state.protocol,
        pinned,
        in_transaction,
        subscriptions,
        connected_at,
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.sessions.remove(self.id);
    }
}

/// True for the commands that change or read the session's own connections while they are
/// routed (`HELLO`, `SELECT`, `RESET` replace them; `UNWATCH`, `DISCARD`, `EXEC` read from
/// them): requests routed before them are completed first.
fn is_barrier(req: &Request) -> bool {
    const BARRIERS: [&[u8]; 6] = [
        b"HELLO", b"SELECT", b"RESET", b"UNWATCH", b"DISCARD", b"EXEC",
    ];
    req.args
        .first()
        .is_some_and(|name| BARRIERS.iter().any(|b| name.eq_ignore_ascii_case(b)))
}

/// True when a multiplexed request was not executed and may be sent again: the instance
/// could not be reached, or answered `-LOADING` (it is loading its data after a restart).
fn not_served(answer: &Result<Result<Vec<Bytes>, String>, oneshot::error::RecvError>) -> bool {
    match answer {
        Ok(Err(why)) => why.starts_with(super::mux::UNREACHABLE),
        Ok(Ok(replies)) => replies.first().is_some_and(|r| r.starts_with(b"-LOADING")),
        Err(_) => false,
    }
}

fn err(text: impl AsRef<str>) -> Frame {
    Frame::error(text)
}

impl Session {
    /// A new session.
    pub fn new(shared: Arc<Shared>) -> Self {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let connected_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let state = ConnState {
            protocol: 2,
            ..ConnState::default()
        };
        let entry = shared
            .sessions
            .upsert(record(id, &state, None, false, 0, connected_at));
        let mut session = Session {
            id,
            shared,
            state,
            backends: HashMap::new(),
            multi: None,
            multi_slot: None,
            multi_dirty: false,
            watched: None,
            watch_guards: Vec::new(),
            closing: false,
            entry,
            connected_at,
        };
        session.publish();
        session
    }

    /// Publish the session's record and its state partitions.
    fn publish(&mut self) {
        let text = |b: &Option<Bytes>| {
            b.as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned()
        };
        self.entry = self.shared.sessions.upsert(record(
            self.id,
            &self.state,
            self.watched,
            self.multi.is_some() || self.watched.is_some(),
            0,
            self.connected_at,
        ));
        self.shared.sessions.put(
            self.id,
            "connection",
            vec![
                ("db".into(), self.state.db.to_string()),
                ("name".into(), text(&self.state.name)),
                ("lib".into(), text(&self.state.lib)),
                ("user".into(), "default".into()),
                ("protocol".into(), self.state.protocol.to_string()),
            ],
        );
        let mut tx = vec![("multi".into(), self.multi.is_some().to_string())];
        if let Some(w) = self.watched {
            tx.push(("watching-instance".into(), w.to_string()));
        }
        self.shared.sessions.put(self.id, "transaction", tx);
    }

    /// Serve the client until it leaves or misbehaves.
    pub async fn run(mut self, mut client: TcpStream) -> io::Result<()> {
        client.set_nodelay(true)?;
        let limits = self.shared.limits.resp();
        let mut input = BytesMut::with_capacity(16 << 10);
        let mut out = BytesMut::with_capacity(16 << 10);
        loop {
            if input.capacity() - input.len() < 4096 {
                input.reserve(64 << 10);
            }
            if client.read_buf(&mut input).await? == 0 {
                return Ok(());
            }
            let mut batch: Vec<Request> = Vec::new();
            let before = (
                self.state.db,
                self.state.name.clone(),
                self.state.protocol,
                self.multi.is_some(),
                self.watched,
            );
            let mut fatal = None;
            loop {
                match next_request(&mut input, &limits) {
                    Ok(Some(r)) if r.args.is_empty() => {}
                    Ok(Some(r)) => batch.push(r),
                    Ok(None) => break,
                    Err(e) => {
                        fatal = Some(e);
                        break;
                    }
                }
            }
            self.entry
                .ops
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let subscribe_at = batch.iter().position(super::pubsub::enters);
            let rest = subscribe_at.map(|i| batch.split_off(i));
            self.serve(batch, &mut out).await;
            if let Some(rest) = rest {
                client.write_all(&out).await?;
                out.clear();
                let setup: Vec<Bytes> = if self.state.protocol == 3 {
                    vec![Bytes::from_static(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")]
                } else {
                    Vec::new()
                };
                let topology = self.shared.topology.clone();
                let hold = Duration::from_millis(self.shared.limits.hold_ms);
                let registry = self.shared.sessions.clone();
                let id = self.id;
                let publish =
                    move |fields: Vec<(String, String)>| registry.put(id, "subscriptions", fields);
                let served = super::pubsub::serve(
                    &mut client,
                    &mut input,
                    &limits,
                    rest,
                    setup,
                    &topology,
                    hold,
                    &publish,
                )
                .await;
                if served.is_err() {
                    return Ok(());
                }
                continue;
            }
            if let Some(e) = fatal {
                tracing::info!(session = self.id, error = %e, "closing client after a protocol error");
                err(format!("ERR {e}")).encode(&mut out);
                client.write_all(&out).await?;
                return Ok(());
            }
            if out.len() > self.shared.limits.client_output_buffer_bytes {
                tracing::warn!(
                    session = self.id,
                    bytes = out.len(),
                    "client output buffer limit reached; closing"
                );
                return Ok(());
            }
            client.write_all(&out).await?;
            out.clear();
            let after = (
                self.state.db,
                self.state.name.clone(),
                self.state.protocol,
                self.multi.is_some(),
                self.watched,
            );
            if before != after {
                self.publish();
            }
            if self.closing {
                return Ok(());
            }
        }
    }

    /// Route, forward and answer one batch of requests, appending replies to `out`.
    async fn serve(&mut self, batch: Vec<Request>, out: &mut BytesMut) {
        let mut pending = Vec::with_capacity(batch.len());
        for req in batch {
            // What is already routed completes first when this request changes the
            // connection's state, or may wait at a held slot: earlier requests must not sit
            // unsent behind it (their writes would keep the cutover waiting).
            if !pending.is_empty() && (is_barrier(&req) || self.shared.gate.any_held()) {
                self.complete(std::mem::take(&mut pending), out).await;
            }
            let p = self.route(req).await;
            pending.push(p);
            if self.closing {
                break;
            }
        }
        self.complete(pending, out).await;
    }

    /// Send what is queued on the session's connections and append every reply in order.
    async fn complete(&mut self, pending: Vec<Pending>, out: &mut BytesMut) {
        let mut broken: HashMap<InstanceId, String> = HashMap::new();
        for (id, b) in self.backends.iter_mut() {
            if b.has_queued()
                && let Err(e) = b.flush().await
            {
                broken.insert(*id, e.to_string());
            }
        }
        for p in pending {
            let frame_or_raw = self.answer(p, &mut broken).await;
            match frame_or_raw {
                Ok(raw) => out.extend_from_slice(&raw),
                Err(frame) => frame.encode(out),
            }
        }
        for id in broken.keys() {
            self.backends.remove(id);
        }
    }

    fn instance_name(&self, id: InstanceId) -> String {
        self.shared
            .topology
            .instances
            .get(id as usize)
            .map(|i| format!("{} ({})", i.name, i.address))
            .unwrap_or_else(|| format!("instance {id}"))
    }

    /// The connection to `id`, opened (and brought up to the session's state: protocol,
    /// database, client name) if needed. An instance that cannot be reached is tried
    /// again until the hold bound.
    async fn backend(&mut self, id: InstanceId) -> Result<&mut Backend, Frame> {
        if self
            .backends
            .get_mut(&id)
            .is_some_and(|b| !b.has_queued() && b.is_closed())
        {
            // The instance went away since the last request (a restart): reconnect.
            self.backends.remove(&id);
        }
        if !self.backends.contains_key(&id) {
            let address = self.shared.topology.instances[id as usize].address.clone();
            let timeout = Duration::from_millis(self.shared.limits.connect_timeout_ms);
            let bound = Duration::from_millis(self.shared.limits.hold_ms);
            let started = Instant::now();
            let b = loop {
                let attempt = match Backend::connect(&address, timeout).await {
                    Ok(mut b) => match self.replay(&mut b).await {
                        Ok(()) => Ok(b),
                        Err(e) => Err(format!("failed the handshake: {e}")),
                    },
                    Err(e) => Err(format!("is unreachable: {e}")),
                };
                match attempt {
                    Ok(b) => break b,
                    Err(why) if started.elapsed() >= bound => {
                        self.shared.unreachable.insert(id, Instant::now());
                        tracing::warn!(instance = %address, error = %why, "instance unreachable");
                        return Err(err(format!(
                            "TRYAGAIN {} {why} (held {} ms); retry",
                            self.instance_name(id),
                            bound.as_millis()
                        )));
                    }
                    Err(_) => tokio::time::sleep(RETRY).await,
                }
            };
            if started.elapsed() > RETRY {
                self.shared.gate.record_instance_hold(started.elapsed());
            }
            self.shared.unreachable.remove(&id);
            self.backends.insert(id, b);
        }
        Ok(self.backends.get_mut(&id).expect("inserted above"))
    }

    /// Bring a new backend connection to the session's state.
    async fn replay(&self, b: &mut Backend) -> io::Result<()> {
        let mut setup: Vec<Vec<Bytes>> = Vec::new();
        if self.state.protocol == 3 {
            setup.push(vec![Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")]);
        }
        if self.state.db != 0 {
            setup.push(vec![
                Bytes::from_static(b"SELECT"),
                Bytes::from(self.state.db.to_string()),
            ]);
        }
        if let Some(name) = &self.state.name {
            setup.push(vec![
                Bytes::from_static(b"CLIENT"),
                Bytes::from_static(b"SETNAME"),
                name.clone(),
            ]);
        }
        // Last, whether the instance is still loading its data after a restart: it would
        // refuse data commands until it is done, so the connection waits like a held one.
        setup.push(vec![
            Bytes::from_static(b"INFO"),
            Bytes::from_static(b"persistence"),
        ]);
        for args in &setup {
            b.queue(&Request::from_args(args.clone()).raw);
        }
        b.flush().await?;
        for _ in &setup {
            let f = b.read_frame().await?;
            if f.is_error() {
                return Err(io::Error::other(format!("{f:?}")));
            }
            if let Frame::Bulk(Some(text)) | Frame::Verbatim(text) = &f
                && text.windows(9).any(|w| w == b"loading:1")
            {
                return Err(io::Error::other("the instance is loading its data"));
            }
        }
        Ok(())
    }

    /// The instance owning all of `keys` of `req`, or a CROSSSLOT error.
    fn owner(&self, req: &Request, keys: &[usize]) -> Result<InstanceId, Frame> {
        let table = self.shared.topology.current();
        let mut slots = keys
            .iter()
            .filter_map(|&i| req.args.get(i))
            .map(|k| slot(k));
        let first = slots.next().unwrap_or(0);
        if slots.any(|s| s != first) {
            return Err(err("CROSSSLOT Keys in request don't hash to the same slot"));
        }
        Ok(table.owner(first))
    }

    /// True while the session can share connections: database 0, RESP2, nothing pinned.
    fn shares_connections(&self) -> bool {
        self.state.db == 0
            && self.state.protocol == 2
            && self.watched.is_none()
            && self.multi.is_none()
    }

    /// Send `raw` to instance `id`: through the multiplexer when the session is in the
    /// default state, else on its own connection.
    async fn send(&mut self, id: InstanceId, raw: &Bytes) -> Result<Ticket, Frame> {
        if self.shares_connections() {
            return Ok(Some((
                self.shared.mux.send(id as usize, raw.clone(), 1),
                raw.clone(),
            )));
        }
        self.backend(id).await?.queue(raw);
        Ok(None)
    }

    async fn forward(&mut self, id: InstanceId, raw: &Bytes, timing: Option<Timing>) -> Pending {
        match self.send(id, raw).await {
            Ok(t) => Pending::Forward(id, t, timing),
            Err(e) => Pending::Local(e),
        }
    }

    /// Send on the session's own connection (blocking commands, transactions).
    async fn forward_pinned(
        &mut self,
        id: InstanceId,
        raw: &[u8],
        timing: Option<Timing>,
    ) -> Pending {
        match self.backend(id).await {
            Ok(b) => {
                b.queue(raw);
                Pending::Forward(id, None, timing)
            }
            Err(e) => Pending::Local(e),
        }
    }

    async fn route(&mut self, req: Request) -> Pending {
        let class = classify(&req);
        if self.multi.is_some()
            && !matches!(req.name().as_str(), "EXEC" | "DISCARD" | "MULTI" | "WATCH")
        {
            return self.queue_in_multi(req, class);
        }
        let blocking = matches!(class, Class::Blocking(_));
        match class {
            Class::Blocking(keys) | Class::Keyed(keys) => {
                let write = match self.pass_gate(&req, &keys, may_write(&req)).await {
                    Ok(w) => w,
                    Err(e) => return Pending::Local(e),
                };
                self.keyed(&req, &keys, write, blocking).await
            }
            Class::Split(merge, keys) => self.split(&req, merge, &keys).await,
            Class::Local => self.local(req).await,
            Class::Transaction => self.transaction(req).await,
            Class::PubSub
                if matches!(
                    req.name().as_str(),
                    "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE"
                ) =>
            {
                // Not subscribed: answer as Redis does.
                Pending::Local(Frame::Array(Some(vec![
                    Frame::bulk(req.name().to_lowercase()),
                    Frame::Bulk(None),
                    Frame::Integer(0),
                ])))
            }
            Class::PubSub => Pending::Local(err(format!(
                "ERR '{}' is not supported through the shardcast proxy yet",
                req.name().to_lowercase()
            ))),
            Class::Unsupported => Pending::Local(err(format!(
                "ERR unsupported command '{}' through the shardcast proxy",
                String::from_utf8_lossy(&req.args[0])
            ))),
            Class::Arity => Pending::Local(err(format!(
                "ERR wrong number of arguments for '{}' command",
                String::from_utf8_lossy(req.args.first().map(|a| a.as_ref()).unwrap_or(b""))
                    .to_lowercase()
            ))),
        }
    }

    /// Pass the gate for `keys` of `req`: wait while any of their slots is held (within the
    /// hold bound, else a retryable error), and for a write count it in flight, returning
    /// its guard. A session's own WATCH keeps its slot from cutting over, so requests on
    /// that slot pass without waiting.
    async fn pass_gate(
        &self,
        req: &Request,
        keys: &[usize],
        write: bool,
    ) -> Result<Option<WriteGuard>, Frame> {
        let keys: Vec<&Bytes> = keys.iter().filter_map(|&i| req.args.get(i)).collect();
        self.pass_gate_keys(keys, write).await
    }

    /// [`Session::pass_gate`] for keys gathered from several requests (a transaction's),
    /// counted together so that no part waits at the gate while another is counted.
    async fn pass_gate_keys(
        &self,
        keys: Vec<&Bytes>,
        write: bool,
    ) -> Result<Option<WriteGuard>, Frame> {
        let gate = &self.shared.gate;
        let covered = |s: u16| self.watch_guards.iter().any(|g| g.covers(s));
        if !keys.is_empty() && keys.iter().all(|k| covered(slot(k))) {
            return Ok(write.then(|| gate.force_write(self.state.db, &keys)));
        }
        let bound = Duration::from_millis(self.shared.limits.hold_ms);
        loop {
            let held = if write {
                match gate.begin_write(self.state.db, &keys) {
                    Ok(g) => return Ok(Some(g)),
                    Err(s) => s,
                }
            } else {
                match keys
                    .iter()
                    .map(|k| slot(k))
                    .find(|&s| gate.state(s) == SlotState::Held)
                {
                    None => return Ok(None),
                    Some(s) => s,
                }
            };
            if !gate.wait_open(held, bound).await {
                return Err(err(format!(
                    "TRYAGAIN slot {held} is moving between instances and was held for {} ms; retry",
                    bound.as_millis()
                )));
            }
        }
    }

    /// Route a request whose keys share one slot, once it passed the gate.
    async fn keyed(
        &mut self,
        req: &Request,
        keys: &[usize],
        write: Option<WriteGuard>,
        blocking: bool,
    ) -> Pending {
        match self.owner(req, keys) {
            Ok(id) => {
                let first = keys
                    .first()
                    .and_then(|&k| req.args.get(k))
                    .map(|k| slot(k))
                    .unwrap_or(0);
                let hit = Hit {
                    write: is_write(req),
                    bytes_in: req.raw.len() as u64,
                };
                self.shared.telemetry.counters.hit(first, id, hit);
                if let Some(w) = self.watched
                    && w != id
                {
                    return Pending::Local(err(
                        "CROSSSLOT Keys in request don't hash to the same slot as the WATCHed keys",
                    ));
                }
                let timing = Timing {
                    slot: first,
                    start: Instant::now(),
                    _write: write,
                };
                if blocking {
                    self.forward_pinned(id, &req.raw, Some(timing)).await
                } else {
                    self.forward(id, &req.raw, Some(timing)).await
                }
            }
            Err(e) => Pending::Local(e),
        }
    }

    async fn split(&mut self, req: &Request, merge: Merge, keys: &[usize]) -> Pending {
        let write = match self.pass_gate(req, keys, may_write(req)).await {
            Ok(w) => w,
            Err(e) => return Pending::Local(e),
        };
        let table = self.shared.topology.current();
        let stride = if merge == Merge::Ok { 2 } else { 1 };
        let mut groups: Vec<(InstanceId, Vec<usize>)> = Vec::new();
        let hit = Hit {
            write: is_write(req),
            bytes_in: (req.raw.len() / keys.len().max(1)) as u64,
        };
        for (pos, &k) in keys.iter().enumerate() {
            let key_slot = slot(&req.args[k]);
            let id = table.owner(key_slot);
            self.shared.telemetry.counters.hit(key_slot, id, hit);
            match groups.iter_mut().find(|(g, _)| *g == id) {
                Some((_, v)) => v.push(pos),
                None => groups.push((id, vec![pos])),
            }
        }
        // Release the table before waiting on anything.
        drop(table);
        let mut parts = Vec::with_capacity(groups.len());
        for (id, positions) in groups {
            let mut args = vec![req.args[0].clone()];
            for &pos in &positions {
                let k = keys[pos];
                args.extend(req.args[k..k + stride].iter().cloned());
            }
            let sub = Request::from_args(args);
            match self.send(id, &sub.raw).await {
                Ok(t) => parts.push((id, positions, t)),
                Err(e) => return Pending::Gather(merge, parts, keys.len(), write, Some(e)),
            }
        }
        Pending::Gather(merge, parts, keys.len(), write, None)
    }

    fn queue_in_multi(&mut self, req: Request, class: Class) -> Pending {
        let refusal = match class {
            Class::Unsupported | Class::PubSub => {
                Some("ERR command not supported in a transaction through the shardcast proxy")
            }
            Class::Arity => Some("ERR wrong number of arguments"),
            Class::Local if !matches!(req.name().as_str(), "PING" | "ECHO" | "TIME") => {
                Some("ERR command not supported in a transaction through the shardcast proxy")
            }
            _ => None,
        };
        if let Some(r) = refusal {
            self.multi_dirty = true;
            return Pending::Local(err(r));
        }
        let keys = match &class {
            Class::Keyed(k) | Class::Blocking(k) | Class::Split(_, k) => k.clone(),
            _ => Vec::new(),
        };
        for &k in &keys {
            let Some(key) = req.args.get(k) else { continue };
            let s = slot(key);
            match self.multi_slot {
                Some(t) if t != s => {
                    // As Redis Cluster does: refuse the command now, abort at EXEC.
                    self.multi_dirty = true;
                    return Pending::Local(err(
                        "CROSSSLOT Keys in request don't hash to the same slot",
                    ));
                }
                _ => self.multi_slot = Some(s),
            }
        }
        if let Some(q) = self.multi.as_mut() {
            q.push(req);
        }
        Pending::Local(Frame::Simple(Bytes::from_static(b"QUEUED")))
    }

    async fn transaction(&mut self, req: Request) -> Pending {
        match req.name().as_str() {
            "MULTI" => {
                if self.multi.is_some() {
                    return Pending::Local(err("ERR MULTI calls can not be nested"));
                }
                self.multi = Some(Vec::new());
                self.multi_slot = None;
                self.multi_dirty = false;
                Pending::Local(Frame::ok())
            }
            "DISCARD" => match self.multi.take() {
                Some(_) => {
                    self.unwatch().await;
                    Pending::Local(Frame::ok())
                }
                None => Pending::Local(err("ERR DISCARD without MULTI")),
            },
            "WATCH" => {
                if self.multi.is_some() {
                    return Pending::Local(err("ERR WATCH inside MULTI is not allowed"));
                }
                let keys: Vec<usize> = (1..req.args.len()).collect();
                // A WATCH counts as a write in flight until the transaction ends, so the
                // slot cannot be cut over under it.
                let guard = match self.pass_gate(&req, &keys, true).await {
                    Ok(g) => g,
                    Err(e) => return Pending::Local(e),
                };
                match self.owner(&req, &keys) {
                    Ok(id) if self.watched.is_none_or(|w| w == id) => {
                        self.watched = Some(id);
                        self.watch_guards.extend(guard);
                        self.forward(id, &req.raw, None).await
                    }
                    Ok(_) | Err(_) => {
                        Pending::Local(err("CROSSSLOT Keys in request don't hash to the same slot"))
                    }
                }
            }
            "UNWATCH" => {
                self.unwatch().await;
                Pending::Local(Frame::ok())
            }
            _ => self.exec().await,
        }
    }

    async fn unwatch(&mut self) {
        let _released = std::mem::take(&mut self.watch_guards);
        if let Some(id) = self.watched.take()
            && let Some(b) = self.backends.get_mut(&id)
        {
            b.queue(b"*1\r\n$7\r\nUNWATCH\r\n");
            let ok = b.flush().await.is_ok() && b.read_raw().await.is_ok();
            if !ok {
                self.backends.remove(&id);
            }
        }
    }

    async fn exec(&mut self) -> Pending {
        let Some(queued) = self.multi.take() else {
            return Pending::Local(err("ERR EXEC without MULTI"));
        };
        if std::mem::take(&mut self.multi_dirty) {
            self.unwatch().await;
            return Pending::Local(err(
                "EXECABORT Transaction discarded because of previous errors.",
            ));
        }
        // Pass the gate for all the transaction's keys at once (the slot may be cut over
        // meanwhile), then route by the table as it is now.
        let mut guards = Vec::new();
        let keyed: Vec<(&Request, Vec<usize>)> = queued
            .iter()
            .map(|req| match classify(req) {
                Class::Keyed(k) | Class::Blocking(k) | Class::Split(_, k) => (req, k),
                _ => (req, Vec::new()),
            })
            .filter(|(_, k)| !k.is_empty())
            .collect();
        let all: Vec<&Bytes> = keyed
            .iter()
            .flat_map(|(req, keys)| keys.iter().filter_map(|&i| req.args.get(i)))
            .collect();
        let writes = keyed.iter().any(|(req, _)| may_write(req));
        match self.pass_gate_keys(all, writes).await {
            Ok(g) => guards.extend(g),
            Err(e) => {
                self.unwatch().await;
                return Pending::Local(e);
            }
        }
        let mut target = self.watched.take();
        guards.append(&mut self.watch_guards);
        for (req, keys) in &keyed {
            match self.owner(req, keys) {
                Ok(id) if target.is_none_or(|t| t == id) => target = Some(id),
                _ => {
                    return Pending::Local(err(
                        "CROSSSLOT Keys in the transaction don't hash to the same slot",
                    ));
                }
            }
        }
        let table = self.shared.topology.table();
        let id = target.unwrap_or_else(|| table.owner(0));
        match self.backend(id).await {
            Ok(b) => {
                b.queue(b"*1\r\n$5\r\nMULTI\r\n");
                for req in &queued {
                    b.queue(&req.raw);
                }
                b.queue(b"*1\r\n$4\r\nEXEC\r\n");
                Pending::Exec(id, queued.len() + 1, guards)
            }
            Err(e) => Pending::Local(e),
        }
    }

    async fn fan_out(&mut self, req: &Request, kind: FanOut) -> Pending {
        let mut parts = Vec::new();
        for id in self.shared.topology.serving() {
            match self.send(id, &req.raw).await {
                Ok(t) => parts.push((id, t)),
                Err(e) => return Pending::FanOut(kind, parts, Some(e)),
            }
        }
        Pending::FanOut(kind, parts, None)
    }

    async fn local(&mut self, req: Request) -> Pending {
        let name = req.name();
        let arg = |i: usize| req.args.get(i).cloned();
        match name.as_str() {
            "PING" => Pending::Local(match arg(1) {
                Some(msg) => Frame::bulk(msg),
                None => Frame::Simple(Bytes::from_static(b"PONG")),
            }),
            "ECHO" => Pending::Local(match arg(1) {
                Some(msg) if req.args.len() == 2 => Frame::bulk(msg),
                _ => err("ERR wrong number of arguments for 'echo' command"),
            }),
            "QUIT" => {
                self.closing = true;
                Pending::Local(Frame::ok())
            }
            "RESET" => {
                self.multi = None;
                self.unwatch().await;
                self.state = ConnState {
                    protocol: 2,
                    ..ConnState::default()
                };
                self.backends.clear();
                Pending::Local(Frame::Simple(Bytes::from_static(b"RESET")))
            }
            "AUTH" => Pending::Local(err(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            )),
            "SELECT" => {
                let Some(db) =
                    arg(1).and_then(|a| std::str::from_utf8(&a).ok()?.parse::<u32>().ok())
                else {
                    return Pending::Local(err("ERR value is not an integer or out of range"));
                };
                self.state.db = db;
                let mut failed = None;
                for b in self.backends.values_mut() {
                    b.queue(&req.raw);
                    let ok = b.flush().await.is_ok();
                    match b.read_frame().await {
                        Ok(f) if ok && !f.is_error() => {}
                        Ok(f) => failed = Some(f),
                        Err(e) => failed = Some(err(format!("ERR {e}"))),
                    }
                }
                Pending::Local(failed.unwrap_or_else(Frame::ok))
            }
            "HELLO" => self.hello(&req).await,
            "CLIENT" => Pending::Local(self.client(&req)),
            "COMMAND" | "TIME" | "LASTSAVE" => {
                let table = self.shared.topology.table();
                self.forward(table.owner(0), &req.raw, None).await
            }
            "INFO" => self.fan_out(&req, FanOut::FirstNonNull).await,
            "DBSIZE" => self.fan_out(&req, FanOut::SumIntegers).await,
            // A flush racing a migration's copy could bring keys back on the target.
            "FLUSHDB" | "FLUSHALL" if self.shared.gate.any_moving() => Pending::Local(err(
                "TRYAGAIN a segment is moving between instances; flush once it has moved",
            )),
            "FLUSHDB" | "FLUSHALL" => self.fan_out(&req, FanOut::AllOk).await,
            "KEYS" => self.fan_out(&req, FanOut::Keys).await,
            "RANDOMKEY" => self.fan_out(&req, FanOut::FirstNonNull).await,
            "SCAN" => self.scan(&req).await,
            _ => Pending::Local(err(format!(
                "ERR unsupported command '{name}' through the shardcast proxy"
            ))),
        }
    }

    async fn hello(&mut self, req: &Request) -> Pending {
        let protocol = match req.args.get(1).map(|a| {
            std::str::from_utf8(a)
                .ok()
                .and_then(|s| s.parse::<u8>().ok())
        }) {
            None => self.state.protocol,
            Some(Some(p @ (2 | 3))) => p,
            Some(_) => return Pending::Local(err("NOPROTO unsupported protocol version")),
        };
        let mut i = 2;
        while i < req.args.len() {
            match req.arg_upper(i).as_deref() {
                Some("SETNAME") if i + 1 < req.args.len() => {
                    self.state.name = Some(req.args[i + 1].clone());
                    i += 2;
                }
                Some("AUTH") if i + 2 < req.args.len() => {
                    return Pending::Local(err(
                        "WRONGPASS invalid username-password pair or user is disabled.",
                    ));
                }
                _ => return Pending::Local(err("ERR syntax error in HELLO option")),
            }
        }
        if protocol != self.state.protocol {
            self.state.protocol = protocol;
            // Existing backend connections speak the old protocol: reopen them lazily.
            self.backends.clear();
        }
        let fields: Vec<(Frame, Frame)> = vec![
            (Frame::bulk("server"), Frame::bulk("redis")),
            (Frame::bulk("version"), Frame::bulk("7.0.0")),
            (Frame::bulk("proto"), Frame::Integer(i64::from(protocol))),
            (Frame::bulk("id"), Frame::Integer(self.id as i64)),
            (Frame::bulk("mode"), Frame::bulk("standalone")),
            (Frame::bulk("role"), Frame::bulk("master")),
            (Frame::bulk("modules"), Frame::Array(Some(Vec::new()))),
            (
                Frame::bulk("proxy"),
                Frame::bulk(format!("shardcast {}", env!("CARGO_PKG_VERSION"))),
            ),
        ];
        Pending::Local(if protocol == 3 {
            Frame::Map(fields)
        } else {
            Frame::Array(Some(fields.into_iter().flat_map(|(k, v)| [k, v]).collect()))
        })
    }

    fn client(&mut self, req: &Request) -> Frame {
        match req.arg_upper(1).as_deref() {
            Some("SETNAME") if req.args.len() == 3 => {
                self.state.name = Some(req.args[2].clone()).filter(|n| !n.is_empty());
                Frame::ok()
            }
            Some("GETNAME") => Frame::Bulk(self.state.name.clone()),
            Some("ID") => Frame::Integer(self.id as i64),
            Some("SETINFO") if req.args.len() == 4 => {
                if req.arg_upper(2).as_deref() == Some("LIB-NAME") {
                    self.state.lib = Some(req.args[3].clone());
                }
                Frame::ok()
            }
            Some("INFO") => Frame::bulk(format!(
                "id={} name={} lib-name={} db={} resp={}\n",
                self.id,
                self.state
                    .name
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default(),
                self.state
                    .lib
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default(),
                self.state.db,
                self.state.protocol
            )),
            _ => err(format!(
                "ERR unsupported CLIENT subcommand '{}' through the shardcast proxy",
                req.arg_upper(1).unwrap_or_default()
            )),
        }
    }

    /// SCAN across instances: the cursor's low 8 bits name the instance (among the active
    /// ones), the rest is that instance's own cursor.
    async fn scan(&mut self, req: &Request) -> Pending {
        let Some(cursor) = req
            .args
            .get(1)
            .and_then(|c| std::str::from_utf8(c).ok()?.parse::<u64>().ok())
        else {
            return Pending::Local(err("ERR invalid cursor"));
        };
        // The cursor's low 8 bits name the instance (by id, so instances changing state
        // mid-scan do not shift it); the rest is that instance's own cursor.
        let serving = self.shared.topology.serving();
        let named = (cursor & 0xff) as InstanceId;
        let (id, inner) = match serving.iter().find(|&&i| i >= named) {
            Some(&i) if cursor == 0 || i == named => (i, cursor >> 8),
            Some(&i) => (i, 0),
            None => {
                return Pending::Local(Frame::Array(Some(vec![
                    Frame::bulk("0"),
                    Frame::Array(Some(Vec::new())),
                ])));
            }
        };
        let mut args = req.args.clone();
        args[1] = Bytes::from(inner.to_string());
        let sub = Request::from_args(args);
        match self.send(id, &sub.raw).await {
            Ok(t) => Pending::Scan(id, t),
            Err(e) => Pending::Local(e),
        }
    }

    /// Produce the reply for one pending request: raw bytes, or a frame to encode.
    async fn answer(
        &mut self,
        p: Pending,
        broken: &mut HashMap<InstanceId, String>,
    ) -> Result<Bytes, Frame> {
        match p {
            Pending::Local(f) => Err(f),
            Pending::Forward(id, t, timing) => {
                let reply = self.read_raw(id, t, broken).await;
                if let (Some(t), Ok(raw)) = (&timing, &reply) {
                    let us = t.start.elapsed().as_micros() as u64;
                    let counters = &self.shared.telemetry.counters;
                    counters.done(t.slot, id, us, raw.len() as u64);
                }
                reply
            }
            Pending::Exec(id, skip, _writes) => {
                // MULTI's +OK and one +QUEUED (or error) per command; EXEC's reply says
                // what happened, including an abort.
                for _ in 0..skip {
                    self.read_raw(id, None, broken).await?;
                }
                self.read_raw(id, None, broken).await
            }
            Pending::Gather(merge, groups, total, _write, unsent) => {
                let mut values: Vec<Frame> = vec![Frame::Bulk(None); total];
                let mut sum = 0i64;
                let mut failure = unsent;
                for (id, positions, t) in groups {
                    match self.read_frame(id, t, broken).await {
                        Ok(f) if f.is_error() => failure = failure.or(Some(f)),
                        Ok(Frame::Integer(n)) => sum += n,
                        Ok(Frame::Array(Some(items))) | Ok(Frame::Set(items)) => {
                            for (pos, item) in positions.into_iter().zip(items) {
                                values[pos] = item;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                if let Some(f) = failure {
                    return Err(f);
                }
                Err(match merge {
                    Merge::Values => Frame::Array(Some(values)),
                    Merge::Ok => Frame::ok(),
                    Merge::Sum => Frame::Integer(sum),
                })
            }
            Pending::FanOut(kind, targets, unsent) => {
                let mut frames = Vec::new();
                let mut failure = unsent;
                for (id, t) in targets {
                    match self.read_frame(id, t, broken).await {
                        Ok(f) if f.is_error() => failure = failure.or(Some(f)),
                        Ok(Frame::Array(Some(keys))) if matches!(kind, FanOut::Keys) => {
                            frames.push(Frame::Array(Some(self.owned(id, keys))))
                        }
                        Ok(f) => frames.push(f),
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                if let Some(f) = failure {
                    return Err(f);
                }
                Err(match kind {
                    FanOut::SumIntegers => Frame::Integer(
                        frames
                            .iter()
                            .map(|f| if let Frame::Integer(n) = f { *n } else { 0 })
                            .sum(),
                    ),
                    FanOut::AllOk => Frame::ok(),
                    FanOut::Keys => Frame::Array(Some(
                        frames
                            .into_iter()
                            .flat_map(|f| match f {
                                Frame::Array(Some(v)) | Frame::Set(v) => v,
                                _ => Vec::new(),
                            })
                            .collect(),
                    )),
                    FanOut::FirstNonNull => frames
                        .into_iter()
                        .find(|f| !matches!(f, Frame::Bulk(None) | Frame::Null))
                        .unwrap_or(Frame::Bulk(None)),
                })
            }
            Pending::Scan(id, t) => {
                let f = self.read_frame(id, t, broken).await?;
                let Frame::Array(Some(mut parts)) = f else {
                    return Err(f);
                };
                if parts.len() != 2 {
                    return Err(err("ERR unexpected SCAN reply from an instance"));
                }
                // Only the keys this instance owns: a migration's partial copy on its
                // target, or an old copy awaiting cleanup, is not shown twice.
                let keys = match parts.pop().expect("two parts") {
                    Frame::Array(Some(keys)) => Frame::Array(Some(self.owned(id, keys))),
                    other => other,
                };
                let inner = match &parts[0] {
                    Frame::Bulk(Some(b)) => std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0),
                    _ => 0,
                };
                let next = if inner != 0 {
                    (inner << 8) | u64::from(id)
                } else {
                    self.shared
                        .topology
                        .serving()
                        .into_iter()
                        .find(|&i| i > id)
                        .map(u64::from)
                        .unwrap_or(0)
                };
                Err(Frame::Array(Some(vec![
                    Frame::bulk(next.to_string()),
                    keys,
                ])))
            }
        }
    }

    /// The keys of `keys` (as an instance listed them) whose slots instance `id` owns: a
    /// migration's partial copy on its target, or an old copy awaiting cleanup, is not
    /// listed twice.
    fn owned(&self, id: InstanceId, keys: Vec<Frame>) -> Vec<Frame> {
        let table = self.shared.topology.current();
        keys.into_iter()
            .filter(|k| match k {
                Frame::Bulk(Some(k)) => table.owner(slot(k)) == id,
                _ => true,
            })
            .collect()
    }

    async fn read_raw(
        &mut self,
        id: InstanceId,
        ticket: Ticket,
        broken: &mut HashMap<InstanceId, String>,
    ) -> Result<Bytes, Frame> {
        if let Some((rx, raw)) = ticket {
            let mut answer = rx.await;
            if not_served(&answer) {
                // Never sent, or refused unexecuted while the instance loads its data after
                // a restart: hold it until the instance serves again.
                answer = self.hold_for_instance(id, &raw).await;
            }
            if !matches!(answer, Ok(Ok(_))) {
                self.shared.telemetry.counters.error(id);
            }
            return match answer {
                Ok(Ok(mut replies)) if !replies.is_empty() => Ok(replies.swap_remove(0)),
                Ok(Err(why)) => Err(err(format!("TRYAGAIN {} {why}", self.instance_name(id)))),
                _ => Err(err(format!(
                    "TRYAGAIN {} did not answer",
                    self.instance_name(id)
                ))),
            };
        }
        if let Some(e) = broken.get(&id) {
            return Err(err(format!(
                "TRYAGAIN connection to {} failed: {e}",
                self.instance_name(id)
            )));
        }
        let Some(b) = self.backends.get_mut(&id) else {
            return Err(err(format!(
                "TRYAGAIN no connection to {}",
                self.instance_name(id)
            )));
        };
        match b.read_raw().await {
            Ok(raw) => Ok(raw),
            Err(e) => {
                broken.insert(id, e.to_string());
                self.shared.unreachable.insert(id, Instant::now());
                Err(err(format!(
                    "TRYAGAIN connection to {} failed: {e}",
                    self.instance_name(id)
                )))
            }
        }
    }

    /// Send `raw` to instance `id` again and again until it is reachable, within the hold
    /// bound.
    async fn hold_for_instance(
        &self,
        id: InstanceId,
        raw: &Bytes,
    ) -> Result<Result<Vec<Bytes>, String>, oneshot::error::RecvError> {
        let bound = Duration::from_millis(self.shared.limits.hold_ms);
        let started = Instant::now();
        loop {
            tokio::time::sleep(RETRY).await;
            let answer = self.shared.mux.send(id as usize, raw.clone(), 1).await;
            if !not_served(&answer) {
                self.shared.gate.record_instance_hold(started.elapsed());
                return answer;
            }
            if started.elapsed() >= bound {
                self.shared.gate.record_instance_hold(started.elapsed());
                return Ok(Err(format!(
                    "{}: held {} ms for it to come back, then given up; retry",
                    super::mux::UNREACHABLE,
                    bound.as_millis()
                )));
            }
        }
    }

    async fn read_frame(
        &mut self,
        id: InstanceId,
        ticket: Ticket,
        broken: &mut HashMap<InstanceId, String>,
    ) -> Result<Frame, Frame> {
        let raw = self.read_raw(id, ticket, broken).await?;
        super::resp::parse(&raw, &super::resp::Limits::default())
            .ok()
            .flatten()
            .map(|(f, _)| f)
            .ok_or_else(|| err("ERR malformed reply from an instance"))
    }
}

//! One client connection: read requests, route them, forward, and answer in order.
//!
//! Each batch of pipelined requests is routed and queued on the backends it needs, every
//! backend is flushed once, and the replies are then read back in request order; a
//! multi-key command split over several instances is answered by merging its parts. State
//! the client set (database, name, protocol) is replayed on every backend connection the
//! session opens. A transaction is queued in the proxy and sent to its single instance at
//! `EXEC`.
//!
//! This module holds the session's state, its read–route–answer loop and the dispatch by
//! command class; the rest is split by concern:
//! - `keyed`: the migration gate, routing by owner, splitting, fan-out, SCAN;
//! - `transaction`: MULTI/EXEC/WATCH;
//! - `local`: commands the proxy answers itself;
//! - `connections`: the multiplexer, the session's own connections, holding;
//! - `answer`: turning replies into the answer of each request.

mod acl;
mod answer;
mod clients;
mod connections;
mod keyed;
mod local;
mod login;
mod transaction;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardcast_sdk::types::InstanceId;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::auth::{User, Users};
use super::backend::Backend;
use super::client::{read_fresh, write_client};
use super::command::{self, Class, FanOut, Merge, classify, is_write, may_write};
use super::gate::{Gate, SlotState, WriteGuard};
use super::mux::Mux;
use super::request::{Request, Requests};
use super::resp::Frame;
use super::server::Connected;
use super::slot::slot;
use crate::config::ProxyLimits;
use crate::sessions::registry::{Entry, Registry};
use crate::telemetry::Telemetry;
use crate::telemetry::counters::{Counters, Hit};
use crate::topology::Topology;

/// A watch serial no connection has: the watch was lost.
const LOST: u64 = 0;

/// How often a held request tries an unreachable instance again.
const RETRY: Duration = Duration::from_millis(25);

/// What every session shares.
pub struct Shared {
    /// Instances and the segment table.
    pub topology: Arc<Topology>,
    /// Limits.
    pub limits: ProxyLimits,
    /// Next session id (shared by every event loop).
    pub next_id: Arc<AtomicU64>,
    /// Clients connected on every event loop, for `limits.maxclients`.
    pub clients: Arc<std::sync::atomic::AtomicUsize>,
    /// The shared connections sessions in the default state use.
    pub mux: Mux,
    /// Request counters and the rest of telemetry.
    pub telemetry: Arc<Telemetry>,
    /// This event loop's own set of request counters.
    pub counters: Arc<Counters>,
    /// Live sessions and their state partitions.
    pub sessions: Arc<Registry>,
    /// Holding and dirty-key tracking for slots that are moving.
    pub gate: Arc<Gate>,
    /// Who may connect, and what each user may run.
    pub users: Arc<Users>,
    /// Set once at shutdown: every session ends after the batch it is serving.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// Clients' TLS, when `[tls]` is configured.
    pub tls: Option<super::tls::ClientTls>,
}

/// Connection state a client set, replayed on new backend connections.
#[derive(Clone, Debug, Default)]
struct ConnState {
    db: u32,
    name: Option<Bytes>,
    lib: Option<Bytes>,
    protocol: u8,
    /// Cluster mode: this session holds its name's record in the shared repository (no
    /// other open session has the name), so its changes are written there.
    owns_name: bool,
}

/// How one request will be answered.
enum Pending {
    /// A reply the proxy already has.
    Local(Frame),
    /// The next reply of one backend, forwarded as it is; timed when it carries a key.
    /// `Effect` says what a lost reply means to the client.
    Forward(InstanceId, Ticket, Option<Timing>, Reply),
    /// Parts from several backends: (instance, positions of its keys in the answer); the
    /// error of a part that could not be sent (the parts sent are still read, so that no
    /// reply is left behind on a connection).
    Gather(
        Merge,
        Vec<(InstanceId, Vec<usize>, Ticket)>,
        usize,
        Option<WriteGuard>,
        Option<Frame>,
        Effect,
    ),
    /// The same command on several instances, merged; as for `Gather`, the error of an
    /// instance it could not be sent to.
    FanOut(FanOut, Vec<(InstanceId, Ticket)>, Option<Frame>, Effect),
    /// A transaction: skip `skip` replies, forward the last.
    Exec(InstanceId, usize, Vec<WriteGuard>),
    /// A SCAN step on one instance.
    Scan(InstanceId, Ticket, u16),
}

/// When and for which slot a keyed request was routed: its reply's latency and size are
/// counted against that slot. A write also carries its guard, dropped once the reply is in.
struct Timing {
    slot: u16,
    start: Instant,
    /// Dropped with the request, once its reply is in.
    _write: Option<WriteGuard>,
}

/// What a request sent to an instance may have done, and so what the client is told when
/// its reply is lost (the connection failed or the instance did not answer in time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// It only reads: nothing changed, `TRYAGAIN` is true.
    Read,
    /// It may have written: whether it ran is unknown, and the error says so, because
    /// `TRYAGAIN` would tell the client that nothing ran.
    Write,
}

impl Effect {
    fn of(req: &Request) -> Effect {
        if may_write(req) {
            Effect::Write
        } else {
            Effect::Read
        }
    }
}

/// What is expected of one reply on a session's own connection: how long it may take once
/// sent (`None`: a blocking command that asked to wait forever), and what its loss means.
#[derive(Clone, Copy, Debug)]
struct Reply {
    within: Option<Duration>,
    effect: Effect,
}

/// The timeout a blocking command gives itself: `Some(None)` when it blocks forever
/// (a zero timeout), `None` when `req` carries none this knows of.
fn blocking_timeout(req: &Request) -> Option<Option<Duration>> {
    let seconds = |a: &Bytes| -> Option<Option<Duration>> {
        let s: f64 = std::str::from_utf8(a).ok()?.parse().ok()?;
        (s.is_finite() && s >= 0.0).then(|| (s > 0.0).then(|| Duration::from_secs_f64(s)))
    };
    match req.name().as_str() {
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" | "BLMOVE" | "BRPOPLPUSH" => {
            seconds(req.args.last()?)
        }
        "BLMPOP" | "BZMPOP" => seconds(req.args.get(1)?),
        "XREAD" | "XREADGROUP" | "WAIT" | "WAITAOF" => {
            let at = match req.name().as_str() {
                "WAIT" => 2,
                "WAITAOF" => 3,
                _ => {
                    req.args
                        .iter()
                        .position(|a| a.eq_ignore_ascii_case(b"BLOCK"))?
                        + 1
                }
            };
            let ms: u64 = std::str::from_utf8(req.args.get(at)?).ok()?.parse().ok()?;
            Some((ms > 0).then(|| Duration::from_millis(ms)))
        }
        _ => None,
    }
}

/// `CLIENT REPLY`'s mode: every reply, none, or none for the next command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replies {
    On,
    Off,
    SkipNext,
}

/// The reply mode `req` asks for: `CLIENT REPLY ON|OFF|SKIP`, or `RESET` (replies on).
fn reply_mode(req: &Request) -> Option<Replies> {
    let first = &req.args[0];
    if first.eq_ignore_ascii_case(b"RESET") {
        return Some(Replies::On);
    }
    if req.args.len() != 3
        || !first.eq_ignore_ascii_case(b"CLIENT")
        || !req.args[1].eq_ignore_ascii_case(b"REPLY")
    {
        return None;
    }
    let mode = &req.args[2];
    [
        (&b"ON"[..], Replies::On),
        (b"OFF", Replies::Off),
        (b"SKIP", Replies::SkipNext),
    ]
    .into_iter()
    .find(|(word, _)| mode.eq_ignore_ascii_case(word))
    .map(|(_, m)| m)
}

/// Where a reply will come from: the shared multiplexer (with the request, to send again if
/// the instance could not be reached), or the session's own connection (`None`).
type Ticket = Option<(oneshot::Receiver<Result<Vec<Bytes>, String>>, Bytes)>;

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
    /// The serial number of the connection the WATCHes went on ([`LOST`] when a later one
    /// went on another connection): `EXEC` fails unless it goes on that same connection,
    /// since a watch dies with its connection.
    watch_serial: Option<u64>,
    /// Keep a cutover off the WATCHed keys' slot until the transaction ends.
    watch_guards: Vec<WriteGuard>,
    closing: bool,
    /// `CLIENT REPLY`: whether the client hears its replies.
    replies: Replies,
    /// The instances this session sent a write to, for `WAIT`.
    wrote: Vec<InstanceId>,
    /// The user this client logged in as; `None` until then when a password is required.
    user: Option<Arc<User>>,
    /// The users' version `user` was read at: a change to the users refreshes it.
    users_version: u64,
    entry: Arc<Entry>,
    connected_at: u64,
    /// This client in the count across loops, until the session ends.
    _connected: Connected,
}

/// The view's record of a session.
fn record(
    id: u64,
    user: &str,
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
        user: user.into(),
        protocol: state.protocol,
        pinned,
        in_transaction,
        subscriptions,
        connected_at,
    }
}

/// Now, in ms since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.sessions.remove(self.id);
    }
}

/// True for the commands that change or read the session's own connections while they are
/// routed (`HELLO`, `SELECT`, `RESET` replace them; `UNWATCH`, `DISCARD`, `EXEC` read from
/// them), and for `WAIT`, which waits for the writes before it: requests routed before them
/// are completed first.
fn is_barrier(req: &Request) -> bool {
    const BARRIERS: [&[u8]; 8] = [
        b"HELLO", b"SELECT", b"RESET", b"UNWATCH", b"DISCARD", b"EXEC", b"WAIT", b"WAITAOF",
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
    pub fn new(shared: Arc<Shared>, connected: Connected) -> Self {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let connected_at = now_ms();
        let users_version = shared.users.version();
        // Without a password to give, a client is `default` from the start.
        let user = (!shared.users.required())
            .then(|| shared.users.get("default"))
            .flatten();
        let state = ConnState {
            protocol: 2,
            ..ConnState::default()
        };
        let entry =
            shared
                .sessions
                .upsert(record(id, "default", &state, None, false, 0, connected_at));
        // Partitions are published once the state leaves the default (database 0, no
        // name, RESP2, no transaction): a default session has nothing to restore, and
        // many idle connections then cost no repository space.
        Session {
            id,
            shared,
            state,
            backends: HashMap::new(),
            multi: None,
            multi_slot: None,
            multi_dirty: false,
            watched: None,
            watch_serial: None,
            watch_guards: Vec::new(),
            closing: false,
            replies: Replies::On,
            wrote: Vec::new(),
            users_version,
            user,
            entry,
            connected_at,
            _connected: connected,
        }
    }

    /// What the session's published record is made of, to tell whether it changed.
    fn published(
        &self,
    ) -> (
        u32,
        Option<Bytes>,
        u8,
        bool,
        Option<InstanceId>,
        Option<usize>,
    ) {
        (
            self.state.db,
            self.state.name.clone(),
            self.state.protocol,
            self.multi.is_some(),
            self.watched,
            self.user.as_ref().map(|u| Arc::as_ptr(u) as usize),
        )
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
            self.user_name(),
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
                ("user".into(), self.user_name().into()),
                ("protocol".into(), self.state.protocol.to_string()),
                (
                    "proxy".into(),
                    self.shared
                        .sessions
                        .cluster()
                        .map(|(name, _)| name.clone())
                        .unwrap_or_default(),
                ),
                (
                    "owns-name".into(),
                    u8::from(self.state.owns_name || self.shared.sessions.cluster().is_none())
                        .to_string(),
                ),
            ],
        );
        let mut tx = vec![("multi".into(), self.multi.is_some().to_string())];
        if let Some(w) = self.watched {
            tx.push(("watching-instance".into(), w.to_string()));
        }
        self.shared.sessions.put(self.id, "transaction", tx);
    }

    /// Serve the client until it leaves, misbehaves, or the proxy shuts down (after the
    /// batch in flight is answered).
    pub async fn run(mut self, socket: TcpStream) -> io::Result<()> {
        let mut client = super::client::accept(socket, self.shared.tls.as_ref()).await?;
        let limits = self.shared.limits;
        let write_limit = Duration::from_millis(limits.client_write_timeout_ms);
        let mut requests = Requests::new(limits.resp());
        let mut closing = self.shared.closing.subscribe();
        // Buffers are held only while there is something in them: an idle connection,
        // between requests too, holds none.
        let mut input = BytesMut::new();
        let mut out = BytesMut::new();
        let control = self.entry.control.clone();
        if let (Ok(peer), Ok(local)) = (client.tcp().peer_addr(), client.tcp().local_addr()) {
            let _ = control.addrs.set((peer, local));
        }
        control.last_ms.store(now_ms(), Ordering::Relaxed);
        loop {
            if input.is_empty() {
                drop(std::mem::take(&mut input));
                let fresh = tokio::select! {
                    fresh = read_fresh(&mut client) => fresh?,
                    _ = closing.wait_for(|c| *c) => return Ok(()),
                    _ = control.kill.notified() => return Ok(()),
                };
                match fresh {
                    Some(bytes) => input = bytes,
                    None => return Ok(()),
                }
            } else {
                // The rest of a request: read into the buffer holding its start. A read that
                // fills less than the buffer shows the socket drained, so the next wait goes
                // straight to the poller instead of through a read that would block.
                if input.capacity() - input.len() < 4096 {
                    input.reserve(64 << 10);
                }
                let read = tokio::select! {
                    read = client.read_buf(&mut input) => read?,
                    _ = closing.wait_for(|c| *c) => return Ok(()),
                    _ = control.kill.notified() => return Ok(()),
                };
                if read == 0 {
                    return Ok(());
                }
            }
            let mut batch: Vec<Request> = Vec::new();
            let before = self.published();
            let mut fatal = None;
            loop {
                match requests.next(&mut input) {
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
            self.entry
                .control
                .last_ms
                .store(now_ms(), Ordering::Relaxed);
            // Boxed: the future of a batch in flight is large, and an idle session should
            // not carry its space.
            let rest = Box::pin(self.serve_until_subscribed(batch, &mut out)).await;
            if self.overflowed(&out) {
                return Ok(());
            }
            // The record is current before the client hears OK (a `CLIENT LIST` sent after
            // a `CLIENT SETNAME` was answered shows the name), and before subscribed mode
            // (`ACL DELUSER` finds the user a subscriber logged in as).
            if before != self.published() {
                self.publish();
            }
            if let Some(rest) = rest {
                write_client(&mut client, &out, write_limit).await?;
                out.clear();
                let setup: Vec<Bytes> = if self.state.protocol == 3 {
                    vec![Bytes::from_static(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")]
                } else {
                    Vec::new()
                };
                let topology = self.shared.topology.clone();
                let bounds = super::pubsub::Bounds {
                    hold: Duration::from_millis(limits.hold_ms),
                    io: Duration::from_millis(limits.request_timeout_ms),
                    client_write: write_limit,
                };
                let registry = self.shared.sessions.clone();
                let id = self.id;
                let publish = move |fields: Vec<(String, String)>, count: u32| {
                    registry.put(id, "subscriptions", fields);
                    registry.set_subscriptions(id, count);
                };
                let users = self.shared.users.clone();
                let known = std::sync::Mutex::new((self.users_version, self.user.clone()));
                let refuse = move |req: &Request| -> Option<Frame> {
                    if users.open() {
                        return None;
                    }
                    let mut known = known.lock().unwrap_or_else(|e| e.into_inner());
                    if known.0 != users.version() {
                        // The users changed: the session's user as it is now.
                        known.0 = users.version();
                        if let Some(u) = &known.1 {
                            match users.get(&u.name) {
                                Some(now) => known.1 = Some(now),
                                None => {
                                    return Some(err(
                                        "ERR the user this client logged in as was deleted",
                                    ));
                                }
                            }
                        }
                    }
                    login::refusal(known.1.as_deref(), req, None)
                };
                let served = Box::pin(super::pubsub::serve(
                    &mut client,
                    &mut input,
                    &mut requests,
                    rest,
                    setup,
                    &topology,
                    bounds,
                    &publish,
                    &refuse,
                    &control.kill,
                ))
                .await;
                if let Err(e) = served {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        tracing::debug!(session = self.id, error = %e, "subscribed session ended");
                    } else {
                        // An instance stayed unreachable past `hold_ms`, the client was too
                        // slow, or it was killed: the client reconnects and subscribes again.
                        tracing::warn!(session = self.id, error = %e, "closing a subscribed session");
                    }
                    return Ok(());
                }
                continue;
            }
            if let Some(e) = fatal {
                tracing::info!(session = self.id, error = %e, "closing client after a protocol error");
                err(format!("ERR {e}")).encode(&mut out);
                write_client(&mut client, &out, write_limit).await?;
                return Ok(());
            }
            write_client(&mut client, &out, write_limit).await?;
            out = BytesMut::new();
            if self.closing {
                return Ok(());
            }
        }
    }

    /// True (and logged) when the replies waiting for the client exceed
    /// `limits.client_output_buffer_bytes`: the client is then disconnected, as Redis
    /// disconnects a client over its output buffer limit.
    fn overflowed(&self, out: &BytesMut) -> bool {
        let limit = self.shared.limits.client_output_buffer_bytes;
        if out.len() <= limit {
            return false;
        }
        tracing::warn!(
            session = self.id,
            bytes = out.len(),
            limit,
            "client output buffer over limits.client_output_buffer_bytes; closing the client"
        );
        true
    }

    /// True when the client is not to hear the next reply: `CLIENT REPLY OFF`, or `SKIP`
    /// before it (which this consumes).
    fn silenced(&mut self) -> bool {
        match self.replies {
            Replies::On => false,
            Replies::Off => true,
            Replies::SkipNext => {
                self.replies = Replies::On;
                true
            }
        }
    }

    /// Apply the reply mode a served `CLIENT REPLY` (or `RESET`, which turns replies on)
    /// set; true when its own reply is silent.
    fn set_replies(&mut self, mode: Replies) -> bool {
        match mode {
            Replies::On => {
                self.replies = Replies::On;
                false
            }
            Replies::Off => {
                self.replies = Replies::Off;
                true
            }
            Replies::SkipNext => {
                if self.replies == Replies::On {
                    self.replies = Replies::SkipNext;
                }
                true
            }
        }
    }

    /// Note that a write went to instance `id`, for a later `WAIT`.
    fn wrote_to(&mut self, id: InstanceId) {
        if self.wrote.last() != Some(&id) && !self.wrote.contains(&id) {
            self.wrote.push(id);
        }
    }

    /// Serve `batch` up to the first request that enters subscribed mode; that request
    /// and the rest are returned for [`super::pubsub::serve`]. A subscription the user may
    /// not make (judged once the requests before it, an `AUTH` say, have run) is answered
    /// here, as Redis answers it, and the client stays out of subscribed mode.
    async fn serve_until_subscribed(
        &mut self,
        mut batch: Vec<Request>,
        out: &mut BytesMut,
    ) -> Option<Vec<Request>> {
        loop {
            let rest = batch
                .iter()
                .position(super::pubsub::enters)
                .map(|i| batch.split_off(i));
            self.serve(batch, out).await;
            let mut rest = rest?;
            let refused = !self.shared.users.open() && self.refused(&rest[0], None).is_some();
            if !refused || self.closing {
                return Some(rest);
            }
            batch = rest.split_off(1);
            self.serve(rest, out).await;
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
            if self.closing {
                break;
            }
            let silent = self.silenced();
            let mode = if self.multi.is_none() {
                reply_mode(&req)
            } else {
                None
            };
            let p = self.route(req).await;
            // A mode change takes effect once the command is served (not refused, not
            // queued in a transaction).
            let silent = match mode {
                Some(m) if matches!(&p, Pending::Local(f) if !f.is_error()) => self.set_replies(m),
                _ => silent,
            };
            pending.push((p, silent));
            if self.closing {
                break;
            }
        }
        if !pending.is_empty() {
            self.complete(pending, out).await;
        }
    }

    /// Send what is queued on the session's connections and append every reply in order.
    async fn complete(&mut self, pending: Vec<(Pending, bool)>, out: &mut BytesMut) {
        let mut broken: HashMap<InstanceId, String> = HashMap::new();
        for (id, b) in self.backends.iter_mut() {
            if b.has_queued()
                && let Err(e) = b.flush().await
            {
                broken.insert(*id, e.to_string());
            }
        }
        for (p, silent) in pending {
            let frame_or_raw = self.answer(p, &mut broken).await;
            match frame_or_raw {
                _ if silent => {}
                Ok(raw) => out.extend_from_slice(&raw),
                Err(frame) => frame.encode(out),
            }
            if out.len() > self.shared.limits.client_output_buffer_bytes {
                // The client is disconnected (checked by the caller); the rest is not read.
                self.closing = true;
                self.backends.clear();
                return;
            }
        }
        for id in broken.keys() {
            self.backends.remove(id);
        }
    }

    async fn route(&mut self, req: Request) -> Pending {
        let class = classify(&req);
        if !self.shared.users.open() {
            let watched: Vec<usize>;
            let keys = match &class {
                // A sharded channel is routed as a key, and judged as a channel.
                _ if login::names_a_channel(&req) => None,
                Class::Keyed(k) | Class::Blocking(k) | Class::Split(_, k) => Some(k.as_slice()),
                Class::Transaction if req.args[0].eq_ignore_ascii_case(b"WATCH") => {
                    watched = (1..req.args.len()).collect();
                    Some(watched.as_slice())
                }
                _ => None,
            };
            if let Some(refusal) = self.refused(&req, keys) {
                if self.multi.is_some() {
                    // As a queued command's error does, this aborts the EXEC.
                    self.multi_dirty = true;
                }
                return Pending::Local(refusal);
            }
        }
        if self.shared.gate.pause.active() && !req.args[0].eq_ignore_ascii_case(b"CLIENT") {
            let write = may_write(&req);
            while let Some(wait) = self.shared.gate.pause.wait_for(write) {
                tokio::time::sleep(wait).await;
            }
        }
        if !self.shared.gate.fence.passes() {
            let bound = Duration::from_millis(self.shared.limits.hold_ms);
            if !self.shared.gate.fence.wait(bound).await {
                return Pending::Local(err(format!(
                    "TRYAGAIN this proxy lost its cluster lease and is rejoining; nothing ran (held {} ms); retry, here or at another proxy",
                    bound.as_millis()
                )));
            }
        }
        if self.multi.is_some()
            && !matches!(req.name().as_str(), "EXEC" | "DISCARD" | "MULTI" | "WATCH")
        {
            return self.queue_in_multi(req, class);
        }
        let blocking = matches!(class, Class::Blocking(_));
        match class {
            Class::Blocking(keys) | Class::Keyed(keys) => {
                let write = match self.pass_gate(&req, &keys, may_write(&req)).await {
                    Ok(w) if blocking => w.map(WriteGuard::pin),
                    Ok(w) => w,
                    Err(e) => return Pending::Local(e),
                };
                self.keyed(&req, &keys, write, blocking).await
            }
            Class::Split(merge, keys) => self.split(&req, merge, &keys).await,
            Class::Local => self.local(req).await,
            Class::Fleet(kind) => self.fan_out(&req, kind).await,
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
            Class::Refused(text) => Pending::Local(err(text)),
            Class::Arity => Pending::Local(err(format!(
                "ERR wrong number of arguments for '{}' command",
                String::from_utf8_lossy(req.args.first().map(|a| a.as_ref()).unwrap_or(b""))
                    .to_lowercase()
            ))),
        }
    }
}

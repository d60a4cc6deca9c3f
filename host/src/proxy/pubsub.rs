//! Subscribed mode: a session's pub/sub on connections of its own.
//!
//! A channel lives on the instance that owns its slot, so `PUBLISH` (routed like a key)
//! and `SUBSCRIBE` meet there; patterns can match any channel, so `PSUBSCRIBE` goes to
//! every serving instance (and to a standby once it is activated). The client's replies
//! are Redis's own, computed in request order ([`Confirmations`]) and released once the
//! instances have confirmed; messages are forwarded after any reply still waiting. When
//! the total falls to zero and every reply is out, the session returns to normal
//! request/response mode.
//!
//! Subscriptions follow their channels: when a migration moves a channel's slot, the
//! session subscribes on the new owner and unsubscribes on the old; when an instance
//! restarts, the session reconnects (within the hold bound) and subscribes again to what
//! lived there. The client sees none of these confirmations. Messages published while a
//! subscription moves can be missed, as pub/sub delivers at most once.
//!
//! Memory is bounded: at most [`PUSH_QUEUE`] messages wait between the instances and the
//! client (past that the instance connections stop being read, and the instance applies its
//! own pub/sub output limit), and a client that accepts nothing for `client_write_timeout`
//! is disconnected, as Redis disconnects a subscriber over its output buffer limit.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use shardcast_sdk::types::InstanceId;
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::client::write_client;
use super::confirmations::Confirmations;
use super::request::{Request, Requests};
use super::resp::{Frame, FrameScanner, Limits, parse};
use super::slot::slot;
use super::stream::Stream;
use crate::topology::Topology;

/// What an instance connection reports.
enum Event {
    /// A reply or a message from an instance.
    Frame(InstanceId, Frame),
    /// The connection to this instance closed.
    Closed(InstanceId),
}

/// Messages and confirmations that may wait between a session's instance connections and
/// its client.
pub const PUSH_QUEUE: usize = 1024;

/// Deadlines of subscribed mode.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// How long an instance may stay unreachable before the session gives up on it.
    pub hold: Duration,
    /// Connecting to an instance and each write to it.
    pub io: Duration,
    /// Each write to the client: a subscriber that reads nothing for this long is closed.
    pub client_write: Duration,
}

/// What one subscribed session holds.
pub struct Subscriptions {
    writers: HashMap<InstanceId, WriteHalf<Stream>>,
    /// The task reading each instance connection: it holds the connection's other half,
    /// so the connection closes only once it is stopped too.
    readers: HashMap<InstanceId, tokio::task::AbortHandle>,
    pushes_tx: mpsc::Sender<Event>,
    pushes: mpsc::Receiver<Event>,
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shard_channels: BTreeSet<Bytes>,
    /// Where each channel and shard channel was subscribed: (is shard, name) → instance.
    homes: HashMap<(bool, Bytes), InstanceId>,
    /// Confirmations of the session's own moves, not for the client: (kind, name) → count.
    swallow: HashMap<(String, Bytes), usize>,
    /// Deadline of connecting to an instance and of each write to it.
    io: Duration,
    /// Instances the patterns are subscribed on: every serving one, as the fleet changes.
    pattern_on: BTreeSet<InstanceId>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for id in self.readers.keys().copied().collect::<Vec<_>>() {
            self.close(id);
        }
    }
}

/// The kind and channel (or pattern) of a subscription confirmation or message:
/// `["subscribe", "news", 1]`.
fn kind_and_name(frame: &Frame) -> Option<(&Bytes, &Bytes)> {
    let (Frame::Array(Some(items)) | Frame::Push(items)) = frame else {
        return None;
    };
    match (items.first(), items.get(1)) {
        (Some(Frame::Bulk(Some(kind))), Some(Frame::Bulk(Some(name)))) => Some((kind, name)),
        _ => None,
    }
}

/// True for the commands that enter subscribed mode.
pub fn enters(req: &Request) -> bool {
    matches!(
        req.name().as_str(),
        "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE"
    )
}

impl Subscriptions {
    fn new(io: Duration) -> Self {
        let (pushes_tx, pushes) = mpsc::channel(PUSH_QUEUE);
        Subscriptions {
            writers: HashMap::new(),
            readers: HashMap::new(),
            pushes_tx,
            pushes,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shard_channels: BTreeSet::new(),
            homes: HashMap::new(),
            swallow: HashMap::new(),
            io,
            pattern_on: BTreeSet::new(),
        }
    }

    /// The `subscriptions` state partition.
    fn partition(&self) -> Vec<(String, String)> {
        let join = |set: &BTreeSet<Bytes>| {
            set.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        };
        vec![
            ("channels".into(), join(&self.channels)),
            ("patterns".into(), join(&self.patterns)),
            ("shard-channels".into(), join(&self.shard_channels)),
        ]
    }

    fn total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard_channels.len()
    }

    async fn send(
        &mut self,
        id: InstanceId,
        address: &str,
        setup: &[Bytes],
        raw: &[u8],
    ) -> io::Result<()> {
        let io_limit = self.io;
        let bounded = |what: &'static str| {
            move |_| io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
        };
        if !self.writers.contains_key(&id) {
            let stream = super::dial::dial(address, io_limit).await?;
            let (mut reader, mut writer) = tokio::io::split(stream);
            let mut hello = BytesMut::new();
            for s in setup {
                hello.extend_from_slice(s);
            }
            tokio::time::timeout(io_limit, send_all(&mut writer, &hello))
                .await
                .map_err(bounded("sending the handshake"))??;
            let tx = self.pushes_tx.clone();
            let skip = setup.len();
            let reader = tokio::spawn(async move {
                let closed = tx.clone();
                let _ = async {
                    let mut buf = BytesMut::with_capacity(16 << 10);
                    let mut scanner = FrameScanner::new(Limits::unbounded());
                    let mut skipped = 0;
                    loop {
                        while let Ok(Some(len)) = scanner.scan(&buf) {
                            let raw = buf.split_to(len).freeze();
                            let Ok(Some((frame, _))) = parse(&raw, &Limits::unbounded()) else {
                                return;
                            };
                            if skipped < skip {
                                skipped += 1;
                                continue;
                            }
                            // Waits while the queue is full: the instance's own output
                            // limit then bounds what it keeps for this connection.
                            if tx.send(Event::Frame(id, frame)).await.is_err() {
                                return;
                            }
                        }
                        match reader.read_buf(&mut buf).await {
                            Ok(n) if n > 0 => {}
                            _ => return,
                        }
                    }
                }
                .await;
                let _ = closed.send(Event::Closed(id)).await;
            });
            self.writers.insert(id, writer);
            self.readers.insert(id, reader.abort_handle());
        }
        let w = self.writers.get_mut(&id).expect("inserted above");
        tokio::time::timeout(io_limit, send_all(w, raw))
            .await
            .map_err(bounded("sending a subscription command"))?
    }

    /// Close the connection to instance `id`: its writer, and the task reading it.
    fn close(&mut self, id: InstanceId) {
        self.writers.remove(&id);
        if let Some(reader) = self.readers.remove(&id) {
            reader.abort();
        }
    }

    /// True (and counted) when `frame` confirms one of the session's own moves.
    fn swallowed(&mut self, frame: &Frame) -> bool {
        let Some((kind, name)) = kind_and_name(frame) else {
            return false;
        };
        let key = (
            String::from_utf8_lossy(kind).to_ascii_lowercase(),
            name.clone(),
        );
        match self.swallow.get_mut(&key) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.swallow.remove(&key);
                }
                true
            }
            None => false,
        }
    }

    /// Send `kind name` to instance `id` on the session's behalf, its confirmation hidden.
    async fn internal(
        &mut self,
        id: InstanceId,
        address: &str,
        setup: &[Bytes],
        kind: &'static str,
        name: &Bytes,
    ) -> io::Result<()> {
        let raw = Request::from_args(vec![Bytes::from_static(kind.as_bytes()), name.clone()]).raw;
        self.send(id, address, setup, &raw).await?;
        // Counted once sent: a send that failed brings no confirmation to hide. (The
        // confirmation is handled by this same task, after this returns.)
        *self
            .swallow
            .entry((kind.to_ascii_lowercase(), name.clone()))
            .or_default() += 1;
        Ok(())
    }

    /// Move every channel whose slot changed owner to its new owner, and subscribe the
    /// patterns on every instance that serves now (an activated standby).
    async fn follow(&mut self, topology: &Topology, setup: &[Bytes]) -> io::Result<()> {
        if !self.patterns.is_empty() {
            let patterns: Vec<Bytes> = self.patterns.iter().cloned().collect();
            for id in topology.serving() {
                if self.pattern_on.insert(id) {
                    for p in &patterns {
                        self.internal(id, &address(topology, id), setup, "PSUBSCRIBE", p)
                            .await?;
                    }
                }
            }
        }
        let table = topology.table();
        let moved: Vec<((bool, Bytes), InstanceId, InstanceId)> = self
            .homes
            .iter()
            .filter_map(|(key, &home)| {
                let owner = table.owner(slot(&key.1));
                (owner != home).then(|| (key.clone(), home, owner))
            })
            .collect();
        for ((shard, name), from, to) in moved {
            let (sub, unsub) = if shard {
                ("SSUBSCRIBE", "SUNSUBSCRIBE")
            } else {
                ("SUBSCRIBE", "UNSUBSCRIBE")
            };
            self.internal(to, &address(topology, to), setup, sub, &name)
                .await?;
            self.homes.insert((shard, name.clone()), to);
            // The old owner may be gone; the subscription there dies with it.
            let _ = self
                .internal(from, &address(topology, from), setup, unsub, &name)
                .await;
        }
        Ok(())
    }

    /// Reconnect to instance `id` (within `bound`) and subscribe again to what lived there.
    async fn resubscribe(
        &mut self,
        id: InstanceId,
        topology: &Topology,
        setup: &[Bytes],
        bound: std::time::Duration,
    ) -> io::Result<()> {
        self.close(id);
        let mine: Vec<(bool, Bytes)> = self
            .homes
            .iter()
            .filter(|(_, h)| **h == id)
            .map(|(k, _)| k.clone())
            .collect();
        let patterns: Vec<Bytes> = self.patterns.iter().cloned().collect();
        if mine.is_empty() && patterns.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let address = address(topology, id);
        loop {
            match tokio::time::timeout(self.io, TcpStream::connect(&address)).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) if started.elapsed() >= bound => return Err(e),
                Err(_) if started.elapsed() >= bound => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
            }
        }
        for (shard, name) in mine {
            let kind = if shard { "SSUBSCRIBE" } else { "SUBSCRIBE" };
            self.internal(id, &address, setup, kind, &name).await?;
        }
        for p in patterns {
            self.internal(id, &address, setup, "PSUBSCRIBE", &p).await?;
        }
        Ok(())
    }

    /// Track an instance's confirmation: the confirmed sets and where each channel lives
    /// (the client's reply is computed by [`Confirmations`]). True when a set changed (a
    /// pattern confirmed by a second instance changes nothing).
    fn confirm(&mut self, from: InstanceId, frame: &Frame) -> bool {
        let Some((kind, name)) = kind_and_name(frame) else {
            return false;
        };
        let kind = String::from_utf8_lossy(kind).to_ascii_lowercase();
        let shard = kind == "ssubscribe" || kind == "sunsubscribe";
        let set = match kind.as_str() {
            "subscribe" | "unsubscribe" => &mut self.channels,
            "psubscribe" | "punsubscribe" => &mut self.patterns,
            "ssubscribe" | "sunsubscribe" => &mut self.shard_channels,
            _ => return false,
        };
        if kind.contains("unsub") {
            self.homes.remove(&(shard, name.clone()));
            set.remove(name)
        } else {
            if !kind.starts_with('p') {
                self.homes.insert((shard, name.clone()), from);
            }
            set.insert(name.clone())
        }
    }
}

/// Where a subscription command (`command`, with these names) goes: per instance, the
/// raw request to send. Channels go to the owners of their slots; patterns to every
/// serving instance; no names, nowhere.
fn plan(
    command: &Bytes,
    names: &[Bytes],
    owner: &(dyn Fn(u16) -> InstanceId + Sync),
    serving: &[InstanceId],
) -> Vec<(InstanceId, Bytes)> {
    let encode = |names: Vec<Bytes>| {
        let mut a = vec![command.clone()];
        a.extend(names);
        Request::from_args(a).raw
    };
    if names.is_empty() {
        return Vec::new();
    }
    if command.eq_ignore_ascii_case(b"PSUBSCRIBE") || command.eq_ignore_ascii_case(b"PUNSUBSCRIBE")
    {
        let raw = encode(names.to_vec());
        return serving.iter().map(|&id| (id, raw.clone())).collect();
    }
    let mut groups: Vec<(InstanceId, Vec<Bytes>)> = Vec::new();
    for n in names {
        let id = owner(slot(n));
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, v)) => v.push(n.clone()),
            None => groups.push((id, vec![n.clone()])),
        }
    }
    groups
        .into_iter()
        .map(|(id, names)| (id, encode(names)))
        .collect()
}

/// The address of instance `id`.
fn address(topology: &Topology, id: InstanceId) -> String {
    topology
        .instances
        .get(id as usize)
        .map(|i| i.address.clone())
        .unwrap_or_default()
}

/// Serve a session in subscribed mode, starting with `first` (the request that entered
/// it) and `rest` (requests pipelined after it). Returns when no subscription is left.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    client: &mut Stream,
    input: &mut BytesMut,
    requests: &mut Requests,
    first: Vec<Request>,
    setup: Vec<Bytes>,
    topology: &Topology,
    bounds: Bounds,
    publish: &(dyn Fn(Vec<(String, String)>, u32) + Sync),
    refuse: &(dyn Fn(&Request) -> Option<Frame> + Sync),
    kill: &tokio::sync::Notify,
) -> io::Result<()> {
    let mut subs = Subscriptions::new(bounds.io);
    let mut queue: std::collections::VecDeque<Request> = first.into();
    // Replies in request order, each released once its instances have confirmed.
    let mut asked = Confirmations::new(!setup.is_empty());
    // A new table (a migration's flip) may move channels: follow them.
    let mut changes = topology.changes();
    loop {
        while let Some(req) = queue.pop_front() {
            // The user's rules hold here too (`NOAUTH`, `NOPERM` for a command or channel).
            if let Some(refusal) = refuse(&req) {
                asked.answer(refusal);
                continue;
            }
            let kind = req.name();
            match kind.as_str() {
                "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE"
                | "SUNSUBSCRIBE" => {
                    if req.args.len() == 1 && !kind.contains("UNSUB") {
                        asked.answer(Frame::error(format!(
                            "ERR wrong number of arguments for '{}' command",
                            kind.to_lowercase()
                        )));
                        continue;
                    }
                    let names = if req.args.len() == 1 {
                        asked.all_of(&kind)
                    } else {
                        req.args[1..].to_vec()
                    };
                    let table = topology.table();
                    let owner = |s: u16| table.owner(s);
                    let serving = topology.serving();
                    let targets = plan(&req.args[0], &names, &owner, &serving);
                    if kind == "PSUBSCRIBE" {
                        subs.pattern_on.extend(serving.iter().copied());
                    }
                    let mut sent = Vec::with_capacity(targets.len());
                    for (id, raw) in targets {
                        subs.send(id, &address(topology, id), &setup, &raw).await?;
                        sent.push((id, count_args(&raw)));
                    }
                    asked.request(&kind, &names, &sent);
                }
                "PING" => asked.answer(Frame::Array(Some(vec![
                    Frame::bulk("pong"),
                    Frame::bulk(req.args.get(1).cloned().unwrap_or_default()),
                ]))),
                "QUIT" => {
                    let mut out = BytesMut::new();
                    for f in asked.ready() {
                        f.encode(&mut out);
                    }
                    Frame::ok().encode(&mut out);
                    write_client(client, &out, bounds.client_write).await?;
                    return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "client quit"));
                }
                _ => asked.answer(Frame::error(format!(
                    "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT are allowed in this context",
                    kind.to_lowercase()
                ))),
            }
        }
        release(client, &mut asked, bounds).await?;
        if asked.total() == 0 && asked.settled() {
            return Ok(());
        }
        tokio::select! {
            event = subs.pushes.recv() => {
                let (from, frame) = match event {
                    Some(Event::Frame(from, frame)) => (from, frame),
                    Some(Event::Closed(id)) => {
                        // The instance went away (a restart): what it owed will not come;
                        // reconnect and subscribe again.
                        asked.forget(id);
                        subs.resubscribe(id, topology, &setup, bounds.hold).await?;
                        continue;
                    }
                    None => return Err(io::Error::other("instance connections closed")),
                };
                if subs.swallowed(&frame) {
                    continue;
                }
                let is_confirmation = matches!(&frame, Frame::Array(Some(i)) | Frame::Push(i)
                    if matches!(i.first(), Some(Frame::Bulk(Some(k))) if k.as_ref().to_ascii_lowercase().ends_with(b"subscribe")));
                if is_confirmation {
                    // The confirmed state (where each channel lives) follows the instances;
                    // the client's reply is the one computed at its request.
                    asked.confirmed(from);
                    if subs.confirm(from, &frame) {
                        publish(subs.partition(), subs.total() as u32);
                    }
                } else if frame.is_error() {
                    asked.confirmed(from);
                    asked.answer(frame);
                } else {
                    // A message: after every reply still waiting, as Redis orders them.
                    asked.answer(frame);
                }
            }
            Ok(()) = changes.changed() => subs.follow(topology, &setup).await?,
            _ = kill.notified() => {
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "killed by CLIENT KILL"));
            }
            read = client.read_buf(input) => {
                if read? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client left"));
                }
                while let Some(req) = requests.next(input).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))? {
                    if !req.args.is_empty() {
                        queue.push_back(req);
                    }
                }
            }
        }
    }
}

/// Write the replies and messages now due to the client.
async fn release(client: &mut Stream, asked: &mut Confirmations, bounds: Bounds) -> io::Result<()> {
    let due = asked.ready();
    if due.is_empty() {
        return Ok(());
    }
    let mut out = BytesMut::new();
    for f in due {
        f.encode(&mut out);
    }
    write_client(client, &out, bounds.client_write).await
}

/// Write `bytes` and flush them through any TLS layer.
async fn send_all(writer: &mut WriteHalf<Stream>, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// Number of channel arguments in a raw subscription command (its array length minus one).
fn count_args(raw: &[u8]) -> usize {
    let end = raw.iter().position(|&b| b == b'\r').unwrap_or(0);
    std::str::from_utf8(raw.get(1..end).unwrap_or_default())
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .map(|n| n.saturating_sub(1))
        .unwrap_or(0)
}

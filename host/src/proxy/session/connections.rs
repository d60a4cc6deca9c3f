//! A session's ways to its instances: the shared multiplexer or connections of its own
//! (opened, brought to the session's state and reopened after a restart), and reading
//! replies back, holding requests while an instance cannot be reached.
//!
//! A request that was never sent may be held and sent again, and past the hold bound gets
//! `TRYAGAIN`. A request whose reply is lost after it was sent (the connection failed, or
//! the instance did not answer within `request_timeout_ms`) is never sent again: a read
//! gets `TRYAGAIN` (it changed nothing), a write an error saying its outcome is unknown.

use super::*;

impl Session {
    pub(super) fn instance_name(&self, id: InstanceId) -> String {
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
    pub(super) async fn backend(&mut self, id: InstanceId) -> Result<&mut Backend, Frame> {
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
            let io_timeout = Duration::from_millis(self.shared.limits.request_timeout_ms);
            let bound = Duration::from_millis(self.shared.limits.hold_ms);
            let started = Instant::now();
            let b = loop {
                let attempt = match Backend::connect(&address, timeout, io_timeout).await {
                    Ok(mut b) => match self.replay(&mut b).await {
                        Ok(()) => Ok(b),
                        Err(e) => Err(format!("failed the handshake: {e}")),
                    },
                    Err(e) => Err(format!("is unreachable: {e}")),
                };
                match attempt {
                    Ok(b) => break b,
                    Err(why) if started.elapsed() >= bound => {
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
            self.backends.insert(id, b);
        }
        Ok(self.backends.get_mut(&id).expect("inserted above"))
    }

    /// Bring a new backend connection to the session's state.
    pub(super) async fn replay(&self, b: &mut Backend) -> io::Result<()> {
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
    pub(super) fn owner(&self, req: &Request, keys: &[usize]) -> Result<InstanceId, Frame> {
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
    pub(super) fn shares_connections(&self) -> bool {
        self.state.db == 0
            && self.state.protocol == 2
            && self.watched.is_none()
            && self.multi.is_none()
    }

    /// Send `raw` to instance `id`: through the multiplexer when the session is in the
    /// default state, else on its own connection.
    pub(super) async fn send(&mut self, id: InstanceId, raw: &Bytes) -> Result<Ticket, Frame> {
        if self.shares_connections() {
            return Ok(Some((
                self.shared.mux.send(id as usize, raw.clone(), 1).await,
                raw.clone(),
            )));
        }
        self.backend(id).await?.queue(raw);
        Ok(None)
    }

    /// What is expected of the reply to `req`: the request deadline (plus a blocking
    /// command's own timeout), and whether it may write.
    pub(super) fn reply_to(&self, req: &Request) -> Reply {
        let base = Duration::from_millis(self.shared.limits.request_timeout_ms);
        Reply {
            within: match blocking_timeout(req) {
                Some(Some(t)) => Some(t + base),
                Some(None) => None,
                None => Some(base),
            },
            effect: Effect::of(req),
        }
    }

    pub(super) async fn forward(
        &mut self,
        id: InstanceId,
        raw: &Bytes,
        timing: Option<Timing>,
        reply: Reply,
    ) -> Pending {
        match self.send(id, raw).await {
            Ok(t) => Pending::Forward(id, t, timing, reply),
            Err(e) => Pending::Local(e),
        }
    }

    /// Send on the session's own connection (blocking commands, transactions).
    pub(super) async fn forward_pinned(
        &mut self,
        id: InstanceId,
        raw: &[u8],
        timing: Option<Timing>,
        reply: Reply,
    ) -> Pending {
        match self.backend(id).await {
            Ok(b) => {
                b.queue(raw);
                Pending::Forward(id, None, timing, reply)
            }
            Err(e) => Pending::Local(e),
        }
    }

    /// The answer to a request whose reply was lost after it was sent: `TRYAGAIN` for a
    /// read, which changed nothing; for a write, an error saying that whether it ran is
    /// unknown (a retry could apply it twice).
    pub(super) fn lost(&self, id: InstanceId, why: &str, effect: Effect) -> Frame {
        match effect {
            Effect::Read => err(format!(
                "TRYAGAIN {} {why}; the request only reads: retry",
                self.instance_name(id)
            )),
            Effect::Write => err(format!(
                "ERR outcome unknown: {} {why} after the request was sent; it may or may not have been applied: read before retrying",
                self.instance_name(id)
            )),
        }
    }

    pub(super) async fn read_raw(
        &mut self,
        id: InstanceId,
        ticket: Ticket,
        broken: &mut HashMap<InstanceId, String>,
        reply: Reply,
    ) -> Result<Bytes, Frame> {
        if let Some((rx, raw)) = ticket {
            let mut answer = rx.await;
            if not_served(&answer) {
                // Never sent, or refused unexecuted while the instance loads its data after
                // a restart: hold it until the instance serves again.
                answer = self.hold_for_instance(id, &raw).await;
            }
            if !matches!(answer, Ok(Ok(_))) {
                self.shared.counters.error(id);
            }
            return match answer {
                Ok(Ok(mut replies)) if !replies.is_empty() => Ok(replies.swap_remove(0)),
                Ok(Ok(_)) => Err(self.lost(id, "gave no reply", reply.effect)),
                Ok(Err(why)) if why.starts_with(crate::proxy::mux::UNREACHABLE) => {
                    Err(err(format!("TRYAGAIN {} {why}", self.instance_name(id))))
                }
                Ok(Err(why)) => Err(self.lost(id, &why, reply.effect)),
                Err(_) => Err(self.lost(
                    id,
                    "was being served by a multiplexer that stopped",
                    reply.effect,
                )),
            };
        }
        if let Some(e) = broken.get(&id) {
            let why = format!("connection failed ({e})");
            return Err(self.lost(id, &why, reply.effect));
        }
        let Some(b) = self.backends.get_mut(&id) else {
            return Err(self.lost(id, "lost its connection", reply.effect));
        };
        match b.read_raw_within(reply.within).await {
            Ok(raw) => Ok(raw),
            Err(e) => {
                self.shared.counters.error(id);
                broken.insert(id, e.to_string());
                let why = format!("connection failed ({e})");
                Err(self.lost(id, &why, reply.effect))
            }
        }
    }

    /// Send `raw` to instance `id` again and again until it is reachable, within the hold
    /// bound.
    pub(super) async fn hold_for_instance(
        &self,
        id: InstanceId,
        raw: &Bytes,
    ) -> Result<Result<Vec<Bytes>, String>, oneshot::error::RecvError> {
        let bound = Duration::from_millis(self.shared.limits.hold_ms);
        let started = Instant::now();
        loop {
            tokio::time::sleep(RETRY).await;
            let answer = self
                .shared
                .mux
                .send(id as usize, raw.clone(), 1)
                .await
                .await;
            if !not_served(&answer) {
                self.shared.gate.record_instance_hold(started.elapsed());
                return answer;
            }
            if started.elapsed() >= bound {
                self.shared.gate.record_instance_hold(started.elapsed());
                let last = match &answer {
                    Ok(Err(why)) => why
                        .strip_prefix(crate::proxy::mux::UNREACHABLE)
                        .unwrap_or(why)
                        .trim_start_matches([':', ' ']),
                    _ => "no answer",
                };
                return Ok(Err(format!(
                    "{}: held {} ms for it to come back (last: {last}), then given up; retry",
                    crate::proxy::mux::UNREACHABLE,
                    bound.as_millis()
                )));
            }
        }
    }

    pub(super) async fn read_frame(
        &mut self,
        id: InstanceId,
        ticket: Ticket,
        broken: &mut HashMap<InstanceId, String>,
        reply: Reply,
    ) -> Result<Frame, Frame> {
        let raw = self.read_raw(id, ticket, broken, reply).await?;
        crate::proxy::resp::parse(&raw, &crate::proxy::resp::Limits::unbounded())
            .ok()
            .flatten()
            .map(|(f, _)| f)
            .ok_or_else(|| err("ERR malformed reply from an instance"))
    }
}

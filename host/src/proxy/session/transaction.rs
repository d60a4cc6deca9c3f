//! Transactions: MULTI queued in the proxy, WATCH on the owning instance (counted at the
//! gate so the slot is not cut over under it), EXEC sent to the one instance.
//!
//! A watch lives on one connection to one instance. When that connection is lost (the
//! instance restarted, the connection failed, `HELLO` replaced it), the watch is gone with
//! it, and so the `EXEC` fails with a nil reply, as Redis answers when a watched key
//! changed: sending the transaction on a new connection, where nothing is watched, could
//! overwrite a newer write.

use super::*;

impl Session {
    pub(super) fn queue_in_multi(&mut self, req: Request, class: Class) -> Pending {
        const NOT_IN_MULTI: &str =
            "ERR command not supported in a transaction through the shardcast proxy";
        let refusal = match &class {
            Class::Unsupported | Class::PubSub => Some(NOT_IN_MULTI.to_owned()),
            Class::Arity => Some("ERR wrong number of arguments".to_owned()),
            Class::Refused(text) => Some(text.clone()),
            Class::Local if !matches!(req.name().as_str(), "PING" | "ECHO" | "TIME") => {
                Some(NOT_IN_MULTI.to_owned())
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

    pub(super) async fn transaction(&mut self, req: Request) -> Pending {
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
                        self.watch_guards.extend(guard.map(WriteGuard::pin));
                        let reply = self.reply_to(&req);
                        let sent = self.forward(id, &req.raw, None, reply).await;
                        // Every WATCH must be on one connection; otherwise one is lost.
                        let serial = self.backends.get(&id).map(Backend::serial);
                        self.watch_serial = match (self.watch_serial, serial) {
                            (None, Some(s)) => Some(s),
                            (Some(w), Some(s)) if w == s => Some(w),
                            _ => Some(LOST),
                        };
                        sent
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

    pub(super) async fn unwatch(&mut self) {
        let _released = std::mem::take(&mut self.watch_guards);
        self.watch_serial = None;
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

    pub(super) async fn exec(&mut self) -> Pending {
        let Some(queued) = self.multi.take() else {
            return Pending::Local(err("ERR EXEC without MULTI"));
        };
        if std::mem::take(&mut self.multi_dirty) {
            self.unwatch().await;
            return Pending::Local(err(
                "EXECABORT Transaction discarded because of previous errors.",
            ));
        }
        // The user's rules as they are now: they may have changed since a command was
        // queued.
        if !self.shared.users.open() {
            for req in &queued {
                let keys = match classify(req) {
                    _ if super::login::names_a_channel(req) => None,
                    Class::Keyed(k) | Class::Blocking(k) | Class::Split(_, k) => Some(k),
                    _ => None,
                };
                if let Some(why) = self.refused(req, keys.as_deref()) {
                    self.unwatch().await;
                    return Pending::Local(err(format!(
                        "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call; the transaction was discarded: {}",
                        why.error_text().unwrap_or_default()
                    )));
                }
            }
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
        let mut target = self.watched;
        for (req, keys) in &keyed {
            match self.owner(req, keys) {
                Ok(id) if target.is_none_or(|t| t == id) => target = Some(id),
                _ => {
                    drop(guards);
                    self.unwatch().await;
                    return Pending::Local(err(
                        "CROSSSLOT Keys in the transaction don't hash to the same slot",
                    ));
                }
            }
        }
        let watched = self.watched.take();
        let watch_serial = self.watch_serial.take();
        guards.append(&mut self.watch_guards);
        let table = self.shared.topology.table();
        let id = target.unwrap_or_else(|| table.owner(0));
        let protocol = self.state.protocol;
        match self.backend(id).await {
            Ok(b) => {
                if watched.is_some() && watch_serial != Some(b.serial()) {
                    // The watch died with its connection: fail as for a changed key. The
                    // connection now in use holds no watch to clear.
                    return Pending::Local(if protocol == 3 {
                        Frame::Null
                    } else {
                        Frame::Array(None)
                    });
                }
                b.queue(b"*1\r\n$5\r\nMULTI\r\n");
                for req in &queued {
                    b.queue(&req.raw);
                }
                b.queue(b"*1\r\n$4\r\nEXEC\r\n");
                if writes {
                    self.wrote_to(id);
                }
                Pending::Exec(id, queued.len() + 1, guards)
            }
            Err(e) => Pending::Local(e),
        }
    }
}

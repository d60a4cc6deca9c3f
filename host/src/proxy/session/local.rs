//! Commands the proxy answers itself: PING, ECHO, SELECT, HELLO, CLIENT, INFO and the
//! rest of the connection and server commands.

use super::*;

impl Session {
    pub(super) async fn local(&mut self, req: Request) -> Pending {
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
                self.wrote.clear();
                // Logged out, as Redis's RESET does (`default` when no password is needed);
                // replies are turned on by the caller.
                let users = &self.shared.users;
                self.users_version = users.version();
                self.user = (!users.required()).then(|| users.get("default")).flatten();
                Pending::Local(Frame::Simple(Bytes::from_static(b"RESET")))
            }
            "AUTH" => Pending::Local(self.auth(&req)),
            "SELECT" => {
                let Some(db) =
                    arg(1).and_then(|a| std::str::from_utf8(&a).ok()?.parse::<u32>().ok())
                else {
                    return Pending::Local(err("ERR value is not an integer or out of range"));
                };
                Pending::Local(self.select(db, &req).await)
            }
            "HELLO" => self.hello(&req).await,
            "CLIENT" => {
                let answer = self.client(&req);
                if req.arg_upper(1).as_deref() == Some("SETNAME") && !answer.is_error() {
                    self.resume_named().await;
                }
                Pending::Local(answer)
            }
            "COMMAND" | "TIME" | "LASTSAVE" => {
                let table = self.shared.topology.table();
                let reply = self.reply_to(&req);
                self.forward(table.owner(0), &req.raw, None, reply).await
            }
            "INFO" if crate::proxy::fleet::wants_section(&req.args) => {
                self.fan_out(&req, FanOut::Info).await
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
            "WAIT" | "WAITAOF" => Pending::Local(self.wait(&req).await),
            "SCAN" => self.scan(&req).await,
            "ACL" => Pending::Local(self.acl(&req)),
            _ => Pending::Local(err(format!(
                "ERR unsupported command '{name}' through the shardcast proxy"
            ))),
        }
    }

    /// `WAIT numreplicas timeout` (and `WAITAOF`): on every instance this session wrote
    /// to, the least of their answers. The session's writes may have gone on shared
    /// connections, and an instance counts a `WAIT` against its own connection's last
    /// write; so a `PUBLISH` to a channel nobody hears goes first on the session's own
    /// connection: it is propagated to replicas (and the AOF) after every write the
    /// session made (those were answered before: `WAIT` is a barrier), and the `WAIT`
    /// after it waits for all of them. A session that wrote nothing asks any instance,
    /// which answers at once, as Redis does.
    async fn wait(&mut self, req: &Request) -> Frame {
        let mark = Request::from_args(vec![
            Bytes::from_static(b"PUBLISH"),
            Bytes::from_static(b"__shardcast:wait__"),
            Bytes::from_static(b"1"),
        ])
        .raw;
        let targets = if self.wrote.is_empty() {
            match self.shared.topology.serving().first() {
                Some(&id) => vec![id],
                None => return err("ERR no instance is serving"),
            }
        } else {
            self.wrote.clone()
        };
        let within = blocking_timeout(req)
            .flatten()
            .map(|t| t + Duration::from_millis(self.shared.limits.request_timeout_ms));
        let marked = !self.wrote.is_empty();
        // On any failure every target's connection is dropped: replies sent for on one of
        // them would otherwise be read as the answers of later requests.
        for &id in &targets {
            let b = match self.backend(id).await {
                Ok(b) => b,
                Err(e) => {
                    self.drop_backends(&targets);
                    return e;
                }
            };
            if marked {
                b.queue(&mark);
            }
            b.queue(&req.raw);
            if let Err(e) = b.flush().await {
                self.drop_backends(&targets);
                return err(format!("TRYAGAIN {}: {e}", self.instance_name(id)));
            }
        }
        let mut least: Option<Frame> = None;
        for &id in &targets {
            let Some(b) = self.backends.get_mut(&id) else {
                continue;
            };
            let read = async {
                if marked {
                    b.read_frame().await?;
                }
                let raw = b.read_raw_within(within).await?;
                super::super::resp::parse(&raw, &super::super::resp::Limits::unbounded())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
                    .map(|(f, _)| f)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a partial reply"))
            };
            let frame = match read.await {
                Ok(f) => f,
                Err(e) => {
                    self.drop_backends(&targets);
                    return err(format!("TRYAGAIN {}: {e}", self.instance_name(id)));
                }
            };
            least = Some(match least {
                None => frame,
                Some(l) => fewer(l, frame),
            });
        }
        least.unwrap_or_else(|| Frame::Integer(0))
    }

    /// Drop the session's own connections to `ids` (they reopen on next use).
    fn drop_backends(&mut self, ids: &[InstanceId]) {
        for id in ids {
            self.backends.remove(id);
        }
    }

    /// `SELECT db`: checked by an instance before the session takes it (a database the
    /// instances do not have is refused now, not on every later request), then applied to
    /// every connection the session has.
    async fn select(&mut self, db: u32, req: &Request) -> Frame {
        if self.backends.is_empty() {
            let serving = self.shared.topology.serving();
            let telemetry = &self.shared.telemetry;
            let Some(&id) = serving
                .iter()
                .find(|&&i| telemetry.is_up(i))
                .or(serving.first())
            else {
                return err("ERR no instance is serving");
            };
            if let Err(e) = self.backend(id).await {
                return e;
            }
        }
        let mut failed = None;
        // Connections that switched, or whose state is unknown (the exchange failed):
        // dropped if the SELECT is refused.
        let mut switched = Vec::new();
        for (id, b) in self.backends.iter_mut() {
            b.queue(&req.raw);
            let answer = match b.flush().await {
                Ok(()) => b.read_frame().await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(f) if !f.is_error() => switched.push(*id),
                Ok(f) => failed = failed.or(Some(f)),
                Err(e) => {
                    switched.push(*id);
                    failed = failed.or(Some(err(format!(
                        "TRYAGAIN {} did not confirm SELECT ({e}); the database is unchanged",
                        self.shared
                            .topology
                            .instances
                            .get(*id as usize)
                            .map(|i| i.name.as_str())
                            .unwrap_or("an instance")
                    ))));
                }
            }
        }
        match failed {
            None => {
                self.state.db = db;
                Frame::ok()
            }
            Some(f) => {
                // Connections that did switch are dropped: they reopen in the session's
                // database, which has not changed.
                for id in switched {
                    self.backends.remove(&id);
                }
                if self.watched.is_some() {
                    // A watch on a dropped connection is gone.
                    self.watch_serial = Some(LOST);
                }
                f
            }
        }
    }

    /// Cluster mode: a client that names itself takes over its name's record in the
    /// repository the proxies share, once the session that had it is gone (it ended, or
    /// its proxy died: see `Registry::cluster`), and, while in database 0, the database the
    /// name last had: a client reconnecting to another proxy after its proxy died finds
    /// its `connection` partition. A session still open elsewhere under the same name
    /// keeps the record and its database is not copied. Only a session of the same user
    /// is resumed; the protocol is the one this connection's `HELLO` asked for, since a
    /// client parses replies by what it asked.
    async fn resume_named(&mut self) {
        let repository = self.shared.sessions.repository().clone();
        let Some((me, alive)) = self.shared.sessions.cluster().cloned() else {
            return;
        };
        let Some(name) = self.state.name.clone() else {
            return;
        };
        if !repository.shared() {
            return;
        }
        self.state.owns_name = false;
        let name = String::from_utf8_lossy(&name).into_owned();
        let found = tokio::task::spawn_blocking(move || repository.named(&name)).await;
        let Ok(found) = found else {
            return;
        };
        let Some(fields) = found else {
            // Nobody had the name.
            self.state.owns_name = true;
            return;
        };
        let field = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        let gone = field("ended") == Some("1")
            || match field("proxy") {
                Some(proxy) if !proxy.is_empty() && proxy != me => !alive(proxy.to_owned()).await,
                _ => false,
            };
        if !gone || field("user") != Some(self.user_name()) {
            return;
        }
        self.state.owns_name = true;
        let db = field("db").and_then(|d| d.parse::<u32>().ok()).unwrap_or(0);
        if self.state.db != 0 || db == 0 {
            return;
        }
        let select = Request::from_args(vec![
            Bytes::from_static(b"SELECT"),
            Bytes::from(db.to_string()),
        ]);
        let answer = self.select(db, &select).await;
        if answer.is_error() {
            tracing::debug!(
                session = self.id,
                db,
                "the named client's database could not be resumed: {answer:?}"
            );
        } else {
            tracing::debug!(session = self.id, db, "resumed the named client's database");
        }
    }

    pub(super) async fn hello(&mut self, req: &Request) -> Pending {
        let protocol = match req.args.get(1).map(|a| {
            std::str::from_utf8(a)
                .ok()
                .and_then(|s| s.parse::<u8>().ok())
        }) {
            None => self.state.protocol,
            Some(Some(p @ (2 | 3))) => p,
            Some(_) => return Pending::Local(err("NOPROTO unsupported protocol version")),
        };
        let logs_in = req.args[2.min(req.args.len())..]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(b"auth"));
        if !self.authenticated() && !logs_in {
            return Pending::Local(err(super::login::HELLO_NOAUTH));
        }
        let mut i = 2;
        let mut named = false;
        while i < req.args.len() {
            match req.arg_upper(i).as_deref() {
                Some("SETNAME") if i + 1 < req.args.len() => {
                    if let Err(e) = valid_name(&req.args[i + 1]) {
                        return Pending::Local(e);
                    }
                    self.state.name = Some(req.args[i + 1].clone()).filter(|n| !n.is_empty());
                    named = true;
                    i += 2;
                }
                Some("AUTH") if i + 2 < req.args.len() => {
                    if let Err(e) = self.login(&req.args[i + 1], &req.args[i + 2]) {
                        return Pending::Local(e);
                    }
                    i += 3;
                }
                _ => return Pending::Local(err("ERR syntax error in HELLO option")),
            }
        }
        if protocol != self.state.protocol {
            self.state.protocol = protocol;
            // Existing backend connections speak the old protocol: reopen them lazily.
            self.backends.clear();
        }
        if named {
            self.resume_named().await;
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

    pub(super) fn client(&mut self, req: &Request) -> Frame {
        match req.arg_upper(1).as_deref() {
            Some("SETNAME") if req.args.len() == 3 => match valid_name(&req.args[2]) {
                Ok(()) => {
                    self.state.name = Some(req.args[2].clone()).filter(|n| !n.is_empty());
                    Frame::ok()
                }
                Err(e) => e,
            },
            Some("GETNAME") => Frame::Bulk(self.state.name.clone()),
            Some("ID") => Frame::Integer(self.id as i64),
            Some("SETINFO") if req.args.len() == 4 => {
                if req.arg_upper(2).as_deref() == Some("LIB-NAME") {
                    self.state.lib = Some(req.args[3].clone());
                }
                Frame::ok()
            }
            Some("INFO") => self.client_info(),
            Some("LIST") => self.client_list(req),
            Some("KILL") if req.args.len() >= 3 => self.client_kill(req),
            Some("PAUSE") if (3..=4).contains(&req.args.len()) => {
                let ms = std::str::from_utf8(&req.args[2])
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok());
                let writes_only = match req.arg_upper(3).as_deref() {
                    None | Some("ALL") => false,
                    Some("WRITE") => true,
                    Some(_) => return err("ERR syntax error"),
                };
                match ms {
                    Some(ms) => {
                        self.shared.gate.pause.pause(ms, writes_only);
                        Frame::ok()
                    }
                    None => err("ERR timeout is not an integer or out of range"),
                }
            }
            Some("UNPAUSE") => {
                self.shared.gate.pause.unpause();
                Frame::ok()
            }
            // The mode itself is set as the request is read (`Session::silenced`).
            Some("REPLY") if req.args.len() == 3 => match req.arg_upper(2).as_deref() {
                Some("ON" | "OFF" | "SKIP") => Frame::ok(),
                _ => err("ERR syntax error"),
            },
            Some("NO-EVICT") if req.args.len() == 3 => match req.arg_upper(2).as_deref() {
                Some("ON" | "OFF") => Frame::ok(),
                _ => err("ERR syntax error"),
            },
            _ => err(format!(
                "ERR unsupported CLIENT subcommand '{}' through the shardcast proxy",
                req.arg_upper(1).unwrap_or_default()
            )),
        }
    }
}

/// A client name as Redis accepts it (printable ASCII, no spaces), checked before the
/// session takes it: a name every instance refuses would fail every later request.
fn valid_name(name: &[u8]) -> Result<(), Frame> {
    if name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err(err(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

impl Session {
    /// INFO's `# Shardcast` section: the fleet, the segment table, moving slots, held
    /// requests and sessions, as this proxy sees them.
    pub(super) fn info_section(&self) -> String {
        let topology = &self.shared.topology;
        let table = topology.current();
        let held = self.shared.gate.held();
        let restarts = self.shared.gate.instance_holds();
        let states: Vec<String> = topology
            .instances
            .iter()
            .zip(topology.states())
            .map(|(i, s)| format!("{}={}", i.name, s.name()))
            .collect();
        format!(
            "# Shardcast\r\nshardcast_version:{}\r\ninstances:{}\r\ninstances_serving:{}\r\n\
             instance_states:{}\r\nsegments:{}\r\ntable_epoch:{}\r\nslots_moving:{}\r\n\
             cutover_held_requests:{}\r\ncutover_held_max_us:{}\r\n\
             restart_held_requests:{}\r\nsessions:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            topology.instances.len(),
            topology.serving().len(),
            states.join(","),
            table.segments.len(),
            table.epoch,
            u8::from(self.shared.gate.any_moving()),
            held.requests,
            held.max_us,
            restarts.requests,
            self.shared.sessions.len(),
        )
    }
}

/// The lesser of two `WAIT` (integer) or `WAITAOF` (two integers) answers; an error wins.
fn fewer(a: Frame, b: Frame) -> Frame {
    match (a, b) {
        (e, _) if e.is_error() => e,
        (_, e) if e.is_error() => e,
        (Frame::Integer(x), Frame::Integer(y)) => Frame::Integer(x.min(y)),
        (Frame::Array(Some(x)), Frame::Array(Some(y))) if x.len() == y.len() => Frame::Array(Some(
            x.into_iter().zip(y).map(|(p, q)| fewer(p, q)).collect(),
        )),
        (a, _) => a,
    }
}

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
                let reply = self.reply_to(&req);
                self.forward(table.owner(0), &req.raw, None, reply).await
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

    pub(super) fn client(&mut self, req: &Request) -> Frame {
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
}

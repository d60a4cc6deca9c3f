//! `ACL` on the proxy's own users (see [`crate::proxy::auth`]): `SETUSER`, `DELUSER`,
//! `GETUSER`, `LIST`, `USERS`, `DRYRUN`, `WHOAMI`, `LOG`. Changes live in memory until the
//! proxy restarts; `[auth]` is where users are kept, so `ACL SAVE`/`LOAD` are refused.
//! `DELUSER` disconnects the deleted users' clients, as Redis does.

use super::*;

impl Session {
    pub(super) fn acl(&mut self, req: &Request) -> Frame {
        let users = self.shared.users.clone();
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        match req.arg_upper(1).as_deref() {
            Some("WHOAMI") => Frame::bulk(self.user_name().to_owned()),
            Some("SETUSER") if req.args.len() >= 3 => {
                match users.set(&text(&req.args[2]), &req.args[3..]) {
                    Ok(()) => Frame::ok(),
                    Err(e) => err(format!("ERR Error in ACL SETUSER modifier {e}")),
                }
            }
            Some("DELUSER") if req.args.len() >= 3 => match users.delete(&req.args[2..]) {
                Ok(n) => {
                    for e in self.shared.sessions.entries() {
                        let gone = req.args[2..]
                            .iter()
                            .any(|u| u.as_ref() == e.session.user.as_bytes());
                        if gone && e.session.id != self.id {
                            e.control.kill();
                        } else if gone {
                            self.closing = true;
                        }
                    }
                    Frame::Integer(n as i64)
                }
                Err(e) => err(e),
            },
            Some("GETUSER") if req.args.len() == 3 => match users.get(&text(&req.args[2])) {
                None => Frame::Bulk(None),
                Some(u) => {
                    let (flags, passwords, commands, keys, channels) = u.fields();
                    let array = |v: Vec<Frame>| Frame::Array(Some(v));
                    array(vec![
                        Frame::bulk("flags"),
                        array(flags.into_iter().map(Frame::bulk).collect()),
                        Frame::bulk("passwords"),
                        array(passwords.into_iter().map(Frame::bulk).collect()),
                        Frame::bulk("commands"),
                        Frame::bulk(commands),
                        Frame::bulk("keys"),
                        Frame::bulk(keys),
                        Frame::bulk("channels"),
                        Frame::bulk(channels),
                        Frame::bulk("selectors"),
                        array(Vec::new()),
                    ])
                }
            },
            Some("LIST") => Frame::Array(Some(
                users
                    .all()
                    .iter()
                    .map(|u| Frame::bulk(u.describe()))
                    .collect(),
            )),
            Some("USERS") => Frame::Array(Some(
                users
                    .all()
                    .iter()
                    .map(|u| Frame::bulk(u.name.clone()))
                    .collect(),
            )),
            Some("DRYRUN") if req.args.len() >= 4 => {
                let Some(user) = users.get(&text(&req.args[2])) else {
                    return err(format!("ERR User '{}' not found", text(&req.args[2])));
                };
                let probe = Request::from_args(req.args[3..].to_vec());
                let keys = match classify(&probe) {
                    _ if super::login::names_a_channel(&probe) => None,
                    Class::Keyed(k) | Class::Blocking(k) | Class::Split(_, k) => Some(k),
                    Class::Arity => {
                        return err(format!(
                            "ERR wrong number of arguments for '{}' command",
                            text(&req.args[3]).to_lowercase()
                        ));
                    }
                    _ => None,
                };
                match super::login::refusal(Some(&user), &probe, keys.as_deref()) {
                    None => Frame::ok(),
                    Some(Frame::Error(e)) => {
                        let why = String::from_utf8_lossy(&e).into_owned();
                        let why = why.strip_prefix("NOPERM ").unwrap_or(&why);
                        let mut why = why.to_owned();
                        if let Some(first) = why.get_mut(0..1) {
                            first.make_ascii_uppercase();
                        }
                        Frame::bulk(why)
                    }
                    Some(other) => other,
                }
            }
            Some("LOG") => match req.arg_upper(2).as_deref() {
                Some("RESET") => Frame::ok(),
                _ => Frame::Array(Some(Vec::new())),
            },
            Some("SAVE" | "LOAD") => err(
                "ERR shardcast keeps its users in the [auth] section of its configuration; ACL changes made at run time last until it restarts",
            ),
            _ => err(format!(
                "ERR unsupported ACL subcommand '{}' through the shardcast proxy",
                req.arg_upper(1).unwrap_or_default()
            )),
        }
    }
}

//! Authentication in a session: `AUTH`, `HELLO ... AUTH`, and the check before every
//! command once a password is required (`NOAUTH` before login, `NOPERM` for a command the
//! user's rules do not allow), worded as redis-server words them. A failed login is
//! logged with the session and user name, never the password.

use super::*;

/// Redis's answer to a wrong password or an unknown user.
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Why `user` (`None`: not logged in) may not run `req` now: `NOAUTH` before login,
/// `NOPERM` for a command, key or channel outside the user's rules. `keys` are the
/// positions of the request's keys, when known.
pub(super) fn refusal(user: Option<&User>, req: &Request, keys: Option<&[usize]>) -> Option<Frame> {
    let (name, allowed) = command::access(&req.args, |name, spec| {
        spec.has_flag("no_auth") || user.is_some_and(|u| u.may_run(name, &spec.acl))
    })?;
    let Some(user) = user else {
        return (!allowed).then(|| err("NOAUTH Authentication required."));
    };
    if !allowed {
        return Some(err(format!(
            "NOPERM this user has no permissions to run the '{name}' command"
        )));
    }
    // A script runs on the instance as the proxy's own login, where nobody checks the
    // commands it calls: only a user allowed everything may run one.
    if SCRIPTS.contains(&name.as_str()) && !user.unrestricted() {
        return Some(err(format!(
            "NOPERM this user has no permissions to run the '{name}' command: scripts and functions run unchecked on the instances, so through shardcast only a user allowed every command, key and channel may run them"
        )));
    }
    if let Some(keys) = keys
        && keys
            .iter()
            .any(|&k| req.args.get(k).is_some_and(|key| !user.may_touch_key(key)))
    {
        return Some(err("NOPERM No permissions to access a key"));
    }
    let channels = match name.as_str() {
        "publish" | "spublish" => req.args.get(1..2),
        "subscribe" | "ssubscribe" | "psubscribe" => req.args.get(1..),
        _ => None,
    };
    let pattern = name == "psubscribe";
    if channels.is_some_and(|c| c.iter().any(|c| !user.may_use_channel(c, pattern))) {
        return Some(err("NOPERM No permissions to access a channel"));
    }
    None
}

/// Commands that run code on an instance.
const SCRIPTS: [&str; 6] = [
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
];

/// True for the commands whose first argument is a channel that is routed as a key.
pub(super) fn names_a_channel(req: &Request) -> bool {
    ["PUBLISH", "SPUBLISH"]
        .iter()
        .any(|n| req.args[0].eq_ignore_ascii_case(n.as_bytes()))
}

impl Session {
    /// Why `req` may not run now (see [`refusal`]); a session whose user was deleted
    /// since is closed, as Redis closes it.
    pub(super) fn refused(&mut self, req: &Request, keys: Option<&[usize]>) -> Option<Frame> {
        let users = &self.shared.users;
        if self.users_version != users.version() {
            self.users_version = users.version();
            if let Some(u) = &self.user {
                match users.get(&u.name) {
                    Some(now) => self.user = Some(now),
                    None => {
                        self.closing = true;
                        return Some(err("ERR the user this client logged in as was deleted"));
                    }
                }
            }
        }
        refusal(self.user.as_deref(), req, keys)
    }

    /// `AUTH [user] password`.
    pub(super) fn auth(&mut self, req: &Request) -> Frame {
        let (user, password) = match &req.args[1..] {
            [password] => (Bytes::from_static(b"default"), password),
            [user, password] => (user.clone(), password),
            _ => return err("ERR syntax error"),
        };
        if req.args.len() == 2 && !self.shared.users.required() {
            return err(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        }
        match self.login(&user, password) {
            Ok(()) => Frame::ok(),
            Err(e) => e,
        }
    }

    /// Log in as `user`; a wrong pair is `WRONGPASS`, logged without the password.
    pub(super) fn login(&mut self, user: &[u8], password: &[u8]) -> Result<(), Frame> {
        let name = String::from_utf8_lossy(user);
        match self.shared.users.login(&name, password) {
            Some(u) => {
                self.user = Some(u);
                Ok(())
            }
            None => {
                tracing::warn!(session = self.id, user = %name, "authentication failed: wrong password or unknown user");
                Err(err(WRONGPASS))
            }
        }
    }

    /// The user this session runs as.
    pub(super) fn user_name(&self) -> &str {
        self.user.as_deref().map_or("default", |u| u.name.as_str())
    }

    /// True when the client has logged in, or needs not.
    pub(super) fn authenticated(&self) -> bool {
        self.user.is_some() || !self.shared.users.required()
    }
}

/// Redis's answer to `HELLO` without `AUTH` before logging in.
pub(super) const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

//! Authentication in a session: `AUTH`, `HELLO ... AUTH`, and the check before every
//! command once a password is required (`NOAUTH` before login, `NOPERM` for a command the
//! user's rules do not allow), worded as redis-server words them. A failed login is
//! logged with the session and user name, never the password.

use super::*;

/// Redis's answer to a wrong password or an unknown user.
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

impl Session {
    /// Why `req` may not run now, when a password is required.
    pub(super) fn refusal(&self, req: &Request) -> Option<Frame> {
        let (name, allowed) = command::access(&req.args, |name, spec| {
            if spec.has_flag("no_auth") {
                return true;
            }
            self.user
                .as_ref()
                .is_some_and(|u| u.may_run(name, &spec.acl))
        })?;
        if allowed {
            None
        } else if self.user.is_none() {
            Some(err("NOAUTH Authentication required."))
        } else {
            Some(err(format!(
                "NOPERM this user has no permissions to run the '{name}' command"
            )))
        }
    }

    /// `AUTH [user] password`.
    pub(super) fn auth(&mut self, req: &Request) -> Frame {
        let (user, password) = match &req.args[1..] {
            [password] => (Bytes::from_static(b"default"), password),
            [user, password] => (user.clone(), password),
            _ => return err("ERR syntax error"),
        };
        if !self.shared.users.required() {
            return if req.args.len() == 2 {
                err(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                )
            } else {
                err(WRONGPASS)
            };
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

//! Client authentication and authorisation: the proxy's users, as Redis's ACL has them.
//! Each user is on or off, has SHA-256 password digests (or `nopass`), command rules
//! (`+@read -@dangerous +flushdb`), key patterns (`~cache:*`) and channel patterns
//! (`&news.*`). Users come from `[auth]` at start and change at run time with
//! `ACL SETUSER`/`DELUSER`, in memory only.
//!
//! Passwords are compared as SHA-256 digests in constant time, and no secret is kept in
//! the clear or ever formatted: a [`User`] prints its digests as `<redacted>`. The session
//! asks [`Users::login`] on `AUTH`/`HELLO AUTH`, and [`User::may_run`],
//! [`User::may_touch_key`] and [`User::may_use_channel`] before each command.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

/// One user.
#[derive(Clone)]
pub struct User {
    /// The name clients give to `AUTH <user> <password>`; `default` for `AUTH <password>`.
    pub name: String,
    enabled: bool,
    nopass: bool,
    digests: Vec<[u8; 32]>,
    rules: Vec<Rule>,
    keys: Vec<Vec<u8>>,
    channels: Vec<Vec<u8>>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("digests", &"<redacted>")
            .finish()
    }
}

/// One command rule, as Redis writes them: `+@read`, `-@dangerous`, `+get`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Category { allow: bool, name: String },
    Command { allow: bool, name: String },
}

impl Rule {
    fn text(&self) -> String {
        let (allow, at, name) = match self {
            Rule::Category { allow, name } => (*allow, "@", name),
            Rule::Command { allow, name } => (*allow, "", name),
        };
        format!("{}{at}{name}", if allow { '+' } else { '-' })
    }
}

/// SHA-256 of `password`.
pub fn digest(password: &[u8]) -> [u8; 32] {
    Sha256::digest(password).into()
}

/// Redis's glob (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a-z]`, `\x`.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it has consumed up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => class(pattern, p, text[t]),
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
            Some(&c) => (c == text[t]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((sp, st))) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Match `c` against the `[...]` class opening at `at`: the position after it, or `None`.
fn class(pattern: &[u8], at: usize, c: u8) -> Option<usize> {
    let mut i = at + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            hit |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            hit |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            hit |= pattern[i] == c;
            i += 1;
        }
    }
    (hit != negate).then_some((i + 1).min(pattern.len()))
}

impl User {
    /// A user with no password, no rights, off: what `ACL SETUSER` starts a new user from.
    pub fn empty(name: &str) -> User {
        User {
            name: name.to_owned(),
            enabled: false,
            nopass: false,
            digests: Vec::new(),
            rules: Vec::new(),
            keys: Vec::new(),
            channels: Vec::new(),
        }
    }

    /// A user from `[auth]`: on, with a password digest and ACL rules such as
    /// `+@all -@dangerous +flushdb ~cache:*`. Without a key rule it may touch every key,
    /// without a channel rule every channel.
    pub fn new(name: &str, digest: [u8; 32], rules: &str) -> Result<User, String> {
        let mut user = User::empty(name);
        user.enabled = true;
        user.digests.push(digest);
        let words: Vec<&str> = rules.split_whitespace().collect();
        let about = |prefix: char, words_: [&str; 2]| {
            words.iter().any(|w| {
                w.starts_with(prefix)
                    || w.starts_with(&format!("%R{prefix}"))
                    || words_.iter().any(|x| w.eq_ignore_ascii_case(x))
            })
        };
        if !about('~', ["allkeys", "resetkeys"]) {
            user.keys.push(b"*".to_vec());
        }
        if !about('&', ["allchannels", "resetchannels"]) {
            user.channels.push(b"*".to_vec());
        }
        for w in words {
            user.apply(w.as_bytes())
                .map_err(|e| format!("user '{name}': {e}"))?;
        }
        Ok(user)
    }

    /// Apply one `ACL SETUSER` rule.
    pub fn apply(&mut self, rule: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(rule);
        let lower = text.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.digests.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.digests.clear();
            }
            "allkeys" => self.keys = vec![b"*".to_vec()],
            "resetkeys" => self.keys.clear(),
            "allchannels" => self.channels = vec![b"*".to_vec()],
            "resetchannels" => self.channels.clear(),
            "allcommands" => self.rules.push(Rule::Category {
                allow: true,
                name: "all".into(),
            }),
            "nocommands" => self.rules.push(Rule::Category {
                allow: false,
                name: "all".into(),
            }),
            "reset" => {
                *self = User::empty(&self.name);
            }
            _ => match rule.first() {
                Some(b'>') => {
                    self.nopass = false;
                    let d = digest(&rule[1..]);
                    if !self.digests.contains(&d) {
                        self.digests.push(d);
                    }
                }
                Some(b'<') => {
                    let d = digest(&rule[1..]);
                    self.digests.retain(|x| *x != d);
                }
                Some(b'#' | b'!') => {
                    let d: [u8; 32] = hex::decode(&rule[1..])
                        .ok()
                        .and_then(|d| d.try_into().ok())
                        .ok_or("a password hash is 64 hex digits")?;
                    if rule[0] == b'#' {
                        self.nopass = false;
                        if !self.digests.contains(&d) {
                            self.digests.push(d);
                        }
                    } else {
                        self.digests.retain(|x| *x != d);
                    }
                }
                Some(b'~') => self.keys.push(rule[1..].to_vec()),
                Some(b'&') => self.channels.push(rule[1..].to_vec()),
                Some(b'%') => {
                    return Err(format!(
                        "`{text}`: read-only and write-only key patterns are not supported through the shardcast proxy; use ~pattern"
                    ));
                }
                Some(b'(') => {
                    return Err(format!(
                        "`{text}`: selectors are not supported through the shardcast proxy"
                    ));
                }
                Some(b'+' | b'-') => {
                    let allow = rule[0] == b'+';
                    let rest = &lower[1..];
                    self.rules.push(match rest.strip_prefix('@') {
                        Some(c) if !c.is_empty() => Rule::Category {
                            allow,
                            name: c.to_owned(),
                        },
                        None if !rest.is_empty() => Rule::Command {
                            allow,
                            name: rest.to_owned(),
                        },
                        _ => return Err(format!("`{text}` names nothing")),
                    });
                }
                _ => {
                    return Err(format!(
                        "Syntax error: `{text}` is not an ACL rule (on, off, >password, nopass, ~pattern, &pattern, +@category, -command, ...)"
                    ));
                }
            },
        }
        Ok(())
    }

    /// True when this user may run a command named `name` (lower case, `container|sub`
    /// for a subcommand) in `categories`: the last rule that matches decides, and no rule
    /// matching means no.
    pub fn may_run(&self, name: &str, categories: &[String]) -> bool {
        let container = name.split('|').next().unwrap_or(name);
        self.rules
            .iter()
            .rev()
            .find_map(|rule| match rule {
                Rule::Category { allow, name: c } => {
                    (c == "all" || categories.iter().any(|k| k == c)).then_some(*allow)
                }
                Rule::Command { allow, name: n } => (n == name || n == container).then_some(*allow),
            })
            .unwrap_or(false)
    }

    /// True when this user may touch `key`.
    pub fn may_touch_key(&self, key: &[u8]) -> bool {
        self.keys.iter().any(|p| glob(p, key))
    }

    /// True when this user may use `channel` (a pattern given to `PSUBSCRIBE` must be one
    /// of the user's own patterns, as Redis checks it).
    pub fn may_use_channel(&self, channel: &[u8], is_pattern: bool) -> bool {
        self.channels.iter().any(|p| {
            if is_pattern {
                p.as_slice() == b"*" || p.as_slice() == channel
            } else {
                glob(p, channel)
            }
        })
    }

    /// True for a user whose rules allow every command, key and channel.
    pub fn unrestricted(&self) -> bool {
        self.keys.iter().any(|k| k.as_slice() == b"*")
            && self.channels.iter().any(|c| c.as_slice() == b"*")
            && self.rules.last()
                == Some(&Rule::Category {
                    allow: true,
                    name: "all".into(),
                })
    }

    /// True for the user that may do anything without a password: nothing to check.
    fn is_open(&self) -> bool {
        self.enabled && self.nopass && self.unrestricted()
    }

    /// Whether `password` logs this user in: it is on, and has no password or this one
    /// (digests compared in constant time).
    fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let given = digest(password);
        self.digests.iter().fold(false, |any, d| {
            let differ = d.iter().zip(&given).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            any | (differ == 0)
        })
    }

    /// The user as `ACL LIST` describes it: `user app on #<digest> ~cache:* &* +@read`.
    pub fn describe(&self) -> String {
        let (flags, digests, commands, keys, channels) = self.fields();
        let mut words = vec![format!("user {}", self.name)];
        words.extend(flags.iter().map(|f| f.to_string()));
        words.extend(digests.iter().map(|d| format!("#{d}")));
        words.push(if keys.is_empty() {
            "resetkeys".into()
        } else {
            keys
        });
        words.push(if channels.is_empty() {
            "resetchannels".into()
        } else {
            channels
        });
        words.push(commands);
        words.join(" ")
    }

    /// The command rules, as `ACL GETUSER` gives them (`-@all` when there are none).
    pub fn commands(&self) -> String {
        if self.rules.is_empty() {
            return "-@all".into();
        }
        self.rules
            .iter()
            .map(Rule::text)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `ACL GETUSER`'s fields: flags, password digests (hex), commands, keys, channels.
    pub fn fields(&self) -> (Vec<&'static str>, Vec<String>, String, String, String) {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        let join = |sep: &str, v: &[Vec<u8>]| {
            v.iter()
                .map(|p| format!("{sep}{}", String::from_utf8_lossy(p)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        (
            flags,
            self.digests.iter().map(hex::encode).collect(),
            self.commands(),
            join("~", &self.keys),
            join("&", &self.channels),
        )
    }
}

/// Who may connect, and what each may do. There is always a `default` user: on, without a
/// password, allowed everything when `[auth]` configures nothing; off when `[auth]` has
/// users but no `requirepass_*`.
#[derive(Debug)]
pub struct Users {
    users: RwLock<Vec<Arc<User>>>,
    /// Bumped by every change, so sessions can pick up their user's new rules.
    version: AtomicU64,
    /// Nothing to check: the only user is an open `default`.
    open: AtomicBool,
    /// Clients must log in: `default` is off or has a password.
    required: AtomicBool,
}

impl Default for Users {
    fn default() -> Users {
        Users::new(Vec::new())
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl Users {
    /// The users clients may log in as, with `default` added when not among them.
    pub fn new(mut users: Vec<User>) -> Users {
        if !users.iter().any(|u| u.name == "default") {
            let mut default = User::empty("default");
            if users.is_empty() {
                for rule in ["on", "nopass", "allkeys", "allchannels", "+@all"] {
                    default.apply(rule.as_bytes()).expect("a valid rule");
                }
            }
            users.insert(0, default);
        }
        let users = Users {
            users: RwLock::new(users.into_iter().map(Arc::new).collect()),
            version: AtomicU64::new(0),
            open: AtomicBool::new(false),
            required: AtomicBool::new(true),
        };
        users.settle(&read(&users.users));
        users
    }

    /// Derive the flags from `all`, the users as they are now (called with the write lock
    /// held, so no request sees new users with old flags).
    fn settle(&self, all: &[Arc<User>]) {
        let default = all.iter().find(|u| u.name == "default");
        self.required.store(
            !default.is_some_and(|d| d.enabled && d.nopass),
            Ordering::Release,
        );
        self.open.store(
            all.len() == 1 && default.is_some_and(|d| d.is_open()),
            Ordering::Release,
        );
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// True when clients must authenticate before anything but `AUTH`, `HELLO` and `QUIT`.
    pub fn required(&self) -> bool {
        self.required.load(Ordering::Acquire)
    }

    /// True when nothing needs checking: every client is an all-powerful `default`.
    pub fn open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// A number that changes with every change to the users.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The user `name` if `password` logs it in.
    pub fn login(&self, name: &str, password: &[u8]) -> Option<Arc<User>> {
        let user = self.get(name)?;
        user.accepts(password).then_some(user)
    }

    /// The user `name`.
    pub fn get(&self, name: &str) -> Option<Arc<User>> {
        read(&self.users).iter().find(|u| u.name == name).cloned()
    }

    /// Every user, in the order they were made.
    pub fn all(&self) -> Vec<Arc<User>> {
        read(&self.users).clone()
    }

    /// `ACL SETUSER name rules...`: change the user, or make it from [`User::empty`]. All
    /// rules apply or none.
    pub fn set(&self, name: &str, rules: &[impl AsRef<[u8]>]) -> Result<(), String> {
        {
            let mut all = write(&self.users);
            let mut user = all
                .iter()
                .find(|u| u.name == name)
                .map(|u| (**u).clone())
                .unwrap_or_else(|| User::empty(name));
            for r in rules {
                user.apply(r.as_ref())?;
            }
            match all.iter_mut().find(|u| u.name == name) {
                Some(u) => *u = Arc::new(user),
                None => all.push(Arc::new(user)),
            }
            self.settle(&all);
        }
        Ok(())
    }

    /// `ACL DELUSER names...`: how many were deleted (`default` cannot be).
    pub fn delete(&self, names: &[impl AsRef<[u8]>]) -> Result<usize, String> {
        if names.iter().any(|n| n.as_ref() == b"default") {
            return Err("ERR The 'default' user cannot be removed".into());
        }
        let mut all = write(&self.users);
        let before = all.len();
        all.retain(|u| !names.iter().any(|n| n.as_ref() == u.name.as_bytes()));
        self.settle(&all);
        Ok(before - all.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_last_matching_rule_decides() {
        let u = User::new("app", digest(b"pw"), "+@all -@dangerous +flushdb").expect("rules");
        assert!(u.may_run("get", &cats(&["read", "string", "fast"])));
        assert!(!u.may_run("keys", &cats(&["keyspace", "read", "slow", "dangerous"])));
        assert!(u.may_run(
            "flushdb",
            &cats(&["keyspace", "write", "slow", "dangerous"])
        ));
        let reader = User::new("r", digest(b"pw"), "+@read").expect("rules");
        assert!(!reader.may_run("set", &cats(&["write", "string", "slow"])));
        assert!(reader.may_touch_key(b"anything") && reader.may_use_channel(b"news", false));
        let none = User::new("n", digest(b"pw"), "").expect("no rules");
        assert!(!none.may_run("get", &cats(&["read"])));
        assert!(User::new("x", digest(b"pw"), "@read").is_err());
        assert!(User::new("x", digest(b"pw"), "%R~a*").is_err());
    }

    #[test]
    fn key_and_channel_patterns_are_redis_globs() {
        assert!(glob(b"cache:*", b"cache:1"));
        assert!(!glob(b"cache:*", b"cach"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a?c", b"abc") && !glob(b"a?c", b"ac"));
        assert!(glob(b"h[ae]llo", b"hello") && !glob(b"h[ae]llo", b"hillo"));
        assert!(glob(b"h[^e]llo", b"hallo") && !glob(b"h[^e]llo", b"hello"));
        assert!(glob(b"h[a-c]llo", b"hbllo") && !glob(b"h[a-c]llo", b"hdllo"));
        assert!(glob(b"a\\*b", b"a*b") && !glob(b"a\\*b", b"axb"));
        assert!(glob(b"*x*y*", b"00x11y22") && !glob(b"*x*y*", b"00y11x22"));
        let u = User::new("c", digest(b"pw"), "+@all ~cache:* &news.*").expect("rules");
        assert!(u.may_touch_key(b"cache:7") && !u.may_touch_key(b"other"));
        assert!(u.may_use_channel(b"news.sport", false) && !u.may_use_channel(b"gossip", false));
        assert!(u.may_use_channel(b"news.*", true) && !u.may_use_channel(b"n*", true));
    }

    #[test]
    fn setuser_changes_users_and_logins_follow() {
        let users = Users::default();
        assert!(!users.required() && users.open());
        users
            .set("app", &["on", ">pw1", ">pw2", "~app:*", "+@read"])
            .expect("setuser");
        assert!(!users.open() && !users.required());
        assert!(users.login("app", b"pw2").is_some());
        users.set("app", &["<pw2"]).expect("remove a password");
        assert!(users.login("app", b"pw2").is_none());
        assert!(users.login("app", b"pw1").is_some());
        users.set("app", &["off"]).expect("off");
        assert!(users.login("app", b"pw1").is_none());
        assert!(users.set("app", &["on", "bogus"]).is_err());
        assert!(users.login("app", b"pw1").is_none(), "no rule applied");
        let before = users.version();
        assert_eq!(users.delete(&["app", "nobody"]).expect("deluser"), 1);
        assert!(users.version() > before);
        assert!(users.delete(&["default"]).is_err());
        users.set("default", &[">secret"]).expect("a password");
        assert!(users.required());
        assert!(users.login("default", b"secret").is_some());
        assert!(users.login("default", b"").is_none());
    }

    #[test]
    fn logins_compare_digests_and_never_print_them() {
        let users = Users::new(vec![
            User::new("default", digest(b"secret"), "+@all").expect("rules"),
        ]);
        assert!(users.required());
        assert!(users.login("default", b"secret").is_some());
        assert!(users.login("default", b"wrong").is_none());
        assert!(users.login("other", b"secret").is_none());
        let printed = format!("{users:?}");
        assert!(!printed.contains("secret") && printed.contains("<redacted>"));
        let listed = users.get("default").expect("default").describe();
        assert!(listed.starts_with("user default on #") && !listed.contains("secret"));
        assert!(!Users::default().required());
        let only_users = Users::new(vec![User::new("u", digest(b"pw"), "+@all").expect("rules")]);
        assert!(
            only_users.required(),
            "default is off when [auth] has users only"
        );
    }
}

//! Client authentication: the `default` user's `requirepass`, and ACL-style users from
//! `[auth]`, each with a SHA-256 password digest and the command categories it may run.
//!
//! Pure data and pure functions. Passwords are compared as SHA-256 digests in constant
//! time, and no secret is kept in the clear or ever formatted: [`Users`] prints digests
//! as `<redacted>`. The session asks [`Users::login`] on `AUTH`/`HELLO AUTH`, and
//! [`User::may_run`] before each command.

use std::sync::Arc;

use sha2::{Digest, Sha256};

/// One user: its name, password digest and command rules.
#[derive(Clone)]
pub struct User {
    /// The name clients give to `AUTH <user> <password>`; `default` for `AUTH <password>`.
    pub name: String,
    digest: [u8; 32],
    rules: Vec<Rule>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("digest", &"<redacted>")
            .finish()
    }
}

/// One ACL rule, as Redis writes them: `+@read`, `-@dangerous`, `+get`, `allcommands`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Category { allow: bool, name: String },
    Command { allow: bool, name: String },
}

/// Who may connect: empty when no password is configured (every client is `default`).
#[derive(Clone, Debug, Default)]
pub struct Users {
    users: Vec<Arc<User>>,
}

/// SHA-256 of `password`.
pub fn digest(password: &[u8]) -> [u8; 32] {
    Sha256::digest(password).into()
}

impl User {
    /// A user with a password digest and rules such as `+@all -@dangerous +flushdb`.
    pub fn new(name: &str, digest: [u8; 32], rules: &str) -> Result<User, String> {
        let rules = rules
            .split_whitespace()
            .map(|r| {
                let (allow, rest) = match r.as_bytes().first() {
                    Some(b'+') => (true, &r[1..]),
                    Some(b'-') => (false, &r[1..]),
                    _ if r.eq_ignore_ascii_case("allcommands") => (true, "@all"),
                    _ if r.eq_ignore_ascii_case("nocommands") => (false, "@all"),
                    _ => {
                        return Err(format!(
                            "user '{name}': rule `{r}` is not +@category, -@category, +command or -command"
                        ));
                    }
                };
                Ok(match rest.strip_prefix('@') {
                    Some(c) if !c.is_empty() => Rule::Category {
                        allow,
                        name: c.to_ascii_lowercase(),
                    },
                    None if !rest.is_empty() => Rule::Command {
                        allow,
                        name: rest.to_ascii_lowercase(),
                    },
                    _ => return Err(format!("user '{name}': rule `{r}` names nothing")),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(User {
            name: name.to_owned(),
            digest,
            rules,
        })
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
}

impl Users {
    /// The users clients may log in as.
    pub fn new(users: Vec<User>) -> Users {
        Users {
            users: users.into_iter().map(Arc::new).collect(),
        }
    }

    /// True when clients must authenticate before anything but `AUTH`, `HELLO` and `QUIT`.
    pub fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// The user `name` whose password is `password`, compared by digest in constant time.
    pub fn login(&self, name: &str, password: &[u8]) -> Option<Arc<User>> {
        let given = digest(password);
        let user = self.users.iter().find(|u| u.name == name)?;
        let differ = user
            .digest
            .iter()
            .zip(&given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (differ == 0).then(|| user.clone())
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
        let none = User::new("n", digest(b"pw"), "").expect("no rules");
        assert!(!none.may_run("get", &cats(&["read"])));
        assert!(User::new("x", digest(b"pw"), "@read").is_err());
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
        assert!(!Users::default().required());
    }
}

//! The configuration of logins: clients' (`[auth]`: the `default` user's password and
//! ACL-style users) and the proxy's own to its instances (`[instance_auth]`, or per
//! `[[instances]]` entry). A secret comes from a file or an environment variable, never
//! from the configuration file itself; errors name the file or variable, never a secret.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::Config;
use crate::proxy::auth::{User, Users, digest};
use crate::proxy::dial::Login;

/// Client authentication. With neither a `requirepass_*` nor users, clients connect as
/// the `default` user without a password. A secret comes from a file or an environment
/// variable, never from this file: `requirepass` itself is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Refused with a message saying where a secret goes instead.
    pub requirepass: Option<Spanned<String>>,
    /// A file holding the `default` user's password (one line; relative to this file).
    pub requirepass_file: Option<PathBuf>,
    /// An environment variable holding the `default` user's password.
    pub requirepass_env: Option<String>,
    /// Users with their own passwords and command rules.
    pub users: Vec<UserConfig>,
}

/// One ACL-style user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The name given to `AUTH <user> <password>`.
    pub name: String,
    /// SHA-256 of the password, 64 hex digits (`printf %s "$pw" | sha256sum`).
    pub password_sha256: Spanned<String>,
    /// ACL rules, as Redis writes them: `+@all -@dangerous +flushdb`.
    #[serde(default = "all_commands")]
    pub commands: String,
}

fn all_commands() -> String {
    "+@all".into()
}

impl AuthConfig {
    /// The users clients may log in as, with the `default` user's password read from its
    /// file or environment variable. Errors name the file or variable, never the secret.
    pub fn users(&self) -> Result<Users, String> {
        let mut users = Vec::new();
        let default = secret(
            self.requirepass_file.as_ref(),
            self.requirepass_env.as_ref(),
            "[auth] requirepass",
        )?;
        if let Some(password) = default {
            users.push(User::new("default", digest(password.as_bytes()), "+@all")?);
        }
        for u in &self.users {
            let hex = u.password_sha256.get_ref();
            let digest: [u8; 32] = hex::decode(hex)
                .ok()
                .and_then(|d| d.try_into().ok())
                .ok_or(format!(
                    "[auth] user '{}': password_sha256 is not 64 hex digits",
                    u.name
                ))?;
            if users.iter().any(|x: &User| x.name == u.name) {
                return Err(format!("[auth] user '{}' is given twice", u.name));
            }
            users.push(User::new(&u.name, digest, &u.commands)?);
        }
        Ok(Users::new(users))
    }
}

/// How the proxy logs in to an instance: `[instance_auth]` for every instance that gives
/// none of `username`, `password_file`, `password_env` itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceLogin {
    /// The ACL user; without one the proxy logs in as `default` (`AUTH <password>`).
    pub username: Option<String>,
    /// A file holding the password (one line; relative to the configuration file).
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
}

/// A secret from `file` or the variable `env` (not both); `what` names it in errors.
fn secret(
    file: Option<&PathBuf>,
    env: Option<&String>,
    what: &str,
) -> Result<Option<String>, String> {
    let value = match (file, env) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "{what}: give a password file or an environment variable, not both"
            ));
        }
        (Some(file), None) => std::fs::read_to_string(file)
            .map_err(|e| format!("{what}: password file {}: {e}", file.display()))?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| format!("{what}: the environment variable {var} is not set"))?,
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err(format!("{what}: the password is empty"));
    }
    Ok(Some(value))
}

impl Config {
    /// The proxy's login to each instance, by address: the instance's own, else
    /// `[instance_auth]`'s; instances with neither are dialled without one.
    pub fn instance_logins(&self) -> Result<HashMap<String, Login>, String> {
        let mut logins = HashMap::new();
        let fleet = &self.instance_auth;
        for i in &self.instances {
            let own = i.username.is_some() || i.password_file.is_some() || i.password_env.is_some();
            let (username, file, env, what) = if own {
                (
                    &i.username,
                    &i.password_file,
                    &i.password_env,
                    format!("instance '{}'", i.name.get_ref()),
                )
            } else {
                (
                    &fleet.username,
                    &fleet.password_file,
                    &fleet.password_env,
                    "[instance_auth]".to_owned(),
                )
            };
            match secret(file.as_ref(), env.as_ref(), &what)? {
                Some(password) => {
                    logins.insert(
                        i.address.get_ref().clone(),
                        Login::new(username.clone(), password),
                    );
                }
                None if username.is_some() => {
                    return Err(format!(
                        "{what}: a username needs a password_file or password_env"
                    ));
                }
                None => {}
            }
        }
        Ok(logins)
    }
}

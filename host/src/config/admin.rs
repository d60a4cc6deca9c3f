//! `[admin]`: the admin API, `/metrics` and the dashboard, on their own HTTP listener.
//!
//! The listener binds to 127.0.0.1 unless told otherwise. Bound to any other address it
//! requires a bearer token, which comes from a file or an environment variable, never
//! from the configuration file itself.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The default admin address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7470";

/// The admin listener's settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `host:port` to serve on.
    pub listen: String,
    /// A file holding the bearer token (one line; relative to the configuration file).
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// Largest policy upload, in MiB.
    pub max_upload_mib: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: DEFAULT_ADMIN_LISTEN.into(),
            token_file: None,
            token_env: None,
            max_upload_mib: 32,
        }
    }
}

impl AdminConfig {
    /// The address, checked.
    pub fn address(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|_| {
            format!(
                "`admin.listen`: `{}` is not host:port (e.g. {DEFAULT_ADMIN_LISTEN})",
                self.listen
            )
        })
    }

    /// Check what can be checked without reading the token.
    pub fn check(&self) -> Result<(), String> {
        let address = self.address()?;
        if self.token_file.is_some() && self.token_env.is_some() {
            return Err(
                "`admin`: give a token file (`token_file`) or an environment variable (`token_env`), not both"
                    .into(),
            );
        }
        if !address.ip().is_loopback() && self.token_file.is_none() && self.token_env.is_none() {
            return Err(format!(
                "`admin.listen` = `{}` is reachable from other hosts: set `admin.token_file` or `admin.token_env` to require a bearer token, or listen on 127.0.0.1",
                self.listen
            ));
        }
        if self.max_upload_mib == 0 {
            return Err("`admin.max_upload_mib` must be positive".into());
        }
        Ok(())
    }

    /// The bearer token, when one is configured.
    pub fn token(&self) -> Result<Option<String>, String> {
        let token = match (&self.token_file, &self.token_env) {
            (Some(file), _) => std::fs::read_to_string(file)
                .map_err(|e| format!("`admin.token_file` {}: {e}", file.display()))?
                .trim()
                .to_owned(),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| {
                    format!("`admin.token_env`: the environment variable {var} is not set")
                })?
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        if token.len() < 16 {
            return Err(
                "`admin`: the bearer token is shorter than 16 characters; use a longer random one (e.g. `openssl rand -hex 32`)"
                    .into(),
            );
        }
        Ok(Some(token))
    }
}

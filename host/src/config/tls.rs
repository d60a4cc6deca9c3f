//! The configuration of TLS: `[tls]`, for clients' connections to the proxy, and
//! `[instance_tls]`, for every connection the proxy makes to an instance. Files are PEM,
//! relative to the configuration file; errors name the section and the file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Config;
use crate::proxy::tls::{ClientFiles, ClientTls, InstanceTls, ServerFiles, acceptor};

/// TLS for clients. With it, `listen` serves TLS only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The proxy's certificate chain.
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
    /// When given, clients must present a certificate this authority signed (Redis's
    /// `tls-auth-clients yes`); without it, any client may connect and then log in.
    pub ca_file: Option<PathBuf>,
    /// Milliseconds a client has to finish its handshake.
    #[serde(default = "default_handshake")]
    pub handshake_timeout_ms: u64,
}

fn default_handshake() -> u64 {
    10_000
}

/// TLS to instances (every connection: shared, sessions' own, subscriptions, the poller,
/// migrations).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceTlsConfig {
    /// The authority that signs the instances' certificates.
    pub ca_file: PathBuf,
    /// The proxy's client certificate, for instances that require one (Redis's default,
    /// `tls-auth-clients yes`); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name instances' certificates must carry; by default each instance's host as
    /// its address gives it (an IP address is checked against the certificate's IP
    /// addresses).
    pub server_name: Option<String>,
}

impl Config {
    /// Every TLS file path, for resolving relative ones against the configuration file.
    pub(super) fn tls_files(&mut self) -> Vec<&mut PathBuf> {
        let mut files = Vec::new();
        if let Some(t) = &mut self.tls {
            files.push(&mut t.cert_file);
            files.push(&mut t.key_file);
            files.extend(t.ca_file.as_mut());
        }
        if let Some(t) = &mut self.instance_tls {
            files.push(&mut t.ca_file);
            files.extend(t.cert_file.as_mut());
            files.extend(t.key_file.as_mut());
        }
        files
    }

    /// Clients' TLS, built from `[tls]`'s files; `None` without the section.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, String> {
        let Some(t) = &self.tls else { return Ok(None) };
        let acceptor = acceptor(&ServerFiles {
            cert: &t.cert_file,
            key: &t.key_file,
            client_ca: t.ca_file.as_deref(),
        })
        .map_err(|e| format!("[tls] {e}"))?;
        Ok(Some(ClientTls {
            acceptor,
            handshake: Duration::from_millis(t.handshake_timeout_ms.max(1)),
        }))
    }

    /// Instances' TLS by address, built from `[instance_tls]`'s files; none without the
    /// section.
    pub fn instance_tls(&self) -> Result<HashMap<String, InstanceTls>, String> {
        let Some(t) = &self.instance_tls else {
            return Ok(HashMap::new());
        };
        let identity = match (&t.cert_file, &t.key_file) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => {
                return Err(
                    "[instance_tls] cert_file and key_file go together: give both or neither"
                        .into(),
                );
            }
        };
        let tls = InstanceTls::new(&ClientFiles {
            ca: &t.ca_file,
            identity,
            server_name: t.server_name.clone(),
        })
        .map_err(|e| format!("[instance_tls] {e}"))?;
        Ok(self
            .instances
            .iter()
            .map(|i| (i.address.get_ref().clone(), tls.clone()))
            .collect())
    }
}

//! TLS with rustls: the acceptor clients' connections go through when `[tls]` is
//! configured, and the connector every connection to an instance goes through when
//! `[instance_tls]` is.
//!
//! Certificates and keys are PEM files. Errors name the file and what is wrong with it.
//! The instance side is set once at start by address ([`set_instance_tls`]), as the
//! instances' logins are ([`super::dial::set_logins`]).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::stream::Stream;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: no usable private key: {e}", path.display()))
}

/// Trust roots: every certificate in a PEM file.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(certificates(path)?);
    if added == 0 {
        return Err(format!(
            "{}: none of its {ignored} certificates can be a trust root",
            path.display()
        ));
    }
    Ok(store)
}

/// What clients' TLS needs: the proxy's certificate chain and key, and, to require client
/// certificates, the authority that signs them.
pub struct ServerFiles<'a> {
    /// The proxy's certificate chain (PEM).
    pub cert: &'a Path,
    /// Its private key (PEM).
    pub key: &'a Path,
    /// When given, clients must present a certificate this authority signed.
    pub client_ca: Option<&'a Path>,
}

/// Clients' TLS: the acceptor, and how long a client has to finish its handshake.
#[derive(Clone)]
pub struct ClientTls {
    /// The acceptor built from `[tls]`'s files.
    pub acceptor: TlsAcceptor,
    /// The handshake's deadline.
    pub handshake: Duration,
}

/// The acceptor for clients' connections.
pub fn acceptor(files: &ServerFiles) -> Result<TlsAcceptor, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match files.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certificates(files.cert)?, private_key(files.key)?)
        .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What instances' TLS needs: the authority that signs their certificates, the proxy's
/// own certificate and key when instances require one (`tls-auth-clients yes`, Redis's
/// default), and the name to check their certificates against.
pub struct ClientFiles<'a> {
    /// Trust roots for instances' certificates (PEM).
    pub ca: &'a Path,
    /// The proxy's client certificate chain and key, both or neither.
    pub identity: Option<(&'a Path, &'a Path)>,
    /// The name instances' certificates must carry; by default, each instance's host.
    pub server_name: Option<String>,
}

/// How the proxy opens TLS to its instances.
#[derive(Clone)]
pub struct InstanceTls {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl InstanceTls {
    /// Build from files; errors name the file.
    pub fn new(files: &ClientFiles) -> Result<InstanceTls, String> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots(files.ca)?);
        let config = match files.identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(certificates(cert)?, private_key(key)?)
                .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?,
            None => builder.with_no_client_auth(),
        };
        let server_name = files
            .server_name
            .as_deref()
            .map(|n| {
                ServerName::try_from(n.to_owned())
                    .map_err(|e| format!("[instance_tls] server_name {n:?}: {e}"))
            })
            .transpose()?;
        Ok(InstanceTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// Open TLS over `tcp` to the instance at `address`, within `limit`.
    pub async fn connect(
        &self,
        address: &str,
        tcp: TcpStream,
        limit: Duration,
    ) -> io::Result<Stream> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => host_name(address)?,
        };
        let tls = tokio::time::timeout(limit, self.connector.connect(name, tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {address} failed: {e}"),
                )
            })?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }
}

/// The host part of `host:port` (`[v6]:port` too), as a name to verify.
fn host_name(address: &str) -> io::Result<ServerName<'static>> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{address}: no name to verify its certificate against: {e}"),
        )
    })
}

static INSTANCE_TLS: LazyLock<RwLock<HashMap<String, InstanceTls>>> =
    LazyLock::new(Default::default);

/// Open connections to the instances at these addresses with TLS from now on; others
/// stay plain TCP.
pub fn set_instance_tls(tls: HashMap<String, InstanceTls>) {
    let mut all = INSTANCE_TLS.write().unwrap_or_else(|e| e.into_inner());
    all.extend(tls);
}

/// The TLS to open to the instance at `address`, if any.
pub fn instance_tls(address: &str) -> Option<InstanceTls> {
    INSTANCE_TLS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(address)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address_is_the_name_checked() {
        assert_eq!(
            host_name("127.0.0.1:6379").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            host_name("redis-1.example:6379").unwrap(),
            ServerName::try_from("redis-1.example").unwrap()
        );
        assert_eq!(
            host_name("[::1]:6379").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
    }

    #[test]
    fn a_missing_or_empty_file_is_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("shardcast-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.join("missing.pem");
        let e = acceptor(&ServerFiles {
            cert: &missing,
            key: &missing,
            client_ca: None,
        })
        .err()
        .unwrap();
        assert!(e.contains("missing.pem"), "{e}");
        let e = InstanceTls::new(&ClientFiles {
            ca: &empty,
            identity: None,
            server_name: None,
        })
        .err()
        .unwrap();
        assert!(
            e.contains("empty.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}

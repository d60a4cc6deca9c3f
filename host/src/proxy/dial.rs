//! Dialing an instance: every connection the proxy makes to one (shared multiplexed
//! connections, sessions' own, subscriptions, the poller, migrations) is opened here:
//! TCP within a deadline, `TCP_NODELAY`, TLS when `[instance_tls]` is configured
//! ([`super::tls`]), and the login the configuration gives for that instance
//! (`AUTH [user] password`), answered before the connection is handed over.
//!
//! Logins are process-wide, set once at start ([`set_logins`]) from `[instance_auth]` and
//! each `[[instances]]` entry. A password is never formatted: [`Login`] prints
//! `<redacted>`, and a refused login is reported with the instance's reply, which names no
//! secret.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request::Request;
use super::stream::Stream;

/// The credentials for one instance.
#[derive(Clone)]
pub struct Login {
    /// The ACL user; `None` logs in as `default` (`AUTH <password>`).
    pub username: Option<String>,
    password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Login {
    /// Credentials for `AUTH [username] password`.
    pub fn new(username: Option<String>, password: String) -> Login {
        Login { username, password }
    }

    /// The `AUTH` command, encoded.
    fn command(&self) -> Bytes {
        let mut args = vec![Bytes::from_static(b"AUTH")];
        if let Some(u) = &self.username {
            args.push(Bytes::copy_from_slice(u.as_bytes()));
        }
        args.push(Bytes::copy_from_slice(self.password.as_bytes()));
        Request::from_args(args).raw
    }
}

static LOGINS: LazyLock<RwLock<HashMap<String, Arc<Login>>>> = LazyLock::new(Default::default);

/// Log in to the instances at these addresses with these credentials from now on.
pub fn set_logins(logins: HashMap<String, Login>) {
    let mut all = LOGINS.write().unwrap_or_else(|e| e.into_inner());
    for (address, login) in logins {
        all.insert(address, Arc::new(login));
    }
}

fn login_for(address: &str) -> Option<Arc<Login>> {
    LOGINS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(address)
        .cloned()
}

fn timed_out(what: &str) -> impl FnOnce(tokio::time::error::Elapsed) -> io::Error + '_ {
    move |_| io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

/// Connect to `address`, logging in when it requires it, each step within `limit`.
pub async fn dial(address: &str, limit: Duration) -> io::Result<Stream> {
    let tcp = tokio::time::timeout(limit, TcpStream::connect(address))
        .await
        .map_err(timed_out("connect"))??;
    tcp.set_nodelay(true)?;
    let mut stream = match super::tls::instance_tls(address) {
        Some(tls) => tls.connect(address, tcp, limit).await?,
        None => Stream::Plain(tcp),
    };
    if let Some(login) = login_for(address) {
        let send = async {
            stream.write_all(&login.command()).await?;
            stream.flush().await
        };
        tokio::time::timeout(limit, send)
            .await
            .map_err(timed_out("sending AUTH"))??;
        let line = tokio::time::timeout(limit, read_line(&mut stream))
            .await
            .map_err(timed_out("AUTH's reply"))??;
        if line != b"+OK" {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{address} refused the login{}: {} (check [instance_auth] or the instance's username and password)",
                    login
                        .username
                        .as_deref()
                        .map(|u| format!(" as {u}"))
                        .unwrap_or_default(),
                    String::from_utf8_lossy(line.strip_prefix(b"-").unwrap_or(&line))
                ),
            ));
        }
    }
    Ok(stream)
}

/// One reply line (AUTH answers with a simple string or an error, nothing else is
/// pending), without its CRLF; at most 1 KiB.
async fn read_line(stream: &mut Stream) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the instance closed the connection during AUTH",
            ));
        }
        if line.len() >= 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "AUTH's reply is longer than 1 KiB",
            ));
        }
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

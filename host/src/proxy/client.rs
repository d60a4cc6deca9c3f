//! Writing to a client within a deadline: a client that accepts no bytes for
//! `limits.client_write_timeout_ms` is disconnected instead of pinning its session (and the
//! replies it holds) forever.

use std::io;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Write `out` to `client` within `limit`, or fail naming the bound.
pub async fn write_client(client: &mut TcpStream, out: &[u8], limit: Duration) -> io::Result<()> {
    tokio::time::timeout(limit, client.write_all(out))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client accepted nothing for {} ms (limits.client_write_timeout_ms); closing it",
                    limit.as_millis()
                ),
            )
        })?
}

//! A client's connection: accepting it (with TLS when `[tls]` is configured), reading what
//! it sends without holding a buffer while it is idle, and writing within a deadline (a client that accepts no bytes for
//! `limits.client_write_timeout_ms` is disconnected instead of pinning its session, and the
//! replies it holds, forever).

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use super::stream::Stream;
use super::tls::ClientTls;

/// Bytes read on the stack before a buffer is taken.
const FIRST_READ: usize = 4096;

/// Capacity of the buffer taken when the first read fills [`FIRST_READ`]: more is coming.
const LARGE: usize = 64 << 10;

/// The client's connection, after the TLS handshake when `tls` is given (within its
/// deadline; a failed handshake fails this connection only, and is logged with the peer's
/// address and rustls's reason).
pub async fn accept(tcp: TcpStream, tls: Option<&ClientTls>) -> io::Result<Stream> {
    tcp.set_nodelay(true)?;
    let Some(ClientTls {
        acceptor,
        handshake: limit,
    }) = tls
    else {
        return Ok(Stream::Plain(tcp));
    };
    let limit = *limit;
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    // Boxed: the handshake's state is large, and a plain session's future should not
    // carry room for it.
    let handshake = Box::pin(tokio::time::timeout(limit, acceptor.accept(tcp)));
    match handshake.await {
        Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls.into()))),
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "TLS handshake with a client failed; closing its connection");
            Err(e)
        }
        Err(_) => {
            tracing::info!(%peer, limit_ms = limit.as_millis() as u64, "a client did not finish the TLS handshake in time; closing its connection");
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ))
        }
    }
}

/// Wait until `client` sends something and return it in a new buffer, or `None` when the
/// client has closed the connection. Until bytes arrive the caller holds no buffer, so an
/// idle plain connection costs none (a TLS connection holds its TLS buffers anyway, and
/// reads into a fresh buffer). A read that leaves the socket drained says so to the
/// poller, so the next wait needs no read that would block.
pub async fn read_fresh(client: &mut Stream) -> io::Result<Option<BytesMut>> {
    let client = match client {
        Stream::Plain(tcp) => tcp,
        tls => {
            let mut input = BytesMut::with_capacity(FIRST_READ);
            return Ok((tls.read_buf(&mut input).await? > 0).then_some(input));
        }
    };
    thread_local! {
        /// Where first reads land on this thread (zeroed once, not per read).
        static FIRST: std::cell::RefCell<Box<[u8]>> =
            std::cell::RefCell::new(vec![0u8; FIRST_READ].into_boxed_slice());
    }
    loop {
        client.readable().await?;
        let taken = FIRST.with_borrow_mut(|first| {
            let mut got = 0;
            let read = client.try_io(Interest::READABLE, || {
                got = client.try_read(first)?;
                if got > 0 && got < FIRST_READ {
                    // Drained: clear the readiness (the poller's next edge sets it again).
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(got)
            });
            match read {
                Ok(0) => Ok(Some(None)),
                Ok(_) => {
                    let mut input = BytesMut::with_capacity(LARGE);
                    input.extend_from_slice(first);
                    Ok(Some(Some(input)))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => {
                    Ok(Some(Some(BytesMut::from(&first[..got]))))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        if let Some(taken) = taken {
            return Ok(taken);
        }
    }
}

/// Write `out` to `client` within `limit`, or fail naming the bound.
pub async fn write_client(client: &mut Stream, out: &[u8], limit: Duration) -> io::Result<()> {
    let send = async {
        client.write_all(out).await?;
        client.flush().await
    };
    tokio::time::timeout(limit, send)
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

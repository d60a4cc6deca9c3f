//! A client's socket: reading what it sends without holding a buffer while it is idle, and
//! writing within a deadline (a client that accepts no bytes for
//! `limits.client_write_timeout_ms` is disconnected instead of pinning its session, and the
//! replies it holds, forever).

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Bytes read on the stack before a buffer is taken.
const FIRST_READ: usize = 4096;

/// Capacity of the buffer taken when the first read fills [`FIRST_READ`]: more is coming.
const LARGE: usize = 64 << 10;

/// Wait until `client` sends something and return it in a new buffer, or `None` when the
/// client has closed the connection. Until bytes arrive the caller holds no buffer, so an
/// idle connection costs none. A read that leaves the socket drained says so to the poller,
/// so the next wait needs no read that would block.
pub async fn read_fresh(client: &TcpStream) -> io::Result<Option<BytesMut>> {
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

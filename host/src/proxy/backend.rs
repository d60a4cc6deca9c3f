//! One connection from a client session to one instance.
//!
//! Requests are queued and flushed together, and replies are read back in order as raw
//! frames, so pipelined traffic crosses the proxy without being decoded. Every write and
//! every read has a deadline (the connection's `io_timeout`, or one given for the read), so
//! a hung instance (SIGSTOP, a full network path) fails the wait instead of holding it
//! forever. Each connection has a serial number that is never reused, so state bound to one
//! connection (a WATCH) can tell that the connection was replaced.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::resp::{Frame, FrameScanner, Limits, parse};
use super::stream::Stream;

/// Serial numbers of connections, process-wide.
static SERIALS: AtomicU64 = AtomicU64::new(1);

/// A connection to an instance.
pub struct Backend {
    stream: Stream,
    write: BytesMut,
    read: BytesMut,
    scanner: FrameScanner,
    io_timeout: Duration,
    serial: u64,
}

/// The error of a wait past its deadline.
fn timed_out(what: &str, limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no {what} within {} ms", limit.as_millis()),
    )
}

impl Backend {
    /// Connect within `timeout`; every later write and read must finish within
    /// `io_timeout`.
    pub async fn connect(
        address: &str,
        timeout: Duration,
        io_timeout: Duration,
    ) -> io::Result<Self> {
        let stream = super::dial::dial(address, timeout).await?;
        Ok(Backend {
            stream,
            write: BytesMut::with_capacity(16 << 10),
            read: BytesMut::with_capacity(16 << 10),
            scanner: FrameScanner::new(Limits::unbounded()),
            io_timeout,
            serial: SERIALS.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// This connection's serial number, unique in the process.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// True when the instance has closed the connection (or reset it) while idle: a
    /// request must not be sent on it, and can safely go on a new one instead.
    pub fn is_closed(&mut self) -> bool {
        // An unsolicited reply is kept for the next read.
        self.stream.closed_while_idle(&mut self.read)
    }

    /// Queue raw request bytes.
    pub fn queue(&mut self, raw: &[u8]) {
        self.write.extend_from_slice(raw);
    }

    /// True when requests are waiting to be sent.
    pub fn has_queued(&self) -> bool {
        !self.write.is_empty()
    }

    /// Send what is queued, within the connection's deadline.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.write.is_empty() {
            let send = async {
                self.stream.write_all(&self.write).await?;
                self.stream.flush().await
            };
            tokio::time::timeout(self.io_timeout, send)
                .await
                .map_err(|_| timed_out("progress sending to the instance", self.io_timeout))??;
            self.write.clear();
        }
        Ok(())
    }

    /// Read the next reply as raw bytes, within the connection's deadline.
    pub async fn read_raw(&mut self) -> io::Result<Bytes> {
        self.read_raw_within(Some(self.io_timeout)).await
    }

    /// Read the next reply as raw bytes, within `limit` (`None`: as long as it takes, for
    /// a blocking command that asked to wait forever).
    pub async fn read_raw_within(&mut self, limit: Option<Duration>) -> io::Result<Bytes> {
        match limit {
            Some(limit) => tokio::time::timeout(limit, self.next_reply())
                .await
                .map_err(|_| timed_out("reply from the instance", limit))?,
            None => self.next_reply().await,
        }
    }

    async fn next_reply(&mut self) -> io::Result<Bytes> {
        loop {
            match self.scanner.scan(&self.read) {
                Ok(Some(len)) => return Ok(self.read.split_to(len).freeze()),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            if self.read.capacity() - self.read.len() < 4096 {
                self.read.reserve(64 << 10);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "instance closed the connection",
                ));
            }
        }
    }

    /// Read the next reply, decoded.
    pub async fn read_frame(&mut self) -> io::Result<Frame> {
        let raw = self.read_raw().await?;
        let (frame, _) = parse(&raw, &Limits::unbounded())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
            .expect("a raw reply is one complete frame");
        Ok(frame)
    }
}

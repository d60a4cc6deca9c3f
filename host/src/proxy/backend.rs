//! One connection from a client session to one instance.
//!
//! Requests are queued and flushed together, and replies are read back in order as raw
//! frames, so pipelined traffic crosses the proxy without being decoded.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::resp::{Frame, Limits, frame_len, parse};

/// A connection to an instance.
pub struct Backend {
    stream: TcpStream,
    write: BytesMut,
    read: BytesMut,
    limits: Limits,
}

impl Backend {
    /// Connect within `timeout`.
    pub async fn connect(address: &str, timeout: Duration) -> io::Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Backend {
            stream,
            write: BytesMut::with_capacity(16 << 10),
            read: BytesMut::with_capacity(16 << 10),
            limits: Limits {
                max_bulk_bytes: usize::MAX >> 1,
                max_array_len: usize::MAX >> 1,
                max_inline_bytes: usize::MAX >> 1,
                max_depth: 64,
            },
        })
    }

    /// True when the instance has closed the connection (or reset it) while idle: a
    /// request must not be sent on it, and can safely go on a new one instead.
    pub fn is_closed(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Ok(0) => true,
            Ok(_) => {
                // An unsolicited reply: keep it for the next read.
                self.read.extend_from_slice(&probe);
                false
            }
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }

    /// Queue raw request bytes.
    pub fn queue(&mut self, raw: &[u8]) {
        self.write.extend_from_slice(raw);
    }

    /// True when requests are waiting to be sent.
    pub fn has_queued(&self) -> bool {
        !self.write.is_empty()
    }

    /// Send what is queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.write.is_empty() {
            self.stream.write_all(&self.write).await?;
            self.write.clear();
        }
        Ok(())
    }

    /// Read the next reply as raw bytes.
    pub async fn read_raw(&mut self) -> io::Result<Bytes> {
        loop {
            match frame_len(&self.read, &self.limits) {
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
        let (frame, _) = parse(&raw, &self.limits)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
            .expect("a raw reply is one complete frame");
        Ok(frame)
    }
}

//! A policy's stdout and stderr, turned into lines of its [`Voice`].
//!
//! Output is split into lines; a line longer than [`MAX_LINE`] is cut, so a policy that
//! prints without newlines cannot grow the host's memory.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use shardcast_sdk::types::Level;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::voice::Voice;

/// Longest line kept, in bytes.
pub const MAX_LINE: usize = 4096;

/// Most bytes one write may carry: what `check_write` permits. A larger write traps, so
/// that one call cannot keep the host splitting lines for long.
const PERMIT: usize = 64 * 1024;

/// Which stream a [`GuestOutput`] stands for.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// The policy's stdout, logged at INFO.
    Stdout,
    /// The policy's stderr, logged at WARN.
    Stderr,
}

/// One of a policy's output streams.
#[derive(Clone)]
pub struct GuestOutput {
    voice: Arc<Voice>,
    stream: Stream,
    line: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    /// A stream whose lines `voice` says.
    pub fn new(voice: Arc<Voice>, stream: Stream) -> Self {
        GuestOutput {
            voice,
            stream,
            line: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut line = self.line.lock().unwrap_or_else(|e| e.into_inner());
        for &b in bytes {
            if b == b'\n' {
                self.emit(&line);
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        match self.stream {
            Stream::Stdout => self.voice.say(Level::Info, "stdout", &text),
            Stream::Stderr => self.voice.say(Level::Warn, "stderr", &text),
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.len() > PERMIT {
            return Err(wasmtime_wasi::p2::StreamError::trap(&format!(
                "a write of {} bytes to stdout or stderr, more than the {PERMIT} permitted",
                bytes.len()
            )));
        }
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

//! A connection the proxy reads and writes: plain TCP, or TLS over it (a client's, when
//! `[tls]` is configured; an instance's, when `[instance_tls]` is).
//!
//! Both variants are `AsyncRead + AsyncWrite`. A TLS write can leave bytes in the TLS
//! layer's buffer, so every writer flushes after it writes; on plain TCP a flush is free.
//! Code on the hot path that depends on the socket itself (readiness, `try_read`) asks for
//! [`Stream::plain`] and takes a general path otherwise.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// Plain TCP, or TLS over TCP.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS, a client's or an instance's (boxed: the TLS state is large, and a plain
    /// connection should not pay for its size).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// The socket itself when no TLS layer is over it.
    pub fn plain(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(_) => None,
        }
    }

    /// True when the peer has closed the connection (or reset it) while idle, without
    /// waiting; bytes that did arrive are appended to `into` for the next read.
    pub fn closed_while_idle(&mut self, into: &mut BytesMut) -> bool {
        let mut probe = [0u8; 1];
        match self {
            Stream::Plain(s) => match s.try_read(&mut probe) {
                Ok(0) => true,
                Ok(_) => {
                    into.extend_from_slice(&probe);
                    false
                }
                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            },
            Stream::Tls(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut buf = ReadBuf::new(&mut probe);
                match Pin::new(&mut **s).poll_read(&mut cx, &mut buf) {
                    Poll::Pending => false,
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => true,
                    Poll::Ready(Ok(())) => {
                        into.extend_from_slice(buf.filled());
                        false
                    }
                    Poll::Ready(Err(_)) => true,
                }
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

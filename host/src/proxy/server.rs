//! The accept loop of one event loop: one task per client session, at most
//! `limits.maxclients` at once across every loop, until shutdown; then a bounded drain of
//! the sessions in flight.
//!
//! On shutdown the listener closes, every session finishes the batch it is serving and
//! then ends, and the loop waits up to `limits.shutdown_grace_ms` for them before
//! returning. A failing `accept` (out of file descriptors) backs off instead of spinning.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::session::{Session, Shared};

/// One connected client in the count across loops, for as long as it lives.
pub struct Connected(Arc<AtomicUsize>);

impl Connected {
    /// Count one more client until this is dropped.
    pub fn new(clients: &Arc<AtomicUsize>) -> Self {
        clients.fetch_add(1, Ordering::Relaxed);
        Connected(clients.clone())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Log how a session ended, if it ended in an error.
fn log_end(ended: Result<std::io::Result<()>, tokio::task::JoinError>) {
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "client connection ended"),
        Err(e) => tracing::warn!(error = %e, "a session's task failed"),
    }
}

/// What a client over `maxclients` is told, in Redis's words.
const FULL: &[u8] = b"-ERR max number of clients reached\r\n";

/// Accept clients on `listener` until `shutdown` completes; then stop accepting, let the
/// sessions finish what they are serving (within `limits.shutdown_grace_ms`) and return.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut sessions = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    backoff = Duration::from_millis(5);
                    while let Some(ended) = sessions.try_join_next() {
                        log_end(ended);
                    }
                    if shared.clients.load(Ordering::Relaxed) >= shared.limits.maxclients {
                        tracing::warn!(%peer, maxclients = shared.limits.maxclients, "refusing a client: limits.maxclients reached");
                        // Over TLS the refusal would cost a handshake each: a full proxy
                        // just closes the connection.
                        if shared.tls.is_none() {
                            tokio::spawn(async move {
                                let mut socket = socket;
                                let _ = tokio::time::timeout(Duration::from_secs(1), socket.write_all(FULL)).await;
                            });
                        }
                        continue;
                    }
                    let session = Session::new(shared.clone(), Connected::new(&shared.clients));
                    tracing::trace!(%peer, "client connected");
                    // The session's own future, not wrapped: a wrapping future would hold
                    // a second copy of it while it runs.
                    sessions.spawn(session.run(socket));
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    shared.closing.send_replace(true);
    let grace = Duration::from_millis(shared.limits.shutdown_grace_ms);
    tracing::info!(
        sessions = sessions.len(),
        grace_ms = grace.as_millis() as u64,
        "shutting down: no longer accepting clients; finishing requests in flight"
    );
    let drained = tokio::time::timeout(grace, async {
        while let Some(ended) = sessions.join_next().await {
            log_end(ended);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            sessions = sessions.len(),
            "sessions still busy after limits.shutdown_grace_ms; closing them"
        );
        sessions.shutdown().await;
    }
}

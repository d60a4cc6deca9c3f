//! The accept loop: one task per client session, until shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::session::{Session, Shared};

/// Accept clients on `listener` until `shutdown` completes; then stop accepting and return
/// (sessions in flight finish on their own tasks).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let session = Session::new(shared.clone());
                    tokio::spawn(async move {
                        if let Err(e) = session.run(socket).await {
                            tracing::debug!(%peer, error = %e, "client connection ended");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            () = &mut shutdown => {
                tracing::info!("shutting down: no longer accepting clients");
                return;
            }
        }
    }
}

//! Shared, multiplexed connections to the instances, as twemproxy and Envoy keep them.
//!
//! Sessions in the default state (database 0, RESP2, no transaction or blocking call in
//! progress) send each request as a [`Job`] to the instance's multiplexer. Its writer takes
//! every job waiting, writes them with one system call, and hands them to its reader, which
//! reads the replies in order and answers each job. Many clients' requests thus share one
//! connection and one round of system calls. A connection that fails answers every job in
//! flight with the error and is reopened for the next job.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::resp::{Limits, frame_len};

/// One request (or several) and where to send the replies.
pub struct Job {
    /// Raw request bytes.
    pub raw: Bytes,
    /// Replies expected.
    pub replies: usize,
    /// Where the replies go.
    pub done: oneshot::Sender<Result<Vec<Bytes>, String>>,
}

/// The multiplexers of every instance.
pub struct Mux {
    links: Vec<mpsc::UnboundedSender<Job>>,
}

impl Mux {
    /// One multiplexer per address; connections open on first use.
    pub fn new(addresses: &[String], connect_timeout: Duration) -> Self {
        let links = addresses
            .iter()
            .map(|address| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run(address.clone(), connect_timeout, rx));
                tx
            })
            .collect();
        Mux { links }
    }

    /// Send `raw` (expecting `replies` replies) to instance `id`.
    pub fn send(
        &self,
        id: usize,
        raw: Bytes,
        replies: usize,
    ) -> oneshot::Receiver<Result<Vec<Bytes>, String>> {
        let (done, rx) = oneshot::channel();
        let job = Job { raw, replies, done };
        if let Some(link) = self.links.get(id) {
            if let Err(mpsc::error::SendError(job)) = link.send(job) {
                let _ = job
                    .done
                    .send(Err("the instance's multiplexer has stopped".into()));
            }
        } else {
            let _ = job.done.send(Err(format!("no instance {id}")));
        }
        rx
    }
}

fn fail_all(jobs: impl IntoIterator<Item = Job>, why: &str) {
    for job in jobs {
        let _ = job.done.send(Err(why.to_owned()));
    }
}

async fn run(address: String, timeout: Duration, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(&address)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                fail_all(
                    std::iter::once(first).chain(drain(&mut rx)),
                    &format!("unreachable: {e}"),
                );
                continue;
            }
            Err(_) => {
                fail_all(
                    std::iter::once(first).chain(drain(&mut rx)),
                    "unreachable: connect timed out",
                );
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let (inflight_tx, mut inflight_rx) = mpsc::unbounded_channel::<Job>();
        let mut reading = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 << 10);
            let limits = Limits {
                max_bulk_bytes: usize::MAX >> 1,
                max_array_len: usize::MAX >> 1,
                max_inline_bytes: usize::MAX >> 1,
                max_depth: 64,
            };
            while let Some(job) = inflight_rx.recv().await {
                let mut replies = Vec::with_capacity(job.replies);
                while replies.len() < job.replies {
                    match frame_len(&buf, &limits) {
                        Ok(Some(len)) => {
                            replies.push(buf.split_to(len).freeze());
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let why = format!("bad reply: {e}");
                            let _ = job.done.send(Err(why.clone()));
                            inflight_rx.close();
                            fail_all(std::iter::from_fn(|| inflight_rx.try_recv().ok()), &why);
                            return;
                        }
                    }
                    if buf.capacity() - buf.len() < 4096 {
                        buf.reserve(64 << 10);
                    }
                    let read = reader.read_buf(&mut buf).await;
                    if !matches!(read, Ok(n) if n > 0) {
                        let why = match read {
                            Err(e) => format!("connection failed: {e}"),
                            Ok(_) => "the instance closed the connection".to_owned(),
                        };
                        let _ = job.done.send(Err(why.clone()));
                        inflight_rx.close();
                        fail_all(std::iter::from_fn(|| inflight_rx.try_recv().ok()), &why);
                        return;
                    }
                }
                let _ = job.done.send(Ok(replies));
            }
        });
        let mut out = BytesMut::with_capacity(64 << 10);
        let mut next = Some(first);
        loop {
            let job = match next.take() {
                Some(j) => j,
                None => tokio::select! {
                    job = rx.recv() => match job {
                        Some(j) => j,
                        None => return,
                    },
                    _ = &mut reading => break,
                },
            };
            out.clear();
            let mut batch = vec![job];
            batch.extend(drain(&mut rx));
            for job in &batch {
                out.extend_from_slice(&job.raw);
            }
            let mut refused = Vec::new();
            for job in batch {
                if let Err(mpsc::error::SendError(job)) = inflight_tx.send(job) {
                    refused.push(job);
                }
            }
            if !refused.is_empty() {
                // The reader stopped: retry the first on a new connection, fail the rest.
                let mut rest = refused.into_iter();
                pending = rest.next();
                fail_all(rest, "the connection was lost; retry");
                break;
            }
            if let Err(e) = writer.write_all(&out).await {
                tracing::debug!(instance = %address, error = %e, "write to instance failed");
                break;
            }
        }
        drop(inflight_tx);
        let _ = reading.await;
    }
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Job>) -> Vec<Job> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

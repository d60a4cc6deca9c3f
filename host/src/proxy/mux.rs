//! Shared, multiplexed connections to the instances, as twemproxy and Envoy keep them.
//!
//! Sessions in the default state (database 0, RESP2, no transaction or blocking call in
//! progress) send each request as a [`Job`] to the instance's multiplexer, one task per
//! connection. It takes every job waiting, writes them with as few system calls as the
//! socket allows, and reads the replies in order, answering each job. Many clients' requests thus share one
//! connection and one round of system calls. A connection that fails answers every job in
//! flight with the error and is reopened for the next job.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::resp::{Limits, frame_len};

/// How the error of a job that was never sent starts: the instance could not be reached,
/// so the job may be sent again.
pub const UNREACHABLE: &str = "unreachable";

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
    let limits = Limits {
        max_bulk_bytes: usize::MAX >> 1,
        max_array_len: usize::MAX >> 1,
        max_inline_bytes: usize::MAX >> 1,
        max_depth: 64,
    };
    loop {
        let Some(first) = rx.recv().await else { return };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(&address)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                fail_all(
                    std::iter::once(first).chain(drain(&mut rx)),
                    &format!("{UNREACHABLE}: {e}"),
                );
                continue;
            }
            Err(_) => {
                fail_all(
                    std::iter::once(first).chain(drain(&mut rx)),
                    &format!("{UNREACHABLE}: connect timed out"),
                );
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // One task drives both directions with non-blocking I/O: it always reads when the
        // instance has replies, so neither side can block the other, and no hand-off
        // between a writer and a reader task is needed.
        let mut out = BytesMut::with_capacity(64 << 10);
        let mut input = BytesMut::with_capacity(64 << 10);
        let mut inflight: VecDeque<(Job, Vec<Bytes>)> = VecDeque::new();
        let mut next = Some(first);
        let why = loop {
            for job in next.take().into_iter().chain(drain(&mut rx)) {
                out.extend_from_slice(&job.raw);
                inflight.push_back((job, Vec::new()));
            }
            let (want_write, want_read) = (!out.is_empty(), !inflight.is_empty());
            tokio::select! {
                biased;
                // Readable while idle too: an instance that restarts closes its side,
                // and the next job then goes on a new connection instead of a dead one.
                ready = stream.readable() => {
                    if let Err(e) = ready {
                        break format!("connection failed: {e}");
                    }
                    if input.capacity() - input.len() < 4096 {
                        input.reserve(64 << 10);
                    }
                    match stream.try_read_buf(&mut input) {
                        Ok(0) if !want_read => break "the instance closed the idle connection".to_owned(),
                        Ok(0) => break "the instance closed the connection".to_owned(),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => break format!("connection failed: {e}"),
                    }
                    let mut bad = None;
                    while let Some((job, replies)) = inflight.front_mut() {
                        match frame_len(&input, &limits) {
                            Ok(Some(len)) => replies.push(input.split_to(len).freeze()),
                            Ok(None) => break,
                            Err(e) => {
                                bad = Some(format!("bad reply: {e}"));
                                break;
                            }
                        }
                        if replies.len() == job.replies {
                            let (job, replies) = inflight.pop_front().expect("front exists");
                            let _ = job.done.send(Ok(replies));
                        }
                    }
                    if let Some(why) = bad {
                        break why;
                    }
                }
                ready = stream.writable(), if want_write => {
                    if let Err(e) = ready {
                        break format!("connection failed: {e}");
                    }
                    match stream.try_write(&out) {
                        Ok(n) => {
                            let _ = out.split_to(n);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => break format!("connection failed: {e}"),
                    }
                }
                job = rx.recv(), if !want_write => match job {
                    Some(job) => next = Some(job),
                    None if inflight.is_empty() => return,
                    None => {}
                },
            }
        };
        tracing::debug!(instance = %address, why = %why, "shared connection closed");
        fail_all(inflight.into_iter().map(|(job, _)| job), &why);
    }
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Job>) -> Vec<Job> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

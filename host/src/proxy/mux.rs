//! Shared, multiplexed connections to the instances, as twemproxy and Envoy keep them.
//!
//! Sessions in the default state (database 0, RESP2, no transaction or blocking call in
//! progress) send each request as a [`Job`] to the instance's multiplexer, one task per
//! connection. It takes every job waiting, writes them with as few system calls as the
//! socket allows, and reads the replies in order, answering each job. Many clients' requests
//! thus share one connection and one round of system calls.
//!
//! Bounds: at most [`QUEUE`] jobs wait for the task (a sender past that waits its turn) and
//! at most [`IN_FLIGHT`] are on the connection; the oldest job in flight must be answered
//! within the request deadline, or the connection is given up (a hung instance cannot hold
//! its callers forever).
//!
//! When a connection fails, each job in flight learns whether any of it reached the
//! socket: one that was never written is answered [`UNREACHABLE`] (it did not run and may be
//! sent again), any other with an error that does not say so (it may have run).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::resp::{FrameScanner, Limits};
use super::stream::Stream;

/// How the error of a job that was never sent starts: the instance could not be reached,
/// so the job may be sent again.
pub const UNREACHABLE: &str = "unreachable";

/// Jobs waiting for one instance's multiplexer.
pub const QUEUE: usize = 4096;

/// Jobs on one instance's shared connection at once.
pub const IN_FLIGHT: usize = 16_384;

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
    links: Vec<mpsc::Sender<Job>>,
}

/// Time limits of a multiplexer.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// Connecting to the instance.
    pub connect: Duration,
    /// The oldest request in flight being answered.
    pub request: Duration,
}

impl Deadlines {
    /// The deadlines `limits` set (`connect_timeout_ms`, `request_timeout_ms`).
    pub fn of(limits: &crate::config::ProxyLimits) -> Self {
        Deadlines {
            connect: Duration::from_millis(limits.connect_timeout_ms),
            request: Duration::from_millis(limits.request_timeout_ms),
        }
    }
}

impl Mux {
    /// One multiplexer per address; connections open on first use.
    pub fn new(addresses: &[String], deadlines: Deadlines) -> Self {
        let links = addresses
            .iter()
            .map(|address| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(address.clone(), deadlines, rx));
                tx
            })
            .collect();
        Mux { links }
    }

    /// Send `raw` (expecting `replies` replies) to instance `id`; waits while its queue is
    /// full.
    pub async fn send(
        &self,
        id: usize,
        raw: Bytes,
        replies: usize,
    ) -> oneshot::Receiver<Result<Vec<Bytes>, String>> {
        let (done, rx) = oneshot::channel();
        let job = Job { raw, replies, done };
        if let Some(link) = self.links.get(id) {
            if let Err(mpsc::error::SendError(job)) = link.send(job).await {
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

/// A job on the connection: its replies so far, where its bytes end in the stream of
/// everything queued on the connection, and when it was queued.
struct InFlight {
    job: Job,
    replies: Vec<Bytes>,
    start: u64,
    queued_at: Instant,
}

async fn run(address: String, deadlines: Deadlines, mut rx: mpsc::Receiver<Job>) {
    loop {
        let Some(first) = rx.recv().await else { return };
        let stream = match super::dial::dial(&address, deadlines.connect).await {
            Ok(s) => s,
            Err(e) => {
                fail_all(
                    std::iter::once(first).chain(drain(&mut rx, QUEUE)),
                    &format!("{UNREACHABLE}: {e}"),
                );
                continue;
            }
        };
        serve(&address, stream, first, &mut rx, deadlines.request).await;
    }
}

/// Drive one connection until it fails or the multiplexer is dropped, then answer every
/// job still on it.
async fn serve(
    address: &str,
    stream: Stream,
    first: Job,
    rx: &mut mpsc::Receiver<Job>,
    request: Duration,
) {
    match stream {
        Stream::Plain(mut tcp) => {
            let (reader, writer) = tcp.split();
            drive(address, reader, writer, false, first, rx, request).await
        }
        tls => {
            let (reader, writer) = tokio::io::split(tls);
            drive(address, reader, writer, true, first, rx, request).await
        }
    }
}

/// [`serve`] over a connection's two halves; `buffered` when a write can leave bytes in a
/// layer above the socket (TLS), which a flush then sends.
async fn drive<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    address: &str,
    mut reader: R,
    mut writer: W,
    buffered: bool,
    first: Job,
    rx: &mut mpsc::Receiver<Job>,
    request: Duration,
) {
    // One task drives both directions with non-blocking I/O: it always reads when the
    // instance has replies, so neither side can block the other, and no hand-off between a
    // writer and a reader task is needed.
    let mut out = BytesMut::with_capacity(64 << 10);
    let mut input = BytesMut::with_capacity(64 << 10);
    let mut scanner = FrameScanner::new(Limits::unbounded());
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    // Bytes queued on the connection so far, and bytes written to the socket.
    let (mut queued, mut written) = (0u64, 0u64);
    let mut next = Some(first);
    let mut unflushed = false;
    // The oldest request's age is checked a few times per deadline: one timer for the
    // connection's life, not one per pass.
    let mut check = tokio::time::interval((request / 4).max(Duration::from_millis(1)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = loop {
        let room = IN_FLIGHT.saturating_sub(inflight.len());
        let now = Instant::now();
        for job in next.take().into_iter().chain(drain(rx, room)) {
            out.extend_from_slice(&job.raw);
            let start = queued;
            queued += job.raw.len() as u64;
            inflight.push_back(InFlight {
                start,
                replies: Vec::with_capacity(job.replies),
                job,
                queued_at: now,
            });
        }
        let (want_write, want_read) = (!out.is_empty(), !inflight.is_empty());
        if input.capacity() - input.len() < 4096 {
            input.reserve(64 << 10);
        }
        tokio::select! {
            biased;
            // Readable while idle too: an instance that restarts closes its side, and the
            // next job then goes on a new connection instead of a dead one. A read or write
            // that moves fewer bytes than it could shows the socket drained (or full), so
            // the next wait goes to the poller without a system call that would block.
            read = reader.read_buf(&mut input) => {
                match read {
                    Ok(0) if !want_read => break "the instance closed the idle connection".to_owned(),
                    Ok(0) => break "the instance closed the connection".to_owned(),
                    Ok(_) => {}
                    Err(e) => break format!("connection failed: {e}"),
                }
                let mut bad = None;
                while let Some(front) = inflight.front_mut() {
                    match scanner.scan(&input) {
                        Ok(Some(len)) => front.replies.push(input.split_to(len).freeze()),
                        Ok(None) => break,
                        Err(e) => {
                            bad = Some(format!("bad reply: {e}"));
                            break;
                        }
                    }
                    if front.replies.len() == front.job.replies {
                        let done = inflight.pop_front().expect("front exists");
                        let _ = done.job.done.send(Ok(done.replies));
                    }
                }
                if let Some(why) = bad {
                    break why;
                }
            }
            // Writes first; once nothing is left to write, a flush of what a TLS layer
            // holds. Both are safe to cancel: a write that completes reports its bytes.
            wrote = async {
                if want_write { writer.write(&out).await.map(Some) } else { writer.flush().await.map(|()| None) }
            }, if want_write || unflushed => match wrote {
                Ok(Some(n)) => {
                    let _ = out.split_to(n);
                    written += n as u64;
                    unflushed = buffered;
                }
                Ok(None) => unflushed = false,
                Err(e) => break format!("connection failed: {e}"),
            },
            _ = check.tick(), if want_read => {
                if inflight.front().is_some_and(|f| f.queued_at.elapsed() >= request) {
                    break format!("did not answer within {} ms (limits.request_timeout_ms)", request.as_millis());
                }
            }
            job = rx.recv(), if !want_write && !unflushed && inflight.len() < IN_FLIGHT => match job {
                Some(job) => next = Some(job),
                None if inflight.is_empty() => return,
                None => {}
            },
        }
    };
    tracing::debug!(instance = %address, why = %why, "shared connection closed");
    for f in inflight {
        let why = if f.start >= written {
            format!("{UNREACHABLE}: {why} before the request was sent")
        } else {
            why.clone()
        };
        let _ = f.job.done.send(Err(why));
    }
}

fn drain(rx: &mut mpsc::Receiver<Job>, most: usize) -> Vec<Job> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .take(most)
        .collect()
}

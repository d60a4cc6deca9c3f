//! Cluster mode's dirty-key tracking: the source instance's keyspace notifications.
//!
//! With several proxies, no one proxy sees every write to a moving segment. The source
//! instance does: the tap turns on its key-event notifications (`notify-keyspace-events`
//! gains `E` and `A`; they are left on), subscribes to `__keyevent@*__:*` before the bulk
//! copy starts, and records every key of the moving slots that any client writes, expires
//! or evicts as dirty, in its database.
//!
//! Redis appends a write's notification to the subscriber's output before it answers the
//! writer, and answers a `PING` on the subscribed connection after everything queued
//! before it. So once every proxy has acknowledged the hold (its writes in flight there
//! answered), a `PING` round trip on the tap ([`Tap::barrier`]) has delivered every dirty
//! key: none is missed by the last copy. A tap whose connection fails fails the barrier,
//! and the migration rolls back.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};

use super::copy::CopyError;
use super::end::End;
use crate::proxy::backend::Backend;
use crate::proxy::gate::Gate;
use crate::proxy::resp::{Frame, Limits, parse};
use crate::proxy::slot::slot;

/// The channel pattern of every key event in every database.
const PATTERN: &[u8] = b"__keyevent@*__:*";

/// A running tap on one source instance; stopped when dropped.
pub struct Tap {
    barriers: mpsc::Sender<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fail(address: &str, doing: &'static str, message: impl ToString) -> CopyError {
    CopyError {
        instance: address.to_owned(),
        doing,
        message: message.to_string(),
    }
}

/// `CONFIG args` on `end`: its reply.
async fn configure(end: &mut End, doing: &'static str, args: &[&[u8]]) -> Result<Frame, CopyError> {
    let mut command = vec![Bytes::from_static(b"CONFIG")];
    command.extend(args.iter().map(|a| Bytes::copy_from_slice(a)));
    let mut got = end.pipeline(doing, &[command]).await?;
    Ok(got.pop().unwrap_or(Frame::Null))
}

/// `args` as one RESP command.
fn command(args: &[&'static [u8]]) -> BytesMut {
    let mut out = BytesMut::new();
    Frame::Array(Some(
        args.iter()
            .map(|a| Frame::Bulk(Some(Bytes::from_static(a))))
            .collect(),
    ))
    .encode(&mut out);
    out
}

/// The database a key-event channel names: `__keyevent@<db>__:<event>`.
fn database(channel: &[u8]) -> Option<u32> {
    let rest = channel.strip_prefix(b"__keyevent@")?;
    let end = rest.iter().position(|&b| b == b'_')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

impl Tap {
    /// Turn on `config`'s instance's key events, subscribe, and record the keys of `range`
    /// written from now on in `gate`'s dirty set.
    pub async fn start(
        config: &mut End,
        range: RangeInclusive<u16>,
        gate: Arc<Gate>,
        io_timeout: Duration,
    ) -> Result<Tap, CopyError> {
        let address = config.address.clone();
        const FLAGS: Bytes = Bytes::from_static(b"notify-keyspace-events");
        let got = configure(config, "reading notify-keyspace-events", &[b"GET", &FLAGS]).await?;
        let flags = match &got {
            Frame::Array(Some(kv)) => match kv.get(1) {
                Some(Frame::Bulk(Some(v))) => v.clone(),
                _ => Bytes::new(),
            },
            other => {
                return Err(fail(
                    &address,
                    "reading notify-keyspace-events",
                    format!(
                        "CONFIG GET answered {other:?}: cluster mode needs CONFIG on its instances"
                    ),
                ));
            }
        };
        let mut wanted = flags.to_vec();
        for f in [b'E', b'A'] {
            if !wanted.contains(&f) {
                wanted.push(f);
            }
        }
        if wanted != flags {
            let set =
                configure(config, "turning key events on", &[b"SET", &FLAGS, &wanted]).await?;
            if set.is_error() {
                return Err(fail(&address, "turning key events on", format!("{set:?}")));
            }
        }
        let mut conn = Backend::connect(&address, Duration::from_secs(2), io_timeout)
            .await
            .map_err(|e| fail(&address, "connecting the tap", e))?;
        let cmd = command(&[b"PSUBSCRIBE", PATTERN]);
        conn.queue(&cmd);
        conn.flush()
            .await
            .map_err(|e| fail(&address, "subscribing the tap", e))?;
        let confirmed = conn
            .read_frame()
            .await
            .map_err(|e| fail(&address, "subscribing the tap", e))?;
        if confirmed.is_error() {
            return Err(fail(
                &address,
                "subscribing the tap",
                format!("{confirmed:?}"),
            ));
        }
        let (barriers, rx) = mpsc::channel(16);
        let task = tokio::spawn(listen(conn, rx, range, gate, address));
        Ok(Tap { barriers, task })
    }

    /// Wait (at most `bound`) until every key event the instance queued before now has
    /// been recorded.
    pub async fn barrier(&self, bound: Duration) -> Result<(), String> {
        let (done, answered) = oneshot::channel();
        let waited = tokio::time::timeout(bound, async {
            self.barriers.send(done).await.ok()?;
            answered.await.ok()
        })
        .await;
        match waited {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err("the source's keyspace tap failed: writes may have gone unseen".into()),
            Err(_) => Err(format!(
                "the source's keyspace tap did not answer within {} ms",
                bound.as_millis()
            )),
        }
    }
}

/// Record events until the connection fails or the tap is dropped; answer barriers.
async fn listen(
    mut conn: Backend,
    mut barriers: mpsc::Receiver<oneshot::Sender<()>>,
    range: RangeInclusive<u16>,
    gate: Arc<Gate>,
    address: String,
) {
    let mut waiting: VecDeque<oneshot::Sender<()>> = VecDeque::new();
    let ping = command(&[b"PING"]);
    loop {
        tokio::select! {
            raw = conn.read_raw_within(None) => {
                let raw = match raw {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(instance = %address, "the keyspace tap failed: {e}");
                        return;
                    }
                };
                let Ok(Some((Frame::Array(Some(parts)), _))) = parse(&raw, &Limits::unbounded()) else {
                    continue;
                };
                match parts.as_slice() {
                    [Frame::Bulk(Some(kind)), _, Frame::Bulk(Some(channel)), Frame::Bulk(Some(key))]
                        if kind.as_ref() == b"pmessage" =>
                    {
                        if range.contains(&slot(key))
                            && let Some(db) = database(channel)
                        {
                            gate.mark_dirty(db, key.clone());
                        }
                    }
                    [Frame::Bulk(Some(kind)), ..] if kind.eq_ignore_ascii_case(b"pong") => {
                        if let Some(done) = waiting.pop_front() {
                            let _ = done.send(());
                        }
                    }
                    _ => {}
                }
            }
            asked = barriers.recv() => {
                let Some(done) = asked else { return };
                conn.queue(&ping);
                if let Err(e) = conn.flush().await {
                    tracing::warn!(instance = %address, "the keyspace tap failed: {e}");
                    return;
                }
                waiting.push_back(done);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_read_from_the_key_event_channel() {
        assert_eq!(database(b"__keyevent@0__:set"), Some(0));
        assert_eq!(database(b"__keyevent@12__:expired"), Some(12));
        assert_eq!(database(b"__keyspace@0__:k"), None);
        assert_eq!(database(b"__keyevent@x__:set"), None);
    }
}

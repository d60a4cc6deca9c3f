//! Moving keys between two instances: SCAN filtered by slot, DUMP with PEXPIRETIME, RESTORE
//! REPLACE ABSTTL.
//!
//! Everything is pipelined in chunks over raw connections ([`End`]): one round trip to the
//! source for a chunk's `DUMP`s and `PEXPIRETIME`s, one to the target for its `RESTORE ...
//! ABSTTL`s (an absolute expiry, so a key keeps its deadline however long the copy takes). A
//! key that no longer exists on the source is deleted on the target (a tombstone), so copying
//! a key again is always safe. Pacing between chunks keeps a copy within its keys/s and bytes/s budgets.
//! This module moves bytes; it knows nothing of the gate or the journal.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::end::decimal;
pub use super::end::{Batch, CopyError, End};
use crate::proxy::resp::Frame;

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Keys restored on the target.
    pub keys: u64,
    /// Keys deleted on the target because the source no longer has them.
    pub deleted: u64,
    /// Serialized bytes moved.
    pub bytes: u64,
}

impl std::ops::AddAssign for Copied {
    fn add_assign(&mut self, o: Copied) {
        self.keys += o.keys;
        self.deleted += o.deleted;
        self.bytes += o.bytes;
    }
}

/// Budgets for one copy.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Keys per second (0: unlimited).
    pub keys_per_sec: u64,
    /// Bytes per second (0: unlimited).
    pub bytes_per_sec: u64,
    /// Keys per pipelined chunk.
    pub chunk: usize,
}

/// Copy `keys` from `source` to `target`: the target ends with each key exactly as the
/// source has it now, or without it if the source has none.
pub async fn copy_keys(
    source: &mut End,
    target: &mut End,
    keys: &[Bytes],
) -> Result<Copied, CopyError> {
    copy_and_count(source, target, keys, false)
        .await
        .map(|(c, _)| c)
}

/// [`copy_keys`] in one round trip to each side, also counting how many of `keys` exist on
/// the source (in the same pipeline as the reads) and on the target (after the writes):
/// with writes held, the two counts must agree.
pub async fn copy_and_verify(
    source: &mut End,
    target: &mut End,
    keys: &[Bytes],
) -> Result<(Copied, (i64, i64)), CopyError> {
    copy_and_count(source, target, keys, true).await
}

fn count(end: &End, reply: Option<Frame>) -> Result<i64, CopyError> {
    match reply {
        Some(Frame::Integer(n)) => Ok(n),
        other => Err(end.fail("verifying", format!("{other:?}"))),
    }
}

/// Keys per round trip inside one copy: the source reads the next group while the target
/// writes the last one, so both instances work at once.
const GROUP: usize = 256;

async fn copy_and_count(
    source: &mut End,
    target: &mut End,
    keys: &[Bytes],
    verify: bool,
) -> Result<(Copied, (i64, i64)), CopyError> {
    let mut copied = Copied::default();
    let (mut on_source, mut on_target) = (0, 0);
    let mut writing: Option<Batch> = None;
    let mut groups = keys.chunks(GROUP);
    loop {
        let group = groups.next();
        if group.is_none() && writing.is_none() {
            return Ok((copied, (on_source, on_target)));
        }
        let reads = group.map(|g| {
            let mut reads = Batch::default();
            for k in g {
                reads.push(&[b"DUMP", k]);
                reads.push(&[b"PEXPIRETIME", k]);
            }
            if verify {
                reads.exists(g);
            }
            reads
        });
        let writes = writing.take();
        let (read, written) = tokio::join!(
            async {
                match &reads {
                    Some(r) => source.send("reading keys (DUMP)", r).await.map(Some),
                    None => Ok(None),
                }
            },
            async {
                match &writes {
                    Some(w) => target.send("writing keys (RESTORE)", w).await.map(Some),
                    None => Ok(None),
                }
            }
        );
        if let Some(mut replies) = written? {
            if verify {
                on_target += count(target, replies.pop())?;
            }
            if let Some(f) = replies.iter().find(|f| f.is_error()) {
                return Err(target.fail("writing keys (RESTORE)", format!("{f:?}")));
            }
        }
        if let (Some(mut replies), Some(g)) = (read?, group) {
            if verify {
                on_source += count(source, replies.pop())?;
            }
            let mut next = Batch::default();
            for (k, pair) in g.iter().zip(replies.chunks(2)) {
                restore_or_delete(source, k, pair, &mut copied, &mut next)?;
            }
            if verify {
                next.exists(g);
            }
            writing = Some(next);
        }
    }
}

/// Append to `writes` the command that makes the target match one key's `DUMP` and
/// `PEXPIRETIME` replies (-1: no expiry; -2: no key).
fn restore_or_delete(
    source: &End,
    k: &Bytes,
    pair: &[Frame],
    copied: &mut Copied,
    writes: &mut Batch,
) -> Result<(), CopyError> {
    match (&pair[0], &pair[1]) {
        (Frame::Bulk(Some(payload)), Frame::Integer(-1)) => {
            copied.keys += 1;
            copied.bytes += payload.len() as u64;
            writes.push(&[b"RESTORE", k, b"0", payload, b"REPLACE"]);
            Ok(())
        }
        (Frame::Bulk(Some(payload)), Frame::Integer(at)) if *at > 0 => {
            copied.keys += 1;
            copied.bytes += payload.len() as u64;
            let mut buf = [0u8; 20];
            let at = decimal(*at as u64, &mut buf);
            writes.push(&[b"RESTORE", k, at, payload, b"REPLACE", b"ABSTTL"]);
            Ok(())
        }
        (Frame::Bulk(None) | Frame::Null, _) | (_, Frame::Integer(-2)) => {
            copied.deleted += 1;
            writes.push(&[b"DEL", k]);
            Ok(())
        }
        (a, b) => Err(source.fail("reading keys (DUMP)", format!("{a:?} {b:?}"))),
    }
}

/// Paces a copy to its budget.
pub struct Pace {
    budget: Budget,
    started: Instant,
    done: Copied,
}

impl Pace {
    /// A pace for `budget`, starting now.
    pub fn new(budget: Budget) -> Self {
        Pace {
            budget,
            started: Instant::now(),
            done: Copied::default(),
        }
    }

    /// Count `c` and wait as long as the budget asks.
    pub async fn account(&mut self, c: Copied) {
        self.done += c;
        let need = |amount: u64, rate: u64| {
            if rate == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(amount as f64 / rate as f64)
            }
        };
        let due = need(self.done.keys + self.done.deleted, self.budget.keys_per_sec)
            .max(need(self.done.bytes, self.budget.bytes_per_sec));
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }

    /// Everything counted so far.
    pub fn done(&self) -> Copied {
        self.done
    }
}

/// Copy every key of `range`, in every database that holds keys, from `source` to
/// `target`, within `budget`; `progress` sees the running total after each chunk.
pub async fn copy_databases(
    source: &mut End,
    target: &mut End,
    range: &RangeInclusive<u16>,
    budget: Budget,
    mut progress: impl FnMut(Copied),
) -> Result<Copied, CopyError> {
    // One pace for the whole copy: the budget is the migration's, not each database's.
    let mut pace = Pace::new(budget);
    for db in source.databases().await? {
        source.select(db).await?;
        target.select(db).await?;
        copy_paced(source, target, range, &mut pace, &mut progress).await?;
    }
    Ok(pace.done())
}

/// Copy `keys` (each in its database) in chunks of `chunk`; with `verify`, count in the
/// same round trips how many exist on each side.
pub async fn copy_dirty(
    source: &mut End,
    target: &mut End,
    keys: &[(u32, Bytes)],
    chunk: usize,
    verify: bool,
) -> Result<(Copied, (i64, i64)), CopyError> {
    let mut by_db: std::collections::BTreeMap<u32, Vec<Bytes>> = Default::default();
    for (db, k) in keys {
        by_db.entry(*db).or_default().push(k.clone());
    }
    let mut total = Copied::default();
    let (mut on_source, mut on_target) = (0, 0);
    for (db, keys) in by_db {
        source.select(db).await?;
        target.select(db).await?;
        // Verified copies go in one call (it overlaps its own groups); others in chunks.
        let size = if verify {
            keys.len().max(1)
        } else {
            chunk.max(1)
        };
        for part in keys.chunks(size) {
            let (c, (s, t)) = copy_and_count(source, target, part, verify).await?;
            total += c;
            on_source += s;
            on_target += t;
        }
    }
    Ok((total, (on_source, on_target)))
}

/// Copy every key of `range` in the selected database from `source` to `target`, within
/// `budget`; `progress` sees the running total after each chunk.
pub async fn copy_range(
    source: &mut End,
    target: &mut End,
    range: &RangeInclusive<u16>,
    budget: Budget,
    mut progress: impl FnMut(Copied),
) -> Result<Copied, CopyError> {
    let mut pace = Pace::new(budget);
    copy_paced(source, target, range, &mut pace, &mut progress).await?;
    Ok(pace.done())
}

/// [`copy_range`] counted against `pace`; `progress` sees `pace`'s running total.
async fn copy_paced(
    source: &mut End,
    target: &mut End,
    range: &RangeInclusive<u16>,
    pace: &mut Pace,
    progress: &mut impl FnMut(Copied),
) -> Result<(), CopyError> {
    let chunk = pace.budget.chunk.max(1);
    let mut cursor = 0;
    let mut pending: Vec<Bytes> = Vec::new();
    loop {
        let (next, keys) = source.scan_step(cursor, chunk.max(10), range).await?;
        pending.extend(keys);
        while pending.len() >= chunk || (next == 0 && !pending.is_empty()) {
            let take = pending.len().min(chunk);
            let part: Vec<Bytes> = pending.drain(..take).collect();
            let c = copy_keys(source, target, &part).await?;
            pace.account(c).await;
            progress(pace.done());
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

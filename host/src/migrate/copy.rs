//! Moving keys between two instances: SCAN filtered by slot, DUMP with PEXPIRETIME, RESTORE
//! REPLACE ABSTTL.
//!
//! Everything is pipelined in chunks over raw connections: one round trip to the source for
//! a chunk's `DUMP`s and `PEXPIRETIME`s, one to the target for its `RESTORE ... ABSTTL`s
//! (an absolute expiry, so a key keeps its deadline however long the copy takes). A key that no longer
//! exists on the source is deleted on the target (a tombstone), so copying a key again is
//! always safe. Pacing between chunks keeps a copy within its keys/s and bytes/s budgets.
//! This module moves bytes; it knows nothing of the gate or the journal.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::proxy::backend::Backend;
use crate::proxy::resp::Frame;
use crate::proxy::slot::slot;

/// A copy failed: which instance, doing what.
#[derive(Debug, thiserror::Error)]
#[error("{instance} {doing}: {message}")]
pub struct CopyError {
    /// The instance's address.
    pub instance: String,
    /// What was being done.
    pub doing: &'static str,
    /// What went wrong.
    pub message: String,
}

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

/// Commands encoded back to back, sent in one write.
#[derive(Default)]
pub struct Batch {
    raw: BytesMut,
    count: usize,
}

/// `n` in decimal, without allocating.
fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

impl Batch {
    /// Append one command.
    pub fn push(&mut self, parts: &[&[u8]]) {
        let mut buf = [0u8; 20];
        self.raw.put_u8(b'*');
        self.raw.put_slice(decimal(parts.len() as u64, &mut buf));
        self.raw.put_slice(b"\r\n");
        for p in parts {
            self.raw.put_u8(b'$');
            self.raw.put_slice(decimal(p.len() as u64, &mut buf));
            self.raw.put_slice(b"\r\n");
            self.raw.put_slice(p);
            self.raw.put_slice(b"\r\n");
        }
        self.count += 1;
    }

    /// Append `EXISTS` of `keys`.
    fn exists(&mut self, keys: &[Bytes]) {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
        parts.push(b"EXISTS");
        parts.extend(keys.iter().map(|k| k.as_ref()));
        self.push(&parts);
    }

    /// Commands in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the batch has no command.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// One end of a copy: a connection and the address it names in errors.
pub struct End {
    /// The connection.
    pub conn: Backend,
    /// The database selected on the connection.
    db: u32,
    /// The instance's address.
    pub address: String,
}

impl End {
    /// Connect to `address`.
    pub async fn connect(address: &str) -> Result<Self, CopyError> {
        let conn = Backend::connect(address, Duration::from_secs(2))
            .await
            .map_err(|e| CopyError {
                instance: address.to_owned(),
                doing: "connecting",
                message: e.to_string(),
            })?;
        Ok(End {
            conn,
            db: 0,
            address: address.to_owned(),
        })
    }

    fn fail(&self, doing: &'static str, message: impl ToString) -> CopyError {
        CopyError {
            instance: self.address.clone(),
            doing,
            message: message.to_string(),
        }
    }

    /// Send `commands` in one pipeline and read their replies.
    pub async fn pipeline(
        &mut self,
        doing: &'static str,
        commands: &[Vec<Bytes>],
    ) -> Result<Vec<Frame>, CopyError> {
        let mut batch = Batch::default();
        for args in commands {
            let parts: Vec<&[u8]> = args.iter().map(|a| a.as_ref()).collect();
            batch.push(&parts);
        }
        self.send(doing, &batch).await
    }

    /// Send `batch` in one write and read its replies.
    pub async fn send(
        &mut self,
        doing: &'static str,
        batch: &Batch,
    ) -> Result<Vec<Frame>, CopyError> {
        self.conn.queue(&batch.raw);
        self.conn.flush().await.map_err(|e| self.fail(doing, e))?;
        let mut replies = Vec::with_capacity(batch.count);
        for _ in 0..batch.count {
            let f = self
                .conn
                .read_frame()
                .await
                .map_err(|e| self.fail(doing, e))?;
            replies.push(f);
        }
        Ok(replies)
    }

    /// Select database `db` on the connection (nothing to do if it is selected).
    pub async fn select(&mut self, db: u32) -> Result<(), CopyError> {
        if db != self.db {
            let mut batch = Batch::default();
            batch.push(&[b"SELECT", db.to_string().as_bytes()]);
            match self.send("selecting a database", &batch).await?.pop() {
                Some(f) if !f.is_error() => self.db = db,
                other => return Err(self.fail("selecting a database", format!("{other:?}"))),
            }
        }
        Ok(())
    }

    /// The databases that hold keys, from `INFO keyspace`.
    pub async fn databases(&mut self) -> Result<Vec<u32>, CopyError> {
        let mut batch = Batch::default();
        batch.push(&[b"INFO", b"keyspace"]);
        let info = match self.send("reading INFO", &batch).await?.pop() {
            Some(Frame::Bulk(Some(text)) | Frame::Verbatim(text)) => text,
            other => return Err(self.fail("reading INFO", format!("{other:?}"))),
        };
        Ok(String::from_utf8_lossy(&info)
            .lines()
            .filter_map(|l| l.strip_prefix("db")?.split(':').next()?.parse().ok())
            .collect())
    }

    /// Delete every key of `range` in every database.
    pub async fn clear(&mut self, range: &RangeInclusive<u16>) -> Result<(), CopyError> {
        for db in self.databases().await? {
            self.select(db).await?;
            let keys = self.keys_in(range).await?;
            self.unlink(&keys).await?;
        }
        Ok(())
    }

    /// One `SCAN` step: the next cursor and the keys whose slots fall in `range`.
    pub async fn scan_step(
        &mut self,
        cursor: u64,
        count: usize,
        range: &RangeInclusive<u16>,
    ) -> Result<(u64, Vec<Bytes>), CopyError> {
        let cmd = vec![
            Bytes::from_static(b"SCAN"),
            Bytes::from(cursor.to_string()),
            Bytes::from_static(b"COUNT"),
            Bytes::from(count.to_string()),
        ];
        let mut reply = self.pipeline("scanning", &[cmd]).await?;
        let Some(Frame::Array(Some(mut parts))) = reply.pop() else {
            return Err(self.fail("scanning", "unexpected SCAN reply"));
        };
        let (Some(Frame::Array(Some(keys))), Some(Frame::Bulk(Some(next)))) =
            (parts.pop(), parts.pop())
        else {
            return Err(self.fail("scanning", "unexpected SCAN reply"));
        };
        let next = std::str::from_utf8(&next)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.fail("scanning", "bad SCAN cursor"))?;
        let keys = keys
            .into_iter()
            .filter_map(|k| match k {
                Frame::Bulk(Some(k)) if range.contains(&slot(&k)) => Some(k),
                _ => None,
            })
            .collect();
        Ok((next, keys))
    }

    /// Every key whose slot falls in `range` (a full SCAN).
    pub async fn keys_in(&mut self, range: &RangeInclusive<u16>) -> Result<Vec<Bytes>, CopyError> {
        let mut cursor = 0;
        let mut all = Vec::new();
        loop {
            let (next, keys) = self.scan_step(cursor, 1000, range).await?;
            all.extend(keys);
            if next == 0 {
                return Ok(all);
            }
            cursor = next;
        }
    }

    /// Delete `keys`, pipelined in chunks.
    pub async fn unlink(&mut self, keys: &[Bytes]) -> Result<(), CopyError> {
        for chunk in keys.chunks(500) {
            let mut cmd = vec![Bytes::from_static(b"UNLINK")];
            cmd.extend(chunk.iter().cloned());
            let reply = self.pipeline("deleting", &[cmd]).await?;
            if let Some(f) = reply.iter().find(|f| f.is_error()) {
                return Err(self.fail("deleting", format!("{f:?}")));
            }
        }
        Ok(())
    }

    /// How many of `keys` exist.
    pub async fn count_existing(&mut self, keys: &[Bytes]) -> Result<i64, CopyError> {
        let mut total = 0;
        for chunk in keys.chunks(1000) {
            let mut cmd = vec![Bytes::from_static(b"EXISTS")];
            cmd.extend(chunk.iter().cloned());
            match self.pipeline("verifying", &[cmd]).await?.pop() {
                Some(Frame::Integer(n)) => total += n,
                other => return Err(self.fail("verifying", format!("{other:?}"))),
            }
        }
        Ok(total)
    }
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
    let mut total = Copied::default();
    for db in source.databases().await? {
        source.select(db).await?;
        target.select(db).await?;
        let before = total;
        total += copy_range(source, target, range, budget, |c| {
            let mut sum = before;
            sum += c;
            progress(sum)
        })
        .await?;
    }
    Ok(total)
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
    let mut cursor = 0;
    let mut pending: Vec<Bytes> = Vec::new();
    loop {
        let (next, keys) = source
            .scan_step(cursor, budget.chunk.max(10), range)
            .await?;
        pending.extend(keys);
        while pending.len() >= budget.chunk || (next == 0 && !pending.is_empty()) {
            let take = pending.len().min(budget.chunk.max(1));
            let chunk: Vec<Bytes> = pending.drain(..take).collect();
            let c = copy_keys(source, target, &chunk).await?;
            pace.account(c).await;
            progress(pace.done());
        }
        if next == 0 {
            return Ok(pace.done());
        }
        cursor = next;
    }
}

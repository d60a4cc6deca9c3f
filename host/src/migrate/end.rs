//! One end of a copy: a raw connection to an instance, with the commands a migration sends
//! it (SELECT, INFO keyspace, SCAN by slot, UNLINK, EXISTS) and [`Batch`], commands encoded
//! back to back and sent in one write.

use std::ops::RangeInclusive;
use std::time::Duration;

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

/// Commands encoded back to back, sent in one write.
#[derive(Default)]
pub struct Batch {
    raw: BytesMut,
    count: usize,
}

/// `n` in decimal, without allocating.
pub(super) fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
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
    pub(super) fn exists(&mut self, keys: &[Bytes]) {
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

/// A check made before every command an end sends (cluster mode: the controller that
/// started the work still holds its office, under a live lease).
pub type Guard = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// One end of a copy: a connection and the address it names in errors.
pub struct End {
    /// The connection.
    pub conn: Backend,
    /// Checked before every command sent: false stops the copy.
    guard: Option<Guard>,
    /// The database selected on the connection.
    db: u32,
    /// The instance's address.
    pub address: String,
}

impl End {
    /// Connect to `address`; every later read and write must finish within `io_timeout`.
    pub async fn connect(address: &str, io_timeout: Duration) -> Result<Self, CopyError> {
        let conn = Backend::connect(address, Duration::from_secs(2), io_timeout)
            .await
            .map_err(|e| CopyError {
                instance: address.to_owned(),
                doing: "connecting",
                message: e.to_string(),
            })?;
        Ok(End {
            conn,
            guard: None,
            db: 0,
            address: address.to_owned(),
        })
    }

    /// This end, sending nothing once `guard` answers false.
    pub fn guarded(mut self, guard: Option<Guard>) -> Self {
        self.guard = guard;
        self
    }

    pub(super) fn fail(&self, doing: &'static str, message: impl ToString) -> CopyError {
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
        if let Some(guard) = &self.guard
            && !guard()
        {
            return Err(self.fail(
                doing,
                "this proxy no longer holds the controller's office; its successor takes the migration over",
            ));
        }
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
        self.clear_where(&|s| range.contains(&s)).await
    }

    /// Delete every key whose slot is `wanted`, in every database.
    pub async fn clear_where(
        &mut self,
        wanted: &(dyn Fn(u16) -> bool + Sync),
    ) -> Result<(), CopyError> {
        for db in self.databases().await? {
            self.select(db).await?;
            let keys = self.keys_where(wanted).await?;
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
        self.scan_where(cursor, count, &|s| range.contains(&s))
            .await
    }

    /// One `SCAN` step: the next cursor and the keys whose slots are `wanted`.
    async fn scan_where(
        &mut self,
        cursor: u64,
        count: usize,
        wanted: &(dyn Fn(u16) -> bool + Sync),
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
                Frame::Bulk(Some(k)) if wanted(slot(&k)) => Some(k),
                _ => None,
            })
            .collect();
        Ok((next, keys))
    }

    /// Every key whose slot is `wanted` (a full SCAN).
    async fn keys_where(
        &mut self,
        wanted: &(dyn Fn(u16) -> bool + Sync),
    ) -> Result<Vec<Bytes>, CopyError> {
        let mut cursor = 0;
        let mut all = Vec::new();
        loop {
            let (next, keys) = self.scan_where(cursor, 1000, wanted).await?;
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
}

//! Durability off the async workers: one thread owns the migration journal's file and the
//! saved segment table.
//!
//! - Journal records are appended in the order they were queued; every record waiting is
//!   written, then one `fdatasync` covers them all (group commit), so a cutover's commit
//!   waits for at most one sync, never for a queue of other segments' syncs one by one.
//! - Table saves are coalesced: of the versions waiting, the newest is written (temporary
//!   file, fsync, rename, directory fsync); a request is answered once a version at least as
//!   new as its own is on disk.
//! - When the journal grows past its bound, it is compacted: rewritten with the records of
//!   unfinished migrations only (and the last record, which carries the highest id).
//!
//! Callers queue an operation and get a receiver for its outcome: async code awaits it,
//! other threads wait on it. No lock is held while the disk works.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use shardcast_sdk::types::Instance;
use tokio::sync::oneshot;

use super::journal::{Journal, Record};
use crate::topology::SegmentTable;

/// Operations that may wait for the durability thread.
const QUEUE: usize = 4096;

/// The outcome of one durable operation.
pub type Outcome = oneshot::Receiver<Result<(), String>>;

/// Where an operation's outcome goes.
type Done = oneshot::Sender<Result<(), String>>;

enum Op {
    Append(Vec<u8>, Done),
    Save(Arc<SegmentTable>, Done),
}

/// Where the journal lives and when to compact it.
pub struct JournalFile {
    /// The open file (append mode).
    pub file: File,
    /// Its path.
    pub path: PathBuf,
    /// Compact once it is larger than this.
    pub compact_bytes: u64,
}

/// The handle of the durability thread.
pub struct Durable {
    tx: mpsc::SyncSender<Op>,
}

impl Durable {
    /// Start the thread over `journal` (none: records are kept nowhere) and the table file
    /// `table` (none: tables are not saved), naming instances from `instances`.
    pub fn start(
        journal: Option<JournalFile>,
        table: Option<PathBuf>,
        instances: Vec<Instance>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("shardcast-durable".into())
            .spawn(move || run(rx, journal, table, instances))?;
        Ok(Durable { tx })
    }

    fn queue(&self, op: impl FnOnce(Done) -> Op) -> Outcome {
        let (done, outcome) = oneshot::channel();
        if let Err(mpsc::SendError(op)) = self.tx.send(op(done)) {
            let done = match op {
                Op::Append(_, d) | Op::Save(_, d) => d,
            };
            let _ = done.send(Err("the durability thread has stopped".into()));
        }
        outcome
    }

    /// Append one journal line (with its newline).
    pub fn append(&self, line: Vec<u8>) -> Outcome {
        self.queue(|done| Op::Append(line, done))
    }

    /// Save `table` (or a newer version queued with it).
    pub fn save(&self, table: Arc<SegmentTable>) -> Outcome {
        self.queue(|done| Op::Save(table, done))
    }
}

/// Wait for `outcome` from a thread that is not an async worker.
pub fn wait(outcome: Outcome) -> Result<(), String> {
    outcome
        .blocking_recv()
        .unwrap_or_else(|_| Err("the durability thread has stopped".into()))
}

/// Await `outcome`.
pub async fn settled(outcome: Outcome) -> Result<(), String> {
    outcome
        .await
        .unwrap_or_else(|_| Err("the durability thread has stopped".into()))
}

fn run(
    rx: mpsc::Receiver<Op>,
    mut journal: Option<JournalFile>,
    table: Option<PathBuf>,
    instances: Vec<Instance>,
) {
    let mut saved_epoch = 0u64;
    while let Ok(first) = rx.recv() {
        // In the order queued: each run of appends shares one sync, each run of saves one
        // write of the newest table; a save queued before an append is on disk first.
        let ops: Vec<Op> = std::iter::once(first).chain(rx.try_iter()).collect();
        let mut ops = ops.into_iter().peekable();
        while let Some(op) = ops.next() {
            match op {
                Op::Append(line, done) => {
                    let mut appends = vec![(line, done)];
                    while let Some(Op::Append(..)) = ops.peek() {
                        if let Some(Op::Append(l, d)) = ops.next() {
                            appends.push((l, d));
                        }
                    }
                    let result = match journal.as_mut() {
                        Some(j) => append_all(j, &appends),
                        None => Ok(()),
                    };
                    for (_, done) in appends {
                        let _ = done.send(result.clone());
                    }
                    if let Some(j) = journal.as_mut()
                        && let Err(e) = compact_if_large(j)
                    {
                        tracing::warn!(error = %e, "cannot compact the migration journal; it keeps growing");
                    }
                }
                Op::Save(t, done) => {
                    let mut saves = vec![(t, done)];
                    while let Some(Op::Save(..)) = ops.peek() {
                        if let Some(Op::Save(t, d)) = ops.next() {
                            saves.push((t, d));
                        }
                    }
                    let newest = saves
                        .iter()
                        .map(|(t, _)| t.clone())
                        .max_by_key(|t| t.epoch)
                        .expect("one save at least");
                    let result = match &table {
                        Some(path) if newest.epoch > saved_epoch => newest
                            .save(path, &instances)
                            .map(|()| saved_epoch = newest.epoch)
                            .map_err(|e| {
                                format!("cannot save the segment table {}: {e}", path.display())
                            }),
                        _ => Ok(()),
                    };
                    for (_, done) in saves {
                        let _ = done.send(result.clone());
                    }
                }
            }
        }
    }
}

fn append_all(j: &mut JournalFile, appends: &[(Vec<u8>, Done)]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("migration journal {}: {e}", j.path.display());
    let mut batch = Vec::with_capacity(appends.iter().map(|(l, _)| l.len()).sum());
    for (line, _) in appends {
        batch.extend_from_slice(line);
    }
    j.file.write_all(&batch).map_err(fail)?;
    j.file.sync_data().map_err(fail)
}

/// Rewrite the journal with only what recovery needs, once it is over its bound.
fn compact_if_large(j: &mut JournalFile) -> std::io::Result<()> {
    if j.file.metadata()?.len() <= j.compact_bytes {
        return Ok(());
    }
    let records = Journal::read(&j.path)?;
    // Every record of an unfinished migration, the last record of every migration since
    // the oldest unfinished one (recovery checks whether a later migration took its slots
    // over), and the record with the highest id (ids are never reused).
    let oldest = Journal::unfinished(&records).iter().map(|r| r.id).min();
    let unfinished: Vec<u64> = Journal::unfinished(&records).iter().map(|r| r.id).collect();
    let mut last: std::collections::BTreeMap<u64, &Record> = std::collections::BTreeMap::new();
    for r in &records {
        last.insert(r.id, r);
    }
    let highest = last.keys().next_back().copied();
    let mut kept: Vec<&Record> = records
        .iter()
        .filter(|r| unfinished.contains(&r.id))
        .collect();
    kept.extend(last.iter().filter_map(|(id, r)| {
        let since_oldest = oldest.is_some_and(|o| *id > o);
        (!unfinished.contains(id) && (since_oldest || Some(*id) == highest)).then_some(*r)
    }));
    let mut text = Vec::new();
    for r in &kept {
        serde_json::to_writer(&mut text, r).map_err(std::io::Error::other)?;
        text.push(b'\n');
    }
    let tmp = j.path.with_extension("compact");
    let mut f = File::create(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    // Appends go on through this handle, which becomes the journal with the rename.
    let appending = OpenOptions::new().append(true).open(&tmp)?;
    std::fs::rename(&tmp, &j.path)?;
    if let Some(dir) = j.path.parent().and_then(|d| File::open(d).ok()) {
        dir.sync_all()?;
    }
    j.file = appending;
    // What must stay may itself be large (a migration left unfinished long ago): compact
    // again only once the journal has doubled.
    j.compact_bytes = j.compact_bytes.max(2 * text.len() as u64);
    let open = kept;
    tracing::info!(path = %j.path.display(), kept = open.len(), "migration journal compacted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::journal::{Step, rec};

    #[test]
    fn appends_are_durable_in_order_and_a_large_journal_is_compacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::open(&path).expect("open");
        let (file, path) = journal.take_file().expect("a file");
        let durable = Durable::start(
            Some(JournalFile {
                file,
                path: path.clone(),
                compact_bytes: 4096,
            }),
            None,
            Vec::new(),
        )
        .expect("thread");
        // 200 migrations, one left open near the end; the last two finish out of order.
        for id in 1..=198 {
            wait(durable.append(rec(id, Step::Start).line())).expect("append");
            if id != 190 {
                wait(durable.append(rec(id, Step::Done).line())).expect("append");
            }
        }
        for line in [
            rec(199, Step::Start),
            rec(200, Step::Start),
            rec(200, Step::Done),
            rec(199, Step::Done),
        ] {
            wait(durable.append(line.line())).expect("append");
        }
        let size = std::fs::metadata(&path).expect("journal").len();
        assert!(size < 8192, "compacted: {size} bytes");
        let records = Journal::read(&path).expect("read");
        let open = Journal::unfinished(&records);
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].id, open[0].step.clone()), (190, Step::Start));
        assert!(
            records.iter().any(|r| r.id == 195),
            "later migrations stay while an earlier one is unfinished"
        );
        assert!(!records.iter().any(|r| r.id == 100));
        let mut reopened = Journal::open(&path).expect("reopen");
        assert_eq!(
            reopened.next_id(),
            201,
            "the highest id survives compaction"
        );
    }
}

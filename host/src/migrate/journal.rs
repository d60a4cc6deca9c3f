//! The migration journal: every step of every migration, written before it takes effect.
//!
//! One JSON record per line, appended and flushed to disk (`fdatasync`, by the durability
//! thread) before the step runs. After a crash, [`Journal::unfinished`] gives the last step of every migration that
//! did not end, and recovery resumes or rolls each one back (the executor's recovery). A
//! torn last line (a crash mid-write) is ignored: its step had not started.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A step of a migration, as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "step")]
pub enum Step {
    /// Dirty-key tracking is on; the target's range is being cleared of stale keys.
    Start,
    /// Bulk copy.
    Copy,
    /// Re-copying dirty keys.
    CatchUp,
    /// Requests held; the last keys are moving.
    Cutover,
    /// The target owns the segment from table epoch `epoch` on.
    Committed {
        /// The epoch of the table that names the target.
        epoch: u64,
    },
    /// The source's copy of the segment is deleted.
    CleanedUp,
    /// Finished with the segment on the target.
    Done,
    /// Stopped before the flip, the segment stays on the source, but the target could not
    /// be reached to delete its partial copy: that deletion is still to do (retried in the
    /// background and at every start), then `RolledBack` ends the migration.
    Stray {
        /// Why the migration stopped, and why the copy stays for now.
        reason: String,
    },
    /// Stopped before the flip; the target's partial copy is deleted; the segment stays
    /// on the source.
    RolledBack {
        /// Why.
        reason: String,
    },
}

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The migration.
    pub id: u64,
    /// The segment's id.
    pub segment: u32,
    /// Its first slot.
    pub slot_start: u16,
    /// Its last slot.
    pub slot_end: u16,
    /// Where it came from.
    pub source: u32,
    /// Where it goes.
    pub target: u32,
    /// The source's name: ids are positions in the configuration, which may be reordered
    /// between two runs, so recovery resolves instances by name (journals written before
    /// names were recorded fall back to the ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// The target's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The step.
    #[serde(flatten)]
    pub step: Step,
}

impl Record {
    /// True when the migration has ended.
    pub fn is_final(&self) -> bool {
        matches!(self.step, Step::Done | Step::RolledBack { .. })
    }
}

/// An append-only journal file (or none, in memory only).
pub struct Journal {
    file: Option<File>,
    path: Option<PathBuf>,
    next_id: u64,
}

/// The journal could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("migration journal {path}: {source}")]
pub struct JournalError {
    path: String,
    source: std::io::Error,
}

impl Journal {
    /// A journal that keeps nothing: migrations work, but a crash cannot be recovered.
    pub fn in_memory() -> Self {
        Journal {
            file: None,
            path: None,
            next_id: 1,
        }
    }

    /// Open (or create) the journal at `path`.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let fail = |source| JournalError {
            path: path.display().to_string(),
            source,
        };
        let records = Self::read(path).map_err(fail)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(fail)?;
        // End a torn last line, so the next record starts on a line of its own.
        let text = std::fs::read(path).map_err(fail)?;
        if text.last().is_some_and(|&b| b != b'\n') {
            file.write_all(b"\n").map_err(fail)?;
        }
        Ok(Journal {
            file: Some(file),
            path: Some(path.to_owned()),
            next_id: records.iter().map(|r| r.id).max().unwrap_or(0) + 1,
        })
    }

    /// Every readable record in `path`, in order (none if it does not exist).
    pub fn read(path: &Path) -> std::io::Result<Vec<Record>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut records = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line?;
            match serde_json::from_str::<Record>(&line) {
                Ok(r) => records.push(r),
                Err(e) => tracing::warn!(error = %e, "ignoring a torn journal line"),
            }
        }
        Ok(records)
    }

    /// The last record of every migration that has not ended.
    pub fn unfinished(records: &[Record]) -> Vec<Record> {
        let mut last: BTreeMap<u64, &Record> = BTreeMap::new();
        for r in records {
            last.insert(r.id, r);
        }
        last.into_values()
            .filter(|r| !r.is_final())
            .cloned()
            .collect()
    }

    /// A fresh migration id.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The open file (once: the durability thread writes it from then on) and its path.
    pub fn take_file(&mut self) -> Option<(File, PathBuf)> {
        Some((self.file.take()?, self.path.clone()?))
    }
}

impl Record {
    /// The record as one journal line, with its newline.
    pub fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a record always serializes");
        line.push(b'\n');
        line
    }
}

/// A record of migration `id` at `step` (segment 3, slots 100..=200, `a` to `b`): for tests.
#[cfg(test)]
pub(crate) fn rec(id: u64, step: Step) -> Record {
    Record {
        id,
        segment: 3,
        slot_start: 100,
        slot_end: 200,
        source: 0,
        target: 1,
        source_name: Some("a".into()),
        target_name: Some("b".into()),
        at_ms: 0,
        step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(j: &mut Journal, r: &Record) {
        j.file
            .as_mut()
            .expect("opened on a file")
            .write_all(&r.line())
            .expect("append");
    }

    #[test]
    fn unfinished_migrations_survive_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).expect("open");
        append(&mut j, &rec(1, Step::Start));
        append(&mut j, &rec(1, Step::Copy));
        append(&mut j, &rec(2, Step::Start));
        append(&mut j, &rec(2, Step::Done));
        append(&mut j, &rec(3, Step::Committed { epoch: 7 }));
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"id\":4,\"segm"))
            .expect("tear");
        let records = Journal::read(&path).expect("read");
        assert_eq!(records.len(), 5);
        let open = Journal::unfinished(&records);
        assert_eq!(
            open.iter()
                .map(|r| (r.id, r.step.clone()))
                .collect::<Vec<_>>(),
            vec![(1, Step::Copy), (3, Step::Committed { epoch: 7 })]
        );
        let mut j = Journal::open(&path).expect("reopen");
        assert_eq!(j.next_id(), 4);
        append(&mut j, &rec(4, Step::Start));
        assert_eq!(Journal::read(&path).expect("read").len(), 6);
    }
}

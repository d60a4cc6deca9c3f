//! What a policy says: its log messages and its stdout and stderr lines, written under its
//! name, cleaned, and within a byte budget per tick.
//!
//! Every line is cleaned ([`text::clean`]) so that it cannot pass for a host line. Past the
//! budget, lines are counted instead of written; the next [`Voice::settle`] (at the start of
//! each tick, and when the instance is dropped) writes one line saying how much was
//! suppressed.
//!
//! The messages a policy logs at `info` or above through the `log` import are also kept
//! as the tick's notes ([`Voice::take_notes`]): the decision log records them beside the
//! actions, so that each move carries the policy's reason for it.

use std::sync::{Arc, Mutex};

use shardcast_sdk::types::Level;

use super::text::{self, MAX_MESSAGE};

#[derive(Default)]
struct Spent {
    bytes: u64,
    suppressed_bytes: u64,
    suppressed_lines: u64,
}

/// One policy instance's voice.
pub struct Voice {
    label: Mutex<Arc<str>>,
    budget: u64,
    spent: Mutex<Spent>,
    notes: Mutex<Vec<String>>,
}

impl Voice {
    /// A voice speaking as `label`, allowed `budget` bytes per tick.
    pub fn new(label: Arc<str>, budget: u64) -> Arc<Self> {
        Arc::new(Voice {
            label: Mutex::new(label),
            budget,
            spent: Mutex::new(Spent::default()),
            notes: Mutex::new(Vec::new()),
        })
    }

    /// Speak as `label` from now on (once the policy has said its name).
    pub fn rename(&self, label: Arc<str>) {
        *self.label.lock().unwrap_or_else(|e| e.into_inner()) = label;
    }

    /// The label lines are written under.
    pub fn label(&self) -> Arc<str> {
        self.label.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Write `message` at `level` from `stream` (`log`, `stdout`, `stderr`), if the budget
    /// allows.
    pub fn say(&self, level: Level, stream: &'static str, message: &str) {
        // Charged before cleaning, so that lines past the budget cost only a count.
        {
            let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
            let cost = message.len().min(MAX_MESSAGE) as u64 + 1;
            if spent.bytes + cost > self.budget {
                spent.suppressed_bytes += cost;
                spent.suppressed_lines += 1;
                return;
            }
            spent.bytes += cost;
        }
        let line = text::clean(message, MAX_MESSAGE);
        if stream == "log" && !matches!(level, Level::Trace | Level::Debug) {
            self.notes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.clone());
        }
        let policy = self.label();
        let policy = &*policy;
        match level {
            Level::Trace => tracing::trace!(policy, stream, "{line}"),
            Level::Debug => tracing::debug!(policy, stream, "{line}"),
            Level::Info => tracing::info!(policy, stream, "{line}"),
            Level::Warn => tracing::warn!(policy, stream, "{line}"),
            Level::Error => tracing::error!(policy, stream, "{line}"),
        }
    }

    /// The notes said in this budget period (cleaned, within the budget), oldest first.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Start a new budget period; say what the last one suppressed. Notes nobody took in
    /// the last period (a runner that does not read them) are dropped with it.
    pub fn settle(&self) {
        self.notes.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let spent = std::mem::take(&mut *self.spent.lock().unwrap_or_else(|e| e.into_inner()));
        if spent.suppressed_lines > 0 {
            let policy = self.label();
            tracing::warn!(
                policy = &*policy,
                "suppressed {} bytes ({} lines) of policy output over its budget of {} bytes per tick (raise [limits] log_bytes_per_tick)",
                spent.suppressed_bytes,
                spent.suppressed_lines,
                self.budget
            );
        }
    }
}

impl Drop for Voice {
    fn drop(&mut self) {
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_last_one_budget_period() {
        let voice = Voice::new("p@1".into(), 4096);
        voice.say(Level::Info, "log", "moving segment 3");
        voice.say(Level::Debug, "log", "not a note");
        voice.say(Level::Info, "stdout", "not a note either");
        assert_eq!(voice.take_notes(), vec!["moving segment 3".to_owned()]);
        voice.say(Level::Warn, "log", "untaken");
        voice.settle();
        assert!(voice.take_notes().is_empty(), "a new period starts empty");
    }
}

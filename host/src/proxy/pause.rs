//! `CLIENT PAUSE`: every loop's clients held until a deadline, all of their commands or
//! only those that may write, as redis-server holds its clients.
//!
//! One deadline shared by every event loop; a request checks it with one atomic load.
//! `CLIENT` commands themselves are not held, so `CLIENT UNPAUSE` can end a pause.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The pause in force, if any.
#[derive(Debug, Default)]
pub struct ClientPause {
    /// Until when, in ms since the Unix epoch (0: not paused).
    until_ms: AtomicU64,
    /// Only commands that may write are held.
    writes_only: AtomicBool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ClientPause {
    /// Hold clients for `ms` from now (a pause already longer stays), all their commands
    /// or, with `writes_only`, those that may write.
    pub fn pause(&self, ms: u64, writes_only: bool) {
        let until = now_ms().saturating_add(ms);
        if until > self.until_ms.load(Ordering::Relaxed) {
            self.writes_only.store(writes_only, Ordering::Relaxed);
            self.until_ms.store(until, Ordering::Relaxed);
        }
    }

    /// End the pause.
    pub fn unpause(&self) {
        self.until_ms.store(0, Ordering::Relaxed);
    }

    /// True while a pause may be in force (one load; the request path asks this first).
    pub fn active(&self) -> bool {
        self.until_ms.load(Ordering::Relaxed) != 0
    }

    /// How long a command that `may_write` must still wait, if at all.
    pub fn wait_for(&self, may_write: bool) -> Option<Duration> {
        let until = self.until_ms.load(Ordering::Relaxed);
        if until == 0 || (!may_write && self.writes_only.load(Ordering::Relaxed)) {
            return None;
        }
        let now = now_ms();
        (until > now).then(|| Duration::from_millis((until - now).min(50)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_pause_lets_reads_through_and_unpause_ends_it() {
        let p = ClientPause::default();
        assert_eq!(p.wait_for(true), None);
        p.pause(60_000, true);
        assert!(p.wait_for(true).is_some());
        assert_eq!(p.wait_for(false), None);
        p.pause(120_000, false);
        assert!(
            p.wait_for(false).is_some(),
            "a longer pause of all commands"
        );
        p.unpause();
        assert_eq!(p.wait_for(true), None);
    }
}

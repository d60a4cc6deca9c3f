//! The fence: in cluster mode, a proxy serves only while its etcd lease is alive.
//!
//! The lease's end is reckoned by the proxy itself (from when each keep-alive was sent, so
//! never later than etcd's own reckoning) and stored here as a deadline on the monotonic
//! clock. A request checks the deadline when it is routed, and the executor before every
//! command it sends to an instance: a proxy frozen (SIGSTOP, a long pause) past its lease
//! finds the deadline passed the moment it runs again, before any timer or task could tell
//! it, and stops. It serves again once it has registered anew and reloaded the table
//! ([`Fence::open`]).
//!
//! In single-process mode the fence is never armed: one load per request.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The process's origin on the monotonic clock: deadlines are kept as milliseconds since.
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

fn mono_ms(at: Instant) -> u64 {
    at.saturating_duration_since(*ORIGIN).as_millis() as u64
}

/// Whether this process may serve and act, by its lease.
#[derive(Debug, Default)]
pub struct Fence {
    armed: AtomicBool,
    /// The lease the deadline belongs to (0: none).
    lease: AtomicI64,
    /// Until when (ms since [`ORIGIN`]) the lease is alive; 0: lapsed or not yet granted.
    until_ms: AtomicU64,
}

impl Fence {
    /// Arm the fence (cluster mode): closed until [`Fence::open`].
    pub fn arm(&self) {
        self.until_ms.store(0, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// True when armed (cluster mode).
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// Serve under `lease`, alive until `until` (extended by [`Fence::extend`]).
    pub fn open(&self, lease: i64, until: Instant) {
        self.lease.store(lease, Ordering::SeqCst);
        self.until_ms.store(mono_ms(until), Ordering::SeqCst);
    }

    /// `lease` is alive until `until`; ignored unless it is the lease served under.
    pub fn extend(&self, lease: i64, until: Instant) {
        if self.lease.load(Ordering::SeqCst) == lease {
            self.until_ms.fetch_max(mono_ms(until), Ordering::SeqCst);
        }
    }

    /// Stop serving: the lease lapsed.
    pub fn close(&self) {
        self.until_ms.store(0, Ordering::SeqCst);
    }

    /// True when requests may be served: not armed, or the lease is alive now.
    pub fn passes(&self) -> bool {
        !self.armed() || mono_ms(Instant::now()) < self.until_ms.load(Ordering::SeqCst)
    }

    /// True when `lease` is the one served under and is alive now: what the controller's
    /// work checks, as its office ends with the lease it was won with.
    pub fn holds(&self, lease: i64) -> bool {
        self.lease.load(Ordering::SeqCst) == lease && self.passes()
    }

    /// How long the lease served under is still alive (zero when lapsed or unarmed).
    pub fn remaining(&self) -> Duration {
        let until = self.until_ms.load(Ordering::SeqCst);
        Duration::from_millis(until.saturating_sub(mono_ms(Instant::now())))
    }

    /// Wait (at most `bound`) until requests may be served. True if they may.
    pub async fn wait(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while !self.passes() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unarmed_fence_passes_and_an_armed_one_follows_its_lease() {
        let f = Fence::default();
        assert!(f.passes(), "single-process mode");
        f.arm();
        assert!(!f.passes(), "armed: closed until a lease is granted");
        f.open(7, Instant::now() + Duration::from_secs(60));
        assert!(f.passes() && f.holds(7) && !f.holds(8));
        f.extend(8, Instant::now() + Duration::from_secs(600));
        f.close();
        assert!(!f.passes(), "another lease's renewal does not reopen it");
        f.open(9, Instant::now());
        assert!(!f.passes(), "a deadline already past");
    }
}

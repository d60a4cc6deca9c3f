//! A sick instance: a side connection that keeps a `redis-server` busy for a growing share
//! of every 100 ms, so that its latency climbs as an instance's does before it fails.
//!
//! The connection goes straight to the instance (not through shardcast) and runs a Lua
//! script that spins until a given number of microseconds has passed. Redis runs one
//! command at a time, so every other client of the instance waits behind the spin.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Spins for `ARGV[1]` microseconds of server time.
const SPIN: &str = "local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end \
    local start = now() \
    repeat until now() - start >= tonumber(ARGV[1]) \
    return 0";

/// A running sickness; dropping it (or [`Sickness::stop`]) cures the instance.
pub struct Sickness {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sickness {
    /// Make the instance at `address` busy for `from` of every 100 ms at first, growing
    /// linearly to `to` over `over`, then staying there.
    pub fn start(address: &str, from: Duration, to: Duration, over: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("redis://{address}/");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut conn: Option<redis::Connection> = None;
            while !flag.load(Ordering::Relaxed) {
                let tick = Instant::now();
                let share = (started.elapsed().as_secs_f64() / over.as_secs_f64().max(1e-3))
                    .clamp(0.0, 1.0);
                let busy = from.as_secs_f64() + share * (to.as_secs_f64() - from.as_secs_f64());
                if conn.is_none() {
                    conn = redis::Client::open(url.as_str())
                        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                        .ok();
                }
                if let Some(c) = conn.as_mut() {
                    let spun: redis::RedisResult<i64> = redis::cmd("EVAL")
                        .arg(SPIN)
                        .arg(0)
                        .arg((busy * 1e6) as u64)
                        .query(c);
                    if spun.is_err() {
                        // The instance is gone (killed) or refused: try again later.
                        conn = None;
                    }
                }
                std::thread::sleep(
                    (tick + Duration::from_millis(100)).saturating_duration_since(Instant::now()),
                );
            }
        });
        Sickness {
            stop,
            thread: Some(thread),
        }
    }

    /// Cure the instance and wait for the side connection to close.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sickness {
    fn drop(&mut self) {
        self.halt();
    }
}

//! A paced client load with a hot spot that can move, for the demo and the benchmarks.
//!
//! Each thread holds one redis-rs connection and sends GETs and SETs (100-byte values) at a
//! fixed rate. A share of the requests goes to the keys of the current hot tenants (keys
//! `{tenant}:n`, so a tenant's keys share one slot and one segment); the rest spread over a
//! uniform key space. Every request's latency goes into a histogram; errors are counted
//! with the last message kept.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use redis::Commands;
use shardcast_sdk::view::SplitMix;

/// What the load has seen.
pub struct LoadStats {
    /// Requests answered without error.
    pub ok: AtomicU64,
    /// Requests answered with an error (or not at all).
    pub errors: AtomicU64,
    /// The last error.
    pub last_error: Mutex<Option<String>>,
    /// Latencies in microseconds since the last [`LoadStats::take_window`].
    window: Mutex<Histogram<u64>>,
    /// Latencies in microseconds of the whole run.
    total: Mutex<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LoadStats {
    fn new() -> Self {
        LoadStats {
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            window: Mutex::new(histogram()),
            total: Mutex::new(histogram()),
        }
    }

    /// The latencies since the last call (µs), and a fresh window.
    pub fn take_window(&self) -> Histogram<u64> {
        std::mem::replace(&mut *lock(&self.window), histogram())
    }

    /// The latencies of the whole run (µs).
    pub fn total(&self) -> Histogram<u64> {
        lock(&self.total).clone()
    }
}

/// The shape of a load.
#[derive(Clone, Debug)]
pub struct LoadShape {
    /// Client threads, one connection each.
    pub threads: usize,
    /// Requests per second per thread.
    pub rate_per_thread: u64,
    /// Share of requests for the hot tenants, 0..=1.
    pub hot_share: f64,
    /// Keys in the uniform part.
    pub keys: u64,
    /// Share of SETs, 0..=1.
    pub write_share: f64,
}

/// A running load.
pub struct Load {
    /// What it has seen.
    pub stats: Arc<LoadStats>,
    /// The current hot tenants (hash tags); change it to move the hot spot.
    pub hot: Arc<RwLock<Vec<String>>>,
    /// Requests per second per thread now; [`Load::set_rate`] changes it.
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Start `shape` against the proxy on `port`.
    pub fn start(port: u16, shape: LoadShape) -> Self {
        let stats = Arc::new(LoadStats::new());
        let hot = Arc::new(RwLock::new(Vec::new()));
        let rate = Arc::new(AtomicU64::new(shape.rate_per_thread));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..shape.threads)
            .map(|t| {
                let (stats, hot, rate, stop, shape) = (
                    stats.clone(),
                    hot.clone(),
                    rate.clone(),
                    stop.clone(),
                    shape.clone(),
                );
                std::thread::spawn(move || {
                    drive(port, t as u64, &shape, &stats, &hot, &rate, &stop)
                })
            })
            .collect();
        Load {
            stats,
            hot,
            rate,
            stop,
            threads,
        }
    }

    /// Send `per_thread` requests per second on each thread from now on (0 pauses).
    pub fn set_rate(&self, per_thread: u64) {
        self.rate.store(per_thread, Ordering::Relaxed);
    }

    /// Stop every thread and wait for them.
    pub fn stop(self) -> Arc<LoadStats> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.stats
    }
}

fn drive(
    port: u16,
    seed: u64,
    shape: &LoadShape,
    stats: &LoadStats,
    hot: &RwLock<Vec<String>>,
    rate: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut rng = SplitMix(seed.wrapping_mul(7919).wrapping_add(1));
    let value = [b'v'; 100];
    let mut conn: Option<redis::Connection> = None;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let per_second = rate.load(Ordering::Relaxed);
        if per_second == 0 {
            std::thread::sleep(Duration::from_millis(20));
            next = Instant::now();
            continue;
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += Duration::from_secs_f64(1.0 / per_second as f64);
        let Some(c) = conn.as_mut() else {
            conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .and_then(|c| c.get_connection())
                .ok();
            if conn.is_none() {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        };
        let key = {
            let tenants = hot.read().unwrap_or_else(|e| e.into_inner());
            if !tenants.is_empty() && rng.unit() < shape.hot_share {
                let t = &tenants[(rng.next_u64() % tenants.len() as u64) as usize];
                format!("{{{t}}}:{}", rng.next_u64() % 1000)
            } else {
                format!("key:{}", rng.next_u64() % shape.keys.max(1))
            }
        };
        let started = Instant::now();
        let result = if rng.unit() < shape.write_share {
            c.set::<_, _, ()>(&key, &value[..])
        } else {
            c.get::<_, Option<Vec<u8>>>(&key).map(|_| ())
        };
        let us = started.elapsed().as_micros() as u64;
        match result {
            Ok(()) => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
                let _ = lock(&stats.window).record(us.max(1));
                let _ = lock(&stats.total).record(us.max(1));
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                *lock(&stats.last_error) = Some(e.to_string());
                if e.is_io_error() {
                    conn = None;
                }
            }
        }
        // A thread that fell far behind does not try to catch up in a burst.
        if Instant::now() > next + Duration::from_millis(100) {
            next = Instant::now();
        }
    }
}

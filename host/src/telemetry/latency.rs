//! Latency histograms cheap enough for the request path.
//!
//! One histogram per hash slot and per instance: 32 relaxed atomic buckets at half-octave
//! steps from 16 µs to half a second (each bucket spans a factor of √2), so recording is one
//! atomic add and a segment's histogram is the sum of its slots' buckets. The collector
//! takes (reads and resets) them once per interval and reads percentiles from the sums.
//! Percentiles are reported at the middle of their bucket, within ±20 %.

use std::sync::atomic::{AtomicU32, Ordering};

/// Buckets per histogram.
pub const BUCKETS: usize = 32;

/// Counts per bucket, as taken from one or more histograms.
pub type Counts = [u64; BUCKETS];

/// One histogram of request latencies.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU32; BUCKETS],
}

/// The bucket of a latency in microseconds: 0 below 16 µs, then two per octave.
pub fn bucket(us: u64) -> usize {
    if us < 16 {
        return 0;
    }
    let octave = 63 - us.leading_zeros() as usize;
    let half = ((us >> (octave - 1)) & 1) as usize;
    (2 * (octave - 4) + half + 1).min(BUCKETS - 1)
}

/// The lower bound of bucket `b` in microseconds.
fn lower(b: usize) -> f64 {
    if b == 0 {
        return 0.0;
    }
    16.0 * 2f64.powf((b - 1) as f64 / 2.0)
}

impl Histogram {
    /// Record one latency.
    pub fn record(&self, us: u64) {
        self.buckets[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// Add this histogram's counts to `into` and reset it.
    pub fn take_into(&self, into: &mut Counts) {
        for (b, total) in self.buckets.iter().zip(into.iter_mut()) {
            if b.load(Ordering::Relaxed) != 0 {
                *total += u64::from(b.swap(0, Ordering::Relaxed));
            }
        }
    }
}

/// The `q` quantile (0..=1) of `counts` in microseconds, or 0 with no samples.
pub fn quantile(counts: &Counts, q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (b, &n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return if b == 0 {
                8.0
            } else {
                (lower(b) * lower(b + 1)).sqrt()
            };
        }
    }
    lower(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_by_half_octaves() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(15), 0);
        assert_eq!(bucket(16), 1);
        assert_eq!(bucket(23), 1);
        assert_eq!(bucket(24), 2);
        assert_eq!(bucket(32), 3);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        for us in [16u64, 100, 1_000, 50_000] {
            let b = bucket(us);
            assert!(lower(b) <= us as f64 && (us as f64) < lower(b + 1), "{us}");
        }
    }

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.record(100);
        }
        h.record(5_000);
        h.record(5_000);
        let mut c = [0; BUCKETS];
        h.take_into(&mut c);
        let p50 = quantile(&c, 0.5);
        let p99 = quantile(&c, 0.99);
        assert!((80.0..125.0).contains(&p50), "p50 {p50}");
        assert!((4_000.0..6_200.0).contains(&p99), "p99 {p99}");
        let mut again = [0; BUCKETS];
        h.take_into(&mut again);
        assert_eq!(quantile(&again, 0.5), 0.0, "taking resets");
    }
}

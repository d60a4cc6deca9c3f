//! The workload model: operations per second of every segment at a given time.
//!
//! Load per segment is `base × diurnal × ramps × hot spots × Zipf weight`, with the Zipf
//! weights spread over a seeded permutation of the segments. Pure functions of time and the
//! scenario (plus the seeded jumps of rotating hot spots), so runs are reproducible.

use super::scenario::{Ramp, Workload};
use crate::view::SplitMix;

/// Per-segment Zipf weights with mean 1, over a seeded permutation.
pub fn zipf_weights(segments: usize, theta: f64, seed: u64) -> Vec<f64> {
    let mut rank: Vec<usize> = (0..segments).collect();
    let mut rng = SplitMix(seed ^ 0x21bf);
    for i in (1..segments).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        rank.swap(i, j);
    }
    let raw: Vec<f64> = rank
        .iter()
        .map(|&r| 1.0 / ((r + 1) as f64).powf(theta))
        .collect();
    let mean = raw.iter().sum::<f64>() / segments.max(1) as f64;
    raw.into_iter().map(|w| w / mean).collect()
}

/// The daily-cycle multiplier at `t` seconds.
///
/// Both cycles, the day's and the week's, multiplied.
pub fn diurnal(w: &Workload, t: f64) -> f64 {
    let (d, k) = (&w.diurnal, &w.weekly);
    cycle(d.amplitude, d.period_s, d.phase, t) * cycle(k.amplitude, k.period_s, k.phase, t)
}

fn cycle(amplitude: f64, period_s: f64, phase: f64, t: f64) -> f64 {
    if amplitude == 0.0 || period_s <= 0.0 {
        return 1.0;
    }
    1.0 + amplitude * (std::f64::consts::TAU * (t / period_s + phase)).sin()
}

/// A ramp's multiplier at `t` seconds.
pub fn ramp(r: &Ramp, t: f64) -> f64 {
    let rise = |x: f64| 1.0 + (r.factor - 1.0) * (x / r.duration_s.max(1e-9)).clamp(0.0, 1.0);
    if t < r.start_s {
        return 1.0;
    }
    match r.abort_s {
        Some(abort) if t >= abort => {
            let peak = rise(abort - r.start_s);
            let back = ((t - abort) / r.duration_s.max(1e-9)).clamp(0.0, 1.0);
            peak + (1.0 - peak) * back
        }
        _ => rise(t - r.start_s),
    }
}

/// Positions of the hot-spot windows, advanced tick by tick.
#[derive(Clone, Debug)]
pub struct Hotspots {
    first: Vec<f64>,
    next_jump: Vec<f64>,
    rng: SplitMix,
}

impl Hotspots {
    /// Start positions from the scenario.
    pub fn new(w: &Workload, seed: u64) -> Self {
        Hotspots {
            first: w.hotspots.iter().map(|h| f64::from(h.first)).collect(),
            next_jump: w
                .hotspots
                .iter()
                .map(|h| h.start_s + h.jump_every_s)
                .collect(),
            rng: SplitMix(seed ^ 0x4075),
        }
    }

    /// Multiply `ops` (one entry per segment) by the hot spots active at `t`, after
    /// advancing them by `dt` seconds.
    pub fn apply(&mut self, w: &Workload, t: f64, dt: f64, ops: &mut [f64]) {
        let n = ops.len();
        if n == 0 {
            return;
        }
        for (k, h) in w.hotspots.iter().enumerate() {
            if t < h.start_s || t >= h.end_s {
                continue;
            }
            self.first[k] = (self.first[k] + h.speed * dt).rem_euclid(n as f64);
            if h.jump_every_s > 0.0 && t >= self.next_jump[k] {
                self.first[k] = (self.rng.next_u64() % n as u64) as f64;
                self.next_jump[k] += h.jump_every_s;
            }
            let first = self.first[k] as usize;
            for i in 0..(h.width as usize).min(n) {
                ops[(first + i) % n] *= h.factor;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_weights_have_mean_one_and_skew() {
        let w = zipf_weights(1000, 0.99, 7);
        let mean = w.iter().sum::<f64>() / 1000.0;
        assert!((mean - 1.0).abs() < 1e-9);
        let max = w.iter().cloned().fold(0.0, f64::max);
        assert!(max > 50.0, "the top segment dominates: {max}");
        assert_eq!(zipf_weights(1000, 0.99, 7), w, "seeded");
        assert!(
            zipf_weights(10, 0.0, 1)
                .iter()
                .all(|&x| (x - 1.0).abs() < 1e-12)
        );
    }

    #[test]
    fn ramps_rise_hold_and_abort() {
        let r = Ramp {
            start_s: 100.0,
            duration_s: 100.0,
            factor: 3.0,
            abort_s: None,
            instances: vec![],
        };
        assert_eq!(ramp(&r, 50.0), 1.0);
        assert!((ramp(&r, 150.0) - 2.0).abs() < 1e-12);
        assert_eq!(ramp(&r, 500.0), 3.0);
        let twin = Ramp {
            abort_s: Some(150.0),
            ..r
        };
        assert!((ramp(&twin, 150.0) - 2.0).abs() < 1e-12);
        assert_eq!(ramp(&twin, 400.0), 1.0, "falls back to the base");
    }
}

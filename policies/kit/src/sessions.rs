//! Session health: each client session's expected activity and its likelihood of leaving,
//! from its own commands-per-second series.
//!
//! - **Activity**: a Holt forecast over the horizon of the session's series with isolated
//!   bursts taken out (running median of five), never negative.
//! - **Churn**: a logistic score of three features of the same series and the session's
//!   age: how far its activity has declined (median of the last quarter of the window
//!   against the median of its first half), whether it has gone quiet after being active,
//!   and how young it is. An idle session that was never busy is not leaving: pools keep
//!   idle connections for hours.
//! - **Health**: `(1 - churn)` times the share of its earlier activity it is expected to
//!   keep (1 for a session that was idle all along).
//!
//! Sessions are scored round-robin, at most `per_tick` a tick, and each score is reported
//! in the tick it is made; the policy keeps every session's last score, and the fleet
//! forecast subtracts the activity of the sessions expected to leave.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use shardcast_sdk::prelude::*;
use shardcast_sdk::stats::Holt;

use crate::forecast::despike;

/// Settings (`[sessions]` in the forecaster's settings).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// Sessions scored per tick at most.
    pub per_tick: u32,
    /// Ticks between two reads of the session list.
    pub list_every: u32,
    /// Points of each session's series read.
    pub window: u32,
    /// Churn model intercept.
    pub bias: f64,
    /// Weight of the decline (0 to 1).
    pub decline: f64,
    /// Weight of having gone quiet after being active (0 or 1).
    pub quiet: f64,
    /// Weight of youth (`exp(-age / young_s)`).
    pub young: f64,
    /// Age scale of youth, in seconds.
    pub young_s: f64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            per_tick: 64,
            list_every: 16,
            window: 60,
            bias: -4.0,
            decline: 6.0,
            quiet: 2.0,
            young: 1.0,
            young_s: 60.0,
        }
    }
}

/// One session's score from its series (oldest first) and age.
pub fn score(series: &[f64], age_s: f64, horizon: usize, s: &SessionSettings) -> (f64, f64, f64) {
    let clean: Vec<f64> = series.iter().copied().filter(|x| x.is_finite()).collect();
    let young = (-age_s.max(0.0) / s.young_s.max(f64::MIN_POSITIVE)).exp();
    let n = clean.len();
    let (activity, early, decline, quiet) = if n < 4 {
        (clean.last().copied().unwrap_or(0.0).max(0.0), 0.0, 0.0, 0.0)
    } else {
        let smooth = despike(&clean);
        let holt = Holt::fit(0.5, 0.1, &smooth);
        let activity = holt.forecast(horizon.max(1));
        let activity = if activity.is_finite() {
            activity.max(0.0)
        } else {
            0.0
        };
        let early = median(&clean[..n / 2]);
        let late = median(&clean[n - (n / 4).max(1)..]);
        let decline = if early > 0.0 {
            ((early - late) / early).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let quiet = f64::from(u8::from(early > 0.0 && clean[n - 1] <= 0.0));
        (activity, early, decline, quiet)
    };
    let z = s.bias + s.decline * decline + s.quiet * quiet + s.young * young;
    let churn = 1.0 / (1.0 + (-z).exp());
    let keeps = if early > 0.0 {
        (activity / early).clamp(0.0, 1.0)
    } else {
        1.0
    };
    (activity, churn, (1.0 - churn) * keeps)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The last score of each session, kept between ticks.
#[derive(Debug, Default)]
pub struct SessionScores {
    scores: BTreeMap<SessionId, SessionHealth>,
    /// The sessions as last listed: id and connection time.
    list: Vec<(SessionId, TimestampMs)>,
    listed_at: Option<u64>,
    next: usize,
}

impl SessionScores {
    /// Score this tick's share of the sessions; returns the scores made this tick (every
    /// session is reported once per round). The session list is read every
    /// `list_every` ticks: a session gone since reads an empty series and is forgotten.
    pub fn update(
        &mut self,
        host: &dyn HostView,
        s: &SessionSettings,
        horizon_ticks: u32,
    ) -> Vec<SessionHealth> {
        let tick = host.tick();
        if self
            .listed_at
            .is_none_or(|at| tick.saturating_sub(at) >= u64::from(s.list_every.max(1)))
        {
            self.list = host
                .sessions()
                .iter()
                .map(|x| (x.id, x.connected_at))
                .collect();
            self.listed_at = Some(tick);
            let live: BTreeSet<SessionId> = self.list.iter().map(|x| x.0).collect();
            self.scores.retain(|id, _| live.contains(id));
        }
        if self.list.is_empty() {
            return Vec::new();
        }
        let horizon_ms = u64::from(host.interval_ms()) * u64::from(horizon_ticks);
        let now = host.now();
        let take = (s.per_tick as usize).min(self.list.len());
        let mut scored = Vec::with_capacity(take);
        for k in 0..take {
            let (id, connected_at) = self.list[(self.next + k) % self.list.len()];
            let series = host.series(Scope::Session(id), Metric::Ops, s.window);
            if series.is_empty() {
                self.scores.remove(&id);
                continue;
            }
            let age_s = now.saturating_sub(connected_at) as f64 / 1000.0;
            let (activity, churn, health) = score(&series, age_s, horizon_ticks as usize, s);
            let h = SessionHealth {
                session: id,
                horizon_ms,
                activity,
                churn,
                health,
            };
            self.scores.insert(id, h);
            scored.push(h);
        }
        self.next = (self.next + take) % self.list.len();
        scored
    }

    /// Commands per second expected to leave with the sessions likely to go, from every
    /// session's latest score.
    pub fn leaving_ops(&self) -> f64 {
        leaving_ops(self.scores.values())
    }
}

/// Commands per second expected to leave with the sessions likely to go: each session's
/// activity weighted by its churn probability.
pub fn leaving_ops<'a>(health: impl IntoIterator<Item = &'a SessionHealth>) -> f64 {
    health.into_iter().map(|h| h.churn * h.activity).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> SessionSettings {
        SessionSettings::default()
    }

    #[test]
    fn a_steady_old_session_is_healthy() {
        let (activity, churn, health) = score(&[100.0; 60], 3600.0, 30, &s());
        assert!((activity - 100.0).abs() < 1e-6, "{activity}");
        assert!(churn < 0.05, "{churn}");
        assert!(health > 0.95, "{health}");
    }

    #[test]
    fn a_fading_session_is_likely_to_leave() {
        let fading: Vec<f64> = (0..60).map(|t| 100.0 * (1.0 - t as f64 / 60.0)).collect();
        let (activity, churn, health) = score(&fading, 3600.0, 30, &s());
        assert!(churn > 0.5, "{churn}");
        assert!(activity < 20.0, "{activity}");
        assert!(health < 0.3, "{health}");
    }

    #[test]
    fn an_idle_pool_connection_and_a_bursty_client_are_not_leaving() {
        let (_, idle, health) = score(&[0.0; 60], 3600.0, 30, &s());
        assert!(idle < 0.05 && health > 0.95, "{idle} {health}");
        let bursty: Vec<f64> = (0..60)
            .map(|t| if t % 17 == 3 { 2000.0 } else { 20.0 })
            .collect();
        let (activity, churn, _) = score(&bursty, 3600.0, 30, &s());
        assert!(churn < 0.05, "{churn}");
        assert!(
            activity < 100.0,
            "bursts do not inflate the forecast: {activity}"
        );
    }

    #[test]
    fn a_new_session_is_more_likely_to_leave_than_an_old_one() {
        let young = score(&[50.0; 3], 1.0, 30, &s()).1;
        let old = score(&[50.0; 3], 3600.0, 30, &s()).1;
        assert!(young > old, "{young} {old}");
    }

    #[test]
    fn leaving_ops_weights_activity_by_churn() {
        let h = |activity, churn| SessionHealth {
            session: 1,
            horizon_ms: 1,
            activity,
            churn,
            health: 1.0 - churn,
        };
        assert_eq!(leaving_ops(&[h(100.0, 0.5), h(40.0, 0.0)]), 50.0);
    }
}

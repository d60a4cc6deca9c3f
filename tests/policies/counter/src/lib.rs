//! `counter`: counts the ticks it has planned and hands the count to its successor.
//!
//! Its forecast reports the count as the expected load of the first instance, which makes
//! state hand-over across hot swaps observable from the host.

use shardcast_sdk::prelude::*;

/// Counts ticks.
#[derive(Default)]
pub struct Counter {
    ticks: u64,
}

impl Policy for Counter {
    fn describe(&self) -> PolicyInfo {
        info(
            "counter",
            env!("CARGO_PKG_VERSION"),
            "Counts ticks and hands the count over on swap.",
        )
    }

    fn snapshot(&self) -> Vec<u8> {
        self.ticks.to_le_bytes().to_vec()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = state
            .try_into()
            .map_err(|_| format!("expected 8 bytes of state, got {}", state.len()))?;
        self.ticks = u64::from_le_bytes(bytes);
        Ok(())
    }
}

impl Predictor for Counter {
    fn predict(&mut self, host: &dyn HostView) -> Predictions {
        self.ticks += 1;
        let Some(first) = host.instances().first().map(|i| i.id) else {
            return Predictions::empty();
        };
        Predictions {
            load: vec![LoadForecast {
                scope: Scope::Instance(first),
                metric: Metric::Load,
                horizon_ms: 0,
                expected: self.ticks as f64,
                low: self.ticks as f64,
                high: self.ticks as f64,
                confidence: 0.5,
            }],
            failures: Vec::new(),
            sessions: Vec::new(),
        }
    }
}

impl Planner for Counter {
    fn plan(&mut self, _host: &dyn HostView, _predictions: &Predictions) -> Vec<Action> {
        Vec::new()
    }
}

shardcast_sdk::export_policy!(Counter);

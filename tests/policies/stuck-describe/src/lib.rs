//! `stuck-describe`: a planner whose `describe` never returns.
//!
//! Built for the engine's containment tests; never load it anywhere else.

use shardcast_sdk::prelude::*;

/// The stuck policy.
#[derive(Default)]
pub struct Stuck;

impl Policy for Stuck {
    fn describe(&self) -> PolicyInfo {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

impl Planner for Stuck {
    fn plan(&mut self, _host: &dyn HostView, _predictions: &Predictions) -> Vec<Action> {
        Vec::new()
    }
}

shardcast_sdk::export_planner!(Stuck);

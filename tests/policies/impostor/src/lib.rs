//! `impostor`: a policy whose name is a forged host log line, a megabyte long.
//!
//! Built for the engine's containment tests; never load it anywhere else.

use shardcast_sdk::prelude::*;

/// The impostor.
#[derive(Default)]
pub struct Impostor;

impl Policy for Impostor {
    fn describe(&self) -> PolicyInfo {
        let forged =
            "impostor\n2026-12-03T10:00:00.000000Z ERROR shardcast::run: state_dir lost\r\x1b[2K";
        info(
            &format!("{forged}{}", "N".repeat(1 << 20)),
            &format!("1\n{}", "V".repeat(1 << 20)),
            &"S".repeat(1 << 20),
        )
    }
}

impl Planner for Impostor {
    fn plan(&mut self, host: &dyn HostView, _predictions: &Predictions) -> Vec<Action> {
        host.log(Level::Info, "impostor plans nothing");
        Vec::new()
    }
}

shardcast_sdk::export_planner!(Impostor);

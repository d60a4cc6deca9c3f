//! # shardcast-sdk
//!
//! Write shardcast policies in plain Rust. A policy is a type that implements [`Policy`] and
//! [`Predictor`], [`Planner`] or both, exported with [`export_predictor!`],
//! [`export_planner!`] or [`export_policy!`] and built for `wasm32-wasip2`:
//!
//! ```
//! use shardcast_sdk::prelude::*;
//!
//! #[derive(Default)]
//! struct Still;
//!
//! impl Policy for Still {
//!     fn describe(&self) -> PolicyInfo {
//!         info("still", "0.1.0", "Never moves anything.")
//!     }
//! }
//!
//! impl Planner for Still {
//!     fn plan(&mut self, _host: &dyn HostView, _p: &Predictions) -> Vec<Action> {
//!         Vec::new()
//!     }
//! }
//!
//! shardcast_sdk::export_planner!(Still);
//! ```
//!
//! The host reaches the policy only through [`HostView`]; natively, [`view::ViewSnapshot`]
//! implements it, so the same policy runs in `cargo test` and in the host. The [`stats`]
//! module holds forecasting and anomaly tools cheap enough for 16,384 segments per tick.

#[doc(hidden)]
pub mod __bindings;

pub mod export;
pub mod host_view;
pub mod policy;
pub mod settings;
pub mod stats;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;
pub mod validate;
pub mod view;

pub use host_view::HostView;
pub use policy::{Planner, Policy, Predictor, info};

/// Everything a policy usually needs, in one `use`.
pub mod prelude {
    pub use crate::host_view::HostView;
    pub use crate::policy::{Planner, Policy, Predictor, info};
    pub use crate::settings;
    pub use crate::types::*;
}

//! Shared helpers of shardcast's end-to-end tests and benches.
//!
//! [`artifacts`] holds the paths of every policy, built to `wasm32-wasip2` components by
//! this crate's build script. The helpers load them into a real engine.

pub mod admin;
pub mod chaos;
pub mod cluster;
pub mod decisions;
pub mod demo;
pub mod etcd;
pub mod fixture;
pub mod hostile;
pub mod load;
pub mod servers;
pub mod sickness;

use std::sync::Arc;

use shardcast::engine::{ChurnLimits, PolicyEngine, Runtime, RuntimeOptions};

/// Paths of the policy components built by `build.rs`.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

/// Read a built component.
pub fn component(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read component {path}: {e}"))
}

/// A runtime with default options and no cache.
pub fn runtime() -> Arc<Runtime> {
    Runtime::new(RuntimeOptions::default()).expect("wasmtime runtime")
}

/// An engine running the component at `path` as its policy, with `settings`.
pub fn engine_with(path: &str, settings: &str) -> PolicyEngine {
    let mut engine = PolicyEngine::new(runtime(), ChurnLimits::default());
    engine
        .load_policy(&component(path), settings)
        .unwrap_or_else(|e| panic!("loading {path}: {e}"));
    engine
}

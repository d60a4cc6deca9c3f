//! # shardcast
//!
//! A Redis-protocol sharding proxy and control plane whose placement decisions are made by
//! sandboxed WebAssembly policies. This crate is the host: the policy [`engine`], the
//! [`native`] builds of the shipped policies, the [`simulate`] bridge that runs compiled
//! policies in the SDK's simulator, and the command-line interface built on them.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod history;
pub mod migrate;
pub mod native;
pub mod proxy;
pub mod run;
pub mod sessions;
pub mod simulate;
pub mod telemetry;
pub mod topology;
pub mod train;

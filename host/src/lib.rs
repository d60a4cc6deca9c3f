//! # shardcast
//!
//! A Redis-protocol sharding proxy and control plane whose placement decisions are made by
//! sandboxed WebAssembly policies. This crate is the host: the policy [`engine`] and the
//! command-line interface built on it.

pub mod engine;

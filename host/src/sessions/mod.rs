//! Client sessions: who is connected, in what state, doing how much.
//!
//! The [`registry`] lists live sessions with their per-session counters; their state
//! partitions (`connection`, `transaction`, `subscriptions`) are kept in a
//! [`repository::SessionRepository`], in-process by default or in Redis for deployments
//! that share sessions between proxies. Both feed each tick's view.

pub mod registry;
pub mod repository;

//! Cluster mode's coordination: etcd (v3 API, through the `etcd-client` crate), never a
//! consensus layer of our own. Several proxies share one keyspace through it:
//!
//! - membership: each proxy holds a lease and a key under `<prefix>/members/<name>` bound
//!   to it; the lease is kept alive in the background, and a proxy whose lease lapses (etcd
//!   unreachable for a TTL, or its keep-alives refused) learns it through
//!   [`Membership::lapsed`], so it can stop serving until it has registered again
//!   (self-fencing);
//! - the segment table: stored as [`SegmentTable::to_bytes`] writes it, under
//!   `<prefix>/table`, with its epoch beside it under `<prefix>/table-epoch`; a new table is
//!   written only if the stored epoch is still the one its writer read (compare-and-swap in
//!   one transaction), so of two writers racing from the same table one wins and the other
//!   is told; the controller's writes are also conditional on its office, so a controller
//!   deposed while it was deciding cannot write; every proxy follows the stored table
//!   ([`Store::next_table`], a watch from the revision it read);
//! - counters: each proxy publishes its per-segment and per-instance counters every tick
//!   under `<prefix>/counters/<name>`, bound to its lease, and the controller merges them
//!   ([`merge`]) into one view of the whole fleet's traffic;
//! - the controller: elected with etcd's election API on `<prefix>/controller`, campaigning
//!   with the membership lease, so a leader that dies (or is cut off) loses the office when
//!   its lease ends, and the next candidate's campaign returns;
//! - the policy: the controller's running version, its settings and checkpoints of its
//!   state ([`policy`]), so a swap reaches every proxy and a new controller starts from its
//!   predecessor's state.
//!
//! Every call to etcd has a deadline (`request_timeout_ms`) but a campaign and a watch,
//! which wait by design (on a connection of their own, kept alive by HTTP/2 pings).
//!

pub mod link;
pub mod node;
pub mod policy;
pub mod sessions;
pub mod store;

use serde::Deserialize;

pub use store::{
    Leadership, Membership, Merged, Report, SESSIONS_REPORTED, SessionReport, Store, StoreError,
    merge,
};

/// `[cluster]`: cluster mode, on when the section is present.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd's client endpoints, `host:port` or URLs.
    pub etcd: Vec<String>,
    /// This proxy's name, unique among the proxies.
    pub name: String,
    /// Where shardcast's keys live in etcd.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Seconds a proxy's lease lives without a keep-alive.
    #[serde(default = "default_ttl")]
    pub lease_ttl_s: u64,
    /// Milliseconds each call to etcd may take.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Ticks between two checkpoints of the controller's policy state in etcd.
    #[serde(default = "default_checkpoint_ticks")]
    pub checkpoint_ticks: u64,
}

fn default_prefix() -> String {
    "/shardcast".into()
}

fn default_ttl() -> u64 {
    5
}

fn default_checkpoint_ticks() -> u64 {
    50
}

fn default_request_timeout() -> u64 {
    2_000
}

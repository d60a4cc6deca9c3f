//! The RESP data plane: clients connect to shardcast as to one Redis server, and every
//! command is routed by hash slot to the instance that owns it.
//!
//! - [`resp`]: the codec (RESP2 and RESP3), with limits;
//! - [`request`]: client requests split off the read buffer without copying;
//! - [`keyspec`]: Redis's command metadata (arity, flags, key specifications) and the key
//!   positions it gives;
//! - [`command`]: the command table: one record per command, from the servers' metadata,
//!   and how the proxy treats each;
//! - [`slot`]: CRC16 hash slots with hash tags;
//! - [`fleet`]: merging the replies of a command sent to every instance;
//! - [`stream`]: a connection, plain TCP or TLS;
//! - [`tls`]: TLS for clients and for instances (rustls);
//! - [`dial`]: connecting to an instance, with its TLS and login;
//! - [`backend`]: one connection to one instance, owned by a session;
//! - [`client`]: writing to a client within a deadline;
//! - [`auth`]: client users, password digests and command rules;
//! - [`gate`]: holding and dirty-key tracking for slots that are moving;
//! - [`pause`]: `CLIENT PAUSE` across every loop;
//! - [`mux`]: shared connections multiplexing many sessions' requests;
//! - [`session`]: one client connection: routing, pipelining, merging, transactions;
//! - [`pubsub`]: subscribed mode;
//! - [`confirmations`]: subscribed mode's replies, in request order;
//! - [`server`]: the accept loop and graceful shutdown;
//! - [`loops`]: the event loops, one thread each, that the accept loops run on.

pub mod auth;
pub mod backend;
pub mod client;
pub mod command;
pub mod confirmations;
pub mod dial;
pub mod fence;
pub mod fleet;
pub mod gate;
pub mod keyspec;
pub mod loops;
pub mod mux;
pub mod pause;
pub mod pubsub;
pub mod request;
pub mod resp;
pub mod server;
pub mod session;
pub mod slot;
pub mod stream;
pub mod tls;

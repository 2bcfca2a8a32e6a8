//! sockudo: a Pusher-compatible (protocol v7) WebSocket server, thread-per-core on glommio.
//!
//! Data path: bytes -> [`http`] request -> [`ws`] frames -> [`protocol`] messages -> [`shard`] state -> frames out.
//! `config`, `http`, `ws` and `protocol` are sans-IO and unit-tested without sockets; [`conn`] and [`shard`] own
//! the sockets and per-core state; [`rest`] answers the HTTP API; [`server`] starts and stops the shards.

pub mod app;
pub mod bus;
pub mod check_config;
pub mod config;
pub mod conn;
pub mod delta;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod queue;
pub mod redis_target;
pub mod rest;
pub mod server;
pub mod shard;
pub mod state;
pub mod systemd;
pub mod tags;
pub mod tls;
pub mod unix_socket;
pub mod ws;

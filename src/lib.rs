//! sockudo: a Pusher-compatible (protocol v7) WebSocket server, thread-per-core on glommio.
//!
//! Data path: bytes -> [`http`] request -> [`ws`] frames -> [`protocol`] messages -> shard state -> frames out.
//! Everything under `config`, `http`, `ws` and `protocol` is sans-IO and unit-tested without sockets.

pub mod config;
pub mod http;
pub mod protocol;
pub mod ws;

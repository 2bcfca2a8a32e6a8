//! Pure (sans-IO) pieces of the Pusher protocol v7: close/error codes, socket ids, channel names,
//! subscription/sign-in signatures and REST request signing.
//!
//! Nothing here touches sockets, clocks or global state (except the OS-seeded RNG behind
//! [`socket_id::generate`]); callers pass in "now" and raw bytes, so every rule in
//! `PROTOCOL.md` can be unit-tested directly against its golden vectors.

pub mod auth;
pub mod channel;
pub mod codes;
pub mod messages;
pub mod origin;
pub mod rest_auth;
pub mod socket_id;

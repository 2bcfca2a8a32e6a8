//! Delta compression for sockudo-js clients (DELTA-TAGS.md §1-5, 7-8), sans-IO.
//!
//! Computed once, not per socket: per shard, per channel and per conflation key the shard keeps the last tracked
//! envelope (the *base*) and one sequence counter per channel. Each event gets one sequence number; the full frame
//! (envelope + `__delta_seq`/`__conflation_key`) and the `pusher:delta` frame (one per algorithm in use) are built
//! at most once and shared by every subscriber that needs them. A socket's own state is the list of sequence
//! numbers whose envelope it holds as a base (one per conflation key): a socket that holds the current base gets
//! the shared delta, any other (late joiner, filtered out, behind, after a sync error) gets the shared full frame
//! and from then on follows the shared stream again.

pub mod algorithm;
pub mod channel;
pub mod conflation;
pub mod frames;
pub mod rules;

pub use algorithm::Algorithm;
pub use channel::{ChannelDeltas, Round, SocketDelta};
pub use rules::{ChannelRule, ChannelRules, DeltaSettings, SubscriptionDelta};

//! Tag filtering (DELTA-TAGS.md §6): the tags a REST publish carries, and the per-subscription filter that
//! decides which of them a socket receives.
//!
//! A filter is parsed and validated once, at subscribe time, into a [`TagFilter`]; evaluating it against a
//! message's [`Tags`] allocates nothing.

mod filter;
mod publish_tags;

pub use filter::{FilterError, FilterLimits, TagFilter};
pub use publish_tags::{Tags, TagsError};

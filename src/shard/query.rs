//! Questions the REST API asks every shard (scatter-gather), and the answers each shard gives from its own state.
//!
//! Answers are always computed live from the shard's index: there is no cached channel list.

use super::Shard;
use crate::protocol::codes;
use std::time::Duration;

/// How long a REST call waits for every shard to answer.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// A question to one shard about one app.
#[derive(Debug, Clone)]
pub enum Query {
    /// Channels with local subscribers (optionally filtered by prefix) and their local subscription counts.
    Channels {
        /// `filter_by_prefix`.
        prefix: Option<String>,
    },
    /// Local subscriptions of one channel.
    SubscriptionCount {
        /// The channel.
        channel: String,
    },
    /// Members of a presence channel this shard owns.
    PresenceUsers {
        /// The channel.
        channel: String,
    },
    /// Member counts of the presence channels this shard owns (optionally filtered by prefix).
    PresenceCounts {
        /// `filter_by_prefix`.
        prefix: Option<String>,
    },
    /// The cached event of a cache channel this shard owns.
    Cache {
        /// The channel.
        channel: String,
    },
    /// Close every local connection signed in as this user; answer how many.
    TerminateUser {
        /// The user id.
        user: String,
    },
}

/// One shard's answer.
#[derive(Debug)]
pub enum Answer {
    /// `(channel, count)` pairs.
    Counts(Vec<(String, usize)>),
    /// A number.
    Count(usize),
    /// User ids.
    Users(Vec<String>),
    /// A cached channel event and its remaining seconds.
    Cached(Option<(String, u64)>),
}

impl Shard {
    /// Answers `query` about app `app` from this shard's state.
    pub fn answer(&self, app: u32, query: &Query) -> Answer {
        match query {
            Query::Channels { prefix } => {
                let index = self.channels.borrow();
                let counts = index
                    .local_channels(app)
                    .filter(|(name, _)| prefix.as_deref().is_none_or(|p| name.starts_with(p)))
                    .map(|(name, n)| (name.to_string(), n))
                    .collect();
                Answer::Counts(counts)
            }
            Query::SubscriptionCount { channel } => {
                let index = self.channels.borrow();
                Answer::Count(index.get(app, channel).map(|e| e.local.len()).unwrap_or(0))
            }
            Query::PresenceUsers { channel } => {
                Answer::Users(self.presence.borrow().user_ids(app, channel))
            }
            Query::PresenceCounts { prefix } => {
                Answer::Counts(self.presence.borrow().counts(app, prefix.as_deref()))
            }
            Query::Cache { channel } => Answer::Cached(self.cache.borrow_mut().get(
                app,
                channel,
                std::time::Instant::now(),
            )),
            Query::TerminateUser { user } => {
                let conns = self
                    .users
                    .borrow()
                    .get(&(app, user.as_str().into()))
                    .cloned()
                    .unwrap_or_default();
                let now = self.now();
                for conn in &conns {
                    conn.close_with_error(
                        codes::UNAUTHORIZED,
                        "You got disconnected by the app.",
                        now,
                    );
                }
                Answer::Count(conns.len())
            }
        }
    }

    /// Asks every shard (this one included) and collects the answers, or fails if one does not answer within
    /// [`DEADLINE`].
    pub async fn ask_all(&self, app: u32, query: Query) -> Result<Vec<Answer>, ()> {
        let mut pending = Vec::new();
        for peer in self.peers.others() {
            let (reply, rx) = tokio::sync::oneshot::channel();
            self.peers.post(
                peer,
                super::mesh::ShardMsg::Query {
                    app,
                    query: query.clone(),
                    reply,
                },
            );
            pending.push(rx);
        }
        let mut answers = vec![self.answer(app, &query)];
        for rx in pending {
            answers.push(within_deadline(rx).await?);
        }
        Ok(answers)
    }

    /// Asks only the shard that owns `channel`'s presence state.
    pub async fn ask_owner(&self, app: u32, channel: &str, query: Query) -> Result<Answer, ()> {
        let owner = match query {
            Query::Cache { .. } => self.cache_home(app, channel),
            _ => self.owner_of(app, channel),
        };
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send_to(owner, super::mesh::ShardMsg::Query { app, query, reply });
        within_deadline(rx).await
    }
}

/// A peer's answer, or `Err` when it does not come within [`DEADLINE`] (or the peer stopped).
async fn within_deadline(rx: tokio::sync::oneshot::Receiver<Answer>) -> Result<Answer, ()> {
    glommio::timer::timeout(DEADLINE, async {
        rx.await.map_err(|_| {
            glommio::GlommioError::<()>::IoError(std::io::Error::other("shard stopped"))
        })
    })
    .await
    .map_err(|_| ())
}

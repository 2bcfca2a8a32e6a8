//! `pusher:subscribe` and `pusher:unsubscribe` (PROTOCOL.md 1.6-1.11): channel rules, authorization, presence.

use super::{Connection, Subscription};
use crate::delta::SubscriptionDelta;
use crate::protocol::messages::{self, SubscribeData};
use crate::protocol::{auth, channel, codes};
use crate::shard::presence::JoinRefused;
use crate::shard::{counts_subscriptions, Shard};
use crate::tags::{FilterLimits, TagFilter};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::rc::Rc;

/// A presence member as `channel_data` describes it.
struct Member {
    user_id: String,
    info: Option<String>,
}

#[derive(Deserialize)]
struct ChannelData<'a> {
    user_id: Option<serde_json::Value>,
    #[serde(borrow, default)]
    user_info: Option<&'a RawValue>,
}

/// Joins `data.channel`, answering `subscription_succeeded` or a `pusher:error` naming the channel.
pub async fn subscribe(shard: &Rc<Shard>, conn: &Rc<Connection>, data: SubscribeData) {
    let name = data.channel.as_str();
    let refuse = |code: Option<u16>, message: &str| {
        conn.send_error(code, message, Some(name));
    };
    let limits = &conn.app.limits;
    if let Err(e) = channel::validate_name(name, limits.max_channel_name_length) {
        refuse(
            Some(codes::GENERIC_ERROR),
            &format!("Invalid channel name: {e}"),
        );
        return;
    }
    // A bad filter refuses the subscription with code 4000 and no channel (what sockudo-js expects).
    let filter = match data.filter.as_ref().or(data.tags_filter.as_ref()) {
        None | Some(serde_json::Value::Null) => None,
        Some(tree) => match TagFilter::parse(tree, &FilterLimits::default()) {
            Ok(f) => Some(f),
            Err(e) => {
                conn.send_error(
                    Some(codes::INVALID_FILTER),
                    &format!("Invalid message format: Invalid tags filter: {e}"),
                    None,
                );
                return;
            }
        },
    };
    let delta = SubscriptionDelta::from_value(data.delta.as_ref());
    if conn.is_subscribed(name) {
        // Already joined: no second reply (Pusher), but a new filter or delta setting replaces the old one.
        shard.set_subscription_options(conn, name, filter, delta);
        return;
    }
    let max = shard.config.websocket.max_subscriptions;
    if conn.channels.borrow().len() >= max {
        refuse(
            Some(codes::GENERIC_ERROR),
            &format!("Subscription limit reached: at most {max} channels per connection"),
        );
        return;
    }
    let kind = channel::classify(name).kind;
    let mut member = None;
    match kind {
        channel::ChannelKind::Public => {}
        channel::ChannelKind::ServerToUser => {
            let wanted = channel::server_to_user_id(name);
            if conn.user_id().as_deref() != wanted {
                refuse(
                    Some(codes::UNAUTHORIZED),
                    "Only a connection signed in as this user may subscribe to its #server-to-user- channel",
                );
                return;
            }
        }
        channel::ChannelKind::Private | channel::ChannelKind::PrivateEncrypted => {
            let app = shard.current_app(&conn.app).await;
            if let Err(message) = check_signature(&app, conn, name, None, data.auth.as_deref()) {
                refuse(None, &message);
                return;
            }
        }
        channel::ChannelKind::Presence => {
            let Some(channel_data) = data.channel_data.as_deref() else {
                refuse(None, "Presence channels need channel_data with a user_id");
                return;
            };
            let app = shard.current_app(&conn.app).await;
            if let Err(message) =
                check_signature(&app, conn, name, Some(channel_data), data.auth.as_deref())
            {
                refuse(None, &message);
                return;
            }
            match parse_member(conn, channel_data) {
                Ok(m) => member = Some(m),
                Err(message) => {
                    refuse(Some(codes::GENERIC_ERROR), &message);
                    return;
                }
            }
        }
    }
    if kind != channel::ChannelKind::Public {
        conn.authorized.set(true);
    }
    // Become a subscriber everywhere first, so no event published after the presence snapshot is missed.
    {
        let mut channels = conn.channels.borrow_mut();
        if channels.capacity() == 0 {
            // Most connections join one channel: do not reserve room for four on every idle connection.
            channels.reserve_exact(1);
        }
        channels.push(Subscription {
            name: name.into(),
            presence_user: member.as_ref().map(|m| m.user_id.as_str().into()),
        });
    }
    shard.set_subscription_options(conn, name, filter, delta);
    // A cache channel's replay comes from its home shard through the path its events take, the socket held
    // back until then (see `shard::cache`). A presence-cache channel's comes with the snapshot from the presence
    // owner, which is also the cache home on a single node; on a cluster, or when the event may be in Redis only
    // (the owner answers presence joins at once and cannot wait for Redis), it is read after joining.
    let owner_replays = channel::classify(name).cache
        && (member.is_none() || (shard.cluster.is_none() && !shard.cache_shared()));
    shard
        .join(
            conn.app.index,
            name,
            conn,
            member.is_some() || owner_replays,
        )
        .await;
    if counts_subscriptions(conn, name) {
        shard.count_subscription(conn.app.index, name, 1);
    }
    let Some(member) = member else {
        if owner_replays {
            shard.subscribe_with_replay(conn, name).await;
        } else if conn.is_open() {
            conn.send_control(&messages::subscription_succeeded(name));
            replay_cache(shard, conn, name).await;
        }
        return;
    };
    let joined = shard
        .presence_join(
            name,
            &member.user_id,
            member.info.as_deref(),
            limits.max_presence_members,
            owner_replays,
            conn,
        )
        .await;
    match joined {
        // The snapshot (and the replay when the owner sent it) is queued already, ahead of every later event.
        Ok(()) => {
            if conn.is_open() && !owner_replays {
                replay_cache(shard, conn, name).await;
            }
        }
        Err(refused) => {
            remove_subscription(conn, name);
            shard.forget_subscription(conn.id, conn.app.index, name);
            shard.leave(conn.app.index, name, conn.id);
            let message = match refused {
                JoinRefused::TooManyMembers { max } => {
                    format!("Presence channel is full: at most {max} members")
                }
                JoinRefused::Unavailable => {
                    "Presence is unavailable while the server stops".to_string()
                }
            };
            refuse(Some(codes::OVER_CAPACITY), &message);
        }
    }
}

/// Checks `provided` against `app`'s key and secret (the app's current copy: a secret rotated in the app
/// database applies to connections opened before the change).
fn check_signature(
    app: &crate::app::App,
    conn: &Connection,
    channel: &str,
    channel_data: Option<&str>,
    provided: Option<&str>,
) -> Result<(), String> {
    let to_sign = auth::channel_string_to_sign(&conn.socket_id, channel, channel_data);
    let provided = provided.unwrap_or("");
    if auth::verify_auth(&app.key, &app.secret, &to_sign, provided) {
        return Ok(());
    }
    let got = provided
        .split_once(':')
        .map(|(_, sig)| sig)
        .unwrap_or(provided);
    Err(format!(
        "Invalid signature: Expected HMAC SHA256 hex digest of {to_sign}, but got {got}"
    ))
}

fn parse_member(conn: &Connection, channel_data: &str) -> Result<Member, String> {
    let limits = &conn.app.limits;
    let data: ChannelData<'_> =
        serde_json::from_str(channel_data).map_err(|e| format!("Invalid channel_data: {e}"))?;
    let user_id = match data.user_id {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err("channel_data.user_id must be a string or a number".to_string()),
    };
    channel::validate_user_id(&user_id, limits.max_user_id_length)
        .map_err(|e| format!("Invalid channel_data.user_id: {e}"))?;
    let info = data.user_info.map(|raw| raw.get().to_string());
    if let Some(info) = &info {
        if info.len() > limits.max_presence_member_bytes {
            return Err(format!(
                "channel_data.user_info is {} bytes; the limit is {} bytes",
                info.len(),
                limits.max_presence_member_bytes
            ));
        }
    }
    Ok(Member { user_id, info })
}

fn remove_subscription(conn: &Connection, name: &str) -> Option<Subscription> {
    let mut channels = conn.channels.borrow_mut();
    let pos = channels.iter().position(|s| &*s.name == name)?;
    Some(channels.swap_remove(pos))
}

/// Leaves `name`; no reply (PROTOCOL.md 1.6).
pub fn unsubscribe(shard: &Shard, conn: &Connection, name: &str) {
    if let Some(sub) = remove_subscription(conn, name) {
        shard.forget_subscription(conn.id, conn.app.index, name);
        shard.leave(conn.app.index, name, conn.id);
        if counts_subscriptions(conn, name) {
            shard.count_subscription(conn.app.index, name, -1);
        }
        if let Some(user) = &sub.presence_user {
            shard.presence_leave(conn.app.index, name, user);
        }
    }
}

/// After subscribing to a cache channel on a cluster: the last HTTP event, or `pusher:cache_miss` (PROTOCOL.md 1.11).
async fn replay_cache(shard: &Shard, conn: &Connection, name: &str) {
    if !channel::classify(name).cache {
        return;
    }
    let cached = match shard.cache_lookup(conn.app.index, name).await {
        Ok(Some((text, _))) => Some(text),
        _ => None,
    };
    shard.send_cache_replay(conn, name, cached.as_deref());
}

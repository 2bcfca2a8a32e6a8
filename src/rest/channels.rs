//! Read routes of the REST API (`/channels`, `/channels/{name}`, `/channels/{name}/users`) and
//! `users/{id}/terminate_connections`, answered for the whole process by asking every shard.

use crate::app::App;
use crate::http::Response;
use crate::protocol::channel::{self, ChannelKind};
use crate::protocol::messages::push_json_string;
use crate::shard::query::{Answer, Query};
use crate::shard::Shard;
use std::collections::BTreeMap;

/// The `info` attributes a request asked for.
#[derive(Debug, Default, Clone, Copy)]
pub struct Info {
    /// `user_count` (presence channels only).
    pub user_count: bool,
    /// `subscription_count`.
    pub subscription_count: bool,
    /// `cache` (cache channels).
    pub cache: bool,
}

impl Info {
    /// Parses `info=user_count,subscription_count`; unknown attributes are ignored like Pusher does.
    pub fn parse(value: Option<&str>) -> Info {
        let mut info = Info::default();
        for attr in value.unwrap_or("").split(',').map(str::trim) {
            match attr {
                "user_count" => info.user_count = true,
                "subscription_count" => info.subscription_count = true,
                "cache" => info.cache = true,
                _ => {}
            }
        }
        info
    }
}

fn unavailable() -> Response {
    Response::error(503, "A shard did not answer in time; try again")
}

fn sum_counts(answers: Vec<Answer>) -> BTreeMap<String, usize> {
    let mut total = BTreeMap::new();
    for answer in answers {
        if let Answer::Counts(pairs) = answer {
            for (name, n) in pairs {
                *total.entry(name).or_insert(0) += n;
            }
        }
    }
    total
}

fn sum_count(answers: Vec<Answer>) -> usize {
    answers
        .into_iter()
        .map(|a| match a {
            Answer::Count(n) => n,
            _ => 0,
        })
        .sum()
}

/// Process-wide subscription count of `channel`.
pub async fn subscription_count(
    shard: &Shard,
    app: &App,
    channel: &str,
) -> Result<usize, Response> {
    let answers = shard
        .ask_cluster(
            app.index,
            Query::SubscriptionCount {
                channel: channel.to_string(),
            },
        )
        .await
        .map_err(|_| unavailable())?;
    Ok(sum_count(answers))
}

/// Distinct users of presence channel `channel`.
pub async fn user_ids(shard: &Shard, app: &App, channel: &str) -> Result<Vec<String>, Response> {
    match shard
        .ask_owner(
            app.index,
            channel,
            Query::PresenceUsers {
                channel: channel.to_string(),
            },
        )
        .await
    {
        Ok(Answer::Users(users)) => Ok(users),
        Ok(_) => Ok(Vec::new()),
        Err(()) => Err(unavailable()),
    }
}

/// `GET /apps/{id}/channels`.
pub async fn list(shard: &Shard, app: &App, query: &[(String, String)]) -> Response {
    let param = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let prefix = param("filter_by_prefix")
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let info = Info::parse(param("info"));
    if info.user_count
        && !prefix
            .as_deref()
            .is_some_and(|p| p.starts_with("presence-"))
    {
        return Response::error(
            400,
            "info=user_count is only valid together with filter_by_prefix=presence-",
        );
    }
    let subs = match shard
        .ask_cluster(
            app.index,
            Query::Channels {
                prefix: prefix.clone(),
            },
        )
        .await
    {
        Ok(a) => sum_counts(a),
        Err(()) => return unavailable(),
    };
    let users = if info.user_count {
        match shard
            .ask_all(app.index, Query::PresenceCounts { prefix })
            .await
        {
            Ok(a) => sum_counts(a),
            Err(()) => return unavailable(),
        }
    } else {
        BTreeMap::new()
    };
    let mut out = String::from("{\"channels\":{");
    for (i, (name, count)) in subs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, name);
        out.push_str(":{");
        let mut attrs = Vec::new();
        if info.user_count {
            attrs.push(format!(
                "\"user_count\":{}",
                users.get(name).copied().unwrap_or(0)
            ));
        }
        if info.subscription_count {
            attrs.push(format!("\"subscription_count\":{count}"));
        }
        out.push_str(&attrs.join(","));
        out.push('}');
    }
    out.push_str("}}");
    Response::json(200, out)
}

/// Attributes of one channel as a JSON object body (without braces), or an error response.
pub async fn channel_attributes(
    shard: &Shard,
    app: &App,
    name: &str,
    info: Info,
    with_occupied: bool,
) -> Result<String, Response> {
    let presence = channel::classify(name).kind == ChannelKind::Presence;
    if info.user_count && !presence {
        return Err(Response::error(
            400,
            "user_count is only available for presence channels",
        ));
    }
    let subscriptions = if with_occupied || info.subscription_count {
        Some(subscription_count(shard, app, name).await?)
    } else {
        None
    };
    let mut attrs = Vec::new();
    if with_occupied {
        attrs.push(format!("\"occupied\":{}", subscriptions.unwrap_or(0) > 0));
    }
    if info.user_count {
        attrs.push(format!(
            "\"user_count\":{}",
            user_ids(shard, app, name).await?.len()
        ));
    }
    if info.subscription_count {
        attrs.push(format!(
            "\"subscription_count\":{}",
            subscriptions.unwrap_or(0)
        ));
    }
    if info.cache && channel::classify(name).cache {
        let cached = match shard.cache_lookup(app.index, name).await {
            Ok(c) => c,
            Err(()) => return Err(unavailable()),
        };
        match cached {
            Some((text, ttl)) => {
                let data = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("data").cloned())
                    .unwrap_or(serde_json::Value::Null);
                attrs.push(format!("\"cache\":{{\"data\":{data},\"ttl\":{ttl}}}"));
            }
            None => attrs.push("\"cache\":null".to_string()),
        }
    }
    Ok(attrs.join(","))
}

/// `GET /apps/{id}/channels/{name}`.
pub async fn show(shard: &Shard, app: &App, name: &str, query: &[(String, String)]) -> Response {
    if let Err(e) = channel::validate_name(name, app.limits.max_channel_name_length) {
        return Response::error(400, &format!("Invalid channel name {name:?}: {e}"));
    }
    let info = Info::parse(
        query
            .iter()
            .find(|(k, _)| k == "info")
            .map(|(_, v)| v.as_str()),
    );
    match channel_attributes(shard, app, name, info, true).await {
        Ok(attrs) => Response::json(200, format!("{{{attrs}}}")),
        Err(resp) => resp,
    }
}

/// `GET /apps/{id}/channels/{name}/users`.
pub async fn users(shard: &Shard, app: &App, name: &str) -> Response {
    if let Err(e) = channel::validate_name(name, app.limits.max_channel_name_length) {
        return Response::error(400, &format!("Invalid channel name {name:?}: {e}"));
    }
    if channel::classify(name).kind != ChannelKind::Presence {
        return Response::error(400, "Users can only be listed for presence channels");
    }
    match user_ids(shard, app, name).await {
        Ok(ids) => {
            let mut out = String::from("{\"users\":[");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"id\":");
                push_json_string(&mut out, id);
                out.push('}');
            }
            out.push_str("]}");
            Response::json(200, out)
        }
        Err(resp) => resp,
    }
}

/// `POST /apps/{id}/users/{user_id}/terminate_connections`.
pub async fn terminate(shard: &Shard, app: &App, user: &str) -> Response {
    if let Err(e) = channel::validate_user_id(user, app.limits.max_user_id_length) {
        return Response::error(400, &format!("Invalid user id: {e}"));
    }
    shard.cluster_broadcast(
        &sockudo_io_shard::cluster::wire::ClusterMsg::TerminateUser {
            app_id: app.id.clone(),
            user: user.to_string(),
        },
    );
    match shard
        .ask_all(
            app.index,
            Query::TerminateUser {
                user: user.to_string(),
            },
        )
        .await
    {
        Ok(_) => Response::json(200, "{}"),
        Err(()) => unavailable(),
    }
}

//! `POST /apps/{id}/events` and `POST /apps/{id}/batch_events`: validate, encode each channel's frame once, and
//! hand it to the shard's fan-out.

use super::channels::{channel_attributes, Info};
use crate::app::App;
use crate::http::Response;
use crate::protocol::{channel, messages, socket_id};
use crate::shard::fanout::{EventDetails, Outgoing};
use crate::shard::Shard;
use crate::tags::Tags;
use crate::ws;
use serde::Deserialize;
use serde_json::value::RawValue;
use sockudo_io_shard::RateKind;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One event as the HTTP API accepts it.
#[derive(Debug, Deserialize)]
struct EventBody<'a> {
    name: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    channel: Option<String>,
    channels: Option<Vec<String>>,
    socket_id: Option<String>,
    info: Option<String>,
    /// Routing tags (`{string: string}`), matched against subscription filters.
    tags: Option<BTreeMap<String, String>>,
    /// `false`: deliver plain frames, leaving delta bases untouched.
    delta: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<EventBody<'a>>,
}

/// A validated event, ready to encode.
#[derive(Debug)]
struct Publication {
    name: String,
    /// `data` as a JSON value to embed verbatim (a string literal).
    data_json: String,
    channels: Vec<String>,
    except: Option<String>,
    info: Info,
    tags: Option<Tags>,
    track: bool,
}

/// An invalid event: HTTP status and message.
struct Rejection(u16, String);

impl From<Rejection> for Response {
    fn from(r: Rejection) -> Self {
        Response::error(r.0, &r.1)
    }
}

fn bad(msg: impl Into<String>) -> Rejection {
    Rejection(400, msg.into())
}

fn validate(app: &App, body: EventBody<'_>) -> Result<Publication, Rejection> {
    let limits = &app.limits;
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("Missing event name"))?;
    if name.len() > limits.max_event_name_length {
        return Err(bad(format!(
            "Event name longer than {} characters",
            limits.max_event_name_length
        )));
    }
    let channels = match (body.channel, body.channels) {
        (Some(_), Some(_)) => return Err(bad("Give either channel or channels, not both")),
        (Some(c), None) => vec![c],
        (None, Some(cs)) => cs,
        (None, None) => return Err(bad("Missing channel or channels")),
    };
    if channels.is_empty() {
        return Err(bad("channels must name at least one channel"));
    }
    // A channel named twice gets the event once.
    let mut channels = channels;
    let mut seen = std::collections::HashSet::with_capacity(channels.len());
    channels.retain(|c| seen.insert(c.clone()));
    if channels.len() > limits.max_event_channels_at_once {
        return Err(bad(format!(
            "Too many channels: at most {} per event",
            limits.max_event_channels_at_once
        )));
    }
    for c in &channels {
        channel::validate_name(c, limits.max_channel_name_length)
            .map_err(|e| bad(format!("Invalid channel name {c:?}: {e}")))?;
    }
    let raw = body.data.ok_or_else(|| bad("Missing data"))?;
    let (data_json, data_len) = if raw.get().starts_with('"') {
        let decoded: String =
            serde_json::from_str(raw.get()).map_err(|e| bad(format!("Invalid data: {e}")))?;
        (raw.get().to_string(), decoded.len())
    } else {
        // Not a string: publish its JSON text as the string, as SDKs that stringify would have.
        (messages::json_string(raw.get()), raw.get().len())
    };
    if data_len > limits.max_event_payload_bytes {
        return Err(Rejection(
            413,
            format!(
                "Event data is {data_len} bytes; the limit is {} bytes",
                limits.max_event_payload_bytes
            ),
        ));
    }
    let except = match body.socket_id {
        Some(s) if !socket_id::is_valid(&s) => return Err(bad(format!("Invalid socket_id {s:?}"))),
        other => other,
    };
    let tags = body
        .tags
        .map(Tags::new)
        .transpose()
        .map_err(|e| bad(format!("Invalid tags: {e}")))?;
    let info = Info::parse(body.info.as_deref());
    if info.user_count {
        if let Some(c) = channels
            .iter()
            .find(|c| channel::classify(c).kind != channel::ChannelKind::Presence)
        {
            return Err(bad(format!(
                "info=user_count is only available for presence channels, not {c:?}"
            )));
        }
    }
    Ok(Publication {
        name,
        data_json,
        channels,
        except,
        info,
        tags,
        track: body.delta != Some(false),
    })
}

async fn publish(shard: &Shard, app: &App, p: &Publication) {
    // Cache channels' events go through their home shard (see `shard::cache`): directly while this node
    // delivers locally first, as they come back from the bus otherwise.
    let through_home = !shard.loopback();
    let mut owned = Vec::new();
    let details = Arc::new(EventDetails {
        name: p.name.as_str().into(),
        tags: p.tags.clone(),
        track: p.track,
    });
    let keep_tags = shard.config.tag_filtering.enable_tags;
    let items: Vec<Outgoing> = p
        .channels
        .iter()
        .filter_map(|c| {
            // A channel rule's `enable_tags` wins over the server-wide one; stripped after routing.
            let keep = app
                .delta_rules
                .for_channel(c)
                .map_or(keep_tags, |r| r.enable_tags);
            let tags = p.tags.as_ref().filter(|_| keep);
            let text = messages::tagged_channel_event(&p.name, c, &p.data_json, None, tags);
            let item = Outgoing {
                channel: c.as_str().into(),
                frame: ws::encode_text(text.as_bytes()),
                event: Some(details.clone()),
            };
            if through_home && channel::classify(c).cache {
                owned.push(item);
                return None;
            }
            Some(item)
        })
        .collect();
    if !owned.is_empty() {
        shard
            .publish_cached(app.index, owned, p.except.as_deref())
            .await;
    }
    if !items.is_empty() {
        shard.publish(app.index, items, p.except.as_deref()).await;
    }
}

/// The largest body a publish to `app` can need, so a bigger one is refused before it is read.
///
/// Per event: `data` at its limit even if every character is JSON-escaped as `\uXXXX` (6 bytes), every channel
/// name at its limit, the event name, and 1 KiB for `socket_id`, `info`, keys and whitespace; times the batch
/// size for `batch_events`.
pub fn max_body(app: &App, batch: bool) -> usize {
    let l = &app.limits;
    let channels = l
        .max_event_channels_at_once
        .saturating_mul(l.max_channel_name_length.saturating_add(3));
    let event = l
        .max_event_payload_bytes
        .saturating_mul(6)
        .saturating_add(channels)
        .saturating_add(l.max_event_name_length.saturating_mul(6))
        .saturating_add(1024);
    if batch {
        event
            .saturating_mul(l.max_event_batch_size.max(1))
            .saturating_add(64)
    } else {
        event
    }
}

/// `POST /apps/{id}/events`.
pub async fn events(shard: &Shard, app: &App, body: &[u8]) -> Response {
    let parsed: EventBody<'_> = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return Response::error(400, &format!("Invalid JSON body: {e}")),
    };
    match validate(app, parsed) {
        Ok(p) => {
            if !shard
                .rate_take(
                    app,
                    RateKind::BackendEvents,
                    1,
                    app.limits.max_backend_events_per_second,
                )
                .await
            {
                return super::too_many_requests("events");
            }
            publish(shard, app, &p).await;
            if !p.info.user_count && !p.info.subscription_count {
                return Response::json(200, "{}");
            }
            match channels_info(shard, app, &p).await {
                Ok(body) => Response::json(200, format!("{{\"channels\":{body}}}")),
                Err(resp) => resp,
            }
        }
        Err(r) => r.into(),
    }
}

/// `POST /apps/{id}/batch_events`: every event is validated before any is published.
pub async fn batch_events(shard: &Shard, app: &App, body: &[u8]) -> Response {
    let parsed: BatchBody<'_> = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return Response::error(400, &format!("Invalid JSON body: {e}")),
    };
    if parsed.batch.len() > app.limits.max_event_batch_size {
        return Response::error(
            400,
            &format!(
                "Batch of {} events; at most {} allowed",
                parsed.batch.len(),
                app.limits.max_event_batch_size
            ),
        );
    }
    let mut publications = Vec::with_capacity(parsed.batch.len());
    for (i, event) in parsed.batch.into_iter().enumerate() {
        match validate(app, event) {
            Ok(p) => publications.push(p),
            Err(Rejection(status, msg)) => {
                return Response::error(status, &format!("batch[{i}]: {msg}"))
            }
        }
    }
    let count = publications.len() as u64;
    if !shard
        .rate_take(
            app,
            RateKind::BackendEvents,
            count,
            app.limits.max_backend_events_per_second,
        )
        .await
    {
        return super::too_many_requests("events");
    }
    for p in &publications {
        publish(shard, app, p).await;
    }
    if !publications
        .iter()
        .any(|p| p.info.user_count || p.info.subscription_count)
    {
        return Response::json(200, "{}");
    }
    let mut items = Vec::with_capacity(publications.len());
    for p in &publications {
        // One object per event, index-aligned; attributes of the event's (first) channel.
        let attrs = match p.channels.first() {
            Some(c) => match channel_attributes(shard, app, c, p.info, false).await {
                Ok(a) => a,
                Err(resp) => return resp,
            },
            None => String::new(),
        };
        items.push(format!("{{{attrs}}}"));
    }
    Response::json(200, format!("{{\"batch\":[{}]}}", items.join(",")))
}

/// `{"ch":{attrs},...}` for the channels of one event.
async fn channels_info(shard: &Shard, app: &App, p: &Publication) -> Result<String, Response> {
    let mut out = String::from("{");
    for (i, c) in p.channels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        messages::push_json_string(&mut out, c);
        out.push_str(":{");
        out.push_str(&channel_attributes(shard, app, c, p.info, false).await?);
        out.push('}');
    }
    out.push('}');
    Ok(out)
}

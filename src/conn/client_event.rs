//! Client events (`client-*`, PROTOCOL.md 1.12): relayed to the other subscribers of a private or presence
//! channel the sender has joined, never echoed, with `user_id` on presence channels, rate-limited per connection;
//! reported by the `client_event` webhook of apps that want it.

use super::Connection;
use crate::protocol::{channel, codes, messages};
use crate::shard::Shard;
use crate::ws;
use serde_json::value::RawValue;
use sockudo_webhooks::{EventKind, WebhookEvent};

/// Pusher's own wording when an app has client events turned off.
const DISABLED: &str =
    "To send client events, you must enable this feature in the Settings page of your dashboard.";

/// Relays one client event, or answers `pusher:error` explaining why not.
pub fn relay(
    shard: &Shard,
    conn: &Connection,
    event: &str,
    channel_name: Option<&str>,
    data: Option<&RawValue>,
) {
    let refuse = |code: Option<u16>, message: &str| {
        conn.send_error(code, message, channel_name);
    };
    let limits = &conn.app.limits;
    if !limits.enable_client_messages {
        refuse(None, DISABLED);
        return;
    }
    let Some(name) = channel_name else {
        refuse(Some(codes::GENERIC_ERROR), "Client events need a channel");
        return;
    };
    if event.len() > limits.max_event_name_length {
        refuse(
            Some(codes::GENERIC_ERROR),
            &format!(
                "Event name longer than {} characters",
                limits.max_event_name_length
            ),
        );
        return;
    }
    if !channel::classify(name).allows_client_events() {
        refuse(
            Some(codes::GENERIC_ERROR),
            "Client events are only allowed on private and presence channels (not encrypted ones)",
        );
        return;
    }
    if !conn.is_subscribed(name) {
        refuse(
            Some(codes::GENERIC_ERROR),
            "Client events can only be sent on a channel this connection has joined",
        );
        return;
    }
    let data_json = data.map(|d| d.get()).unwrap_or("null");
    if data_json.len() > limits.max_event_payload_bytes {
        refuse(
            Some(codes::GENERIC_ERROR),
            &format!(
                "Client event data over {} bytes",
                limits.max_event_payload_bytes
            ),
        );
        return;
    }
    if !within_rate(shard, conn) {
        let window = match limits.client_event_window_secs {
            1 => "per second".to_string(),
            n => format!("in {n} seconds"),
        };
        let message = format!(
            "Client event rejected: more than {} {window}",
            limits.max_client_events_per_second
        );
        if limits.terminate_on_client_event_limit {
            conn.close_with_error(codes::CLIENT_EVENT_RATE_LIMIT, &message, shard.now());
        } else {
            refuse(Some(codes::CLIENT_EVENT_RATE_LIMIT), &message);
        }
        return;
    }
    let user_id = conn.presence_user(name);
    if conn.app.wants_webhook(EventKind::ClientEvent) {
        let mut hook = WebhookEvent::new(conn.app.index, EventKind::ClientEvent, name);
        hook.event = Some(event.into());
        hook.data = Some(data_as_string(data_json).into());
        hook.socket_id = Some(conn.socket_id.as_ref().into());
        hook.user_id = user_id.as_deref().map(Into::into);
        shard.emit_webhook(hook);
    }
    let text = messages::channel_event(event, name, data_json, user_id.as_deref());
    let frame = ws::encode_text(text.as_bytes());
    let item = crate::shard::fanout::Outgoing {
        channel: name.into(),
        frame,
        event: Some(std::sync::Arc::new(crate::shard::fanout::EventDetails {
            name: event.into(),
            tags: None,
            track: true,
        })),
    };
    let items = vec![item];
    if shard.loopback() {
        // Delivered here, too, when the bus brings it back: one order for the channel on every node.
        futures_lite::future::block_on(shard.publish_through_bus(
            conn.app.index,
            items,
            Some(&conn.socket_id),
            false,
        ));
        return;
    }
    shard.cluster_publish(conn.app.index, &items, Some(&conn.socket_id));
    shard.publish_now(conn.app.index, items, Some(&conn.socket_id), false);
}

/// The `data` of a `client_event` webhook: the string the client sent, or the JSON text of anything else.
fn data_as_string(data_json: &str) -> String {
    match serde_json::from_str::<String>(data_json) {
        Ok(text) => text,
        Err(_) => data_json.to_string(),
    }
}

/// Counts the event in the connection's current one-second window.
fn within_rate(shard: &Shard, conn: &Connection) -> bool {
    let limits = &conn.app.limits;
    let (admitted, window) = count_in_window(
        conn.client_event_window.get(),
        shard.now(),
        limits.client_event_window_secs,
        limits.max_client_events_per_second,
    );
    conn.client_event_window.set(window);
    admitted
}

/// Counts one more event in a fixed window of `window_secs` seconds, `(start, count)`, that restarts at `now`
/// once it has run out. Whether the event is admitted (0 = unlimited), and the window after it.
fn count_in_window(
    (start, count): (u32, u32),
    now: u32,
    window_secs: u32,
    max: u64,
) -> (bool, (u32, u32)) {
    if max == 0 {
        return (true, (start, count));
    }
    let (start, count) = if now.wrapping_sub(start) >= window_secs.max(1) {
        (now, 0)
    } else {
        (start, count)
    };
    if u64::from(count) >= max {
        return (false, (start, count));
    }
    (true, (start, count + 1))
}

#[cfg(test)]
mod tests {
    use super::count_in_window;

    /// Sends `times` events at `now`, returning how many were admitted and the window after them.
    fn send(
        mut window: (u32, u32),
        now: u32,
        secs: u32,
        max: u64,
        times: usize,
    ) -> (usize, (u32, u32)) {
        let mut admitted = 0;
        for _ in 0..times {
            let (ok, next) = count_in_window(window, now, secs, max);
            window = next;
            admitted += usize::from(ok);
        }
        (admitted, window)
    }

    #[test]
    fn one_second_windows_admit_max_per_second() {
        let (n, w) = send((100, 0), 100, 1, 3, 5);
        assert_eq!(n, 3);
        let (n, _) = send(w, 101, 1, 3, 5);
        assert_eq!(n, 3, "a new second, a new window");
    }

    #[test]
    fn decay_seconds_stretch_the_window() {
        let (n, w) = send((100, 0), 100, 5, 3, 2);
        assert_eq!(n, 2);
        let (n, w) = send(w, 103, 5, 3, 3);
        assert_eq!(n, 1, "still the window that began at 100");
        let (n, _) = send(w, 105, 5, 3, 4);
        assert_eq!(n, 3, "the window ran out at 105");
    }

    #[test]
    fn zero_means_unlimited_and_a_zero_window_counts_as_one_second() {
        assert_eq!(send((0, 0), 7, 1, 0, 1000).0, 1000);
        let (n, w) = send((7, 0), 7, 0, 2, 3);
        assert_eq!(n, 2);
        assert_eq!(send(w, 8, 0, 2, 3).0, 2);
    }
}

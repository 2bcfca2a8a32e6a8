//! Named Pusher close / error codes (PROTOCOL.md 1.5) and the WebSocket close codes we use.
//!
//! The numeric range decides what pusher-js does after a close frame (`protocol.ts
//! getCloseAction`), so picking the wrong constant can turn a transient condition into a client
//! that never reconnects, or a fatal one into a reconnect loop. Each constant says which class it
//! falls into; [`pusher_js_action`] encodes the same table so it can be tested.

/// What pusher-js does when the connection is closed with a given code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAction {
    /// Reconnect using TLS (`tls_only`, code 4000).
    TlsOnly,
    /// Give up: the client will not reconnect (`refused`, 4001–4099 and 4300+).
    Refused,
    /// Reconnect after at least 1 s, possibly backing off (`backoff`, 4100–4199, 1002–1004).
    Backoff,
    /// Reconnect immediately (`retry`, 4200–4299).
    Retry,
    /// Below 4000 and not 1002–1004: pusher-js reconnects after 1 s if it had been connected.
    Default,
}

/// Mirror of pusher-js `Protocol.getCloseAction`.
pub const fn pusher_js_action(code: u16) -> CloseAction {
    match code {
        1002..=1004 => CloseAction::Backoff,
        0..=3999 => CloseAction::Default,
        4000 => CloseAction::TlsOnly,
        4001..=4099 => CloseAction::Refused,
        4100..=4199 => CloseAction::Backoff,
        4200..=4299 => CloseAction::Retry,
        _ => CloseAction::Refused,
    }
}

// ---- Pusher codes: 4000–4099, refused (client stops reconnecting) -----------------------------

/// The app only accepts TLS connections; pusher-js reconnects with `wss` (`tls_only`).
pub const TLS_ONLY: u16 = 4000;
/// Unknown app key in `/app/{key}`. Refused: a misconfigured key must not cause a reconnect loop.
pub const APP_NOT_FOUND: u16 = 4001;
/// The application is disabled. Refused.
pub const APP_DISABLED: u16 = 4003;
/// The application is over its connection quota. Refused (the client does not retry).
pub const OVER_CONNECTION_QUOTA: u16 = 4004;
/// The request path is not `/app/{key}`. Refused.
pub const PATH_NOT_FOUND: u16 = 4005;
/// The `protocol` query parameter is not an integer. Refused.
pub const INVALID_VERSION_FORMAT: u16 = 4006;
/// The `protocol` query parameter names a version we do not speak (we accept 5–7). Refused.
pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
/// No protocol version supplied. Refused. We do not send it: a missing `protocol` is treated as 7
/// because pysher-era clients and benchmark tools omit it (PROTOCOL.md C2).
pub const NO_PROTOCOL: u16 = 4008;
/// The connection (or a subscription/sign-in) is unauthorized. Refused when used as a close code;
/// also used as a `pusher:error` code for failed authorization while keeping the socket open.
pub const UNAUTHORIZED: u16 = 4009;

// ---- 4100–4199, backoff ------------------------------------------------------------------------

/// The server is over capacity. Backoff: the client reconnects after >= 1 s, so load can drain.
pub const OVER_CAPACITY: u16 = 4100;
/// The app could not be looked up: its database is down or overloaded and the app is not cached. Backoff:
/// pusher-js retries after a second or more, by which time the database may answer.
pub const APP_LOOKUP_UNAVAILABLE: u16 = 4101;

// ---- 4200–4299, retry immediately --------------------------------------------------------------

/// Generic "reconnect now": used on server shutdown / drain so clients move to another node.
pub const RECONNECT: u16 = 4200;
/// The client did not answer our `pusher:ping` in time. Retry immediately.
pub const PONG_NOT_RECEIVED: u16 = 4201;
/// Closed after inactivity. Retry immediately.
pub const INACTIVITY: u16 = 4202;

// ---- 4300–4399, "any other error": only ever `pusher:error` codes ------------------------------

/// Generic error carried in a `pusher:error` (e.g. invalid channel name, malformed message).
///
/// Decision: 4300 is the start of Pusher's "any other error" range and is what Sockudo sends for
/// invalid channel names, so clients already expect it there. Never close with it: pusher-js
/// treats 4300+ close codes as `refused` and would stop reconnecting for a per-message mistake.
pub const GENERIC_ERROR: u16 = 4300;
/// A client event was rejected by the per-connection rate limit. Send as `pusher:error` only —
/// **never a close code**: pusher-js would treat it as `refused` and never reconnect.
pub const CLIENT_EVENT_RATE_LIMIT: u16 = 4301;
/// The sign-in watchlist had more than 100 ids; only the first 100 are used and the sign-in still
/// succeeds. Sent as `pusher:error` only.
pub const WATCHLIST_LIMIT: u16 = 4302;
/// A subscription's tag filter is invalid; the subscription does not happen. Sent as `pusher:error` only, with
/// the code Sockudo (and so sockudo-js) uses for it (DELTA-TAGS.md §2.10).
pub const INVALID_FILTER: u16 = 4000;

// ---- RFC 6455 WebSocket close codes ------------------------------------------------------------

/// Normal closure (client or server finished). pusher-js default action.
pub const CLOSE_NORMAL: u16 = 1000;
/// Endpoint going away. pusher-js default action (reconnect after 1 s). Prefer [`RECONNECT`]
/// for a planned shutdown: it makes pusher-js reconnect immediately.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket protocol violation (bad frame, unmasked client frame...). pusher-js backs off.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Unsupported data, e.g. a binary frame: the Pusher protocol is text-only. pusher-js backs off.
pub const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
/// Message too big for the configured limit. pusher-js default action.
pub const CLOSE_TOO_BIG: u16 = 1009;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_documented_values() {
        let table = [
            (TLS_ONLY, 4000),
            (APP_NOT_FOUND, 4001),
            (APP_DISABLED, 4003),
            (OVER_CONNECTION_QUOTA, 4004),
            (PATH_NOT_FOUND, 4005),
            (INVALID_VERSION_FORMAT, 4006),
            (UNSUPPORTED_PROTOCOL, 4007),
            (NO_PROTOCOL, 4008),
            (UNAUTHORIZED, 4009),
            (OVER_CAPACITY, 4100),
            (APP_LOOKUP_UNAVAILABLE, 4101),
            (RECONNECT, 4200),
            (PONG_NOT_RECEIVED, 4201),
            (INACTIVITY, 4202),
            (GENERIC_ERROR, 4300),
            (CLIENT_EVENT_RATE_LIMIT, 4301),
            (WATCHLIST_LIMIT, 4302),
            (CLOSE_NORMAL, 1000),
            (CLOSE_GOING_AWAY, 1001),
            (CLOSE_PROTOCOL_ERROR, 1002),
            (CLOSE_UNSUPPORTED_DATA, 1003),
            (CLOSE_TOO_BIG, 1009),
        ];
        for (constant, expected) in table {
            assert_eq!(constant, expected);
        }
    }

    #[test]
    fn fatal_conditions_stop_pusher_js_reconnecting() {
        for code in [
            APP_NOT_FOUND,
            APP_DISABLED,
            OVER_CONNECTION_QUOTA,
            PATH_NOT_FOUND,
            INVALID_VERSION_FORMAT,
            UNSUPPORTED_PROTOCOL,
            NO_PROTOCOL,
            UNAUTHORIZED,
        ] {
            assert_eq!(pusher_js_action(code), CloseAction::Refused, "{code}");
        }
    }

    #[test]
    fn transient_conditions_make_pusher_js_reconnect() {
        assert_eq!(pusher_js_action(OVER_CAPACITY), CloseAction::Backoff);
        assert_eq!(pusher_js_action(RECONNECT), CloseAction::Retry);
        assert_eq!(pusher_js_action(PONG_NOT_RECEIVED), CloseAction::Retry);
        assert_eq!(pusher_js_action(INACTIVITY), CloseAction::Retry);
        assert_eq!(pusher_js_action(TLS_ONLY), CloseAction::TlsOnly);
        assert_eq!(pusher_js_action(CLOSE_PROTOCOL_ERROR), CloseAction::Backoff);
        assert_eq!(
            pusher_js_action(CLOSE_UNSUPPORTED_DATA),
            CloseAction::Backoff
        );
        assert_eq!(pusher_js_action(CLOSE_NORMAL), CloseAction::Default);
        assert_eq!(pusher_js_action(CLOSE_GOING_AWAY), CloseAction::Default);
        assert_eq!(pusher_js_action(CLOSE_TOO_BIG), CloseAction::Default);
    }

    /// The reason 4300-range codes must only ever travel inside `pusher:error`.
    #[test]
    fn error_only_codes_would_be_refused_as_close_codes() {
        for code in [GENERIC_ERROR, CLIENT_EVENT_RATE_LIMIT, WATCHLIST_LIMIT] {
            assert_eq!(pusher_js_action(code), CloseAction::Refused, "{code}");
        }
    }
}

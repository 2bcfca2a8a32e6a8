//! `pusher:signin` (user authentication, PROTOCOL.md 1.8).

use super::{Connection, SignedInUser};
use crate::protocol::{auth, channel, codes, messages};
use crate::shard::Shard;
use serde::Deserialize;
use std::rc::Rc;

/// Most watchlist ids accepted; the rest are ignored with a 4302 error.
pub const MAX_WATCHLIST: usize = 100;

/// `pusher:signin` data.
#[derive(Debug, Deserialize)]
pub struct SigninData {
    /// `key:signature` over `socket_id::user::user_data`.
    #[serde(default)]
    pub auth: String,
    /// The user as a JSON string, signed exactly as sent.
    pub user_data: String,
}

#[derive(Deserialize)]
struct UserData {
    id: Option<serde_json::Value>,
    #[serde(default)]
    watchlist: Option<Vec<serde_json::Value>>,
}

/// Signs the connection in, answering `pusher:signin_success` or `pusher:error`.
pub async fn signin(shard: &Shard, conn: &Rc<Connection>, data: SigninData) {
    let refuse = |code: Option<u16>, message: &str| {
        conn.send_error(code, message, None);
    };
    let to_sign = auth::user_string_to_sign(&conn.socket_id, &data.user_data);
    let app = shard.current_app(&conn.app).await;
    if !auth::verify_auth(&app.key, &app.secret, &to_sign, &data.auth) {
        refuse(
            Some(codes::UNAUTHORIZED),
            &format!("Invalid signature: Expected HMAC SHA256 hex digest of {to_sign}"),
        );
        return;
    }
    let user: UserData = match serde_json::from_str(&data.user_data) {
        Ok(u) => u,
        Err(e) => {
            refuse(
                Some(codes::GENERIC_ERROR),
                &format!("Invalid user_data: {e}"),
            );
            return;
        }
    };
    let id = match user.id {
        Some(serde_json::Value::String(id)) if !id.is_empty() => id,
        _ => {
            refuse(
                Some(codes::GENERIC_ERROR),
                "user_data.id must be a non-empty string",
            );
            return;
        }
    };
    if let Err(e) = channel::validate_user_id(&id, conn.app.limits.max_user_id_length) {
        refuse(
            Some(codes::GENERIC_ERROR),
            &format!("Invalid user_data.id: {e}"),
        );
        return;
    }
    let current = conn.user_id();
    let first_signin = match current.as_deref() {
        Some(existing) if existing != id => {
            refuse(
                Some(codes::UNAUTHORIZED),
                "This connection is already signed in as another user",
            );
            return;
        }
        Some(_) => false,
        None => {
            *conn.user.borrow_mut() = Some(SignedInUser {
                id: id.as_str().into(),
            });
            shard.remember_user(conn.app.index, &id, conn);
            true
        }
    };
    conn.authorized.set(true);
    if user
        .watchlist
        .as_ref()
        .is_some_and(|w| w.len() > MAX_WATCHLIST)
    {
        refuse(
            Some(codes::WATCHLIST_LIMIT),
            &format!(
                "Watchlist limit exceeded: only the first {MAX_WATCHLIST} user ids are watched"
            ),
        );
    }
    let mut success = String::from("{\"user_data\":");
    messages::push_json_string(&mut success, &data.user_data);
    success.push('}');
    conn.send_control(&messages::internal_event(
        "pusher:signin_success",
        None,
        &success,
    ));
    if first_signin && conn.app.limits.enable_watchlist_events {
        let watchlist: Vec<Box<str>> = user
            .watchlist
            .iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .filter(|w| !w.is_empty())
            .take(MAX_WATCHLIST)
            .map(Into::into)
            .collect();
        let online = shard.user_online(conn.app.index, &id, &watchlist).await;
        if !online.is_empty() {
            let data = crate::shard::watchlist::events_json("online", &online);
            conn.send_control(&messages::internal_event(
                "pusher_internal:watchlist_events",
                None,
                &data,
            ));
        }
    }
}

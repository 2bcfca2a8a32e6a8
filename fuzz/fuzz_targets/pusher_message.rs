//! Pusher client messages: the envelope, then the data of every event a client can send (subscribe,
//! unsubscribe, signin, client events) and the channel-name rules applied to them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use sockudo::conn::signin::SigninData;
use sockudo::protocol::messages::{ClientMessage, SubscribeData, UnsubscribeData};
use sockudo::protocol::{auth, channel, messages};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(msg) = ClientMessage::parse(text) else {
        return;
    };
    if let Ok(s) = msg.data_as::<SubscribeData>("pusher:subscribe") {
        let kind = channel::classify(&s.channel);
        let _ = channel::validate_name(&s.channel, 164);
        let to_sign = auth::channel_string_to_sign("1.2", &s.channel, s.channel_data.as_deref());
        let _ = auth::verify_auth("key", "secret", &to_sign, s.auth.as_deref().unwrap_or(""));
        let _ = kind.allows_client_events();
        let _ = channel::server_to_user_id(&s.channel);
    }
    if let Ok(u) = msg.data_as::<UnsubscribeData>("pusher:unsubscribe") {
        let _ = channel::validate_name(&u.channel, 164);
    }
    if let Ok(s) = msg.data_as::<SigninData>("pusher:signin") {
        let to_sign = auth::user_string_to_sign("1.2", &s.user_data);
        let _ = auth::verify_auth("key", "secret", &to_sign, &s.auth);
        let _ = serde_json::from_str::<serde_json::Value>(&s.user_data);
    }
    if let Some(name) = msg.channel.as_deref() {
        let _ = channel::validate_name(name, 164);
        let data_json = msg.data.map(|d| d.get()).unwrap_or("null");
        let out = messages::channel_event(&msg.event, name, data_json, Some("user"));
        // What the server relays must itself be JSON (syntax only: a number like 1e999 is valid JSON that
        // serde_json's `Value` cannot hold).
        assert!(serde_json::from_str::<&RawValue>(&out).is_ok(), "{out}");
    }
    let err = messages::error(Some(4009), &msg.event, msg.channel.as_deref());
    assert!(serde_json::from_str::<&RawValue>(&err).is_ok(), "{err}");
});

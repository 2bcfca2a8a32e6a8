//! SIGHUP over the real binary: an app added to the config file is served without dropping open connections, a
//! broken file is refused and the running apps kept, a removed app is refused (4001).

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tungstenite::Message;

fn write_config(server: &Server, text: &str) {
    std::fs::write(server.dir.join("config.json"), text).expect("write config");
}

fn apps_config(apps: Vec<Value>) -> String {
    json!({ "app_manager": { "array": { "apps": apps } } }).to_string()
}

fn hup(server: &Server) {
    unsafe {
        libc::kill(server.pid() as i32, libc::SIGHUP);
    }
}

/// The first event a connection to app `key` gets: `pusher:connection_established` or `pusher:error`.
fn first_event(server: &Server, key: &str) -> Value {
    let (mut ws, _) = server.ws(&format!("/app/{key}?protocol=7&client=js&version=8.4.0"));
    loop {
        match ws.read().expect("first message") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Close(c) => panic!("closed without an event: {c:?}"),
            _ => continue,
        }
    }
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("not within 5 s: {what}");
}

#[test]
fn sighup_adds_an_app_refuses_a_broken_file_and_removes_an_app() {
    let server = Server::start();
    let mut old = server.client();
    old.subscribe("kept");
    let new_app = json!({"id": "456", "key": "new-key", "secret": "new-secret", "enabled": true});
    assert_eq!(first_event(&server, "new-key")["data"]["code"], 4001);

    write_config(
        &server,
        &apps_config(vec![app_json(json!({})), new_app.clone()]),
    );
    hup(&server);
    eventually("the new app accepts connections", || {
        first_event(&server, "new-key")["event"] == "pusher:connection_established"
    });
    // REST with the new app's credentials works too.
    let body = json!({"name": "e", "channels": ["x"], "data": "{}"}).to_string();
    let (status, _) = server_signed_as(&server, "456", "new-key", "new-secret", &body);
    assert_eq!(status, 200);
    // The connection opened before the reload was not dropped.
    server.publish(&["kept"], "after-reload", "{}");
    assert_eq!(old.next_event()["event"], "after-reload");

    write_config(&server, "{ this is not json");
    hup(&server);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        first_event(&server, "new-key")["event"],
        "pusher:connection_established",
        "a broken file leaves the running apps in place"
    );
    assert_eq!(server.try_http("GET", "/up", b"").unwrap().0, 200);

    write_config(&server, &apps_config(vec![app_json(json!({}))]));
    hup(&server);
    eventually("the removed app is refused", || {
        first_event(&server, "new-key")["data"]["code"] == 4001
    });
    server.publish(&["kept"], "still-here", "{}");
    assert_eq!(old.next_event()["event"], "still-here");
}

/// `POST /apps/{id}/events` signed with the given app's credentials; returns status and body.
fn server_signed_as(
    server: &Server,
    id: &str,
    key: &str,
    secret: &str,
    body: &str,
) -> (u16, String) {
    let path = format!("/apps/{id}/events");
    let query = sockudo::protocol::rest_auth::sign_query(
        "POST",
        &path,
        &[],
        body.as_bytes(),
        key,
        secret,
        now_unix(),
    );
    let (status, _, body) = server
        .try_http("POST", &format!("{path}?{query}"), body.as_bytes())
        .expect("request");
    (status, body)
}

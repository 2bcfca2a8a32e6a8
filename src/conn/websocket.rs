//! The WebSocket phase of a connection: the upgrade, the Pusher handshake, and the reader loop that turns frames
//! into Pusher messages and dispatches them.

use super::signin::{self, SigninData};
use super::{client_event, subscribe, ConnState, Connection};
use crate::conn::stream::Stream;
use crate::http::Request;
use crate::protocol::messages::{self, ClientMessage, SubscribeData, UnsubscribeData};
use crate::protocol::{codes, origin, socket_id};
use crate::shard::Shard;
use crate::ws::{self, Message};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

/// Protocol versions this server speaks (PROTOCOL.md C2).
const SUPPORTED_PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// Why a handshake is refused after the upgrade: a Pusher close code and its message.
struct Refusal(u16, &'static str);

/// Completes the HTTP upgrade of `/app/{key}` and hands the WebSocket to a task of its own, so that what the HTTP
/// phase needed (its buffers, the request) is freed and an idle connection keeps only a small reader task.
pub async fn upgrade(shard: Rc<Shard>, stream: Stream, req: Request, leftover: Vec<u8>) {
    let Some(key) = req.websocket_key() else {
        return;
    };
    let mut out = ws::upgrade_response(&ws::accept_key(key));
    // Lets tests and operators see which shard took the connection.
    out.truncate(out.len() - 2);
    let _ = write!(out, "X-Sockudo-Shard: {}\r\n\r\n", shard.id);

    let app_key = req.path.trim_start_matches("/app/").trim_end_matches('/');
    let found = shard
        .find_app(sockudo_io_shard::Lookup::Key(app_key.to_string()))
        .await;
    let app = match found
        .map_err(|e| {
            tracing::warn!(app_key, error = %e, "app lookup failed; refusing WebSocket");
            Refusal(
                codes::APP_LOOKUP_UNAVAILABLE,
                "Application lookup unavailable; retry later",
            )
        })
        .and_then(|app| check_handshake(&shard, app, &req.query, req.headers.origin()))
    {
        Ok(app) => app,
        Err(Refusal(code, message)) => {
            tracing::debug!(code, message, app_key, "refusing WebSocket");
            shard.metrics.error_sent(Some(code));
            refuse(stream, out, code, message).await;
            return;
        }
    };
    let socket_id = socket_id::generate();
    let established = ws::encode_text(
        messages::connection_established(&socket_id, shard.config.activity_timeout).as_bytes(),
    );
    out.extend_from_slice(&established);
    let conn = Connection::new(
        shard.next_conn_id(),
        socket_id,
        app,
        stream,
        shard.now(),
        shard.slow_consumer.limits,
        shard.metrics.clone(),
    );
    // Registered before the client can read `connection_established`.
    shard.register(conn.clone());
    conn.send_upgrade(out, established.len());
    glommio::spawn_local(serve(shard, conn, leftover)).detach();
}

/// The reader task of one WebSocket: serves it until it closes, then takes it out of the shard.
async fn serve(shard: Rc<Shard>, conn: Rc<Connection>, leftover: Vec<u8>) {
    read_loop(&shard, &conn, leftover).await;
    shard.unregister(&conn);
    conn.mark_closed();
}

fn check_handshake(
    shard: &Shard,
    app: Option<Rc<crate::app::App>>,
    query: &str,
    origin_header: Option<&str>,
) -> Result<Rc<crate::app::App>, Refusal> {
    if shard.is_shutting_down() {
        return Err(Refusal(codes::RECONNECT, "Server shutting down"));
    }
    let protocol = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "protocol")
        .map(|(_, v)| v);
    match protocol {
        None | Some("") => {}
        Some(v) => match v.parse::<u32>() {
            Ok(n) if SUPPORTED_PROTOCOLS.contains(&n) => {}
            Ok(_) => {
                return Err(Refusal(
                    codes::UNSUPPORTED_PROTOCOL,
                    "Unsupported protocol version",
                ))
            }
            Err(_) => {
                return Err(Refusal(
                    codes::INVALID_VERSION_FORMAT,
                    "Invalid version string format",
                ))
            }
        },
    }
    let app = app.ok_or(Refusal(codes::APP_NOT_FOUND, "Application does not exist"))?;
    if !app.enabled {
        return Err(Refusal(codes::APP_DISABLED, "Application is disabled"));
    }
    if !origin::is_allowed(&app.limits.allowed_origins, origin_header) {
        return Err(Refusal(codes::UNAUTHORIZED, "Origin not allowed"));
    }
    if !app.try_acquire_connection() {
        return Err(Refusal(
            codes::OVER_CONNECTION_QUOTA,
            "Application is over connection quota",
        ));
    }
    shard.connections_changed(&app);
    Ok(app)
}

/// Sends the 101 response already in `out`, `pusher:error` and a close frame, then waits briefly for the client's
/// close so that it reads our close code instead of a reset.
async fn refuse(mut stream: Stream, mut out: Vec<u8>, code: u16, message: &str) {
    out.extend_from_slice(&ws::encode_text(
        messages::error(Some(code), message, None).as_bytes(),
    ));
    out.extend_from_slice(&ws::encode_close(code, message));
    if stream.write_all(&out).await.is_err() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let _ = glommio::timer::timeout(Duration::from_secs(2), async {
        let mut sink = [0u8; 512];
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Decodes every complete message in `data`; returns how many bytes were used.
fn decode_all(
    decoder: &mut ws::Decoder,
    data: &[u8],
    out: &mut Vec<Message>,
) -> Result<usize, ws::WsError> {
    let mut used = 0;
    while used < data.len() {
        match decoder.decode(&data[used..])? {
            Some((msg, n)) => {
                used += n;
                out.push(msg);
            }
            None => break,
        }
    }
    Ok(used)
}

/// What one read produced.
enum ReadOutcome {
    Eof,
    Data,
    Invalid(ws::WsError),
}

async fn read_loop(shard: &Rc<Shard>, conn: &Rc<Connection>, leftover: Vec<u8>) {
    let max = shard.config.websocket_max_payload_kb * 1024;
    let mut decoder = ws::Decoder::new(max);
    let mut partial = Vec::new();
    let mut messages = Vec::new();
    // After a protocol violation the decoder is unusable: discard input until the peer goes away.
    let mut broken = false;
    // Bytes that arrived with the upgrade request are decoded first.
    let mut early = Some(leftover).filter(|l| !l.is_empty());
    loop {
        let mut consume = |data: &[u8]| {
            if data.is_empty() {
                return ReadOutcome::Eof;
            }
            if broken {
                return ReadOutcome::Data;
            }
            if partial.is_empty() {
                match decode_all(&mut decoder, data, &mut messages) {
                    Ok(used) => {
                        partial.extend_from_slice(&data[used..]);
                        ReadOutcome::Data
                    }
                    Err(e) => ReadOutcome::Invalid(e),
                }
            } else {
                partial.extend_from_slice(data);
                match decode_all(&mut decoder, &partial, &mut messages) {
                    Ok(used) => {
                        partial.drain(..used);
                        if partial.is_empty() {
                            partial = Vec::new();
                        }
                        ReadOutcome::Data
                    }
                    Err(e) => ReadOutcome::Invalid(e),
                }
            }
        };
        let read = match early.take() {
            Some(bytes) => Ok(consume(&bytes)),
            None => conn.read_with(&shard.read_scratch, consume).await,
        };
        match read {
            Ok(ReadOutcome::Data) => {}
            Ok(ReadOutcome::Eof) | Err(_) => return,
            Ok(ReadOutcome::Invalid(e)) => {
                protocol_violation(shard, conn, &e);
                partial = Vec::new();
                broken = true;
                // Keep reading until the peer goes away or the sweeper cuts the socket.
            }
        }
        for msg in messages.drain(..) {
            if let Some(work) = handle(shard, conn, msg) {
                work.await;
            }
        }
        // An idle connection keeps no message buffer.
        messages = Vec::new();
        if conn.finish_closing_handshake() {
            return;
        }
        if conn.overflowed() && !broken {
            // Nothing more is read from a client that does not read until our 4100 close frame is out (or the
            // sweeper gives up on it); its buffers go back now. Afterwards input is only discarded, so that the
            // close frame is not destroyed by a reset of a socket closed with unread data.
            partial = Vec::new();
            broken = true;
            linger_until_closed(conn).await;
        }
    }
}

/// Waits, without reading, until the close frame is written or the connection is cut (the sweeper does so
/// `CLOSING_GRACE_SECS` after the close).
async fn linger_until_closed(conn: &Connection) {
    // Past the sweeper's grace for unanswered closes, which cuts the socket.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while !conn.close_written()
        && conn.state() == ConnState::Closing
        && std::time::Instant::now() < give_up
    {
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
}

fn protocol_violation(shard: &Shard, conn: &Connection, e: &ws::WsError) {
    tracing::debug!(socket_id = %conn.socket_id, error = %e, "WebSocket protocol violation");
    conn.close(e.close_code(), &e.to_string(), shard.now());
}

/// What handling a message leaves to await before the next message: joining a channel or signing in, which wait
/// for other shards. Boxed, so the reader task of every idle connection is not as large as the largest thing a
/// connection ever awaits.
type Pending<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Dispatches one WebSocket message.
fn handle<'a>(shard: &'a Rc<Shard>, conn: &'a Rc<Connection>, msg: Message) -> Option<Pending<'a>> {
    shard.metrics.ws_messages_received.inc();
    if conn.state() != ConnState::Open {
        if let Message::Close(_) = msg {
            conn.abort();
        }
        return None;
    }
    conn.last_seen.set(shard.now());
    conn.ping_sent_at.set(None);
    match msg {
        Message::Text(bytes) => {
            // The decoder validated UTF-8.
            let Ok(text) = std::str::from_utf8(&bytes) else {
                return None;
            };
            return handle_text(shard, conn, text);
        }
        Message::Binary(_) => {
            conn.send_error(
                Some(codes::GENERIC_ERROR),
                "Binary frames are not supported; send JSON text frames",
                None,
            );
        }
        Message::Ping(payload) => conn.send_raw(ws::encode_pong(&payload)),
        Message::Pong(_) => {}
        Message::Close(code) => conn.acknowledge_close(code.map(|(c, _)| c), shard.now()),
    }
    None
}

fn handle_text<'a>(
    shard: &'a Rc<Shard>,
    conn: &'a Rc<Connection>,
    text: &str,
) -> Option<Pending<'a>> {
    let msg = match ClientMessage::parse(text) {
        Ok(m) => m,
        Err(e) => {
            conn.send_error(Some(codes::GENERIC_ERROR), &e.to_string(), None);
            return None;
        }
    };
    match &*msg.event {
        "pusher:ping" => conn.send_control(messages::pong()),
        "pusher:pong" => {}
        "pusher:subscribe" => match msg.data_as::<SubscribeData>("pusher:subscribe") {
            Ok(data) => return Some(Box::pin(subscribe::subscribe(shard, conn, data))),
            Err(e) => conn.send_error(Some(codes::GENERIC_ERROR), &e.to_string(), None),
        },
        "pusher:unsubscribe" => match msg.data_as::<UnsubscribeData>("pusher:unsubscribe") {
            Ok(data) => subscribe::unsubscribe(shard, conn, &data.channel),
            Err(e) => conn.send_error(Some(codes::GENERIC_ERROR), &e.to_string(), None),
        },
        "pusher:signin" => match msg.data_as::<SigninData>("pusher:signin") {
            Ok(data) => return Some(Box::pin(signin::signin(shard, conn, data))),
            Err(e) => conn.send_error(Some(codes::GENERIC_ERROR), &e.to_string(), None),
        },
        "pusher:enable_delta_compression" => shard.enable_delta(conn),
        "pusher:delta_sync_error" => {
            match msg.data_as::<messages::DeltaSyncErrorData>("pusher:delta_sync_error") {
                Ok(data) => shard.delta_sync_error(conn, &data.channel),
                Err(e) => conn.send_error(Some(codes::GENERIC_ERROR), &e.to_string(), None),
            }
        }
        event if event.starts_with("client-") => {
            shard.metrics.client_event(event);
            client_event::relay(shard, conn, event, msg.channel.as_deref(), msg.data);
        }
        other => {
            tracing::debug!(socket_id = %conn.socket_id, event = other, "ignoring unknown event");
        }
    }
    None
}

//! Activity timeouts without a timer per connection: once a second one task walks the shard's connections.
//!
//! After `activity_timeout` seconds of client silence the server sends `pusher:ping`; with no reply within
//! `pong_timeout` it closes 4201. Connections stuck in `Closing` (peer never answered our close) are cut after
//! [`CLOSING_GRACE_SECS`].

use super::Shard;
use crate::conn::ConnState;
use crate::protocol::{codes, messages};
use std::rc::Rc;
use std::time::Duration;

/// How long a peer may take to answer our close frame.
const CLOSING_GRACE_SECS: u32 = 5;

/// Runs until the shard stops.
pub async fn run(shard: Rc<Shard>) {
    let activity = shard.config.activity_timeout as u32;
    let pong = shard.config.pong_timeout as u32;
    let sign_in = shard.config.user_authentication_timeout as u32;
    loop {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        shard.tick();
        let now = shard.now();
        if now.is_multiple_of(10) {
            shard.apps.purge(std::time::Instant::now());
        }
        let conns = shard.conns.borrow();
        shard.metrics.set_backlog(&shard.peers.backlog());
        let mut queued = 0;
        for conn in conns.values() {
            queued += conn.queued() as u64;
            match conn.state() {
                ConnState::Open
                    if conn.app.limits.enable_user_authentication
                        && !conn.authorized.get()
                        && now.saturating_sub(conn.connected_at) >= sign_in =>
                {
                    conn.close_with_error(
                        codes::UNAUTHORIZED,
                        "Connection not authorized within timeout",
                        now,
                    );
                }
                ConnState::Open => match conn.ping_sent_at.get() {
                    Some(sent) if now.saturating_sub(sent) >= pong => {
                        conn.close_with_error(
                            codes::PONG_NOT_RECEIVED,
                            "Pong reply not received in time",
                            now,
                        );
                    }
                    Some(_) => {}
                    None if now.saturating_sub(conn.last_seen.get()) >= activity => {
                        conn.send_control(messages::ping());
                        conn.ping_sent_at.set(Some(now));
                    }
                    None => {}
                },
                ConnState::Closing
                    if now.saturating_sub(conn.closing_since.get()) >= CLOSING_GRACE_SECS =>
                {
                    conn.abort();
                }
                _ => {}
            }
        }
        shard.metrics.queued_frames.set(queued);
    }
}

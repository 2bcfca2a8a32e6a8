//! The REST API (`/apps/{app_id}/...`) and health checks, answered on the same port as WebSockets.

mod channels;
mod publish;
mod signed;

pub use signed::Authorized;

use crate::http::{Method, Request, Response};
use crate::protocol::rest_auth::percent_decode;
use crate::shard::Shard;
use sockudo_io_shard::{Lookup, RateKind};

/// What a request head proved, before its body is read.
pub enum Admission {
    /// A route that needs no signature (health checks, unknown paths); it takes no body.
    Public,
    /// `/apps/{id}/...`, signed by the app; its body may be read up to what the route allows.
    Api(signed::Authorized),
}

/// Checks a request head before its body is read: `/apps/{id}/...` must name a known app, be signed (query
/// signature, timestamp, `auth_version`) and announce a body no larger than the route allows (for publishing, what
/// the app's event limits can need). `Err` is the answer to send; the body is then never read.
pub async fn admit(shard: &Shard, req: &Request) -> Result<Admission, Response> {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let ["apps", app_id, rest @ ..] = segments.as_slice() else {
        return Ok(Admission::Public);
    };
    // A database app manager may have to look the app up (never blocking the shard); a lookup that cannot be
    // answered now is a 503, not an unknown app.
    if let Err(e) = shard.find_app(Lookup::Id(app_id.to_string())).await {
        tracing::warn!(app_id, error = %e, "app lookup failed; answering 503");
        return Err(lookup_unavailable());
    }
    let http_limit = shard.config.http_api.request_limit_in_mb * 1024 * 1024;
    let post = req.method == Method::Post;
    let max_body = |app: &crate::app::App| match rest {
        ["events"] if post => publish::max_body(app, false).min(http_limit),
        ["batch_events"] if post => publish::max_body(app, true).min(http_limit),
        _ => http_limit,
    };
    signed::authenticate_head(shard, app_id, req, max_body).map(Admission::Api)
}

/// Answers one HTTP request that is not a WebSocket upgrade, admitted by [`admit`], with its whole body.
pub async fn handle(shard: &Shard, req: &Request, admission: Admission, body: &[u8]) -> Response {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (segments.as_slice(), admission) {
        (["up"], _) => health(shard, None).await,
        (["up", app_id], _) => health(shard, Some(app_id)).await,
        (["apps", _, rest @ ..], Admission::Api(auth)) => {
            if let Err(resp) = signed::check_body(&auth, body) {
                return resp;
            }
            let signed::Authorized { app, query } = auth;
            let decoded: Result<Vec<String>, _> = rest.iter().map(|s| percent_decode(s)).collect();
            let Ok(rest) = decoded else {
                return Response::error(400, "Invalid percent-encoding in the path");
            };
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            let get = req.method == Method::Get;
            if get
                && !shard
                    .rate_take(
                        &app,
                        RateKind::ReadRequests,
                        1,
                        app.limits.max_read_requests_per_second,
                    )
                    .await
            {
                return too_many_requests("read requests");
            }
            let post = req.method == Method::Post;
            match rest.as_slice() {
                ["events"] if post => publish::events(shard, &app, body).await,
                ["batch_events"] if post => publish::batch_events(shard, &app, body).await,
                ["events"] | ["batch_events"] => method_not_allowed("POST"),
                ["channels"] if get => channels::list(shard, &app, &query).await,
                ["channels", name] if get => channels::show(shard, &app, name, &query).await,
                ["channels", name, "users"] if get => channels::users(shard, &app, name).await,
                ["channels"] | ["channels", _] | ["channels", _, "users"] => {
                    method_not_allowed("GET")
                }
                ["users", user, "terminate_connections"] if post => {
                    channels::terminate(shard, &app, user).await
                }
                ["users", _, "terminate_connections"] => method_not_allowed("POST"),
                _ => Response::error(404, "Unknown API route"),
            }
        }
        _ => Response::error(404, "Not found"),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 429 for an app over one of its per-second REST limits.
pub fn too_many_requests(what: &str) -> Response {
    Response::error(
        429,
        &format!("Too many {what} for this app; retry in a second"),
    )
    .with_header("Retry-After", "1")
}

fn method_not_allowed(allowed: &'static str) -> Response {
    Response::error(405, "Method not allowed").with_header("Allow", allowed)
}

/// 503 for a REST call whose app could not be looked up (app database down and the app not cached).
fn lookup_unavailable() -> Response {
    Response::error(503, "Application lookup unavailable; retry later")
        .with_header("Retry-After", "1")
}

/// `GET /up` and `GET /up/{app_id}`. With a database app manager whose last query failed: `DEGRADED` (200)
/// while this shard still serves cached apps, `ERROR` (503) when it has none.
async fn health(shard: &Shard, app_id: Option<&str>) -> Response {
    if shard.is_shutting_down() {
        return Response::text(503, "DRAINING");
    }
    let database_down = shard.apps.is_database()
        && shard
            .io
            .as_ref()
            .is_some_and(|io| io.stats().app_source_down());
    if let Some(id) = app_id {
        match shard.find_app(Lookup::Id(id.to_string())).await {
            Ok(Some(app)) if app.enabled => {}
            Ok(Some(_)) => return Response::text(503, "DISABLED"),
            Ok(None) => return Response::text(404, "NOT_FOUND"),
            Err(_) => return Response::text(503, "ERROR"),
        }
    }
    if !database_down {
        Response::text(200, "OK")
    } else if shard.apps.is_empty() {
        Response::text(503, "ERROR")
    } else {
        Response::text(200, "DEGRADED")
    }
}

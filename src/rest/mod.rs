//! The REST API (`/apps/{app_id}/...`) and health checks, answered on the same port as WebSockets.

mod publish;
mod signed;

use crate::http::{Method, Request, Response};
use crate::shard::Shard;

/// Answers one HTTP request that is not a WebSocket upgrade.
pub async fn handle(shard: &Shard, req: &Request, body: &[u8]) -> Response {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["up"] => health(shard, None),
        ["up", app_id] => health(shard, Some(app_id)),
        ["apps", app_id, rest @ ..] => {
            let app = match signed::authenticate(shard, app_id, req, body) {
                Ok(app) => app,
                Err(resp) => return resp,
            };
            match (rest, &req.method) {
                (["events"], Method::Post) => publish::events(shard, &app, body).await,
                (["batch_events"], Method::Post) => publish::batch_events(shard, &app, body).await,
                (["events"] | ["batch_events"], _) => method_not_allowed("POST"),
                _ => Response::error(404, "Unknown API route"),
            }
        }
        _ => Response::error(404, "Not found"),
    }
}

fn method_not_allowed(allowed: &'static str) -> Response {
    Response::error(405, "Method not allowed").with_header("Allow", allowed)
}

fn health(shard: &Shard, app_id: Option<&str>) -> Response {
    if shard.is_shutting_down() {
        return Response::text(503, "DRAINING");
    }
    match app_id {
        None => Response::text(200, "OK"),
        Some(id) => match shard.app_by_id(id) {
            Some(app) if app.enabled => Response::text(200, "OK"),
            Some(_) => Response::text(503, "DISABLED"),
            None => Response::text(404, "NOT_FOUND"),
        },
    }
}

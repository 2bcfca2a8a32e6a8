//! Authentication of REST calls: the app named in the path, and the request signature (PROTOCOL.md 2.2).
//!
//! Done in two steps so that nothing unauthenticated is buffered: [`authenticate_head`] when the request head has
//! arrived (app, query signature, timestamp, body size), [`check_body`] once the body has been read (`body_md5`).

use crate::app::App;
use crate::http::{Request, Response};
use crate::protocol::rest_auth::{self, SignedHead};
use crate::shard::Shard;
use std::rc::Rc;

/// Decoded query parameters, in request order.
pub type Query = Vec<(String, String)>;

/// A request whose head is signed with its app's secret.
pub struct Authorized {
    /// The app of `/apps/{app_id}/...`.
    pub app: Rc<App>,
    /// The decoded query.
    pub query: Query,
}

/// The app of `/apps/{app_id}/...` and the decoded query when the request head is signed with the app's secret
/// and the announced body fits what the route allows (`max_body`); otherwise the error response.
pub fn authenticate_head(
    shard: &Shard,
    app_id: &str,
    req: &Request,
    max_body: impl Fn(&App) -> usize,
) -> Result<Authorized, Response> {
    let app = shard
        .app_by_id(app_id)
        .ok_or_else(|| Response::error(404, &format!("Unknown app id {app_id}")))?;
    let query = rest_auth::parse_query(&req.query)
        .map_err(|e| Response::error(e.http_status(), &e.to_string()))?;
    let head = SignedHead {
        method: req.method.as_str(),
        path: &req.path,
        query: &query,
        body_len: req.content_length,
    };
    rest_auth::verify_head(&head, &app.key, &app.secret, super::unix_now())
        .map_err(|e| Response::error(e.http_status(), &e.to_string()))?;
    if !app.enabled {
        return Err(Response::error(403, "Application is disabled"));
    }
    let max = max_body(&app);
    if req.content_length > max {
        return Err(Response::error(
            413,
            &format!(
                "Body of {} bytes is larger than this app's limits allow ({max} bytes)",
                req.content_length
            ),
        ));
    }
    Ok(Authorized { app, query })
}

/// The body matches the signed `body_md5`.
pub fn check_body(auth: &Authorized, body: &[u8]) -> Result<(), Response> {
    rest_auth::verify_body(&auth.query, body)
        .map_err(|e| Response::error(e.http_status(), &e.to_string()))
}

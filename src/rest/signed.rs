//! Authentication of REST calls: the app named in the path, and the request signature (PROTOCOL.md 2.2).

use crate::app::App;
use crate::http::{Request, Response};
use crate::protocol::rest_auth::{self, RequestToVerify};
use crate::shard::Shard;
use std::rc::Rc;

/// Decoded query parameters, in request order.
pub type Query = Vec<(String, String)>;

/// The app of `/apps/{app_id}/...` and the decoded query when the request is signed with the app's secret;
/// otherwise the error response.
pub fn authenticate(
    shard: &Shard,
    app_id: &str,
    req: &Request,
    body: &[u8],
) -> Result<(Rc<App>, Query), Response> {
    let app = shard
        .app_by_id(app_id)
        .ok_or_else(|| Response::error(404, &format!("Unknown app id {app_id}")))?;
    let query = rest_auth::parse_query(&req.query)
        .map_err(|e| Response::error(e.http_status(), &e.to_string()))?;
    let now = super::unix_now();
    let to_verify = RequestToVerify {
        method: req.method.as_str(),
        path: &req.path,
        query: &query,
        body,
    };
    rest_auth::verify(&to_verify, &app.key, &app.secret, now)
        .map_err(|e| Response::error(e.http_status(), &e.to_string()))?;
    if !app.enabled {
        return Err(Response::error(403, "Application is disabled"));
    }
    Ok((app, query))
}

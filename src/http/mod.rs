//! HTTP/1.1 for the one port serving WebSocket upgrades and the REST API,
//! sans-IO: request heads are parsed from the connection's buffer and
//! responses are appended to its write buffer.

mod request;
mod response;

pub use request::{
    parse_request, Headers, HttpError, Limits, Method, Request, UpgradeError, MAX_HEADERS,
};
pub use response::{reason_phrase, Response};

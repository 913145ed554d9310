//! CORS for the client endpoint: browsers poll the gateway cross-origin (the
//! page comes from the application). tower-http's [`CorsLayer`] does the
//! work; this module only says which policy.
//!
//! Every origin is allowed by default, but without credentials: reflecting
//! any `Origin` together with `Access-Control-Allow-Credentials: true` would
//! let every web page make credentialed requests (cookies, HTTP auth) to the
//! gateway in the visitor's name. Credentials are allowed only for the
//! origins configured with `--allowed-origin` (compared without regard to
//! case), and other origins then get no CORS headers. socket.io-client does
//! not send credentials unless `withCredentials` is set, and the access
//! token travels in the query or `Authorization` header, so it works either
//! way.

use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, StatusCode, header};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// How long browsers may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(86_400);

/// Which origins may call the client endpoint from a browser.
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    /// Allowed origins, which may also send credentials; empty allows every
    /// origin, without credentials.
    pub allowed_origins: Vec<String>,
}

impl CorsPolicy {
    /// The layer that answers preflights and adds the CORS headers.
    pub(crate) fn layer(&self) -> CorsLayer {
        let layer = CorsLayer::new()
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(AllowHeaders::mirror_request())
            .max_age(PREFLIGHT_MAX_AGE);
        if self.allowed_origins.is_empty() {
            return layer.allow_origin(AllowOrigin::mirror_request());
        }
        let allowed = self.allowed_origins.clone();
        layer
            .allow_origin(AllowOrigin::predicate(move |origin, _| {
                allowed
                    .iter()
                    .any(|a| a.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
            }))
            .allow_credentials(true)
    }
}

/// Two finishing touches on [`CorsLayer`]'s answers: preflights are
/// answered `204 No Content`, as engine.io's server does (tower-http answers
/// `200`), and an origin that is not allowed gets no CORS header at all
/// (tower-http still sends `Access-Control-Allow-Credentials`, which grants
/// nothing without an allowed origin, but says more than needed).
pub(crate) async fn finish_cors(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    if preflight && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    }
    response
}

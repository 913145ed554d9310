//! CORS for the client endpoint: browsers poll the gateway cross-origin (the
//! page comes from the application).
//!
//! Every origin is allowed by default, but without credentials: reflecting
//! any `Origin` together with `Access-Control-Allow-Credentials: true` would
//! let every web page make credentialed requests (cookies, HTTP auth) to the
//! gateway in the visitor's name. Credentials are allowed only for the
//! origins configured with `--allowed-origin`. socket.io-client does not send
//! credentials unless `withCredentials` is set, and the access token travels
//! in the query or `Authorization` header, so it works either way.
//!
//! Why not tower-http's `CorsLayer`: it was tried (same policy, preflights
//! kept at 204) and measured with `bench/run --quick`: refused handshakes
//! cost 14.3–16.2 µs of gateway CPU with it against 12.6–13.9 µs with this
//! module (2026-12-02, same machine), a 10 % loss on the path the gate
//! exists to keep cheap, for about 60 lines saved.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// Which origins may call the client endpoint from a browser.
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    /// Allowed origins, which may also send credentials; empty allows every
    /// origin, without credentials.
    pub allowed_origins: Vec<String>,
}

impl CorsPolicy {
    fn allows(&self, origin: &HeaderValue) -> bool {
        self.allowed_origins.is_empty()
            || self
                .allowed_origins
                .iter()
                .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    }

    /// Adds the CORS headers for a request from `origin` to `response`.
    pub fn apply(&self, origin: Option<&HeaderValue>, response: &mut Response) {
        let headers = response.headers_mut();
        match origin {
            Some(origin) if self.allows(origin) => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                if !self.allowed_origins.is_empty() {
                    headers.insert(
                        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
                headers.append(header::VARY, HeaderValue::from_static("Origin"));
            }
            Some(_) => {}
            None if self.allowed_origins.is_empty() => {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            None => {}
        }
    }

    /// The answer to a preflight `OPTIONS` request.
    pub fn preflight(&self, request_headers: &HeaderMap) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        let allow_headers = request_headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or(HeaderValue::from_static("authorization, content-type"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        self.apply(request_headers.get(header::ORIGIN), &mut response);
        response
    }
}

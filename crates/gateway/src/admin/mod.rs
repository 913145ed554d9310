//! The operator's page, `/admin`: per hub, live connections, message rates,
//! refusal reasons and attached application servers, with a small live
//! chart. Off unless enabled.
//!
//! Everything is served by the gateway (HTML, script and style are compiled
//! in; no CDN), under a Content-Security-Policy that allows nothing else.
//! The page asks for a key (the `--admin-key`, or else any access key),
//! compared in constant time; a correct key opens a session whose random id
//! travels in an `HttpOnly; SameSite=Strict` cookie scoped to `/admin`.
//! Sessions expire and are bounded in number. The page polls
//! `/admin/api/stats` (cookie-protected JSON) every second.

mod sessions;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::hub::TransportKind;
use crate::secret::{Secret, secret_eq};
use crate::server::GatewayState;
pub(crate) use sessions::Sessions;

/// The session cookie's name.
const COOKIE: &str = "portcullis_admin";

/// Largest login form accepted, in bytes.
const MAX_FORM_BYTES: usize = 4096;

/// `/admin` settings.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Serve the page (default: off).
    pub enabled: bool,
    /// The key that logs in; `None`: any access key does.
    pub key: Option<Secret>,
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Most sessions at once; a new login beyond ends the oldest.
    pub max_sessions: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: false,
            key: None,
            session_ttl: Duration::from_secs(3600),
            max_sessions: 16,
        }
    }
}

/// The page's routes (added to the gateway's router when enabled).
pub(crate) fn routes() -> Router<Arc<GatewayState>> {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/api/stats", get(stats))
        .route("/admin/admin.js", get(script))
        .route("/admin/admin.css", get(style))
}

fn sessions(state: &GatewayState) -> &Sessions {
    state
        .admin_sessions
        .as_ref()
        .expect("admin routes exist only when the page is enabled")
}

/// The session id in the request's cookies, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

fn logged_in(state: &GatewayState, headers: &HeaderMap) -> bool {
    session_cookie(headers).is_some_and(|id| sessions(state).is_valid(id))
}

/// Whether `presented` is the admin key (or, without one, an access key).
/// Every candidate is compared, in constant time each.
fn key_matches(state: &GatewayState, presented: &str) -> bool {
    if presented.is_empty() {
        return false;
    }
    match &state.config.admin.key {
        Some(key) => key.matches(presented),
        None => state
            .config
            .access_keys
            .all()
            .iter()
            .fold(false, |ok, key| ok | secret_eq(presented, key)),
    }
}

/// Headers of every page: nothing from elsewhere, no framing, no caching.
fn guarded(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    guarded(response)
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" id=\"error\">{e}</p>"))
        .unwrap_or_default();
    html(
        status,
        include_str!("login.html").replace("{error}", &error),
    )
}

fn redirect_to_page() -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/admin"));
    guarded(response)
}

/// `GET /admin`: the dashboard, or the login form without a session.
async fn page(State(state): State<Arc<GatewayState>>, headers: HeaderMap) -> Response {
    if logged_in(&state, &headers) {
        html(StatusCode::OK, include_str!("page.html").to_owned())
    } else {
        login_page(StatusCode::OK, None)
    }
}

/// `POST /admin/login` with the form field `key`.
async fn login(State(state): State<Arc<GatewayState>>, request: Request) -> Response {
    let body = match axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return login_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("The form is too large."),
            );
        }
    };
    let key = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "key")
        .map(|(_, value)| value)
        .unwrap_or_default();
    if !key_matches(&state, &key) {
        tracing::warn!("operator page: login with a wrong key refused");
        return login_page(StatusCode::UNAUTHORIZED, Some("Wrong key."));
    }
    let sessions = sessions(&state);
    let id = sessions.open();
    let secure = state
        .config
        .public_endpoint
        .as_ref()
        .is_some_and(|u| u.scheme() == "https");
    let cookie = format!(
        "{COOKIE}={id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{}",
        sessions.ttl().as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let mut response = redirect_to_page();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /admin/logout`.
async fn logout(State(state): State<Arc<GatewayState>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        sessions(&state).close(id);
    }
    let mut response = redirect_to_page();
    let clear = format!("{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `GET /admin/api/stats`: what the page draws, as JSON.
async fn stats(State(state): State<Arc<GatewayState>>, headers: HeaderMap) -> Response {
    if !logged_in(&state, &headers) {
        let body = serde_json::json!({"code": 401, "message": "log in at /admin first"});
        return guarded((StatusCode::UNAUTHORIZED, axum::Json(body)).into_response());
    }
    guarded(axum::Json(snapshot(&state)).into_response())
}

/// Every hub's figures now (counters are totals; the page derives rates).
fn snapshot(state: &GatewayState) -> serde_json::Value {
    let mut hubs: Vec<_> = state.hubs.all();
    hubs.sort_by(|a, b| a.name().cmp(b.name()));
    let hubs: Vec<_> = hubs
        .iter()
        .map(|hub| {
            let metrics = hub.metrics();
            let (polling, websocket) = crate::metrics::open_by_transport(hub);
            let (p, w) = (
                metrics.transport(TransportKind::Polling),
                metrics.transport(TransportKind::WebSocket),
            );
            let servers: Vec<_> = state
                .tunnels
                .servers_of(hub.name())
                .into_iter()
                .map(|(id, tunnels)| serde_json::json!({"id": id, "tunnels": tunnels}))
                .collect();
            serde_json::json!({
                "name": hub.name(),
                "connections": {"polling": polling, "websocket": websocket, "total": polling + websocket},
                "messages_received": p.messages_received() + w.messages_received(),
                "messages_sent": p.messages_sent() + w.messages_sent(),
                "handshakes_accepted": metrics.handshakes().accepted(),
                "refusals": refusal_map(metrics.handshakes()),
                "tunnels": metrics.tunnels(),
                "servers": servers,
                "echo": state.config.echo_hubs.iter().any(|e| e.eq_ignore_ascii_case(hub.name())),
            })
        })
        .collect();
    let metrics = state.hubs.metrics();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": metrics.uptime().as_secs(),
        "connections": state.hubs.connection_count(),
        "hubs": hubs,
        "unknown_hub_refusals": refusal_map(metrics.unknown_hub()),
    })
}

fn refusal_map(metrics: &crate::metrics::HandshakeMetrics) -> serde_json::Value {
    metrics
        .refusals()
        .into_iter()
        .map(|(reason, n)| (reason.to_owned(), serde_json::Value::from(n)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    guarded(response)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("admin.js"))
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("admin.css"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; portcullis_admin=xyz; b=2"),
        );
        assert_eq!(session_cookie(&headers), Some("xyz"));
        let mut other = HeaderMap::new();
        other.append(
            header::COOKIE,
            HeaderValue::from_static("portcullis_adminx=1"),
        );
        assert_eq!(session_cookie(&other), None);
    }
}

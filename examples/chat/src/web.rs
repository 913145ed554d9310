//! The HTTP side: login and logout with sessions, `/negotiate`, the pages
//! and the bundled socket.io-client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_login::{AuthManagerLayerBuilder, AuthSession};
use portcullis_auth::ConnectionString;
use portcullis_server::SocketIo;
use portcullis_server::login::use_login;
use portcullis_server::negotiate::{Negotiate, NegotiateError};
use serde::Deserialize;
use tower_sessions::{MemoryStore, SessionManagerLayer};

use crate::users::{Credentials, Users};

const LOGIN_HTML: &str = include_str!("../assets/login.html");
const CHAT_HTML: &str = include_str!("../assets/chat.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");
/// The token-refresh helper (the npm package `portcullis-client` of this
/// repository, one plain file for the browser).
const PORTCULLIS_CLIENT_JS: &str = include_str!("../../../clients/js/portcullis-client.js");

#[derive(Clone)]
struct AppState {
    users: Users,
    io: SocketIo,
    socket_io_js: Arc<[u8]>,
}

/// What the app's routes need.
pub struct Settings {
    /// The user store (the login backend).
    pub users: Users,
    /// The Socket.IO side, for revoking a user's tokens at logout.
    pub io: SocketIo,
    /// The gateway the tokens are for.
    pub connection: ConnectionString,
    /// The hub the tokens are for.
    pub hub: &'static str,
    /// How long the tokens of `/negotiate` live.
    pub token_ttl: Duration,
    /// The socket.io-client browser bundle.
    pub socket_io_js: Vec<u8>,
}

/// The app's routes: pages, login, logout and `/negotiate` for the hub of
/// the gateway named in `settings`; an error if the hub name is not valid.
pub fn router(settings: Settings) -> Result<Router, NegotiateError> {
    let Settings {
        users,
        io,
        connection,
        hub,
        token_ttl,
        socket_io_js,
    } = settings;
    // Sessions in memory; a cookie named "chat.sid" (HttpOnly, SameSite=Lax).
    // Not `Secure`, so that plain http://127.0.0.1 works for the demo.
    let sessions = SessionManagerLayer::new(MemoryStore::default())
        .with_name("chat.sid")
        .with_secure(false);
    let auth = AuthManagerLayerBuilder::new(users.clone(), sessions).build();

    // The token's user id is the logged-in user's id; 401 when logged out.
    // Tokens are short-lived (a minute by default): the page hands the
    // gateway a fresh one over its live connection before each expires,
    // and negotiates again for every reconnection. A logout revokes the
    // user's tokens at the gateway, which disconnects every open tab.
    let negotiate = Negotiate::new(connection, hub)?
        .max_expiration(token_ttl)
        .handler(use_login::<Users>());

    let state = AppState {
        users,
        io,
        socket_io_js: socket_io_js.into(),
    };
    Ok(Router::new()
        .route("/", get(chat_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/negotiate", get(negotiate))
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/assets/portcullis-client.js",
            get(|| async { asset("text/javascript; charset=utf-8", PORTCULLIS_CLIENT_JS) }),
        )
        .route("/assets/socket.io.min.js", get(socket_io_js_file))
        .with_state(state)
        .layer(auth))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn socket_io_js_file(State(state): State<AppState>) -> Response {
    let body = axum::body::Bytes::copy_from_slice(&state.socket_io_js);
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The path of the socket.io-client browser bundle installed by `npm ci`
/// in examples/chat (or `CHAT_SOCKET_IO_JS`).
pub fn socket_io_js_path() -> PathBuf {
    std::env::var_os("CHAT_SOCKET_IO_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("node_modules/socket.io-client/dist/socket.io.min.js")
        })
}

async fn chat_page(session: AuthSession<Users>) -> Response {
    match session.user {
        Some(user) => Html(
            CHAT_HTML
                .replace("{{name}}", &escape(&user.name))
                .replace("{{username}}", &escape(&user.username)),
        )
        .into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    error: Option<String>,
}

async fn login_page(
    session: AuthSession<Users>,
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
) -> Response {
    if session.user.is_some() {
        return Redirect::to("/").into_response();
    }
    let error = if q.error.is_some() {
        r#"<p class="error" role="alert" data-testid="login-error">Wrong user name or password.</p>"#
    } else {
        ""
    };
    let hint = state
        .users
        .usernames()
        .map(|u| format!("<code>{u}</code>/<code>{u}</code>"))
        .collect::<Vec<_>>()
        .join(", ");
    Html(
        LOGIN_HTML
            .replace("{{error}}", error)
            .replace("{{hint}}", &hint),
    )
    .into_response()
}

async fn login(mut session: AuthSession<Users>, Form(creds): Form<Credentials>) -> Response {
    let user = match session.authenticate(creds).await {
        Ok(Some(user)) => user,
        Ok(None) => return Redirect::to("/login?error=1").into_response(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    if session.login(&user).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    tracing::info!(user = %user.username, "logged in");
    Redirect::to("/").into_response()
}

/// Ends the session and revokes every token the user holds, so every open
/// tab of the user (this browser or another) is disconnected at once; the
/// pages then find themselves refused by `/negotiate`.
async fn logout(mut session: AuthSession<Users>, State(state): State<AppState>) -> Response {
    let user = match session.logout().await {
        Ok(user) => user,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    if let Some(user) = user {
        // Every token issued until now (the crate rounds up to the next
        // whole second, as `iat` has whole seconds).
        if let Err(error) = state
            .io
            .revoke_user_tokens(&user.username, SystemTime::now())
            .await
        {
            tracing::warn!(user = %user.username, %error, "logged out, but the tokens were not revoked");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        tracing::info!(user = %user.username, "logged out, tokens revoked");
    }
    StatusCode::NO_CONTENT.into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

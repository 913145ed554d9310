//! `/negotiate` for axum: the endpoint a browser calls to learn where to
//! connect and with which access token.
//!
//! The equivalent of the official SDK's `negotiate(io, configure)`: your
//! closure maps the request (through any axum extractors) to
//! [`NegotiateOptions`] (user id, roles, groups, expiry, custom claims) or a
//! [`Refusal`]; the handler mints the client token locally with the access
//! key (no round trip to the gateway) and answers exactly what the SDK
//! answers:
//!
//! ```json
//! {"endpoint":"http://127.0.0.1:8080","path":"/clients/socketio/hubs/chat","token":"eyJhbGciOi…"}
//! ```
//!
//! so the browser code written for the SDK works unchanged:
//!
//! ```js
//! const { endpoint, path, token } = await (await fetch("/negotiate")).json();
//! const socket = io(endpoint, { path, query: { access_token: token } });
//! ```
//!
//! A refusal answers with its status and `{"message": "..."}`.
//!
//! ```
//! use axum::{Router, extract::Query, routing::get};
//! use portcullis_auth::ConnectionString;
//! use portcullis_server::negotiate::{Negotiate, NegotiateOptions, Refusal};
//! use std::collections::HashMap;
//!
//! let cs: ConnectionString = "Endpoint=http://127.0.0.1:8080;AccessKey=secret;Version=1.0;".parse().unwrap();
//! let negotiate = Negotiate::new(cs, "chat").expect("a valid hub name").handler(
//!     |Query(q): Query<HashMap<String, String>>| async move {
//!         let user = q.get("username").ok_or(Refusal::unauthorized("who are you?"))?;
//!         Ok(NegotiateOptions::user(user.as_str()).role("webpubsub.joinLeaveGroup"))
//!     },
//! );
//! let app: Router = Router::new().route("/negotiate", get(negotiate));
//! ```

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use portcullis_auth::{ClientTokenOptions, ConnectionString, mint_client_token};
use portcullis_hub::is_valid_hub_name;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The lifetime of a token when the options give none: one hour, as the SDK.
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(3600);

/// The longest lifetime of a token unless the app sets another with
/// [`Negotiate::max_expiration`]: one hour. A token cannot be revoked, so a
/// stolen one is only harmless once it expires; this bounds that window
/// whatever the options (or a client's `?expirationMinutes=`) ask for.
pub const DEFAULT_MAX_EXPIRATION: Duration = Duration::from_secs(3600);

/// Where clients of one hub connect, and the key their tokens are signed
/// with. Turn it into an axum handler with [`handler`](Self::handler), or
/// mint answers yourself with [`answer`](Self::answer).
///
/// ```
/// use portcullis_auth::ConnectionString;
/// use portcullis_server::negotiate::{Negotiate, NegotiateOptions};
///
/// let cs: ConnectionString = "Endpoint=http://localhost;Port=8080;AccessKey=k;Version=1.0;".parse().unwrap();
/// let negotiate = Negotiate::new(cs, "chat").expect("a valid hub name");
/// assert_eq!(negotiate.audience(), "http://localhost:8080/clients/socketio/hubs/chat");
/// let answer = negotiate.answer(&NegotiateOptions::user("bob"));
/// assert_eq!(answer.endpoint, "http://localhost:8080");
/// assert_eq!(answer.path, "/clients/socketio/hubs/chat");
/// ```
#[derive(Clone)]
pub struct Negotiate {
    inner: Arc<NegotiateInner>,
}

struct NegotiateInner {
    audience: String,
    endpoint: String,
    path: String,
    access_key: String,
    max_expiration: Duration,
}

impl fmt::Debug for Negotiate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Negotiate")
            .field("audience", &self.inner.audience)
            .field("max_expiration", &self.inner.max_expiration)
            .finish_non_exhaustive()
    }
}

impl Negotiate {
    /// Negotiation for hub `hub` of the gateway named by `connection`: the
    /// token audience is `<endpoint>/clients/socketio/hubs/<hub>`, as the SDK
    /// computes it, and tokens are signed with the connection string's key.
    ///
    /// # Errors
    ///
    /// [`NegotiateError::InvalidHubName`] if `hub` is not 1 to 128 ASCII
    /// letters, digits, `_`, `-` or `.` (the gateway would refuse every
    /// client of such a hub).
    ///
    /// ```
    /// use portcullis_server::negotiate::{Negotiate, NegotiateError};
    ///
    /// let cs = "Endpoint=http://localhost;Port=8080;AccessKey=k;Version=1.0;".parse().unwrap();
    /// assert!(matches!(Negotiate::new(cs, "a/b"), Err(NegotiateError::InvalidHubName(_))));
    /// ```
    pub fn new(connection: ConnectionString, hub: &str) -> Result<Self, NegotiateError> {
        if !is_valid_hub_name(hub) {
            return Err(NegotiateError::InvalidHubName(hub.to_owned()));
        }
        let audience = connection.client_url(hub);
        let url = url::Url::parse(&audience).map_err(|_| NegotiateError::InvalidEndpoint)?;
        Ok(Negotiate {
            inner: Arc::new(NegotiateInner {
                endpoint: url.origin().ascii_serialization(),
                path: url.path().to_owned(),
                audience,
                access_key: connection.access_key,
                max_expiration: DEFAULT_MAX_EXPIRATION,
            }),
        })
    }

    /// Like [`new`](Self::new), from an endpoint URL and an access key.
    ///
    /// ```
    /// use portcullis_server::negotiate::Negotiate;
    ///
    /// let n = Negotiate::with_key("http://127.0.0.1:8080".parse().unwrap(), "secret", "chat").unwrap();
    /// assert_eq!(n.audience(), "http://127.0.0.1:8080/clients/socketio/hubs/chat");
    /// ```
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_key(
        endpoint: url::Url,
        access_key: impl Into<String>,
        hub: &str,
    ) -> Result<Self, NegotiateError> {
        Negotiate::new(ConnectionString::new(endpoint, access_key), hub)
    }

    /// Caps the lifetime of every token: a longer
    /// [`NegotiateOptions::expiration`] (including one a client asked for
    /// with `?expirationMinutes=`) is shortened to `max`, never refused.
    /// [`DEFAULT_MAX_EXPIRATION`] (one hour) by default; raise it here if
    /// your app hands out longer-lived tokens on purpose.
    ///
    /// ```
    /// use std::time::Duration;
    /// use portcullis_server::negotiate::{DEFAULT_MAX_EXPIRATION, Negotiate};
    ///
    /// let n = Negotiate::with_key("http://127.0.0.1:8080".parse().unwrap(), "secret", "chat").unwrap();
    /// assert_eq!(n.max_expiration_value(), DEFAULT_MAX_EXPIRATION);
    /// let n = n.max_expiration(Duration::from_secs(8 * 3600));
    /// assert_eq!(n.max_expiration_value(), Duration::from_secs(8 * 3600));
    /// ```
    #[must_use]
    pub fn max_expiration(self, max: Duration) -> Self {
        let inner = &self.inner;
        Negotiate {
            inner: Arc::new(NegotiateInner {
                audience: inner.audience.clone(),
                endpoint: inner.endpoint.clone(),
                path: inner.path.clone(),
                access_key: inner.access_key.clone(),
                max_expiration: max,
            }),
        }
    }

    /// The longest lifetime of the tokens this negotiation mints (see
    /// [`max_expiration`](Self::max_expiration)).
    pub fn max_expiration_value(&self) -> Duration {
        self.inner.max_expiration
    }

    /// The token audience: `<endpoint>/clients/socketio/hubs/<hub>`.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// Mints a token for `options` and the answer the browser gets. The
    /// lifetime is `options.expiration` (default [`DEFAULT_EXPIRATION`])
    /// shortened to the [`max_expiration`](Self::max_expiration).
    pub fn answer(&self, options: &NegotiateOptions) -> NegotiateResponse {
        let ttl = options
            .expiration
            .unwrap_or(DEFAULT_EXPIRATION)
            .min(self.inner.max_expiration);
        let token_options = ClientTokenOptions {
            user_id: options.user_id.clone(),
            roles: options.roles.clone(),
            groups: options.groups.clone(),
            ttl,
            custom_claims: options.custom_claims.clone(),
            ..ClientTokenOptions::default()
        };
        NegotiateResponse {
            endpoint: self.inner.endpoint.clone(),
            path: self.inner.path.clone(),
            token: mint_client_token(&self.inner.access_key, &self.inner.audience, &token_options),
        }
    }

    /// An axum handler: `configure` maps the request to options or a
    /// refusal, and the handler answers `{endpoint, path, token}`.
    ///
    /// `configure` is an async closure taking up to eight axum extractors
    /// (anything implementing [`FromRequestParts`]: `Query`, `HeaderMap`,
    /// `State`, `AuthSession`, [`ExpirationMinutes`], …) and returning
    /// `Result<NegotiateOptions, Refusal>`. If an extractor rejects the
    /// request, the answer is the rejection's status with its text as the
    /// message.
    ///
    /// ```
    /// use axum::{Router, http::HeaderMap, routing::get};
    /// use portcullis_server::negotiate::{ExpirationMinutes, Negotiate, NegotiateOptions, Refusal};
    ///
    /// let negotiate = Negotiate::with_key("http://127.0.0.1:8080".parse().unwrap(), "secret", "chat")
    ///     .expect("a valid hub name")
    ///     .handler(|headers: HeaderMap, ExpirationMinutes(ttl): ExpirationMinutes| async move {
    ///         let user = headers
    ///             .get("x-user")
    ///             .and_then(|v| v.to_str().ok())
    ///             .ok_or(Refusal::unauthorized("log in first"))?;
    ///         Ok(NegotiateOptions { expiration: ttl, ..NegotiateOptions::user(user) })
    ///     });
    /// let app: Router = Router::new().route("/negotiate", get(negotiate));
    /// ```
    pub fn handler<C, T, S>(&self, configure: C) -> NegotiateHandler<C, T, S>
    where
        C: ConfigureNegotiate<T, S>,
    {
        NegotiateHandler {
            negotiate: self.clone(),
            configure,
            _marker: PhantomData,
        }
    }
}

/// Why a [`Negotiate`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiateError {
    /// The hub name is not 1 to 128 ASCII letters, digits, `_`, `-` or `.`.
    #[error("invalid hub name {0:?}: use 1 to 128 ASCII letters, digits, '_', '-' or '.'")]
    InvalidHubName(String),
    /// The connection string's endpoint and the hub do not make a client
    /// URL (never for an endpoint parsed as a URL; kept so that no input
    /// can panic).
    #[error("the connection string's endpoint does not make a client URL")]
    InvalidEndpoint,
}

/// What goes into a client token. Build it with a struct literal and
/// `..Default::default()`, or with the builder methods.
///
/// ```
/// use std::time::Duration;
/// use portcullis_server::negotiate::NegotiateOptions;
///
/// let options = NegotiateOptions::user("alice")
///     .role("webpubsub.joinLeaveGroup")
///     .group("lobby")
///     .expires_in(Duration::from_secs(600))
///     .claim("team", "blue");
/// assert_eq!(options.user_id.as_deref(), Some("alice"));
/// assert_eq!(options.custom_claims["team"], "blue");
///
/// let same = NegotiateOptions {
///     user_id: Some("alice".into()),
///     roles: vec!["webpubsub.joinLeaveGroup".into()],
///     groups: vec!["lobby".into()],
///     expiration: Some(Duration::from_secs(600)),
///     custom_claims: [("team".to_owned(), "blue".into())].into_iter().collect(),
/// };
/// assert_eq!(options, same);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NegotiateOptions {
    /// The user id: the token's `userId` claim and (when non-empty) `sub`,
    /// which the gateway makes the connection's user id
    /// ([`SocketRef::user_id`](crate::SocketRef::user_id)).
    pub user_id: Option<String>,
    /// Roles (the `role` claim).
    pub roles: Vec<String>,
    /// Groups the connection joins (the `webpubsub.group` claim).
    pub groups: Vec<String>,
    /// Lifetime of the token; `None` is [`DEFAULT_EXPIRATION`] (one hour).
    /// Never longer than [`Negotiate::max_expiration`] (one hour by
    /// default): a longer value is shortened to it.
    pub expiration: Option<Duration>,
    /// Extra claims, visible to the application as
    /// [`SocketRef::claims`](crate::SocketRef::claims). Claims named like a
    /// reserved claim (`iat`, `exp`, `aud`, `sub`, `userId`, `role`,
    /// `webpubsub.group`: [`portcullis_auth::RESERVED_CLAIMS`]) are dropped:
    /// identity, roles and groups come only from the fields above.
    pub custom_claims: Map<String, Value>,
}

impl NegotiateOptions {
    /// Options for user `user_id`.
    pub fn user(user_id: impl Into<String>) -> Self {
        NegotiateOptions {
            user_id: Some(user_id.into()),
            ..Default::default()
        }
    }

    /// Adds a role.
    #[must_use]
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Adds a group.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }

    /// Sets the token's lifetime.
    #[must_use]
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expiration = Some(ttl);
        self
    }

    /// Adds a custom claim.
    #[must_use]
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.custom_claims.insert(name.into(), value.into());
        self
    }
}

/// The answer of `/negotiate`, as the SDK writes it: the gateway's origin,
/// the hub's client path and the token. `Debug` redacts the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NegotiateResponse {
    /// The gateway's origin, e.g. `http://127.0.0.1:8080` (no trailing slash).
    pub endpoint: String,
    /// The client path, e.g. `/clients/socketio/hubs/chat`.
    pub path: String,
    /// The client access token (an HS256 JWT).
    pub token: String,
}

impl fmt::Debug for NegotiateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a bearer credential: a logged answer must not leak it.
        f.debug_struct("NegotiateResponse")
            .field("endpoint", &self.endpoint)
            .field("path", &self.path)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl IntoResponse for NegotiateResponse {
    fn into_response(self) -> Response {
        axum::Json(self).into_response()
    }
}

/// A refused negotiation: answered with its status and
/// `{"message": "..."}`.
///
/// ```
/// use axum::http::StatusCode;
/// use portcullis_server::negotiate::Refusal;
///
/// let r = Refusal::unauthorized("log in first");
/// assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(r.message(), "log in first");
/// let r: Refusal = (StatusCode::FORBIDDEN, "banned").into();
/// assert_eq!(r.to_string(), "403 Forbidden: banned");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    /// A refusal with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }

    /// `400 Bad Request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, message)
    }

    /// `401 Unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::UNAUTHORIZED, message)
    }

    /// `403 Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::FORBIDDEN, message)
    }

    /// `500` with the SDK's message, `Internal Server Error`.
    pub fn internal() -> Self {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The refusal of an extractor's rejection: its status, and its body
    /// (or its `message` if the body is JSON with one) as the message.
    async fn from_rejection(response: Response) -> Self {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        let message = if message.is_empty() {
            status.canonical_reason().unwrap_or("refused").to_owned()
        } else {
            message
        };
        Refusal::new(status, message)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for Refusal {}

impl From<(StatusCode, &str)> for Refusal {
    fn from((status, message): (StatusCode, &str)) -> Self {
        Refusal::new(status, message)
    }
}

impl From<(StatusCode, String)> for Refusal {
    fn from((status, message): (StatusCode, String)) -> Self {
        Refusal::new(status, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

/// The token lifetime a client asked for with `?expirationMinutes=<n>`
/// (`None` when absent), as the SDK's `usePassport` reads it. Fractions of
/// minutes are allowed; a value that is not a non-negative number is
/// refused with `400` (a typo should not silently give a default lifetime).
///
/// A client can only shorten its token: [`use_login`](crate::login::use_login)
/// takes the shorter of this and the app's expiration, and
/// [`Negotiate::answer`] shortens any lifetime to
/// [`Negotiate::max_expiration`]. A handler that puts this value in
/// [`NegotiateOptions::expiration`] itself is bounded by the latter only.
///
/// ```
/// use axum::extract::FromRequestParts;
/// use portcullis_server::negotiate::ExpirationMinutes;
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let (mut parts, ()) = axum::http::Request::get("/negotiate?expirationMinutes=1.5").body(()).unwrap().into_parts();
/// let ExpirationMinutes(ttl) = ExpirationMinutes::from_request_parts(&mut parts, &()).await.unwrap();
/// assert_eq!(ttl, Some(Duration::from_secs(90)));
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpirationMinutes(pub Option<Duration>);

impl<S: Send + Sync> FromRequestParts<S> for ExpirationMinutes {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Refusal> {
        let query = parts.uri.query().unwrap_or_default();
        let Some((_, value)) =
            form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "expirationMinutes")
        else {
            return Ok(ExpirationMinutes(None));
        };
        value
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|minutes| Duration::try_from_secs_f64(minutes * 60.0).ok())
            .map(|ttl| ExpirationMinutes(Some(ttl)))
            .ok_or_else(|| {
                Refusal::bad_request("expirationMinutes must be a non-negative number of minutes")
            })
    }
}

/// A function that maps a request, through its extractors, to
/// [`NegotiateOptions`] or a [`Refusal`]; see [`Negotiate::handler`].
///
/// Implemented for async closures and functions of up to eight arguments
/// that each implement [`FromRequestParts<S>`], returning
/// `Result<NegotiateOptions, Refusal>`.
pub trait ConfigureNegotiate<T, S>: Clone + Send + Sync + 'static {
    /// Runs the extractors and the function.
    fn configure(
        &self,
        parts: Parts,
        state: S,
    ) -> BoxFuture<'static, Result<NegotiateOptions, Refusal>>;
}

macro_rules! impl_configure {
    ($($ty:ident),*) => {
        impl<F, Fut, S, $($ty,)*> ConfigureNegotiate<($($ty,)*), S> for F
        where
            F: Fn($($ty),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = Result<NegotiateOptions, Refusal>> + Send + 'static,
            S: Send + Sync + 'static,
            $($ty: FromRequestParts<S> + Send + 'static,)*
        {
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn configure(
                &self,
                mut parts: Parts,
                state: S,
            ) -> BoxFuture<'static, Result<NegotiateOptions, Refusal>> {
                let f = self.clone();
                Box::pin(async move {
                    $(
                        let extracted = $ty::from_request_parts(&mut parts, &state)
                            .await
                            .map_err(IntoResponse::into_response);
                        let $ty = match extracted {
                            Ok(value) => value,
                            Err(rejection) => return Err(Refusal::from_rejection(rejection).await),
                        };
                    )*
                    f($($ty),*).await
                })
            }
        }
    };
}

impl_configure!();
impl_configure!(T1);
impl_configure!(T1, T2);
impl_configure!(T1, T2, T3);
impl_configure!(T1, T2, T3, T4);
impl_configure!(T1, T2, T3, T4, T5);
impl_configure!(T1, T2, T3, T4, T5, T6);
impl_configure!(T1, T2, T3, T4, T5, T6, T7);
impl_configure!(T1, T2, T3, T4, T5, T6, T7, T8);

/// The axum handler built by [`Negotiate::handler`]: use it as any handler,
/// e.g. `.route("/negotiate", get(handler))`.
pub struct NegotiateHandler<C, T, S> {
    negotiate: Negotiate,
    configure: C,
    _marker: PhantomData<fn() -> (T, S)>,
}

impl<C: Clone, T, S> Clone for NegotiateHandler<C, T, S> {
    fn clone(&self) -> Self {
        NegotiateHandler {
            negotiate: self.negotiate.clone(),
            configure: self.configure.clone(),
            _marker: PhantomData,
        }
    }
}

impl<C, T, S> fmt::Debug for NegotiateHandler<C, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NegotiateHandler")
            .field("negotiate", &self.negotiate)
            .finish_non_exhaustive()
    }
}

impl<C, T, S> Handler<((),), S> for NegotiateHandler<C, T, S>
where
    C: ConfigureNegotiate<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    type Future = BoxFuture<'static, Response>;

    fn call(self, request: Request, state: S) -> Self::Future {
        let (parts, _body) = request.into_parts();
        Box::pin(async move {
            match self.configure.configure(parts, state).await {
                Ok(options) => self.negotiate.answer(&options).into_response(),
                Err(refusal) => {
                    tracing::debug!(%refusal, "negotiate refused");
                    refusal.into_response()
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_with_a_base_path_is_split_like_the_sdk() {
        let cs: ConnectionString = "Endpoint=https://example.org/base;AccessKey=k;Version=1.0;"
            .parse()
            .unwrap();
        let n = Negotiate::new(cs, "chat").unwrap();
        assert_eq!(
            n.audience(),
            "https://example.org/base/clients/socketio/hubs/chat"
        );
        let a = n.answer(&NegotiateOptions::default());
        assert_eq!(a.endpoint, "https://example.org");
        assert_eq!(a.path, "/base/clients/socketio/hubs/chat");
    }

    #[test]
    fn max_expiration_caps_the_lifetime() {
        use base64::Engine as _;
        let n = Negotiate::with_key("http://h:1".parse().unwrap(), "k", "x")
            .unwrap()
            .max_expiration(Duration::from_secs(60));
        let a = n.answer(&NegotiateOptions::default().expires_in(Duration::from_secs(7200)));
        let payload = a.token.split('.').nth(1).unwrap();
        let payload: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
            60
        );
    }

    #[test]
    fn debug_hides_the_key_and_the_token() {
        let n =
            Negotiate::with_key("http://h:1".parse().unwrap(), "super-secret-key", "x").unwrap();
        let answer = n.answer(&NegotiateOptions::user("bob"));
        for text in [format!("{n:?}"), format!("{answer:?}")] {
            assert!(!text.contains("super-secret-key"), "{text}");
            assert!(!text.contains(&answer.token), "{text}");
        }
        assert!(format!("{answer:?}").contains("<redacted>"));
    }

    #[test]
    fn invalid_hub_names_are_refused() {
        for hub in ["a/b", "", &"x".repeat(129)] {
            let error = Negotiate::with_key("http://h:1".parse().unwrap(), "k", hub).unwrap_err();
            assert_eq!(error, NegotiateError::InvalidHubName(hub.to_owned()));
            assert!(error.to_string().starts_with("invalid hub name"), "{error}");
        }
    }
}

//! Login integration with [`axum-login`](axum_login): the Rust equivalent of
//! express-session + passport with the SDK's `usePassport` and
//! `restorePassport`.
//!
//! - [`use_login`] configures [`Negotiate`](crate::negotiate::Negotiate)
//!   from the logged-in user: the token's user id is
//!   [`AuthUser::id`]; a request without a logged-in user gets `401`
//!   `{"message": "unauthorized: log in first"}`.
//! - [`restore_login`] is a connect middleware that loads the user named by
//!   the token through your [`AuthnBackend::get_user`] and stores it in the
//!   socket's extensions as [`LoggedIn<User>`], which event handlers take as
//!   an argument. A socket whose user no longer exists is refused with
//!   `"unauthorized: unknown user"`.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use axum_login::{AuthUser, AuthnBackend, AuthManagerLayerBuilder, UserId};
//! use portcullis_server::{SocketIo, SocketRef, extract::Data};
//! use portcullis_server::login::{LoggedIn, restore_login, use_login};
//! use portcullis_server::negotiate::Negotiate;
//!
//! #[derive(Clone, Debug)]
//! struct User { id: u64, name: String, password_hash: Vec<u8> }
//!
//! impl AuthUser for User {
//!     type Id = u64;
//!     fn id(&self) -> u64 { self.id }
//!     fn session_auth_hash(&self) -> &[u8] { &self.password_hash }
//! }
//!
//! #[derive(Clone)]
//! struct Backend;
//!
//! impl AuthnBackend for Backend {
//!     type User = User;
//!     type Credentials = (String, String);
//!     type Error = std::convert::Infallible;
//!     async fn authenticate(&self, _: Self::Credentials) -> Result<Option<User>, Self::Error> { Ok(None) }
//!     async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, Self::Error> {
//!         Ok(Some(User { id: *id, name: format!("user {id}"), password_hash: vec![] }))
//!     }
//! }
//!
//! # fn run(cs: portcullis_auth::ConnectionString, session_layer: tower_sessions::SessionManagerLayer<tower_sessions::MemoryStore>) {
//! let io = SocketIo::new();
//! io.ns("/", |socket: SocketRef| async move {
//!     socket.on("say", |socket: SocketRef, LoggedIn(user): LoggedIn<User>, Data(text): Data<String>| async move {
//!         // The sender's name comes from the login, never from the client.
//!         socket.broadcast().emit("said", &(user.name, text)).ok();
//!     });
//! })
//! .with(restore_login(Backend));
//!
//! let negotiate = Negotiate::new(cs, "chat").expect("a valid hub name").handler(use_login::<Backend>());
//! let auth = AuthManagerLayerBuilder::new(Backend, session_layer).build();
//! let app: Router = Router::new().route("/negotiate", get(negotiate)).layer(auth);
//! # }
//! ```
//!
//! The token outlives the login session: logging out stops new negotiations
//! but a token already handed out stays valid until it expires (one hour by
//! default, where the SDK gives 600 minutes; a client may ask for less with
//! `?expirationMinutes=`, never for more; the app sets the ceiling with
//! [`Negotiate::max_expiration`](crate::negotiate::Negotiate::max_expiration)).
//! `restore_login` loads the user again on every connect, so a deleted user
//! cannot connect any more.

use std::fmt;
use std::time::Duration;

use axum_login::{AuthSession, AuthUser, AuthnBackend, UserId};
use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::extract::{EventParts, ExtractError, FromConnect, FromEvent};
use crate::negotiate::{ExpirationMinutes, NegotiateOptions, Refusal};
use crate::socket::SocketRef;

/// The lifetime of tokens minted by [`use_login`] when neither the app nor
/// the request asks for less: one hour, the default
/// [`Negotiate::max_expiration`](crate::negotiate::Negotiate::max_expiration)
/// (the SDK's `usePassport` gives 600 minutes, which a stolen token would
/// stay usable for).
pub const DEFAULT_LOGIN_EXPIRATION: Duration = Duration::from_secs(3600);

/// The message of a negotiation without a logged-in user (status `401`).
pub const NOT_LOGGED_IN: &str = "unauthorized: log in first";

/// Configures [`Negotiate::handler`](crate::negotiate::Negotiate::handler)
/// from the user logged in with axum-login (the SDK's `usePassport`): the
/// token's user id is the text of [`AuthUser::id`], its lifetime
/// [`DEFAULT_LOGIN_EXPIRATION`] (one hour), or less if the client asks with
/// `?expirationMinutes=`: a client can shorten its token, never lengthen it
/// (a longer value is clamped). Without a
/// logged-in user the answer is `401 {"message": "unauthorized: log in first"}`.
///
/// The router needs axum-login's `AuthManagerLayer`.
///
/// ```
/// # use axum_login::{AuthUser, AuthnBackend};
/// # #[derive(Clone, Debug)]
/// # struct User { id: u64, name: String }
/// # impl AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { self.id }
/// #     fn session_auth_hash(&self) -> &[u8] { &[] }
/// # }
/// # #[derive(Clone)]
/// # struct Backend;
/// # impl AuthnBackend for Backend {
/// #     type User = User;
/// #     type Credentials = ();
/// #     type Error = std::convert::Infallible;
/// #     async fn authenticate(&self, _: ()) -> Result<Option<User>, Self::Error> { Ok(None) }
/// #     async fn get_user(&self, _: &u64) -> Result<Option<User>, Self::Error> { Ok(None) }
/// # }
/// use axum::{Router, routing::get};
/// use portcullis_server::login::use_login;
/// use portcullis_server::negotiate::Negotiate;
///
/// let negotiate = Negotiate::with_key("http://127.0.0.1:8080".parse().unwrap(), "key", "chat")
///     .expect("a valid hub name")
///     .handler(use_login::<Backend>());
/// // Add axum-login's AuthManagerLayer to this router.
/// let app: Router = Router::new().route("/negotiate", get(negotiate));
/// ```
pub fn use_login<B>()
-> impl Fn(AuthSession<B>, ExpirationMinutes) -> BoxFuture<'static, Result<NegotiateOptions, Refusal>>
+ Clone
+ Send
+ Sync
+ 'static
where
    B: AuthnBackend + 'static,
{
    use_login_with::<B, _>(|_: &B::User| NegotiateOptions::default())
}

/// Like [`use_login`], with more options from the user: `options` gives the
/// roles, groups, custom claims (and optionally the expiration, default
/// [`DEFAULT_LOGIN_EXPIRATION`]) of the user's token; the user id is always
/// [`AuthUser::id`]. A client's `?expirationMinutes=` can only shorten the
/// expiration `options` gives.
///
/// ```
/// # use axum_login::{AuthUser, AuthnBackend};
/// # #[derive(Clone, Debug)]
/// # struct User { id: u64, name: String }
/// # impl AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { self.id }
/// #     fn session_auth_hash(&self) -> &[u8] { &[] }
/// # }
/// # #[derive(Clone)]
/// # struct Backend;
/// # impl AuthnBackend for Backend {
/// #     type User = User;
/// #     type Credentials = ();
/// #     type Error = std::convert::Infallible;
/// #     async fn authenticate(&self, _: ()) -> Result<Option<User>, Self::Error> { Ok(None) }
/// #     async fn get_user(&self, _: &u64) -> Result<Option<User>, Self::Error> { Ok(None) }
/// # }
/// use axum::{Router, routing::get};
/// use portcullis_server::login::use_login_with;
/// use portcullis_server::negotiate::{Negotiate, NegotiateOptions};
///
/// let negotiate = Negotiate::with_key("http://127.0.0.1:8080".parse().unwrap(), "key", "chat")
///     .expect("a valid hub name")
///     .handler(use_login_with::<Backend, _>(|user: &User| {
///         NegotiateOptions::default().claim("name", user.name.clone()).group("members")
///     }));
/// let app: Router = Router::new().route("/negotiate", get(negotiate));
/// ```
pub fn use_login_with<B, F>(
    options: F,
) -> impl Fn(AuthSession<B>, ExpirationMinutes) -> BoxFuture<'static, Result<NegotiateOptions, Refusal>>
+ Clone
+ Send
+ Sync
+ 'static
where
    B: AuthnBackend + 'static,
    F: Fn(&B::User) -> NegotiateOptions + Clone + Send + Sync + 'static,
{
    move |session: AuthSession<B>, ExpirationMinutes(asked): ExpirationMinutes| {
        let options = options.clone();
        Box::pin(async move {
            let user = session.user.ok_or(Refusal::unauthorized(NOT_LOGGED_IN))?;
            let mut negotiated = options(&user);
            negotiated.user_id = Some(user.id().to_string());
            negotiated.expiration = Some(client_may_shorten(
                negotiated.expiration.unwrap_or(DEFAULT_LOGIN_EXPIRATION),
                asked,
            ));
            Ok(negotiated)
        }) as BoxFuture<'static, _>
    }
}

/// The app's lifetime `app`, or the client's `asked` if shorter: the
/// lifetime is the app's decision, a client may only give up part of it.
fn client_may_shorten(app: Duration, asked: Option<Duration>) -> Duration {
    asked.map_or(app, |asked| asked.min(app))
}

/// Why [`restore_login`] refused a socket; its `Display` is the message the
/// client's `connect_error` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreError {
    /// The token names no user (`"unauthorized: no user in the access token"`).
    NoUser,
    /// The token's user id does not parse as the backend's id type
    /// (`"unauthorized: invalid user id"`).
    InvalidUserId,
    /// The backend has no such user (`"unauthorized: unknown user"`).
    UnknownUser,
    /// The backend failed (`"internal error: could not load the user"`);
    /// the error is logged, not sent.
    Backend,
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestoreError::NoUser => "unauthorized: no user in the access token",
            RestoreError::InvalidUserId => "unauthorized: invalid user id",
            RestoreError::UnknownUser => "unauthorized: unknown user",
            RestoreError::Backend => "internal error: could not load the user",
        })
    }
}

impl std::error::Error for RestoreError {}

/// A connect middleware (for [`Namespace::with`](crate::Namespace::with))
/// that restores the logged-in user (the SDK's `restorePassport`): it reads
/// the user id from the token's `sub` claim (never `userId`, which a
/// hand-made token could set to someone else), loads the
/// user with `backend.get_user`, and stores it as [`LoggedIn<User>`] in the
/// socket's extensions. Sockets whose user cannot be loaded are refused
/// with a [`RestoreError`] message.
///
/// ```
/// # use axum_login::{AuthUser, AuthnBackend};
/// # #[derive(Clone, Debug)]
/// # struct User { id: u64, name: String }
/// # impl AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { self.id }
/// #     fn session_auth_hash(&self) -> &[u8] { &[] }
/// # }
/// # #[derive(Clone)]
/// # struct Backend;
/// # impl AuthnBackend for Backend {
/// #     type User = User;
/// #     type Credentials = ();
/// #     type Error = std::convert::Infallible;
/// #     async fn authenticate(&self, _: ()) -> Result<Option<User>, Self::Error> { Ok(None) }
/// #     async fn get_user(&self, _: &u64) -> Result<Option<User>, Self::Error> { Ok(None) }
/// # }
/// use portcullis_server::login::{LoggedIn, restore_login};
/// use portcullis_server::{SocketIo, SocketRef};
///
/// let io = SocketIo::new();
/// io.ns("/", |socket: SocketRef| async move {
///     let user = LoggedIn::<User>::of(&socket).expect("restored by the middleware");
///     socket.emit("hello", &user.name).ok();
/// })
/// .with(restore_login(Backend));
/// ```
pub fn restore_login<B>(
    backend: B,
) -> impl Fn(SocketRef) -> BoxFuture<'static, Result<(), RestoreError>> + Send + Sync + 'static
where
    B: AuthnBackend + 'static,
{
    move |socket: SocketRef| {
        let backend = backend.clone();
        Box::pin(async move {
            // `sub` only: it is the gateway's notion of the user (what
            // `SocketRef::user_id` and per-user sends use), so the restored
            // user can never differ from the one the gateway routes by.
            let text = socket.user_id().ok_or(RestoreError::NoUser)?;
            let id = parse_user_id::<B>(text).ok_or(RestoreError::InvalidUserId)?;
            let user = backend.get_user(&id).await.map_err(|e| {
                tracing::error!(error = %e, "restore_login: the backend could not load a user");
                RestoreError::Backend
            })?;
            let user = user.ok_or(RestoreError::UnknownUser)?;
            socket.extensions().insert(LoggedIn(user));
            Ok(())
        }) as BoxFuture<'static, _>
    }
}

/// A user id from its text in the claims: as a JSON string (string ids),
/// else as JSON text (numbers and other ids whose `Display` is their JSON).
fn parse_user_id<B: AuthnBackend>(text: &str) -> Option<UserId<B>> {
    serde_json::from_value(Value::String(text.to_owned()))
        .ok()
        .or_else(|| serde_json::from_str(text).ok())
}

/// The user restored by [`restore_login`]: an event handler argument, also
/// readable with [`LoggedIn::of`] (in the connect handler, say) or
/// `socket.extensions().get::<LoggedIn<User>>()`.
///
/// If the socket has no restored user (the namespace lacks the middleware)
/// a handler taking it is not called, and the failure is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn<U>(pub U);

impl<U: Clone + Send + Sync + 'static> LoggedIn<U> {
    /// The user restored on `socket`, if any.
    pub fn of(socket: &SocketRef) -> Option<U> {
        socket.extensions().get::<LoggedIn<U>>().map(|l| l.0)
    }
}

impl<U: Clone + Send + Sync + 'static> FromEvent for LoggedIn<U> {
    fn from_event(parts: &EventParts) -> Result<Self, ExtractError> {
        parts
            .socket()
            .extensions()
            .get::<LoggedIn<U>>()
            .ok_or(ExtractError::MissingExtension(std::any::type_name::<
                LoggedIn<U>,
            >()))
    }
}

/// In a connect handler or a later middleware: the user restored by
/// [`restore_login`]; the socket is refused if there is none.
impl<U: Clone + Send + Sync + 'static> FromConnect for LoggedIn<U> {
    fn from_connect(socket: &SocketRef) -> Result<Self, ExtractError> {
        socket
            .extensions()
            .get::<LoggedIn<U>>()
            .ok_or(ExtractError::MissingExtension(std::any::type_name::<
                LoggedIn<U>,
            >()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_can_shorten_but_not_lengthen_the_app_expiration() {
        let app = Duration::from_secs(600);
        assert_eq!(client_may_shorten(app, None), app);
        assert_eq!(
            client_may_shorten(app, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(
            client_may_shorten(app, Some(Duration::from_secs(6000))),
            app
        );
    }

    #[test]
    fn messages() {
        assert_eq!(
            RestoreError::UnknownUser.to_string(),
            "unauthorized: unknown user"
        );
    }
}

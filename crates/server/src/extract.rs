//! Extractors: what the arguments of event handlers, connect handlers and
//! connect middlewares are built from.
//!
//! Connect handlers ([`SocketIo::ns`](crate::SocketIo::ns)) and middlewares
//! ([`Namespace::with`](crate::Namespace::with)) take [`FromConnect`]
//! arguments: [`SocketRef`], [`State<T>`], [`Data<T>`] and [`TryData<T>`]
//! (the CONNECT `auth` payload), [`Extension<T>`].
//!
//! An event handler is an async closure (or function) whose arguments each
//! implement [`FromEvent`], in any order, up to six of them:
//!
//! ```no_run
//! use portcullis_server::{SocketIo, SocketRef, extract::{AckSender, Bin, Data, TryData}};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Move { x: i32, y: i32 }
//!
//! let io = SocketIo::new();
//! io.ns("/game", |socket: SocketRef| async move {
//!     // One argument deserialized into a struct.
//!     socket.on("move", |socket: SocketRef, Data(m): Data<Move>| async move {
//!         socket.broadcast().emit("moved", &(socket.id().as_str(), m.x, m.y)).ok();
//!     });
//!     // Several arguments as a tuple; an optional acknowledgement.
//!     socket.on("rename", |Data((old, new)): Data<(String, String)>, ack: Option<AckSender>| async move {
//!         if let Some(ack) = ack { ack.send(&format!("{old} -> {new}")).ok(); }
//!     });
//!     // Binary attachments, and data that may not parse.
//!     socket.on("upload", |TryData(name): TryData<String>, Bin(files): Bin| async move {
//!         println!("{name:?}: {} file(s)", files.len());
//!     });
//! });
//! ```

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use crate::ack::AckSender;
use crate::socket::SocketRef;

/// Everything an event carries; extractors take what they need from it.
#[derive(Debug)]
pub struct EventParts {
    pub(crate) socket: SocketRef,
    pub(crate) event: String,
    pub(crate) data: Value,
    pub(crate) binary: Vec<Bytes>,
    pub(crate) ack_id: Option<u64>,
}

impl EventParts {
    /// The socket that received the event.
    pub fn socket(&self) -> &SocketRef {
        &self.socket
    }

    /// The event name.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The arguments: one as itself, several as an array, none as `null`;
    /// binary placeholders removed.
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// The binary attachments, in order.
    pub fn binary(&self) -> &[Bytes] {
        &self.binary
    }

    /// Whether the client asked for an acknowledgement.
    pub fn wants_ack(&self) -> bool {
        self.ack_id.is_some()
    }
}

/// Why an extractor could not be built; the handler is then not called.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The data did not deserialize into the requested type.
    #[error("the event data does not deserialize: {0}")]
    Data(#[from] serde_json::Error),
    /// An [`Extension`] of the requested type is not on the socket.
    #[error("the socket has no extension of type {0}")]
    MissingExtension(&'static str),
    /// The `auth` payload of the client's CONNECT did not deserialize into
    /// the type requested by a connect handler or middleware's [`Data`].
    #[error("the CONNECT auth payload does not deserialize: {0}")]
    Auth(#[source] serde_json::Error),
    /// No [`State`] of the requested type was given to the builder
    /// ([`SocketIoBuilder::with_state`](crate::SocketIoBuilder::with_state)).
    #[error("the server has no state of type {0}")]
    MissingState(&'static str),
}

impl ExtractError {
    /// The CONNECT_ERROR message of a socket refused for this error: the
    /// client learns why its `auth` does not fit, but not the server's
    /// internals (type names of missing state or extensions), which are
    /// logged instead.
    pub(crate) fn refusal_message(&self) -> String {
        match self {
            ExtractError::Auth(_) => self.to_string(),
            _ => {
                tracing::error!(error = %self, "a connect handler or middleware cannot be called");
                "server error".to_owned()
            }
        }
    }
}

/// A handler argument built from an event.
pub trait FromEvent: Sized {
    /// Builds the argument, or says why it cannot.
    fn from_event(parts: &EventParts) -> Result<Self, ExtractError>;
}

impl FromEvent for SocketRef {
    fn from_event(parts: &EventParts) -> Result<Self, ExtractError> {
        Ok(parts.socket.clone())
    }
}

/// The event's arguments deserialized into `T`: one argument as itself,
/// several as a tuple (`Data<(String, u32)>`), none as `()` or `Option`.
/// Binary attachments are left out (see [`Bin`]). If the data does not
/// deserialize, the handler is not called; use [`TryData`] to handle that.
///
/// In a connect handler or middleware it is the `auth` payload of the
/// client's CONNECT instead (see [`FromConnect`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Data<T>(pub T);

impl<T: DeserializeOwned> FromEvent for Data<T> {
    fn from_event(parts: &EventParts) -> Result<Self, ExtractError> {
        Ok(Data(T::deserialize(&parts.data)?))
    }
}

/// Like [`Data`], but the handler is called even when the data does not
/// deserialize, with the error.
#[derive(Debug)]
pub struct TryData<T>(pub Result<T, serde_json::Error>);

impl<T: DeserializeOwned> FromEvent for TryData<T> {
    fn from_event(parts: &EventParts) -> Result<Self, ExtractError> {
        Ok(TryData(T::deserialize(&parts.data)))
    }
}

/// The event's binary attachments (`Buffer`, `ArrayBuffer`, typed arrays
/// sent by the client), in order. Empty for a text event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bin(pub Vec<Bytes>);

impl FromEvent for Bin {
    fn from_event(parts: &EventParts) -> Result<Self, ExtractError> {
        Ok(Bin(parts.binary.clone()))
    }
}

impl FromEvent for AckSender {
    fn from_event(parts: &EventParts) -> Result<Self, ExtractError> {
        Ok(AckSender::new(parts.socket.clone(), parts.ack_id))
    }
}

impl FromEvent for Option<AckSender> {
    fn from_event(parts: &EventParts) -> Result<Self, ExtractError> {
        Ok(parts
            .ack_id
            .map(|id| AckSender::new(parts.socket.clone(), Some(id))))
    }
}

/// A clone of the socket's extension of type `T` (see
/// [`SocketRef::extensions`]); the handler is not called if there is none.
#[derive(Debug, Clone)]
pub struct Extension<T>(pub T);

impl<T: Clone + Send + Sync + 'static> FromEvent for Extension<T> {
    fn from_event(parts: &EventParts) -> Result<Self, ExtractError> {
        parts
            .socket
            .extensions()
            .get::<T>()
            .map(Extension)
            .ok_or(ExtractError::MissingExtension(std::any::type_name::<T>()))
    }
}

/// The event's name (useful when one function handles several events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event(pub String);

impl FromEvent for Event {
    fn from_event(parts: &EventParts) -> Result<Self, ExtractError> {
        Ok(Event(parts.event.clone()))
    }
}

/// A clone of the application state of type `T` given to
/// [`SocketIoBuilder::with_state`](crate::SocketIoBuilder::with_state): in
/// event handlers, connect handlers and middlewares alike. If the builder
/// got no state of that type, an event handler is not called and a socket
/// is refused.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use portcullis_server::{SocketIo, SocketRef, extract::State};
///
/// #[derive(Clone, Default)]
/// struct Visits(Arc<AtomicUsize>);
///
/// let io = SocketIo::builder().with_state(Visits::default()).build();
/// io.ns("/", |socket: SocketRef, State(visits): State<Visits>| async move {
///     let n = visits.0.fetch_add(1, Ordering::Relaxed) + 1;
///     socket.emit("visits", &n).ok();
///     socket.on("visits", |socket: SocketRef, State(visits): State<Visits>| async move {
///         socket.emit("visits", &visits.0.load(Ordering::Relaxed)).ok();
///     });
/// });
/// ```
#[derive(Debug, Clone)]
pub struct State<T>(pub T);

impl<T: Clone + Send + Sync + 'static> State<T> {
    fn of(socket: &SocketRef) -> Result<Self, ExtractError> {
        socket
            .0
            .io
            .state
            .get::<T>()
            .map(State)
            .ok_or(ExtractError::MissingState(std::any::type_name::<T>()))
    }
}

impl<T: Clone + Send + Sync + 'static> FromEvent for State<T> {
    fn from_event(parts: &EventParts) -> Result<Self, ExtractError> {
        State::of(&parts.socket)
    }
}

/// An event handler: an async function of up to six [`FromEvent`]
/// arguments. Implemented for closures; `T` is the tuple of argument types.
pub trait EventHandler<T>: Send + Sync + 'static {
    /// Builds the arguments and runs the handler.
    fn call(&self, parts: EventParts);
}

macro_rules! impl_handler {
    ($($arg:ident),*) => {
        impl<F, Fut, $($arg,)*> EventHandler<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
            $($arg: FromEvent + Send + 'static,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(&self, parts: EventParts) {
                $(
                    let $arg = match $arg::from_event(&parts) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::debug!(
                                socket = %parts.socket.id(),
                                event = %parts.event,
                                error = %e,
                                "event handler not called"
                            );
                            return;
                        }
                    };
                )*
                crate::runtime::run_handler(self($($arg),*));
            }
        }
    };
}

impl_handler!();
impl_handler!(A1);
impl_handler!(A1, A2);
impl_handler!(A1, A2, A3);
impl_handler!(A1, A2, A3, A4);
impl_handler!(A1, A2, A3, A4, A5);
impl_handler!(A1, A2, A3, A4, A5, A6);

/// A handler with its argument types erased.
pub(crate) trait ErasedEventHandler: Send + Sync {
    fn call(&self, parts: EventParts);
}

struct Erased<H, T>(H, PhantomData<fn() -> T>);

impl<H, T> ErasedEventHandler for Erased<H, T>
where
    H: EventHandler<T>,
    T: 'static,
{
    fn call(&self, parts: EventParts) {
        self.0.call(parts);
    }
}

pub(crate) fn wrap<H, T>(handler: H) -> Arc<dyn ErasedEventHandler>
where
    H: EventHandler<T>,
    T: 'static,
{
    Arc::new(Erased(handler, PhantomData))
}

/// A connect handler or middleware argument, built from the socket being
/// connected (its claims, handshake and the `auth` payload of its CONNECT)
/// and the server's state.
///
/// Implemented for [`SocketRef`], [`State<T>`], [`Data<T>`] and
/// [`TryData<T>`] (the CONNECT `auth` payload: what socket.io-client sends
/// as `io(url, { auth })`, `null` when it sends none, so use
/// `Data<Option<T>>` for clients that may not), and [`Extension<T>`] (what
/// an earlier middleware stored).
pub trait FromConnect: Sized {
    /// Builds the argument, or says why it cannot.
    fn from_connect(socket: &SocketRef) -> Result<Self, ExtractError>;
}

impl FromConnect for SocketRef {
    fn from_connect(socket: &SocketRef) -> Result<Self, ExtractError> {
        Ok(socket.clone())
    }
}

impl<T: Clone + Send + Sync + 'static> FromConnect for State<T> {
    fn from_connect(socket: &SocketRef) -> Result<Self, ExtractError> {
        State::of(socket)
    }
}

/// At connect time: the CONNECT packet's `auth` payload.
impl<T: DeserializeOwned> FromConnect for Data<T> {
    fn from_connect(socket: &SocketRef) -> Result<Self, ExtractError> {
        T::deserialize(socket.handshake().auth())
            .map(Data)
            .map_err(ExtractError::Auth)
    }
}

/// At connect time: the CONNECT packet's `auth` payload, or why it does not
/// deserialize.
impl<T: DeserializeOwned> FromConnect for TryData<T> {
    fn from_connect(socket: &SocketRef) -> Result<Self, ExtractError> {
        Ok(TryData(T::deserialize(socket.handshake().auth())))
    }
}

impl<T: Clone + Send + Sync + 'static> FromConnect for Extension<T> {
    fn from_connect(socket: &SocketRef) -> Result<Self, ExtractError> {
        socket
            .extensions()
            .get::<T>()
            .map(Extension)
            .ok_or(ExtractError::MissingExtension(std::any::type_name::<T>()))
    }
}

/// The call of a connect handler with its arguments built, made once the
/// socket is accepted.
pub(crate) type PreparedConnect = Box<dyn FnOnce() + Send>;

/// A connect handler (for [`SocketIo::ns`](crate::SocketIo::ns)): an async
/// function of up to six [`FromConnect`] arguments. Implemented for
/// closures; `T` is the tuple of argument types.
///
/// The arguments are built after the middlewares ran and before the socket
/// is accepted: if one cannot be built, the socket is refused as by a
/// middleware (see [`ConnectMiddleware`]) and the handler is not called.
pub trait ConnectHandler<T>: Send + Sync + 'static {
    /// Builds the arguments; the returned call runs the handler.
    #[doc(hidden)]
    fn prepare(self: Arc<Self>, socket: &SocketRef) -> Result<PreparedConnect, ExtractError>;
}

/// A connect middleware (for [`Namespace::with`](crate::Namespace::with)):
/// an async function of up to six [`FromConnect`] arguments returning
/// `Result<(), E>` with `E: Display`. Implemented for closures; `T` is the
/// tuple of the error and argument types.
///
/// If an argument cannot be built, the socket is refused: the CONNECT_ERROR
/// message says why the `auth` payload does not deserialize, or is
/// `"server error"` for state or an extension that is missing (a bug of the
/// application, logged).
pub trait ConnectMiddleware<T>: Send + Sync + 'static {
    /// Builds the arguments and runs the middleware; the refusal message.
    #[doc(hidden)]
    fn call(&self, socket: &SocketRef) -> BoxFuture<'static, Result<(), String>>;
}

macro_rules! impl_connect {
    ($($arg:ident),*) => {
        impl<F, Fut, $($arg,)*> ConnectHandler<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
            $($arg: FromConnect + Send + 'static,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn prepare(
                self: Arc<Self>,
                socket: &SocketRef,
            ) -> Result<PreparedConnect, ExtractError> {
                $(let $arg = $arg::from_connect(socket)?;)*
                Ok(Box::new(move || crate::runtime::run_handler(self($($arg),*))))
            }
        }

        impl<F, Fut, E, $($arg,)*> ConnectMiddleware<(E, $($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<(), E>> + Send + 'static,
            E: fmt::Display + 'static,
            $($arg: FromConnect + Send + 'static,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(&self, socket: &SocketRef) -> BoxFuture<'static, Result<(), String>> {
                $(
                    let $arg = match $arg::from_connect(socket) {
                        Ok(v) => v,
                        Err(e) => {
                            let message = e.refusal_message();
                            return Box::pin(std::future::ready(Err(message)));
                        }
                    };
                )*
                let future = self($($arg),*);
                Box::pin(async move { future.await.map_err(|e| e.to_string()) })
            }
        }
    };
}

impl_connect!();
impl_connect!(A1);
impl_connect!(A1, A2);
impl_connect!(A1, A2, A3);
impl_connect!(A1, A2, A3, A4);
impl_connect!(A1, A2, A3, A4, A5);
impl_connect!(A1, A2, A3, A4, A5, A6);

/// A connect handler with its argument types erased.
pub(crate) trait ErasedConnectHandler: Send + Sync {
    fn prepare(&self, socket: &SocketRef) -> Result<PreparedConnect, ExtractError>;
}

struct ErasedConnect<H, T>(Arc<H>, PhantomData<fn() -> T>);

impl<H, T> ErasedConnectHandler for ErasedConnect<H, T>
where
    H: ConnectHandler<T>,
    T: 'static,
{
    fn prepare(&self, socket: &SocketRef) -> Result<PreparedConnect, ExtractError> {
        self.0.clone().prepare(socket)
    }
}

pub(crate) fn wrap_connect<H, T>(handler: H) -> Arc<dyn ErasedConnectHandler>
where
    H: ConnectHandler<T>,
    T: 'static,
{
    Arc::new(ErasedConnect(Arc::new(handler), PhantomData))
}

/// A middleware with its argument types erased.
pub(crate) trait ErasedMiddleware: Send + Sync {
    fn call(&self, socket: &SocketRef) -> BoxFuture<'static, Result<(), String>>;
}

struct ErasedMw<M, T>(M, PhantomData<fn() -> T>);

impl<M, T> ErasedMiddleware for ErasedMw<M, T>
where
    M: ConnectMiddleware<T>,
    T: 'static,
{
    fn call(&self, socket: &SocketRef) -> BoxFuture<'static, Result<(), String>> {
        self.0.call(socket)
    }
}

pub(crate) fn wrap_middleware<M, T>(middleware: M) -> Arc<dyn ErasedMiddleware>
where
    M: ConnectMiddleware<T>,
    T: 'static,
{
    Arc::new(ErasedMw(middleware, PhantomData))
}

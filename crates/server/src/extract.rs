//! Extractors: what an event handler's arguments are built from.
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

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
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
                crate::backend::run_handler(self($($arg),*));
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

//! Socket.IO servers in Rust on a Portcullis gateway.
//!
//! The gateway holds the clients' connections (Engine.IO over polling and
//! WebSocket) and checks their access tokens at the handshake; this crate
//! runs the Socket.IO protocol on top and gives you the API socket.io and
//! socketioxide users know: namespaces, connect middlewares, typed events
//! with serde, acknowledgements both ways, binary attachments, rooms and
//! broadcasts, and the verified claims of every connection.
//!
//! Owns: the Socket.IO server API for Rust applications, in-process and
//! over the tunnel. Depends on the hub contract (`portcullis-hub`), the
//! tunnel's wire formats and auth; on the gateway only with the `embedded`
//! feature (default), so a tunnel-only build has none of its transports.
//!
//! # Attaching
//!
//! **Embedded**: the gateway and the application run in one process.
//! [`SocketIo::attach`] hands the server a hub of an in-process
//! [`Gateway`](portcullis_gateway::Gateway); nothing is serialized between
//! them. In an axum application, merge
//! [`Gateway::router`](portcullis_gateway::Gateway::router) into the app's
//! router: the gateway's routes live under fixed paths and have no
//! fallback, so the app keeps its own, and serve both with
//! [`Gateway::serve_app`](portcullis_gateway::Gateway::serve_app), which
//! binds the configured address once and keeps the gateway's connection
//! limits (see `examples/embedded.rs`). The crate re-exports what embedded
//! mode needs ([`Gateway`], [`GatewayConfig`], [`AccessKeys`]); without the
//! default `embedded` feature it depends on no part of the gateway.
//!
//! **Over the tunnel**: [`SocketIo::connect_tunnel`] reaches a gateway
//! elsewhere with its connection string, speaking the protocol of the
//! official Node SDK, so Node and Rust applications (and several Rust
//! processes) can share a hub. Switching is one line:
//! `io.attach(&gateway, "chat")?` or
//! `let _tunnel = io.connect_tunnel(&connection_string, "chat").await?;`.
//!
//! **Heartbeats.** With this crate the gateway keeps the clients alive
//! itself (it sends the Engine.IO pings and consumes the pongs), so an idle
//! client costs the application nothing: no task, no timer, no traffic. The
//! official Node SDK, by contrast, runs the heartbeat in the application
//! (its engine.io server pings every client through the service).
//!
//! **Handlers take extractors.** Connect handlers, middlewares and event
//! handlers are async closures whose arguments are built from the socket,
//! the event or the CONNECT (see [`extract`]): [`SocketRef`],
//! [`Data<T>`](extract::Data) (an event's arguments, or the client's `auth`
//! at connect time), [`State<T>`](extract::State) (given to
//! [`SocketIoBuilder::with_state`]), [`Extension<T>`](extract::Extension),
//! acknowledgement senders and binary attachments.
//!
//! **Rooms are gateway groups**, named exactly as the official SDK names
//! them (`0~<base64url(namespace)>~<base64url(room)>`), and each connected
//! socket is in its namespace group and its socket-id room. A broadcast is
//! one group send with a filter; the gateway does the fan-out.
//!
//! # Example
//!
//! ```no_run
//! use portcullis_server::{AccessKeys, Gateway, GatewayConfig, SocketIo, SocketRef};
//! use portcullis_server::extract::{AckSender, Data};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, Serialize)]
//! struct ChatMessage { room: String, text: String }
//!
//! # async fn run() -> std::io::Result<()> {
//! let io = SocketIo::new();
//! io.ns("/chat", |socket: SocketRef| async move {
//!     // The verified user of the access token.
//!     let user = socket.user_id().unwrap_or("anonymous").to_owned();
//!     socket.on("join", |socket: SocketRef, Data(room): Data<String>| async move {
//!         socket.join(room);
//!     });
//!     socket.on("message", move |socket: SocketRef, Data(msg): Data<ChatMessage>, ack: Option<AckSender>| {
//!         let user = user.clone();
//!         async move {
//!             socket.to(msg.room.clone()).emit("message", &(user, &msg)).ok();
//!             if let Some(ack) = ack {
//!                 ack.send(&"sent").ok();
//!             }
//!         }
//!     });
//! })
//! .with(|socket: SocketRef| async move {
//!     // Refused sockets get a CONNECT_ERROR with this message.
//!     socket.user_id().map(|_| ()).ok_or("log in first")
//! });
//!
//! let addr = "127.0.0.1:8080".parse().unwrap();
//! let gateway = Gateway::new(GatewayConfig::new(addr, AccessKeys::generate()));
//! io.attach(&gateway, "chat").unwrap();
//! gateway.serve(tokio::net::TcpListener::bind(addr).await?, std::future::pending()).await
//! # }
//! ```
//!
//! In the browser, after fetching a token from your `/negotiate`:
//!
//! ```js
//! const socket = io(endpoint + "/chat", {
//!   path: "/clients/socketio/hubs/chat",
//!   query: { access_token: token },
//! });
//! socket.emit("join", "general");
//! socket.emit("message", { room: "general", text: "hi" }, (status) => console.log(status));
//! ```
//!
//! # Data conventions
//!
//! - Emitted data: only a tuple is spread into several arguments
//!   (`&("a", 1)`), `&()` sends none, anything else is one argument;
//!   arrays, slices and `Vec`s are one JSON array (`&["a", "b"]` and
//!   `&vec!["a", "b"]` alike).
//! - Received data ([`Data<T>`](extract::Data), acknowledgements): one
//!   argument deserializes as itself, several as a tuple, none as `()`.
//! - Binary: attachments are given separately ([`Bin`](extract::Bin),
//!   [`WithBinary`]) and sent with `.bin(...)`; top-level binary arguments
//!   are removed from the data.

#![warn(missing_docs)]

mod ack;
mod backend;
mod conn;
mod conn_id;
mod connect_timeout;
#[cfg(feature = "embedded")]
mod embedded;
mod errors;
mod extensions;
pub mod extract;
mod handlers;
mod io;
#[cfg(feature = "login")]
pub mod login;
pub mod negotiate;
mod ns;
mod operators;
mod packet;
mod request;
mod runtime;
mod session;
mod short_id;
mod socket;
mod sync;
mod tunnel;

pub use ack::{AckFuture, AckStream, FromAck, WithBinary};
pub use errors::{AckError, AttachError, RevokeError, SendError};
pub use extensions::Extensions;
pub use io::{Config, SocketIo, SocketIoBuilder};
pub use ns::Namespace;
pub use operators::{BroadcastOperator, Emitter, IntoRooms};
pub use portcullis_auth::{AccessKeys, Claims, ConnectionString};
#[cfg(feature = "embedded")]
pub use portcullis_gateway::{Gateway, GatewayConfig};
/// The rustls version [`TunnelOptions::tls_config`] takes.
pub use rustls;
pub use socket::{DisconnectReason, Handshake, Sid, SocketRef};
pub use tunnel::{TunnelError, TunnelHandle, TunnelOptions, TunnelStats};

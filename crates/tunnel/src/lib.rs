//! The Azure Web PubSub *server tunnel* protocol, as spoken between the
//! `@azure/web-pubsub-socket.io` SDK and the service, with no I/O.
//!
//! The crate is shared by the service side (the gateway) and the SDK side (a
//! Rust Socket.IO server that connects to the gateway through the tunnel):
//!
//! - [`frame`]: one tunnel message per WebSocket binary frame, a little-endian
//!   `u32` length followed by a MessagePack `[type, json, content]` array.
//! - [`message`]: the typed messages ([`TunnelMessage`], [`HttpRequest`],
//!   [`HttpResponse`]) and their PascalCase JSON.
//! - [`cloud_events`]: the CloudEvents the service sends the SDK (`connect`,
//!   `connected`, `disconnected`, user `message`) and the parse of the SDK's
//!   answer to `connect`.
//! - [`rest`]: the REST calls the SDK tunnels to the service, routed and built.
//! - [`invoke`]: the NDJSON lines streamed back for `:invoke`.
//! - [`pending`]: request/response correlation by `AckId`, for both ends.
//! - [`group_name`]: Socket.IO room ↔ Web PubSub group naming.
//!
//! Decoders never panic on input: malformed data is an error value.
//!
//! Owns: the tunnel's wire formats and its REST routes, for both ends. Must
//! not depend on the hub, the gateway or the server crate, nor on a runtime
//! or any I/O (`pending` uses only channels).
//!
//! ```
//! use portcullis_tunnel::{TunnelMessage, frame};
//!
//! let keepalive = TunnelMessage::ServiceStatus { message: "keepalive".into() };
//! let bytes = frame::encode(&keepalive).unwrap();
//! assert_eq!(frame::decode(&bytes).unwrap(), keepalive);
//! ```

#![warn(missing_docs)]

pub mod cloud_events;
pub mod frame;
pub mod group_name;
pub mod invoke;
pub mod message;
pub mod pending;
pub mod rest;

pub use frame::{FrameError, decode, decode_with_limit, encode, encode_with_limit};
pub use message::{Headers, HttpRequest, HttpResponse, TunnelMessage};

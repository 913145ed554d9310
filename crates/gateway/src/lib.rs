//! The Portcullis gateway.
//!
//! It holds Socket.IO client connections (Engine.IO v4 over long-polling and
//! WebSocket, with upgrade) on behalf of application servers, and refuses
//! unauthenticated clients at the handshake, before any session exists.
//!
//! Layers, outermost first:
//! - [`server`]: configuration, routes, serving ([`Gateway`]).
//! - [`listener`]: accepting connections, with the limits on slow clients.
//! - `gate`: the token check of every handshake.
//! - [`engine`]: the Engine.IO transports of the client endpoint.
//! - [`hub`]: connections, groups and the [`hub::HubHandler`] interface to
//!   whoever handles a hub's clients.

mod admission;
pub mod echo;
pub mod engine;
mod gate;
pub mod hub;
pub mod listener;
pub mod server;
mod tunnel;

pub use admission::AdmissionLimits;
pub use server::{Gateway, GatewayConfig};

//! The hub contract of Portcullis.
//!
//! A *hub* is the set of client connections of one application. This crate
//! is the seam between whoever holds those connections (the gateway's
//! transports and its local hub; next, a cluster of gateways) and whoever
//! serves them (the tunnel to application servers, the Rust server crate,
//! the echo application):
//!
//! - [`HubHandler`]: what the hub tells a handler — a client asks to connect
//!   ([`ConnectRequest`], answered with [`Accept`] or [`Refusal`]), sends a
//!   packet, leaves ([`DisconnectReason`]).
//! - [`Hub`]: what a handler asks of the hub, as [`Operation`] values (send,
//!   join, leave, close, exists, groups of), each naming its connections
//!   with a [`Selection`] (a group scope and a [`Filter`]; [`odata`] parses
//!   and prints the REST API's filters). Operations are data and serialise
//!   with serde, so a node can send one to another.
//! - [`Payload`] and [`Frame`]: what is delivered, encoded once.
//!
//! It owns no I/O, no runtime and no transport: it must not depend on the
//! gateway, on tokio or on any network crate, so application servers and
//! the cluster layer can use it alone.

#![warn(missing_docs)]

mod filter;
mod handler;
mod id;
pub mod odata;
mod operation;
mod payload;
mod reason;

pub use filter::{Candidates, Filter, FilterSubject};
pub use handler::{
    Accept, BoxFuture, ConnectRequest, Heartbeat, Hub, HubHandler, Refusal, TransportKind,
};
pub use id::{ConnectionId, is_valid_hub_name};
pub use operation::{Applied, Groups, Operation, Outcome, Revocation, Selection};
pub use payload::{Frame, Payload};
pub use reason::DisconnectReason;

//! The Portcullis gateway.
//!
//! It holds Socket.IO client connections (Engine.IO v4 over long-polling and
//! WebSocket, with upgrade) on behalf of application servers, and refuses
//! unauthenticated clients at the handshake, before any session exists.
//!
//! Layers, outermost first:
//! - [`server`]: configuration, routes, serving ([`Gateway`]).
//! - [`listener`]: accepting connections, with the limits on slow clients.
//! - [`tls`]: HTTPS/WSS on the listener, and certificate reloads.
//! - `gate`: the token check of every handshake.
//! - [`engine`]: the Engine.IO transports of the client endpoint; in a
//!   cluster, requests for another node's sessions are forwarded (polling)
//!   or relayed (WebSocket) to that node first.
//! - [`hub`]: the local hub ([`hub::LocalHub`]): connections, groups,
//!   heartbeats, and the contract's operations applied to them; the
//!   contract itself ([`hub::HubHandler`], [`hub::Operation`]) is the
//!   `portcullis-hub` crate, re-exported there.
//! - `tunnel`: the endpoint application servers attach to, and the REST API.
//! - [`drain`]: leaving without dropping users (not ready, clients closed in
//!   batches so they reconnect elsewhere, tunnels asked to reconnect).
//! - [`metrics`] (`/metrics`) and [`admin`] (`/admin`): watching it run.
//!
//! Owns: serving clients and application servers. Must not depend on the
//! server crate or on the binary's concerns (clap, TOML, tracing-subscriber:
//! `portcullis-cli`). `docs/architecture.md` describes the whole.

pub mod admin;
mod admission;
pub mod drain;
pub mod echo;
pub mod engine;
mod gate;
pub mod hub;
mod linger;
pub mod listener;
pub mod metrics;
mod peer;
mod secret;
pub mod server;
pub mod tls;
mod tokens;
mod tunnel;

pub use admin::AdminConfig;
pub use admission::AdmissionLimits;
pub use metrics::MetricsConfig;
/// The cluster's settings, for [`GatewayConfig::cluster`] (embedded
/// applications on several processes need no other dependency).
pub use portcullis_cluster::{ClusterConfig, NodeId, NodeInfo, RedisConfig};
pub use secret::Secret;
pub use server::{Gateway, GatewayConfig};
pub use tls::TlsConfig;

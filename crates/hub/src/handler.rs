//! The two sides of the contract: [`Hub`], what a handler can ask of the
//! hub that holds its clients, and [`HubHandler`], what the hub tells the
//! handler (a client asks to connect, sends a packet, leaves).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use portcullis_auth::Claims;
use portcullis_protocol::engine::Packet;

use crate::{Applied, ConnectionId, DisconnectReason, Operation};

/// A boxed future, as returned by [`HubHandler::connect`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The transport a client used for its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP long-polling (`transport=polling`).
    Polling,
    /// WebSocket (`transport=websocket`).
    WebSocket,
}

impl TransportKind {
    /// The name used in the `transport` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// A client that passed the gate and asks to open a session.
///
/// Its `Debug` shows neither the `access_token` query value nor any header
/// value (`Authorization`, cookies): only that they were there.
#[derive(Clone)]
pub struct ConnectRequest {
    /// The id the connection will have if accepted (also the Engine.IO `sid`).
    pub connection_id: ConnectionId,
    /// The hub, as the client spelled it in the URL.
    pub hub: String,
    /// The verified claims of the client's token (empty when anonymous).
    pub claims: Claims,
    /// The handshake request's query parameters, in order, repeated keys kept.
    pub query: Vec<(String, String)>,
    /// The handshake request's headers.
    pub headers: HeaderMap,
    /// The transport of the handshake.
    pub transport: TransportKind,
}

impl std::fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let query: Vec<(&str, &str)> = self
            .query
            .iter()
            .map(|(name, value)| match name.as_str() {
                "access_token" => (name.as_str(), "<redacted>"),
                _ => (name.as_str(), value.as_str()),
            })
            .collect();
        let headers: Vec<&str> = self.headers.keys().map(|name| name.as_str()).collect();
        f.debug_struct("ConnectRequest")
            .field("connection_id", &self.connection_id)
            .field("hub", &self.hub)
            .field("claims", &self.claims)
            .field("query", &query)
            .field("header_names", &headers)
            .field("transport", &self.transport)
            .finish()
    }
}

impl ConnectRequest {
    /// The connection's user id: the token's `sub` claim.
    pub fn user_id(&self) -> Option<&str> {
        self.claims.user_id()
    }
}

/// Who keeps the client alive with Engine.IO pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The gateway pings the client and consumes its pongs; the handler never
    /// sees heartbeats. Idle connections then cost the handler nothing.
    Gateway,
    /// The handler sends pings (`2`) as payloads and receives the client's
    /// pongs (`3`), as the official Node SDK does. The gateway only closes
    /// connections that stay silent past `ping_interval + ping_timeout`.
    Application,
}

/// The handler's acceptance of a connection: the session parameters sent to
/// the client in the Engine.IO open packet.
#[derive(Debug, Clone)]
pub struct Accept {
    /// Interval between pings.
    pub ping_interval: Duration,
    /// How long to wait for a pong.
    pub ping_timeout: Duration,
    /// Largest payload accepted from the client, in bytes.
    pub max_payload: u64,
    /// Who sends the pings.
    pub heartbeat: Heartbeat,
}

/// The handler's refusal of a connection, passed on to the client as an HTTP
/// status and a JSON message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status of the refusal (4xx or 5xx).
    pub status: StatusCode,
    /// What the client is told.
    pub message: String,
}

impl Refusal {
    /// A refusal with the given status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// A hub as its handlers see it: a name, and the operations they may apply
/// to its connections.
///
/// Implementations: the gateway's local hub (every connection in this
/// process), and, for application servers reached over the tunnel, the
/// server crate's link (each operation becomes a REST call). A cluster hub
/// applies an operation locally and sends it to the other nodes.
pub trait Hub: Send + Sync + 'static {
    /// The hub's name.
    fn name(&self) -> &str;

    /// Applies an operation. It takes effect whether or not the result is
    /// awaited (see [`Applied`]); for one caller, operations take effect in
    /// the order they were applied.
    fn apply(&self, operation: Operation) -> Applied;

    /// Applies an operation whose outcome the caller will not read. It
    /// takes effect exactly as with [`apply`](Self::apply); a hub spread over
    /// several nodes then asks no node for an answer (a broadcast costs one
    /// message to the other nodes, not one more per node back).
    fn apply_and_forget(&self, operation: Operation) {
        drop(self.apply(operation));
    }
}

/// Handles the client connections of one hub.
///
/// The gateway calls these methods; the handler answers through the [`Hub`]
/// it is given (send, groups, close). Implementations: the gateway's tunnel
/// to application servers, the server crate's in-process handler, and the
/// gateway's built-in echo application.
///
/// Ordering: for one connection, `on_packet` calls arrive in the order the
/// client sent the packets, and `on_disconnected` comes last, exactly once for
/// every accepted connection.
pub trait HubHandler: Send + Sync + 'static {
    /// A client passed the gate. Accept it with its session parameters or
    /// refuse it. Nothing of the connection exists in the gateway until this
    /// resolves with `Ok`.
    fn connect(
        &self,
        hub: &dyn Hub,
        request: ConnectRequest,
    ) -> BoxFuture<'static, Result<Accept, Refusal>>;

    /// The connection was registered and its open packet handed to the
    /// transport. Ops on it are valid from now on.
    fn on_connected(&self, _hub: &dyn Hub, _connection: &ConnectionId) {}

    /// A packet from the client: messages and binary messages, and pongs when
    /// the handler owns the heartbeat. Must not block: queue work elsewhere.
    fn on_packet(&self, hub: &dyn Hub, connection: &ConnectionId, packet: Packet);

    /// The connection ended; it has already left every group.
    fn on_disconnected(&self, hub: &dyn Hub, connection: &ConnectionId, reason: &DisconnectReason);

    /// Some of this hub's connections joined or left groups by an operation
    /// that did not come from this handler: the REST API, or another node
    /// of a cluster (where another process's handler may have asked it). A
    /// handler that keeps its own view of its connections' groups re-reads
    /// them with [`Operation::GroupsOf`](crate::Operation::GroupsOf).
    fn on_groups_changed(&self, _hub: &dyn Hub, _connections: &[ConnectionId]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token_and_header_values() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer secret.header.token"),
        );
        let request = ConnectRequest {
            connection_id: ConnectionId::from("c1"),
            hub: "chat".into(),
            claims: Claims::default(),
            query: vec![
                ("EIO".into(), "4".into()),
                ("access_token".into(), "secret.query.token".into()),
            ],
            headers,
            transport: TransportKind::Polling,
        };
        let text = format!("{request:?}");
        assert!(!text.contains("secret."), "{text}");
        assert!(
            text.contains("authorization") && text.contains("EIO"),
            "{text}"
        );
    }
}

//! The interface between the transports that hold client connections and
//! whoever handles them: the tunnel to application servers, an in-process
//! Rust server, or the built-in echo application.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use portcullis_auth::Claims;
use portcullis_protocol::engine::Packet;

use super::{ConnectionId, Hub};

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
#[derive(Debug, Clone)]
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

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent an Engine.IO close packet.
    ClientClosed,
    /// The client's transport went away (WebSocket closed or failed).
    TransportClosed,
    /// No pong (or, with [`Heartbeat::Application`], no packet at all) in time.
    PingTimeout,
    /// The handler or an operator closed the connection.
    ServerClosed(String),
    /// The client broke the protocol (invalid packet, overlapping polls, …).
    ProtocolError(String),
    /// The client sent more than `max_payload` bytes at once.
    PayloadTooLarge,
    /// The client did not read fast enough and its queue reached its bound.
    SlowClient,
    /// The gateway is shutting down.
    Shutdown,
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::ClientClosed => f.write_str("client closed the connection"),
            DisconnectReason::TransportClosed => f.write_str("transport closed"),
            DisconnectReason::PingTimeout => f.write_str("ping timeout"),
            DisconnectReason::ServerClosed(why) if why.is_empty() => {
                f.write_str("closed by the server")
            }
            DisconnectReason::ServerClosed(why) => write!(f, "closed by the server: {why}"),
            DisconnectReason::ProtocolError(why) => write!(f, "protocol error: {why}"),
            DisconnectReason::PayloadTooLarge => f.write_str("payload too large"),
            DisconnectReason::SlowClient => f.write_str("client too slow: outbound queue full"),
            DisconnectReason::Shutdown => f.write_str("gateway shutting down"),
        }
    }
}

/// Handles the client connections of one hub.
///
/// The gateway calls these methods; the handler answers through the [`Hub`]
/// it is given (send, groups, close). Implementations: the server tunnel, the
/// in-process Rust server, and [`crate::echo::EchoHandler`].
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
        hub: &Hub,
        request: ConnectRequest,
    ) -> BoxFuture<'static, Result<Accept, Refusal>>;

    /// The connection was registered and its open packet handed to the
    /// transport. Ops on it are valid from now on.
    fn on_connected(&self, _hub: &Hub, _connection: &ConnectionId) {}

    /// A packet from the client: messages and binary messages, and pongs when
    /// the handler owns the heartbeat. Must not block: queue work elsewhere.
    fn on_packet(&self, hub: &Hub, connection: &ConnectionId, packet: Packet);

    /// The connection ended; it has already left every group.
    fn on_disconnected(&self, hub: &Hub, connection: &ConnectionId, reason: &DisconnectReason);
}

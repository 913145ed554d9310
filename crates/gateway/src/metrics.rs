//! Prometheus metrics: one [`Registry`] per gateway (no global registry),
//! rendered at `GET /metrics` in the OpenMetrics text format when enabled.
//!
//! Labels are the hub and the transport only, never a connection, user or
//! room, so the number of series is bounded by the number of hubs. A hub
//! exists only once an application server attached (with an access key) or
//! the configuration named it; refusals of handshakes for any other name are
//! counted under the hub label [`UNKNOWN_HUB`], so a client cannot create
//! series by inventing hub names.
//!
//! The hot path does no label lookup: every hub resolves its label sets
//! once, when it is created ([`HubMetrics`], kept in the hub), and an event
//! is then one atomic add on a handle it already holds. Live connections by
//! transport are counted at scrape time from the hubs themselves (exact,
//! and free between scrapes).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use portcullis_hub::DisconnectReason;
use portcullis_tunnel::rest::RestCall;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::hub::{Transport, TransportKind};

/// The hub label of handshake refusals for a hub that does not exist (no
/// application server ever attached): not a valid hub name, so it cannot
/// collide with one.
pub const UNKNOWN_HUB: &str = "(unknown)";

/// Why the gateway refused a handshake (the `reason` label of
/// `portcullis_handshake_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// No token, on a hub that does not allow anonymous clients.
    MissingToken,
    /// The token is past its `exp`.
    ExpiredToken,
    /// The token's audience names another hub or endpoint.
    WrongAudience,
    /// The token is longer than `--max-token-bytes`.
    TokenTooLarge,
    /// Any other bad token: malformed, wrong algorithm or signature, no
    /// expiry or audience, not yet valid.
    InvalidToken,
    /// Not a well-formed Engine.IO handshake (transport, `EIO`, method).
    BadRequest,
    /// No application server is attached to the hub.
    NoApplication,
    /// `--max-connections` reached.
    ConnectionLimit,
    /// `--max-pending-handshakes` reached.
    PendingLimit,
    /// `--max-connections-per-user` reached.
    UserLimit,
    /// `--max-connections-per-address` reached.
    AddressLimit,
    /// The application server refused the client.
    ApplicationRefused,
    /// The application server did not answer within `--connect-timeout-ms`.
    ApplicationTimeout,
    /// Something failed inside the gateway.
    Internal,
}

impl RefusalReason {
    /// Every reason, in label order.
    pub const ALL: [RefusalReason; 14] = [
        RefusalReason::MissingToken,
        RefusalReason::ExpiredToken,
        RefusalReason::WrongAudience,
        RefusalReason::TokenTooLarge,
        RefusalReason::InvalidToken,
        RefusalReason::BadRequest,
        RefusalReason::NoApplication,
        RefusalReason::ConnectionLimit,
        RefusalReason::PendingLimit,
        RefusalReason::UserLimit,
        RefusalReason::AddressLimit,
        RefusalReason::ApplicationRefused,
        RefusalReason::ApplicationTimeout,
        RefusalReason::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::MissingToken => "missing_token",
            RefusalReason::ExpiredToken => "expired_token",
            RefusalReason::WrongAudience => "wrong_audience",
            RefusalReason::TokenTooLarge => "token_too_large",
            RefusalReason::InvalidToken => "invalid_token",
            RefusalReason::BadRequest => "bad_request",
            RefusalReason::NoApplication => "no_application",
            RefusalReason::ConnectionLimit => "connection_limit",
            RefusalReason::PendingLimit => "pending_limit",
            RefusalReason::UserLimit => "user_limit",
            RefusalReason::AddressLimit => "address_limit",
            RefusalReason::ApplicationRefused => "application_refused",
            RefusalReason::ApplicationTimeout => "application_timeout",
            RefusalReason::Internal => "internal",
        }
    }

    /// The reason of a token the gate refused.
    pub fn of_token_error(error: &portcullis_auth::TokenError) -> Self {
        use portcullis_auth::TokenError as E;
        match error {
            E::Missing => RefusalReason::MissingToken,
            E::Expired => RefusalReason::ExpiredToken,
            E::WrongAudience { .. } => RefusalReason::WrongAudience,
            E::TooLarge { .. } => RefusalReason::TokenTooLarge,
            _ => RefusalReason::InvalidToken,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The `reason` label of `portcullis_disconnections_total`.
fn disconnect_label(reason: &DisconnectReason) -> usize {
    match reason {
        DisconnectReason::ClientClosed => 0,
        DisconnectReason::TransportClosed => 1,
        DisconnectReason::PingTimeout => 2,
        DisconnectReason::ServerClosed(_) => 3,
        DisconnectReason::ProtocolError(_) => 4,
        DisconnectReason::PayloadTooLarge => 5,
        DisconnectReason::SlowClient => 6,
        DisconnectReason::Shutdown => 7,
    }
}

const DISCONNECT_LABELS: [&str; 8] = [
    "client_closed",
    "transport_closed",
    "ping_timeout",
    "server_closed",
    "protocol_error",
    "payload_too_large",
    "slow_client",
    "shutdown",
];

/// The `operation` label of `portcullis_rest_requests_total`.
pub(crate) fn rest_operation(call: &RestCall) -> &'static str {
    match call {
        RestCall::SendToConnection { .. } => "send_to_connection",
        RestCall::SendToAll { .. } => "send_to_all",
        RestCall::SendToGroup { .. } => "send_to_group",
        RestCall::SendToUser { .. } => "send_to_user",
        RestCall::AddToGroups { .. } => "add_to_groups",
        RestCall::RemoveFromGroups { .. } => "remove_from_groups",
        RestCall::AddConnectionToGroup { .. } => "add_connection_to_group",
        RestCall::RemoveConnectionFromGroup { .. } => "remove_connection_from_group",
        RestCall::RemoveConnectionFromAllGroups { .. } => "remove_connection_from_all_groups",
        RestCall::AddUserToGroup { .. } => "add_user_to_group",
        RestCall::RemoveUserFromGroup { .. } => "remove_user_from_group",
        RestCall::RemoveUserFromAllGroups { .. } => "remove_user_from_all_groups",
        RestCall::Invoke { .. } => "invoke",
        RestCall::CloseConnection { .. } => "close_connection",
        RestCall::ConnectionExists { .. } => "connection_exists",
        RestCall::GroupExists { .. } => "group_exists",
        RestCall::UserExists { .. } => "user_exists",
        RestCall::CloseAll { .. } => "close_all",
        RestCall::CloseGroup { .. } => "close_group",
        RestCall::CloseUser { .. } => "close_user",
    }
}

/// The `operation` label of a REST request that did not parse.
pub(crate) const REST_INVALID: &str = "invalid";

/// A label value from a fixed set of `&'static str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Static(&'static str);

impl EncodeLabelValue for Static {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HubLabels {
    hub: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HubTransportLabels {
    hub: String,
    transport: Static,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HubOutcomeLabels {
    hub: String,
    outcome: Static,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HubReasonLabels {
    hub: String,
    reason: Static,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HubEventLabels {
    hub: String,
    event: Static,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RestLabels {
    operation: Static,
    status: u16,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Fan-out operations take microseconds: 1 µs to about 1 s.
fn fanout_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_001, 4.0, 11))
}

/// Round trips to an application server: 100 µs to about 26 s (a request
/// times out after 30 s).
fn tunnel_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 4.0, 10))
}

/// The metric families of one gateway.
#[derive(Debug)]
struct Families {
    connections_opened: Family<HubTransportLabels, Counter>,
    handshakes: Family<HubOutcomeLabels, Counter>,
    refusals: Family<HubReasonLabels, Counter>,
    messages_received: Family<HubTransportLabels, Counter>,
    bytes_received: Family<HubTransportLabels, Counter>,
    messages_sent: Family<HubTransportLabels, Counter>,
    bytes_sent: Family<HubTransportLabels, Counter>,
    upgrades: Family<HubLabels, Counter>,
    disconnections: Family<HubReasonLabels, Counter>,
    backlog_closures: Family<HubLabels, Counter>,
    fanout_deliveries: Family<HubLabels, Counter>,
    fanout_duration: HistogramFamily<HubLabels>,
    tunnels: Family<HubLabels, Gauge>,
    tunnel_requests: HistogramFamily<HubLabels>,
    rest_requests: Family<RestLabels, Counter>,
    // #14 (token expiry, refresh, revocation): see `TokenMetrics`.
    token_events: Family<HubEventLabels, Counter>,
}

impl Families {
    fn new(registry: &mut Registry) -> Self {
        let families = Families {
            connections_opened: Family::default(),
            handshakes: Family::default(),
            refusals: Family::default(),
            messages_received: Family::default(),
            bytes_received: Family::default(),
            messages_sent: Family::default(),
            bytes_sent: Family::default(),
            upgrades: Family::default(),
            disconnections: Family::default(),
            backlog_closures: Family::default(),
            fanout_deliveries: Family::default(),
            fanout_duration: Family::new_with_constructor(fanout_histogram),
            tunnels: Family::default(),
            tunnel_requests: Family::new_with_constructor(tunnel_histogram),
            rest_requests: Family::default(),
            token_events: Family::default(),
        };
        let f = &families;
        registry.register(
            "connections_opened",
            "Client connections accepted, by the transport they opened with",
            f.connections_opened.clone(),
        );
        registry.register(
            "handshakes",
            "Engine.IO handshakes, by outcome (accepted or refused)",
            f.handshakes.clone(),
        );
        registry.register(
            "handshake_refusals",
            "Refused handshakes, by reason",
            f.refusals.clone(),
        );
        registry.register(
            "messages_received",
            "Engine.IO message packets received from clients",
            f.messages_received.clone(),
        );
        registry.register_with_unit(
            "received",
            "Bytes of message packets received from clients",
            Unit::Bytes,
            f.bytes_received.clone(),
        );
        registry.register(
            "messages_sent",
            "Engine.IO message packets written to clients",
            f.messages_sent.clone(),
        );
        registry.register_with_unit(
            "sent",
            "Bytes of message packets written to clients",
            Unit::Bytes,
            f.bytes_sent.clone(),
        );
        registry.register(
            "upgrades",
            "Polling connections upgraded to WebSocket",
            f.upgrades.clone(),
        );
        registry.register(
            "disconnections",
            "Client connections ended, by reason (slow_client and payload_too_large are limit closures)",
            f.disconnections.clone(),
        );
        registry.register(
            "app_backlog_closures",
            "Clients closed for having more waiting for their application server than --max-app-backlog-bytes/-packets allow",
            f.backlog_closures.clone(),
        );
        registry.register(
            "fanout_deliveries",
            "Payloads queued to clients by send operations (one per recipient)",
            f.fanout_deliveries.clone(),
        );
        registry.register_with_unit(
            "fanout_duration",
            "Time to queue one send operation's payload to all its recipients",
            Unit::Seconds,
            f.fanout_duration.clone(),
        );
        registry.register(
            "tunnels",
            "Tunnels from application servers attached",
            f.tunnels.clone(),
        );
        registry.register_with_unit(
            "tunnel_request_duration",
            "Round trip of a request (connect, event) to an application server over its tunnel",
            Unit::Seconds,
            f.tunnel_requests.clone(),
        );
        registry.register(
            "rest_requests",
            "REST API calls (over tunnels and /api), by operation and HTTP status",
            f.rest_requests.clone(),
        );
        registry.register(
            "token_events",
            "Client token lifecycle events (expired, refreshed, revoked)",
            f.token_events.clone(),
        );
        families
    }
}

/// The gateway's metrics: the registry `/metrics` renders and the handles
/// hubs resolve. Created by [`Gateway::new`](crate::Gateway::new); reach
/// it with [`Gateway::metrics`](crate::Gateway::metrics).
pub struct Metrics {
    registry: Mutex<Registry>,
    families: Families,
    /// Refusals for hubs that do not exist.
    unknown: HandshakeMetrics,
    started: Instant,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with every family registered (prefix `portcullis_`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let families = Families::new(&mut registry);
        let unknown = HandshakeMetrics::resolve(&families, UNKNOWN_HUB);
        Metrics {
            registry: Mutex::new(registry),
            families,
            unknown,
            started: Instant::now(),
        }
    }

    /// The handles of hub `name`, resolved once (a hub keeps them).
    pub fn hub(&self, name: &str) -> HubMetrics {
        HubMetrics::resolve(&self.families, name)
    }

    /// The handles counting refusals of handshakes for hubs that do not exist.
    pub(crate) fn unknown_hub(&self) -> &HandshakeMetrics {
        &self.unknown
    }

    /// The token counters of hub `name`, for code that holds no hub (a hub
    /// has them as `hub.metrics().tokens`).
    pub fn tokens(&self, hub: &str) -> TokenMetrics {
        TokenMetrics::resolve(&self.families, hub)
    }

    /// Counts a REST call's answer.
    pub(crate) fn rest_request(&self, operation: &'static str, status: u16) {
        self.families
            .rest_requests
            .get_or_create(&RestLabels {
                operation: Static(operation),
                status,
            })
            .inc();
    }

    /// Adds a collector consulted at every scrape.
    pub(crate) fn register_collector(&self, collector: Box<dyn Collector>) {
        self.lock().register_collector(collector);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The OpenMetrics text of every metric, ending with `# EOF`.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.lock());
        text
    }

    /// How long ago the gateway started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// One transport's counters within a hub.
#[derive(Debug, Clone)]
pub struct TransportMetrics {
    opened: Counter,
    messages_received: Counter,
    bytes_received: Counter,
    messages_sent: Counter,
    bytes_sent: Counter,
}

impl TransportMetrics {
    fn resolve(f: &Families, hub: &str, transport: &'static str) -> Self {
        let labels = HubTransportLabels {
            hub: hub.to_owned(),
            transport: Static(transport),
        };
        TransportMetrics {
            opened: f.connections_opened.get_or_create_owned(&labels),
            messages_received: f.messages_received.get_or_create_owned(&labels),
            bytes_received: f.bytes_received.get_or_create_owned(&labels),
            messages_sent: f.messages_sent.get_or_create_owned(&labels),
            bytes_sent: f.bytes_sent.get_or_create_owned(&labels),
        }
    }

    /// A message packet of `bytes` bytes came from a client.
    pub(crate) fn received(&self, bytes: usize) {
        self.messages_received.inc();
        self.bytes_received.inc_by(bytes as u64);
    }

    /// `messages` message packets, `bytes` bytes in all, went to a client.
    pub(crate) fn sent(&self, messages: u64, bytes: u64) {
        if messages > 0 {
            self.messages_sent.inc_by(messages);
            self.bytes_sent.inc_by(bytes);
        }
    }

    /// Message packets received so far.
    pub fn messages_received(&self) -> u64 {
        self.messages_received.get()
    }

    /// Message packets sent so far.
    pub fn messages_sent(&self) -> u64 {
        self.messages_sent.get()
    }
}

/// Client token lifecycle counters of a hub (issue #14): call
/// `hub.metrics().tokens.expired.inc()` when a live session's token
/// expires, `refreshed` when a client presents a new one, `revoked` when an
/// operator revokes one. Rendered as
/// `portcullis_token_events_total{hub, event="expired"|"refreshed"|"revoked"}`.
#[derive(Debug, Clone)]
pub struct TokenMetrics {
    /// Sessions whose token expired.
    pub expired: Counter,
    /// Tokens refreshed on a live session.
    pub refreshed: Counter,
    /// Tokens revoked.
    pub revoked: Counter,
}

impl TokenMetrics {
    fn resolve(f: &Families, hub: &str) -> Self {
        let event = |event| {
            f.token_events.get_or_create_owned(&HubEventLabels {
                hub: hub.to_owned(),
                event: Static(event),
            })
        };
        TokenMetrics {
            expired: event("expired"),
            refreshed: event("refreshed"),
            revoked: event("revoked"),
        }
    }
}

/// A hub's handshake counters.
#[derive(Debug, Clone)]
pub struct HandshakeMetrics {
    accepted: Counter,
    refused: Counter,
    refusals: [Counter; RefusalReason::ALL.len()],
}

impl HandshakeMetrics {
    fn resolve(f: &Families, hub: &str) -> Self {
        let outcome = |outcome| {
            f.handshakes.get_or_create_owned(&HubOutcomeLabels {
                hub: hub.to_owned(),
                outcome: Static(outcome),
            })
        };
        HandshakeMetrics {
            accepted: outcome("accepted"),
            refused: outcome("refused"),
            refusals: RefusalReason::ALL.map(|r| {
                f.refusals.get_or_create_owned(&HubReasonLabels {
                    hub: hub.to_owned(),
                    reason: Static(r.as_str()),
                })
            }),
        }
    }

    /// A handshake was refused.
    pub(crate) fn refused(&self, reason: RefusalReason) {
        self.refused.inc();
        self.refusals[reason.index()].inc();
    }

    /// Handshakes accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.get()
    }

    /// Refusals so far, by reason (label value, count), zeros left out.
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        RefusalReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.refusals[r.index()].get()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// One hub's metric handles, resolved when the hub is created so that
/// counting is an atomic add.
#[derive(Debug, Clone)]
pub struct HubMetrics {
    polling: TransportMetrics,
    websocket: TransportMetrics,
    handshakes: HandshakeMetrics,
    upgrades: Counter,
    disconnections: [Counter; DISCONNECT_LABELS.len()],
    backlog_closures: Counter,
    fanout_deliveries: Counter,
    fanout_duration: Histogram,
    tunnels: Gauge,
    tunnel_requests: Histogram,
    /// Token lifecycle counters (issue #14).
    pub tokens: TokenMetrics,
}

impl HubMetrics {
    fn resolve(f: &Families, hub: &str) -> Self {
        let hub_labels = HubLabels {
            hub: hub.to_owned(),
        };
        HubMetrics {
            polling: TransportMetrics::resolve(f, hub, "polling"),
            websocket: TransportMetrics::resolve(f, hub, "websocket"),
            handshakes: HandshakeMetrics::resolve(f, hub),
            upgrades: f.upgrades.get_or_create_owned(&hub_labels),
            disconnections: DISCONNECT_LABELS.map(|r| {
                f.disconnections.get_or_create_owned(&HubReasonLabels {
                    hub: hub.to_owned(),
                    reason: Static(r),
                })
            }),
            backlog_closures: f.backlog_closures.get_or_create_owned(&hub_labels),
            fanout_deliveries: f.fanout_deliveries.get_or_create_owned(&hub_labels),
            fanout_duration: f.fanout_duration.get_or_create_owned(&hub_labels),
            tunnels: f.tunnels.get_or_create_owned(&hub_labels),
            tunnel_requests: f.tunnel_requests.get_or_create_owned(&hub_labels),
            tokens: TokenMetrics::resolve(f, hub),
        }
    }

    /// The counters of one transport.
    pub fn transport(&self, kind: TransportKind) -> &TransportMetrics {
        match kind {
            TransportKind::Polling => &self.polling,
            TransportKind::WebSocket => &self.websocket,
        }
    }

    /// A handshake was accepted and its connection opened on `kind`.
    pub(crate) fn accepted(&self, kind: TransportKind) {
        self.handshakes.accepted.inc();
        self.transport(kind).opened.inc();
    }

    /// The hub's handshake counters.
    pub fn handshakes(&self) -> &HandshakeMetrics {
        &self.handshakes
    }

    /// A polling connection moved to WebSocket.
    pub(crate) fn upgraded(&self) {
        self.upgrades.inc();
    }

    /// A connection ended.
    pub(crate) fn disconnected(&self, reason: &DisconnectReason) {
        self.disconnections[disconnect_label(reason)].inc();
    }

    /// A client was closed for flooding its application server.
    pub(crate) fn backlog_closure(&self) {
        self.backlog_closures.inc();
    }

    /// A send operation queued its payload to `recipients` connections in
    /// `took`.
    pub(crate) fn fanout(&self, recipients: usize, took: Duration) {
        self.fanout_deliveries.inc_by(recipients as u64);
        self.fanout_duration.observe(took.as_secs_f64());
    }

    /// A tunnel attached (`+1`) or closed (`-1`).
    pub(crate) fn tunnel_attached(&self, attached: bool) {
        if attached {
            self.tunnels.inc();
        } else {
            self.tunnels.dec();
        }
    }

    /// Tunnels attached now.
    pub fn tunnels(&self) -> i64 {
        self.tunnels.get()
    }

    /// A request to an application server took `took`.
    pub(crate) fn tunnel_request(&self, took: Duration) {
        self.tunnel_requests.observe(took.as_secs_f64());
    }
}

/// `portcullis_connections{hub, transport}`: live connections, counted from
/// the hubs at scrape time. Holds the hubs weakly (the hubs hold the
/// metrics).
#[derive(Debug)]
pub(crate) struct OpenConnections(pub Weak<crate::hub::HubMap>);

impl Collector for OpenConnections {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(hubs) = self.0.upgrade() else {
            return Ok(());
        };
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            // The registry adds its `portcullis_` prefix.
            "connections",
            "Client connections open now, by transport (a connection upgrading counts as polling).",
            None,
            gauge.metric_type(),
        )?;
        for hub in crate::hub::all_of(&hubs) {
            let (polling, websocket) = open_by_transport(&hub);
            for (transport, count) in [("polling", polling), ("websocket", websocket)] {
                let labels = HubTransportLabels {
                    hub: hub.name().to_owned(),
                    transport: Static(transport),
                };
                ConstGauge::new(count as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// A hub's live connections: (on polling, on WebSocket).
pub(crate) fn open_by_transport(hub: &crate::hub::LocalHub) -> (usize, usize) {
    let mut counts = (0, 0);
    hub.for_each_transport(|transport| match transport {
        Transport::WebSocket => counts.1 += 1,
        _ => counts.0 += 1,
    });
    counts
}

/// `/metrics` settings.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Serve `/metrics` (default: off: it names every hub).
    pub enabled: bool,
    /// Serve it on this address instead of the main listener.
    pub listen: Option<std::net::SocketAddr>,
    /// Require `Authorization: Bearer <token>`.
    pub token: Option<crate::Secret>,
}

/// Whether `headers` carry `Authorization: Bearer <token>`, compared in
/// constant time.
fn bearer_matches(headers: &http::HeaderMap, token: &crate::Secret) -> bool {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    !presented.is_empty() && token.matches(presented)
}

/// `GET /metrics`: the OpenMetrics text; `401` without the configured
/// bearer token.
pub(crate) async fn endpoint(
    axum::extract::State(state): axum::extract::State<Arc<crate::server::GatewayState>>,
    headers: http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(token) = &state.config.metrics.token
        && !bearer_matches(&headers, token)
    {
        let body = serde_json::json!({
            "code": 401,
            "message": "/metrics needs an Authorization: Bearer header with the metrics token",
        });
        let mut response = (http::StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let mut response = state.hubs.metrics().render().into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_resolved_series_with_units_and_eof() {
        let metrics = Metrics::new();
        let chat = metrics.hub("chat");
        chat.transport(TransportKind::WebSocket).received(5);
        chat.handshakes().refused(RefusalReason::ExpiredToken);
        chat.fanout(3, Duration::from_micros(20));
        metrics.rest_request("send_to_all", 202);
        let text = metrics.render();
        for line in [
            "portcullis_messages_received_total{hub=\"chat\",transport=\"websocket\"} 1",
            "portcullis_received_bytes_total{hub=\"chat\",transport=\"websocket\"} 5",
            "portcullis_handshake_refusals_total{hub=\"chat\",reason=\"expired_token\"} 1",
            "portcullis_handshakes_total{hub=\"chat\",outcome=\"refused\"} 1",
            "portcullis_fanout_deliveries_total{hub=\"chat\"} 3",
            "portcullis_fanout_duration_seconds_count{hub=\"chat\"} 1",
            "portcullis_rest_requests_total{operation=\"send_to_all\",status=\"202\"} 1",
            "portcullis_token_events_total{hub=\"chat\",event=\"expired\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let config = MetricsConfig {
            enabled: true,
            listen: None,
            token: Some(crate::Secret::new("scrape-secret")),
        };
        assert!(!format!("{config:?}").contains("scrape-secret"));
        let admin = crate::AdminConfig {
            key: Some(crate::Secret::new("admin-secret")),
            ..Default::default()
        };
        assert!(!format!("{admin:?}").contains("admin-secret"));
    }

    #[test]
    fn every_reason_has_its_own_label() {
        let mut labels: Vec<_> = RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RefusalReason::ALL.len());
        for (i, r) in RefusalReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}

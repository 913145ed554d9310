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

mod cluster;
pub(crate) use cluster::ClusterFigures;
mod endpoint;
mod handles;
mod labels;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub use endpoint::MetricsConfig;
pub(crate) use endpoint::{OpenConnections, endpoint, open_by_transport};
pub use handles::{HandshakeMetrics, HubMetrics, TokenMetrics, TransportMetrics};
use labels::{
    HubEventLabels, HubLabels, HubOutcomeLabels, HubReasonLabels, HubTransportLabels, RestLabels,
    Static,
};
pub(crate) use labels::{REST_INVALID, rest_operation};
pub use labels::{RefusalReason, UNKNOWN_HUB};

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
            "Client token lifecycle events (expired, refreshed, refresh_refused, revoked)",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::TransportKind;

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

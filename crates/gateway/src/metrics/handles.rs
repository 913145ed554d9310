//! The handles a hub resolves once and counts through.

use std::time::Duration;

use portcullis_hub::DisconnectReason;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::Families;
use super::labels::{
    DISCONNECT_LABELS, HubEventLabels, HubLabels, HubOutcomeLabels, HubReasonLabels,
    HubTransportLabels, RefusalReason, Static, disconnect_label,
};
use crate::hub::TransportKind;

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
    pub(super) fn resolve(f: &Families, hub: &str, transport: &'static str) -> Self {
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
    /// In-band refreshes refused (the session keeps its old token).
    pub refresh_refused: Counter,
    /// Revocations recorded (by `jti` or by user).
    pub revoked: Counter,
}

impl TokenMetrics {
    pub(super) fn resolve(f: &Families, hub: &str) -> Self {
        let event = |event| {
            f.token_events.get_or_create_owned(&HubEventLabels {
                hub: hub.to_owned(),
                event: Static(event),
            })
        };
        TokenMetrics {
            expired: event("expired"),
            refreshed: event("refreshed"),
            refresh_refused: event("refresh_refused"),
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
    pub(super) fn resolve(f: &Families, hub: &str) -> Self {
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
    pub(super) fn resolve(f: &Families, hub: &str) -> Self {
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

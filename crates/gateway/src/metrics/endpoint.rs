//! Serving: `GET /metrics`, its settings, and the live connection counts
//! taken at scrape time.

use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use super::labels::{HubTransportLabels, Static};
use crate::hub::Transport;

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

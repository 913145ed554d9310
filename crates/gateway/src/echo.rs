//! The built-in echo application: every message a client sends comes back to
//! it. For smoke tests of a deployment (proxies, upgrades) and for the
//! conformance suite; enable it per hub with `--echo-hub`.

use std::time::Duration;

use portcullis_protocol::engine::Packet;

use crate::hub::{
    Accept, BoxFuture, ConnectRequest, ConnectionId, DisconnectReason, Heartbeat, Hub, HubHandler,
    Operation, Payload, Refusal, Selection,
};
use crate::server::GatewayConfig;

/// Echoes client messages back to their sender; the gateway keeps the
/// heartbeat.
#[derive(Debug, Clone)]
pub struct EchoHandler {
    accept: Accept,
}

impl EchoHandler {
    /// An echo handler with the gateway's default session parameters.
    pub fn new(config: &GatewayConfig) -> Self {
        EchoHandler {
            accept: Accept {
                ping_interval: config.ping_interval,
                ping_timeout: config.ping_timeout,
                max_payload: config.max_payload,
                heartbeat: Heartbeat::Gateway,
            },
        }
    }

    /// Overrides the ping interval and timeout.
    pub fn with_heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.accept.ping_interval = interval;
        self.accept.ping_timeout = timeout;
        self
    }
}

impl HubHandler for EchoHandler {
    fn connect(
        &self,
        _hub: &dyn Hub,
        _request: ConnectRequest,
    ) -> BoxFuture<'static, Result<Accept, Refusal>> {
        let accept = self.accept.clone();
        Box::pin(async move { Ok(accept) })
    }

    fn on_packet(&self, hub: &dyn Hub, connection: &ConnectionId, packet: Packet) {
        if matches!(packet, Packet::Message(_) | Packet::Binary(_)) {
            hub.apply_and_forget(Operation::Send {
                to: Selection::connection(connection.as_str()),
                payload: Payload::packet(packet),
            });
        }
    }

    fn on_disconnected(
        &self,
        _hub: &dyn Hub,
        _connection: &ConnectionId,
        _reason: &DisconnectReason,
    ) {
    }
}

//! The embedded attach mode: the gateway calls this handler in-process for
//! every client of the hub; the Socket.IO protocol runs in
//! [`session`](crate::session), the same as over the tunnel.

use std::sync::Arc;

use portcullis_hub::{
    Accept, BoxFuture, ConnectRequest, ConnectionId, DisconnectReason as GatewayReason, Heartbeat,
    Hub, HubHandler, Refusal,
};
use portcullis_protocol::engine::Packet as EioPacket;

use crate::conn::Conn;
use crate::io::IoInner;
use crate::session;
use crate::socket::DisconnectReason;

pub(crate) struct EmbeddedHandler {
    io: Arc<IoInner>,
}

impl EmbeddedHandler {
    pub fn new(io: Arc<IoInner>) -> Self {
        EmbeddedHandler { io }
    }
}

impl HubHandler for EmbeddedHandler {
    fn connect(
        &self,
        _hub: &dyn Hub,
        request: ConnectRequest,
    ) -> BoxFuture<'static, Result<Accept, Refusal>> {
        let config = &self.io.config;
        let accept = Accept {
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            max_payload: config.max_payload,
            heartbeat: Heartbeat::Gateway,
        };
        session::open(&self.io, Conn::from_request(request));
        Box::pin(async move { Ok(accept) })
    }

    fn on_connected(&self, _hub: &dyn Hub, connection: &ConnectionId) {
        session::connected(&self.io, connection.as_str());
    }

    fn on_packet(&self, _hub: &dyn Hub, connection: &ConnectionId, packet: EioPacket) {
        session::packet(&self.io, connection.as_str(), packet);
    }

    fn on_disconnected(&self, _hub: &dyn Hub, connection: &ConnectionId, reason: &GatewayReason) {
        session::disconnected(
            &self.io,
            connection.as_str(),
            DisconnectReason::from_gateway(reason),
        );
    }
}

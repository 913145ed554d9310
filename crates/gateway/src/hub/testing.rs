//! What the hub's unit tests share: a handler that records the client
//! messages it is handed, and a hub with one WebSocket connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_hub::{
    Accept, BoxFuture, ConnectRequest, ConnectionId, DisconnectReason, Heartbeat, Hub, HubHandler,
    Refusal,
};
use portcullis_protocol::engine::Packet;

use super::{Connection, HubSettings, LocalHub, SessionParams, Transport};

/// Records the messages the hub hands to its handler.
#[derive(Default, Clone)]
pub(crate) struct Recorder(pub Arc<Mutex<Vec<String>>>);

impl HubHandler for Recorder {
    fn connect(
        &self,
        _: &dyn Hub,
        _: ConnectRequest,
    ) -> BoxFuture<'static, Result<Accept, Refusal>> {
        Box::pin(async { Err(Refusal::new(http::StatusCode::FORBIDDEN, "unused")) })
    }
    fn on_packet(&self, _: &dyn Hub, _: &ConnectionId, packet: Packet) {
        if let Packet::Message(text) = packet {
            self.0.lock().unwrap().push(text);
        }
    }
    fn on_disconnected(&self, _: &dyn Hub, _: &ConnectionId, _: &DisconnectReason) {}
}

/// A hub served by a [`Recorder`], with one registered WebSocket connection.
pub(crate) fn hub_with_one_connection() -> (LocalHub, Arc<Connection>, Recorder) {
    let hub = LocalHub::new("h".into(), HubSettings::default(), Arc::default());
    let recorder = Recorder::default();
    hub.attach(Arc::new(recorder.clone()));
    let params = SessionParams {
        ping_interval: Duration::from_secs(25),
        ping_timeout: Duration::from_secs(20),
        max_payload: 1_000_000,
        heartbeat: Heartbeat::Gateway,
        max_queued_frames: 64,
        write_timeout: Duration::from_secs(10),
    };
    let connection = Arc::new(Connection::new(
        ConnectionId::generate(),
        None,
        None,
        params,
        Transport::WebSocket,
    ));
    hub.register(connection.clone());
    (hub, connection, recorder)
}

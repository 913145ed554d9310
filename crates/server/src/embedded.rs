//! The embedded attach mode ([`SocketIo::attach`]): the gateway calls this
//! handler in-process for every client of the hub; the Socket.IO protocol
//! runs in [`session`](crate::session), the same as over the tunnel.

use std::sync::Arc;

use portcullis_gateway::Gateway;
use portcullis_gateway::hub::LocalHub;
use portcullis_hub::{
    Accept, BoxFuture, ConnectRequest, ConnectionId, DisconnectReason as GatewayReason, Heartbeat,
    Hub, HubHandler, Operation, Outcome, Refusal, is_valid_hub_name,
};
use portcullis_protocol::engine::Packet as EioPacket;

use crate::backend::{Backend, RemoteAcks};
use crate::conn::Conn;
use crate::errors::AttachError;
use crate::io::{IoInner, SocketIo};
use crate::packet::AckResponse;
use crate::session;
use crate::socket::DisconnectReason;

impl SocketIo {
    /// Attaches the server to hub `hub` of an in-process gateway (the
    /// embedded mode): the gateway hands it the hub's clients directly, with
    /// no tunnel, and keeps the clients' heartbeats itself, so idle
    /// connections cost the server nothing.
    pub fn attach(&self, gateway: &Gateway, hub: &str) -> Result<(), AttachError> {
        if !is_valid_hub_name(hub) {
            return Err(AttachError::InvalidHubName(hub.to_owned()));
        }
        self.attach_hub(&gateway.hubs().get_or_create(hub))
    }

    /// Attaches the server to a gateway hub (see [`attach`](Self::attach)).
    pub fn attach_hub(&self, hub: &LocalHub) -> Result<(), AttachError> {
        let backend = Backend::new(Arc::new(hub.clone()))
            .with_remote_acks(Arc::new(OtherNodes(hub.clone())))
            .with_shared_group_changes();
        self.0.set_backend(backend)?;
        hub.attach(Arc::new(EmbeddedHandler::new(self.0.clone())));
        Ok(())
    }
}

/// How long the other nodes of a cluster are given to acknowledge a
/// broadcast (the broadcast's own timeout ends it sooner).
const REMOTE_ACK_CAP: std::time::Duration = std::time::Duration::from_secs(60);

/// Broadcasts with acknowledgements reach the sockets of the other nodes
/// of the gateway's cluster (processes sharing the hub through Redis); the
/// gateway gives them ack ids there and streams their answers back. Alone,
/// there are none.
struct OtherNodes(LocalHub);

impl RemoteAcks for OtherNodes {
    fn invoke(
        &self,
        filter: &portcullis_hub::Filter,
        payload: portcullis_hub::Payload,
    ) -> tokio::sync::mpsc::UnboundedReceiver<AckResponse> {
        let (acks, receiver) = tokio::sync::mpsc::unbounded_channel();
        if let Some(mut answers) = self
            .0
            .invoke_elsewhere(filter.clone(), payload, REMOTE_ACK_CAP)
        {
            tokio::spawn(async move {
                while let Some(answer) = answers.recv().await {
                    let Some(ack) = crate::tunnel::ack_of(&answer) else {
                        continue;
                    };
                    if acks.send(ack).is_err() {
                        return;
                    }
                }
            });
        }
        receiver
    }
}

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

    /// The REST API, or another process through the cluster, moved some of
    /// our connections between groups, or disconnected their sockets of a
    /// namespace: the sockets follow.
    fn on_groups_changed(&self, hub: &dyn Hub, connections: &[ConnectionId]) {
        for id in connections {
            let Some(conn) = self.io.conn(id.as_str()) else {
                continue;
            };
            // Our own connections' groups are known here at once.
            let gone = conn.sync_rooms(|| match hub.apply(Operation::GroupsOf(id.clone())).now() {
                Some(Outcome::Groups(groups)) => Some(groups),
                _ => None,
            });
            for socket in gone {
                socket.disconnected_elsewhere();
            }
        }
    }
}

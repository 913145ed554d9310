//! What the gateway does with each packet a client sends, whatever the
//! transport.

use std::sync::Arc;

use portcullis_protocol::engine::Packet;

use crate::hub::{Connection, DisconnectReason, Ending, Heartbeat, LocalHub};

/// Whether the transport keeps reading after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// Handles one client packet: data goes to the handler in order; transport
/// packets are the gateway's own business.
pub(crate) fn on_client_packet(
    hub: &LocalHub,
    connection: &Arc<Connection>,
    packet: Packet,
) -> Flow {
    match packet {
        Packet::Message(_) | Packet::Binary(_) => {
            connection.touch();
            hub.dispatch(&connection.id, packet);
            Flow::Continue
        }
        Packet::Pong(_) => {
            hub.pong(connection);
            if connection.params.heartbeat == Heartbeat::Application {
                hub.dispatch(&connection.id, packet);
            }
            Flow::Continue
        }
        Packet::Noop => Flow::Continue,
        Packet::Close => {
            hub.end(connection, Ending::ByClient, DisconnectReason::ClientClosed);
            Flow::Stop
        }
        // In Engine.IO v4 only the server pings.
        Packet::Ping(_) => protocol_error(
            hub,
            connection,
            "invalid heartbeat direction: in EIO 4 the server pings",
        ),
        Packet::Open(_) => protocol_error(hub, connection, "clients may not send an open packet"),
        Packet::Upgrade => protocol_error(hub, connection, "upgrade packet outside of an upgrade"),
    }
}

pub(crate) fn protocol_error(hub: &LocalHub, connection: &Connection, why: &str) -> Flow {
    hub.end(
        connection,
        Ending::ByServer,
        DisconnectReason::ProtocolError(why.to_owned()),
    );
    Flow::Stop
}

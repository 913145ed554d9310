//! What the gateway does with each packet a client sends, whatever the
//! transport.

use std::sync::Arc;

use portcullis_protocol::engine::Packet;

use crate::hub::{Connection, DisconnectReason, Ending, Frame, Heartbeat, LocalHub, TransportKind};

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
    transport: TransportKind,
    packet: Packet,
) -> Flow {
    match packet {
        Packet::Message(_) | Packet::Binary(_) => {
            let bytes = match &packet {
                Packet::Message(text) => text.len(),
                Packet::Binary(bytes) => bytes.len(),
                _ => 0,
            };
            hub.metrics().transport(transport).received(bytes);
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

/// Counts the message packets among `frames` written to a client on
/// `transport` (pings, noops and closes are not messages); bytes are the
/// messages' data, without the packet type.
pub(crate) fn count_sent<'a>(
    hub: &LocalHub,
    transport: TransportKind,
    frames: impl IntoIterator<Item = &'a Frame>,
) {
    let (mut messages, mut bytes) = (0u64, 0u64);
    for frame in frames {
        match frame {
            Frame::Text(text) if text.first() == Some(&b'4') => {
                messages += 1;
                bytes += (text.len() - 1) as u64;
            }
            Frame::Binary(data) => {
                messages += 1;
                bytes += data.len() as u64;
            }
            Frame::Text(_) => {}
        }
    }
    hub.metrics().transport(transport).sent(messages, bytes);
}

pub(crate) fn protocol_error(hub: &LocalHub, connection: &Connection, why: &str) -> Flow {
    hub.end(
        connection,
        Ending::ByServer,
        DisconnectReason::ProtocolError(why.to_owned()),
    );
    Flow::Stop
}

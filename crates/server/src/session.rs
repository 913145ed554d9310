//! The Socket.IO session layer shared by both attach modes: the gateway
//! (in-process or over the tunnel) reports a connection's life and its
//! Engine.IO messages; this module runs the Socket.IO protocol on them and
//! answers through the [`Backend`](crate::backend::Backend), never knowing
//! which mode it runs in.

use std::sync::Arc;

use portcullis_protocol::engine::Packet as EioPacket;
use portcullis_protocol::socket::PacketKind;
use portcullis_tunnel::group_name::group_name;
use serde_json::{Value, json};

use crate::conn::{Conn, Queued};
use crate::connect_timeout::ConnectDeadlines;
use crate::io::IoInner;
use crate::packet::AckResponse;
use crate::packet::{self, Packet};
use crate::socket::{DisconnectReason, SocketRef};
use crate::sync::lock;

/// Registers a connection the gateway accepted.
pub(crate) fn open(io: &IoInner, conn: Conn) -> Arc<Conn> {
    let conn = Arc::new(conn);
    lock(&io.conns).insert(conn.id.clone(), conn.clone());
    conn
}

/// The connection is live in the gateway: socket.io's `connectTimeout`
/// starts, closing a client that joins no namespace in time.
pub(crate) fn connected(io: &Arc<IoInner>, connection: &str) {
    if let Some(conn) = io.conn(connection) {
        ConnectDeadlines::start(io, conn.id.clone());
    }
}

/// An Engine.IO message from the client, queued for in-order processing.
pub(crate) fn packet(io: &Arc<IoInner>, connection: &str, packet: EioPacket) {
    if !matches!(packet, EioPacket::Message(_) | EioPacket::Binary(_)) {
        return;
    }
    let Some(conn) = io.conn(connection) else {
        return;
    };
    match conn.push(packet, io.config.max_queued_packets) {
        Queued::Running => {}
        Queued::StartDrain => {
            tokio::spawn(drain(io.clone(), conn));
        }
        Queued::Overflow => {
            tracing::warn!(connection = %conn.id, "too many unprocessed packets; closing");
            close(io, &conn, "too many unprocessed packets");
        }
    }
}

/// The connection ended (it already left every gateway group).
pub(crate) fn disconnected(io: &IoInner, connection: &str, reason: DisconnectReason) {
    let Some(conn) = lock(&io.conns).remove(connection) else {
        return;
    };
    // The gateway reports the end after the client's last packets; a
    // namespace DISCONNECT among those not processed yet still counts as
    // the client's (`socket.disconnect()` right before the transport closes).
    for eio in conn.take_queued() {
        let decoded = {
            let mut decoder = lock(&conn.decoder);
            match eio {
                EioPacket::Message(text) => decoder.text(&text),
                EioPacket::Binary(bytes) => decoder.binary(bytes),
                _ => Ok(None),
            }
        };
        if let Ok(Some(packet)) = decoded
            && packet.kind == PacketKind::Disconnect
            && let Some(socket) = conn.socket(&packet.namespace)
            && conn
                .remove_socket(socket.ns(), socket.id().as_str())
                .is_some()
        {
            socket.finish(DisconnectReason::ClientNamespaceDisconnect);
        }
    }
    for socket in conn.close() {
        socket.finish(reason);
    }
}

/// Processes a connection's packets in order until its inbox is empty.
async fn drain(io: Arc<IoInner>, conn: Arc<Conn>) {
    while let Some(eio) = conn.next() {
        let decoded = {
            let mut decoder = lock(&conn.decoder);
            match eio {
                EioPacket::Message(text) => decoder.text(&text),
                EioPacket::Binary(bytes) => decoder.binary(bytes),
                _ => Ok(None),
            }
        };
        match decoded {
            Ok(Some(packet)) => handle(&io, &conn, packet).await,
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(connection = %conn.id, error = %e, "invalid Socket.IO packet; closing");
                close(&io, &conn, "parse error");
            }
        }
    }
}

fn close(io: &IoInner, conn: &Conn, reason: &str) {
    io.close_connection(&conn.id, reason);
}

fn send(io: &IoInner, conn: &Conn, kind: PacketKind, namespace: &str, data: &str) {
    if let Some(backend) = io.backend() {
        backend.send_to(&conn.id, packet::encode(kind, namespace, None, data, &[]));
    }
}

async fn handle(io: &Arc<IoInner>, conn: &Arc<Conn>, packet: Packet) {
    let socket = || conn.socket(&packet.namespace);
    match packet.kind {
        PacketKind::Connect => connect(io, conn, packet.namespace, packet.data).await,
        PacketKind::Disconnect => {
            if let Some(socket) = socket()
                && conn
                    .remove_socket(socket.ns(), socket.id().as_str())
                    .is_some()
            {
                socket.finish(DisconnectReason::ClientNamespaceDisconnect);
                // Like socket.io: a client that left its last namespace is
                // closed.
                if !conn.has_sockets() {
                    close(io, conn, "client namespace disconnect");
                }
            }
        }
        PacketKind::Event | PacketKind::BinaryEvent => {
            let Some(socket) = socket() else {
                tracing::debug!(connection = %conn.id, namespace = %packet.namespace, "event for a namespace not joined");
                return;
            };
            let mut args = match packet.data {
                Value::Array(args) => args,
                _ => return close(io, conn, "parse error"),
            };
            let event = match args.first() {
                Some(Value::String(_)) => match args.remove(0) {
                    Value::String(event) => event,
                    _ => unreachable!("checked above"),
                },
                _ => return close(io, conn, "parse error"),
            };
            socket.dispatch(event, args, packet.attachments, packet.ack_id);
        }
        PacketKind::Ack | PacketKind::BinaryAck => {
            let (Some(socket), Some(id)) = (socket(), packet.ack_id) else {
                return;
            };
            match AckResponse::from_ack(packet.data, packet.attachments) {
                Some(response) => socket.resolve_ack(id, response),
                None => close(io, conn, "parse error"),
            }
        }
        PacketKind::ConnectError => close(io, conn, "parse error"),
    }
}

async fn connect(io: &Arc<IoInner>, conn: &Arc<Conn>, namespace: String, auth: Value) {
    if conn.has_socket(&namespace) {
        tracing::debug!(connection = %conn.id, %namespace, "already connected to namespace");
        return;
    }
    let refuse = |message: &str| {
        let data = json!({ "message": message }).to_string();
        send(io, conn, PacketKind::ConnectError, &namespace, &data);
    };
    let Some((path, ns)) = io.find_namespace(&namespace) else {
        return refuse("Invalid namespace");
    };
    let socket = SocketRef::new(io.clone(), conn.clone(), path, auth);
    if let Err(message) = ns.admit(&socket).await {
        // Rooms a middleware joined are left by the gateway when it
        // delivers the CONNECT_ERROR.
        return refuse(&message);
    }
    let handler = match ns.prepare(&socket) {
        Ok(handler) => handler,
        Err(e) => {
            // As above: the CONNECT_ERROR leaves the rooms.
            return refuse(&e.refusal_message());
        }
    };
    socket.mark_connected();
    if !conn.insert_socket(&namespace, socket.clone()) {
        // The connection ended meanwhile.
        socket.finish(DisconnectReason::TransportClose);
        return;
    }
    let answer = json!({ "sid": socket.id().as_str() }).to_string();
    send(io, conn, PacketKind::Connect, &namespace, &answer);
    socket.mark_announced();
    // The gateway put the connection in the namespace group when it
    // delivered the CONNECT; the socket's own room is ours, as in the SDK.
    if let Some(backend) = io.backend() {
        backend.join(
            &conn.id,
            vec![group_name(&namespace, Some(socket.id().as_str()))],
        );
    }
    handler();
}

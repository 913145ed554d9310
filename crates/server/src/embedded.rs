//! The embedded attach mode: the gateway calls this handler in-process for
//! every client of the hub, and the Socket.IO protocol runs here.

use std::sync::Arc;

use bytes::Bytes;
use portcullis_gateway::hub::{
    Accept, BoxFuture, ConnectRequest, ConnectionId, DisconnectReason as GatewayReason, Heartbeat,
    Hub, HubHandler, Refusal,
};
use portcullis_protocol::engine::Packet as EioPacket;
use portcullis_protocol::socket::PacketKind;
use portcullis_tunnel::group_name::group_name;
use serde_json::{Value, json};

use crate::ack::AckResponse;
use crate::conn::{Conn, Queued, lock};
use crate::io::IoInner;
use crate::packet::{self, Packet};
use crate::socket::{DisconnectReason, SocketRef};

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
        _hub: &Hub,
        request: ConnectRequest,
    ) -> BoxFuture<'static, Result<Accept, Refusal>> {
        let config = &self.io.config;
        let accept = Accept {
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            max_payload: config.max_payload,
            heartbeat: Heartbeat::Gateway,
        };
        let conn = Arc::new(Conn::new(request));
        lock(&self.io.conns).insert(conn.id.clone(), conn);
        Box::pin(async move { Ok(accept) })
    }

    fn on_connected(&self, hub: &Hub, connection: &ConnectionId) {
        let Some(conn) = self.io.conn(connection.as_str()) else {
            return;
        };
        // socket.io's connectTimeout: a client that joins no namespace in
        // time is closed.
        let timeout = self.io.config.connect_timeout;
        let hub = hub.clone();
        let weak = Arc::downgrade(&conn);
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(conn) = weak.upgrade()
                && conn.never_connected()
            {
                tracing::debug!(connection = %conn.id, "no namespace joined in time; closing");
                hub.close_connection(conn.id.as_str(), "connect timeout")
                    .await;
            }
        });
        conn.set_timer(timer.abort_handle());
    }

    fn on_packet(&self, hub: &Hub, connection: &ConnectionId, packet: EioPacket) {
        if !matches!(packet, EioPacket::Message(_) | EioPacket::Binary(_)) {
            return;
        }
        let Some(conn) = self.io.conn(connection.as_str()) else {
            return;
        };
        match conn.push(packet, self.io.config.max_queued_packets) {
            Queued::Running => {}
            Queued::StartDrain => {
                let io = self.io.clone();
                tokio::spawn(drain(io, conn));
            }
            Queued::Overflow => {
                tracing::warn!(connection = %conn.id, "too many unprocessed packets; closing");
                let hub = hub.clone();
                let id = conn.id.clone();
                crate::backend::run_now(async move {
                    hub.close_connection(id.as_str(), "too many unprocessed packets")
                        .await
                });
            }
        }
    }

    fn on_disconnected(&self, _hub: &Hub, connection: &ConnectionId, reason: &GatewayReason) {
        let Some(conn) = lock(&self.io.conns).remove(connection.as_str()) else {
            return;
        };
        let reason = DisconnectReason::from_gateway(reason);
        for socket in conn.close() {
            // The gateway already removed the connection from every group.
            socket.finish(reason, false);
        }
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
    if let Some(backend) = io.backend() {
        backend.close(&conn.id, reason);
    }
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
                socket.finish(DisconnectReason::ClientNamespaceDisconnect, true);
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
            let args = match packet.data {
                Value::Array(args) => args,
                Value::Null => Vec::new(),
                _ => return close(io, conn, "parse error"),
            };
            let binary: Vec<Bytes> = packet.attachments;
            let data = packet::args_value(args, !binary.is_empty());
            socket.resolve_ack(id, AckResponse { data, binary });
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
    let Some(ns) = io.find_namespace(&namespace) else {
        return refuse("Invalid namespace");
    };
    let socket = SocketRef::new(io.clone(), conn.clone(), &namespace, auth);
    if let Err(message) = ns.admit(&socket).await {
        // Rooms a middleware joined are left with the refusal.
        if let Some(backend) = io.backend() {
            backend.leave_namespace(&conn.id, &namespace);
        }
        return refuse(&message);
    }
    socket.mark_connected();
    io.add_socket(&socket);
    if !conn.insert_socket(&namespace, socket.clone()) {
        // The connection ended meanwhile.
        socket.finish(DisconnectReason::TransportClose, false);
        return;
    }
    let answer = json!({ "sid": socket.id().as_str() }).to_string();
    send(io, conn, PacketKind::Connect, &namespace, &answer);
    if let Some(backend) = io.backend() {
        backend.join(
            &conn.id,
            vec![
                group_name(&namespace, None),
                group_name(&namespace, Some(socket.id().as_str())),
            ],
        );
    }
    ns.connected(socket);
}

//! The CloudEvents the gateway sends over the tunnel, answered like the
//! official SDK answers them (protocol reference §5) and fed to the same
//! Socket.IO layer as the embedded mode.

use std::sync::atomic::Ordering;

use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_auth::Claims;
use portcullis_hub::{Hub as _, TransportKind};
use portcullis_protocol::engine::decode_payload;
use portcullis_tunnel::cloud_events::{
    ConnectEventBody, ConnectResponse, EventKind, ReceivedEvent,
};
use portcullis_tunnel::{HttpRequest, HttpResponse};

use super::link::Link;
use crate::conn::Conn;
use crate::conn_id::ConnId;
use crate::request::RequestData;
use crate::session;
use crate::socket::DisconnectReason;

/// Answers one service → server request.
pub(crate) fn handle(link: &Link, request: &HttpRequest) -> HttpResponse {
    link.stats.events.fetch_add(1, Ordering::Relaxed);
    let text = |status: u16, message: String| {
        HttpResponse::reply_to(request, status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_content(message)
    };
    let event = match ReceivedEvent::from_request(request) {
        Ok(event) => event,
        Err(error) => return text(500, format!("Not correctly handled. {error}")),
    };
    if !event.hub.eq_ignore_ascii_case(link.name()) {
        return text(500, "Not correctly handled. ".to_owned());
    }
    let Some(io) = link.io.upgrade() else {
        return text(503, "the Socket.IO server is gone".to_owned());
    };
    let id = event.connection_id;
    match event.kind {
        EventKind::Connect(body) => {
            if body
                .query
                .get("EIO")
                .and_then(|v| v.first())
                .map(String::as_str)
                != Some("4")
            {
                return text(
                    400,
                    "EIO server refused connection with error: unsupported protocol version"
                        .to_owned(),
                );
            }
            session::open(&io, conn_of(&id, body));
            let config = &io.config;
            let open = ConnectResponse {
                sid: id,
                upgrades: Vec::new(),
                ping_interval: millis(config.ping_interval),
                ping_timeout: millis(config.ping_timeout),
                max_payload: config.max_payload,
            };
            // "heartbeat":"gateway": the gateway pings the client itself, so
            // idle clients cost the tunnel nothing.
            let body = serde_json::json!({ "socketio": open, "heartbeat": "gateway" });
            HttpResponse::reply_to(request, 200)
                .with_header("content-type", "application/json; charset=utf-8")
                .with_content(body.to_string())
        }
        EventKind::Connected => {
            if io.conn(&id).is_some() {
                link.adopt(&ConnId::new(&id));
                session::connected(&io, &id);
            }
            HttpResponse::reply_to(request, 200)
        }
        EventKind::User {
            content_type, data, ..
        } => {
            link.stats.user_events.fetch_add(1, Ordering::Relaxed);
            if io.conn(&id).is_none() {
                return text(400, format!("EIO server cannot find ConnectionId {id}"));
            }
            let packets = (content_type == "text/plain")
                .then(|| std::str::from_utf8(&data).ok())
                .flatten()
                .and_then(|payload| decode_payload(payload).ok());
            let Some(packets) = packets else {
                return text(
                    500,
                    "EIO server cannot handle user event with error: invalid payload".to_owned(),
                );
            };
            for packet in packets {
                session::packet(&io, &id, packet);
            }
            HttpResponse::reply_to(request, 200)
                .with_header("content-type", "application/octet-stream")
        }
        EventKind::Disconnected { reason } => {
            session::disconnected(&io, &id, reason_of(&reason));
            HttpResponse::reply_to(request, 200)
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn conn_of(id: &str, body: ConnectEventBody) -> Conn {
    let transport = match body.query.get("transport").and_then(|v| v.first()) {
        Some(t) if t == "websocket" => TransportKind::WebSocket,
        _ => TransportKind::Polling,
    };
    let query: Vec<_> = body
        .query
        .into_iter()
        .flat_map(|(k, vs)| vs.into_iter().map(move |v| (k.clone(), v)))
        .collect();
    let mut headers = HeaderMap::new();
    for (name, values) in body.headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        for value in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(name.clone(), value);
            }
        }
    }
    let request = RequestData::new(&Claims(body.claims), &query, &headers);
    Conn::new(ConnId::new(id), request, transport)
}

/// The gateway's reason text (its `DisconnectReason` display) in
/// socket.io's words.
fn reason_of(text: &str) -> DisconnectReason {
    portcullis_hub::DisconnectReason::from_text(text)
        .map_or(DisconnectReason::TransportError, |reason| {
            DisconnectReason::from_gateway(&reason)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_in_socket_io_words() {
        assert_eq!(reason_of("ping timeout"), DisconnectReason::PingTimeout);
        assert_eq!(
            reason_of("transport closed"),
            DisconnectReason::TransportClose
        );
        assert_eq!(
            reason_of("client closed the connection"),
            DisconnectReason::TransportClose
        );
        assert_eq!(
            reason_of("closed by the server: connect timeout"),
            DisconnectReason::ForcedClose
        );
        assert_eq!(
            reason_of("gateway shutting down"),
            DisconnectReason::ServerShuttingDown
        );
        assert_eq!(
            reason_of("client too slow: outbound queue full"),
            DisconnectReason::TransportError
        );
    }
}

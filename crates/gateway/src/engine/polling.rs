//! HTTP long-polling: GET waits for the queued packets, POST carries the
//! client's packets.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use portcullis_protocol::engine::{PayloadBuilder, decode_payload};

use super::error::{EngineError, ErrorCode};
use super::inbound::{Flow, count_sent, on_client_packet, protocol_error};
use crate::hub::{Connection, DisconnectReason, Ending, LocalHub, PollReady, TransportKind};

/// A polling response body: packets as an Engine.IO payload.
pub(crate) fn payload_response(body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    response
}

/// Releases the poll slot however the request ends (including when the client
/// hangs up and the future is dropped).
struct PollSlot<'a>(&'a Connection);

impl Drop for PollSlot<'_> {
    fn drop(&mut self) {
        self.0.end_poll();
    }
}

/// A long-poll: answers at once if packets are queued, otherwise when they
/// arrive, when an upgrade starts, or when the session ends.
pub(crate) async fn poll(hub: &LocalHub, connection: &Arc<Connection>) -> Response {
    if !connection.begin_poll() {
        // engine.io's rule: overlapping polls end the session. The pending
        // poll then returns the close packet.
        protocol_error(hub, connection, "overlapping long-poll requests");
        return EngineError::bad_request("overlapping long-poll requests: the session is closed")
            .into_response();
    }
    let _slot = PollSlot(connection);
    let hold = connection.params.ping_interval + connection.params.ping_timeout;
    let deadline = tokio::time::sleep(hold);
    tokio::pin!(deadline);
    loop {
        let woken = connection.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if let Some(ready) = connection.poll_ready() {
            return payload_response(render(hub, ready));
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = &mut deadline => return payload_response("6".to_owned()),
        }
    }
}

fn render(hub: &LocalHub, ready: PollReady) -> String {
    let mut body = PayloadBuilder::default();
    let (frames, tail) = match ready {
        PollReady::Frames(frames) => (frames, None),
        PollReady::Noop => (Vec::new(), Some("6")),
        PollReady::Ended(Ending::ByServer, frames) => (frames, Some("1")),
        PollReady::Ended(Ending::ByClient, frames) => {
            let tail = frames.is_empty().then_some("6");
            (frames, tail)
        }
    };
    frames.iter().for_each(|frame| frame.push_to(&mut body));
    count_sent(hub, TransportKind::Polling, &frames);
    if let Some(tail) = tail {
        body.push_encoded(tail);
    }
    body.finish()
}

struct PostSlot<'a>(&'a Connection);

impl Drop for PostSlot<'_> {
    fn drop(&mut self) {
        self.0.end_post();
    }
}

/// A POST of client packets; answers `200 ok` like engine.io.
pub(crate) async fn push(hub: &LocalHub, connection: &Arc<Connection>, body: Body) -> Response {
    if !connection.begin_post() {
        protocol_error(hub, connection, "overlapping POST requests");
        return EngineError::bad_request("overlapping POST requests: the session is closed")
            .into_response();
    }
    let _slot = PostSlot(connection);
    let limit = usize::try_from(connection.params.max_payload).unwrap_or(usize::MAX);
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return too_large(hub, connection, limit),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        protocol_error(hub, connection, "payload is not UTF-8");
        return EngineError::bad_request("payload is not UTF-8 text: the session is closed")
            .into_response();
    };
    let packets = match decode_payload(text) {
        Ok(packets) => packets,
        Err(error) => {
            protocol_error(hub, connection, &error.to_string());
            let message = format!("invalid payload ({error}): the session is closed");
            return EngineError::bad_request(message).into_response();
        }
    };
    for packet in packets {
        if on_client_packet(hub, connection, TransportKind::Polling, packet) == Flow::Stop {
            break;
        }
    }
    let mut response = (StatusCode::OK, "ok").into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

fn too_large(hub: &LocalHub, connection: &Connection, limit: usize) -> Response {
    hub.end(
        connection,
        Ending::ByServer,
        DisconnectReason::PayloadTooLarge,
    );
    EngineError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BadRequest,
        format!("payload exceeds maxPayload ({limit} bytes): the session is closed"),
    )
    .into_response()
}

//! WebSocket transport: one task per connection reads client frames and
//! writes queued packets.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{FutureExt, SinkExt};
use portcullis_protocol::engine::Packet;

use super::inbound::{Flow, count_sent, on_client_packet, protocol_error};
use crate::hub::{Connection, DisconnectReason, Ending, Frame, LocalHub, Transport, TransportKind};

/// How long an upgrading client may take between opening the WebSocket and
/// completing the probe (`2probe` … `5`).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a poll that arrives after `3probe` waits for the `5` the client
/// may have sent before it (see `catch_up`).
const UPGRADE_PACKET_WAIT: Duration = Duration::from_millis(100);

/// Close code for "message too big" (RFC 6455).
const CLOSE_TOO_BIG: u16 = 1009;

// The two entry points return `async move` blocks rather than being `async
// fn`s: an `async fn` keeps its owned arguments twice in its future (as
// arguments and as locals), and the socket is the largest part of a future
// that lives as long as the connection.

/// Serves a connection that started on this WebSocket: the open packet goes
/// first, then the session runs.
#[expect(clippy::manual_async_fn, reason = "see above: smaller future")]
pub(crate) fn serve_new(
    mut socket: WebSocket,
    hub: LocalHub,
    connection: Arc<Connection>,
    open: String,
) -> impl Future<Output = ()> + Send {
    async move {
        let limit = connection.params.write_timeout;
        if let Err(failure) = bounded(limit, socket.send(Message::Text(open.into()))).await {
            end_on(&hub, &connection, failure);
            return;
        }
        run(&mut socket, &hub, &connection).await;
    }
}

/// A session's one probe, claimed when a WebSocket upgrade request is
/// accepted. Dropped without completing the upgrade (the probe failed, or
/// the client hung up before the WebSocket opened), it puts the session
/// back on polling.
pub(crate) struct ProbeClaim(Arc<Connection>);

impl ProbeClaim {
    /// Claims the probe; `None` if another WebSocket holds the session.
    pub(crate) fn new(connection: Arc<Connection>) -> Option<Self> {
        connection.claim_probe().then_some(ProbeClaim(connection))
    }
}

impl Drop for ProbeClaim {
    fn drop(&mut self) {
        self.0.abandon_probe();
    }
}

/// Closes a WebSocket that asked to carry a session another WebSocket
/// already probes or carries.
pub(crate) async fn refuse(mut socket: WebSocket) {
    let _ = bounded(REFUSAL_WRITE_LIMIT, socket.send(Message::Close(None))).await;
}

/// How long closing a turned-away WebSocket may take (it has no session, so
/// no session's write timeout applies).
const REFUSAL_WRITE_LIMIT: Duration = Duration::from_secs(5);

/// Why a write to the client did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteFailure {
    /// The socket failed or was closed.
    Closed,
    /// The client did not take the bytes within the write timeout (it
    /// stopped reading; its TCP window stays shut).
    TimedOut,
}

/// Runs a write bounded by `limit`, so a client that never reads cannot
/// hold the task and its socket.
async fn bounded<T>(
    limit: Duration,
    write: impl Future<Output = Result<T, axum::Error>>,
) -> Result<T, WriteFailure> {
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(WriteFailure::Closed),
        Err(_) => Err(WriteFailure::TimedOut),
    }
}

/// Ends the session after a failed write.
fn end_on(hub: &LocalHub, connection: &Connection, failure: WriteFailure) {
    match failure {
        WriteFailure::Closed => hub.end(
            connection,
            Ending::ByClient,
            DisconnectReason::TransportClosed,
        ),
        WriteFailure::TimedOut => {
            hub.end(connection, Ending::ByServer, DisconnectReason::SlowClient)
        }
    }
}

/// Serves a WebSocket that upgrades a polling connection.
#[expect(clippy::manual_async_fn, reason = "see above: smaller future")]
pub(crate) fn serve_upgrade(
    mut socket: WebSocket,
    hub: LocalHub,
    claim: ProbeClaim,
) -> impl Future<Output = ()> + Send {
    async move {
        let connection = claim.0.clone();
        let upgraded = tokio::select! {
            _ = connection.closed.cancelled() => false,
            done = tokio::time::timeout(UPGRADE_TIMEOUT, probe(&mut socket, &connection)) => done.unwrap_or(false),
        };
        // The session goes on over polling unless the client sent `5`; a
        // poll waiting for this probe to catch up can now be answered.
        drop(claim);
        connection.probe_synced();
        if !upgraded {
            let limit = connection.params.write_timeout;
            let _ = bounded(limit, socket.send(Message::Close(None))).await;
            return;
        }
        hub.metrics().upgraded();
        run(&mut socket, &hub, &connection).await;
    }
}

/// Where a probe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Waiting for `2probe`.
    Ping,
    /// `3probe` sent; waiting for `5` (noops may come first).
    Upgrade,
    /// The client sent `5`: the WebSocket carries the session.
    Done,
    /// Anything else: the WebSocket is dropped.
    Failed,
}

/// The probe exchange; true once the client sent `5` and the WebSocket
/// carries the session.
///
/// A polling request that arrives meanwhile asks this task to handle what
/// the client has already sent here before it is answered, so a poll sent
/// after `5` is refused as engine.io refuses it.
async fn probe(socket: &mut WebSocket, connection: &Connection) -> bool {
    let mut probe = Probe::Ping;
    while !matches!(probe, Probe::Done | Probe::Failed) {
        tokio::select! {
            biased;
            _ = connection.probe_sync_requested() => {
                probe = catch_up(socket, connection, probe).await;
                connection.probe_synced();
            }
            message = socket.recv() => {
                probe = probe_step(socket, connection, probe, message).await;
            }
        }
    }
    probe == Probe::Done
}

/// Handles every frame already received; once the probe is answered, also
/// waits a moment for `5`.
///
/// Why the wait: tokio marks a socket drained after a short read, and only
/// its I/O driver marks it readable again. On a loaded machine the driver
/// can lag, so `5` may sit in the kernel, sent before the poll, unseen. A
/// poll that arrives after `3probe` is unusual (engine.io-client sends `5`
/// only once its polls are done, so it never sends one after), which makes
/// the wait cheap for real clients.
async fn catch_up(socket: &mut WebSocket, connection: &Connection, mut probe: Probe) -> Probe {
    // Let the worker poll the I/O driver first (see `sync_with_probe`).
    tokio::task::yield_now().await;
    while probe != Probe::Done && probe != Probe::Failed {
        // `recv` is cancel-safe: a frame half read stays buffered.
        let message = match socket.recv().now_or_never() {
            Some(message) => message,
            None if probe == Probe::Upgrade => {
                match tokio::time::timeout(UPGRADE_PACKET_WAIT, socket.recv()).await {
                    Ok(message) => message,
                    Err(_) => break,
                }
            }
            None => break,
        };
        probe = probe_step(socket, connection, probe, message).await;
    }
    probe
}

/// Advances the probe by one received frame.
async fn probe_step(
    socket: &mut WebSocket,
    connection: &Connection,
    probe: Probe,
    message: Option<Result<Message, axum::Error>>,
) -> Probe {
    let text = match message {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => return probe,
        _ => return Probe::Failed,
    };
    match (probe, text.as_str()) {
        (Probe::Ping, "2probe") => {
            let pong = Message::Text(Utf8Bytes::from_static("3probe"));
            if bounded(connection.params.write_timeout, socket.send(pong))
                .await
                .is_err()
            {
                return Probe::Failed;
            }
            // From now on a pending or new poll is released with a noop, so
            // the client can pause polling and send `5`.
            connection.set_transport(Transport::Upgrading);
            Probe::Upgrade
        }
        (Probe::Upgrade, "6") => Probe::Upgrade,
        (Probe::Upgrade, "5") => {
            connection.set_transport(Transport::WebSocket);
            Probe::Done
        }
        _ => Probe::Failed,
    }
}

/// The session loop: queued packets out, client packets in, until the
/// connection ends.
///
/// Its future lives as long as the connection, so it is kept small: the
/// socket is borrowed from the task's top future (an owned socket would be
/// stored twice, as argument and as local), and the rare closing exchange is
/// boxed.
async fn run(socket: &mut WebSocket, hub: &LocalHub, connection: &Arc<Connection>) {
    loop {
        let woken = connection.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if let Err(failure) = write_queued(socket, hub, connection).await {
            // A client that stopped reading gets no closing exchange either:
            // that would be one more write it never takes.
            end_on(hub, connection, failure);
            return;
        }
        if let Some(ending) = connection.ending() {
            Box::pin(finish(socket, hub, connection, ending)).await;
            return;
        }
        // No wait on `connection.closed`: ending a connection also wakes
        // `woken` (enabled above, before the ending was checked), and
        // registering with the token on every wake cost two lock round trips.
        tokio::select! {
            _ = &mut woken => {}
            message = socket.recv() => {
                if read(message, hub, connection) == Flow::Stop && connection.ending().is_none() {
                    return;
                }
            }
        }
    }
}

/// Writes every queued frame, then flushes once, within the write timeout.
async fn write_queued(
    socket: &mut WebSocket,
    hub: &LocalHub,
    connection: &Connection,
) -> Result<(), WriteFailure> {
    let frames = connection.drain();
    if frames.is_empty() {
        return Ok(());
    }
    count_sent(hub, TransportKind::WebSocket, &frames);
    let write = async {
        for frame in frames {
            socket.feed(to_message(frame)).await?;
        }
        socket.flush().await
    };
    bounded(connection.params.write_timeout, write).await
}

fn to_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(text) => match Utf8Bytes::try_from(text) {
            Ok(text) => Message::Text(text),
            // Text frames are built from `String`s; this cannot happen.
            Err(_) => Message::Text(Utf8Bytes::from_static("")),
        },
        Frame::Binary(bytes) => Message::Binary(bytes),
    }
}

/// Handles one read result.
fn read(
    message: Option<Result<Message, axum::Error>>,
    hub: &LocalHub,
    connection: &Arc<Connection>,
) -> Flow {
    let message = match message {
        Some(Ok(message)) => message,
        Some(Err(error)) => {
            let reason = if is_too_big(&error) {
                DisconnectReason::PayloadTooLarge
            } else {
                DisconnectReason::TransportClosed
            };
            let ending = if reason == DisconnectReason::PayloadTooLarge {
                Ending::ByServer
            } else {
                Ending::ByClient
            };
            hub.end(connection, ending, reason);
            return Flow::Stop;
        }
        None => {
            hub.end(
                connection,
                Ending::ByClient,
                DisconnectReason::TransportClosed,
            );
            return Flow::Stop;
        }
    };
    match message {
        Message::Text(text) => match Packet::decode_text(&text) {
            Ok(packet) => on_client_packet(hub, connection, TransportKind::WebSocket, packet),
            Err(error) => protocol_error(hub, connection, &error.to_string()),
        },
        Message::Binary(bytes) => on_client_packet(
            hub,
            connection,
            TransportKind::WebSocket,
            Packet::Binary(bytes),
        ),
        Message::Ping(_) | Message::Pong(_) => {
            connection.touch();
            Flow::Continue
        }
        Message::Close(_) => {
            hub.end(
                connection,
                Ending::ByClient,
                DisconnectReason::TransportClosed,
            );
            Flow::Stop
        }
    }
}

fn is_too_big(error: &axum::Error) -> bool {
    // axum does not expose tungstenite's error type; its message names it.
    let text = error.to_string();
    text.contains("too long") || text.contains("Space limit")
}

/// Sends what is left and closes the WebSocket.
async fn finish(socket: &mut WebSocket, hub: &LocalHub, connection: &Connection, ending: Ending) {
    if write_queued(socket, hub, connection).await.is_err() {
        return;
    }
    let code = match connection.disconnect_reason() {
        Some(DisconnectReason::PayloadTooLarge) => Some(CLOSE_TOO_BIG),
        _ if ending == Ending::ByServer => Some(1000),
        _ => None,
    };
    let frame = code.map(|code| CloseFrame {
        code,
        reason: Utf8Bytes::from_static(""),
    });
    let limit = connection.params.write_timeout;
    if bounded(limit, socket.send(Message::Close(frame)))
        .await
        .is_ok()
    {
        let _ = bounded(limit, SinkExt::close(socket)).await;
    }
}

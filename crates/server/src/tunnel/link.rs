//! The application server's end of the server tunnel: one WebSocket to the
//! gateway, re-opened with a fresh token a second after it is lost, REST
//! calls correlated by AckId, and the gateway's CloudEvents answered.
//!
//! Ordering: calls leave in program order, one writer, one WebSocket, and
//! the gateway applies a tunnel's calls in arrival order. Like the SDK's
//! `WebPubSubTransport`, a call addressed to one connection is not sent
//! before the previous call to that connection was answered. A call that
//! was sent on a tunnel lost before its answer is not repeated (at most
//! once); calls made while the tunnel is down wait up to
//! [`SEND_WAIT`] for it to come back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_auth::{ClientTokenOptions, mint_client_token};
use portcullis_hub::{Applied, Filter, Hub, Operation, Outcome, Payload};
use portcullis_protocol::engine::{Packet as EioPacket, decode_payload};
use portcullis_tunnel::invoke::InvokeLineDecoder;
use portcullis_tunnel::pending::Pending;
use portcullis_tunnel::{HttpRequest, HttpResponse, TunnelMessage, frame};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use super::TunnelError;
use super::rest::{self, Call, Routed};
use crate::backend::RemoteAcks;
use crate::conn_id::ConnId;
use crate::io::IoInner;
use crate::packet::AckResponse;
use crate::packet::Decoder;

/// How long a call made while the tunnel is down waits for it.
pub(crate) const SEND_WAIT: Duration = Duration::from_secs(30);
/// Delay before re-opening a lost tunnel (the SDK's fixed 1 s).
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How long the gateway has to send `ConnectionConnected`.
const CONNECTED_WAIT: Duration = Duration::from_secs(10);
/// Lifetime of a tunnel token (re-minted at every connect).
const TOKEN_TTL: Duration = Duration::from_secs(3600);

type Writer = mpsc::UnboundedSender<Message>;

/// A REST call waiting for its turn.
pub(crate) struct Op {
    call: Call,
    /// The connection it addresses, for per-connection ordering.
    connection: Option<ConnId>,
    /// For `:invoke`: where the acknowledgements go.
    acks: Option<mpsc::UnboundedSender<AckResponse>>,
    /// Where the status of the first answer goes (the [`Applied`] of a hub
    /// operation); dropped unanswered if the call is lost.
    status: Option<oneshot::Sender<u16>>,
    queued_at: Instant,
}

/// A call sent and not fully answered.
struct InFlight {
    what: String,
    socket: u64,
    answered: Option<oneshot::Sender<()>>,
    status: Option<oneshot::Sender<u16>>,
    acks: Option<(InvokeLineDecoder, mpsc::UnboundedSender<AckResponse>)>,
    first: bool,
}

/// The tunnel of one `SocketIo`.
pub(crate) struct Link {
    hub: String,
    server_id: String,
    endpoint: Url,
    access_key: String,
    /// The TLS configuration of `wss://` tunnels (`https` endpoints).
    tls: Option<Arc<rustls::ClientConfig>>,
    pub(super) io: Weak<IoInner>,
    /// The group of every connection this process serves, so `:invoke`
    /// can leave them out (they get one packet each, see `operators`).
    pub(super) local_group: String,
    ops: mpsc::UnboundedSender<Op>,
    writer: watch::Sender<Option<(u64, Writer)>>,
    /// Calls sent and not fully answered, by ack id.
    calls: Pending<InFlight>,
    connected: AtomicBool,
    pub(super) stats: Stats,
}

/// Traffic counters of a tunnel.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub events: AtomicU64,
    pub user_events: AtomicU64,
    pub calls: AtomicU64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("hub", &self.hub)
            .field("server_id", &self.server_id)
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link and the receiving end of its call queue.
    pub fn new(
        hub: &str,
        server_id: String,
        endpoint: Url,
        access_key: String,
        tls: Option<Arc<rustls::ClientConfig>>,
        io: Weak<IoInner>,
    ) -> (Arc<Link>, mpsc::UnboundedReceiver<Op>) {
        let (ops, queue) = mpsc::unbounded_channel();
        let local_group = format!("portcullis.server.{server_id}");
        let link = Arc::new(Link {
            hub: hub.to_owned(),
            server_id,
            endpoint,
            access_key,
            tls,
            io,
            local_group,
            ops,
            writer: watch::Sender::new(None),
            calls: Pending::default(),
            connected: AtomicBool::new(false),
            stats: Stats::default(),
        });
        (link, queue)
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    // ----- calls -----

    fn enqueue_op(&self, op: Op) {
        if self.ops.send(op).is_err() {
            tracing::debug!(hub = %self.hub, "tunnel closed; call dropped");
        }
    }

    /// Puts a newly accepted connection in this process's group.
    pub fn adopt(&self, connection: &ConnId) {
        let call = rest::add_to_groups(
            &self.hub,
            connection,
            std::slice::from_ref(&self.local_group),
        );
        self.enqueue_op(Op {
            call,
            connection: Some(connection.clone()),
            acks: None,
            status: None,
            queued_at: Instant::now(),
        });
    }

    // ----- the wire -----

    /// `ws://host:port/path/server/tunnel?hub=HUB`: the token audience.
    pub fn tunnel_url(&self) -> String {
        let mut url = self.endpoint.clone();
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        // Switching between these special schemes cannot fail.
        let _ = url.set_scheme(scheme);
        let path = format!("{}server/tunnel", url.path());
        url.set_path(&path);
        url.set_query(None);
        url.set_fragment(None);
        format!("{url}?hub={}", self.hub)
    }

    fn token(&self) -> String {
        let options = ClientTokenOptions {
            user_id: Some(self.server_id.clone()),
            ttl: TOKEN_TTL,
            ..Default::default()
        };
        mint_client_token(&self.access_key, &self.tunnel_url(), &options)
    }

    /// Sends one call when a tunnel is up; `answered` fires at its first
    /// response (or when it fails).
    async fn write(&self, op: Op, answered: oneshot::Sender<()>) {
        let mut writers = self.writer.subscribe();
        let deadline = op.queued_at + SEND_WAIT;
        let (socket, writer) = loop {
            if let Some(current) = writers.borrow_and_update().clone() {
                break current;
            }
            match tokio::time::timeout_at(deadline, writers.changed()).await {
                Ok(Ok(())) => continue,
                _ => {
                    tracing::warn!(hub = %self.hub, call = %op.call.url, "tunnel down too long; call dropped");
                    return;
                }
            }
        };
        let ack_id = self.calls.insert(InFlight {
            what: format!("{} {}", op.call.method, op.call.url),
            socket,
            answered: Some(answered),
            status: op.status,
            acks: op.acks.map(|tx| (InvokeLineDecoder::default(), tx)),
            first: true,
        });
        let mut request = HttpRequest::new(ack_id, op.call.method, op.call.url);
        request.local_routing = true;
        if let Some(content_type) = op.call.content_type {
            request = request.with_header("Content-Type", content_type);
        }
        request.content = op.call.body;
        let encoded = frame::encode(&TunnelMessage::HttpRequest(request));
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        // A call too large for a frame is dropped like one on a closed tunnel.
        if !encoded.is_ok_and(|bytes| writer.send(Message::Binary(bytes)).is_ok()) {
            // The tunnel closed meanwhile; `fail_socket` drops the call.
            self.calls.remove(ack_id);
        }
    }

    fn on_response(&self, response: HttpResponse) {
        let last = !response.not_completed;
        self.calls.answer(response.ack_id, last, |call| {
            let ok = (200..300).contains(&response.status_code);
            if call.first {
                call.first = false;
                if !ok {
                    let body = response
                        .content
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    tracing::warn!(hub = %self.hub, call = %call.what, status = response.status_code, %body, "gateway refused a call");
                    call.acks = None;
                }
                if let Some(answered) = call.answered.take() {
                    let _ = answered.send(());
                }
                if let Some(status) = call.status.take() {
                    let _ = status.send(response.status_code);
                }
            }
            if let (Some((decoder, tx)), Some(chunk)) = (call.acks.as_mut(), &response.content) {
                for line in decoder.push(chunk) {
                    match line.ok().and_then(|payload| ack_of(&payload)) {
                        Some(ack) => {
                            let _ = tx.send(ack);
                        }
                        None => tracing::debug!(hub = %self.hub, "invalid :invoke line ignored"),
                    }
                }
            }
        });
    }

    /// The tunnel `socket` closed: its unanswered calls are given up.
    fn fail_socket(&self, socket: u64) {
        let lost = self.calls.retain(|call| call.socket != socket);
        if lost > 0 {
            tracing::warn!(hub = %self.hub, lost, "tunnel lost with calls unanswered");
        }
    }
}

/// The tunnel is a hub: each operation becomes the REST call the official
/// SDK makes for it ([`rest::route`]), queued in program order. Its outcome
/// is known only once the gateway answered, so it is [`Applied::pending`]
/// (the call is made whether or not that is awaited); an operation the REST
/// API cannot express is dropped with a warning and answered at once.
impl Hub for Link {
    fn name(&self) -> &str {
        &self.hub
    }

    fn apply(&self, operation: Operation) -> Applied {
        if let Operation::Close { who, reason } = &operation {
            tracing::debug!(hub = %self.hub, ?who, reason, "closing connections");
        }
        // What a call the REST API cannot carry answers.
        let unsupported = match &operation {
            Operation::Exists(_) => Outcome::Exists(false),
            Operation::GroupsOf(_) => Outcome::Groups(Vec::new()),
            Operation::Revoke(_) => Outcome::Done(false),
            _ => Outcome::Count(0),
        };
        let Some(Routed {
            call,
            connection,
            answer,
        }) = rest::route(&self.hub, operation)
        else {
            tracing::warn!(hub = %self.hub, ?unsupported, "an operation the tunnel's REST API cannot carry was dropped");
            return Applied::ready(unsupported);
        };
        let (status, answered) = oneshot::channel();
        self.enqueue_op(Op {
            call,
            connection,
            acks: None,
            status: Some(status),
            queued_at: Instant::now(),
        });
        Applied::pending(async move { answer.outcome(answered.await.ok()) })
    }
}

impl RemoteAcks for Link {
    /// One `:invoke` to the matching connections of other processes: this
    /// process's own connections (its group) are left out, they get one
    /// packet each with their own ack ids (see `operators`).
    fn invoke(&self, filter: &Filter, payload: Payload) -> mpsc::UnboundedReceiver<AckResponse> {
        let remote = filter.clone().and(Filter::Not(Box::new(Filter::InGroup(
            self.local_group.clone(),
        ))));
        let (tx, rx) = mpsc::unbounded_channel();
        self.enqueue_op(Op {
            call: rest::invoke(&self.hub, &remote, &payload),
            connection: None,
            acks: Some(tx),
            status: None,
            queued_at: Instant::now(),
        });
        rx
    }
}

/// The acknowledgement inside an `:invoke` line: an Engine.IO payload
/// holding one ACK / BINARY_ACK packet and its attachments.
pub(crate) fn ack_of(payload: &str) -> Option<AckResponse> {
    let mut decoder = Decoder::default();
    let mut packet = None;
    for record in decode_payload(payload).ok()? {
        packet = match record {
            EioPacket::Message(text) => decoder.text(&text).ok()?,
            EioPacket::Binary(bytes) => decoder.binary(bytes).ok()?,
            _ => return None,
        };
    }
    let packet = packet?;
    AckResponse::from_ack(packet.data, packet.attachments)
}

/// Sends the queued calls in order, holding a call to a connection until
/// the previous call to it was answered.
pub(crate) async fn dispatch(
    link: Arc<Link>,
    mut queue: mpsc::UnboundedReceiver<Op>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last: HashMap<ConnId, oneshot::Receiver<()>> = HashMap::new();
    loop {
        let op = tokio::select! {
            op = queue.recv() => match op {
                Some(op) => op,
                None => return,
            },
            _ = stop.wait_for(|stop| *stop) => return,
        };
        if let Some(connection) = &op.connection
            && let Some(previous) = last.remove(connection)
        {
            let _ = tokio::time::timeout(SEND_WAIT, previous).await;
        }
        let (answered, answer) = oneshot::channel();
        let connection = op.connection.clone();
        link.write(op, answered).await;
        if let Some(connection) = connection {
            if last.len() >= 1024 {
                last.retain(|_, rx| {
                    matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
                });
            }
            last.insert(connection, answer);
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a tunnel session ended.
enum End {
    /// Lost or replaced: open a new one.
    Reconnect,
    /// Closed for good (`ConnectionClose`, or the handle was dropped).
    Stop,
}

/// Keeps the tunnel open until `stop`, reporting the first attach (or why
/// it is refused) on `first`.
pub(crate) async fn run(
    link: Arc<Link>,
    first: oneshot::Sender<Result<(), TunnelError>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut first = Some(first);
    let mut sockets = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        match open(&link).await {
            Ok(ws) => {
                sockets += 1;
                match session(&link, ws, sockets, &mut first, &mut stop).await {
                    End::Stop => return,
                    End::Reconnect => {}
                }
            }
            Err(error) => {
                if error.is_permanent()
                    && let Some(first) = first.take()
                {
                    let _ = first.send(Err(error));
                    return;
                }
                tracing::warn!(hub = %link.hub, %error, "tunnel to the gateway failed; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

async fn open(link: &Link) -> Result<Ws, TunnelError> {
    let url = format!(
        "{}&access_token={}",
        link.tunnel_url(),
        form_urlencoded::byte_serialize(link.token().as_bytes()).collect::<String>()
    );
    use tokio_tungstenite::tungstenite::Error;
    let connector = link.tls.clone().map(tokio_tungstenite::Connector::Rustls);
    // No Nagle: tunnel frames are small and latency-bound.
    match tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector).await {
        Ok((ws, _)) => Ok(ws),
        Err(Error::Http(response)) => {
            let message = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(TunnelError::Refused {
                status: response.status().as_u16(),
                message,
            })
        }
        Err(e) => match super::tls::tls_failure(&e) {
            Some(reason) => Err(TunnelError::Tls(reason)),
            None => Err(TunnelError::Connect(e.to_string())),
        },
    }
}

async fn session(
    link: &Arc<Link>,
    ws: Ws,
    socket: u64,
    first: &mut Option<oneshot::Sender<Result<(), TunnelError>>>,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let (mut sink, mut stream) = ws.split();
    // The gateway's first message must be ConnectionConnected.
    let hello = tokio::time::timeout(CONNECTED_WAIT, stream.next()).await;
    match hello {
        Ok(Some(Ok(Message::Binary(bytes))))
            if matches!(
                frame::decode(&bytes),
                Ok(TunnelMessage::ConnectionConnected { .. })
            ) => {}
        _ => {
            tracing::warn!(hub = %link.hub, "the gateway did not confirm the tunnel");
            return End::Reconnect;
        }
    }
    let (writer, mut outgoing) = mpsc::unbounded_channel::<Message>();
    let pump = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let close = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    link.writer.send_replace(Some((socket, writer.clone())));
    link.connected.store(true, Ordering::Release);
    tracing::info!(hub = %link.hub, server = %link.server_id, "tunnel to the gateway open");
    if let Some(first) = first.take() {
        let _ = first.send(Ok(()));
    }
    let end = loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = stop.wait_for(|stop| *stop) => {
                let _ = writer.send(Message::Close(None));
                break End::Stop;
            }
        };
        let bytes = match message {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break End::Reconnect,
            Some(Ok(_)) => continue,
        };
        match frame::decode(&bytes) {
            Ok(TunnelMessage::HttpResponse(response)) => link.on_response(response),
            Ok(TunnelMessage::HttpRequest(request)) => {
                let response = super::events::handle(link, &request);
                if let Ok(bytes) = frame::encode(&TunnelMessage::HttpResponse(response)) {
                    let _ = writer.send(Message::Binary(bytes));
                }
            }
            Ok(TunnelMessage::ConnectionClose { message }) => {
                tracing::warn!(hub = %link.hub, %message, "the gateway closed the tunnel for good");
                break End::Stop;
            }
            Ok(TunnelMessage::ConnectionReconnect { .. }) => break End::Reconnect,
            Ok(_) => {}
            Err(error) => tracing::warn!(hub = %link.hub, %error, "invalid tunnel frame dropped"),
        }
    };
    link.connected.store(false, Ordering::Release);
    link.writer.send_if_modified(|current| match current {
        Some((id, _)) if *id == socket => {
            *current = None;
            true
        }
        _ => false,
    });
    link.fail_socket(socket);
    drop(writer);
    let _ = tokio::time::timeout(Duration::from_secs(1), pump).await;
    if matches!(end, End::Reconnect) {
        tracing::warn!(hub = %link.hub, "tunnel to the gateway lost; reconnecting");
    }
    end
}

#[cfg(test)]
mod tests {
    use portcullis_hub::Selection;

    use super::*;
    use crate::backend::Backend;

    fn link() -> (Arc<Link>, mpsc::UnboundedReceiver<Op>) {
        let endpoint = Url::parse("http://127.0.0.1:8080").unwrap();
        Link::new("chat", "s".into(), endpoint, "k".into(), None, Weak::new())
    }

    #[test]
    fn a_room_leave_is_a_call_in_line_with_the_connections_others() {
        let (link, mut queue) = link();
        let backend = Backend::new(link.clone());
        let c = ConnId::new("c1");
        backend.leave(&c, vec!["0~L2NoYXQ~cm9vbQ".into()]);
        let op = queue.try_recv().unwrap();
        assert_eq!(op.call.method, "DELETE");
        assert_eq!(op.connection, Some(c));
    }

    #[tokio::test]
    async fn operations_are_queued_in_order_and_pending_until_answered() {
        let (link, mut queue) = link();
        let sent = link.apply(Operation::Send {
            to: Selection::connection("c1"),
            payload: Payload::packet(EioPacket::Noop),
        });
        let closed = link.apply(Operation::Close {
            who: Selection::connection("c1"),
            reason: "bye".into(),
        });
        let first = queue.try_recv().unwrap();
        let second = queue.try_recv().unwrap();
        assert_eq!(first.call.body.as_deref(), Some(&b"6"[..]));
        assert_eq!(second.call.body.as_deref(), Some(&b"1"[..]));
        // Answered: accepted; lost with the tunnel: not.
        let _ = first.status.unwrap().send(202);
        assert_eq!(sent.await, Outcome::Count(1));
        drop(second);
        assert_eq!(closed.await, Outcome::Count(0));
        // Unroutable: answered at once, nothing queued.
        let groups = link.apply(Operation::GroupsOf("c1".into())).now();
        assert_eq!(groups, Some(Outcome::Groups(Vec::new())));
        assert!(queue.try_recv().is_err());
    }
}

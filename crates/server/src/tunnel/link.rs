//! The application server's end of the server tunnel: one WebSocket to the
//! gateway, re-opened with a fresh token a second after it is lost, REST
//! calls correlated by AckId, and the gateway's CloudEvents answered.
//!
//! Clusters: a gateway node that is one of several sends a
//! `ConnectionRebalance` per other live node on the tunnel (the one opened
//! from the connection string, without `target`). Like the official SDK,
//! the link then opens an additional WebSocket to that node's endpoint
//! with `&target=<node id>`, so the clients of that node reach this server
//! too ([`run_target`]). Such a targeted WebSocket carries the node's
//! CloudEvents and their answers only: every REST call still leaves on the
//! main WebSocket, in order, and the cluster delivers it wherever its
//! connections are. A targeted WebSocket ignores rebalances, is opened at
//! most once per node while it lives, is retried with a bounded backoff
//! and closes with the tunnel.
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
use std::sync::{Arc, Mutex, Weak};
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
/// Attempts in a row to open a targeted WebSocket before it is given up
/// (the node is probably gone; the next rebalance names it again if not).
const TARGET_ATTEMPTS: u32 = 8;
/// The longest wait between two attempts on a targeted WebSocket (the
/// waits double from [`RECONNECT_DELAY`]): 1, 2, 4, 8, 16, 30, 30 s.
const TARGET_MAX_DELAY: Duration = Duration::from_secs(30);

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
    /// The WebSockets opened for `ConnectionRebalance`, by node id.
    targets: Mutex<HashMap<String, TargetLink>>,
    /// Tells the entries of `targets` apart across re-opens.
    target_generation: AtomicU64,
    pub(super) stats: Stats,
}

/// A targeted WebSocket's task, alive from the rebalance that named the
/// node until it is given up or the tunnel stops.
#[derive(Debug)]
struct TargetLink {
    generation: u64,
    /// Whether the gateway confirmed it (open right now).
    open: bool,
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
            targets: Mutex::new(HashMap::new()),
            target_generation: AtomicU64::new(0),
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
        tunnel_url(&self.endpoint, &self.hub, None)
    }

    /// A token for the tunnel at `url` (its audience, as the SDK signs).
    fn token(&self, url: &str) -> String {
        let options = ClientTokenOptions {
            user_id: Some(self.server_id.clone()),
            ttl: TOKEN_TTL,
            ..Default::default()
        };
        mint_client_token(&self.access_key, url, &options)
    }

    /// The nodes a targeted WebSocket is open to right now, sorted.
    pub fn open_targets(&self) -> Vec<String> {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        let mut open: Vec<String> = targets
            .iter()
            .filter(|(_, link)| link.open)
            .map(|(id, _)| id.clone())
            .collect();
        open.sort();
        open
    }

    /// A `ConnectionRebalance` named node `target` at `endpoint`: opens a
    /// WebSocket to it unless one lives (open or being retried).
    fn rebalance(self: &Arc<Self>, target: String, endpoint: &str, stop: watch::Receiver<bool>) {
        if *stop.borrow() {
            return;
        }
        if target.is_empty() {
            tracing::warn!(hub = %self.hub, %endpoint, "rebalance without a target id ignored");
            return;
        }
        // No endpoint: through this server's own (the load balancer),
        // as the SDK does; the gateway relays it to the target.
        let parsed = match endpoint {
            "" => Ok(self.endpoint.clone()),
            endpoint => target_endpoint(endpoint),
        };
        let endpoint = match parsed {
            Ok(endpoint) => endpoint,
            Err(reason) => {
                tracing::warn!(hub = %self.hub, %target, %endpoint, reason, "rebalance to an unusable endpoint ignored");
                return;
            }
        };
        let generation = {
            let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
            if targets.contains_key(&target) {
                tracing::debug!(hub = %self.hub, %target, "rebalance to a node already linked");
                return;
            }
            let generation = self.target_generation.fetch_add(1, Ordering::Relaxed);
            targets.insert(
                target.clone(),
                TargetLink {
                    generation,
                    open: false,
                },
            );
            generation
        };
        tracing::info!(hub = %self.hub, %target, endpoint = %endpoint.as_str(), "rebalance: opening a tunnel to another node");
        tokio::spawn(run_target(self.clone(), target, endpoint, generation, stop));
    }

    /// Marks the targeted WebSocket of `generation` open or closed.
    fn target_open(&self, target: &str, generation: u64, open: bool) {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(link) = targets.get_mut(target)
            && link.generation == generation
        {
            link.open = open;
        }
    }

    /// The task of `generation` ended: a later rebalance may re-open it.
    fn forget_target(&self, target: &str, generation: u64) {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if targets
            .get(target)
            .is_some_and(|link| link.generation == generation)
        {
            targets.remove(target);
        }
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

/// `ws(s)://host:port/path/server/tunnel?hub=HUB[&target=ID]`, the URL
/// the SDK builds (`TunnelConnection.getUrl`) and so the token audience:
/// `http` becomes `ws` and `https` `wss`, `server/tunnel` is appended to
/// the endpoint's path.
fn tunnel_url(endpoint: &Url, hub: &str, target: Option<&str>) -> String {
    let mut url = endpoint.clone();
    let scheme = match url.scheme() {
        "https" | "wss" => "wss",
        _ => "ws",
    };
    // Switching between these special schemes cannot fail.
    let _ = url.set_scheme(scheme);
    let path = url.path();
    let path = if path.ends_with('/') {
        format!("{path}server/tunnel")
    } else {
        format!("{path}/server/tunnel")
    };
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    match target {
        Some(target) => format!(
            "{url}?hub={hub}&target={}",
            form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
        ),
        None => format!("{url}?hub={hub}"),
    }
}

/// The `Endpoint` of a rebalance: an `http(s)://` (or `ws(s)://`) base URL.
fn target_endpoint(endpoint: &str) -> Result<Url, &'static str> {
    let url = Url::parse(endpoint).map_err(|_| "not a URL")?;
    if !matches!(url.scheme(), "http" | "https" | "ws" | "wss") {
        return Err("not an http(s) or ws(s) URL");
    }
    if url.host().is_none() {
        return Err("no host");
    }
    Ok(url)
}

/// How a tunnel session ended.
enum End {
    /// The gateway never confirmed it: try again.
    Unconfirmed,
    /// Lost or replaced after it was confirmed: open a new one.
    Reconnect,
    /// Closed for good (`ConnectionClose`, or the handle was dropped).
    Stop,
}

/// Which WebSocket of the tunnel a session is.
enum Role<'a> {
    /// The one of the connection string: it carries every REST call and
    /// follows rebalances.
    Main {
        /// Tells this WebSocket's calls apart from an earlier one's.
        socket: u64,
        /// Where the first attach is reported.
        first: &'a mut Option<oneshot::Sender<Result<(), TunnelError>>>,
    },
    /// One opened for a rebalance to node `target`: it carries that node's
    /// CloudEvents and their answers only.
    Target { target: &'a str, generation: u64 },
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
        let url = link.tunnel_url();
        match open(&link, &url, link.tls.clone()).await {
            Ok(ws) => {
                sockets += 1;
                let role = Role::Main {
                    socket: sockets,
                    first: &mut first,
                };
                match session(&link, ws, role, &mut stop).await {
                    End::Stop => return,
                    End::Reconnect | End::Unconfirmed => {}
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

/// Keeps a WebSocket to node `target` at `endpoint` open (one
/// `ConnectionRebalance` asked for it) until `stop`, `ConnectionClose`, a
/// refusal that retrying cannot help, or [`TARGET_ATTEMPTS`] failed
/// attempts in a row; the waits between attempts double from
/// [`RECONNECT_DELAY`] up to [`TARGET_MAX_DELAY`] and start over once the
/// node confirmed a WebSocket.
pub(crate) async fn run_target(
    link: Arc<Link>,
    target: String,
    endpoint: Url,
    generation: u64,
    mut stop: watch::Receiver<bool>,
) {
    let url = tunnel_url(&endpoint, &link.hub, Some(&target));
    let tls = match (url.starts_with("wss:"), &link.tls) {
        (false, _) => None,
        (true, Some(tls)) => Some(tls.clone()),
        // A plain tunnel redirected to TLS: the public web PKI.
        (true, None) => super::TunnelOptions::new().client_config().ok(),
    };
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            break;
        }
        let failed = match open(&link, &url, tls.clone()).await {
            Ok(ws) => {
                let role = Role::Target {
                    target: &target,
                    generation,
                };
                match session(&link, ws, role, &mut stop).await {
                    End::Stop => break,
                    End::Reconnect => false,
                    End::Unconfirmed => true,
                }
            }
            Err(error) if error.is_permanent() => {
                tracing::warn!(hub = %link.hub, %target, %error, "tunnel to another node refused; given up");
                break;
            }
            Err(error) => {
                tracing::warn!(hub = %link.hub, %target, %error, "tunnel to another node failed");
                true
            }
        };
        let delay = if failed {
            failures += 1;
            if failures >= TARGET_ATTEMPTS {
                tracing::warn!(hub = %link.hub, %target, attempts = failures, "tunnel to another node given up");
                break;
            }
            RECONNECT_DELAY
                .saturating_mul(1 << (failures - 1).min(16))
                .min(TARGET_MAX_DELAY)
        } else {
            failures = 0;
            RECONNECT_DELAY
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    link.forget_target(&target, generation);
}

/// Opens the tunnel WebSocket at `url` with a fresh token for it.
async fn open(
    link: &Link,
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Ws, TunnelError> {
    let url = format!(
        "{url}&access_token={}",
        form_urlencoded::byte_serialize(link.token(url).as_bytes()).collect::<String>()
    );
    use tokio_tungstenite::tungstenite::Error;
    let connector = tls.map(tokio_tungstenite::Connector::Rustls);
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
    mut role: Role<'_>,
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
            return End::Unconfirmed;
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
    match &mut role {
        Role::Main { socket, first } => {
            link.writer.send_replace(Some((*socket, writer.clone())));
            link.connected.store(true, Ordering::Release);
            tracing::info!(hub = %link.hub, server = %link.server_id, "tunnel to the gateway open");
            if let Some(first) = first.take() {
                let _ = first.send(Ok(()));
            }
        }
        Role::Target { target, generation } => {
            link.target_open(target, *generation, true);
            tracing::info!(hub = %link.hub, server = %link.server_id, %target, "tunnel to another node open");
        }
    }
    let main = matches!(role, Role::Main { .. });
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
            // Calls leave on the main WebSocket only.
            Ok(TunnelMessage::HttpResponse(response)) if main => link.on_response(response),
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
            Ok(TunnelMessage::ConnectionRebalance {
                target_id,
                endpoint,
                ..
            }) => {
                if main {
                    link.rebalance(target_id, &endpoint, stop.clone());
                } else {
                    tracing::debug!(hub = %link.hub, %target_id, "rebalance on a targeted tunnel ignored");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(hub = %link.hub, %error, "invalid tunnel frame dropped"),
        }
    };
    match &role {
        Role::Main { socket, .. } => {
            let socket = *socket;
            link.connected.store(false, Ordering::Release);
            link.writer.send_if_modified(|current| match current {
                Some((id, _)) if *id == socket => {
                    *current = None;
                    true
                }
                _ => false,
            });
            link.fail_socket(socket);
        }
        Role::Target { target, generation } => link.target_open(target, *generation, false),
    }
    drop(writer);
    let _ = tokio::time::timeout(Duration::from_secs(1), pump).await;
    if matches!(end, End::Reconnect) {
        match &role {
            Role::Main { .. } => {
                tracing::warn!(hub = %link.hub, "tunnel to the gateway lost; reconnecting");
            }
            Role::Target { target, .. } => {
                tracing::warn!(hub = %link.hub, %target, "tunnel to another node lost; reconnecting");
            }
        }
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
    fn targeted_tunnel_urls_are_the_sdks() {
        let node = target_endpoint("http://127.0.0.3:8080").unwrap();
        assert_eq!(
            tunnel_url(&node, "chat", Some("node-b")),
            "ws://127.0.0.3:8080/server/tunnel?hub=chat&target=node-b"
        );
        let node = target_endpoint("https://gw.example:8443/base").unwrap();
        assert_eq!(
            tunnel_url(&node, "chat", Some("a b/c")),
            "wss://gw.example:8443/base/server/tunnel?hub=chat&target=a+b%2Fc"
        );
        let node = target_endpoint("http://h/base/?x=1#f").unwrap();
        assert_eq!(
            tunnel_url(&node, "chat", None),
            "ws://h/base/server/tunnel?hub=chat"
        );
        assert!(target_endpoint("127.0.0.3:8080").is_err());
        assert!(target_endpoint("not a url").is_err());
        assert!(target_endpoint("ftp://h/").is_err());
    }

    #[tokio::test]
    async fn one_targeted_link_per_node_and_none_once_stopped() {
        let (link, _queue) = link();
        let (stop, stopped) = watch::channel(false);
        // Nothing listens on port 9 of 127.0.0.1: the task keeps retrying.
        link.rebalance("b".into(), "http://127.0.0.1:9", stopped.clone());
        link.rebalance("b".into(), "http://127.0.0.1:9", stopped.clone());
        link.rebalance("".into(), "http://127.0.0.1:9", stopped.clone());
        link.rebalance("c".into(), "nowhere", stopped.clone());
        let generations: Vec<u64> = {
            let targets = link.targets.lock().unwrap();
            assert_eq!(targets.keys().collect::<Vec<_>>(), ["b"]);
            targets.values().map(|t| t.generation).collect()
        };
        assert_eq!(generations, [0]);
        assert!(link.open_targets().is_empty(), "never confirmed");
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), async {
            while !link.targets.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the task ends with the tunnel");
        link.rebalance("b".into(), "http://127.0.0.1:9", stopped);
        assert!(
            link.targets.lock().unwrap().is_empty(),
            "stopped: none opened"
        );
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

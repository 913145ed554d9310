//! Socket.IO v5 conformance suite, run against an application built on this
//! crate behind the gateway, embedded and over the server tunnel.
//!
//! Written from the Socket.IO v5 / Engine.IO v4 protocols and the case list
//! of the official `socketio/socket.io-protocol` test-suite
//! (`test-suite/test-suite.js`): 16 Engine.IO cases (handshake ×7,
//! heartbeat ×4, close ×2, upgrade ×3) and 16 Socket.IO cases (connect ×7,
//! disconnect ×2, message ×7), each run in both attach modes.
//!
//! The application is the suite's reference server: ping interval 300 ms,
//! ping timeout 200 ms, `maxPayload` 1 000 000, `connectTimeout` 1000 ms; on
//! `/` it emits `auth` with the CONNECT payload, answers `message` with
//! `message-back` and the same arguments, and acknowledges
//! `message-with-ack` with its arguments; `/custom` emits `auth`. The
//! client endpoint is the gateway's `/clients/socketio/hubs/{hub}/`, and
//! every request carries an access token.
//!
//! Race-freedom: unlike the official JS suite (which attaches listeners
//! after awaits, and loses frames that arrive together), frames are read
//! sequentially from the stream, and every await is bounded ([`within`]).
//! The only sleeps are the waits the heartbeat-timeout cases are about, and
//! one that lets a poll become pending before the upgrade that must find it
//! pending.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use portcullis_auth::{AccessKeys, ClientTokenOptions, mint_client_token};
use portcullis_gateway::{Gateway, GatewayConfig};
use portcullis_server::extract::{AckSender, Bin, Data};
use portcullis_server::{SocketIo, SocketRef, TunnelHandle};
use reqwest::{Method, StatusCode};
use serde::ser::{Serialize, SerializeTuple, Serializer};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const KEY: &str = "conformance-access-key";
const HUB: &str = "conformance";
const PING_INTERVAL: Duration = Duration::from_millis(300);
const PING_TIMEOUT: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
const MAX_PAYLOAD: u64 = 1_000_000;
/// Bound on every single await.
const STEP: Duration = Duration::from_secs(5);
/// Scheduling slack allowed on top of protocol timings.
const SLACK: Duration = Duration::from_millis(700);
/// Lets a spawned GET reach the gateway and become pending (there is no
/// observable signal for "the server holds this poll").
const SETTLE: Duration = Duration::from_millis(100);
const SEP: char = '\x1e';

// ---------------------------------------------------------------------------
// The reference application
// ---------------------------------------------------------------------------

/// Arguments spread back into an emit or an ack (a tuple of any length).
struct Spread(Vec<Value>);

impl Serialize for Spread {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for value in &self.0 {
            tuple.serialize_element(value)?;
        }
        tuple.end()
    }
}

/// The arguments as the handler got them (one as itself, several as an
/// array) back to a list. The suite never sends a single array argument.
fn args(data: Value) -> Spread {
    match data {
        Value::Null => Spread(Vec::new()),
        Value::Array(values) => Spread(values),
        one => Spread(vec![one]),
    }
}

fn emit_auth(socket: &SocketRef) {
    let auth = match socket.handshake().auth() {
        Value::Null => json!({}),
        auth => auth.clone(),
    };
    socket.emit("auth", &auth).ok();
}

fn reference_app() -> SocketIo {
    let io = SocketIo::builder()
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .max_payload(MAX_PAYLOAD)
        .connect_timeout(CONNECT_TIMEOUT)
        .build();
    io.ns("/", |socket: SocketRef| async move {
        emit_auth(&socket);
        socket.on(
            "message",
            |socket: SocketRef, Data(data): Data<Value>, Bin(bin): Bin| async move {
                socket.bin(bin).emit("message-back", &args(data)).ok();
            },
        );
        socket.on(
            "message-with-ack",
            |Data(data): Data<Value>, Bin(bin): Bin, ack: AckSender| async move {
                ack.bin(bin).send(&args(data)).ok();
            },
        );
    });
    io.ns("/custom", |socket: SocketRef| async move {
        emit_auth(&socket);
    });
    io
}

fn token_for(addr: SocketAddr) -> String {
    mint_client_token(
        KEY,
        &format!("http://{addr}/clients/socketio/hubs/{HUB}"),
        &ClientTokenOptions {
            user_id: Some("conformance".into()),
            ..Default::default()
        },
    )
}

/// Waits until every node sees the three.
async fn wait_for_nodes(addrs: &[SocketAddr]) {
    for _ in 0..200 {
        let mut all = true;
        for addr in addrs {
            let health: Value = reqwest::get(format!("http://{addr}/health"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            all &= health["nodes"].as_u64() == Some(addrs.len() as u64);
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the nodes never saw one another");
}

/// A gateway on loopback with the reference application attached; or, in
/// the cluster mode, three gateway nodes sharing the hub through Redis,
/// each with the application embedded, and every request of the suite sent
/// to the next node in turn (no sticky sessions: the nodes forward polls
/// and relay upgrades to the session's owner).
struct App {
    addrs: Vec<SocketAddr>,
    next: std::sync::atomic::AtomicUsize,
    http: reqwest::Client,
    token: String,
    _io: Vec<SocketIo>,
    _tunnel: Option<TunnelHandle>,
    _shutdown: Vec<oneshot::Sender<()>>,
}

#[derive(Clone, Copy)]
enum Mode {
    Embedded,
    Tunnel,
    Cluster,
}

/// Redis for the cluster mode (`scripts/redis ensure` starts one).
fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

impl App {
    async fn start(mode: Mode) -> App {
        if let Mode::Cluster = mode {
            return Self::start_cluster().await;
        }
        Self::start_one(mode).await
    }

    async fn start_cluster() -> App {
        let prefix = format!("conformance-{}", portcullis_cluster::NodeId::generate());
        let mut addrs = Vec::new();
        let mut apps = Vec::new();
        let mut shutdowns = Vec::new();
        for n in 0..3 {
            let io = reference_app();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let keys = AccessKeys::new(vec![KEY.to_owned()]).unwrap();
            let mut config = GatewayConfig::new(addr, keys);
            let redis = portcullis_cluster::RedisConfig::new(vec![redis_url()], false);
            let node = portcullis_cluster::NodeInfo {
                id: portcullis_cluster::NodeId::parse(&format!("n{n}")).unwrap(),
                advertise: url::Url::parse(&format!("http://{addr}/")).unwrap(),
            };
            let mut cluster = portcullis_cluster::ClusterConfig::new(redis, node);
            cluster.prefix = prefix.clone();
            cluster.heartbeat = Duration::from_millis(100);
            config.cluster = Some(cluster);
            let gateway = Gateway::new(config);
            io.attach(&gateway, HUB).expect("attach");
            let (shutdown, rx) = oneshot::channel::<()>();
            tokio::spawn(gateway.serve(listener, async move {
                rx.await.ok();
            }));
            addrs.push(addr);
            apps.push(io);
            shutdowns.push(shutdown);
        }
        wait_for_nodes(&addrs).await;
        App {
            token: token_for(addrs[0]),
            addrs,
            next: Default::default(),
            http: reqwest::Client::new(),
            _io: apps,
            _tunnel: None,
            _shutdown: shutdowns,
        }
    }

    /// The address of the next request (always the same one alone).
    fn addr(&self) -> SocketAddr {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.addrs[n % self.addrs.len()]
    }

    async fn start_one(mode: Mode) -> App {
        let io = reference_app();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let keys = AccessKeys::new(vec![KEY.to_owned()]).unwrap();
        let gateway = Gateway::new(GatewayConfig::new(addr, keys));
        let connection_string = gateway.connection_string(addr).to_string();
        if let Mode::Embedded = mode {
            io.attach(&gateway, HUB).expect("attach");
        }
        let (shutdown, rx) = oneshot::channel::<()>();
        tokio::spawn(gateway.serve(listener, async move {
            rx.await.ok();
        }));
        let tunnel = match mode {
            Mode::Embedded | Mode::Cluster => None,
            Mode::Tunnel => Some(
                within("the tunnel", io.connect_tunnel(&connection_string, HUB))
                    .await
                    .expect("tunnel"),
            ),
        };
        App {
            token: token_for(addr),
            addrs: vec![addr],
            next: Default::default(),
            http: reqwest::Client::new(),
            _io: vec![io],
            _tunnel: tunnel,
            _shutdown: vec![shutdown],
        }
    }

    fn url(&self, query: &str) -> String {
        format!(
            "http://{}/clients/socketio/hubs/{HUB}/?{query}&access_token={}",
            self.addr(),
            self.token
        )
    }

    fn polling_url(&self, sid: &str) -> String {
        self.url(&format!("EIO=4&transport=polling&sid={sid}"))
    }

    fn ws_url(&self, query: &str) -> String {
        format!(
            "ws://{}/clients/socketio/hubs/{HUB}/?{query}&access_token={}",
            self.addr(),
            self.token
        )
    }

    async fn request(&self, method: Method, url: String, body: Option<&str>) -> Reply {
        fetch(self.http.clone(), method, url, body.map(str::to_owned)).await
    }

    async fn get(&self, url: String) -> Reply {
        self.request(Method::GET, url, None).await
    }

    async fn post(&self, url: String, body: &str) -> Reply {
        self.request(Method::POST, url, Some(body)).await
    }

    fn spawn_poll(&self, sid: &str) -> tokio::task::JoinHandle<Reply> {
        tokio::spawn(fetch(
            self.http.clone(),
            Method::GET,
            self.polling_url(sid),
            None,
        ))
    }

    async fn open_polling(&self) -> String {
        let reply = self.get(self.url("EIO=4&transport=polling")).await;
        let packets = reply.packets("polling handshake");
        assert_eq!(packets.len(), 1, "the open packet alone: {reply:?}");
        check_open(&packets[0], &["websocket"])
    }

    async fn send(&self, sid: &str, body: &str) {
        let reply = self.post(self.polling_url(sid), body).await;
        assert_eq!(reply.status, StatusCode::OK, "POST {body:?}: {reply:?}");
    }

    async fn connect(&self, query: &str) -> Result<Ws, tungstenite::Error> {
        within("WebSocket connect", connect_async(self.ws_url(query)))
            .await
            .map(|(ws, _)| ws)
    }

    async fn open_ws(&self) -> (Ws, String) {
        let mut ws = self
            .connect("EIO=4&transport=websocket")
            .await
            .expect("WebSocket handshake");
        let open = next_text(&mut ws).await;
        let sid = check_open(&open, &[]);
        (ws, sid)
    }

    /// A WebSocket session connected to `/` (the suite's
    /// `initSocketIOConnection`): open, `40`, the CONNECT answer and `auth`.
    async fn socket_io(&self) -> Ws {
        let (mut ws, _) = self.open_ws().await;
        send_text(&mut ws, "40").await;
        let connect = next_sio(&mut ws).await;
        assert!(connect.starts_with("40{"), "CONNECT answer: {connect}");
        assert_eq!(next_sio(&mut ws).await, r#"42["auth",{}]"#);
        ws
    }

    async fn probe(&self, sid: &str) -> Ws {
        let mut ws = self
            .connect(&format!("EIO=4&transport=websocket&sid={sid}"))
            .await
            .expect("upgrade WebSocket");
        send_text(&mut ws, "2probe").await;
        assert_eq!(next_text(&mut ws).await, "3probe", "probe answer");
        ws
    }
}

// ---------------------------------------------------------------------------
// Support
// ---------------------------------------------------------------------------

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {STEP:?} waiting for {what}"),
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Reply {
    fn packets(&self, what: &str) -> Vec<String> {
        assert_eq!(self.status, StatusCode::OK, "{what}: {self:?}");
        assert!(
            self.content_type.starts_with("text/plain"),
            "{what}: polling content type: {self:?}"
        );
        self.body.split(SEP).map(str::to_owned).collect()
    }
}

async fn fetch(
    client: reqwest::Client,
    method: Method,
    url: String,
    body: Option<String>,
) -> Reply {
    let mut request = client.request(method.clone(), &url);
    if let Some(body) = body {
        request = request
            .header("content-type", "text/plain; charset=UTF-8")
            .body(body);
    }
    let response = within(&format!("{method} {url}"), request.send())
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = within("response body", response.text())
        .await
        .unwrap_or_else(|e| panic!("{method} {url} body: {e}"));
    Reply {
        status,
        content_type,
        body,
    }
}

fn check_open(packet: &str, upgrades: &[&str]) -> String {
    let json = packet
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("the open packet starts with 0: {packet:?}"));
    let value: Value = serde_json::from_str(json).expect("open packet JSON");
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ]
    );
    assert_eq!(value["upgrades"], json!(upgrades));
    assert_eq!(value["pingInterval"], json!(300));
    assert_eq!(value["pingTimeout"], json!(200));
    assert_eq!(value["maxPayload"], json!(MAX_PAYLOAD));
    let sid = value["sid"].as_str().expect("sid is a string");
    assert!(!sid.is_empty());
    sid.to_owned()
}

async fn send_text(ws: &mut Ws, text: &str) {
    within("WebSocket send", ws.send(Message::text(text)))
        .await
        .unwrap_or_else(|e| panic!("send {text:?}: {e}"));
}

async fn send_binary(ws: &mut Ws, bytes: &[u8]) {
    within("WebSocket send", ws.send(Message::binary(bytes.to_vec())))
        .await
        .unwrap_or_else(|e| panic!("send binary: {e}"));
}

async fn next_data(ws: &mut Ws) -> Message {
    loop {
        match within("a WebSocket frame", ws.next()).await {
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => return message,
            Some(Ok(Message::Close(frame))) => panic!("socket closed by server: {frame:?}"),
            Some(Err(e)) => panic!("socket failed: {e}"),
            None => panic!("socket ended"),
        }
    }
}

async fn next_text(ws: &mut Ws) -> String {
    match next_data(ws).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The next frame that is not a ping (pings are answered).
async fn next_non_ping(ws: &mut Ws) -> Message {
    loop {
        let message = next_data(ws).await;
        if matches!(&message, Message::Text(t) if t.as_str() == "2") {
            send_text(ws, "3").await;
            continue;
        }
        return message;
    }
}

/// The next Socket.IO packet (text), pings answered.
async fn next_sio(ws: &mut Ws) -> String {
    match next_non_ping(ws).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    match next_non_ping(ws).await {
        Message::Binary(bytes) => bytes.to_vec(),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

/// Waits until the server closes `ws`; pings are not answered, other data
/// fails. Returns whether a ping was seen.
async fn expect_closed(ws: &mut Ws, what: &str) -> bool {
    let mut saw_ping = false;
    loop {
        match within(what, ws.next()).await {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => saw_ping = true,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => return saw_ping,
            Some(Ok(other)) => panic!("{what}: expected the socket to close, got {other:?}"),
        }
    }
}

fn assert_ws_refused(result: Result<Ws, tungstenite::Error>, what: &str) {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}")
        }
        Err(other) => panic!("{what}: expected HTTP 400, got {other}"),
        Ok(_) => panic!("{what}: the WebSocket handshake should be refused"),
    }
}

/// Each case runs embedded and over the tunnel.
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::App::start(super::Mode::Embedded).await).await
            })*
        }
        mod tunnel {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::App::start(super::Mode::Tunnel).await).await
            })*
        }
        mod cluster {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::App::start(super::Mode::Cluster).await).await
            })*
        }
    };
}

cases!(
    eio_handshake_polling_opens_a_session,
    eio_handshake_polling_fails_with_invalid_eio,
    eio_handshake_polling_fails_with_invalid_transport,
    eio_handshake_polling_fails_with_invalid_method,
    eio_handshake_websocket_opens_a_session,
    eio_handshake_websocket_fails_with_invalid_eio,
    eio_handshake_websocket_fails_with_invalid_transport,
    eio_heartbeat_polling_sends_ping_pong_packets,
    eio_heartbeat_polling_closes_upon_ping_timeout,
    eio_heartbeat_websocket_sends_ping_pong_packets,
    eio_heartbeat_websocket_closes_upon_ping_timeout,
    eio_close_polling_forcefully_closes_the_session,
    eio_close_websocket_forcefully_closes_the_session,
    eio_upgrade_from_polling_to_websocket,
    eio_upgrade_ignores_http_requests_with_same_sid_after_upgrade,
    eio_upgrade_ignores_websocket_with_same_sid_after_upgrade,
    sio_connect_main_namespace,
    sio_connect_main_namespace_with_payload,
    sio_connect_custom_namespace,
    sio_connect_custom_namespace_with_payload,
    sio_connect_unknown_namespace_is_refused,
    sio_connect_invalid_handshake_closes,
    sio_connect_closes_if_no_connect_is_received,
    sio_disconnect_from_main_namespace,
    sio_disconnect_connect_then_disconnect_custom_namespace,
    sio_message_plain_text,
    sio_message_binary_attachments,
    sio_message_plain_text_with_ack,
    sio_message_binary_attachments_with_ack,
    sio_message_closes_upon_unknown_packet_type,
    sio_message_closes_upon_invalid_payload_format,
    sio_message_closes_upon_invalid_ack_id,
);

// ---------------------------------------------------------------------------
// Engine.IO: handshake
// ---------------------------------------------------------------------------

async fn eio_handshake_polling_opens_a_session(app: App) {
    let reply = app.get(app.url("EIO=4&transport=polling")).await;
    let packets = reply.packets("handshake");
    assert_eq!(packets.len(), 1, "{reply:?}");
    check_open(&packets[0], &["websocket"]);
}

async fn eio_handshake_polling_fails_with_invalid_eio(app: App) {
    for query in ["transport=polling", "EIO=abc&transport=polling"] {
        let reply = app.get(app.url(query)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}: {reply:?}");
    }
}

async fn eio_handshake_polling_fails_with_invalid_transport(app: App) {
    for query in ["EIO=4", "EIO=4&transport=abc"] {
        let reply = app.get(app.url(query)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}: {reply:?}");
    }
}

async fn eio_handshake_polling_fails_with_invalid_method(app: App) {
    for method in [Method::POST, Method::PUT] {
        let reply = app
            .request(method.clone(), app.url("EIO=4&transport=polling"), Some(""))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method}: {reply:?}");
    }
}

async fn eio_handshake_websocket_opens_a_session(app: App) {
    let (mut ws, _) = app.open_ws().await;
    ws.close(None).await.ok();
}

async fn eio_handshake_websocket_fails_with_invalid_eio(app: App) {
    assert_ws_refused(app.connect("transport=websocket").await, "missing EIO");
    assert_ws_refused(app.connect("EIO=abc&transport=websocket").await, "EIO=abc");
}

async fn eio_handshake_websocket_fails_with_invalid_transport(app: App) {
    assert_ws_refused(app.connect("EIO=4").await, "missing transport");
    assert_ws_refused(app.connect("EIO=4&transport=abc").await, "transport=abc");
}

// ---------------------------------------------------------------------------
// Engine.IO: heartbeat (the server pings, the client answers)
// ---------------------------------------------------------------------------

async fn eio_heartbeat_polling_sends_ping_pong_packets(app: App) {
    let sid = app.open_polling().await;
    let mut since = Instant::now();
    for cycle in 0..3 {
        let reply = app.get(app.polling_url(&sid)).await;
        assert_eq!(reply.packets("heartbeat poll"), ["2"], "ping {cycle}");
        let took = since.elapsed();
        assert!(
            took <= PING_INTERVAL + PING_TIMEOUT + SLACK,
            "ping {cycle} after {took:?}"
        );
        app.send(&sid, "3").await;
        since = Instant::now();
    }
}

async fn eio_heartbeat_polling_closes_upon_ping_timeout(app: App) {
    let sid = app.open_polling().await;
    // This case is about time: nobody answers the ping.
    tokio::time::sleep(PING_INTERVAL + PING_TIMEOUT + SLACK).await;
    let reply = app.get(app.polling_url(&sid)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
}

async fn eio_heartbeat_websocket_sends_ping_pong_packets(app: App) {
    let (mut ws, _) = app.open_ws().await;
    for cycle in 0..3 {
        let since = Instant::now();
        assert_eq!(next_text(&mut ws).await, "2", "ping {cycle}");
        assert!(since.elapsed() <= PING_INTERVAL + PING_TIMEOUT + SLACK);
        send_text(&mut ws, "3").await;
    }
}

async fn eio_heartbeat_websocket_closes_upon_ping_timeout(app: App) {
    let (mut ws, _) = app.open_ws().await;
    let opened = Instant::now();
    // No CONNECT either: whichever timer fires first (ping timeout at
    // 500 ms, connect timeout at 1000 ms) closes the session.
    let saw_ping = expect_closed(&mut ws, "close upon ping timeout").await;
    let took = opened.elapsed();
    assert!(saw_ping, "the server pings before timing out");
    assert!(
        took >= PING_INTERVAL + PING_TIMEOUT - Duration::from_millis(100),
        "closed after {took:?}"
    );
    assert!(
        took <= PING_INTERVAL + PING_TIMEOUT + SLACK,
        "closed after {took:?}"
    );
}

// ---------------------------------------------------------------------------
// Engine.IO: close
// ---------------------------------------------------------------------------

async fn eio_close_polling_forcefully_closes_the_session(app: App) {
    let sid = app.open_polling().await;
    let pending = app.spawn_poll(&sid);
    tokio::time::sleep(SETTLE).await;
    app.send(&sid, "1").await;
    let released = within("the pending poll", pending).await.expect("poll");
    assert_eq!(released.packets("released poll"), ["6"]);
    let later = app.get(app.polling_url(&sid)).await;
    assert_eq!(later.status, StatusCode::BAD_REQUEST, "{later:?}");
}

async fn eio_close_websocket_forcefully_closes_the_session(app: App) {
    let (mut ws, _) = app.open_ws().await;
    send_text(&mut ws, "1").await;
    expect_closed(&mut ws, "close after \"1\"").await;
}

// ---------------------------------------------------------------------------
// Engine.IO: upgrade
// ---------------------------------------------------------------------------

async fn eio_upgrade_from_polling_to_websocket(app: App) {
    let sid = app.open_polling().await;
    let pending = app.spawn_poll(&sid);
    tokio::time::sleep(SETTLE).await;
    let mut ws = app.probe(&sid).await;
    let released = within("the pending poll", pending).await.expect("poll");
    assert_eq!(released.packets("released poll"), ["6"]);
    send_text(&mut ws, "5").await;
    // The session now runs on the WebSocket: Socket.IO works there.
    send_text(&mut ws, "40").await;
    assert!(next_sio(&mut ws).await.starts_with("40{"));
    assert_eq!(next_sio(&mut ws).await, r#"42["auth",{}]"#);
}

async fn eio_upgrade_ignores_http_requests_with_same_sid_after_upgrade(app: App) {
    let sid = app.open_polling().await;
    let mut ws = app.probe(&sid).await;
    send_text(&mut ws, "5").await;
    // Synchronise on a round trip over the upgraded socket.
    send_text(&mut ws, "40").await;
    assert!(next_sio(&mut ws).await.starts_with("40{"));
    let poll = app.get(app.polling_url(&sid)).await;
    assert_eq!(poll.status, StatusCode::BAD_REQUEST, "{poll:?}");
}

async fn eio_upgrade_ignores_websocket_with_same_sid_after_upgrade(app: App) {
    let sid = app.open_polling().await;
    let mut ws = app.probe(&sid).await;
    send_text(&mut ws, "5").await;
    send_text(&mut ws, "40").await;
    assert!(next_sio(&mut ws).await.starts_with("40{"));
    match app
        .connect(&format!("EIO=4&transport=websocket&sid={sid}"))
        .await
    {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST)
        }
        Err(other) => panic!("second WebSocket: expected HTTP 400, got {other}"),
        Ok(mut second) => {
            let _ = second.send(Message::text("2probe")).await;
            expect_closed(&mut second, "second WebSocket with the same sid").await;
        }
    }
}

// ---------------------------------------------------------------------------
// Socket.IO: connect
// ---------------------------------------------------------------------------

fn handshake_sid(packet: &str, prefix: &str) -> String {
    let json = packet
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix}…, got {packet}"));
    let value: Value = serde_json::from_str(json).expect("CONNECT JSON");
    let keys: Vec<&String> = value.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["sid"], "{packet}");
    value["sid"].as_str().expect("sid is a string").to_owned()
}

async fn sio_connect_main_namespace(app: App) {
    let (mut ws, _) = app.open_ws().await;
    send_text(&mut ws, "40").await;
    handshake_sid(&next_sio(&mut ws).await, "40");
    assert_eq!(next_sio(&mut ws).await, r#"42["auth",{}]"#);
}

async fn sio_connect_main_namespace_with_payload(app: App) {
    let (mut ws, _) = app.open_ws().await;
    send_text(&mut ws, r#"40{"token":"123"}"#).await;
    handshake_sid(&next_sio(&mut ws).await, "40");
    assert_eq!(next_sio(&mut ws).await, r#"42["auth",{"token":"123"}]"#);
}

async fn sio_connect_custom_namespace(app: App) {
    let (mut ws, _) = app.open_ws().await;
    send_text(&mut ws, "40/custom,").await;
    handshake_sid(&next_sio(&mut ws).await, "40/custom,");
    assert_eq!(next_sio(&mut ws).await, r#"42/custom,["auth",{}]"#);
}

async fn sio_connect_custom_namespace_with_payload(app: App) {
    let (mut ws, _) = app.open_ws().await;
    send_text(&mut ws, r#"40/custom,{"token":"abc"}"#).await;
    handshake_sid(&next_sio(&mut ws).await, "40/custom,");
    assert_eq!(
        next_sio(&mut ws).await,
        r#"42/custom,["auth",{"token":"abc"}]"#
    );
}

async fn sio_connect_unknown_namespace_is_refused(app: App) {
    let (mut ws, _) = app.open_ws().await;
    send_text(&mut ws, "40/random").await;
    assert_eq!(
        next_sio(&mut ws).await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
}

async fn sio_connect_invalid_handshake_closes(app: App) {
    let (mut ws, _) = app.open_ws().await;
    send_text(&mut ws, "4abc").await;
    expect_closed(&mut ws, "close after an invalid handshake").await;
}

async fn sio_connect_closes_if_no_connect_is_received(app: App) {
    let (mut ws, _) = app.open_ws().await;
    let opened = Instant::now();
    // Answer pings, send no CONNECT: the connect timeout closes the session.
    let closed = within("close without CONNECT", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    let _ = ws.send(Message::text("3")).await;
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return opened.elapsed(),
                Some(Ok(Message::Text(t))) if t.as_str() == "1" => return opened.elapsed(),
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed >= CONNECT_TIMEOUT - Duration::from_millis(100),
        "closed after {closed:?}, before the connect timeout"
    );
}

// ---------------------------------------------------------------------------
// Socket.IO: disconnect
// ---------------------------------------------------------------------------

async fn sio_disconnect_from_main_namespace(app: App) {
    let mut ws = app.socket_io().await;
    send_text(&mut ws, "41").await;
    expect_closed(&mut ws, "close after leaving the last namespace").await;
}

async fn sio_disconnect_connect_then_disconnect_custom_namespace(app: App) {
    let mut ws = app.socket_io().await;
    send_text(&mut ws, "40/custom").await;
    handshake_sid(&next_sio(&mut ws).await, "40/custom,");
    assert_eq!(next_sio(&mut ws).await, r#"42/custom,["auth",{}]"#);
    send_text(&mut ws, "41/custom").await;
    send_text(&mut ws, r#"42["message","message to main namespace"]"#).await;
    assert_eq!(
        next_sio(&mut ws).await,
        r#"42["message-back","message to main namespace"]"#
    );
}

// ---------------------------------------------------------------------------
// Socket.IO: message
// ---------------------------------------------------------------------------

async fn sio_message_plain_text(app: App) {
    let mut ws = app.socket_io().await;
    send_text(&mut ws, r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        next_sio(&mut ws).await,
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
}

async fn sio_message_binary_attachments(app: App) {
    let mut ws = app.socket_io().await;
    send_text(
        &mut ws,
        r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    )
    .await;
    send_binary(&mut ws, &[1, 2, 3]).await;
    send_binary(&mut ws, &[4, 5, 6]).await;
    assert_eq!(
        next_sio(&mut ws).await,
        r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(next_binary(&mut ws).await, [1, 2, 3]);
    assert_eq!(next_binary(&mut ws).await, [4, 5, 6]);
}

async fn sio_message_plain_text_with_ack(app: App) {
    let mut ws = app.socket_io().await;
    send_text(&mut ws, r#"42456["message-with-ack",1,"2",{"3":[false]}]"#).await;
    assert_eq!(next_sio(&mut ws).await, r#"43456[1,"2",{"3":[false]}]"#);
}

async fn sio_message_binary_attachments_with_ack(app: App) {
    let mut ws = app.socket_io().await;
    send_text(
        &mut ws,
        r#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    )
    .await;
    send_binary(&mut ws, &[1, 2, 3]).await;
    send_binary(&mut ws, &[4, 5, 6]).await;
    assert_eq!(
        next_sio(&mut ws).await,
        r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(next_binary(&mut ws).await, [1, 2, 3]);
    assert_eq!(next_binary(&mut ws).await, [4, 5, 6]);
}

async fn sio_message_closes_upon_unknown_packet_type(app: App) {
    let mut ws = app.socket_io().await;
    send_text(&mut ws, "4abc").await;
    expect_closed(&mut ws, "close after an unknown packet type").await;
}

async fn sio_message_closes_upon_invalid_payload_format(app: App) {
    let mut ws = app.socket_io().await;
    send_text(&mut ws, "42{}").await;
    expect_closed(&mut ws, "close after an invalid payload").await;
}

async fn sio_message_closes_upon_invalid_ack_id(app: App) {
    let mut ws = app.socket_io().await;
    send_text(&mut ws, r#"42abc["message-with-ack",1,"2",{"3":[false]}]"#).await;
    expect_closed(&mut ws, "close after an invalid ack id").await;
}

//! Engine.IO v4 conformance suite, run against the gateway's echo hub.
//!
//! Written from the Engine.IO v4 protocol and the case list of the official
//! `socketio/engine.io-protocol` test-suite (`test-suite/test-suite.js`),
//! translated to v4: `EIO=4`; polling payloads are packets joined by `\x1e`
//! without length prefixes; binary packets in polling are `b` + base64; the
//! open packet has exactly `sid`, `upgrades`, `pingInterval`, `pingTimeout`
//! and `maxPayload`; the SERVER pings (`2`) and the client answers (`3`).
//!
//! The gateway runs with `--echo-hub eio --ping-interval-ms 300
//! --ping-timeout-ms 200` (the official suite's values): every message a
//! client sends comes back to it. Every request carries a valid
//! `access_token` (refusals without one are tested elsewhere).
//!
//! Race-freedom: unlike the official JS suite (which attaches listeners after
//! awaits), WebSocket frames are read sequentially from the stream, and every
//! await is bounded by [`within`] so a failure is reported, never a hang.
//! Concurrent requests are spawned tasks; the only sleeps are (a) a short one
//! that makes sure a GET is pending on the server before the request that
//! must find it pending, and (b) the waits the heartbeat timeout cases are
//! about. Cases that are not about heartbeats answer server pings
//! ([`next_non_ping`], [`Eio::poll_messages`]) so slow runs stay valid.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::TestGateway;
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const HUB: &str = "eio";
const PING_INTERVAL: Duration = Duration::from_millis(300);
const PING_TIMEOUT: Duration = Duration::from_millis(200);
const MAX_PAYLOAD: u64 = 1_000_000;
/// Bound on every single await.
const STEP: Duration = Duration::from_secs(3);
/// Scheduling slack allowed on top of protocol timings.
const SLACK: Duration = Duration::from_millis(700);
/// How long to let a spawned GET reach the server and become pending before
/// the request that must find it pending is sent. There is no observable
/// signal for "the server holds this poll", so a short sleep it is.
const SETTLE: Duration = Duration::from_millis(100);
/// The Engine.IO v4 payload separator.
const SEP: char = '\x1e';

// ---------------------------------------------------------------------------
// Support
// ---------------------------------------------------------------------------

/// Awaits `future`, panicking with `what` if it takes longer than [`STEP`].
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {STEP:?} waiting for {what}"),
    }
}

/// An HTTP reply, read completely.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Reply {
    /// The engine.io error code of a JSON error body.
    fn code(&self) -> Option<u64> {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_u64())
    }

    /// Asserts a `400` with engine.io error `code`.
    fn assert_error(&self, code: u64, what: &str) {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{what}: {self:?}");
        assert_eq!(self.code(), Some(code), "{what}: error code in {self:?}");
    }

    /// Asserts a `200 text/plain` polling payload and decodes it.
    fn packets(&self, what: &str) -> Vec<String> {
        assert_eq!(self.status, StatusCode::OK, "{what}: {self:?}");
        assert!(
            self.content_type.starts_with("text/plain"),
            "{what}: polling content type should be text/plain: {self:?}"
        );
        decode_payload(&self.body)
    }
}

/// Splits an Engine.IO v4 polling payload into its packets.
fn decode_payload(body: &str) -> Vec<String> {
    body.split(SEP).map(str::to_owned).collect()
}

/// One HTTP request (owned arguments, so it can be spawned).
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

/// Checks an open packet (`0{…}`) and returns its sid.
fn check_open(packet: &str, upgrades: &[&str]) -> String {
    let json = packet
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("the open packet should start with \"0\": {packet:?}"));
    let value: Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("open packet JSON {json:?}: {e}"));
    let object = value.as_object().expect("open packet is a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ],
        "open packet keys"
    );
    let sid = value["sid"].as_str().expect("sid is a string");
    assert!(!sid.is_empty(), "sid is empty");
    assert_eq!(value["upgrades"], json!(upgrades), "upgrades");
    assert_eq!(
        value["pingInterval"],
        json!(PING_INTERVAL.as_millis() as u64),
        "pingInterval"
    );
    assert_eq!(
        value["pingTimeout"],
        json!(PING_TIMEOUT.as_millis() as u64),
        "pingTimeout"
    );
    assert_eq!(value["maxPayload"], json!(MAX_PAYLOAD), "maxPayload");
    sid.to_owned()
}

/// A gateway with the echo hub, plus a client for it.
struct Eio {
    gw: TestGateway,
    http: reqwest::Client,
    token: String,
}

impl Eio {
    fn start() -> Self {
        let gw = TestGateway::start(&[
            "--echo-hub",
            HUB,
            "--ping-interval-ms",
            "300",
            "--ping-timeout-ms",
            "200",
        ]);
        let token = gw.token(HUB);
        Eio {
            gw,
            http: reqwest::Client::new(),
            token,
        }
    }

    /// The client endpoint with `query` plus the access token.
    fn url(&self, query: &str) -> String {
        self.gw
            .client_url(HUB, &format!("{query}&access_token={}", self.token))
    }

    fn polling_url(&self, sid: &str) -> String {
        self.url(&format!("EIO=4&transport=polling&sid={sid}"))
    }

    fn ws_url(&self, query: &str) -> String {
        format!(
            "{}/clients/socketio/hubs/{HUB}/?{query}&access_token={}",
            self.gw.ws(),
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

    /// A GET poll of `sid`, spawned so it can be pending while other
    /// requests run.
    fn spawn_poll(&self, sid: &str) -> tokio::task::JoinHandle<Reply> {
        tokio::spawn(fetch(
            self.http.clone(),
            Method::GET,
            self.polling_url(sid),
            None,
        ))
    }

    /// A polling handshake; returns the sid.
    async fn open_polling(&self) -> String {
        let reply = self.get(self.url("EIO=4&transport=polling")).await;
        let packets = reply.packets("polling handshake");
        assert_eq!(
            packets.len(),
            1,
            "the handshake payload is the open packet alone: {reply:?}"
        );
        check_open(&packets[0], &["websocket"])
    }

    /// POSTs `body` for `sid` and asserts engine.io's `200 ok`.
    async fn send(&self, sid: &str, body: &str) {
        let reply = self.post(self.polling_url(sid), body).await;
        assert_eq!(reply.status, StatusCode::OK, "POST {body:?}: {reply:?}");
        assert_eq!(reply.body, "ok", "POST {body:?}: {reply:?}");
    }

    /// Polls until `n` packets other than pings and noops have arrived
    /// (answering pings with a POSTed pong); each poll must be a
    /// `200 text/plain` payload.
    async fn poll_messages(&self, sid: &str, n: usize) -> Vec<String> {
        within(&format!("{n} packets by polling"), async {
            let mut got = Vec::new();
            while got.len() < n {
                let reply = self.get(self.polling_url(sid)).await;
                let mut ping = false;
                for packet in reply.packets("poll") {
                    match packet.as_str() {
                        "2" => ping = true,
                        "6" => {}
                        _ => got.push(packet),
                    }
                }
                if ping {
                    self.send(sid, "3").await;
                }
            }
            got
        })
        .await
    }

    /// Opens a WebSocket (handshake or upgrade, by `query`).
    async fn connect(&self, query: &str) -> Result<Ws, tungstenite::Error> {
        within("WebSocket connect", connect_async(self.ws_url(query)))
            .await
            .map(|(ws, _)| ws)
    }

    /// A WebSocket handshake; returns the socket and the sid.
    async fn open_ws(&self) -> (Ws, String) {
        let mut ws = self
            .connect("EIO=4&transport=websocket")
            .await
            .expect("WebSocket handshake");
        let open = next_text(&mut ws).await;
        let sid = check_open(&open, &[]);
        (ws, sid)
    }

    /// Starts an upgrade of `sid`: opens the WebSocket and does the
    /// `2probe`/`3probe` exchange (without sending `5`).
    async fn probe(&self, sid: &str) -> Ws {
        let mut ws = self
            .connect(&format!("EIO=4&transport=websocket&sid={sid}"))
            .await
            .expect("upgrade WebSocket");
        send_text(&mut ws, "2probe").await;
        assert_eq!(next_text(&mut ws).await, "3probe", "probe answer");
        ws
    }

    /// Probes and sends `5`; synchronised on the echo of `4sync` so the
    /// server has certainly processed the upgrade when this returns.
    async fn upgrade(&self, sid: &str) -> Ws {
        let mut ws = self.probe(sid).await;
        send_text(&mut ws, "5").await;
        send_text(&mut ws, "4sync").await;
        assert_eq!(next_non_ping(&mut ws).await, Message::text("4sync"));
        ws
    }
}

async fn send_text(ws: &mut Ws, text: &str) {
    within("WebSocket send", ws.send(Message::text(text)))
        .await
        .unwrap_or_else(|e| panic!("send {text:?}: {e}"));
}

/// The next data frame (control frames skipped); panics if the socket ends.
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

/// The next data frame, which must be text.
async fn next_text(ws: &mut Ws) -> String {
    match next_data(ws).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The next data frame that is not a server ping; pings are answered so the
/// session outlives slow runs.
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

/// Waits until the server closes `ws` (close frame, end of stream or a
/// reset). Pings are ignored (not answered); any other data frame fails.
/// Returns whether a ping was seen.
async fn expect_closed(ws: &mut Ws, what: &str) -> bool {
    let mut saw_ping = false;
    loop {
        match within(what, ws.next()).await {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => saw_ping = true,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return saw_ping,
            Some(Ok(other)) => panic!("{what}: expected the socket to close, got {other:?}"),
        }
    }
}

/// Asserts that a WebSocket request is refused with HTTP 400 and engine.io
/// error `code`.
fn assert_ws_refused(result: Result<Ws, tungstenite::Error>, code: u64, what: &str) {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let code_seen = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["code"].as_u64());
            assert_eq!(code_seen, Some(code), "{what}: error code in {body:?}");
        }
        Err(other) => panic!("{what}: expected HTTP 400, got {other}"),
        Ok(_) => panic!("{what}: the WebSocket handshake should be refused"),
    }
}

// ---------------------------------------------------------------------------
// handshake / HTTP long-polling
// ---------------------------------------------------------------------------

#[tokio::test]
async fn handshake_polling_opens_a_session() {
    let eio = Eio::start();
    let reply = eio.get(eio.url("EIO=4&transport=polling")).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(reply.body.starts_with('0'), "{reply:?}");
    let packets = reply.packets("handshake");
    assert_eq!(packets.len(), 1, "one packet: {reply:?}");
    check_open(&packets[0], &["websocket"]);
}

#[tokio::test]
async fn handshake_polling_fails_with_invalid_eio() {
    let eio = Eio::start();
    // Missing EIO: any 400 will do (engine.io answers code 5).
    let missing = eio.get(eio.url("transport=polling")).await;
    assert_eq!(
        missing.status,
        StatusCode::BAD_REQUEST,
        "missing EIO: {missing:?}"
    );
    let abc = eio.get(eio.url("EIO=abc&transport=polling")).await;
    abc.assert_error(5, "EIO=abc");
    let v3 = eio.get(eio.url("EIO=3&transport=polling")).await;
    v3.assert_error(5, "EIO=3");
}

#[tokio::test]
async fn handshake_polling_fails_with_invalid_transport() {
    let eio = Eio::start();
    let missing = eio.get(eio.url("EIO=4")).await;
    missing.assert_error(0, "missing transport");
    let abc = eio.get(eio.url("EIO=4&transport=abc")).await;
    abc.assert_error(0, "transport=abc");
}

#[tokio::test]
async fn handshake_polling_fails_with_invalid_method() {
    let eio = Eio::start();
    for method in [Method::POST, Method::PUT] {
        let reply = eio
            .request(method.clone(), eio.url("EIO=4&transport=polling"), Some(""))
            .await;
        // engine.io: 400 "Bad handshake method" (code 2).
        reply.assert_error(2, &format!("{method} handshake"));
    }
}

// ---------------------------------------------------------------------------
// handshake / WebSocket
// ---------------------------------------------------------------------------

#[tokio::test]
async fn handshake_websocket_opens_a_session() {
    let eio = Eio::start();
    let mut ws = eio
        .connect("EIO=4&transport=websocket")
        .await
        .expect("WebSocket handshake");
    // The very first data frame is the open packet, with no upgrades.
    let open = next_text(&mut ws).await;
    check_open(&open, &[]);
}

#[tokio::test]
async fn handshake_websocket_fails_with_invalid_eio() {
    let eio = Eio::start();
    let missing = eio.connect("transport=websocket").await;
    assert!(
        matches!(&missing, Err(tungstenite::Error::Http(r)) if r.status() == StatusCode::BAD_REQUEST),
        "missing EIO: expected HTTP 400, got {:?}",
        missing.as_ref().err()
    );
    assert_ws_refused(
        eio.connect("EIO=abc&transport=websocket").await,
        5,
        "EIO=abc",
    );
    assert_ws_refused(eio.connect("EIO=3&transport=websocket").await, 5, "EIO=3");
}

#[tokio::test]
async fn handshake_websocket_fails_with_invalid_transport() {
    let eio = Eio::start();
    assert_ws_refused(eio.connect("EIO=4").await, 0, "missing transport");
    assert_ws_refused(eio.connect("EIO=4&transport=abc").await, 0, "transport=abc");
}

// ---------------------------------------------------------------------------
// message / HTTP long-polling
// ---------------------------------------------------------------------------

#[tokio::test]
async fn message_polling_one_plain_text_packet() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    eio.send(&sid, "4hello").await;
    assert_eq!(eio.poll_messages(&sid, 1).await, ["4hello"]);
}

#[tokio::test]
async fn message_polling_several_plain_text_packets() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    eio.send(&sid, "4test1\x1e4test2\x1e4test3").await;
    // They may arrive across several polls; order must be kept.
    assert_eq!(
        eio.poll_messages(&sid, 3).await,
        ["4test1", "4test2", "4test3"]
    );
}

#[tokio::test]
async fn message_polling_plain_text_and_binary_packets() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    eio.send(&sid, "4hello\x1ebAQIDBA==").await;
    assert_eq!(eio.poll_messages(&sid, 2).await, ["4hello", "bAQIDBA=="]);
}

#[tokio::test]
async fn message_polling_closes_the_session_upon_invalid_packet_format() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    eio.gw.wait_connections(1).await;
    let push = eio.post(eio.polling_url(&sid), "abc").await;
    assert_eq!(push.status, StatusCode::BAD_REQUEST, "POST abc: {push:?}");
    let poll = eio.get(eio.polling_url(&sid)).await;
    assert_eq!(
        poll.status,
        StatusCode::BAD_REQUEST,
        "poll after abc: {poll:?}"
    );
    eio.gw.wait_connections(0).await;
}

#[tokio::test]
async fn message_polling_closes_the_session_upon_duplicate_poll_requests() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    eio.gw.wait_connections(1).await;
    let first = eio.spawn_poll(&sid);
    // Ordering matters: the second poll must find the first one pending.
    tokio::time::sleep(SETTLE).await;
    assert!(
        !first.is_finished(),
        "the first poll should be pending (nothing is queued yet)"
    );
    let second = eio.get(eio.polling_url(&sid)).await;
    // engine.io (Node) answers 500; 400 is the documented expectation.
    assert_eq!(
        second.status,
        StatusCode::BAD_REQUEST,
        "duplicate poll: {second:?}"
    );
    let first = within("the first poll", first)
        .await
        .expect("first poll task");
    assert_eq!(first.packets("first poll"), ["1"], "close packet expected");
    let later = eio.get(eio.polling_url(&sid)).await;
    assert_eq!(
        later.status,
        StatusCode::BAD_REQUEST,
        "later poll: {later:?}"
    );
    eio.gw.wait_connections(0).await;
}

// ---------------------------------------------------------------------------
// message / WebSocket
// ---------------------------------------------------------------------------

#[tokio::test]
async fn message_websocket_plain_text_packet() {
    let eio = Eio::start();
    let (mut ws, _) = eio.open_ws().await;
    send_text(&mut ws, "4hello").await;
    assert_eq!(next_non_ping(&mut ws).await, Message::text("4hello"));
}

#[tokio::test]
async fn message_websocket_binary_packet() {
    let eio = Eio::start();
    let (mut ws, _) = eio.open_ws().await;
    within("send binary", ws.send(Message::binary(vec![1u8, 2, 3, 4])))
        .await
        .expect("send binary");
    match next_non_ping(&mut ws).await {
        Message::Binary(data) => assert_eq!(data.as_ref(), [1u8, 2, 3, 4]),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

#[tokio::test]
async fn message_websocket_closes_the_session_upon_invalid_packet_format() {
    let eio = Eio::start();
    let (mut ws, _) = eio.open_ws().await;
    eio.gw.wait_connections(1).await;
    send_text(&mut ws, "abc").await;
    expect_closed(&mut ws, "close after invalid packet").await;
    eio.gw.wait_connections(0).await;
}

// ---------------------------------------------------------------------------
// heartbeat / HTTP long-polling
// ---------------------------------------------------------------------------

/// Polls until a ping arrives (noops allowed, nothing else); returns how
/// long it took from `since`.
async fn poll_for_ping(eio: &Eio, sid: &str, since: Instant) -> Duration {
    within("a ping by polling", async {
        loop {
            let reply = eio.get(eio.polling_url(sid)).await;
            let packets = reply.packets("heartbeat poll");
            for packet in &packets {
                assert!(
                    packet == "2" || packet == "6",
                    "only pings/noops expected: {packets:?}"
                );
            }
            if packets.iter().any(|p| p == "2") {
                return since.elapsed();
            }
        }
    })
    .await
}

#[tokio::test]
async fn heartbeat_polling_sends_ping_pong_packets() {
    let eio = Eio::start();
    let mut since = Instant::now();
    let sid = eio.open_polling().await;
    for cycle in 0..3 {
        // The first ping comes pingInterval after the open packet; later
        // ones at most pingInterval + pingTimeout after the previous one.
        let budget = if cycle == 0 {
            PING_INTERVAL + SLACK
        } else {
            PING_INTERVAL + PING_TIMEOUT + SLACK
        };
        let took = poll_for_ping(&eio, &sid, since).await;
        assert!(took <= budget, "ping {cycle} after {took:?} (> {budget:?})");
        since = Instant::now();
        eio.send(&sid, "3").await;
    }
    // Still alive after three cycles.
    eio.send(&sid, "4alive").await;
    assert_eq!(eio.poll_messages(&sid, 1).await, ["4alive"]);
}

#[tokio::test]
async fn heartbeat_polling_closes_the_session_upon_ping_timeout() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    eio.gw.wait_connections(1).await;
    // This case is about time: nobody polls or answers the ping.
    tokio::time::sleep(PING_INTERVAL + PING_TIMEOUT + SLACK).await;
    let push = eio.post(eio.polling_url(&sid), "3").await;
    assert_eq!(push.status, StatusCode::BAD_REQUEST, "late POST: {push:?}");
    eio.gw.wait_connections(0).await;
}

// ---------------------------------------------------------------------------
// heartbeat / WebSocket
// ---------------------------------------------------------------------------

#[tokio::test]
async fn heartbeat_websocket_sends_ping_pong_packets() {
    let eio = Eio::start();
    let (mut ws, _) = eio.open_ws().await;
    let mut since = Instant::now();
    for cycle in 0..3 {
        let budget = if cycle == 0 {
            PING_INTERVAL + SLACK
        } else {
            PING_INTERVAL + PING_TIMEOUT + SLACK
        };
        assert_eq!(next_text(&mut ws).await, "2", "ping {cycle}");
        let took = since.elapsed();
        assert!(took <= budget, "ping {cycle} after {took:?} (> {budget:?})");
        since = Instant::now();
        send_text(&mut ws, "3").await;
    }
    send_text(&mut ws, "4alive").await;
    assert_eq!(next_non_ping(&mut ws).await, Message::text("4alive"));
}

#[tokio::test]
async fn heartbeat_websocket_closes_the_session_upon_ping_timeout() {
    let eio = Eio::start();
    let (mut ws, _) = eio.open_ws().await;
    let opened = Instant::now();
    let saw_ping = expect_closed(&mut ws, "close upon ping timeout").await;
    let took = opened.elapsed();
    assert!(saw_ping, "the server should ping before timing out");
    // Measured from our receipt of the open packet, so allow a little less.
    let least = PING_INTERVAL + PING_TIMEOUT - Duration::from_millis(100);
    assert!(took >= least, "closed after {took:?}, before {least:?}");
    let most = PING_INTERVAL + PING_TIMEOUT + SLACK;
    assert!(took <= most, "closed after {took:?} (> {most:?})");
    eio.gw.wait_connections(0).await;
}

// ---------------------------------------------------------------------------
// close / HTTP long-polling
// ---------------------------------------------------------------------------

#[tokio::test]
async fn close_polling_forcefully_closes_the_session() {
    let eio = Eio::start();
    let before = eio.gw.connections().await;
    let sid = eio.open_polling().await;
    eio.gw.wait_connections(before + 1).await;
    let pending = eio.spawn_poll(&sid);
    // Ordering matters: the close must release a GET that is pending.
    tokio::time::sleep(SETTLE).await;
    assert!(!pending.is_finished(), "the poll should be pending");
    eio.send(&sid, "1").await;
    let released = within("the pending poll", pending)
        .await
        .expect("poll task");
    assert_eq!(released.packets("released poll"), ["6"], "noop expected");
    let later = eio.get(eio.polling_url(&sid)).await;
    assert_eq!(
        later.status,
        StatusCode::BAD_REQUEST,
        "poll after close: {later:?}"
    );
    eio.gw.wait_connections(before).await;
}

// ---------------------------------------------------------------------------
// close / WebSocket
// ---------------------------------------------------------------------------

#[tokio::test]
async fn close_websocket_forcefully_closes_the_session() {
    let eio = Eio::start();
    let before = eio.gw.connections().await;
    let (mut ws, _) = eio.open_ws().await;
    eio.gw.wait_connections(before + 1).await;
    send_text(&mut ws, "1").await;
    expect_closed(&mut ws, "close after \"1\"").await;
    eio.gw.wait_connections(before).await;
}

// ---------------------------------------------------------------------------
// upgrade
// ---------------------------------------------------------------------------

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    let pending = eio.spawn_poll(&sid);
    // Ordering matters: the probe must release a GET that is pending.
    tokio::time::sleep(SETTLE).await;
    assert!(!pending.is_finished(), "the poll should be pending");
    let mut ws = eio.probe(&sid).await;
    let released = within("the pending poll", pending)
        .await
        .expect("poll task");
    assert_eq!(released.packets("released poll"), ["6"], "noop expected");
    send_text(&mut ws, "5").await;
    send_text(&mut ws, "4hello").await;
    assert_eq!(next_non_ping(&mut ws).await, Message::text("4hello"));
}

#[tokio::test]
async fn upgrade_ignores_http_requests_with_same_sid_after_upgrade() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    let mut ws = eio.upgrade(&sid).await;
    let poll = eio.get(eio.polling_url(&sid)).await;
    assert_eq!(
        poll.status,
        StatusCode::BAD_REQUEST,
        "poll after upgrade: {poll:?}"
    );
    send_text(&mut ws, "4hello").await;
    assert_eq!(next_non_ping(&mut ws).await, Message::text("4hello"));
}

#[tokio::test]
async fn upgrade_ignores_websocket_connection_with_same_sid_after_upgrade() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    let mut ws = eio.upgrade(&sid).await;
    expect_turned_away(&eio, &sid, "second WebSocket after the upgrade").await;
    send_text(&mut ws, "4hello").await;
    assert_eq!(next_non_ping(&mut ws).await, Message::text("4hello"));
}

/// Opens another WebSocket for `sid` and expects what engine.io does with
/// it: accepted at the HTTP level, then closed without carrying the session
/// (its probe gets no answer).
async fn expect_turned_away(eio: &Eio, sid: &str, what: &str) {
    let mut second = eio
        .connect(&format!("EIO=4&transport=websocket&sid={sid}"))
        .await
        .unwrap_or_else(|e| panic!("{what}: engine.io accepts the WebSocket, got {e}"));
    let _ = second.send(Message::text("2probe")).await;
    expect_closed(&mut second, what).await;
}

// ---------------------------------------------------------------------------
// interleavings the official suite leaves to chance
// ---------------------------------------------------------------------------

/// One WebSocket probes a session: a second one, opened before the first
/// has even sent `2probe`, is closed, and the first upgrades as usual.
#[tokio::test]
async fn upgrade_second_websocket_while_the_first_probes_is_closed() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    let mut first = eio
        .connect(&format!("EIO=4&transport=websocket&sid={sid}"))
        .await
        .expect("first upgrade WebSocket");
    expect_turned_away(&eio, &sid, "second WebSocket while the first probes").await;
    send_text(&mut first, "2probe").await;
    assert_eq!(next_text(&mut first).await, "3probe");
    send_text(&mut first, "5").await;
    send_text(&mut first, "4hello").await;
    assert_eq!(next_non_ping(&mut first).await, Message::text("4hello"));
}

/// A WebSocket that goes away without probing leaves the session on
/// polling, and a later WebSocket may upgrade it.
#[tokio::test]
async fn upgrade_after_an_abandoned_probe() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    let mut abandoned = eio
        .connect(&format!("EIO=4&transport=websocket&sid={sid}"))
        .await
        .expect("first upgrade WebSocket");
    within("close", abandoned.close(None)).await.ok();
    drop(abandoned);
    eio.send(&sid, "4still-polling").await;
    assert_eq!(eio.poll_messages(&sid, 1).await, ["4still-polling"]);
    within("a second probe", async {
        loop {
            let mut ws = eio
                .connect(&format!("EIO=4&transport=websocket&sid={sid}"))
                .await
                .expect("second upgrade WebSocket");
            send_text(&mut ws, "2probe").await;
            // The server may not have seen the first WebSocket go yet.
            match ws.next().await {
                Some(Ok(Message::Text(text))) if text.as_str() == "3probe" => return,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
}

/// The client sends `2probe` and `5` on the WebSocket and then polls at
/// once, on another TCP connection: the poll must see the upgrade (400),
/// whichever request the gateway reads first. Repeated, since a wrong
/// gateway only loses this race some of the time.
#[tokio::test]
async fn upgrade_poll_sent_right_after_the_upgrade_packet_is_refused() {
    let eio = Eio::start();
    for round in 0..25 {
        let sid = eio.open_polling().await;
        let mut ws = eio
            .connect(&format!("EIO=4&transport=websocket&sid={sid}"))
            .await
            .expect("upgrade WebSocket");
        send_text(&mut ws, "2probe").await;
        send_text(&mut ws, "5").await;
        let poll = eio.get(eio.polling_url(&sid)).await;
        assert_eq!(
            poll.status,
            StatusCode::BAD_REQUEST,
            "round {round}: poll right after 5: {poll:?}"
        );
        assert_eq!(next_non_ping(&mut ws).await, Message::text("3probe"));
        send_text(&mut ws, "4hello").await;
        assert_eq!(next_non_ping(&mut ws).await, Message::text("4hello"));
    }
}

/// A poll that arrives just after the heartbeat deadline finds the session
/// closed, even if the gateway's heartbeat timer has not fired yet.
#[tokio::test]
async fn heartbeat_polling_request_at_the_deadline_finds_the_session_closed() {
    let eio = Eio::start();
    let rounds = (0..10).map(|_| async {
        let sid = eio.open_polling().await;
        // The gateway starts the clock before it answers the handshake.
        tokio::time::sleep(PING_INTERVAL + PING_TIMEOUT).await;
        eio.get(eio.polling_url(&sid)).await
    });
    for (round, poll) in futures_util::future::join_all(rounds)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            poll.status,
            StatusCode::BAD_REQUEST,
            "round {round}: poll at the deadline: {poll:?}"
        );
    }
}

/// The client closes with a POST while its poll is on the way: the poll
/// still gets its noop, and only later requests find no session.
#[tokio::test]
async fn close_polling_poll_that_raced_the_close_gets_its_noop() {
    let eio = Eio::start();
    let before = eio.gw.connections().await;
    let sid = eio.open_polling().await;
    // The worst order: the close is read before the poll.
    eio.send(&sid, "1").await;
    eio.gw.wait_connections(before).await;
    let poll = eio.get(eio.polling_url(&sid)).await;
    assert_eq!(poll.packets("the poll after the close"), ["6"]);
    let later = eio.get(eio.polling_url(&sid)).await;
    later.assert_error(1, "a second poll after the close");

    // Nothing is kept for a poll that never comes.
    let sid = eio.open_polling().await;
    eio.send(&sid, "1").await;
    tokio::time::sleep(PING_TIMEOUT + SLACK).await;
    let late = eio.get(eio.polling_url(&sid)).await;
    late.assert_error(1, "a poll long after the close");
}

// ---------------------------------------------------------------------------
// extra cases
// ---------------------------------------------------------------------------

#[tokio::test]
async fn upgrade_delivers_packets_queued_before_the_upgrade_on_the_websocket() {
    let eio = Eio::start();
    let sid = eio.open_polling().await;
    // The echo is queued for the polling transport; nobody polls.
    eio.send(&sid, "4queued").await;
    let mut ws = eio.probe(&sid).await;
    send_text(&mut ws, "5").await;
    assert_eq!(next_non_ping(&mut ws).await, Message::text("4queued"));
}

#[tokio::test]
async fn unknown_sid_is_refused() {
    let eio = Eio::start();
    let poll = eio.get(eio.polling_url("no-such-session")).await;
    poll.assert_error(1, "GET with unknown sid");
    let push = eio.post(eio.polling_url("no-such-session"), "4x").await;
    push.assert_error(1, "POST with unknown sid");
}

#[tokio::test]
async fn path_without_trailing_slash_works() {
    let eio = Eio::start();
    let base = format!("{}/clients/socketio/hubs/{HUB}", eio.gw.http());
    let token = &eio.token;
    let open = eio
        .get(format!(
            "{base}?EIO=4&transport=polling&access_token={token}"
        ))
        .await;
    let packets = open.packets("handshake without trailing slash");
    assert_eq!(packets.len(), 1, "{open:?}");
    let sid = check_open(&packets[0], &["websocket"]);
    let url = format!("{base}?EIO=4&transport=polling&sid={sid}&access_token={token}");
    let push = eio.post(url.clone(), "4hi").await;
    assert_eq!((push.status, push.body.as_str()), (StatusCode::OK, "ok"));
    let poll = eio.get(url).await;
    let got: Vec<String> = poll
        .packets("poll without trailing slash")
        .into_iter()
        .filter(|p| p != "2" && p != "6")
        .collect();
    assert_eq!(got, ["4hi"]);
}

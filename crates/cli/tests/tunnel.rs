//! The server tunnel, driven by a hand-written application server that speaks
//! the tunnel protocol (the official SDK is exercised in tests/compat): who
//! may attach, and the events and answers that cross it.

mod common;

use std::time::Duration;

use common::{KEY, TestGateway, resident_kib};
use futures_util::{SinkExt, StreamExt};
use portcullis_auth::{ClientTokenOptions, mint_client_token};
use portcullis_tunnel::cloud_events::ConnectResponse;
use portcullis_tunnel::{HttpRequest, HttpResponse, TunnelMessage, frame};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn tunnel_token(hub: &str, sub: &str, key: &str) -> String {
    let options = ClientTokenOptions {
        user_id: Some(sub.into()),
        ..Default::default()
    };
    mint_client_token(
        key,
        &format!("ws://localhost/server/tunnel?hub={hub}"),
        &options,
    )
}

async fn attach(gateway: &TestGateway, hub: &str, token: &str) -> Result<Ws, u16> {
    attach_at(&gateway.ws(), hub, token).await
}

/// Attaches through `base` (`ws://host:port`), e.g. a proxy in front of the
/// gateway.
async fn attach_at(base: &str, hub: &str, token: &str) -> Result<Ws, u16> {
    let url = format!("{base}/server/tunnel?hub={hub}&access_token={token}");
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// The next tunnel message, skipping keep-alives.
async fn next(ws: &mut Ws) -> TunnelMessage {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a tunnel message in time")
            .expect("tunnel open")
            .expect("tunnel frame");
        if let Message::Binary(bytes) = message {
            match frame::decode(&bytes).expect("valid frame") {
                TunnelMessage::ServiceStatus { .. } => continue,
                other => return other,
            }
        }
    }
}

async fn next_request(ws: &mut Ws) -> HttpRequest {
    match next(ws).await {
        TunnelMessage::HttpRequest(request) => request,
        other => panic!("expected a request, got {other:?}"),
    }
}

async fn reply(ws: &mut Ws, response: HttpResponse) {
    ws.send(Message::Binary(
        frame::encode(&TunnelMessage::HttpResponse(response)).unwrap(),
    ))
    .await
    .unwrap();
}

/// Attaches application server `sub` to hub "chat" and reads the
/// `ConnectionConnected` that must come first.
async fn attached_server(gateway: &TestGateway, sub: &str) -> Ws {
    let mut ws = attach(gateway, "chat", &tunnel_token("chat", sub, KEY))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut ws).await,
        TunnelMessage::ConnectionConnected { .. }
    ));
    ws
}

/// Starts a client's polling handshake on hub "chat" (with `extra` query
/// parameters); it completes once the server answers `connect`.
fn client_handshake(gateway: &TestGateway, extra: &str) -> tokio::task::JoinHandle<(u16, String)> {
    let url = gateway.client_url(
        "chat",
        &format!(
            "EIO=4&transport=polling{extra}&access_token={}",
            gateway.token("chat")
        ),
    );
    tokio::spawn(async move {
        let response = reqwest::get(url).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

#[tokio::test]
async fn only_servers_with_a_valid_token_attach() {
    let gateway = TestGateway::start(&["--echo-hub", "echo"]);
    assert_eq!(attach(&gateway, "chat", "").await.err(), Some(401));
    assert_eq!(
        attach(&gateway, "chat", &tunnel_token("chat", "s1", "wrong-key"))
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        attach(&gateway, "chat", &tunnel_token("other", "s1", KEY))
            .await
            .err(),
        Some(401),
        "audience names another hub"
    );
    let client_token = gateway.token("chat");
    assert_eq!(
        attach(&gateway, "chat", &client_token).await.err(),
        Some(401),
        "client tokens cannot attach servers"
    );
    // The audience's path must be the tunnel's, not merely end like it.
    let options = ClientTokenOptions {
        user_id: Some("s1".into()),
        ..Default::default()
    };
    for aud in [
        "ws://localhost/anything/server/tunnel?hub=chat",
        "ws://localhost/clients/socketio/hubs/chat/server/tunnel?hub=chat",
    ] {
        let token = mint_client_token(KEY, aud, &options);
        assert_eq!(
            attach(&gateway, "chat", &token).await.err(),
            Some(401),
            "audience {aud}"
        );
    }
    assert_eq!(
        attach(&gateway, "echo", &tunnel_token("echo", "s1", KEY))
            .await
            .err(),
        Some(409),
        "the echo hub is taken"
    );

    let mut ws = attach(&gateway, "chat", &tunnel_token("chat", "s1", KEY))
        .await
        .expect("attached");
    assert!(
        matches!(
            next(&mut ws).await,
            TunnelMessage::ConnectionConnected { .. }
        ),
        "ConnectionConnected comes first"
    );
}

#[tokio::test]
async fn carries_a_client_session_through_the_tunnel() {
    let gateway = TestGateway::start(&[]);
    let mut ws = attached_server(&gateway, "server-a").await;

    // A client's handshake becomes a blocking `connect` event.
    let handshake = client_handshake(&gateway, "&foo=bar");
    let connect = next_request(&mut ws).await;
    assert_eq!(
        connect.header("ce-type"),
        Some("azure.webpubsub.sys.connect")
    );
    assert_eq!(connect.header("ce-hub"), Some("chat"));
    assert_eq!(connect.header("ce-userId"), Some("tester"));
    let connection_id = connect.header("ce-connectionId").unwrap().to_owned();
    let body: serde_json::Value =
        serde_json::from_slice(connect.content.as_ref().unwrap()).unwrap();
    assert_eq!(body["claims"]["sub"], serde_json::json!(["tester"]));
    assert_eq!(body["query"]["foo"], serde_json::json!(["bar"]));
    assert_eq!(body["query"]["EIO"], serde_json::json!(["4"]));
    let open = ConnectResponse {
        sid: connection_id.clone(),
        upgrades: vec![],
        ping_interval: 25_000,
        ping_timeout: 20_000,
        max_payload: 100_000,
    };
    reply(
        &mut ws,
        HttpResponse::reply_to(&connect, 200).with_content(open.to_body()),
    )
    .await;
    let (_, open_packet) = handshake.await.unwrap();
    assert!(
        open_packet.starts_with(&format!(
            "0{{\"sid\":\"{connection_id}\",\"upgrades\":[\"websocket\"]"
        )),
        "{open_packet}"
    );
    assert!(open_packet.contains("\"maxPayload\":100000"));

    let connected = next_request(&mut ws).await;
    assert_eq!(
        connected.header("ce-type"),
        Some("azure.webpubsub.sys.connected")
    );

    // Client packets become user events, in order.
    let post = |body: &'static str| {
        let url = gateway.client_url(
            "chat",
            &format!(
                "EIO=4&transport=polling&sid={connection_id}&access_token={}",
                gateway.token("chat")
            ),
        );
        async move {
            reqwest::Client::new()
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(post("40\u{1e}42[\"hi\"]").await, 200);
    let event = next_request(&mut ws).await;
    assert_eq!(
        event.header("ce-type"),
        Some("azure.webpubsub.user.message")
    );
    assert_eq!(event.content.as_deref(), Some(&b"40\x1e42[\"hi\"]"[..]));
    reply(&mut ws, HttpResponse::reply_to(&event, 200)).await;

    // The server answers through REST calls over the tunnel.
    let send = HttpRequest::new(
        1,
        "POST",
        format!(
            "https://host/api/hubs/chat/connections/{connection_id}/:send?api-version=2023-07-01"
        ),
    )
    .with_content("40{\"sid\":\"s1\"}\u{1e}42[\"welcome\"]");
    ws.send(Message::Binary(
        frame::encode(&TunnelMessage::HttpRequest(send)).unwrap(),
    ))
    .await
    .unwrap();
    match next(&mut ws).await {
        TunnelMessage::HttpResponse(response) => {
            assert_eq!((response.ack_id, response.status_code), (1, 202))
        }
        other => panic!("{other:?}"),
    }
    let poll = reqwest::get(gateway.client_url(
        "chat",
        &format!(
            "EIO=4&transport=polling&sid={connection_id}&access_token={}",
            gateway.token("chat")
        ),
    ))
    .await
    .unwrap();
    assert_eq!(
        poll.text().await.unwrap(),
        "40{\"sid\":\"s1\"}\u{1e}42[\"welcome\"]"
    );

    // The server's CONNECT put the client in the namespace group: a broadcast
    // to '0~Lw~' reaches it.
    let broadcast = HttpRequest::new(
        2,
        "POST",
        "https://host/api/hubs/chat/:send?api-version=2023-07-01&filter=%270%7ELw%7E%27+in+groups",
    )
    .with_content("42[\"all\"]");
    ws.send(Message::Binary(
        frame::encode(&TunnelMessage::HttpRequest(broadcast)).unwrap(),
    ))
    .await
    .unwrap();
    assert!(matches!(next(&mut ws).await, TunnelMessage::HttpResponse(r) if r.status_code == 202));
    let poll = reqwest::get(gateway.client_url(
        "chat",
        &format!(
            "EIO=4&transport=polling&sid={connection_id}&access_token={}",
            gateway.token("chat")
        ),
    ))
    .await
    .unwrap();
    assert_eq!(poll.text().await.unwrap(), "42[\"all\"]");

    // The client leaves: `disconnected` always follows.
    assert_eq!(post("1").await, 200);
    let disconnected = next_request(&mut ws).await;
    assert_eq!(
        disconnected.header("ce-type"),
        Some("azure.webpubsub.sys.disconnected")
    );
    let body: serde_json::Value =
        serde_json::from_slice(disconnected.content.as_ref().unwrap()).unwrap();
    assert!(body["reason"].is_string());
    gateway.wait_connections(0).await;
}

#[tokio::test]
async fn a_refused_connect_reaches_the_client_and_leaves_nothing() {
    let gateway = TestGateway::start(&[]);
    let mut ws = attached_server(&gateway, "server-a").await;
    let handshake = client_handshake(&gateway, "");
    let connect = next_request(&mut ws).await;
    reply(
        &mut ws,
        HttpResponse::reply_to(&connect, 400)
            .with_content("EIO server refused connection with error: nope"),
    )
    .await;
    let (status, body) = handshake.await.unwrap();
    assert_eq!(status, 400);
    assert!(
        body.contains("EIO server refused connection with error: nope"),
        "{body}"
    );
    assert_eq!(gateway.connections().await, 0);
}

#[tokio::test]
async fn without_a_server_clients_get_503() {
    let gateway = TestGateway::start(&["--server-grace-ms", "100"]);
    let ws = attach(&gateway, "chat", &tunnel_token("chat", "server-a", KEY))
        .await
        .unwrap();
    drop(ws);
    let url = gateway.client_url(
        "chat",
        &format!(
            "EIO=4&transport=polling&access_token={}",
            gateway.token("chat")
        ),
    );
    for _ in 0..50 {
        let response = reqwest::get(&url).await.unwrap();
        if response.status() == 503 {
            let body = response.text().await.unwrap();
            assert!(body.contains("'chat'"), "{body}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("a hub whose only server left must refuse clients with 503");
}

#[tokio::test]
async fn idle_tunnels_get_keepalive_messages() {
    let gateway = TestGateway::start(&["--tunnel-keepalive-ms", "200"]);
    let mut ws = attached_server(&gateway, "server-a").await;
    let mut keepalives = 0;
    while keepalives < 2 {
        let message = tokio::time::timeout(Duration::from_secs(3), ws.next())
            .await
            .expect("a keep-alive in time")
            .unwrap()
            .unwrap();
        if let Message::Binary(bytes) = message
            && matches!(
                frame::decode(&bytes).unwrap(),
                TunnelMessage::ServiceStatus { .. }
            )
        {
            keepalives += 1;
        }
    }
}

#[tokio::test]
async fn a_server_may_leave_heartbeats_to_the_gateway() {
    let gateway = TestGateway::start(&[]);
    let mut ws = attached_server(&gateway, "rust-app").await;
    let handshake = client_handshake(&gateway, "");
    let connect = next_request(&mut ws).await;
    let sid = connect.header("ce-connectionId").unwrap().to_owned();
    let body = serde_json::json!({
        "socketio": { "sid": sid, "upgrades": [], "pingInterval": 200, "pingTimeout": 2000, "maxPayload": 1000 },
        "heartbeat": "gateway",
    });
    reply(
        &mut ws,
        HttpResponse::reply_to(&connect, 200).with_content(body.to_string()),
    )
    .await;
    assert!(handshake.await.unwrap().1.contains("\"pingInterval\":200"));
    assert!(next_request(&mut ws).await.header("ce-type") == Some("azure.webpubsub.sys.connected"));

    // The gateway pings the client itself; the pong does not cross the tunnel.
    let token = gateway.token("chat");
    let poll_url = gateway.client_url(
        "chat",
        &format!("EIO=4&transport=polling&sid={sid}&access_token={token}"),
    );
    let poll = reqwest::get(&poll_url).await.unwrap().text().await.unwrap();
    assert_eq!(poll, "2");
    let status = reqwest::Client::new()
        .post(&poll_url)
        .body("3\u{1e}42[\"after\"]")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let event = next_request(&mut ws).await;
    assert_eq!(
        event.content.as_deref(),
        Some(&b"42[\"after\"]"[..]),
        "only the message crosses the tunnel"
    );
}

/// Answers the `connect` of the next client handshake (no heartbeat from
/// the server side, long ping interval) and reads its `connected`; returns
/// the connection id.
async fn accept_client(ws: &mut Ws) -> String {
    let connect = next_request(ws).await;
    let sid = connect.header("ce-connectionId").unwrap().to_owned();
    let body = serde_json::json!({
        "socketio": { "sid": sid, "upgrades": ["websocket"], "pingInterval": 60_000, "pingTimeout": 60_000, "maxPayload": 1_000_000 },
        "heartbeat": "gateway",
    });
    reply(
        ws,
        HttpResponse::reply_to(&connect, 200).with_content(body.to_string()),
    )
    .await;
    let connected = next_request(ws).await;
    assert_eq!(
        connected.header("ce-type"),
        Some("azure.webpubsub.sys.connected")
    );
    sid
}

/// What a flooding client sent before the gateway closed it, and what it saw.
#[derive(Debug)]
struct Flood {
    sent_bytes: usize,
    closed: bool,
    seen: String,
}

/// Most a flooding client sends: far past any bound, so without one the
/// gateway's memory would grow by this much per client.
const FLOOD_CAP: usize = 96 * 1024 * 1024;

/// A 60 KB Socket.IO event (text).
fn big_event() -> String {
    format!("42[\"flood\",\"{}\"]", "x".repeat(60_000))
}

/// Floods over WebSocket until the gateway closes the connection.
async fn flood_websocket(gateway: &TestGateway, sid: &str) -> Flood {
    let url = format!(
        "{}/clients/socketio/hubs/chat/?EIO=4&transport=websocket&sid={sid}&access_token={}",
        gateway.ws(),
        gateway.token("chat")
    );
    let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // Engine.IO upgrade: probe, then upgrade.
    client.send(Message::text("2probe")).await.unwrap();
    let probe = client.next().await.unwrap().unwrap();
    assert_eq!(probe.to_text().unwrap(), "3probe");
    client.send(Message::text("5")).await.unwrap();
    let (mut sink, mut stream) = client.split();
    let reader = tokio::spawn(async move {
        let mut seen = String::new();
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Text(text) => seen.push_str(&format!("text {text:?}; ")),
                Message::Close(frame) => seen.push_str(&format!("close {frame:?}; ")),
                _ => {}
            }
        }
        seen
    });
    let event = big_event();
    let mut sent_bytes = 0;
    while sent_bytes < FLOOD_CAP && !reader.is_finished() {
        if sink.send(Message::text(event.clone())).await.is_err() {
            break;
        }
        sent_bytes += event.len();
    }
    let _ = sink.close().await;
    let closed = sent_bytes < FLOOD_CAP;
    let seen = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .map(|r| r.unwrap())
        .unwrap_or_else(|_| "still open".into());
    Flood {
        sent_bytes,
        closed,
        seen,
    }
}

/// Floods over polling POSTs (about 900 KB each) until one is refused.
async fn flood_polling(gateway: &TestGateway, sid: &str) -> Flood {
    let url = gateway.client_url(
        "chat",
        &format!(
            "EIO=4&transport=polling&sid={sid}&access_token={}",
            gateway.token("chat")
        ),
    );
    let body = vec![big_event(); 15].join("\u{1e}");
    let http = reqwest::Client::new();
    let mut sent_bytes = 0;
    let mut closed = false;
    while sent_bytes < FLOOD_CAP {
        let status = http
            .post(&url)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status();
        if status != 200 {
            closed = true;
            break;
        }
        sent_bytes += body.len();
    }
    let poll = http.get(&url).send().await.unwrap();
    let seen = format!("{} {:?}", poll.status(), poll.text().await.unwrap());
    Flood {
        sent_bytes,
        closed,
        seen,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_flooding_a_stalled_server_are_closed_and_memory_stays_bounded() {
    // The byte bound from the environment, the packet bound from a flag.
    let gateway = TestGateway::start_with_env(
        &["--max-app-backlog-packets", "100000"],
        &[("PORTCULLIS_MAX_APP_BACKLOG_BYTES", "2097152")],
    );
    let mut app = attached_server(&gateway, "stalled-app").await;
    let mut sids = Vec::new();
    for _ in 0..2 {
        let handshake = client_handshake(&gateway, "");
        sids.push(accept_client(&mut app).await);
        handshake.await.unwrap();
    }
    // Each client's first event reaches the app, which never answers it.
    let mut in_flight = Vec::new();
    for sid in &sids {
        let url = gateway.client_url(
            "chat",
            &format!(
                "EIO=4&transport=polling&sid={sid}&access_token={}",
                gateway.token("chat")
            ),
        );
        let status = reqwest::Client::new()
            .post(url)
            .body("40")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        in_flight.push(next_request(&mut app).await);
    }

    let before = resident_kib(gateway.pid());
    let (ws, polling) = tokio::join!(
        flood_websocket(&gateway, &sids[0]),
        flood_polling(&gateway, &sids[1])
    );
    let after = resident_kib(gateway.pid());
    eprintln!(
        "gateway VmRSS: {before} KiB before, {after} KiB after the floods; \
         websocket client sent {} bytes, closed {}, saw {}; \
         polling client sent {} bytes, closed {}, saw {}",
        ws.sent_bytes, ws.closed, ws.seen, polling.sent_bytes, polling.closed, polling.seen
    );
    assert!(ws.closed, "the websocket client was not closed: {ws:?}");
    assert!(
        polling.closed,
        "the polling client was not closed: {polling:?}"
    );
    assert!(
        ws.seen.contains("text \"1\"") || ws.seen.contains("close"),
        "{ws:?}"
    );
    assert!(
        polling.seen.contains("\"1\"") || polling.seen.starts_with("400"),
        "{polling:?}"
    );
    // Generous: the bound is 2 MiB per client.
    assert!(
        after - before < 64 * 1024,
        "gateway memory grew by {} KiB while flooding a stalled server",
        after - before
    );

    // Once the app answers, it learns why each client went.
    for event in &in_flight {
        reply(&mut app, HttpResponse::reply_to(event, 200)).await;
    }
    for _ in &sids {
        let disconnected = next_request(&mut app).await;
        assert_eq!(
            disconnected.header("ce-type"),
            Some("azure.webpubsub.sys.disconnected")
        );
        let body: serde_json::Value =
            serde_json::from_slice(disconnected.content.as_ref().unwrap()).unwrap();
        let reason = body["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("client backlog full"), "{reason}");
    }
    gateway.wait_connections(0).await;
}

/// A TCP proxy in front of the gateway whose connections can all be cut at
/// once, as a network failure between an app server and the gateway.
struct CuttableProxy {
    addr: std::net::SocketAddr,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let registry = links.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                registry.lock().unwrap().push(link.abort_handle());
            }
        });
        CuttableProxy { addr, links }
    }

    fn ws(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Drops every connection made so far (both sockets close).
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

/// Reads user events until their records add up to `count`; answers each.
async fn read_events(app: &mut Ws, count: usize) -> Vec<String> {
    let mut records = Vec::new();
    while records.len() < count {
        let event = next_request(app).await;
        assert_eq!(
            event.header("ce-type"),
            Some("azure.webpubsub.user.message")
        );
        let content = String::from_utf8(event.content.clone().unwrap().to_vec()).unwrap();
        records.extend(content.split('\u{1e}').map(str::to_owned));
        reply(app, HttpResponse::reply_to(&event, 200)).await;
    }
    records
}

#[tokio::test]
async fn a_server_that_reconnects_keeps_its_clients_and_their_events() {
    // Default grace period (30 s): events must not wait for it.
    let gateway = TestGateway::start(&[]);
    let proxy = CuttableProxy::start(gateway.addr.clone()).await;
    let token = tunnel_token("chat", "app-1", KEY);
    let mut app = attach_at(&proxy.ws(), "chat", &token).await.unwrap();
    assert!(matches!(
        next(&mut app).await,
        TunnelMessage::ConnectionConnected { .. }
    ));
    let handshake = client_handshake(&gateway, "");
    let sid = accept_client(&mut app).await;
    handshake.await.unwrap();
    let url = gateway.client_url(
        "chat",
        &format!(
            "EIO=4&transport=polling&sid={sid}&access_token={}",
            gateway.token("chat")
        ),
    );
    let http = reqwest::Client::new();
    let post = |body: String| {
        let request = http.post(&url).body(body);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(post("40".into()).await, 200);
    assert_eq!(read_events(&mut app, 1).await, ["40"]);
    // A REST round trip after the reply: the gateway has taken the reply, so
    // the cut below cannot make it redeliver "40" (at least once).
    let call = HttpRequest::new(
        1,
        "POST",
        format!("https://host/api/hubs/chat/connections/{sid}/:send?api-version=2023-07-01"),
    )
    .with_content("42[\"welcome\"]");
    app.send(Message::Binary(
        frame::encode(&TunnelMessage::HttpRequest(call)).unwrap(),
    ))
    .await
    .unwrap();
    assert!(matches!(next(&mut app).await, TunnelMessage::HttpResponse(r) if r.status_code == 202));

    // The network fails; the client keeps sending meanwhile.
    proxy.cut();
    drop(app);
    let cut_at = std::time::Instant::now();
    let sent: Vec<String> = (1..=5).map(|i| format!("42[\"during-cut\",{i}]")).collect();
    for (i, record) in sent.iter().enumerate() {
        assert_eq!(post(record.clone()).await, 200);
        if i == 0 {
            // Let the first event find the tunnel gone and wait for another.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The server comes back after a second, as the SDK and our crate do.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut app = attach_at(&proxy.ws(), "chat", &token).await.unwrap();
    let reattached_at = std::time::Instant::now();
    assert!(matches!(
        next(&mut app).await,
        TunnelMessage::ConnectionConnected { .. }
    ));
    let received = read_events(&mut app, sent.len()).await;
    let flowed_after = reattached_at.elapsed();
    eprintln!(
        "events flowed {:?} after the reattach ({:?} after the cut)",
        flowed_after,
        cut_at.elapsed()
    );
    assert_eq!(received, sent, "every event, once, in order");
    assert!(
        flowed_after < Duration::from_secs(10),
        "events waited {flowed_after:?} for the returning server"
    );
    assert_eq!(gateway.connections().await, 1, "the client stays connected");
    assert_eq!(post("42[\"after\"]".into()).await, 200);
    assert_eq!(read_events(&mut app, 1).await, ["42[\"after\"]"]);
}

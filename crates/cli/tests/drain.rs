//! Graceful drain of the real binary on SIGTERM / SIGINT: readiness, the
//! `503`s of a draining gateway, clients closed in spread-out batches with
//! an Engine.IO-level close (never a Socket.IO DISCONNECT), tunnels asked to
//! reconnect, and the exit within the drain timeout. The reconnection of
//! real socket.io-client clients to a second gateway is in
//! tests/compat/test/drain.test.mjs, that of the Rust crate's tunnel in
//! crates/server/tests/drain.rs.

mod common;

use std::time::{Duration, Instant};

use common::{KEY, TestGateway};
use futures_util::{SinkExt, StreamExt};
use portcullis_auth::{ClientTokenOptions, mint_client_token};
use portcullis_tunnel::{HttpResponse, TunnelMessage, frame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const HUB: &str = "drain";

/// Opens an Engine.IO WebSocket session on the echo hub; returns it after
/// its open packet.
async fn websocket_client(gateway: &TestGateway) -> Ws {
    let url = format!(
        "{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&access_token={}",
        gateway.ws(),
        gateway.token(HUB)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(open)))) => assert!(open.starts_with('0'), "{open}"),
        other => panic!("expected the open packet, got {other:?}"),
    }
    ws
}

/// What a WebSocket client saw until its connection ended.
#[derive(Debug)]
struct Ending {
    /// When the close frame came.
    at: Instant,
    /// Its code.
    code: Option<CloseCode>,
    /// Text frames before it (a Socket.IO DISCONNECT would be `41`).
    texts: Vec<String>,
    /// Frames after the close frame (there must be none).
    after_close: usize,
}

/// Reads `ws` until the server closes it.
async fn until_closed(mut ws: Ws) -> Ending {
    let mut texts = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("closed within the drain");
        match message {
            Some(Ok(Message::Text(text))) => texts.push(text.to_string()),
            Some(Ok(Message::Close(frame))) => {
                let at = Instant::now();
                let mut after_close = 0;
                while let Ok(Some(Ok(_))) =
                    tokio::time::timeout(Duration::from_secs(5), ws.next()).await
                {
                    after_close += 1;
                }
                return Ending {
                    at,
                    code: frame.map(|f| f.code),
                    texts,
                    after_close,
                };
            }
            Some(Ok(_)) => {}
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }
}

/// `GET path` on the gateway: status, `Retry-After` and JSON body.
async fn get_json(gateway: &TestGateway, path: &str) -> (u16, Option<String>, serde_json::Value) {
    let response = reqwest::get(format!("{}{path}", gateway.http()))
        .await
        .expect("request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.expect("a JSON body");
    (status, retry_after, body)
}

async fn wait_not_ready(gateway: &TestGateway) {
    for _ in 0..200 {
        if get_json(gateway, "/ready").await.0 == 503 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("/ready never turned 503");
}

/// The whole drain: not ready, 503 to new clients and tunnels, every live
/// client closed with a WebSocket close (code 1000) or a close packet to its
/// poll, in batches spread over the period, nothing written after the close,
/// and the process exits by itself, successfully, well before the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_clients_in_spread_out_batches_and_exits() {
    let mut gateway = TestGateway::start(&[
        "--echo-hub",
        HUB,
        "--drain-period-ms",
        "2000",
        "--drain-timeout-ms",
        "10000",
    ]);
    let (status, _, ready) = get_json(&gateway, "/ready").await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
    let (_, _, health) = get_json(&gateway, "/health").await;
    assert_eq!(health["ready"], true);

    const WEBSOCKETS: usize = 20;
    let mut sockets = Vec::new();
    for _ in 0..WEBSOCKETS {
        sockets.push(websocket_client(&gateway).await);
    }
    // Two polling clients, each with a poll waiting for packets.
    let http = reqwest::Client::new();
    let mut polls = Vec::new();
    for _ in 0..2 {
        let open = http
            .get(gateway.client_url(
                HUB,
                &format!(
                    "EIO=4&transport=polling&access_token={}",
                    gateway.token(HUB)
                ),
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let sid = open.split("\"sid\":\"").nth(1).unwrap().split('"').next();
        let poll = http
            .get(gateway.client_url(
                HUB,
                &format!(
                    "EIO=4&transport=polling&sid={}&access_token={}",
                    sid.unwrap(),
                    gateway.token(HUB)
                ),
            ))
            .send();
        polls.push(tokio::spawn(async move {
            poll.await.unwrap().text().await.unwrap()
        }));
    }
    gateway.wait_connections((WEBSOCKETS + 2) as u64).await;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(until_closed(ws)))
        .collect();

    let signalled = Instant::now();
    gateway.signal(libc::SIGTERM);
    wait_not_ready(&gateway).await;
    let (status, retry_after, body) = get_json(&gateway, "/ready").await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "draining");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let (status, _, health) = get_json(&gateway, "/health").await;
    assert_eq!((status, health["ready"].as_bool()), (200, Some(false)));

    // A new client gets a JSON 503 with Retry-After, before the gate.
    let refused = http
        .get(gateway.client_url(
            HUB,
            &format!(
                "EIO=4&transport=polling&access_token={}",
                gateway.token(HUB)
            ),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("shutting down"),
        "{body}"
    );
    // So does a new application server.
    let tunnel = tokio_tungstenite::connect_async(format!(
        "{}/server/tunnel?hub=other&access_token={}",
        gateway.ws(),
        tunnel_token("other", "late-server")
    ))
    .await;
    match tunnel {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected a 503, got {other:?}"),
    }

    let mut endings = Vec::new();
    for reader in readers {
        endings.push(reader.await.unwrap());
    }
    for ending in &endings {
        assert_eq!(ending.code, Some(CloseCode::Normal), "{ending:?}");
        assert!(
            !ending.texts.iter().any(|t| t.starts_with("41")),
            "a Socket.IO DISCONNECT stops socket.io-client from reconnecting: {ending:?}"
        );
        assert_eq!(ending.after_close, 0, "written after the close: {ending:?}");
    }
    for poll in polls {
        assert_eq!(
            poll.await.unwrap(),
            "1",
            "a pending poll gets the close packet"
        );
    }
    // Spread out: 22 clients in 22 batches over 2 s, not all at once.
    let first = endings.iter().map(|e| e.at).min().unwrap();
    let last = endings.iter().map(|e| e.at).max().unwrap();
    let spread = last - first;
    assert!(
        spread >= Duration::from_millis(1200),
        "closes spread over {spread:?}"
    );
    assert!(
        last - signalled < Duration::from_millis(4000),
        "last close {:?} after the signal",
        last - signalled
    );

    let status = gateway
        .wait_exit(Duration::from_secs(10))
        .expect("the gateway exits within the drain timeout");
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(8));
}

/// A second signal during the drain exits at once, without finishing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let mut gateway = TestGateway::start(&[
        "--echo-hub",
        HUB,
        "--drain-period-ms",
        "20000",
        "--drain-timeout-ms",
        "30000",
    ]);
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(websocket_client(&gateway).await);
    }
    gateway.signal(libc::SIGINT);
    wait_not_ready(&gateway).await;
    let second = Instant::now();
    gateway.signal(libc::SIGTERM);
    let status = gateway
        .wait_exit(Duration::from_secs(2))
        .expect("exits at once on the second signal");
    assert!(!status.success(), "{status:?}");
    assert!(second.elapsed() < Duration::from_secs(2));
}

/// The drain timeout bounds the exit even when a client never takes its
/// close frame (it stopped reading, and the gateway's write timeout is far
/// longer than the drain timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_bounds_the_exit() {
    let mut gateway = TestGateway::start(&[
        "--echo-hub",
        HUB,
        "--drain-period-ms",
        "200",
        "--drain-timeout-ms",
        "1500",
        "--write-timeout-ms",
        "120000",
    ]);
    let mut ws = websocket_client(&gateway).await;
    // Fill the gateway's writes to this client: it echoes everything and
    // the client reads nothing.
    let event = format!("4{}", "x".repeat(60_000));
    let mut sent = 0usize;
    while sent < 64 * 1024 * 1024 {
        match tokio::time::timeout(Duration::from_millis(500), ws.send(Message::text(&event))).await
        {
            Ok(Ok(())) => sent += event.len(),
            _ => break,
        }
    }
    let signalled = Instant::now();
    gateway.signal(libc::SIGTERM);
    let status = gateway
        .wait_exit(Duration::from_secs(5))
        .expect("exits by the drain timeout");
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(3500),
        "exited {took:?} after the signal (timeout 1.5 s)"
    );
    drop(ws);
}

fn tunnel_token(hub: &str, sub: &str) -> String {
    let options = ClientTokenOptions {
        user_id: Some(sub.into()),
        ..Default::default()
    };
    mint_client_token(
        KEY,
        &format!("ws://localhost/server/tunnel?hub={hub}"),
        &options,
    )
}

/// The next tunnel message, skipping keep-alives; `None` once it closed.
async fn next(ws: &mut Ws) -> Option<TunnelMessage> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a tunnel message in time");
        match message {
            Some(Ok(Message::Binary(bytes))) => match frame::decode(&bytes).expect("valid frame") {
                TunnelMessage::ServiceStatus { .. } => continue,
                other => return Some(other),
            },
            Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// An application server attached over the tunnel keeps serving its
/// clients while they are closed (it hears each `disconnected`), and is then
/// told to reconnect, with `ConnectionReconnect` (not `ConnectionClose`,
/// which would stop the SDK for good); its reconnect to the draining
/// gateway gets 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_is_told_to_reconnect_after_its_clients_are_closed() {
    let mut gateway =
        TestGateway::start(&["--drain-period-ms", "500", "--drain-timeout-ms", "8000"]);
    let url = format!(
        "{}/server/tunnel?hub=app&access_token={}",
        gateway.ws(),
        tunnel_token("app", "server-1")
    );
    let (mut tunnel, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert!(matches!(
        next(&mut tunnel).await,
        Some(TunnelMessage::ConnectionConnected { .. })
    ));
    // Two clients, accepted by the application server.
    let mut handshakes = Vec::new();
    for _ in 0..2 {
        let request = gateway.client_url(
            "app",
            &format!(
                "EIO=4&transport=polling&access_token={}",
                gateway.token("app")
            ),
        );
        handshakes.push(tokio::spawn(async move {
            reqwest::get(request).await.unwrap().status().as_u16()
        }));
        let Some(TunnelMessage::HttpRequest(connect)) = next(&mut tunnel).await else {
            panic!("expected the connect event");
        };
        let sid = connect.header("ce-connectionId").unwrap().to_owned();
        let body = serde_json::json!({
            "socketio": { "sid": sid, "upgrades": [], "pingInterval": 60_000, "pingTimeout": 60_000, "maxPayload": 1_000_000 },
            "heartbeat": "gateway",
        });
        let answer = HttpResponse::reply_to(&connect, 200).with_content(body.to_string());
        tunnel
            .send(Message::Binary(
                frame::encode(&TunnelMessage::HttpResponse(answer)).unwrap(),
            ))
            .await
            .unwrap();
        let Some(TunnelMessage::HttpRequest(connected)) = next(&mut tunnel).await else {
            panic!("expected the connected event");
        };
        assert_eq!(
            connected.header("ce-type"),
            Some("azure.webpubsub.sys.connected")
        );
    }
    for handshake in handshakes {
        assert_eq!(handshake.await.unwrap(), 200);
    }

    gateway.signal(libc::SIGTERM);
    let mut disconnected = 0;
    let reconnect = loop {
        match next(&mut tunnel).await {
            Some(TunnelMessage::HttpRequest(event))
                if event.header("ce-type") == Some("azure.webpubsub.sys.disconnected") =>
            {
                disconnected += 1
            }
            Some(TunnelMessage::HttpRequest(_)) => {}
            Some(other) => break other,
            None => panic!("the tunnel closed without ConnectionReconnect"),
        }
    };
    assert_eq!(disconnected, 2, "the server heard its clients go first");
    match reconnect {
        TunnelMessage::ConnectionReconnect {
            endpoint,
            target_id,
            ..
        } => {
            // No endpoint: the SDK reconnects where it was configured to (a
            // load balancer, which sends it to a ready node).
            assert_eq!((endpoint.as_str(), target_id.as_str()), ("", ""));
        }
        other => panic!("expected ConnectionReconnect, got {other:?}"),
    }
    // The SDK's reconnect to this gateway is refused while it drains.
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        Err(_) => {} // already gone
        Ok(_) => panic!("a draining gateway accepted a tunnel"),
    }
    // The server leaves, as the SDK does; the gateway then exits.
    let _ = tunnel.close(None).await;
    let status = gateway
        .wait_exit(Duration::from_secs(8))
        .expect("exits after the drain");
    assert!(status.success(), "{status:?}");
}

/// A polling client that the drain closes between two polls gets the close
/// packet `1` on its next poll (socket.io-client then reports "transport
/// close"), not an unknown-session error; a poll after that finds no
/// session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_client_closed_between_polls_gets_the_close_packet_next() {
    let mut gateway = TestGateway::start(&[
        "--echo-hub",
        HUB,
        "--drain-period-ms",
        "100",
        "--drain-timeout-ms",
        "8000",
    ]);
    // An application server that ignores ConnectionReconnect keeps the drain,
    // and so the listener, going for a moment after the clients are closed.
    let (mut tunnel, _) = tokio_tungstenite::connect_async(format!(
        "{}/server/tunnel?hub=apps&access_token={}",
        gateway.ws(),
        tunnel_token("apps", "slow-to-leave")
    ))
    .await
    .unwrap();
    assert!(matches!(
        next(&mut tunnel).await,
        Some(TunnelMessage::ConnectionConnected { .. })
    ));
    let query = format!(
        "EIO=4&transport=polling&access_token={}",
        gateway.token(HUB)
    );
    let open = reqwest::get(gateway.client_url(HUB, &query))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let poll_url = gateway.client_url(HUB, &format!("{query}&sid={sid}"));
    gateway.wait_connections(1).await;

    gateway.signal(libc::SIGTERM);
    wait_not_ready(&gateway).await;
    gateway.wait_connections(0).await;
    let poll = reqwest::get(&poll_url).await.unwrap();
    assert_eq!(poll.status(), 200);
    assert_eq!(poll.text().await.unwrap(), "1");
    let again = reqwest::get(&poll_url).await.unwrap();
    assert_eq!(again.status(), 400);

    assert!(matches!(
        next(&mut tunnel).await,
        Some(TunnelMessage::ConnectionReconnect { .. })
    ));
    drop(tunnel);
    let status = gateway
        .wait_exit(Duration::from_secs(8))
        .expect("exits after the drain");
    assert!(status.success(), "{status:?}");
}

//! `/metrics` against the real binary, read with a real Prometheus text
//! parser (`prometheus-parse`): off unless enabled, the bearer token, the
//! separate listen address, and values that move as clients connect, are
//! refused, send and leave, as application servers attach and as the REST
//! API is called.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{KEY, TestGateway, token_for};
use futures_util::{SinkExt, StreamExt};
use portcullis_auth::{ClientTokenOptions, mint_client_token, mint_client_token_at};
use portcullis_tunnel::{HttpResponse, TunnelMessage, frame};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One parsed scrape.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    /// The sum of the samples `name` whose labels include `labels` (as
    /// PromQL's `sum(name{labels})`); 0 if there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => panic!("{name} is not a single value"),
            })
            .sum()
    }

    /// Whether any sample carries label `key` with value `value`.
    fn has_label(&self, key: &str, value: &str) -> bool {
        self.0
            .samples
            .iter()
            .any(|s| s.labels.get(key) == Some(value))
    }
}

/// Scrapes `url` (with the bearer `token`, if any) and parses the text.
async fn scrape_at(url: &str, token: Option<&str>) -> Scrape {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("scrape");
    assert_eq!(response.status(), 200, "scrape of {url}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Scrape(prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text"))
}

async fn scrape_of(gateway: &TestGateway) -> Scrape {
    scrape_at(&format!("{}/metrics", gateway.http()), None).await
}

/// Scrapes until `check` holds (values move a moment after the client sees
/// its answer), or panics after 5 s with the last scrape's values.
async fn scrape_until(gateway: &TestGateway, check: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..100 {
        let scrape = scrape_of(gateway).await;
        if check(&scrape) {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let samples: Vec<String> = scrape_of(gateway)
        .await
        .0
        .samples
        .iter()
        .map(|s| format!("{}{} {:?}", s.metric, s.labels, s.value))
        .collect();
    panic!("condition not met; samples:\n{}", samples.join("\n"));
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Opens an Engine.IO WebSocket session on `hub` with `token`; returns the
/// socket after the open packet.
async fn websocket_client(gateway: &TestGateway, hub: &str, token: &str) -> Ws {
    let url = format!(
        "{}/clients/socketio/hubs/{hub}/?EIO=4&transport=websocket&access_token={token}",
        gateway.ws()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'), "open packet, got {open}");
    ws
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("frame");
        match message {
            Message::Text(text) => return text.to_string(),
            Message::Binary(bytes) => {
                if let Ok(TunnelMessage::ServiceStatus { .. }) = frame::decode(&bytes) {
                    continue;
                }
                return format!("binary:{}", bytes.len());
            }
            _ => continue,
        }
    }
}

/// A polling handshake's status.
async fn polling_handshake(gateway: &TestGateway, hub: &str, token: Option<&str>) -> u16 {
    let token = token
        .map(|t| format!("&access_token={t}"))
        .unwrap_or_default();
    let url = gateway.client_url(hub, &format!("EIO=4&transport=polling{token}"));
    reqwest::get(url).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn metrics_are_off_unless_enabled() {
    let gateway = TestGateway::start(&["--echo-hub", "echo"]);
    let response = reqwest::get(format!("{}/metrics", gateway.http()))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn values_move_as_clients_connect_are_refused_send_and_leave() {
    let gateway = TestGateway::start(&["--metrics", "--echo-hub", "echo"]);
    let echo = [("hub", "echo")];
    let before = scrape_of(&gateway).await;
    assert_eq!(before.value("portcullis_connections", &echo), 0.0);
    assert_eq!(
        before.value(
            "portcullis_handshakes_total",
            &[("hub", "echo"), ("outcome", "accepted")]
        ),
        0.0
    );

    // Refusals, each under its reason.
    assert_eq!(polling_handshake(&gateway, "echo", None).await, 401);
    assert_eq!(
        polling_handshake(&gateway, "echo", Some("not-a-jwt")).await,
        401
    );
    let options = ClientTokenOptions {
        user_id: Some("bob".into()),
        ..Default::default()
    };
    let audience = "http://localhost/clients/socketio/hubs/echo";
    let expired = mint_client_token_at(KEY, audience, &options, now() - 7200);
    assert_eq!(
        polling_handshake(&gateway, "echo", Some(&expired)).await,
        401
    );
    let other_hub = token_for("other", &options);
    assert_eq!(
        polling_handshake(&gateway, "echo", Some(&other_hub)).await,
        401
    );
    // A hub nobody serves: counted under one label, whatever its name.
    let invented = token_for("invented1", &options);
    assert_eq!(
        polling_handshake(&gateway, "invented1", Some(&invented)).await,
        503
    );
    assert_eq!(polling_handshake(&gateway, "invented2", None).await, 401);

    let scrape = scrape_of(&gateway).await;
    let refusals = |reason| {
        scrape.value(
            "portcullis_handshake_refusals_total",
            &[("hub", "echo"), ("reason", reason)],
        )
    };
    assert_eq!(refusals("missing_token"), 1.0);
    assert_eq!(refusals("invalid_token"), 1.0);
    assert_eq!(refusals("expired_token"), 1.0);
    assert_eq!(refusals("wrong_audience"), 1.0);
    assert_eq!(
        scrape.value(
            "portcullis_handshakes_total",
            &[("hub", "echo"), ("outcome", "refused")]
        ),
        4.0
    );
    let unknown = |reason| {
        scrape.value(
            "portcullis_handshake_refusals_total",
            &[("hub", "(unknown)"), ("reason", reason)],
        )
    };
    assert_eq!(unknown("no_application"), 1.0);
    assert_eq!(unknown("missing_token"), 1.0);
    assert!(!scrape.has_label("hub", "invented1") && !scrape.has_label("hub", "invented2"));

    // A WebSocket client connects and sends; the echo application answers.
    let mut client = websocket_client(&gateway, "echo", &gateway.token("echo")).await;
    let ws = [("hub", "echo"), ("transport", "websocket")];
    scrape_until(&gateway, |s| s.value("portcullis_connections", &ws) == 1.0).await;
    client.send(Message::Text("40".into())).await.unwrap();
    client
        .send(Message::Text("42[\"hi\"]".into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut client).await, "40");
    assert_eq!(next_text(&mut client).await, "42[\"hi\"]");
    let scrape = scrape_until(&gateway, |s| {
        s.value("portcullis_messages_sent_total", &ws) == 2.0
    })
    .await;
    assert_eq!(scrape.value("portcullis_messages_received_total", &ws), 2.0);
    // Bytes are the messages' data: "0" and "2[\"hi\"]".
    assert_eq!(scrape.value("portcullis_received_bytes_total", &ws), 8.0);
    assert_eq!(scrape.value("portcullis_sent_bytes_total", &ws), 8.0);
    assert_eq!(
        scrape.value("portcullis_connections_opened_total", &ws),
        1.0
    );
    assert_eq!(
        scrape.value(
            "portcullis_handshakes_total",
            &[("hub", "echo"), ("outcome", "accepted")]
        ),
        1.0
    );
    assert_eq!(
        scrape.value("portcullis_fanout_deliveries_total", &echo),
        2.0
    );
    assert_eq!(
        scrape.value("portcullis_fanout_duration_seconds_count", &echo),
        2.0
    );

    // It leaves.
    client.close(None).await.unwrap();
    let scrape = scrape_until(&gateway, |s| s.value("portcullis_connections", &ws) == 0.0).await;
    assert_eq!(
        scrape.value(
            "portcullis_disconnections_total",
            &[("hub", "echo"), ("reason", "transport_closed")]
        ),
        1.0
    );
}

#[tokio::test]
async fn polling_clients_and_upgrades_are_counted_by_transport() {
    let gateway = TestGateway::start(&["--metrics", "--echo-hub", "echo"]);
    let token = gateway.token("echo");
    let body = reqwest::get(gateway.client_url(
        "echo",
        &format!("EIO=4&transport=polling&access_token={token}"),
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let open: serde_json::Value = serde_json::from_str(&body[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    let polling = [("hub", "echo"), ("transport", "polling")];
    let websocket = [("hub", "echo"), ("transport", "websocket")];
    let scrape = scrape_of(&gateway).await;
    assert_eq!(scrape.value("portcullis_connections", &polling), 1.0);
    assert_eq!(scrape.value("portcullis_connections", &websocket), 0.0);
    assert_eq!(
        scrape.value("portcullis_connections_opened_total", &polling),
        1.0
    );

    // The client posts a message over polling.
    let post = reqwest::Client::new()
        .post(gateway.client_url(
            "echo",
            &format!("EIO=4&transport=polling&sid={sid}&access_token={token}"),
        ))
        .body("4hello")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    let answer = reqwest::get(gateway.client_url(
        "echo",
        &format!("EIO=4&transport=polling&sid={sid}&access_token={token}"),
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert_eq!(answer, "4hello");
    let scrape = scrape_until(&gateway, |s| {
        s.value("portcullis_messages_sent_total", &polling) == 1.0
    })
    .await;
    assert_eq!(
        scrape.value("portcullis_messages_received_total", &polling),
        1.0
    );
    assert_eq!(
        scrape.value("portcullis_received_bytes_total", &polling),
        5.0
    );

    // Then upgrades: 2probe, 3probe, 5.
    let url = format!(
        "{}/clients/socketio/hubs/echo/?EIO=4&transport=websocket&sid={sid}&access_token={token}",
        gateway.ws()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text("2probe".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    ws.send(Message::Text("5".into())).await.unwrap();
    let scrape = scrape_until(&gateway, |s| {
        s.value("portcullis_upgrades_total", &[("hub", "echo")]) == 1.0
    })
    .await;
    assert_eq!(scrape.value("portcullis_connections", &websocket), 1.0);
    assert_eq!(scrape.value("portcullis_connections", &polling), 0.0);
}

#[tokio::test]
async fn a_configured_token_is_required() {
    let gateway = TestGateway::start(&["--metrics", "--metrics-token", "scrape-secret"]);
    let url = format!("{}/metrics", gateway.http());
    let client = reqwest::Client::new();
    for token in [None, Some("wrong"), Some("scrape-secre"), Some("")] {
        let mut request = client.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "token {token:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], 401);
        assert!(!body.to_string().contains("scrape-secret"));
    }
    let scrape = scrape_at(&url, Some("scrape-secret")).await;
    assert_eq!(
        scrape.value(
            "portcullis_handshakes_total",
            &[("hub", "(unknown)"), ("outcome", "accepted")]
        ),
        0.0
    );
}

#[tokio::test]
async fn metrics_may_have_their_own_listen_address() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = free.local_addr().unwrap().to_string();
    drop(free);
    let gateway = TestGateway::start_with_env(
        &["--echo-hub", "echo"],
        &[("PORTCULLIS_METRICS_LISTEN", metrics_addr.as_str())],
    );
    // Not on the main listener …
    let main = reqwest::get(format!("{}/metrics", gateway.http()))
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
    // … but on its own, which serves nothing else.
    let mut ready = false;
    for _ in 0..50 {
        if reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the metrics listener answers");
    let url = format!("http://{metrics_addr}/metrics");
    let _client = websocket_client(&gateway, "echo", &gateway.token("echo")).await;
    let scrape = scrape_at(&url, None).await;
    assert_eq!(
        scrape.value(
            "portcullis_connections",
            &[("hub", "echo"), ("transport", "websocket")]
        ),
        1.0
    );
    let other = reqwest::get(format!("http://{metrics_addr}/health"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
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

async fn next_tunnel_message(ws: &mut Ws) -> TunnelMessage {
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

#[tokio::test]
async fn tunnels_their_requests_and_rest_calls_are_counted() {
    let gateway = TestGateway::start(&["--metrics"]);
    let chat = [("hub", "chat")];
    let url = format!(
        "{}/server/tunnel?hub=chat&access_token={}",
        gateway.ws(),
        tunnel_token("chat", "app-1")
    );
    let (mut app, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(matches!(
        next_tunnel_message(&mut app).await,
        TunnelMessage::ConnectionConnected { .. }
    ));
    scrape_until(&gateway, |s| s.value("portcullis_tunnels", &chat) == 1.0).await;

    // A client's connect crosses the tunnel: one timed request.
    let token = gateway.token("chat");
    let handshake = {
        let url = gateway.client_url(
            "chat",
            &format!("EIO=4&transport=polling&access_token={token}"),
        );
        tokio::spawn(async move { reqwest::get(url).await.unwrap().status().as_u16() })
    };
    let connect = match next_tunnel_message(&mut app).await {
        TunnelMessage::HttpRequest(request) => request,
        other => panic!("expected connect, got {other:?}"),
    };
    let sid = connect.header("ce-connectionId").unwrap().to_owned();
    let body = serde_json::json!({
        "socketio": { "sid": sid, "upgrades": ["websocket"], "pingInterval": 60_000, "pingTimeout": 60_000, "maxPayload": 1_000_000 },
    });
    let reply = HttpResponse::reply_to(&connect, 200).with_content(body.to_string());
    app.send(Message::Binary(
        frame::encode(&TunnelMessage::HttpResponse(reply)).unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(handshake.await.unwrap(), 200);
    let scrape = scrape_of(&gateway).await;
    assert_eq!(
        scrape.value("portcullis_tunnel_request_duration_seconds_count", &chat),
        1.0
    );
    assert_eq!(
        scrape.value(
            "portcullis_handshakes_total",
            &[("hub", "chat"), ("outcome", "accepted")]
        ),
        1.0
    );

    // A REST call over plain HTTP, by operation and status.
    let operator = mint_client_token(
        KEY,
        &format!("{}/api/hubs/chat", gateway.http()),
        &ClientTokenOptions::default(),
    );
    let client = reqwest::Client::new();
    let sent = client
        .post(format!("{}/api/hubs/chat/:send", gateway.http()))
        .bearer_auth(&operator)
        .header("content-type", "text/plain")
        .body("42[\"news\"]")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let unauthorised = client
        .post(format!("{}/api/hubs/chat/:send", gateway.http()))
        .bearer_auth("nope")
        .body("42[\"news\"]")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    let scrape = scrape_of(&gateway).await;
    assert_eq!(
        scrape.value(
            "portcullis_rest_requests_total",
            &[("operation", "send_to_all"), ("status", "202")]
        ),
        1.0
    );
    assert_eq!(
        scrape.value(
            "portcullis_rest_requests_total",
            &[("operation", "send_to_all"), ("status", "401")]
        ),
        1.0
    );
    assert_eq!(
        scrape.value("portcullis_fanout_deliveries_total", &chat),
        1.0
    );

    // The server leaves.
    app.close(None).await.unwrap();
    scrape_until(&gateway, |s| s.value("portcullis_tunnels", &chat) == 0.0).await;
}

#[tokio::test]
async fn the_toml_file_enables_metrics_with_a_token_and_empty_secrets_are_refused() {
    let dir = std::env::temp_dir().join(format!("portcullis-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!("access_keys = [\"{KEY}\"]\nmetrics = true\nmetrics_token = \"from-file\"\n"),
    )
    .unwrap();
    let gateway = TestGateway::start(&["--config", path.to_str().unwrap()]);
    let url = format!("{}/metrics", gateway.http());
    let refused = reqwest::get(&url).await.unwrap();
    assert_eq!(refused.status(), 401);
    scrape_at(&url, Some("from-file")).await;

    for args in [
        &["--metrics", "--metrics-token", ""][..],
        &["--admin", "--admin-key", ""][..],
        &["--admin", "--admin-max-sessions", "0"][..],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "--listen", "127.0.0.1:0", "--access-key", KEY])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("must"), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

//! `ConnectionRebalance` in tunnel mode: a gateway node that is one of a
//! cluster names every other node on the tunnel, and the application
//! server opens an additional tunnel WebSocket to each, with
//! `&target=<node id>`, so the clients of those nodes reach it too.
//!
//! The node that sends the rebalance is a WebSocket server in the test
//! speaking the tunnel protocol (the `ConnectionConnected` greeting, the
//! rebalance, answers to the server's REST calls): these are protocol tests
//! of the crate. The node it names is a real [`Gateway`] where a real
//! client connects and must reach the application's handlers, or a second
//! protocol-speaking server where the test checks the URL, the token, the
//! retries and the close.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{DEADLINE, HUB, KEY};
use futures_util::{SinkExt, StreamExt};
use portcullis_auth::{AccessKeys, ClientTokenOptions, mint_client_token};
use portcullis_gateway::{Gateway, GatewayConfig};
use portcullis_server::extract::{AckSender, Data};
use portcullis_server::{SocketIo, SocketRef, TunnelHandle};
use portcullis_tunnel::{HttpResponse, TunnelMessage, frame};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

/// A real gateway on 127.0.0.1:0.
struct Gw {
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

async fn gateway() -> Gw {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keys = AccessKeys::new(vec![KEY.to_owned()]).unwrap();
    let gateway = Gateway::new(GatewayConfig::new(addr, keys));
    let (shutdown, rx) = oneshot::channel::<()>();
    tokio::spawn(gateway.serve(listener, async move {
        rx.await.ok();
    }));
    Gw {
        addr,
        _shutdown: shutdown,
    }
}

/// What a protocol-speaking node saw.
#[derive(Debug)]
enum Seen {
    /// A tunnel WebSocket was accepted; its request URI.
    Accepted(String),
    /// A tunnel upgrade was refused (by plan); its request URI.
    Refused(String),
    /// A REST call from the server: method and URL.
    Call(String, String),
    /// A tunnel WebSocket ended (the peer closed it).
    Closed,
}

/// How a protocol-speaking node treats the tunnels it gets.
#[derive(Clone)]
struct Plan {
    /// Upgrades to answer 503 before accepting one.
    refuse_first: usize,
    /// Sent after `ConnectionConnected` on each accepted WebSocket.
    then: Vec<TunnelMessage>,
}

/// A node speaking the tunnel protocol on 127.0.0.1:0: greets every tunnel
/// WebSocket with `ConnectionConnected`, sends `plan.then`, answers every
/// REST call 202 (200 for group calls), and reports what it saw.
async fn protocol_node(plan: Plan) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, rx) = mpsc::unbounded_channel();
    let refusals = Arc::new(Mutex::new(plan.refuse_first));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (seen, plan, refusals) = (seen.clone(), plan.clone(), refusals.clone());
            tokio::spawn(async move {
                let uri = Arc::new(Mutex::new(String::new()));
                let refuse = {
                    let mut left = refusals.lock().unwrap();
                    let refuse = *left > 0;
                    *left = left.saturating_sub(1);
                    refuse
                };
                let seen_uri = uri.clone();
                // The error type is tungstenite's handshake callback's.
                #[allow(clippy::result_large_err)]
                let callback = move |request: &Request, response: Response| {
                    *seen_uri.lock().unwrap() = request.uri().to_string();
                    if refuse {
                        let mut error = ErrorResponse::new(Some("node starting".into()));
                        *error.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                        return Err(error);
                    }
                    Ok(response)
                };
                let ws = tokio_tungstenite::accept_hdr_async(tcp, callback).await;
                let uri = uri.lock().unwrap().clone();
                let Ok(ws) = ws else {
                    let _ = seen.send(Seen::Refused(uri));
                    return;
                };
                let _ = seen.send(Seen::Accepted(uri));
                let (mut sink, mut stream) = ws.split();
                let hello = TunnelMessage::ConnectionConnected {
                    connection_id: "tunnel-1".into(),
                    user_id: None,
                    reconnection_token: None,
                };
                for message in std::iter::once(hello).chain(plan.then) {
                    let bytes = frame::encode(&message).unwrap();
                    if sink.send(Message::Binary(bytes)).await.is_err() {
                        return;
                    }
                }
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Binary(bytes) = message else {
                        if matches!(message, Message::Close(_)) {
                            break;
                        }
                        continue;
                    };
                    if let Ok(TunnelMessage::HttpRequest(request)) = frame::decode(&bytes) {
                        let status = if request.url.contains("/:send") {
                            202
                        } else {
                            200
                        };
                        let _ = seen.send(Seen::Call(request.method.clone(), request.url.clone()));
                        let answer = HttpResponse::reply_to(&request, status);
                        let bytes = frame::encode(&TunnelMessage::HttpResponse(answer)).unwrap();
                        if sink.send(Message::Binary(bytes)).await.is_err() {
                            break;
                        }
                    }
                }
                let _ = seen.send(Seen::Closed);
            });
        }
    });
    (addr, rx)
}

fn rebalance(target: &str, endpoint: String) -> TunnelMessage {
    TunnelMessage::ConnectionRebalance {
        target_id: target.into(),
        endpoint,
        message: "another node".into(),
    }
}

fn connection_string(addr: SocketAddr) -> String {
    format!(
        "Endpoint=http://{};Port={};AccessKey={KEY};Version=1.0;",
        addr.ip(),
        addr.port()
    )
}

/// The application: reports each connection and each `hello`, which it
/// acknowledges.
fn app(io: &SocketIo, tx: mpsc::UnboundedSender<Value>) {
    io.ns("/", move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            tx.send(json!({
                "kind": "connected",
                "connection": socket.connection_id(),
                "user": socket.user_id(),
            }))
            .ok();
            socket.on(
                "hello",
                move |socket: SocketRef, Data(data): Data<Value>, ack: AckSender| {
                    let tx = tx.clone();
                    async move {
                        tx.send(json!({
                            "kind": "hello",
                            "connection": socket.connection_id(),
                            "data": data,
                        }))
                        .ok();
                        ack.send(&"hi").ok();
                    }
                },
            );
        }
    });
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("channel closed waiting for {what}"))
}

async fn wait_until(what: &str, mut probe: impl FnMut() -> bool) {
    tokio::time::timeout(DEADLINE, async {
        while !probe() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn attach(io: &SocketIo, node: SocketAddr) -> TunnelHandle {
    tokio::time::timeout(DEADLINE, io.connect_tunnel(&connection_string(node), HUB))
        .await
        .expect("the tunnel opens in time")
        .expect("the tunnel opens")
}

/// A raw Socket.IO client on WebSocket, connected to hub [`HUB`] of `gw`;
/// returns it once it sent its namespace CONNECT.
async fn client(
    gw: &Gw,
    user: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let token = mint_client_token(
        KEY,
        &format!("http://{}/clients/socketio/hubs/{HUB}", gw.addr),
        &ClientTokenOptions {
            user_id: Some(user.into()),
            ..Default::default()
        },
    );
    let url = format!(
        "ws://{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&access_token={token}",
        gw.addr
    );
    let (mut ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .expect("connects in time")
        .expect("connects");
    let open = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("the open packet in time")
        .expect("open")
        .expect("a frame");
    assert!(
        matches!(&open, Message::Text(t) if t.as_str().starts_with('0')),
        "open packet: {open:?}"
    );
    ws.send(Message::text("40")).await.unwrap();
    ws
}

#[tokio::test]
async fn a_rebalance_links_the_server_to_the_named_node_whose_clients_reach_it() {
    let node_b = gateway().await;
    let (node_a, mut seen_a) = protocol_node(Plan {
        refuse_first: 0,
        // Named twice: one link only.
        then: vec![
            rebalance("node-b", format!("http://{}", node_b.addr)),
            rebalance("node-b", format!("http://{}", node_b.addr)),
        ],
    })
    .await;
    let (tx, mut observed) = mpsc::unbounded_channel();
    let io = SocketIo::new();
    app(&io, tx);
    let tunnel = attach(&io, node_a).await;
    match next(&mut seen_a, "node A's tunnel").await {
        Seen::Accepted(uri) => assert!(
            uri.starts_with(&format!("/server/tunnel?hub={HUB}&access_token=")),
            "the main tunnel names no target: {uri}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    wait_until("the link to node B", || tunnel.targets() == ["node-b"]).await;

    // A client of node B reaches the application's handlers.
    let mut ws = client(&node_b, "bob").await;
    let connected = next(&mut observed, "the connection on node B").await;
    assert_eq!(connected["kind"], "connected");
    assert_eq!(connected["user"], "bob");
    let connection = connected["connection"].as_str().unwrap().to_owned();
    ws.send(Message::text(r#"421["hello","from B"]"#))
        .await
        .unwrap();
    let hello = next(&mut observed, "the event from node B").await;
    assert_eq!(
        hello,
        json!({"kind": "hello", "connection": connection, "data": "from B"})
    );

    // The server's calls for that client (its CONNECT answer, its ack) leave
    // on the main tunnel: the cluster delivers them to the node that has
    // the client.
    let mut sends = 0;
    while sends < 2 {
        match next(&mut seen_a, "the calls for the client of node B").await {
            Seen::Call(method, url)
                if url.contains(&format!("/connections/{connection}/:send")) =>
            {
                assert_eq!(method, "POST");
                sends += 1;
            }
            Seen::Call(..) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(tunnel.targets(), ["node-b"], "one link to node B");
    drop(tunnel);
    wait_until("node A's tunnel closed", || {
        matches!(seen_a.try_recv(), Ok(Seen::Closed))
    })
    .await;
}

#[tokio::test]
async fn a_targeted_link_carries_its_own_token_is_retried_and_closes_with_the_tunnel() {
    // Node C refuses the first upgrade (503), then accepts, and sends a
    // rebalance of its own, which a targeted link does not follow.
    let (node_d, mut seen_d) = protocol_node(Plan {
        refuse_first: 0,
        then: Vec::new(),
    })
    .await;
    let (node_c, mut seen_c) = protocol_node(Plan {
        refuse_first: 1,
        then: vec![rebalance("node-d", format!("http://{node_d}"))],
    })
    .await;
    let (node_a, mut seen_a) = protocol_node(Plan {
        refuse_first: 0,
        then: vec![rebalance("node c/1", format!("http://{node_c}/"))],
    })
    .await;
    let io = SocketIo::new();
    app(&io, mpsc::unbounded_channel().0);
    let tunnel = attach(&io, node_a).await;
    assert!(matches!(
        next(&mut seen_a, "node A's tunnel").await,
        Seen::Accepted(_)
    ));

    let refused = match next(&mut seen_c, "the first attempt on node C").await {
        Seen::Refused(uri) => uri,
        other => panic!("unexpected {other:?}"),
    };
    let accepted = match next(&mut seen_c, "the retry on node C").await {
        Seen::Accepted(uri) => uri,
        other => panic!("unexpected {other:?}"),
    };
    for uri in [&refused, &accepted] {
        let (url, token) = uri
            .split_once("&access_token=")
            .expect("a token in the query");
        assert_eq!(url, format!("/server/tunnel?hub={HUB}&target=node+c%2F1"));
        // Signed with the access key for the targeted URL itself, as the
        // SDK signs, and with the server's id.
        let token: String = form_urlencoded::parse(format!("t={token}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&[format!("ws://{node_c}{url}")]);
        let claims = jsonwebtoken::decode::<Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(KEY.as_bytes()),
            &validation,
        )
        .expect("a valid token for the targeted URL")
        .claims;
        assert_eq!(claims["sub"], tunnel.server_id());
    }
    wait_until("the link to node C", || tunnel.targets() == ["node c/1"]).await;

    // Node C's rebalance was not followed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(seen_d.try_recv().is_err(), "no tunnel to node D");
    assert_eq!(tunnel.targets(), ["node c/1"]);

    // Stopping the tunnel closes the targeted link too.
    drop(tunnel);
    assert!(matches!(
        next(&mut seen_c, "node C's tunnel closed").await,
        Seen::Closed
    ));
    assert!(matches!(
        next(&mut seen_a, "node A's tunnel closed").await,
        Seen::Closed
    ));
}

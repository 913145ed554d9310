//! Several gateway nodes over a real Redis: sessions served by any node,
//! operations reaching the clients of every node, and faults (a node
//! killed, paused, Redis restarted), with counts of what was delivered and
//! lost. Each test has its own Redis (a private server or a three-master
//! Redis Cluster), so it can break it without disturbing the others.

mod common;

use std::time::{Duration, Instant};

use common::redis::{RedisCluster, RedisServer};
use common::{KEY, TestGateway, token_for};
use futures_util::{SinkExt, StreamExt};
use portcullis_auth::{ClientTokenOptions, mint_client_token};
use tokio_tungstenite::tungstenite::Message;

const HUB: &str = "echo";

/// A node of a cluster on `redis` (several URLs: a Redis Cluster).
fn node(redis: &str, id: &str) -> TestGateway {
    node_with(redis, id, &[])
}

fn node_with(redis: &str, id: &str, extra: &[&str]) -> TestGateway {
    let mut args = vec![
        "--echo-hub",
        HUB,
        "--redis",
        redis,
        "--node-id",
        id,
        "--cluster-heartbeat-ms",
        "200",
        "--cluster-dead-after-ms",
        "1200",
    ];
    if redis.contains(',') {
        args.push("--redis-cluster");
    }
    args.extend_from_slice(extra);
    TestGateway::start(&args)
}

/// Nodes a, b and c on `redis`, once each sees all three.
async fn three_nodes(redis: &str) -> (TestGateway, TestGateway, TestGateway) {
    let (a, b, c) = (node(redis, "a"), node(redis, "b"), node(redis, "c"));
    wait_members(&[&a, &b, &c], 3).await;
    (a, b, c)
}

/// Nodes a and b on `redis`, once each sees both.
async fn two_nodes(redis: &str) -> (TestGateway, TestGateway) {
    let (a, b) = (node(redis, "a"), node(redis, "b"));
    wait_members(&[&a, &b], 2).await;
    (a, b)
}

async fn health(node: &TestGateway) -> serde_json::Value {
    reqwest::get(format!("{}/health", node.http()))
        .await
        .expect("health")
        .json()
        .await
        .expect("health json")
}

/// Waits until every node sees `n` live nodes.
async fn wait_members(nodes: &[&TestGateway], n: u64) {
    for _ in 0..200 {
        let mut all = true;
        for node in nodes {
            all &= health(node).await["nodes"].as_u64() == Some(n);
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the nodes never saw {n} members");
}

fn user_token(user: &str) -> String {
    token_for(
        HUB,
        &ClientTokenOptions {
            user_id: Some(user.into()),
            ..Default::default()
        },
    )
}

/// An operator token for the REST API of `node`.
fn operator_token(node: &TestGateway) -> String {
    mint_client_token(
        KEY,
        &format!("{}/api/hubs/{HUB}", node.http()),
        &ClientTokenOptions::default(),
    )
}

async fn rest(node: &TestGateway, method: reqwest::Method, path: &str, body: &str) -> u16 {
    reqwest::Client::new()
        .request(
            method,
            format!(
                "{}/api/hubs/{HUB}{path}?api-version=2023-07-01",
                node.http()
            ),
        )
        .bearer_auth(operator_token(node))
        .header("content-type", "text/plain")
        .body(body.to_owned())
        .send()
        .await
        .expect("rest call")
        .status()
        .as_u16()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Socket.IO client over WebSocket on one node, in the root namespace.
struct Client {
    socket: Socket,
    sid: String,
}

impl Client {
    async fn connect(node: &TestGateway, user: &str) -> Client {
        let url = format!(
            "{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&access_token={}",
            node.ws(),
            user_token(user)
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        let open = next_text(&mut socket).await.expect("open packet");
        let open: serde_json::Value = serde_json::from_str(&open[1..]).expect("open json");
        socket.send(Message::text("40")).await.expect("send 40");
        assert_eq!(next_text(&mut socket).await.as_deref(), Some("40"));
        Client {
            socket,
            sid: open["sid"].as_str().expect("sid").to_owned(),
        }
    }

    /// The next message, or `None` when nothing comes within `limit`.
    async fn next_within(&mut self, limit: Duration) -> Option<String> {
        tokio::time::timeout(limit, next_text(&mut self.socket))
            .await
            .ok()
            .flatten()
    }

    async fn send(&mut self, text: &str) {
        self.socket
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }
}

/// The next text message, answering pings; `None` when the socket ends.
async fn next_text(socket: &mut Socket) -> Option<String> {
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Text(text) if text.as_str() == "2" => {
                let _ = socket.send(Message::text("3")).await;
            }
            Message::Text(text) => return Some(text.to_string()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
    None
}

const SOON: Duration = Duration::from_secs(3);
const NOTHING: Duration = Duration::from_millis(300);

/// A polling session opened on `node`: its sid and query (with the token).
async fn polling_session(node: &TestGateway, user: &str) -> (String, String) {
    let token = user_token(user);
    let body = reqwest::get(format!(
        "{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=polling&access_token={token}",
        node.http()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let open: serde_json::Value = serde_json::from_str(&body[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    let query = format!("EIO=4&transport=polling&sid={sid}&access_token={token}");
    (sid, query)
}

fn session_url(node: &TestGateway, query: &str) -> String {
    format!("{}/clients/socketio/hubs/{HUB}/?{query}", node.http())
}

#[tokio::test]
async fn a_polling_session_is_served_whichever_node_gets_its_requests() {
    let redis = RedisServer::start();
    let (a, b, c) = three_nodes(&redis.url()).await;
    let (sid, query) = polling_session(&a, "u").await;
    assert!(sid.starts_with("a."), "the owner is in the id: {sid}");
    let http = reqwest::Client::new();
    // POST through b, GET through c: both reach a.
    let posted = http
        .post(session_url(&b, &query))
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(posted.text().await.unwrap(), "ok");
    let polled = reqwest::get(session_url(&c, &query)).await.unwrap();
    assert_eq!(polled.status(), 200);
    assert_eq!(
        polled.text().await.unwrap(),
        "40",
        "the echo of the CONNECT"
    );
    http.post(session_url(&c, &query))
        .body("42[\"hi\"]")
        .send()
        .await
        .unwrap();
    let polled = reqwest::get(session_url(&b, &query)).await.unwrap();
    assert_eq!(polled.text().await.unwrap(), "42[\"hi\"]");

    // A WebSocket upgrade through b is relayed to a.
    let ws_url = format!(
        "{}/clients/socketio/hubs/{HUB}/?{}",
        b.ws(),
        query.replace("transport=polling", "transport=websocket")
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    socket.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut socket).await.as_deref(), Some("3probe"));
    socket.send(Message::text("5")).await.unwrap();
    socket
        .send(Message::text("42[\"upgraded\"]"))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut socket).await.as_deref(),
        Some("42[\"upgraded\"]")
    );

    // The token is checked by the owner on forwarded requests too.
    let forged = query.replace("access_token=", "access_token=x");
    let refused = reqwest::get(session_url(&c, &forged)).await.unwrap();
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn sessions_of_unknown_or_dead_nodes_get_400_and_forged_forwards_401() {
    let redis = RedisServer::start();
    let (a, b) = two_nodes(&redis.url()).await;
    let (_, query) = polling_session(&a, "u").await;
    let unknown = query.replace("sid=a.", "sid=zz.");
    let answer = reqwest::get(session_url(&b, &unknown)).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["code"], 1, "Engine.IO's unknown session: {body}");

    // A request that claims to come from a node, with a wrong MAC.
    let forged = reqwest::Client::new()
        .get(session_url(&a, &query))
        .header("x-portcullis-forwarded-by", "b")
        .header("x-portcullis-forward-mac", "00")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // a dies: its sessions, asked of b, are unknown once a is declared dead.
    drop(a);
    wait_members(&[&b], 1).await;
    let answer = reqwest::get(session_url(&b, &query)).await.unwrap();
    assert_eq!(answer.status(), 400);
}

#[tokio::test]
async fn rest_calls_on_one_node_reach_the_clients_of_the_others() {
    let redis = RedisServer::start();
    let (a, b, c) = three_nodes(&redis.url()).await;
    let mut alice = Client::connect(&b, "alice").await;
    let mut bob = Client::connect(&c, "bob").await;
    use reqwest::Method;

    assert_eq!(rest(&a, Method::POST, "/:send", "42[\"all\"]").await, 202);
    assert_eq!(
        alice.next_within(SOON).await.as_deref(),
        Some("42[\"all\"]")
    );
    assert_eq!(bob.next_within(SOON).await.as_deref(), Some("42[\"all\"]"));

    assert_eq!(
        rest(&a, Method::POST, "/users/bob/:send", "42[\"bob\"]").await,
        202
    );
    assert_eq!(bob.next_within(SOON).await.as_deref(), Some("42[\"bob\"]"));
    assert_eq!(alice.next_within(NOTHING).await, None);

    let path = format!("/connections/{}/:send", alice.sid);
    assert_eq!(rest(&a, Method::POST, &path, "42[\"one\"]").await, 202);
    assert_eq!(
        alice.next_within(SOON).await.as_deref(),
        Some("42[\"one\"]")
    );

    // Groups: one connection added through a node that does not hold it.
    let path = format!("/groups/g/connections/{}", alice.sid);
    assert_eq!(rest(&a, Method::PUT, &path, "").await, 200);
    let path = "/groups/g/connections/c.unknown".to_string();
    assert_eq!(
        rest(&a, Method::PUT, &path, "").await,
        404,
        "no such connection"
    );
    assert_eq!(rest(&c, Method::HEAD, "/groups/g", "").await, 200);
    assert_eq!(rest(&c, Method::HEAD, "/groups/none", "").await, 404);
    assert_eq!(
        rest(&a, Method::POST, "/groups/g/:send", "42[\"g\"]").await,
        202
    );
    assert_eq!(alice.next_within(SOON).await.as_deref(), Some("42[\"g\"]"));
    assert_eq!(bob.next_within(NOTHING).await, None);

    // Add by filter, send with a filter.
    let body = r#"{"groups":["f"],"filter":"userId eq 'bob'"}"#;
    assert_eq!(rest(&a, Method::POST, "/:addToGroups", body).await, 200);
    assert_eq!(
        rest(&b, Method::POST, "/groups/f/:send", "42[\"f\"]").await,
        202
    );
    assert_eq!(bob.next_within(SOON).await.as_deref(), Some("42[\"f\"]"));
    assert_eq!(alice.next_within(NOTHING).await, None);
    let body = r#"{"groups":["f"],"filter":"userId eq 'bob'"}"#;
    assert_eq!(
        rest(&a, Method::POST, "/:removeFromGroups", body).await,
        200
    );
    assert_eq!(rest(&b, Method::HEAD, "/groups/f", "").await, 404);

    // Existence of users and connections held elsewhere.
    assert_eq!(rest(&a, Method::HEAD, "/users/alice", "").await, 200);
    assert_eq!(rest(&a, Method::HEAD, "/users/carol", "").await, 404);
    let path = format!("/connections/{}", bob.sid);
    assert_eq!(rest(&b, Method::HEAD, &path, "").await, 200);

    // Close by user, through a third node.
    assert_eq!(
        rest(&a, Method::POST, "/users/bob/:closeConnections", "").await,
        204
    );
    assert_eq!(bob.next_within(SOON).await, None, "bob's socket closes");
    assert_eq!(rest(&a, Method::HEAD, "/users/bob", "").await, 404);
    assert_eq!(alice.next_within(NOTHING).await, None, "alice stays");
    // Revoking a user's tokens on one node refuses them on every node.
    assert_eq!(
        rest(&c, Method::POST, "/users/alice/tokens/:revoke", "").await,
        200
    );
    assert_eq!(alice.next_within(SOON).await.as_deref(), Some("41"));
    let url = format!(
        "{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=polling&access_token={}",
        a.http(),
        user_token("alice")
    );
    assert_eq!(reqwest::get(url).await.unwrap().status(), 401);
}

/// Sends `rounds` broadcasts from `from`, one every `interval`, and counts
/// what each client received.
async fn broadcast_rounds(
    from: &TestGateway,
    clients: &mut [&mut Client],
    rounds: usize,
    interval: Duration,
) -> Vec<usize> {
    let mut received = vec![0; clients.len()];
    for round in 0..rounds {
        let status = rest(
            from,
            reqwest::Method::POST,
            "/:send",
            &format!("42[\"r\",{round}]"),
        )
        .await;
        assert_eq!(status, 202);
        tokio::time::sleep(interval).await;
    }
    for (client, count) in clients.iter_mut().zip(&mut received) {
        while let Some(text) = client.next_within(Duration::from_millis(500)).await {
            if text.starts_with("42[\"r\"") {
                *count += 1;
            }
        }
    }
    received
}

#[tokio::test]
async fn a_killed_node_loses_its_clients_only() {
    let redis = RedisServer::start();
    let (a, b, c) = three_nodes(&redis.url()).await;
    let mut on_b = Client::connect(&b, "u1").await;
    let mut on_c = Client::connect(&c, "u2").await;
    let before = broadcast_rounds(&a, &mut [&mut on_b, &mut on_c], 20, Duration::ZERO).await;
    assert_eq!(before, vec![20, 20]);
    let mut b = b;
    b.signal(libc::SIGKILL);
    b.wait_exit(Duration::from_secs(5));
    assert_eq!(on_b.next_within(SOON).await, None, "b's client is cut off");
    let after = broadcast_rounds(&a, &mut [&mut on_c], 50, Duration::from_millis(10)).await;
    eprintln!(
        "killed node: c's client received {}/50 broadcasts from a",
        after[0]
    );
    assert_eq!(after, vec![50], "c's client loses nothing");
    wait_members(&[&a, &c], 2).await;
    // b's client reconnects to another node (here: c) and is served.
    let mut moved = Client::connect(&c, "u1").await;
    moved.send("42[\"back\"]").await;
    assert_eq!(
        moved.next_within(SOON).await.as_deref(),
        Some("42[\"back\"]")
    );
}

#[tokio::test]
async fn a_paused_node_neither_stops_the_others_nor_loses_their_messages() {
    let redis = RedisServer::start();
    let (a, b, c) = three_nodes(&redis.url()).await;
    let mut on_b = Client::connect(&b, "u1").await;
    let mut on_c = Client::connect(&c, "u2").await;
    b.signal(libc::SIGSTOP);
    let started = Instant::now();
    let during = broadcast_rounds(&a, &mut [&mut on_c], 100, Duration::from_millis(20)).await;
    eprintln!(
        "paused node: c's client received {}/100 broadcasts from a in {:?}",
        during[0],
        started.elapsed()
    );
    assert_eq!(during, vec![100]);
    // Operations that ask every node do not hang on the paused one.
    let asked = Instant::now();
    assert_eq!(
        rest(&a, reqwest::Method::HEAD, "/users/nobody", "").await,
        404
    );
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    b.signal(libc::SIGCONT);
    wait_members(&[&a, &b, &c], 3).await;
    // b resumes: what Redis kept for it while it was stopped arrives.
    let mut at_b = 0;
    while let Some(text) = on_b.next_within(Duration::from_secs(1)).await {
        at_b += usize::from(text.starts_with("42[\"r\""));
    }
    eprintln!("paused node: b's client received {at_b}/100 after SIGCONT");
    let after = broadcast_rounds(&a, &mut [&mut on_b, &mut on_c], 10, Duration::ZERO).await;
    assert_eq!(after, vec![10, 10], "b is back in the cluster");
}

#[tokio::test]
async fn a_redis_restart_is_survived_and_cross_node_delivery_resumes() {
    let mut redis = RedisServer::start();
    let (a, b) = two_nodes(&redis.url()).await;
    let mut on_a = Client::connect(&a, "u1").await;
    let mut on_b = Client::connect(&b, "u2").await;
    let before = broadcast_rounds(&a, &mut [&mut on_a, &mut on_b], 10, Duration::ZERO).await;
    assert_eq!(before, vec![10, 10]);

    redis.kill();
    // Each node keeps serving its own clients.
    on_b.send("42[\"alone\"]").await;
    assert_eq!(
        on_b.next_within(SOON).await.as_deref(),
        Some("42[\"alone\"]")
    );
    let during = broadcast_rounds(&a, &mut [&mut on_a, &mut on_b], 10, Duration::ZERO).await;
    eprintln!(
        "redis down: a's client {}/10, b's {}/10",
        during[0], during[1]
    );
    assert_eq!(during[0], 10, "local delivery goes on");
    let lost = health(&a).await["cluster"]["undelivered"].as_u64().unwrap();
    assert!(lost > 0, "what could not be published is counted");

    redis.restart();
    let restarted = Instant::now();
    let mut resumed = None;
    for round in 0..100 {
        rest(
            &a,
            reqwest::Method::POST,
            "/:send",
            &format!("42[\"p\",{round}]"),
        )
        .await;
        if let Some(text) = on_b.next_within(Duration::from_millis(100)).await
            && text.starts_with("42[\"p\"")
        {
            resumed = Some(restarted.elapsed());
            break;
        }
    }
    let resumed = resumed.expect("cross-node delivery resumed");
    eprintln!("redis restart: cross-node delivery resumed {resumed:?} after redis came back");
    assert!(resumed < Duration::from_secs(10), "{resumed:?}");
    wait_members(&[&a, &b], 2).await;
    while on_b.next_within(NOTHING).await.is_some() {}
    while on_a.next_within(NOTHING).await.is_some() {}
    let after = broadcast_rounds(&a, &mut [&mut on_a, &mut on_b], 20, Duration::ZERO).await;
    assert_eq!(after, vec![20, 20]);
}

#[tokio::test]
async fn a_broadcast_costs_one_redis_publish_whatever_the_audience() {
    let redis = RedisServer::start();
    let (a, b) = two_nodes(&redis.url()).await;
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(Client::connect(&b, &format!("u{i}")).await);
    }
    let publishes = redis.calls_of("publish");
    for round in 0..10 {
        rest(
            &a,
            reqwest::Method::POST,
            "/:send",
            &format!("42[\"x\",{round}]"),
        )
        .await;
    }
    for client in &mut clients {
        let mut got = 0;
        while let Some(text) = client.next_within(Duration::from_millis(300)).await {
            got += usize::from(text.starts_with("42[\"x\""));
        }
        assert_eq!(got, 10);
    }
    let per_broadcast = (redis.calls_of("publish") - publishes) as f64 / 10.0;
    eprintln!("redis PUBLISH per broadcast to 20 clients on another node: {per_broadcast:.1}");
    assert_eq!(per_broadcast, 1.0);
}

#[tokio::test]
async fn sharded_pub_sub_on_a_redis_cluster() {
    let redis = RedisCluster::start();
    let urls = redis.urls();
    let (a, b, c) = three_nodes(&urls).await;
    let mut on_b = Client::connect(&b, "alice").await;
    let mut on_c = Client::connect(&c, "bob").await;
    use reqwest::Method;
    assert_eq!(rest(&a, Method::POST, "/:send", "42[\"all\"]").await, 202);
    assert_eq!(on_b.next_within(SOON).await.as_deref(), Some("42[\"all\"]"));
    assert_eq!(on_c.next_within(SOON).await.as_deref(), Some("42[\"all\"]"));
    let path = format!("/connections/{}/:send", on_c.sid);
    assert_eq!(rest(&b, Method::POST, &path, "42[\"one\"]").await, 202);
    assert_eq!(on_c.next_within(SOON).await.as_deref(), Some("42[\"one\"]"));
    assert_eq!(rest(&a, Method::HEAD, "/users/alice", "").await, 200);
    assert_eq!(rest(&a, Method::HEAD, "/users/carol", "").await, 404);
    // The hub's channel is a sharded channel, on the shard its name hashes to.
    let channel = format!("portcullis:hub:{HUB}");
    let shard = redis.shard_of(&channel);
    assert!(
        redis.shard_channels(shard).contains(&channel),
        "{channel} on {shard}"
    );
}

#[tokio::test]
async fn the_cluster_figures_are_in_the_metrics() {
    let redis = RedisServer::start();
    let a = node_with(&redis.url(), "a", &["--metrics"]);
    let b = node(&redis.url(), "b");
    wait_members(&[&a, &b], 2).await;
    let _on_b = Client::connect(&b, "u").await;
    rest(&a, reqwest::Method::POST, "/:send", "42[\"m\"]").await;
    // The publish completes in the background: read until it is counted.
    let mut text = String::new();
    let mut published = 0;
    for _ in 0..100 {
        text = reqwest::get(format!("{}/metrics", a.http()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        published = text
            .lines()
            .find(|l| l.starts_with("portcullis_cluster_messages_total{event=\"published\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("published count");
        if published >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.contains("portcullis_cluster_nodes 2"), "{text}");
    assert!(published >= 1, "{text}");
}

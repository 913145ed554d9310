//! Embedded applications on several processes sharing one hub through
//! Redis: two gateway nodes in cluster mode, each with its own `SocketIo`
//! attached embedded (as two processes would be), the same scenario as the
//! tunnel's two processes: broadcasts, rooms, and `emit_with_ack` whose
//! acknowledgements come from the sockets of both nodes.
//!
//! Needs Redis at `PORTCULLIS_TEST_REDIS` (default `redis://127.0.0.1:6379`;
//! `scripts/redis ensure` starts one). Each run has its own key prefix.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::raw::Raw;
use common::{KEY, install};
use portcullis_auth::AccessKeys;
use portcullis_cluster::{ClusterConfig, NodeId, NodeInfo, RedisConfig};
use portcullis_gateway::{Gateway, GatewayConfig};
use portcullis_server::SocketIo;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

struct Node {
    addr: SocketAddr,
    io: SocketIo,
    /// What the test application reports (connects, disconnects, ...).
    observations: mpsc::UnboundedReceiver<Value>,
    _shutdown: oneshot::Sender<()>,
}

async fn node(prefix: &str, id: &str) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keys = AccessKeys::new(vec![KEY.to_owned()]).unwrap();
    let mut config = GatewayConfig::new(addr, keys);
    let redis = RedisConfig::new(
        vec![
            std::env::var("PORTCULLIS_TEST_REDIS")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ],
        false,
    );
    let info = NodeInfo {
        id: NodeId::parse(id).unwrap(),
        advertise: url::Url::parse(&format!("http://{addr}/")).unwrap(),
    };
    let mut cluster = ClusterConfig::new(redis, info);
    cluster.prefix = prefix.to_owned();
    cluster.heartbeat = Duration::from_millis(100);
    config.cluster = Some(cluster);
    let gateway = Gateway::new(config);
    let io = SocketIo::builder()
        .ack_timeout(Duration::from_secs(2))
        .build();
    let (reports, observations) = mpsc::unbounded_channel();
    install(&io, reports);
    io.attach(&gateway, common::HUB).expect("attach");
    let (shutdown, rx) = oneshot::channel::<()>();
    tokio::spawn(gateway.serve(listener, async move {
        rx.await.ok();
    }));
    Node {
        addr,
        io,
        observations,
        _shutdown: shutdown,
    }
}

async fn wait_for(nodes: &[&Node]) {
    for _ in 0..200 {
        let mut all = true;
        for node in nodes {
            let health: Value = reqwest::get(format!("http://{}/health", node.addr))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            all &= health["nodes"].as_u64() == Some(nodes.len() as u64);
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the nodes never saw each other");
}

/// Two nodes of a fresh cluster (a key prefix of their own), once they see
/// each other.
async fn two_nodes() -> (Node, Node) {
    let prefix = format!("server-cluster-{}", NodeId::generate());
    let (a, b) = (node(&prefix, "a").await, node(&prefix, "b").await);
    wait_for(&[&a, &b]).await;
    (a, b)
}

/// A client of `node` as `user`, connected and welcomed by the app.
async fn welcomed(node: &Node, user: &str) -> Raw {
    let mut client = Raw::connect(node.addr, user).await;
    client.event("welcome").await;
    client
}

#[tokio::test]
async fn embedded_processes_share_one_hub_through_redis() {
    let (a, b) = two_nodes().await;
    let mut a1 = welcomed(&a, "u1").await;
    let mut a2 = welcomed(&a, "u2").await;
    let mut b1 = welcomed(&b, "u3").await;
    let mut b2 = welcomed(&b, "u4").await;
    assert!(a.io.get_socket(&a1.sid).is_some() && b.io.get_socket(&b1.sid).is_some());
    assert!(
        a.io.get_socket(&b1.sid).is_none(),
        "each socket lives in one process"
    );

    // A broadcast from process A reaches the clients of process B.
    a1.send(r#"421["sync-all","t1"]"#).await;
    assert_eq!(a1.ack(1).await, [json!(true)]);
    for client in [&mut a1, &mut a2, &mut b1, &mut b2] {
        assert_eq!(client.event("sync").await.1, [json!("t1")]);
    }

    // Rooms are the gateway's groups, shared: B's socket joins, A's socket
    // sends to the room.
    b1.send(r#"422["join",["r"]]"#).await;
    assert_eq!(b1.ack(2).await, [json!(["r"])]);
    a1.send(r#"423["to",{"rooms":["r"],"event":"hey"}]"#).await;
    assert_eq!(a1.ack(3).await, [json!(true)]);
    assert_eq!(b1.event("hey").await.1, [json!(a1.sid)]);

    // emit_with_ack from process A: its own sockets get one packet each;
    // B's get the event through the cluster with a gateway-chosen ack id,
    // and their answers come back. b1 stays silent.
    a1.send(r#"424["poll"]"#).await;
    let (id, args) = a1.event("vote").await;
    assert_eq!(args, [json!("lunch?")]);
    a1.send(&format!(r#"43{}["from a1"]"#, id.expect("an ack id")))
        .await;
    let (a2_id, _) = a2.event("vote").await;
    a2.send(&format!(r#"43{}["from a2"]"#, a2_id.expect("an ack id")))
        .await;
    let (b1_id, _) = b1.event("vote").await;
    assert!(
        b1_id.expect("an ack id") >= 2_000_000_000,
        "a gateway-chosen ack id"
    );
    let (b2_id, _) = b2.event("vote").await;
    b2.send(&format!(r#"43{}["from b2"]"#, b2_id.expect("an ack id")))
        .await;
    let results = a1.ack(4).await;
    let mut got = results[0].as_array().expect("results").clone();
    let mut expected = vec![
        json!({"sid": a1.sid, "ok": "from a1"}),
        json!({"sid": a2.sid, "ok": "from a2"}),
        json!({"sid": "", "ok": "from b2"}),
    ];
    let key = |v: &Value| v.to_string();
    got.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(got, expected, "b1 (remote, silent) yields nothing");
}

/// Waits until `check` holds (the other process hears of a group change
/// through Redis).
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

#[tokio::test]
async fn room_changes_by_filter_reach_the_sockets_of_every_process() {
    let (a, b) = two_nodes().await;
    let mut a1 = welcomed(&a, "u1").await;
    let mut b1 = welcomed(&b, "u2").await;
    let mut b2 = welcomed(&b, "u3").await;
    for client in [&mut a1, &mut b1] {
        client.send(r#"421["join",["r"]]"#).await;
        assert_eq!(client.ack(1).await, [json!(["r"])]);
    }
    let rooms_of = |node: &Node, sid: &str| {
        let mut rooms = node.io.get_socket(sid).expect("the socket").rooms();
        rooms.sort();
        rooms
    };

    // Process A moves everyone in "r" into "s" too: b1 lives in process B,
    // whose view of its rooms follows; b2 is not in "r" and stays out.
    a.io.to("r").join("s");
    assert_eq!(rooms_of(&a, &a1.sid), ["r", "s"], "at once for A's own");
    eventually("B's socket is in room s", || {
        rooms_of(&b, &b1.sid) == ["r", "s"]
    })
    .await;
    assert!(rooms_of(&b, &b2.sid).is_empty());
    a.io.to("s").emit("in-s", &"one").unwrap();
    assert_eq!(b1.event("in-s").await.1, [json!("one")]);
    assert_eq!(a1.event("in-s").await.1, [json!("one")]);

    // And out of both rooms again, from process B this time.
    b.io.to("s").leave(vec!["r".to_owned(), "s".to_owned()]);
    assert!(rooms_of(&b, &b1.sid).is_empty(), "at once for B's own");
    eventually("A's socket left both rooms", || {
        rooms_of(&a, &a1.sid).is_empty()
    })
    .await;
    // The gateway agrees: a send to "s" reaches nobody, the marker after it
    // is the next thing each client gets.
    a.io.to("s").emit("in-s", &"two").unwrap();
    a.io.emit("marker", &1).unwrap();
    for client in [&mut a1, &mut b1, &mut b2] {
        let next = client.next().await;
        assert!(next.contains("marker"), "{next}");
    }
}

/// The next report of `kind` from a node's application.
async fn report_of(node: &mut Node, kind: &str) -> Value {
    loop {
        let report = tokio::time::timeout(Duration::from_secs(5), node.observations.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} report in time"))
            .expect("the application reports");
        if report["kind"] == kind {
            return report;
        }
    }
}

#[tokio::test]
async fn disconnect_sockets_reaches_the_sockets_of_every_process() {
    let (mut a, mut b) = two_nodes().await;
    let mut a1 = welcomed(&a, "u1").await;
    let mut b1 = welcomed(&b, "u2").await;
    let mut b2 = welcomed(&b, "u3").await;
    for client in [&mut a1, &mut b1] {
        client.send(r#"421["join",["doomed"]]"#).await;
        assert_eq!(client.ack(1).await, [json!(["doomed"])]);
    }

    // Process A disconnects everyone in the room: its own a1, and b1, whose
    // socket lives in process B.
    a.io.to("doomed").disconnect_sockets();
    for (client, node) in [(&mut a1, &mut a), (&mut b1, &mut b)] {
        let packet = client.next().await;
        assert_eq!(packet, "1", "a DISCONNECT of the main namespace");
        let report = report_of(node, "disconnected").await;
        assert_eq!(report["sid"], json!(client.sid));
        assert_eq!(report["reason"], "server namespace disconnect");
    }
    assert!(b.io.get_socket(&b1.sid).is_none(), "gone from process B");
    assert!(b.io.get_socket(&b2.sid).is_some(), "b2 was not in the room");
    // The gateway agrees: a broadcast to everyone reaches b2 only.
    a.io.emit("marker", &1).unwrap();
    let next = b2.next().await;
    assert!(next.contains("marker"), "{next}");
}

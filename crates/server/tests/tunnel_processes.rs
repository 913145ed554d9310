//! Tunnel mode beyond one process: two `SocketIo` instances (two
//! application processes, each with its own tunnel `sub`) sharing one hub,
//! and heartbeats that stay in the gateway. Driven by raw Socket.IO
//! clients over WebSocket so every frame is checked in order.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::raw::Raw;
use common::{DEADLINE, HUB, KEY, install};
use portcullis_auth::AccessKeys;
use portcullis_gateway::{Gateway, GatewayConfig};
use portcullis_server::extract::AckSender;
use portcullis_server::{SocketIo, SocketRef, TunnelHandle};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

struct Gw {
    addr: SocketAddr,
    connection_string: String,
    _shutdown: oneshot::Sender<()>,
}

async fn gateway() -> Gw {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keys = AccessKeys::new(vec![KEY.to_owned()]).unwrap();
    let gateway = Gateway::new(GatewayConfig::new(addr, keys));
    let connection_string = gateway.connection_string(addr).to_string();
    let (shutdown, rx) = oneshot::channel::<()>();
    tokio::spawn(gateway.serve(listener, async move {
        rx.await.ok();
    }));
    Gw {
        addr,
        connection_string,
        _shutdown: shutdown,
    }
}

async fn tunnel(io: &SocketIo, gw: &Gw) -> TunnelHandle {
    tokio::time::timeout(DEADLINE, io.connect_tunnel(&gw.connection_string, HUB))
        .await
        .expect("the tunnel opens in time")
        .expect("the tunnel opens")
}

#[tokio::test]
async fn two_processes_share_one_hub() {
    let gw = gateway().await;
    let (tx_a, _obs_a) = mpsc::unbounded_channel();
    let (tx_b, _obs_b) = mpsc::unbounded_channel();
    let builder = || {
        SocketIo::builder()
            .ack_timeout(Duration::from_secs(2))
            .build()
    };
    let (io_a, io_b) = (builder(), builder());
    install(&io_a, tx_a);
    install(&io_b, tx_b);
    let tunnel_a = tunnel(&io_a, &gw).await;
    let tunnel_b = tunnel(&io_b, &gw).await;
    assert_ne!(
        tunnel_a.server_id(),
        tunnel_b.server_id(),
        "one sub per process"
    );

    // New clients are spread over the two processes.
    let mut clients = Vec::new();
    for user in ["u1", "u2", "u3", "u4"] {
        let mut raw = Raw::connect(gw.addr, user).await;
        raw.event("welcome").await;
        clients.push(raw);
    }
    let on_a = |c: &Raw| io_a.get_socket(&c.sid).is_some();
    let on_b = |c: &Raw| io_b.get_socket(&c.sid).is_some();
    assert!(
        clients.iter().all(|c| on_a(c) != on_b(c)),
        "each socket lives in one process"
    );
    let (mut a_side, mut b_side): (Vec<Raw>, Vec<Raw>) = clients.into_iter().partition(|c| on_a(c));
    assert!(
        !a_side.is_empty() && !b_side.is_empty(),
        "both processes serve clients"
    );
    let mut a1 = a_side.remove(0);
    let mut b1 = b_side.remove(0);
    let mut others: Vec<Raw> = a_side.into_iter().chain(b_side).collect();

    // A broadcast from process A reaches the clients of process B.
    a1.send(r#"421["sync-all","t1"]"#).await;
    assert_eq!(a1.ack(1).await, [json!(true)]);
    for client in [&mut a1, &mut b1].into_iter().chain(others.iter_mut()) {
        assert_eq!(client.event("sync").await.1, [json!("t1")]);
    }

    // Rooms are gateway groups: B's socket joins, A's socket sends to it.
    b1.send(r#"422["join",["r"]]"#).await;
    assert_eq!(b1.ack(2).await, [json!(["r"])]);
    a1.send(r#"423["to",{"rooms":["r"],"event":"hey"}]"#).await;
    assert_eq!(a1.ack(3).await, [json!(true)]);
    assert_eq!(b1.event("hey").await.1, [json!(a1.sid)]);

    // emit_with_ack to every socket from process A: its own sockets get one
    // packet each; B's come through the gateway's :invoke. b1 stays silent.
    let calls_before = tunnel_a.stats().calls;
    a1.send(r#"424["poll"]"#).await;
    let (id, args) = a1.event("vote").await;
    assert_eq!(args, [json!("lunch?")]);
    a1.send(&format!(r#"43{}["from a1"]"#, id.expect("an ack id")))
        .await;
    let (b1_id, _) = b1.event("vote").await;
    assert!(
        b1_id.expect("an ack id") >= 1_000_000_000,
        "a gateway-chosen ack id"
    );
    let mut expected = vec![json!({"sid": a1.sid, "ok": "from a1"})];
    for (n, client) in others.iter_mut().enumerate() {
        let (id, _) = client.event("vote").await;
        let answer = format!("other {n}");
        client
            .send(&format!(r#"43{}["{answer}"]"#, id.expect("an ack id")))
            .await;
        let sid = if on_a(client) {
            client.sid.clone()
        } else {
            String::new()
        };
        expected.push(json!({"sid": sid, "ok": answer}));
    }
    let results = a1.ack(4).await;
    let mut got = results[0].as_array().expect("results").clone();
    let key = |v: &Value| v.to_string();
    got.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(got, expected, "b1 (remote, silent) yields nothing");
    assert!(
        tunnel_a.stats().calls > calls_before,
        "the poll went through the tunnel"
    );
}

#[tokio::test]
async fn heartbeats_stay_in_the_gateway() {
    let gw = gateway().await;
    let io = SocketIo::builder()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .build();
    io.ns("/", |socket: SocketRef| async move {
        socket.on("hello", |ack: AckSender| async move {
            ack.send(&"hi").ok();
        });
    });
    let tunnel = tunnel(&io, &gw).await;
    let mut client = Raw::connect(gw.addr, "idle").await;
    // A first heartbeat: by now the connect's calls are done.
    assert_eq!(client.next_raw().await, "2");
    client.send("3").await;
    let idle = tunnel.stats();
    // Five more ping intervals, answered: nothing crosses the tunnel.
    for _ in 0..5 {
        assert_eq!(client.next_raw().await, "2", "only pings while idle");
        client.send("3").await;
    }
    assert_eq!(
        tunnel.stats(),
        idle,
        "pings and pongs never cross the tunnel"
    );
    assert_eq!(io.sockets().len(), 1, "the client is still connected");
    // The counters do see client traffic.
    client.send(r#"421["hello"]"#).await;
    assert_eq!(client.ack(1).await, [json!("hi")]);
    let busy = tunnel.stats();
    assert_eq!(busy.user_events, idle.user_events + 1);
    assert!(busy.calls > idle.calls);
}

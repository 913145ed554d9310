//! `ConnectionRebalance` end to end: two real gateway nodes in cluster mode
//! (`portcullis serve --redis … --cluster-advertise …`, sharing a real
//! Redis) and a server attached over the tunnel to node A only. Node A's
//! rebalance names node B; the server opens a tunnel to B by itself, so a
//! client of B reaches its handlers, and what the server answers (over its
//! tunnel to A) reaches that client through the cluster.
//!
//! Nodes that join later are announced on the first tunnel too; a node that
//! dies leaves the server's open tunnels.
//!
//! Needs the `portcullis` binary (`$PORTCULLIS_BIN`, or the one built next
//! to this test) and a Redis (`$REDIS_URL`, default `redis://127.0.0.1:6379`,
//! as `scripts/redis ensure` starts); without either the test says so on
//! stderr and passes without running (scripts/test provides both).

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{DEADLINE, HUB, KEY};
use futures_util::{SinkExt, StreamExt};
use portcullis_auth::{ClientTokenOptions, mint_client_token};
use portcullis_server::extract::{AckSender, Data};
use portcullis_server::{SocketIo, SocketRef, TunnelHandle};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Whether a Redis answers PING at `url`.
async fn redis_answers(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(6379)
    );
    let probe = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        tcp.write_all(b"PING\r\n").await.ok()?;
        let mut answer = [0u8; 64];
        let n = tcp.read(&mut answer).await.ok()?;
        let answer = &answer[..n];
        Some(answer.starts_with(b"+PONG") || answer.starts_with(b"-NOAUTH"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Some(true))
    )
}

/// `$PORTCULLIS_BIN`, or `portcullis` in the target directory of this test.
fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PORTCULLIS_BIN") {
        return Some(PathBuf::from(path));
    }
    // target/debug/deps/tunnel_cluster-… → target/debug/portcullis
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("portcullis");
    path.exists().then_some(path)
}

/// A gateway node process, killed on drop.
struct Node {
    child: Child,
    addr: SocketAddr,
    connection_string: String,
    id: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The flag naming the Redis key prefix, if the binary has one: the test's
/// cluster keeps to itself in a shared Redis.
fn prefix_flag(binary: &PathBuf) -> Option<&'static str> {
    let help = Command::new(binary)
        .args(["serve", "--help"])
        .output()
        .ok()?;
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    ["--cluster-prefix", "--redis-prefix", "--cluster-name"]
        .into_iter()
        .find(|flag| help.contains(flag))
}

fn start_node(binary: &PathBuf, ip: &str, prefix: &str) -> Node {
    let addr: SocketAddr = format!("{ip}:{}", free_port(ip)).parse().unwrap();
    let mut command = Command::new(binary);
    command
        .args(["serve", "--listen", &addr.to_string(), "--access-key", KEY])
        .args(["--drain-period-ms", "0"])
        .args(["--redis", &redis_url()])
        .args(["--cluster-advertise", &format!("http://{addr}")]);
    if let Some(flag) = prefix_flag(binary) {
        command.args([flag, prefix]);
    }
    let mut child = command
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start portcullis");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the connection string");
    assert!(
        line.starts_with("Endpoint="),
        "unexpected first line of {addr}: {line:?}"
    );
    Node {
        child,
        addr,
        connection_string: line.trim().to_owned(),
        id: String::new(),
    }
}

/// Waits until `node`'s /health counts `nodes` nodes; returns its id.
async fn node_id(node: &Node, nodes: u64) -> String {
    let url = format!("http://{}/health", node.addr);
    let mut last = Value::Null;
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(response) = reqwest::get(&url).await
                && let Ok(health) = response.json::<Value>().await
            {
                if health["nodes"] == json!(nodes)
                    && let Some(id) = health["node"].as_str()
                {
                    return id.to_owned();
                }
                last = health;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{url} never counted {nodes} nodes (last: {last})"))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn client(node: &Node, user: &str) -> Ws {
    let token = mint_client_token(
        KEY,
        &format!("http://{}/clients/socketio/hubs/{HUB}", node.addr),
        &ClientTokenOptions {
            user_id: Some(user.into()),
            ..Default::default()
        },
    );
    let url = format!(
        "ws://{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&access_token={token}",
        node.addr
    );
    let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .expect("connects in time")
        .expect("connects");
    ws
}

/// The next Engine.IO message (`4…`) of `ws`, pings answered.
async fn message(ws: &mut Ws) -> String {
    loop {
        let frame = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a frame");
        let Message::Text(text) = frame else {
            continue;
        };
        match text.as_str() {
            "2" => ws.send(Message::text("3")).await.unwrap(),
            t if t.starts_with('0') => {}
            t => return t.strip_prefix('4').expect("a message").to_owned(),
        }
    }
}

/// The binary and a fresh key prefix, or `None` (said on stderr) when the
/// test cannot run here.
async fn prerequisites() -> Option<(PathBuf, String)> {
    let url = redis_url();
    if !redis_answers(&url).await {
        eprintln!("SKIPPED: no Redis answers at {url} (scripts/redis ensure starts one)");
        return None;
    }
    let Some(binary) = binary() else {
        eprintln!(
            "SKIPPED: no portcullis binary (cargo build -p portcullis-cli, or set PORTCULLIS_BIN)"
        );
        return None;
    };
    let prefix = format!("portcullis-test-{:016x}", rand::random::<u64>());
    Some((binary, prefix))
}

/// The test application: reports connections and `hello` events, acks them.
fn app(io: &SocketIo, tx: mpsc::UnboundedSender<Value>) {
    io.ns("/", move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            tx.send(json!({"kind": "connected", "user": socket.user_id()}))
                .ok();
            socket.on("hello", move |Data(data): Data<Value>, ack: AckSender| {
                let tx = tx.clone();
                async move {
                    tx.send(json!({"kind": "hello", "data": data})).ok();
                    ack.send(&"hi").ok();
                }
            });
        }
    });
}

/// Waits until the tunnel's open links to other nodes are `expected`.
async fn targets_become(tunnel: &TunnelHandle, mut expected: Vec<String>, timeout: Duration) {
    expected.sort();
    tokio::time::timeout(timeout, async {
        while tunnel.targets() != expected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the server's links to other nodes never became {expected:?} (have {:?})",
            tunnel.targets()
        )
    });
}

#[tokio::test]
async fn a_server_attached_to_one_node_serves_the_clients_of_another() {
    let Some((binary, prefix)) = prerequisites().await else {
        return;
    };
    let mut a = start_node(&binary, "127.0.0.2", &prefix);
    let mut b = start_node(&binary, "127.0.0.3", &prefix);
    a.id = node_id(&a, 2).await;
    b.id = node_id(&b, 2).await;
    assert_ne!(a.id, b.id);

    let (tx, mut observed) = mpsc::unbounded_channel::<Value>();
    let io = SocketIo::new();
    io.ns("/", move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            tx.send(json!({"kind": "connected", "user": socket.user_id()}))
                .ok();
            socket.on("hello", move |Data(data): Data<Value>, ack: AckSender| {
                let tx = tx.clone();
                async move {
                    tx.send(json!({"kind": "hello", "data": data})).ok();
                    ack.send(&"hi").ok();
                }
            });
        }
    });
    let tunnel = tokio::time::timeout(DEADLINE, io.connect_tunnel(&a.connection_string, HUB))
        .await
        .expect("the tunnel opens in time")
        .expect("the tunnel opens");
    tokio::time::timeout(DEADLINE, async {
        while tunnel.targets() != [b.id.clone()] {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "node A's rebalance never linked the server to node B {} (targets: {:?})",
            b.id,
            tunnel.targets()
        )
    });

    // A client of node B: its CONNECT and event reach the server over the
    // rebalanced tunnel; the answers (sent on the tunnel to A) come back.
    let mut ws = client(&b, "bob").await;
    ws.send(Message::text("40")).await.unwrap();
    let connected = tokio::time::timeout(DEADLINE, observed.recv())
        .await
        .expect("the server sees the client of node B")
        .unwrap();
    assert_eq!(connected, json!({"kind": "connected", "user": "bob"}));
    let answer = message(&mut ws).await;
    assert!(answer.starts_with("0{"), "CONNECT answer: {answer}");
    ws.send(Message::text(r#"421["hello","from B"]"#))
        .await
        .unwrap();
    let hello = tokio::time::timeout(DEADLINE, observed.recv())
        .await
        .expect("the event")
        .unwrap();
    assert_eq!(hello, json!({"kind": "hello", "data": "from B"}));
    assert_eq!(message(&mut ws).await, r#"31["hi"]"#);

    // And a client of node A, as ever.
    let mut ws_a = client(&a, "alice").await;
    ws_a.send(Message::text("40")).await.unwrap();
    let connected = tokio::time::timeout(DEADLINE, observed.recv())
        .await
        .expect("the server sees the client of node A")
        .unwrap();
    assert_eq!(connected, json!({"kind": "connected", "user": "alice"}));
    assert!(message(&mut ws_a).await.starts_with("0{"));
    drop(tunnel);
}

#[tokio::test]
async fn nodes_that_join_later_are_linked_and_dead_ones_dropped() {
    let Some((binary, prefix)) = prerequisites().await else {
        return;
    };
    let mut a = start_node(&binary, "127.0.0.2", &prefix);
    a.id = node_id(&a, 1).await;
    let (tx, mut observed) = mpsc::unbounded_channel::<Value>();
    let io = SocketIo::new();
    app(&io, tx);
    let tunnel = tokio::time::timeout(DEADLINE, io.connect_tunnel(&a.connection_string, HUB))
        .await
        .expect("the tunnel opens in time")
        .expect("the tunnel opens");
    assert!(
        tunnel.targets().is_empty(),
        "a cluster of one: no other node"
    );

    // Node B joins: node A announces it on the server's tunnel.
    let mut b = start_node(&binary, "127.0.0.3", &prefix);
    b.id = node_id(&b, 2).await;
    targets_become(&tunnel, vec![b.id.clone()], DEADLINE).await;
    let mut ws = client(&b, "bob").await;
    ws.send(Message::text("40")).await.unwrap();
    let connected = tokio::time::timeout(DEADLINE, observed.recv())
        .await
        .expect("the server sees the client of the new node")
        .unwrap();
    assert_eq!(connected, json!({"kind": "connected", "user": "bob"}));
    assert!(message(&mut ws).await.starts_with("0{"));

    // Node B dies: its link closes (and is retried, then given up).
    drop(ws);
    drop(b);
    targets_become(&tunnel, Vec::new(), DEADLINE).await;
    drop(tunnel);
}

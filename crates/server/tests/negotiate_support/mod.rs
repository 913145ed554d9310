//! Shared by tests/negotiate.rs and tests/login.rs: an embedded gateway on
//! loopback, an axum app on another port, token decoding, and the real
//! socket.io-client (tests/node/negotiate_client.mjs).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use portcullis_auth::{AccessKeys, ConnectionString};
use portcullis_gateway::{Gateway, GatewayConfig};
use portcullis_server::SocketIo;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const KEY: &str = "negotiate-test-access-key";
pub const HUB: &str = "chat";
/// Every wait in the tests is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A gateway serving hub [`HUB`] with `io` attached (embedded mode).
pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: Gateway,
    _shutdown: oneshot::Sender<()>,
}

impl TestGateway {
    pub async fn start(io: &SocketIo, token_leeway: Duration) -> TestGateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let keys = AccessKeys::new(vec![KEY.to_owned()]).unwrap();
        let gateway = Gateway::new(GatewayConfig {
            token_leeway,
            ..GatewayConfig::new(addr, keys)
        });
        io.attach(&gateway, HUB).expect("attach");
        let (shutdown, rx) = oneshot::channel::<()>();
        tokio::spawn(gateway.clone().serve(listener, async move {
            rx.await.ok();
        }));
        TestGateway {
            addr,
            gateway,
            _shutdown: shutdown,
        }
    }

    pub fn connection_string(&self) -> ConnectionString {
        self.gateway.connection_string(self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Client connections the gateway holds, from its `/health`.
    pub async fn connections(&self) -> u64 {
        let health: Value = reqwest::get(format!("{}/health", self.origin()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        health["connections"].as_u64().unwrap()
    }
}

/// Serves `app` on 127.0.0.1:0 for the rest of the test; its base URL.
pub async fn serve_app(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The payload of a JWT, unverified.
pub fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// How the Node client gets its `/negotiate` answer.
pub enum Answer<'a> {
    /// It fetches this URL, as the browser does.
    Fetch(&'a str),
    /// An answer already fetched.
    Json(&'a Value),
}

fn compat_package_json() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat");
    assert!(
        root.join("node_modules/socket.io-client").is_dir(),
        "socket.io-client is not installed: run `npm ci` in {}",
        root.display()
    );
    root.join("package.json")
}

/// Runs tests/node/negotiate_client.mjs: connects the real socket.io-client
/// with a negotiate answer and asks `whoami`; its RESULT line.
pub async fn socket_io_client(answer: Answer<'_>) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node/negotiate_client.mjs");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .env("COMPAT_PACKAGE_JSON", compat_package_json())
        .kill_on_drop(true);
    match answer {
        Answer::Fetch(url) => command.env("NEGOTIATE_URL", url),
        Answer::Json(json) => command.env("NEGOTIATE_JSON", json.to_string()),
    };
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("the Node client finishes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Node client failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).expect("RESULT is JSON")
}

/// What a `whoami` handler answers: the socket's verified identity.
pub fn whoami(socket: &portcullis_server::SocketRef) -> Value {
    json!({
        "user": socket.user_id(),
        "claims": socket.claims(),
        "handshake": format!("{:?}", socket.handshake()),
    })
}

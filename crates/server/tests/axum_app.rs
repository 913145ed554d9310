//! The gateway inside an axum application: its routes merge into an app
//! that has its own fallback, and the README's example is the compiled
//! `examples/embedded.rs`.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use portcullis_auth::AccessKeys;
use portcullis_gateway::{Gateway, GatewayConfig};
use portcullis_server::negotiate::{Negotiate, NegotiateOptions};
use portcullis_server::{SocketIo, SocketRef};
use serde_json::Value;

const HUB: &str = "app";
const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn the_readme_example_is_the_compiled_example() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/embedded.rs"))
            .unwrap();
    // The README shows the file without its `//!` header paragraph.
    let (_header, body) = example.split_once("\n\n").unwrap();
    assert!(
        readme.contains(&format!("```rust\n{body}```")),
        "README.md's axum example differs from crates/server/examples/embedded.rs: \
         copy the file (without its //! lines) into the README"
    );
}

/// An app with its own routes and fallback merges the gateway's routes: the
/// app's pages, its fallback, `/negotiate` and a client's polling handshake
/// with the negotiated token all work on one listener.
#[tokio::test]
async fn the_gateway_merges_into_an_app_with_its_own_fallback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Gateway::new(GatewayConfig::new(addr, AccessKeys::generate()));
    let io = SocketIo::new();
    io.ns("/", |_: SocketRef| async move {});
    io.attach(&gateway, HUB).unwrap();
    let negotiate = Negotiate::new(gateway.connection_string(addr), HUB)
        .unwrap()
        .handler(|| async { Ok(NegotiateOptions::user("alice")) });
    let app = Router::new()
        .route("/page", get(|| async { "the app's page" }))
        .route("/negotiate", get(negotiate))
        .fallback(|| async { (StatusCode::IM_A_TEAPOT, "the app's fallback") })
        .merge(gateway.router());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let get = |path: String| {
        let request = http.get(format!("http://{addr}{path}")).send();
        async move {
            let response = tokio::time::timeout(DEADLINE, request)
                .await
                .expect("answers in time")
                .expect("answers");
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    assert_eq!(get("/page".into()).await, (200, "the app's page".into()));
    assert_eq!(
        get("/socket.io/?EIO=4&transport=polling".into()).await,
        (418, "the app's fallback".into())
    );
    let (status, health) = get("/health".into()).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&health).unwrap()["status"],
        "ok"
    );

    let (status, answer) = get("/negotiate".into()).await;
    assert_eq!(status, 200, "{answer}");
    let answer: HashMap<String, String> = serde_json::from_str(&answer).unwrap();
    let (status, open) = get(format!(
        "{}/?EIO=4&transport=polling&access_token={}",
        answer["path"], answer["token"]
    ))
    .await;
    assert_eq!(status, 200, "{open}");
    let open: Value =
        serde_json::from_str(open.strip_prefix('0').expect("an OPEN packet")).unwrap();
    assert!(open["sid"].is_string(), "{open}");
}

/// `serve_app` binds the one configured address and serves the app with the
/// gateway's connection limits: the app's routes and a negotiated handshake
/// work, and a client that never finishes its request headers is cut off by
/// the header timeout (plain `axum::serve` would keep it forever).
#[tokio::test]
async fn serve_app_serves_the_app_with_the_gateways_limits() {
    // A free port, given once, to the configuration.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = GatewayConfig::new(addr, AccessKeys::generate());
    config.connection_limits.header_read_timeout = Duration::from_millis(300);
    let gateway = Gateway::new(config);
    let io = SocketIo::new();
    io.ns("/", |_: SocketRef| async move {});
    io.attach(&gateway, HUB).unwrap();
    let negotiate = Negotiate::new(gateway.local_connection_string(), HUB)
        .unwrap()
        .handler(|| async { Ok(NegotiateOptions::user("alice")) });
    let app = Router::new()
        .route("/page", get(|| async { "the app's page" }))
        .route("/negotiate", get(negotiate))
        .merge(gateway.router());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(gateway.serve_app(app, async {
        stopped.await.ok();
    }));

    let http = reqwest::Client::new();
    let mut page = None;
    for _ in 0..50 {
        if let Ok(response) = http.get(format!("http://{addr}/page")).send().await {
            page = Some(response.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(page.as_deref(), Some("the app's page"));
    let answer: HashMap<String, String> = http
        .get(format!("http://{addr}/negotiate"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        answer["endpoint"].contains(&addr.port().to_string()),
        "{answer:?}"
    );
    let open = http
        .get(format!(
            "http://{addr}{}/?EIO=4&transport=polling&access_token={}",
            answer["path"], answer["token"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /page HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the half-sent request was not cut off");

    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, served)
        .await
        .expect("serve_app returns after shutdown")
        .unwrap()
        .unwrap();
}

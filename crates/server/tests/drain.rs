//! The Rust crate's tunnel when its gateway drains: told to reconnect
//! (`ConnectionReconnect`), `connect_tunnel`'s link opens a new tunnel to the
//! endpoint it was given, here a TCP proxy standing for the load balancer,
//! which by then leads to a second gateway. The draining gateway's own
//! clients are closed first, and the application hears them go.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{DEADLINE, HUB, KEY};
use portcullis_auth::{AccessKeys, ClientTokenOptions, mint_client_token};
use portcullis_gateway::{Gateway, GatewayConfig};
use portcullis_server::{SocketIo, SocketRef};
use tokio::sync::{mpsc, oneshot};

/// A gateway on loopback, drained when `shutdown` is sent; `served`
/// resolves when `serve` returned.
struct Gw {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn gateway(drain_period: Duration) -> Gw {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keys = AccessKeys::new(vec![KEY.to_owned()]).unwrap();
    let mut config = GatewayConfig::new(addr, keys);
    config.drain_period = drain_period;
    config.drain_timeout = Duration::from_secs(10);
    let (shutdown, rx) = oneshot::channel::<()>();
    let served = tokio::spawn(Gateway::new(config).serve(listener, async move {
        rx.await.ok();
    }));
    Gw {
        addr,
        shutdown: Some(shutdown),
        served,
    }
}

/// A TCP proxy to a switchable upstream.
async fn proxy(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<SocketAddr>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = Arc::new(Mutex::new(upstream));
    let current = target.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let to = *current.lock().unwrap();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, target)
}

/// The status of a polling handshake on `HUB` at `addr` (200 once an
/// application server accepted it; 503 without one, or while draining).
async fn handshake(addr: SocketAddr) -> u16 {
    reqwest::get(client_url(addr, None, &token(addr)))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A polling client connected to the namespace `/` (so the application's
/// connect handler runs).
async fn socket_io_client(addr: SocketAddr) {
    // One token for the session: its later requests must carry the same.
    let token = token(addr);
    let open = reqwest::get(client_url(addr, None, &token))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no sid in {open}"))
        .to_owned();
    let http = reqwest::Client::new();
    let url = client_url(addr, Some(&sid), &token);
    let sent = http.post(&url).body("40").send().await.unwrap();
    assert_eq!(sent.status(), 200);
    let answer = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(answer.starts_with("40{"), "{answer}");
}

/// A fresh client token for `HUB` at `addr`.
fn token(addr: SocketAddr) -> String {
    mint_client_token(
        KEY,
        &format!("http://{addr}/clients/socketio/hubs/{HUB}"),
        &ClientTokenOptions {
            user_id: Some("drain".into()),
            ..Default::default()
        },
    )
}

fn client_url(addr: SocketAddr, sid: Option<&str>, token: &str) -> String {
    let sid = sid.map(|sid| format!("&sid={sid}")).unwrap_or_default();
    format!(
        "http://{addr}/clients/socketio/hubs/{HUB}/?EIO=4&transport=polling{sid}&access_token={token}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_gateways_tunnel_reconnects_through_the_load_balancer() {
    let mut a = gateway(Duration::from_millis(200)).await;
    let b = gateway(Duration::from_millis(200)).await;
    let (balancer, upstream) = proxy(a.addr).await;

    let (gone, mut disconnects) = mpsc::unbounded_channel();
    let io = SocketIo::new();
    io.ns("/", move |socket: SocketRef| {
        let gone = gone.clone();
        async move {
            socket.on_disconnect(
                move |_: SocketRef, reason: portcullis_server::DisconnectReason| {
                    let gone = gone.clone();
                    async move {
                        let _ = gone.send(format!("{reason:?}"));
                    }
                },
            );
        }
    });
    let connection_string = format!("Endpoint=http://{balancer};AccessKey={KEY};Version=1.0;");
    let _tunnel = tokio::time::timeout(DEADLINE, io.connect_tunnel(&connection_string, HUB))
        .await
        .expect("the tunnel opens in time")
        .expect("the tunnel opens");
    // A client of A, through the balancer; B has no application yet.
    socket_io_client(balancer).await;
    assert_eq!(handshake(b.addr).await, 503);

    // A drains; the balancer sends new connections to B from now on.
    *upstream.lock().unwrap() = b.addr;
    a.shutdown.take().unwrap().send(()).unwrap();
    tokio::time::timeout(DEADLINE, a.served)
        .await
        .expect("A's drain ends in time")
        .unwrap()
        .unwrap();
    // The application heard A's client go.
    let reason = tokio::time::timeout(DEADLINE, disconnects.recv())
        .await
        .expect("a disconnect in time")
        .unwrap();
    assert!(!reason.is_empty());

    // The tunnel reconnected, through the balancer, to B: B's clients are
    // served now.
    let mut status = 0;
    for _ in 0..100 {
        status = handshake(b.addr).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the application is attached to B");
    drop(b.shutdown);
}

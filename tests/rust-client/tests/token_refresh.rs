//! `portcullis-client-refresh` with the `rust_socketio` client against the
//! real `portcullis` binary started with `--token-expiry` and a one-second
//! grace, and a `portcullis-server` application attached over the tunnel.
//! Tokens live four seconds.
//!
//! The binary is `$PORTCULLIS_BIN`, else `$CARGO_TARGET_DIR/debug/portcullis`,
//! else `target/debug/portcullis` of the repository (build it first:
//! `cargo build --bin portcullis`).

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;
use portcullis_auth::{ClientTokenOptions, mint_client_token};
use portcullis_client_refresh::{FreshToken, RefreshError, keep_fresh, refresh, token_times};
use portcullis_server::extract::{AckSender, Data};
use portcullis_server::{SocketIo, SocketRef, TunnelHandle};
use rust_socketio::Payload;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const KEY: &str = "token-refresh-test-access-key";
const HUB: &str = "fresh";
const TTL: Duration = Duration::from_secs(4);
const GRACE: Duration = Duration::from_secs(1);
const DEADLINE: Duration = Duration::from_secs(20);

/// The real gateway, killed on drop.
struct Gateway {
    child: Child,
    addr: String,
    connection_string: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORTCULLIS_BIN") {
        return bin.into();
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    target.join("debug/portcullis")
}

impl Gateway {
    fn start() -> Gateway {
        let bin = binary();
        assert!(
            bin.exists(),
            "not built: {} (cargo build --bin portcullis)",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--access-key", KEY])
            .args(["--token-expiry", "--token-expiry-grace-ms"])
            .arg(GRACE.as_millis().to_string())
            .env("PORTCULLIS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start portcullis");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the connection string");
        let connection_string = line.trim().to_owned();
        let addr = connection_string
            .strip_prefix("Endpoint=http://")
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("unexpected first line: {connection_string:?}"))
            .to_owned();
        Gateway {
            child,
            addr,
            connection_string,
        }
    }

    fn endpoint(&self, hub: &str) -> String {
        format!("http://{}/clients/socketio/hubs/{hub}/", self.addr)
    }

    fn token(&self, user: &str, hub: &str) -> String {
        let options = ClientTokenOptions {
            user_id: Some(user.to_owned()),
            ttl: TTL,
            ..Default::default()
        };
        mint_client_token(KEY, self.endpoint(hub).trim_end_matches('/'), &options)
    }
}

/// The application: reports connections and disconnections, answers
/// `whoami` with the socket id and `join` with the rooms.
async fn app(gateway: &Gateway) -> (SocketIo, TunnelHandle, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let io = SocketIo::new();
    io.ns("/", move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            tx.send(json!({"kind": "connected", "sid": socket.id().as_str(), "user": socket.user_id()}))
                .ok();
            socket.on("whoami", |socket: SocketRef, ack: AckSender| async move {
                ack.send(&socket.id().as_str()).ok();
            });
            socket.on(
                "join",
                |socket: SocketRef, Data(room): Data<String>, ack: AckSender| async move {
                    socket.join(room);
                    ack.send(&socket.rooms()).ok();
                },
            );
            socket.on_disconnect(move |socket: SocketRef, reason| {
                let tx = tx.clone();
                async move {
                    tx.send(json!({"kind": "disconnected", "sid": socket.id().as_str(), "reason": reason.as_str()}))
                        .ok();
                }
            });
        }
    });
    let tunnel = tokio::time::timeout(DEADLINE, io.connect_tunnel(&gateway.connection_string, HUB))
        .await
        .expect("the tunnel opens in time")
        .expect("the tunnel opens");
    (io, tunnel, rx)
}

/// The next report of `kind` (others are dropped).
async fn expect(
    reports: &mut mpsc::UnboundedReceiver<Value>,
    kind: &str,
    within: Duration,
) -> Value {
    tokio::time::timeout(within, async {
        loop {
            let report = reports.recv().await.expect("the app is running");
            if report["kind"] == kind {
                return report;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} within {within:?}"))
}

/// A client of `endpoint` with `tokens`: reconnections (when `reconnect`)
/// negotiate through `tokens.on_reconnect`.
async fn client(
    gateway: &Gateway,
    tokens: &FreshToken,
    reconnect: bool,
) -> (Client, mpsc::UnboundedReceiver<(String, Payload)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let endpoint = gateway.endpoint(HUB);
    let address = move |token: &str| format!("{endpoint}?access_token={token}");
    let builder = ClientBuilder::new(address(&tokens.current()))
        .reconnect(reconnect)
        .reconnect_delay(200, 1000)
        .on_reconnect(tokens.on_reconnect(address))
        .on_any(move |event, payload, _| {
            let tx = tx.clone();
            async move {
                tx.send((event.to_string(), payload)).ok();
            }
            .boxed()
        });
    let client = tokio::time::timeout(DEADLINE, builder.connect())
        .await
        .expect("connects in time")
        .expect("connects");
    (client, rx)
}

/// Emits `event` with an ack; the ack's first argument.
async fn ack(client: &Client, event: &str, args: Vec<Value>) -> Value {
    let (tx, mut rx) = mpsc::unbounded_channel();
    client
        .emit_with_ack(event, Payload::Text(args), DEADLINE, move |payload, _| {
            let tx = tx.clone();
            async move {
                tx.send(payload).ok();
            }
            .boxed()
        })
        .await
        .expect("emit");
    match tokio::time::timeout(DEADLINE, rx.recv()).await {
        Ok(Some(Payload::Text(values))) => match values.as_slice() {
            [Value::Array(args)] => args.first().cloned().unwrap_or(Value::Null),
            [one, ..] => one.clone(),
            [] => Value::Null,
        },
        other => panic!("no ack to {event}: {other:?}"),
    }
}

/// A negotiate that mints for `user` and counts its calls.
fn negotiator(gateway: &Gateway, user: &'static str) -> (FreshToken, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let endpoint = gateway.endpoint(HUB);
    let mint = move || {
        let options = ClientTokenOptions {
            user_id: Some(user.to_owned()),
            ttl: TTL,
            ..Default::default()
        };
        mint_client_token(KEY, endpoint.trim_end_matches('/'), &options)
    };
    let first = mint();
    let tokens = FreshToken::new(first, move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let token = mint();
        async move { Ok::<_, String>(token) }
    });
    (tokens, calls)
}

/// When a connection holding `token` is closed: `exp` plus the grace.
fn deadline_of(token: &str) -> SystemTime {
    let (exp, _) = token_times(token).expect("exp");
    UNIX_EPOCH + Duration::from_secs(exp) + GRACE
}

#[tokio::test]
async fn keep_fresh_keeps_the_socket_id_and_rooms_across_expiries() {
    let gateway = Gateway::start();
    let (io, _tunnel, mut reports) = app(&gateway).await;
    let (tokens, calls) = negotiator(&gateway, "alice");
    let first_deadline = deadline_of(&tokens.current());
    let (client, mut inbox) = client(&gateway, &tokens, false).await;
    let sid = expect(&mut reports, "connected", DEADLINE).await["sid"].clone();
    assert_eq!(ack(&client, "whoami", vec![]).await, sid);
    assert!(
        ack(&client, "join", vec![json!("r")])
            .await
            .as_array()
            .unwrap()
            .contains(&json!("r"))
    );

    let keeper = keep_fresh(client.clone(), tokens.clone(), Duration::from_secs(30));
    // Past the first token's deadline, plus two more lifetimes.
    let wait = first_deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        + 2 * TTL;
    tokio::time::sleep(wait).await;

    let status = keeper.status();
    assert!(status.refreshes >= 4, "{status:?}");
    assert_eq!(status.last_error, None);
    let expiry = status.expiry.expect("an expiry");
    assert!(expiry.at() > first_deadline + TTL, "{expiry:?}");
    assert!(calls.load(Ordering::SeqCst) >= 4);
    // Same socket, still in its room, never disconnected.
    assert_eq!(ack(&client, "whoami", vec![]).await, sid);
    io.to("r").emit("news", &"still here").unwrap();
    let news = tokio::time::timeout(DEADLINE, async {
        loop {
            let (event, payload) = inbox.recv().await.expect("open");
            if event == "news" {
                return payload;
            }
        }
    })
    .await
    .expect("the room broadcast");
    assert_eq!(news, Payload::Text(vec![json!("still here")]));
    assert!(
        reports.try_recv().is_err(),
        "no disconnection and no new connection"
    );
    keeper.stop();
    client.disconnect().await.ok();
}

#[tokio::test]
async fn a_refused_refresh_keeps_the_old_deadline() {
    let gateway = Gateway::start();
    let (_io, _tunnel, mut reports) = app(&gateway).await;
    let (tokens, _calls) = negotiator(&gateway, "carol");
    let deadline = deadline_of(&tokens.current());
    let (client, _inbox) = client(&gateway, &tokens, false).await;
    let sid = expect(&mut reports, "connected", DEADLINE).await["sid"].clone();

    for (what, token) in [
        ("another user", gateway.token("mallory", HUB)),
        ("another hub", gateway.token("carol", "elsewhere")),
        ("not a token", "not.a.jwt".to_owned()),
    ] {
        match refresh(&client, &token).await {
            Err(RefreshError::Refused { code, message }) => {
                assert!([400, 401, 403].contains(&code), "{what}: {code} {message}");
                assert!(
                    !message.contains(&token),
                    "{what}: the message echoes the token"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    let gone = expect(&mut reports, "disconnected", TTL + GRACE + DEADLINE).await;
    let at = SystemTime::now();
    assert_eq!(gone["sid"], sid);
    assert!(
        at + Duration::from_secs(1) >= deadline,
        "closed {:?} before the old deadline",
        deadline.duration_since(at).unwrap_or_default()
    );
    assert!(at <= deadline + Duration::from_secs(5), "closed late");
    client.disconnect().await.ok();
}

#[tokio::test]
async fn a_closed_connection_reconnects_with_a_token_negotiated_for_the_attempt() {
    let gateway = Gateway::start();
    let (_io, _tunnel, mut reports) = app(&gateway).await;
    let (tokens, calls) = negotiator(&gateway, "bob");
    let first = tokens.current();
    let (client, _inbox) = client(&gateway, &tokens, true).await;
    let first_sid = expect(&mut reports, "connected", DEADLINE).await["sid"].clone();

    // No keep_fresh: the gateway closes the connection after exp + grace.
    let gone = expect(&mut reports, "disconnected", TTL + GRACE + DEADLINE).await;
    assert_eq!(gone["sid"], first_sid);
    let closed = Instant::now();
    let again = expect(&mut reports, "connected", DEADLINE).await;
    assert_ne!(again["sid"], first_sid, "a new session");
    assert_eq!(again["user"], "bob");
    assert!(closed.elapsed() < Duration::from_secs(5));
    assert!(
        calls.load(Ordering::SeqCst) >= 1,
        "negotiated for the reconnection"
    );
    assert_ne!(tokens.current(), first);
    assert_eq!(ack(&client, "whoami", vec![]).await, again["sid"]);
    client.disconnect().await.ok();
}

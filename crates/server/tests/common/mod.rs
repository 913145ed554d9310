//! A gateway on loopback with a test application attached in embedded mode,
//! and helpers to observe what the application saw.
#![allow(dead_code)]

pub mod raw;

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_auth::{AccessKeys, ClientTokenOptions, mint_client_token};
use portcullis_gateway::{Gateway, GatewayConfig};
use portcullis_server::extract::{AckSender, Bin, Data, Extension, State, TryData};
use portcullis_server::{AckError, SocketIo, SocketRef};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

pub const KEY: &str = "test-access-key-for-the-server-crate";
pub const HUB: &str = "app";
/// Every wait in the tests is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// What the application reports to the test.
pub type Observations = mpsc::UnboundedReceiver<Value>;

pub struct TestServer {
    pub addr: SocketAddr,
    pub io: SocketIo,
    pub observations: Observations,
    _shutdown: oneshot::Sender<()>,
    /// Set when the application is attached over the tunnel.
    pub tunnel: Option<portcullis_server::TunnelHandle>,
}

/// How the test application is attached to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In the gateway's process.
    Embedded,
    /// Over the server tunnel.
    Tunnel,
}

/// Runs each named `async fn(Mode)` as two tests, `NAME::embedded` and
/// `NAME::tunnel`: the same scenario and assertions in both attach modes.
#[macro_export]
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn embedded() {
                super::$name(super::common::Mode::Embedded).await
            }
            #[tokio::test]
            async fn tunnel() {
                super::$name(super::common::Mode::Tunnel).await
            }
        }
    )*};
}

impl TestServer {
    /// Starts a gateway on 127.0.0.1:0 with the test application attached
    /// embedded.
    pub async fn start(connect_timeout: Duration) -> TestServer {
        Self::start_in(Mode::Embedded, connect_timeout).await
    }

    /// Like [`start`](Self::start), with the application attached over the
    /// server tunnel (the gateway in-process, reached through its
    /// connection string) instead of embedded.
    pub async fn start_tunnel(connect_timeout: Duration) -> TestServer {
        Self::start_in(Mode::Tunnel, connect_timeout).await
    }

    /// Starts a gateway on 127.0.0.1:0 with the test application attached in
    /// `mode`.
    pub async fn start_in(mode: Mode, connect_timeout: Duration) -> TestServer {
        let (tx, observations) = mpsc::unbounded_channel();
        let io = SocketIo::builder()
            .connect_timeout(connect_timeout)
            .ack_timeout(Duration::from_secs(2))
            .with_state(AppName("test-app"))
            .build();
        install(&io, tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let keys = AccessKeys::new(vec![KEY.to_owned()]).unwrap();
        let gateway = Gateway::new(GatewayConfig::new(addr, keys));
        let connection_string = gateway.connection_string(addr).to_string();
        if mode == Mode::Embedded {
            io.attach(&gateway, HUB).expect("attach");
        }
        let (shutdown, rx) = oneshot::channel::<()>();
        tokio::spawn(gateway.serve(listener, async move {
            rx.await.ok();
        }));
        let tunnel = match mode {
            Mode::Embedded => None,
            Mode::Tunnel => Some(
                tokio::time::timeout(DEADLINE, io.connect_tunnel(&connection_string, HUB))
                    .await
                    .expect("the tunnel opens in time")
                    .expect("the tunnel opens"),
            ),
        };
        TestServer {
            addr,
            io,
            observations,
            _shutdown: shutdown,
            tunnel,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn path(&self) -> String {
        format!("/clients/socketio/hubs/{HUB}")
    }

    /// A client token for `user` with role `role` and a custom claim.
    pub fn token(&self, user: &str, roles: &[&str]) -> String {
        let mut custom = serde_json::Map::new();
        custom.insert("team".into(), json!("blue"));
        let options = ClientTokenOptions {
            user_id: Some(user.to_owned()),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            custom_claims: custom,
            ..Default::default()
        };
        mint_client_token(
            KEY,
            &format!("{}{}", self.endpoint(), self.path()),
            &options,
        )
    }

    /// Waits for the first observation satisfying `pred` (others seen
    /// meanwhile are dropped).
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let wait = async {
            while let Some(v) = self.observations.recv().await {
                if pred(&v) {
                    return v;
                }
            }
            panic!("observation channel closed while waiting for {what}");
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"))
    }
}

#[derive(Deserialize)]
struct Target {
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
    event: String,
}

#[derive(Clone)]
struct Member(String);

/// The application state given to the builder.
#[derive(Clone)]
pub struct AppName(pub &'static str);

/// State never given to the builder.
#[derive(Clone)]
struct Missing;

/// The `auth` the test clients send with their CONNECT.
#[derive(Deserialize)]
struct ClientAuth {
    client: String,
    user: String,
}

/// What the `/extract` middleware stores for the connect handler.
#[derive(Clone)]
struct Stamp(String);

fn report(tx: &mpsc::UnboundedSender<Value>, v: Value) {
    tx.send(v).ok();
}

fn whoami(socket: &SocketRef) -> Value {
    json!({
        "ns": socket.ns(),
        "sid": socket.id().as_str(),
        "connection": socket.connection_id(),
        "user": socket.user_id(),
        "roles": socket.roles(),
        "team": socket.claims().get("team"),
        "auth": socket.handshake().auth(),
        "query": socket.handshake().query_param("extra"),
        "rooms": socket.rooms(),
    })
}

/// Handlers shared by every namespace of the test application.
fn common_handlers(io: &SocketIo, socket: &SocketRef, tx: &mpsc::UnboundedSender<Value>) {
    report(tx, json!({"kind": "connected", "who": whoami(socket)}));
    socket.emit("welcome", &whoami(socket)).ok();

    socket.on("whoami", |socket: SocketRef, ack: AckSender| async move {
        ack.send(&whoami(&socket)).ok();
    });
    socket.on(
        "add",
        |Data((a, b)): Data<(i64, i64)>, ack: Option<AckSender>| async move {
            if let Some(ack) = ack {
                ack.send(&(a + b)).ok();
            }
        },
    );
    socket.on(
        "echo",
        |socket: SocketRef, Data(v): Data<Value>, ack: Option<AckSender>| async move {
            socket.emit("echo", &v).ok();
            if let Some(ack) = ack {
                ack.send(&v).ok();
            }
        },
    );
    // Never acknowledges: the client's ack times out.
    socket.on("never", |_: SocketRef| async move {});
    // The server asks the client (event named by the client) and reports
    // what came back, or the timeout.
    let t = tx.clone();
    socket.on(
        "ask",
        move |socket: SocketRef, Data(event): Data<String>, ack: AckSender| {
            let t = t.clone();
            async move {
                let answer = socket
                    .emit_with_ack::<Value>(&event, &("question", 42))
                    .timeout(Duration::from_millis(1500))
                    .await;
                let outcome = match answer {
                    Ok(v) => json!({"ok": v}),
                    Err(AckError::Timeout) => json!({"err": "timeout"}),
                    Err(e) => json!({"err": e.to_string()}),
                };
                report(
                    &t,
                    json!({"kind": "asked", "event": event, "outcome": outcome}),
                );
                ack.send(&outcome).ok();
            }
        },
    );
    let t = tx.clone();
    socket.on(
        "upload",
        move |socket: SocketRef,
              TryData(data): TryData<Value>,
              Bin(files): Bin,
              ack: Option<AckSender>| {
            let t = t.clone();
            async move {
                let data = data.unwrap_or(Value::Null);
                let sizes: Vec<Vec<u8>> = files.iter().map(|b| b.to_vec()).collect();
                report(&t, json!({"kind": "upload", "data": data, "files": sizes}));
                let reversed: Vec<bytes::Bytes> = files
                    .iter()
                    .map(|b| b.iter().rev().copied().collect::<Vec<u8>>().into())
                    .collect();
                socket.bin(reversed.clone()).emit("download", &()).ok();
                if let Some(ack) = ack {
                    ack.bin(reversed).send(&(data, files.len())).ok();
                }
            }
        },
    );
    // Server-initiated binary ack: the client answers with a buffer.
    let t = tx.clone();
    socket.on("ask-binary", move |socket: SocketRef, ack: AckSender| {
        let t = t.clone();
        async move {
            let answer = socket
                .bin([bytes::Bytes::from_static(&[9, 8, 7])])
                .emit_with_ack::<portcullis_server::WithBinary<Value>>("binary-question", &"q")
                .await;
            let outcome = match answer {
                Ok(w) => json!({"data": w.data, "files": w.binary.iter().map(|b| b.to_vec()).collect::<Vec<_>>()}),
                Err(e) => json!({"err": e.to_string()}),
            };
            report(&t, json!({"kind": "binary-answer", "outcome": outcome}));
            ack.send(&outcome).ok();
        }
    });
    socket.on(
        "join",
        |socket: SocketRef, Data(rooms): Data<Vec<String>>, ack: AckSender| async move {
            socket.join(rooms);
            ack.send(&socket.rooms()).ok();
        },
    );
    socket.on(
        "leave",
        |socket: SocketRef, Data(rooms): Data<Vec<String>>, ack: AckSender| async move {
            socket.leave(rooms);
            ack.send(&socket.rooms()).ok();
        },
    );
    socket.on(
        "to",
        |socket: SocketRef, Data(t): Data<Target>, ack: AckSender| async move {
            let sent = socket
                .to(t.rooms)
                .except(t.except)
                .emit(&t.event, &socket.id().as_str());
            ack.send(&sent.is_ok()).ok();
        },
    );
    let io2 = io.clone();
    socket.on(
        "io-to",
        move |socket: SocketRef, Data(t): Data<Target>, ack: AckSender| {
            let io = io2.clone();
            async move {
                let sent = io
                    .of(socket.ns())
                    .to(t.rooms)
                    .except(t.except)
                    .emit(&t.event, &socket.id().as_str());
                ack.send(&sent.is_ok()).ok();
            }
        },
    );
    socket.on(
        "broadcast",
        |socket: SocketRef, Data(event): Data<String>, ack: AckSender| async move {
            let sent = socket.broadcast().emit(&event, &socket.id().as_str());
            ack.send(&sent.is_ok()).ok();
        },
    );
    let io2 = io.clone();
    socket.on(
        "sync-all",
        move |socket: SocketRef, Data(tag): Data<String>, ack: AckSender| {
            let io = io2.clone();
            async move {
                let sent = io.of(socket.ns()).emit("sync", &tag);
                ack.send(&sent.is_ok()).ok();
            }
        },
    );
    let io2 = io.clone();
    let t = tx.clone();
    socket.on("poll", move |socket: SocketRef, ack: AckSender| {
        let io = io2.clone();
        let t = t.clone();
        async move {
            let results = io
                .of(socket.ns())
                .timeout(Duration::from_millis(1500))
                .emit_with_ack::<String>("vote", &"lunch?")
                .await;
            let results: Vec<Value> = results
                .into_iter()
                .map(|(sid, r)| match r {
                    Ok(v) => json!({"sid": sid.as_str(), "ok": v}),
                    Err(AckError::Timeout) => json!({"sid": sid.as_str(), "err": "timeout"}),
                    Err(e) => json!({"sid": sid.as_str(), "err": e.to_string()}),
                })
                .collect();
            report(&t, json!({"kind": "poll", "results": results}));
            ack.send(&results).ok();
        }
    });
    socket.on("kick-me", |socket: SocketRef| async move {
        socket.disconnect();
    });
    let io2 = io.clone();
    socket.on("kick-ns", move |Data(ns): Data<String>, ack: AckSender| {
        let io = io2.clone();
        async move {
            io.of(&ns).disconnect_sockets();
            ack.send(&true).ok();
        }
    });
    let t = tx.clone();
    socket.on_disconnect(move |socket: SocketRef, reason| {
        let t = t.clone();
        async move {
            report(
                &t,
                json!({"kind": "disconnected", "ns": socket.ns(), "sid": socket.id().as_str(), "reason": reason.as_str()}),
            );
        }
    });
}

/// The test application.
pub fn install(io: &SocketIo, tx: mpsc::UnboundedSender<Value>) {
    for path in ["/", "/chat"] {
        let (io2, t) = (io.clone(), tx.clone());
        io.ns(path, move |socket: SocketRef| {
            let (io, t) = (io2.clone(), t.clone());
            async move { common_handlers(&io, &socket, &t) }
        });
    }
    let (io2, t) = (io.clone(), tx.clone());
    io.dyn_ns(
        |path| path.starts_with("/team-"),
        move |socket: SocketRef| {
            let (io, t) = (io2.clone(), t.clone());
            async move { common_handlers(&io, &socket, &t) }
        },
    );
    let (io2, t) = (io.clone(), tx.clone());
    let t2 = tx.clone();
    io.ns("/private", move |socket: SocketRef| {
        let (io, t) = (io2.clone(), t.clone());
        async move {
            common_handlers(&io, &socket, &t);
            socket.on(
                "member",
                |Extension(Member(name)): Extension<Member>, ack: AckSender| async move {
                    ack.send(&name).ok();
                },
            );
        }
    })
    .with(move |socket: SocketRef| {
        let t = t2.clone();
        async move {
            let user = socket.user_id().unwrap_or("nobody").to_owned();
            if !socket.roles().iter().any(|r| r == "admin") {
                report(&t, json!({"kind": "refused", "user": user}));
                return Err(format!("not allowed: {user}"));
            }
            socket.extensions().insert(Member(format!("member {user}")));
            Ok(())
        }
    })
    .with(|socket: SocketRef| async move {
        // A second middleware sees what the first stored.
        if socket.extensions().contains::<Member>() {
            Ok(())
        } else {
            Err("first middleware did not run")
        }
    });
    install_extractors(io, tx);
}

/// Connect handlers and middlewares taking extractors: `/extract` reads the
/// CONNECT `auth`, the builder's state and a middleware's extension;
/// `/no-state` asks for state the builder never got; `/try-auth` takes the
/// `auth` whether or not it deserializes.
fn install_extractors(io: &SocketIo, tx: mpsc::UnboundedSender<Value>) {
    io.ns(
        "/extract",
        move |socket: SocketRef,
              Data(auth): Data<ClientAuth>,
              State(AppName(app)): State<AppName>,
              Extension(Stamp(stamp)): Extension<Stamp>| {
            let t = tx.clone();
            async move {
                let seen = json!({"client": auth.client, "user": auth.user, "app": app, "stamp": stamp});
                report(&t, json!({"kind": "extracted", "seen": seen}));
                socket.emit("welcome", &seen).ok();
                socket.on(
                    "app",
                    |State(AppName(app)): State<AppName>, ack: AckSender| async move {
                        ack.send(&app).ok();
                    },
                );
            }
        },
    )
    .with(
        |socket: SocketRef, Data(auth): Data<ClientAuth>, State(AppName(app)): State<AppName>| async move {
            if auth.user == "mallory" {
                return Err(format!("{app} refuses mallory"));
            }
            socket
                .extensions()
                .insert(Stamp(format!("{app} stamped {}", auth.client)));
            Ok(())
        },
    );
    io.ns(
        "/no-state",
        |_: SocketRef, State(Missing): State<Missing>| async move {},
    );
    io.ns(
        "/try-auth",
        |socket: SocketRef, TryData(auth): TryData<ClientAuth>| async move {
            socket.emit("auth-parsed", &auth.is_ok()).ok();
        },
    );
}

//! The crate's API against the `rust_socketio` client, each case both
//! embedded and over the server tunnel.

#[path = "../../../crates/server/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{DEADLINE, HUB, Mode, TestServer};
use futures_util::FutureExt as _;
use rust_socketio::Payload;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What a client received: event name and payload.
type Inbox = mpsc::UnboundedReceiver<(String, Payload)>;

async fn client(server: &TestServer, ns: &str, user: &str) -> (Client, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let url = format!(
        "{}{}/?access_token={}",
        server.endpoint(),
        server.path(),
        server.token(user, &[])
    );
    let client = ClientBuilder::new(url)
        .namespace(ns)
        .auth(json!({"client": "rust", "user": user}))
        .reconnect(false)
        .on_any(move |event, payload, _| {
            let tx = tx.clone();
            async move {
                tx.send((event.to_string(), payload)).ok();
            }
            .boxed()
        })
        .connect();
    let client = tokio::time::timeout(DEADLINE, client)
        .await
        .expect("connects in time")
        .expect("connects");
    let mut inbox = rx;
    next(&mut inbox, "welcome").await;
    (client, inbox)
}

/// The next `event` received (earlier other events are dropped).
async fn next(inbox: &mut Inbox, event: &str) -> Payload {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let (name, payload) = inbox.recv().await.expect("client still open");
            if name == event {
                return payload;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {event} within {DEADLINE:?}"))
}

/// Events received until `sync` with `tag` (a barrier: the server sent it
/// after everything else under test).
async fn until_sync(inbox: &mut Inbox, tag: &str) -> Vec<(String, Payload)> {
    tokio::time::timeout(DEADLINE, async {
        let mut seen = Vec::new();
        loop {
            let (name, payload) = inbox.recv().await.expect("client still open");
            if name == "sync" && payload == Payload::Text(vec![json!(tag)]) {
                return seen;
            }
            seen.push((name, payload));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no sync {tag} within {DEADLINE:?}"))
}

/// Emits with an acknowledgement; the ack's arguments array (rust_socketio
/// hands acks over as one JSON array of the arguments).
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
    let payload = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no ack to {event}"))
        .expect("ack");
    match payload {
        Payload::Text(mut values) if values.len() == 1 => values.remove(0),
        other => panic!("unexpected ack payload {other:?}"),
    }
}

async fn claims_emits_and_acks(mode: Mode) {
    let mut server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let (client, mut inbox) = client(&server, "/chat", "alice").await;

    let connected = server
        .expect("the connect handler", |v| v["kind"] == "connected")
        .await;
    let who = &connected["who"];
    assert_eq!(who["ns"], "/chat");
    assert_eq!(who["user"], "alice");
    assert_eq!(who["team"], json!(["blue"]));
    assert_eq!(who["auth"], json!({"client": "rust", "user": "alice"}));

    client.emit("echo", json!({"a": 1})).await.unwrap();
    assert_eq!(
        next(&mut inbox, "echo").await,
        Payload::Text(vec![json!({"a": 1})])
    );

    let sum = ack(&client, "add", vec![json!(2), json!(3)]).await;
    assert_eq!(sum, json!([5]));

    // The server can emit to the socket from anywhere through the io handle.
    let sid = who["sid"].as_str().unwrap().to_owned();
    let socket = server.io.get_socket(&sid).expect("the socket is known");
    socket.emit("direct", &("x", 2)).unwrap();
    assert_eq!(
        next(&mut inbox, "direct").await,
        Payload::Text(vec![json!("x"), json!(2)])
    );
    client.disconnect().await.unwrap();
}

async fn binary_both_ways(mode: Mode) {
    let mut server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let (client, mut inbox) = client(&server, "/", "bob").await;
    client
        .emit("upload", Payload::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    let upload = server.expect("the upload", |v| v["kind"] == "upload").await;
    assert_eq!(upload["files"], json!([[1, 2, 3]]));
    assert_eq!(upload["data"], Value::Null);
    assert_eq!(
        next(&mut inbox, "download").await,
        Payload::Binary(vec![3u8, 2, 1].into())
    );
    client.disconnect().await.unwrap();
}

async fn rooms_join_leave_to_except(mode: Mode) {
    let server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let (a, mut a_in) = client(&server, "/", "alice").await;
    let (b, mut b_in) = client(&server, "/", "bob").await;

    assert_eq!(
        ack(&a, "join", vec![json!(["r", "x"])]).await,
        json!([["r", "x"]])
    );
    // From the test, through the io handle: everyone in "r".
    server.io.to("r").emit("direct", &1).unwrap();
    // b broadcasts to "r" (a), then to "r" except "x" (nobody).
    ack(&b, "to", vec![json!({"rooms": ["r"], "event": "hey"})]).await;
    ack(
        &b,
        "to",
        vec![json!({"rooms": ["r"], "except": ["x"], "event": "nobody"})],
    )
    .await;
    ack(&b, "sync-all", vec![json!("s1")]).await;
    let a_got = until_sync(&mut a_in, "s1").await;
    let b_got = until_sync(&mut b_in, "s1").await;
    let names = |got: &[(String, Payload)]| got.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a_got), ["direct", "hey"]);
    assert!(names(&b_got).is_empty(), "{b_got:?}");

    ack(&a, "leave", vec![json!(["r"])]).await;
    server.io.to("r").emit("direct", &2).unwrap();
    server.io.except("x").emit("not-x", &3).unwrap();
    ack(&b, "sync-all", vec![json!("s2")]).await;
    assert!(names(&until_sync(&mut a_in, "s2").await).is_empty());
    assert_eq!(names(&until_sync(&mut b_in, "s2").await), ["not-x"]);

    a.disconnect().await.unwrap();
    b.disconnect().await.unwrap();
}

async fn server_and_client_disconnect_reasons(mode: Mode) {
    let mut server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let (kicked, _in1) = client(&server, "/", "alice").await;
    let first = server.expect("connect", |v| v["kind"] == "connected").await;
    kicked.emit("kick-me", json!(null)).await.unwrap();
    let gone = server
        .expect("the kicked socket", |v| v["kind"] == "disconnected")
        .await;
    assert_eq!(gone["sid"], first["who"]["sid"]);
    assert_eq!(gone["reason"], "server namespace disconnect");
    assert!(
        server
            .io
            .get_socket(gone["sid"].as_str().unwrap())
            .is_none()
    );

    let (leaver, _in2) = client(&server, "/", "bob").await;
    let second = server.expect("connect", |v| v["kind"] == "connected").await;
    leaver.disconnect().await.unwrap();
    let gone = server
        .expect("the leaving socket", |v| v["kind"] == "disconnected")
        .await;
    assert_eq!(gone["sid"], second["who"]["sid"]);
    assert_eq!(gone["reason"], "client namespace disconnect");
    assert_eq!(server.io.hub_name(), Some(HUB));
}

/// Only a tuple is spread into several arguments: an array and a `Vec`
/// arrive as one array argument, from a socket and from a broadcast.
async fn arrays_are_one_argument_tuples_several(mode: Mode) {
    let mut server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let (client, mut inbox) = client(&server, "/", "alice").await;
    let connected = server
        .expect("the connect handler", |v| v["kind"] == "connected")
        .await;
    let sid = connected["who"]["sid"].as_str().unwrap().to_owned();
    let socket = server.io.get_socket(&sid).expect("the socket is known");
    let one_array = Payload::Text(vec![json!(["a", "b"])]);

    socket.emit("array", &["a", "b"]).unwrap();
    assert_eq!(next(&mut inbox, "array").await, one_array);
    socket.emit("vec", &vec!["a", "b"]).unwrap();
    assert_eq!(next(&mut inbox, "vec").await, one_array);
    socket.emit("tuple", &("a", "b")).unwrap();
    assert_eq!(
        next(&mut inbox, "tuple").await,
        Payload::Text(vec![json!("a"), json!("b")])
    );
    server.io.emit("broadcast-array", &["a", "b"]).unwrap();
    assert_eq!(next(&mut inbox, "broadcast-array").await, one_array);
    client.disconnect().await.unwrap();
}

/// Connect handlers and middlewares take extractors: the CONNECT `auth` as
/// `Data<T>`, the builder's `State<T>`, an earlier middleware's
/// `Extension<T>`; event handlers take `State<T>` too.
async fn connect_handlers_and_middlewares_take_extractors(mode: Mode) {
    let mut server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let (client, _inbox) = client(&server, "/extract", "alice").await;
    let extracted = server
        .expect("the connect handler", |v| v["kind"] == "extracted")
        .await;
    assert_eq!(
        extracted["seen"],
        json!({"client": "rust", "user": "alice", "app": "test-app", "stamp": "test-app stamped rust"})
    );
    assert_eq!(ack(&client, "app", vec![]).await, json!(["test-app"]));
    client.disconnect().await.unwrap();
}

/// The first Socket.IO packet answering a CONNECT sent as `connect` (e.g.
/// `40/ns,{...}`) on a raw WebSocket.
async fn answer_to_connect(server: &TestServer, connect: &str) -> String {
    packets_after_connect(server, connect, 1).await.remove(0)
}

/// The first `count` Socket.IO packets after sending `connect` on a raw
/// WebSocket.
async fn packets_after_connect(server: &TestServer, connect: &str, count: usize) -> Vec<String> {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!(
        "ws://{}{}/?EIO=4&transport=websocket&access_token={}",
        server.addr,
        server.path(),
        server.token("alice", &[])
    );
    let exchange = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("opens");
        ws.send(Message::text(connect)).await.expect("sends");
        let mut packets = Vec::new();
        while packets.len() < count {
            match ws.next().await.expect("open").expect("reads") {
                Message::Text(t) if t.starts_with("4") => packets.push(t.as_str()[1..].to_owned()),
                _ => {}
            }
        }
        packets
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to {connect}"))
}

/// The message of a CONNECT_ERROR answer for namespace `ns`.
fn refusal(answer: &str, ns: &str) -> String {
    let body = answer
        .strip_prefix(&format!("4{ns},"))
        .unwrap_or_else(|| panic!("not a CONNECT_ERROR of {ns}: {answer}"));
    let body: Value = serde_json::from_str(body).unwrap();
    body["message"].as_str().unwrap().to_owned()
}

/// A middleware's refusal carries its message; an argument that cannot be
/// built (auth that does not deserialize, state never given) refuses the
/// socket with the reason, before the connect handler runs.
async fn connect_extractor_failures_refuse_the_socket(mode: Mode) {
    let server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let mallory =
        answer_to_connect(&server, r#"40/extract,{"client":"raw","user":"mallory"}"#).await;
    assert_eq!(refusal(&mallory, "/extract"), "test-app refuses mallory");
    for bad_auth in [r#"40/extract,{"client":1}"#, "40/extract,"] {
        let message = refusal(&answer_to_connect(&server, bad_auth).await, "/extract");
        assert!(
            message.starts_with("the CONNECT auth payload does not deserialize"),
            "{bad_auth}: {message}"
        );
    }
    let no_state = refusal(
        &answer_to_connect(&server, "40/no-state,").await,
        "/no-state",
    );
    // Missing state is the application's bug (logged): the client is not
    // told the server's type names.
    assert_eq!(no_state, "server error");
    // `TryData` hands the handler the failure instead.
    for (auth, parsed) in [(r#"{"client":"raw","user":"bob"}"#, true), ("[1]", false)] {
        let packets = packets_after_connect(&server, &format!("40/try-auth,{auth}"), 2).await;
        assert!(
            packets[0].starts_with(r#"0/try-auth,{"sid":"#),
            "{packets:?}"
        );
        assert_eq!(
            packets[1],
            format!(r#"2/try-auth,["auth-parsed",{parsed}]"#)
        );
    }
    // A good CONNECT on the same kind of connection is accepted.
    let accepted = answer_to_connect(&server, r#"40/extract,{"client":"raw","user":"bob"}"#).await;
    assert!(accepted.starts_with(r#"0/extract,{"sid":"#), "{accepted}");
}

in_both_modes!(
    claims_emits_and_acks,
    binary_both_ways,
    rooms_join_leave_to_except,
    server_and_client_disconnect_reasons,
    arrays_are_one_argument_tuples_several,
    connect_handlers_and_middlewares_take_extractors,
    connect_extractor_failures_refuse_the_socket,
);

//! The crate's API against the real `socket.io-client` (npm), driven by
//! `tests/node/client.mjs`, each scenario both embedded and over the server
//! tunnel. Needs `npm ci` in `tests/compat` (done by
//! `scripts/test`); without it these tests fail and say so.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{DEADLINE, Mode, TestServer};
use serde_json::{Value, json};

fn compat_package_json() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat");
    assert!(
        root.join("node_modules/socket.io-client").is_dir(),
        "socket.io-client is not installed: run `npm ci` in {}",
        root.display()
    );
    root.join("package.json")
}

/// Runs a scenario of the Node script against `server`; its result.
async fn scenario(server: &TestServer, name: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node/client.mjs");
    let tokens = json!({
        "alice": server.token("alice", &[]),
        "bob": server.token("bob", &[]),
        "carol": server.token("carol", &[]),
        "dave": server.token("dave", &[]),
        "erin": server.token("erin", &[]),
        "root": server.token("root", &["admin"]),
    });
    let child = tokio::process::Command::new("node")
        .arg(&script)
        .env("COMPAT_PACKAGE_JSON", compat_package_json())
        .env("ENDPOINT", server.endpoint())
        .env("HUB_PATH", server.path())
        .env("TOKENS", tokens.to_string())
        .env("SCENARIO", name)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE + Duration::from_secs(20), child)
        .await
        .unwrap_or_else(|_| panic!("scenario {name} did not finish"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scenario {name} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("scenario {name} printed no result:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).expect("result is JSON")
}

async fn namespaces_claims_and_refusals(mode: Mode) {
    let mut server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let r = scenario(&server, "namespaces").await;

    // "/" and "/chat" share one connection but are distinct sockets whose
    // ids are not the connection id.
    let (root, chat) = (&r["whoRoot"], &r["whoChat"]);
    assert_eq!(root["ns"], "/");
    assert_eq!(chat["ns"], "/chat");
    assert_eq!(root["connection"], chat["connection"]);
    assert_ne!(root["sid"], chat["sid"]);
    assert_ne!(root["sid"], root["connection"]);
    assert_eq!(r["clientIds"]["root"], root["sid"], "client sees the sid");
    assert_eq!(r["clientIds"]["chat"], chat["sid"]);
    // Claims, handshake query and CONNECT auth.
    assert_eq!(root["user"], "alice");
    assert_eq!(root["team"], json!(["blue"]));
    assert_eq!(root["roles"], json!([]));
    assert_eq!(root["auth"], json!({"hello": "root"}));
    assert_eq!(chat["auth"], json!({"hello": "chat"}));
    assert_eq!(root["query"], "q1");
    // The connect handler's emit arrives.
    assert_eq!(r["welcomes"]["chat"]["sid"], chat["sid"]);
    // Dynamic namespace.
    assert_eq!(r["whoTeam"]["ns"], "/team-7");
    assert_eq!(r["welcomes"]["team"]["ns"], "/team-7");
    // Refusals.
    assert_eq!(r["invalid"], "Invalid namespace");
    assert_eq!(r["refused"], "not allowed: alice");
    assert_eq!(r["member"], "member root");
    server
        .expect("the refusal", |v| {
            v["kind"] == "refused" && v["user"] == "alice"
        })
        .await;
}

async fn acks_both_ways_with_timeouts(mode: Mode) {
    let mut server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let r = scenario(&server, "acks").await;
    assert_eq!(r["sum"], 3);
    assert_eq!(r["clientTimeout"], "operation has timed out");
    assert_eq!(r["echoed"], json!(["a", 1, {"x": true}]));
    assert_eq!(r["answered"], json!({"ok": {"got": ["question", 42]}}));
    assert_eq!(r["silent"], json!({"err": "timeout"}));
    server
        .expect("the server-side ack timeout", |v| {
            v["kind"] == "asked" && v["event"] == "silent" && v["outcome"]["err"] == "timeout"
        })
        .await;
}

async fn binary_both_ways(mode: Mode) {
    let mut server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let r = scenario(&server, "binary").await;
    assert_eq!(r["data"], "file.bin");
    assert_eq!(r["count"], 1);
    assert_eq!(r["reversed"], json!([3, 2, 1]));
    assert_eq!(r["downloaded"], json!([3, 2, 1]));
    assert_eq!(r["answer"], json!({"data": "got q 3", "files": [[5, 6]]}));
    server
        .expect("the upload", |v| {
            v["kind"] == "upload" && v["data"] == "file.bin" && v["files"] == json!([[1, 2, 3]])
        })
        .await;
}

fn got(received: &Value, client: &str, event: &str) -> Vec<Value> {
    received[client]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e[0] == event)
        .map(|e| e[1].clone())
        .collect()
}

async fn rooms_broadcasts_and_acks_from_many(mode: Mode) {
    let server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let r = scenario(&server, "rooms").await;
    let ids = &r["ids"];
    let rec = &r["received"];
    assert_eq!(r["rooms"]["a"], json!(["r1"]));
    assert_eq!(r["rooms"]["b"], json!(["r1", "r2"]));
    assert_eq!(r["bAfterLeave"], json!(["r2"]));
    // socket.to("r1") from a: b only (the sender is left out).
    assert_eq!(got(rec, "a", "m1"), Vec::<Value>::new());
    assert_eq!(got(rec, "b", "m1"), vec![ids["a"].clone()]);
    assert_eq!(got(rec, "c", "m1"), Vec::<Value>::new());
    // io.of("/").to("r1").except("r2"): a only.
    assert_eq!(got(rec, "a", "m2").len(), 1);
    assert!(got(rec, "b", "m2").is_empty() && got(rec, "c", "m2").is_empty());
    // socket.broadcast() from b: a and c.
    assert_eq!(got(rec, "a", "m3"), vec![ids["b"].clone()]);
    assert!(got(rec, "b", "m3").is_empty());
    assert_eq!(got(rec, "c", "m3"), vec![ids["b"].clone()]);
    // After b left r1: a only.
    assert_eq!(got(rec, "a", "m4").len(), 1);
    assert!(got(rec, "b", "m4").is_empty() && got(rec, "c", "m4").is_empty());
    // Two rooms: each member once.
    assert_eq!(got(rec, "a", "m5").len(), 1);
    assert_eq!(got(rec, "b", "m5").len(), 1);
    assert!(got(rec, "c", "m5").is_empty());
    // emit_with_ack to all three; c does not answer.
    let poll = r["poll"].as_array().expect("poll results");
    assert_eq!(poll.len(), 3, "{poll:?}");
    let by = |client: &str| {
        poll.iter()
            .find(|p| p["sid"] == ids[client])
            .unwrap_or_else(|| panic!("no result for {client}: {poll:?}"))
            .clone()
    };
    assert_eq!(by("a")["ok"], "a:lunch?");
    assert_eq!(by("b")["ok"], "b");
    assert_eq!(by("c")["err"], "timeout");
}

async fn server_and_client_disconnects(mode: Mode) {
    let mut server = TestServer::start_in(mode, Duration::from_secs(45)).await;
    let r = scenario(&server, "disconnects").await;
    let ids = r["ids"].clone();
    assert_eq!(r["kickedWhy"], "io server disconnect");
    assert_eq!(r["leaverWhy"], "io client disconnect");
    assert_eq!(r["chat1Why"], "io server disconnect");
    assert_eq!(r["chat2Why"], "io server disconnect");
    assert_eq!(r["operatorConnected"], true);
    let mut expected = vec![
        (ids["kicked"].clone(), "server namespace disconnect"),
        (ids["leaver"].clone(), "client namespace disconnect"),
        (ids["chat1"].clone(), "server namespace disconnect"),
        (ids["chat2"].clone(), "server namespace disconnect"),
        (ids["closer"].clone(), "transport close"),
    ];
    while !expected.is_empty() {
        let v = server
            .expect("the disconnect handlers", |v| v["kind"] == "disconnected")
            .await;
        if let Some(i) = expected.iter().position(|(sid, _)| v["sid"] == *sid) {
            let (_, reason) = expected.remove(i);
            assert_eq!(v["reason"], reason, "{v}");
        }
    }
}

async fn a_connection_without_connect_is_closed(mode: Mode) {
    let server = TestServer::start_in(mode, Duration::from_millis(800)).await;
    let r = scenario(&server, "no-connect").await;
    // The timer starts when the gateway registers the connection, after
    // the client started, so the close cannot come sooner than the timeout.
    let closed_after = r["closedAfterMs"].as_u64().unwrap();
    assert!(closed_after >= 750, "closed too early: {r}");
    assert_eq!(r["reason"], "transport close", "{r}");
}

in_both_modes!(
    namespaces_claims_and_refusals,
    acks_both_ways_with_timeouts,
    binary_both_ways,
    rooms_broadcasts_and_acks_from_many,
    server_and_client_disconnects,
    a_connection_without_connect_is_closed,
);

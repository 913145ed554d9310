//! An embedded application's view of its sockets' rooms follows group
//! changes made through the gateway's REST API (an operator's tool, or
//! another service), not only its own `join` and `leave`.

mod common;

use std::time::Duration;

use common::raw::Raw;
use common::{HUB, KEY, TestServer};
use portcullis_auth::{ClientTokenOptions, mint_client_token};
use portcullis_tunnel::group_name::group_name;
use serde_json::json;

async fn rest(server: &TestServer, action: &str, body: serde_json::Value) {
    let base = format!("{}/api/hubs/{HUB}", server.endpoint());
    let token = mint_client_token(KEY, &base, &ClientTokenOptions::default());
    let response = reqwest::Client::new()
        .post(format!("{base}/:{action}?api-version=2024-01-01"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn rooms_follow_group_changes_made_through_the_rest_api() {
    let server = TestServer::start(Duration::from_secs(5)).await;
    let mut alice = Raw::connect(server.addr, "alice").await;
    let mut bob = Raw::connect(server.addr, "bob").await;
    for client in [&mut alice, &mut bob] {
        client.event("welcome").await;
    }
    let rooms_of = |sid: &str| {
        let mut rooms = server.io.get_socket(sid).expect("the socket").rooms();
        rooms.sort();
        rooms
    };
    let vip = group_name("/", Some("vip"));
    let news = group_name("/", Some("news"));

    rest(
        &server,
        "addToGroups",
        json!({"groups": [vip, news], "filter": "userId eq 'alice'"}),
    )
    .await;
    assert_eq!(rooms_of(&alice.sid), ["news", "vip"]);
    assert!(rooms_of(&bob.sid).is_empty());
    // The app's own broadcast to the room reaches her.
    server.io.to("vip").emit("hello", &"vips").unwrap();
    assert_eq!(alice.event("hello").await.1, [json!("vips")]);

    rest(
        &server,
        "removeFromGroups",
        json!({"groups": [vip], "filter": "userId eq 'alice'"}),
    )
    .await;
    assert_eq!(rooms_of(&alice.sid), ["news"]);
    // Leaving a room the REST API put her in works from the app too.
    server.io.get_socket(&alice.sid).unwrap().leave("news");
    assert!(rooms_of(&alice.sid).is_empty());
    server.io.to("news").emit("hello", &"news").unwrap();
    server.io.emit("marker", &1).unwrap();
    let next = alice.next().await;
    assert!(next.contains("marker"), "{next}");
}

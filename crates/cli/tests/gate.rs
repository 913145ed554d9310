//! The gate: every refusal of a handshake, over polling and WebSocket, with
//! its status and message, and no session left behind.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{KEY, TestGateway, token_for};
use hmac::{Hmac, Mac};
use portcullis_auth::{ClientTokenOptions, mint_client_token, mint_client_token_at};
use sha2::Sha256;

const HUB: &str = "chat";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A token with an arbitrary header and payload, HMAC-SHA256-signed with `key`.
fn hand_made(header: &str, payload: &serde_json::Value, key: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
}

fn audience(hub: &str) -> String {
    format!("http://localhost/clients/socketio/hubs/{hub}")
}

fn valid_claims() -> serde_json::Value {
    serde_json::json!({ "aud": audience(HUB), "exp": now() + 600, "sub": "mallory" })
}

/// Asserts that a polling handshake with `token` is refused with 401, a JSON
/// body whose message contains `expected`, no echo of the token, and that
/// no session was created.
async fn assert_refused(gateway: &TestGateway, token: Option<&str>, expected: &str) {
    let before = gateway.connections().await;
    let query = match token {
        Some(token) => format!("EIO=4&transport=polling&access_token={token}"),
        None => "EIO=4&transport=polling".to_owned(),
    };
    let response = reqwest::get(gateway.client_url(HUB, &query)).await.unwrap();
    assert_eq!(response.status(), 401, "status for {expected}");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 4);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(expected),
        "message {message:?} should mention {expected:?}"
    );
    if let Some(token) = token.filter(|t| t.len() > 20) {
        assert!(!message.contains(token), "the token must not be echoed");
    }
    assert_eq!(
        gateway.connections().await,
        before,
        "no session may be created"
    );

    // The same token is refused on a WebSocket handshake, before the upgrade.
    let ws_query = query.replace("transport=polling", "transport=websocket");
    let url = format!("{}/clients/socketio/hubs/{HUB}/?{ws_query}", gateway.ws());
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains(expected), "ws refusal body {body:?}");
        }
        other => panic!("WebSocket handshake should be refused with 401, got {other:?}"),
    }
    assert_eq!(gateway.connections().await, before);
}

fn echo_gateway() -> TestGateway {
    TestGateway::start(&["--echo-hub", HUB])
}

#[tokio::test]
async fn missing_token_is_refused() {
    let gateway = echo_gateway();
    assert_refused(&gateway, None, "missing").await;
    assert_refused(&gateway, Some(""), "missing").await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let gateway = echo_gateway();
    let options = ClientTokenOptions {
        user_id: Some("bob".into()),
        ..Default::default()
    };
    // Issued two hours ago with a one-hour lifetime: past any clock skew.
    let token = mint_client_token_at(KEY, &audience(HUB), &options, now() - 7200);
    assert_refused(&gateway, Some(&token), "expired").await;
}

#[tokio::test]
async fn token_without_expiry_is_refused() {
    let gateway = echo_gateway();
    let payload = serde_json::json!({ "aud": audience(HUB), "sub": "bob" });
    let token = hand_made(r#"{"alg":"HS256","typ":"JWT"}"#, &payload, KEY);
    assert_refused(&gateway, Some(&token), "exp").await;
}

#[tokio::test]
async fn future_nbf_is_refused() {
    let gateway = echo_gateway();
    let mut options = ClientTokenOptions::default();
    options
        .custom_claims
        .insert("nbf".into(), (now() + 3600).into());
    let token = mint_client_token(KEY, &audience(HUB), &options);
    assert_refused(&gateway, Some(&token), "not valid yet").await;
}

#[tokio::test]
async fn bad_signature_is_refused() {
    let gateway = echo_gateway();
    let token = mint_client_token(
        "some-other-key",
        &audience(HUB),
        &ClientTokenOptions::default(),
    );
    assert_refused(&gateway, Some(&token), "signature").await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let gateway = echo_gateway();
    let other_hub = mint_client_token(KEY, &audience("other"), &ClientTokenOptions::default());
    assert_refused(&gateway, Some(&other_hub), "audience").await;
    let other_path = mint_client_token(
        KEY,
        "http://localhost/api/hubs/chat",
        &ClientTokenOptions::default(),
    );
    assert_refused(&gateway, Some(&other_path), "audience").await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let gateway = echo_gateway();
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let token = format!("{header}.{}.", b64(valid_claims().to_string().as_bytes()));
    assert_refused(&gateway, Some(&token), "'none'").await;
}

#[tokio::test]
async fn hs_rs_confusion_is_refused() {
    let gateway = echo_gateway();
    // The classic confusion: claim RS256 but sign with HMAC over the key.
    let token = hand_made(r#"{"alg":"RS256","typ":"JWT"}"#, &valid_claims(), KEY);
    assert_refused(&gateway, Some(&token), "RS256").await;
    let hs512 = hand_made(r#"{"alg":"HS512","typ":"JWT"}"#, &valid_claims(), KEY);
    assert_refused(&gateway, Some(&hs512), "HS512").await;
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let gateway = echo_gateway();
    for token in ["abc", "a.b", "a.b.c.d", "%%%.%%%.%%%"] {
        assert_refused(&gateway, Some(token), "malformed").await;
    }
    // Correctly signed, but the claims are not a JSON object.
    for claims in ["not json", "[1,2]"] {
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(claims.as_bytes())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        assert_refused(&gateway, Some(&token), "malformed").await;
    }
}

#[tokio::test]
async fn oversized_token_is_refused() {
    let gateway = TestGateway::start(&["--echo-hub", HUB, "--max-token-bytes", "512"]);
    let mut options = ClientTokenOptions::default();
    options
        .custom_claims
        .insert("padding".into(), "x".repeat(600).into());
    let token = mint_client_token(KEY, &audience(HUB), &options);
    assert_refused(&gateway, Some(&token), "too large").await;
}

#[tokio::test]
async fn valid_token_opens_a_session_by_query_or_bearer_header() {
    let gateway = echo_gateway();
    let token = gateway.token(HUB);
    let response = reqwest::get(gateway.client_url(
        HUB,
        &format!("EIO=4&transport=polling&access_token={token}"),
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().starts_with("0{\"sid\""));
    assert_eq!(gateway.connections().await, 1);

    let response = reqwest::Client::new()
        .get(gateway.client_url(HUB, "EIO=4&transport=polling"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(gateway.connections().await, 2);
}

#[tokio::test]
async fn hub_and_trailing_slash_are_lenient() {
    let gateway = echo_gateway();
    let token = mint_client_token(
        KEY,
        "ws://elsewhere:9/clients/socketio/hubs/CHAT/",
        &ClientTokenOptions::default(),
    );
    let url = format!(
        "{}/clients/socketio/hubs/Chat?EIO=4&transport=polling&access_token={token}",
        gateway.http()
    );
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "case-insensitive hub, trailing slash, other scheme and host"
    );
}

#[tokio::test]
async fn public_endpoint_requires_matching_host() {
    let gateway = TestGateway::start(&[
        "--echo-hub",
        HUB,
        "--public-endpoint",
        "https://rt.example.com/",
    ]);
    let wrong_host = mint_client_token(
        KEY,
        "https://evil.example.com/clients/socketio/hubs/chat",
        &Default::default(),
    );
    assert_refused(&gateway, Some(&wrong_host), "audience").await;
    let right = mint_client_token(
        KEY,
        "wss://rt.example.com/clients/socketio/hubs/chat",
        &Default::default(),
    );
    let response = reqwest::get(gateway.client_url(
        HUB,
        &format!("EIO=4&transport=polling&access_token={right}"),
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        gateway
            .connection_string
            .starts_with("Endpoint=https://rt.example.com;")
    );
}

#[tokio::test]
async fn rotated_keys_are_both_accepted() {
    let gateway = TestGateway::start(&[
        "--echo-hub",
        HUB,
        "--access-key",
        "old-key",
        "--access-key",
        "new-key",
    ]);
    for key in ["old-key", "new-key"] {
        let token = mint_client_token(key, &audience(HUB), &ClientTokenOptions::default());
        let response = reqwest::get(gateway.client_url(
            HUB,
            &format!("EIO=4&transport=polling&access_token={token}"),
        ))
        .await
        .unwrap();
        assert_eq!(response.status(), 200, "token signed with {key}");
    }
    assert!(
        gateway.connection_string.contains("AccessKey=old-key;"),
        "the first key is printed"
    );
    let stale = mint_client_token(KEY, &audience(HUB), &ClientTokenOptions::default());
    assert_refused(&gateway, Some(&stale), "signature").await;
}

#[tokio::test]
async fn anonymous_clients_need_the_hub_to_allow_them() {
    let gateway = TestGateway::start(&["--echo-hub", HUB, "--allow-anonymous"]);
    let response = reqwest::get(gateway.client_url(HUB, "EIO=4&transport=polling"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A token that is present is still checked.
    let bad = mint_client_token("wrong", &audience(HUB), &ClientTokenOptions::default());
    let response = reqwest::get(
        gateway.client_url(HUB, &format!("EIO=4&transport=polling&access_token={bad}")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn hub_without_application_is_refused_with_503() {
    let gateway = TestGateway::start(&[]);
    let token = gateway.token("lonely");
    let response = reqwest::get(gateway.client_url(
        "lonely",
        &format!("EIO=4&transport=polling&access_token={token}"),
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("'lonely'"),
        "{body}"
    );
    let health: serde_json::Value = reqwest::get(format!("{}/health", gateway.http()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["connections"], 0);
    assert_eq!(health["hubs"], 0, "a refused hub is not created");
}

#[tokio::test]
async fn session_requests_must_keep_the_token_and_hub() {
    let gateway = TestGateway::start(&["--echo-hub", HUB, "--echo-hub", "other"]);
    let token = gateway.token(HUB);
    let open = reqwest::get(gateway.client_url(
        HUB,
        &format!("EIO=4&transport=polling&access_token={token}"),
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let open: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap();
    assert!(
        sid.len() >= 22
            && sid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );

    // Another valid token on the session's requests: refused.
    let other = token_for(
        HUB,
        &ClientTokenOptions {
            user_id: Some("eve".into()),
            ..Default::default()
        },
    );
    let response = reqwest::Client::new()
        .post(gateway.client_url(
            HUB,
            &format!("EIO=4&transport=polling&sid={sid}&access_token={other}"),
        ))
        .body("4hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The session's sid on another hub: unknown there.
    let other_hub = gateway.token("other");
    let response = reqwest::get(gateway.client_url(
        "other",
        &format!("EIO=4&transport=polling&sid={sid}&access_token={other_hub}"),
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 1);
    // Knowing the sid is not enough: without the token, no POST, no poll and
    // no upgrade, and nothing the client was sent leaks.
    let client = reqwest::Client::new();
    let anonymous = format!("EIO=4&transport=polling&sid={sid}");
    let response = client
        .post(gateway.client_url(HUB, &anonymous))
        .body("4stolen")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "POST with the sid alone");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("access_token"),
        "{body}"
    );
    let response = client
        .get(gateway.client_url(HUB, &anonymous))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "poll with the sid alone");
    let upgrade = tokio_tungstenite::connect_async(format!(
        "{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&sid={sid}",
        gateway.ws()
    ))
    .await;
    match upgrade {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401, "upgrade with the sid alone")
        }
        other => panic!("upgrade with the sid alone: expected 401, got {other:?}"),
    }
    // The session's own token works, and the client still gets its own echo
    // (the refused POST was not delivered).
    let own = format!("EIO=4&transport=polling&sid={sid}&access_token={token}");
    let response = client
        .post(gateway.client_url(HUB, &own))
        .body("4mine")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let polled = client
        .get(gateway.client_url(HUB, &own))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        polled.contains("4mine") && !polled.contains("stolen"),
        "{polled:?}"
    );
}

/// Sends `GET <path>` as written (URL libraries resolve `.` and `..`
/// segments, so they could not send them) and returns the status line and body.
async fn raw_get(gateway: &TestGateway, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = gateway.http().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn dot_segment_hub_names_are_refused() {
    let gateway = echo_gateway();
    for hub in [".", "..", "%2E", "%2e%2E"] {
        let path = format!("/clients/socketio/hubs/{hub}/?EIO=4&transport=polling");
        let (status, body) = raw_get(&gateway, &path).await;
        assert!(status.contains(" 400 "), "hub {hub}: {status}");
        assert!(body.contains("invalid hub name"), "hub {hub}: {body}");
    }
}

#[tokio::test]
async fn invalid_hub_names_are_refused() {
    let gateway = echo_gateway();
    for hub in ["a%20b", "a.b%2Fc", "x%3Cscript%3E", &"h".repeat(129)] {
        let response = reqwest::get(gateway.client_url(hub, "EIO=4&transport=polling"))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "hub {hub}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("invalid hub name"),
            "{body}"
        );
    }
}

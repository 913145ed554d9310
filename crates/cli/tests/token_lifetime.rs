//! Token lifetime on live connections, against the real binary: expiry with
//! a grace period, in-band refresh, revocation by `jti` and by user.
//!
//! The clients speak Engine.IO / Socket.IO by hand over a WebSocket (the
//! echo hub sends every message back), so each test sees exactly which
//! frames the gateway writes. socket.io-client runs the same flows in
//! `tests/compat/test/token-lifetime.test.mjs`.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{KEY, TestGateway, token_for};
use futures_util::{SinkExt, StreamExt};
use portcullis_auth::{ClientTokenOptions, TokenId, mint_client_token};
use tokio_tungstenite::tungstenite::Message;

const HUB: &str = "live";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token of `user` for `hub` living `ttl`, with the id `jti`.
fn token(hub: &str, user: &str, ttl: Duration, jti: &str) -> String {
    token_for(
        hub,
        &ClientTokenOptions {
            user_id: Some(user.into()),
            ttl,
            token_id: TokenId::Fixed(jti.into()),
            ..Default::default()
        },
    )
}

/// An echo gateway enforcing expiry with `grace_ms` of grace.
fn expiring_gateway(grace_ms: &str) -> TestGateway {
    TestGateway::start(&[
        "--echo-hub",
        HUB,
        "--token-expiry",
        "--token-expiry-grace-ms",
        grace_ms,
    ])
}

/// Opens a WebSocket session with `token`; returns it after the open packet.
async fn connect(gateway: &TestGateway, token: &str) -> Socket {
    let url = format!(
        "{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&access_token={token}",
        gateway.ws()
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let open = next_text(&mut socket).await.expect("open packet");
    assert!(open.starts_with("0{"), "{open}");
    socket
}

/// The next text frame, or `None` once the gateway closed the socket.
async fn next_text(socket: &mut Socket) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the gateway said nothing for 10 s")
        {
            Some(Ok(Message::Text(text))) => return Some(text.to_string()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Reads until the gateway closes the socket; the text frames it sent.
async fn frames_until_closed(socket: &mut Socket) -> Vec<String> {
    let mut frames = Vec::new();
    while let Some(text) = next_text(socket).await {
        frames.push(text);
    }
    frames
}

/// Sends the reserved refresh event with ack id `ack` and returns the ack's
/// argument.
async fn refresh(socket: &mut Socket, ack: u32, token: &str) -> serde_json::Value {
    let event = format!(r#"42{ack}["portcullis:refresh",{{"token":"{token}"}}]"#);
    socket.send(Message::text(event)).await.unwrap();
    let answer = next_text(socket).await.expect("an acknowledgement");
    let body = answer
        .strip_prefix(&format!("43{ack}"))
        .unwrap_or_else(|| panic!("not the ack: {answer}"));
    let mut args: Vec<serde_json::Value> = serde_json::from_str(body).unwrap();
    args.remove(0)
}

/// Whether the socket is still served: a message comes back from the echo.
async fn still_open(socket: &mut Socket) -> bool {
    if socket
        .send(Message::text(r#"42["ping-me"]"#))
        .await
        .is_err()
    {
        return false;
    }
    next_text(socket).await.as_deref() == Some(r#"42["ping-me"]"#)
}

#[tokio::test]
async fn an_expired_connection_is_closed_after_the_grace_with_an_engine_close() {
    let gateway = expiring_gateway("1000");
    let mut socket = connect(&gateway, &token(HUB, "ann", Duration::from_secs(1), "a1")).await;
    let started = Instant::now();
    let frames = frames_until_closed(&mut socket).await;
    let lived = started.elapsed();
    // `exp` is whole seconds: the close comes 1 s grace after it, within
    // 2 s of the handshake, and never before the grace has run.
    assert!(
        lived >= Duration::from_millis(1000),
        "closed after {lived:?}"
    );
    // An Engine.IO close, never a Socket.IO DISCONNECT ("41"), which would
    // stop socket.io-client from reconnecting.
    assert!(
        frames.iter().all(|f| !f.starts_with("41")),
        "frames before the close: {frames:?}"
    );
    gateway.wait_connections(0).await;
}

#[tokio::test]
async fn without_token_expiry_a_connection_outlives_its_token() {
    let gateway = TestGateway::start(&["--echo-hub", HUB]);
    let mut socket = connect(&gateway, &token(HUB, "ann", Duration::from_secs(1), "a1")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(still_open(&mut socket).await);
}

#[tokio::test]
async fn a_refreshed_connection_keeps_its_session_past_the_old_deadline() {
    let gateway = expiring_gateway("500");
    let mut socket = connect(&gateway, &token(HUB, "ann", Duration::from_secs(1), "a1")).await;
    let fresh = token(HUB, "ann", Duration::from_secs(60), "a2");
    let answer = refresh(&mut socket, 7, &fresh).await;
    assert_eq!(answer["ok"], true, "{answer}");
    let expires_at = answer["expiresAt"].as_u64().unwrap();
    assert!(expires_at >= unix_now() + 55, "{answer}");
    // The old deadline (1 s + 0.5 s) passes; the session is still served,
    // and the echo app never saw the refresh (it would have echoed it).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(still_open(&mut socket).await);
}

#[tokio::test]
async fn a_refresh_in_a_namespace_is_acknowledged_there_and_never_reaches_the_app() {
    let gateway = expiring_gateway("500");
    let mut socket = connect(&gateway, &token(HUB, "ann", Duration::from_secs(60), "a1")).await;
    let fresh = token(HUB, "ann", Duration::from_secs(120), "a2");
    let event = format!(r#"42/chat,3["portcullis:refresh",{{"token":"{fresh}"}}]"#);
    socket.send(Message::text(event)).await.unwrap();
    let ack = next_text(&mut socket).await.unwrap();
    assert!(ack.starts_with(r#"43/chat,3[{"#), "{ack}");
    assert!(ack.contains(r#""ok":true"#), "{ack}");
    // Nothing else came back: the next frame is the echo of a later event.
    assert!(still_open(&mut socket).await);
}

#[tokio::test]
async fn a_refresh_with_another_users_or_hubs_token_is_refused_and_the_old_deadline_stands() {
    let gateway = expiring_gateway("500");
    let mut socket = connect(&gateway, &token(HUB, "ann", Duration::from_secs(2), "a1")).await;
    let started = Instant::now();

    let bobs = token(HUB, "bob", Duration::from_secs(60), "b1");
    let answer = refresh(&mut socket, 1, &bobs).await;
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["code"], 403, "{answer}");

    let other_hub = token("elsewhere", "ann", Duration::from_secs(60), "a2");
    let answer = refresh(&mut socket, 2, &other_hub).await;
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["code"], 401, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("audience"),
        "{answer}"
    );
    assert!(
        !answer.to_string().contains(&other_hub),
        "the token is not echoed"
    );

    let forged = mint_client_token(
        "not-the-key",
        &format!("http://localhost/clients/socketio/hubs/{HUB}"),
        &ClientTokenOptions {
            user_id: Some("ann".into()),
            ..Default::default()
        },
    );
    let answer = refresh(&mut socket, 3, &forged).await;
    assert_eq!(answer["code"], 401, "{answer}");

    socket
        .send(Message::text(r#"424["portcullis:refresh","bare"]"#))
        .await
        .unwrap();
    let answer = next_text(&mut socket).await.unwrap();
    assert!(answer.starts_with(r#"434[{"code":400"#), "{answer}");

    // Still closed at the first token's deadline (2 s + 0.5 s).
    frames_until_closed(&mut socket).await;
    let lived = started.elapsed();
    assert!(lived < Duration::from_secs(5), "lived {lived:?}");
}

#[tokio::test]
async fn an_anonymous_connection_has_nothing_to_refresh() {
    let gateway = TestGateway::start(&["--echo-hub", HUB, "--allow-anonymous", "--token-expiry"]);
    let url = format!(
        "{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket",
        gateway.ws()
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next_text(&mut socket).await.unwrap();
    let answer = refresh(
        &mut socket,
        1,
        &token(HUB, "ann", Duration::from_secs(60), "a1"),
    )
    .await;
    assert_eq!(answer["code"], 403, "{answer}");
    assert!(
        still_open(&mut socket).await,
        "anonymous sessions never expire"
    );
}

/// Opens a polling session with `token`; its sid.
async fn open_polling(gateway: &TestGateway, token: &str) -> String {
    let url = gateway.client_url(
        HUB,
        &format!("EIO=4&transport=polling&access_token={token}"),
    );
    let open = reqwest::get(url).await.unwrap().text().await.unwrap();
    let open: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

/// The URL of a request of session `sid` carrying `token`.
fn polling_url(gateway: &TestGateway, token: &str, sid: &str) -> String {
    gateway.client_url(
        HUB,
        &format!("EIO=4&transport=polling&access_token={token}&sid={sid}"),
    )
}

/// Polls of a session may carry the handshake's token or the refreshed one.
#[tokio::test]
async fn polls_after_a_refresh_may_carry_either_token() {
    let gateway = expiring_gateway("25000");
    let first = token(HUB, "ann", Duration::from_secs(60), "a1");
    let poll_url = |token: &str, sid: &str| polling_url(&gateway, token, sid);
    let sid = open_polling(&gateway, &first).await;
    let fresh = token(HUB, "ann", Duration::from_secs(120), "a2");
    let client = reqwest::Client::new();
    let post = client
        .post(poll_url(&first, &sid))
        .body(format!(r#"42["portcullis:refresh",{{"token":"{fresh}"}}]"#))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    // An echo to take: the event would come back had it reached the app.
    let post = client
        .post(poll_url(&fresh, &sid))
        .body(r#"42["after"]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        post.status(),
        200,
        "the refreshed token is the session's too"
    );
    let polled = reqwest::get(poll_url(&first, &sid))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(polled, r#"42["after"]"#, "only the echo of the later event");
    let stranger = token(HUB, "ann", Duration::from_secs(120), "a3");
    let refused = reqwest::get(poll_url(&stranger, &sid)).await.unwrap();
    assert_eq!(refused.status(), 401);
}

/// An operator call to the REST API.
async fn rest(gateway: &TestGateway, path: &str) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", gateway.http());
    let audience = format!("{}/api/hubs/{HUB}", gateway.http());
    let operator = mint_client_token(KEY, &audience, &ClientTokenOptions::default());
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(operator)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Status of a WebSocket handshake with `token`.
async fn handshake_status(gateway: &TestGateway, token: &str) -> u16 {
    let url = gateway.client_url(
        HUB,
        &format!("EIO=4&transport=polling&access_token={token}"),
    );
    reqwest::get(url).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn revoking_a_token_closes_its_connections_with_a_disconnect_and_refuses_it_after() {
    let gateway = TestGateway::start(&["--echo-hub", HUB]);
    let revoked = token(HUB, "ann", Duration::from_secs(600), "doomed");
    let kept = token(HUB, "ann", Duration::from_secs(600), "kept");
    let mut doomed = connect(&gateway, &revoked).await;
    // The client joined the "/" namespace: the gateway's echo of its
    // CONNECT is a CONNECT to the client, which makes it a member.
    doomed.send(Message::text("40")).await.unwrap();
    assert_eq!(next_text(&mut doomed).await.as_deref(), Some("40"));
    let mut spared = connect(&gateway, &kept).await;

    let (status, body) = rest(&gateway, &format!("/api/hubs/{HUB}/tokens/doomed/:revoke")).await;
    assert_eq!((status, &body), (200, &serde_json::json!({"closed": 1})));
    let frames = frames_until_closed(&mut doomed).await;
    assert_eq!(frames, ["41"], "a Socket.IO DISCONNECT, then the close");
    assert!(
        still_open(&mut spared).await,
        "another token of the same user"
    );
    assert_eq!(handshake_status(&gateway, &revoked).await, 401);
    assert_eq!(handshake_status(&gateway, &kept).await, 200);
}

#[tokio::test]
async fn revoking_a_user_closes_every_connection_of_the_user_and_spares_later_tokens() {
    let gateway = TestGateway::start(&["--echo-hub", HUB]);
    let old = token(HUB, "bob", Duration::from_secs(600), "b1");
    let mut first = connect(&gateway, &old).await;
    let mut second = connect(&gateway, &token(HUB, "bob", Duration::from_secs(600), "b2")).await;
    let mut other = connect(&gateway, &token(HUB, "ann", Duration::from_secs(600), "a1")).await;

    // Tokens issued before the revocation time are revoked; `iat` has whole
    // seconds, so the revocation names the next second.
    let before = unix_now() + 1;
    let (status, body) = rest(
        &gateway,
        &format!("/api/hubs/{HUB}/users/bob/tokens/:revoke?issuedBefore={before}"),
    )
    .await;
    assert_eq!((status, &body), (200, &serde_json::json!({"closed": 2})));
    frames_until_closed(&mut first).await;
    frames_until_closed(&mut second).await;
    assert!(still_open(&mut other).await);
    assert_eq!(handshake_status(&gateway, &old).await, 401);

    // A token issued at the revocation time (a new login) is valid.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = token(HUB, "bob", Duration::from_secs(600), "b3");
    assert_eq!(handshake_status(&gateway, &fresh).await, 200);
}

#[tokio::test]
async fn a_revoked_token_cannot_be_refreshed_into_a_live_connection() {
    let gateway = expiring_gateway("25000");
    let mut socket = connect(&gateway, &token(HUB, "ann", Duration::from_secs(600), "a1")).await;
    let (status, _) = rest(&gateway, &format!("/api/hubs/{HUB}/tokens/a9/:revoke")).await;
    assert_eq!(status, 200);
    let answer = refresh(
        &mut socket,
        1,
        &token(HUB, "ann", Duration::from_secs(600), "a9"),
    )
    .await;
    assert_eq!(answer["code"], 401, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("revoked"),
        "{answer}"
    );
    assert!(still_open(&mut socket).await);
}

#[tokio::test]
async fn revocation_calls_need_an_operator_token_and_well_formed_times() {
    let gateway = TestGateway::start(&["--echo-hub", HUB]);
    let url = format!("{}/api/hubs/{HUB}/users/bob/tokens/:revoke", gateway.http());
    let client_token = gateway.token(HUB);
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(client_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "a client token is no operator token"
    );
    let (status, body) = rest(
        &gateway,
        &format!("/api/hubs/{HUB}/users/bob/tokens/:revoke?issuedBefore=yesterday"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn expiry_is_set_per_hub_in_the_config_file() {
    let dir = std::env::temp_dir().join(format!("portcullis-expiry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("portcullis.toml");
    std::fs::write(
        &file,
        format!(
            "access_keys = [\"{KEY}\"]\necho_hubs = [\"{HUB}\", \"lenient\"]\n\n[hubs.{HUB}]\ntoken_expiry = true\ntoken_expiry_grace_ms = 300\n"
        ),
    )
    .unwrap();
    let gateway = TestGateway::start(&["--config", file.to_str().unwrap()]);
    let mut strict = connect(&gateway, &token(HUB, "ann", Duration::from_secs(1), "a1")).await;
    let url = format!(
        "{}/clients/socketio/hubs/lenient/?EIO=4&transport=websocket&access_token={}",
        gateway.ws(),
        token("lenient", "ann", Duration::from_secs(1), "a2")
    );
    let (mut lenient, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next_text(&mut lenient).await.unwrap();
    frames_until_closed(&mut strict).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        still_open(&mut lenient).await,
        "the other hub checks at the handshake only"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Over polling, the DISCONNECT goes in one response and the close in the
/// next, as engine.io does: socket.io-client reads a DISCONNECT a tick after
/// its response, so one read together with the close would come too late
/// ("transport close", and a reconnection, instead of "io server disconnect").
#[tokio::test]
async fn a_revoked_polling_session_gets_its_disconnect_before_the_close() {
    let gateway = TestGateway::start(&["--echo-hub", HUB]);
    let token = token(HUB, "ann", Duration::from_secs(600), "p1");
    let url = |sid: &str| polling_url(&gateway, &token, sid);
    let sid = open_polling(&gateway, &token).await;
    let client = reqwest::Client::new();
    let post = client.post(url(&sid)).body("40").send().await.unwrap();
    assert_eq!(post.status(), 200);
    let echo = reqwest::get(url(&sid)).await.unwrap().text().await.unwrap();
    assert_eq!(echo, "40");

    let pending = tokio::spawn(reqwest::get(url(&sid)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = rest(&gateway, &format!("/api/hubs/{HUB}/tokens/p1/:revoke")).await;
    assert_eq!(status, 200);
    let first = pending.await.unwrap().unwrap().text().await.unwrap();
    assert_eq!(first, "41", "the DISCONNECT alone");
    let second = reqwest::get(url(&sid)).await.unwrap().text().await.unwrap();
    assert_eq!(second, "1", "then the close");
    let third = reqwest::get(url(&sid)).await.unwrap();
    assert_eq!(third.status(), 400, "then the session is unknown");
}

/// A full revocation list answers 507 and says what to do; the holders of
/// the token are closed all the same.
#[tokio::test]
async fn a_full_revocation_list_answers_507_and_still_closes_the_holders() {
    let gateway = TestGateway::start(&["--echo-hub", HUB, "--max-revocations", "1"]);
    let (status, _) = rest(&gateway, &format!("/api/hubs/{HUB}/tokens/first/:revoke")).await;
    assert_eq!(status, 200);
    let mut holder = connect(
        &gateway,
        &token(HUB, "ann", Duration::from_secs(600), "second"),
    )
    .await;
    let (status, body) = rest(&gateway, &format!("/api/hubs/{HUB}/tokens/second/:revoke")).await;
    assert_eq!(status, 507, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--max-revocations"),
        "{body}"
    );
    frames_until_closed(&mut holder).await;
}

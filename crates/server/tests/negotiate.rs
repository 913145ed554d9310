//! `/negotiate` for axum over real HTTP, and the real socket.io-client
//! connecting with its answer to an embedded gateway. The Node part needs
//! `npm ci` in `tests/compat` (done by `scripts/test`).

mod negotiate_support;

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use negotiate_support::{Answer, HUB, KEY, TestGateway, payload, serve_app, socket_io_client};
use portcullis_auth::{ClientTokenVerifier, VerifierConfig};
use portcullis_server::extract::AckSender;
use portcullis_server::negotiate::{ExpirationMinutes, Negotiate, NegotiateOptions, Refusal};
use portcullis_server::{SocketIo, SocketRef};
use serde::Deserialize;
use serde_json::{Value, json};

/// An application whose `whoami` acknowledges the socket's verified identity.
fn app_io() -> SocketIo {
    let io = SocketIo::new();
    io.ns("/", |socket: SocketRef| async move {
        socket.on("whoami", |socket: SocketRef, ack: AckSender| async move {
            ack.send(&negotiate_support::whoami(&socket)).ok();
        });
    });
    io
}

#[derive(Deserialize)]
struct Who {
    user: String,
}

/// `/negotiate?user=<id>[&expirationMinutes=<n>]`; `user=banned` is refused
/// by the closure, a missing `user` by the `Query` extractor.
fn negotiate_routes(negotiate: Negotiate) -> Router {
    let handler = negotiate.handler(
        |Query(who): Query<Who>, ExpirationMinutes(ttl): ExpirationMinutes| async move {
            if who.user == "banned" {
                return Err(Refusal::forbidden("banned users cannot chat"));
            }
            Ok(NegotiateOptions {
                expiration: ttl,
                ..NegotiateOptions::user(who.user)
                    .role("webpubsub.joinLeaveGroup")
                    .group("lobby")
                    .claim("team", "blue")
            })
        },
    );
    let anonymous = negotiate.handler(|| async { Ok(NegotiateOptions::default()) });
    Router::new()
        .route("/negotiate", get(handler))
        .route("/negotiate/anonymous", get(anonymous))
}

#[tokio::test]
async fn answers_exactly_what_the_sdk_answers() {
    let io = app_io();
    let gw = TestGateway::start(&io, Duration::from_secs(30)).await;
    let app = serve_app(negotiate_routes(
        Negotiate::new(gw.connection_string(), HUB).unwrap(),
    ))
    .await;

    let response = reqwest::get(format!("{app}/negotiate?user=bob"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "JSON like the SDK's writeResponse"
    );
    let answer: HashMap<String, String> = response.json().await.unwrap();
    let mut keys: Vec<_> = answer.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["endpoint", "path", "token"],
        "exactly the SDK's fields"
    );
    assert_eq!(
        answer["endpoint"],
        gw.origin(),
        "the origin, no trailing slash"
    );
    assert_eq!(answer["path"], format!("/clients/socketio/hubs/{HUB}"));

    // The token is what the SDK's negotiate mints: header, claims, audience.
    let token = &answer["token"];
    assert!(token.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
    let claims = payload(token);
    assert_eq!(
        claims["aud"],
        format!("{}/clients/socketio/hubs/{HUB}", gw.origin())
    );
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["userId"], "bob");
    assert_eq!(claims["role"], json!(["webpubsub.joinLeaveGroup"]));
    assert_eq!(claims["webpubsub.group"], json!(["lobby"]));
    assert_eq!(claims["team"], "blue");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600,
        "one hour by default, as the SDK"
    );
    assert!(claims.get("nbf").is_none(), "the SDK writes no nbf");
    // Signed with the access key (verified as the gateway verifies it).
    let verifier = ClientTokenVerifier::new(VerifierConfig::new(
        portcullis_auth::AccessKeys::new(vec![KEY.to_owned()]).unwrap(),
    ));
    assert_eq!(verifier.verify(token, HUB).unwrap().user_id(), Some("bob"));

    // No options: an anonymous token (iat, exp, aud), like the SDK's default,
    // plus the token's own id, by which it can be revoked.
    let anonymous: Value = reqwest::get(format!("{app}/negotiate/anonymous"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut names: Vec<String> = payload(anonymous["token"].as_str().unwrap())
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["aud", "exp", "iat", "jti"]);
}

#[tokio::test]
async fn expiration_minutes_and_refusals() {
    let io = app_io();
    let gw = TestGateway::start(&io, Duration::from_secs(30)).await;
    let negotiate = Negotiate::new(gw.connection_string(), HUB).unwrap();
    let app = serve_app(negotiate_routes(negotiate.clone())).await;
    let lifetime = |answer: &Value| {
        let claims = payload(answer["token"].as_str().unwrap());
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap()
    };
    let get = |path: String| {
        let url = format!("{app}{path}");
        async move {
            let response = reqwest::get(url).await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("a JSON body");
            (status, body)
        }
    };

    // ?expirationMinutes= as the SDK's usePassport reads it.
    let (status, body) = get("/negotiate?user=bob&expirationMinutes=5".into()).await;
    assert_eq!(status, 200);
    assert_eq!(lifetime(&body), 300);
    let (status, body) = get("/negotiate?user=bob&expirationMinutes=0.5".into()).await;
    assert_eq!(status, 200);
    assert_eq!(lifetime(&body), 30);
    for bad in ["abc", "-1", "NaN", "inf"] {
        let (status, body) = get(format!("/negotiate?user=bob&expirationMinutes={bad}")).await;
        assert_eq!(status, 400, "expirationMinutes={bad}");
        assert_eq!(
            body,
            json!({"message": "expirationMinutes must be a non-negative number of minutes"})
        );
    }

    // The closure's refusal: its status and {"message"}.
    let (status, body) = get("/negotiate?user=banned".into()).await;
    assert_eq!(status, 403);
    assert_eq!(body, json!({"message": "banned users cannot chat"}));

    // An extractor's rejection: its status, its text as the message.
    let (status, body) = get("/negotiate".into()).await;
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("missing field `user`"), "{message}");
    assert_eq!(body.as_object().unwrap().len(), 1, "only the message");

    // Without a configured cap, lifetimes are capped at one hour.
    let (status, body) = get("/negotiate?user=bob&expirationMinutes=600".into()).await;
    assert_eq!(status, 200);
    assert_eq!(lifetime(&body), 3600, "clamped to DEFAULT_MAX_EXPIRATION");

    // A cap on lifetimes applies to asked-for lifetimes too.
    let capped = serve_app(negotiate_routes(
        negotiate.max_expiration(Duration::from_secs(120)),
    ))
    .await;
    let body: Value = reqwest::get(format!("{capped}/negotiate?user=bob&expirationMinutes=600"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lifetime(&body), 120);
}

#[tokio::test]
async fn socket_io_client_connects_with_the_negotiated_answer() {
    let io = app_io();
    let gw = TestGateway::start(&io, Duration::from_secs(30)).await;
    let app = serve_app(negotiate_routes(
        Negotiate::new(gw.connection_string(), HUB).unwrap(),
    ))
    .await;

    // The client fetches /negotiate from the app and connects to the gateway
    // with `io(endpoint, { path, query: { access_token: token } })`.
    let result = socket_io_client(Answer::Fetch(&format!("{app}/negotiate?user=carol"))).await;
    assert_eq!(result["connected"], true, "{result}");
    let whoami = &result["whoami"];
    assert_eq!(
        whoami["user"], "carol",
        "the handler sees the verified user"
    );
    assert_eq!(whoami["claims"]["userId"], json!(["carol"]));
    assert_eq!(whoami["claims"]["team"], json!(["blue"]));
    assert_eq!(
        whoami["claims"]["role"],
        json!(["webpubsub.joinLeaveGroup"])
    );
    assert_eq!(
        whoami["claims"]["aud"],
        json!([format!("{}/clients/socketio/hubs/{HUB}", gw.origin())])
    );

    // The handshake's Debug shows the access_token parameter, not the token.
    let answer: Value = reqwest::get(format!("{app}/negotiate?user=dave"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let result = socket_io_client(Answer::Json(&answer)).await;
    let handshake = result["whoami"]["handshake"].as_str().unwrap();
    assert!(handshake.contains("access_token"), "{handshake}");
    assert!(
        !handshake.contains(answer["token"].as_str().unwrap()),
        "{handshake}"
    );

    // A token for another gateway's key is refused at the handshake.
    let forged = Negotiate::with_key(gw.origin().parse().unwrap(), "not-the-key", HUB)
        .unwrap()
        .answer(&NegotiateOptions::user("mallory"));
    let forged = serde_json::to_value(forged).unwrap();
    let result = socket_io_client(Answer::Json(&forged)).await;
    assert_eq!(result["connected"], false, "{result}");
}

//! The REST API over plain HTTP (`/api/hubs/...`): authentication and the
//! operations on connections, users and groups, against the real binary.

mod common;

use common::{KEY, TestGateway};
use portcullis_auth::{ClientTokenOptions, mint_client_token};

const HUB: &str = "ops";

/// An operator token: audience under /api/, signed with the access key.
fn operator_token(gateway: &TestGateway) -> String {
    mint_client_token(
        KEY,
        &format!("{}/api/hubs/{HUB}", gateway.http()),
        &ClientTokenOptions::default(),
    )
}

async fn open_session(gateway: &TestGateway) -> String {
    let body = reqwest::get(gateway.client_url(
        HUB,
        &format!(
            "EIO=4&transport=polling&access_token={}",
            gateway.token(HUB)
        ),
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let open: serde_json::Value = serde_json::from_str(&body[1..]).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

async fn poll(gateway: &TestGateway, sid: &str) -> (u16, String) {
    let token = gateway.token(HUB);
    let query = format!("EIO=4&transport=polling&sid={sid}&access_token={token}");
    let response = reqwest::get(gateway.client_url(HUB, &query)).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The status of a body-less call.
async fn status_of(gateway: &TestGateway, method: reqwest::Method, path: &str) -> u16 {
    call(gateway, method, path, "").await.0
}

async fn call(
    gateway: &TestGateway,
    method: reqwest::Method,
    path: &str,
    body: &str,
) -> (u16, String) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", gateway.http()))
        .bearer_auth(operator_token(gateway))
        .header("content-type", "text/plain")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn requires_an_operator_token() {
    let gateway = TestGateway::start(&["--echo-hub", HUB]);
    let url = format!(
        "{}/api/hubs/{HUB}/:send?api-version=2024-01-01",
        gateway.http()
    );
    let response = reqwest::Client::new()
        .post(&url)
        .body("42[\"x\"]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("Bearer"));
    // A client token (audience /clients/...) must not work on the REST API.
    let client_token = gateway.token(HUB);
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(client_token)
        .body("42[\"x\"]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("audience"));
    let forged = mint_client_token(
        "not-the-key",
        &format!("{}/api/hubs/{HUB}", gateway.http()),
        &ClientTokenOptions::default(),
    );
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(forged)
        .body("42[\"x\"]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// The status of `method path` with a Bearer token whose audience is `aud`.
async fn status_with_audience(
    gateway: &TestGateway,
    method: reqwest::Method,
    path: &str,
    aud: &str,
) -> u16 {
    let token = mint_client_token(KEY, aud, &ClientTokenOptions::default());
    reqwest::Client::new()
        .request(method, format!("{}{path}", gateway.http()))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body("42[\"x\"]")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn api_tokens_act_on_their_own_hub_only() {
    let gateway = TestGateway::start(&["--echo-hub", HUB, "--echo-hub", "other"]);
    let base = gateway.http();
    let sid = open_session(&gateway).await;
    let send = format!("/api/hubs/{HUB}/:send?api-version=2024-01-01");
    let close_all = format!("/api/hubs/{HUB}/:closeConnections?api-version=2024-01-01");
    // A token for hub `other` (or one merely under /api/) acts on nothing here.
    for aud in [
        format!("{base}/api/hubs/other"),
        format!("{base}/api/hubs/other/:send"),
        format!("{base}/api/hubs/{HUB}x/:send"),
        format!("{base}/api/"),
        format!("{base}/x/api/hubs/{HUB}"),
    ] {
        let post = reqwest::Method::POST;
        assert_eq!(
            status_with_audience(&gateway, post.clone(), &send, &aud).await,
            401,
            "{aud}"
        );
        assert_eq!(
            status_with_audience(&gateway, post, &close_all, &aud).await,
            401,
            "{aud}"
        );
    }
    assert_eq!(gateway.connections().await, 1, "nothing was closed");
    // The hub's own audience works, as does the full request URL the
    // official WebPubSubServiceClient signs.
    for aud in [format!("{base}/api/hubs/{HUB}"), format!("{base}{send}")] {
        assert_eq!(
            status_with_audience(&gateway, reqwest::Method::POST, &send, &aud).await,
            202,
            "{aud}"
        );
    }
    let (status, body) = poll(&gateway, &sid).await;
    assert_eq!(status, 200);
    assert!(body.contains("42[\"x\"]"), "{body}");
}

/// Behind a public endpoint whose path holds `/api/`, a client token (whose
/// audience then contains `/api/`) is still no API token.
#[tokio::test]
async fn client_tokens_never_pass_for_api_tokens_under_a_public_endpoint() {
    let public = "https://gw.example.com/api/";
    let gateway = TestGateway::start(&["--echo-hub", HUB, "--public-endpoint", public]);
    let send = format!("/api/hubs/{HUB}/:send");
    let post = reqwest::Method::POST;
    let client_aud = format!("{public}clients/socketio/hubs/{HUB}");
    assert_eq!(
        status_with_audience(&gateway, post.clone(), &send, &client_aud).await,
        401
    );
    let other_host = format!("https://evil.example.com/api/api/hubs/{HUB}");
    assert_eq!(
        status_with_audience(&gateway, post.clone(), &send, &other_host).await,
        401
    );
    let api_aud = format!("{public}api/hubs/{HUB}");
    assert_eq!(
        status_with_audience(&gateway, post, &send, &api_aud).await,
        202
    );
}

#[tokio::test]
async fn sends_to_connections_users_groups_and_all() {
    let gateway = TestGateway::start(&["--echo-hub", HUB]);
    let sid = open_session(&gateway).await;
    let post = reqwest::Method::POST;

    let (status, _) = call(
        &gateway,
        post.clone(),
        &format!("/api/hubs/{HUB}/connections/{sid}/:send?api-version=2024-01-01"),
        "42[\"direct\",1]",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        poll(&gateway, &sid).await,
        (200, "42[\"direct\",1]".to_owned())
    );

    // The test token's user is "tester".
    let (status, _) = call(
        &gateway,
        post.clone(),
        &format!("/api/hubs/{HUB}/users/tester/:send"),
        "42[\"user\"]",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(poll(&gateway, &sid).await.1, "42[\"user\"]");

    let (status, _) = call(
        &gateway,
        reqwest::Method::PUT,
        &format!("/api/hubs/{HUB}/groups/blue/connections/{sid}"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        status_of(
            &gateway,
            reqwest::Method::HEAD,
            &format!("/api/hubs/{HUB}/groups/blue")
        )
        .await,
        200
    );
    assert_eq!(
        status_of(
            &gateway,
            reqwest::Method::HEAD,
            &format!("/api/hubs/{HUB}/groups/red")
        )
        .await,
        404
    );
    let (status, _) = call(
        &gateway,
        post.clone(),
        &format!("/api/hubs/{HUB}/groups/blue/:send"),
        "42[\"group\"]\u{1e}bAQID",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(poll(&gateway, &sid).await.1, "42[\"group\"]\u{1e}bAQID");

    let filter = "%27blue%27+in+groups+and+not+%28userId+eq+%27someone%27%29";
    let (status, _) = call(
        &gateway,
        post.clone(),
        &format!("/api/hubs/{HUB}/:send?filter={filter}"),
        "42[\"filtered\"]",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(poll(&gateway, &sid).await.1, "42[\"filtered\"]");

    // A filter that matches nobody sends nothing: the next poll sees the next message.
    let (status, _) = call(
        &gateway,
        post.clone(),
        &format!("/api/hubs/{HUB}/:send?filter=userId+eq+%27nobody%27"),
        "42[\"nobody\"]",
    )
    .await;
    assert_eq!(status, 202);
    call(
        &gateway,
        post.clone(),
        &format!("/api/hubs/{HUB}/:send"),
        "42[\"everyone\"]",
    )
    .await;
    assert_eq!(poll(&gateway, &sid).await.1, "42[\"everyone\"]");
}

#[tokio::test]
async fn manages_and_closes_connections() {
    let gateway = TestGateway::start(&["--echo-hub", HUB]);
    let sid = open_session(&gateway).await;
    assert_eq!(
        status_of(
            &gateway,
            reqwest::Method::HEAD,
            &format!("/api/hubs/{HUB}/connections/{sid}")
        )
        .await,
        200
    );
    assert_eq!(
        status_of(
            &gateway,
            reqwest::Method::HEAD,
            &format!("/api/hubs/{HUB}/users/tester")
        )
        .await,
        200
    );
    assert_eq!(
        status_of(
            &gateway,
            reqwest::Method::HEAD,
            &format!("/api/hubs/{HUB}/users/nobody")
        )
        .await,
        404
    );

    let groups = format!("{{\"groups\":[\"a\",\"b\"],\"filter\":\"connectionId eq '{sid}'\"}}");
    assert_eq!(
        call(
            &gateway,
            reqwest::Method::POST,
            &format!("/api/hubs/{HUB}/:addToGroups"),
            &groups
        )
        .await
        .0,
        200
    );
    assert_eq!(
        status_of(
            &gateway,
            reqwest::Method::HEAD,
            &format!("/api/hubs/{HUB}/groups/b")
        )
        .await,
        200
    );
    assert_eq!(
        status_of(
            &gateway,
            reqwest::Method::DELETE,
            &format!("/api/hubs/{HUB}/groups/b/connections/{sid}")
        )
        .await,
        200
    );
    assert_eq!(
        status_of(
            &gateway,
            reqwest::Method::HEAD,
            &format!("/api/hubs/{HUB}/groups/b")
        )
        .await,
        404
    );
    assert_eq!(
        status_of(
            &gateway,
            reqwest::Method::HEAD,
            &format!("/api/hubs/{HUB}/groups/a")
        )
        .await,
        200
    );

    let (status, _) = call(
        &gateway,
        reqwest::Method::DELETE,
        &format!("/api/hubs/{HUB}/connections/{sid}?reason=maintenance"),
        "",
    )
    .await;
    assert_eq!(status, 204);
    gateway.wait_connections(0).await;
    assert_eq!(
        status_of(
            &gateway,
            reqwest::Method::HEAD,
            &format!("/api/hubs/{HUB}/connections/{sid}")
        )
        .await,
        404
    );
    assert_eq!(
        status_of(
            &gateway,
            reqwest::Method::HEAD,
            &format!("/api/hubs/{HUB}/groups/a")
        )
        .await,
        404,
        "a closed connection leaves its groups"
    );
    assert_eq!(poll(&gateway, &sid).await.0, 400);
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let gateway = TestGateway::start(&["--echo-hub", HUB]);
    let (status, body) = call(
        &gateway,
        reqwest::Method::POST,
        &format!("/api/hubs/{HUB}/:send?filter=%27a%27+in"),
        "42[1]",
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body.contains("invalid filter") && body.contains("position"),
        "{body}"
    );
    let (status, body) = call(
        &gateway,
        reqwest::Method::POST,
        &format!("/api/hubs/{HUB}/:send"),
        "xyz",
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("Engine.IO payload"), "{body}");
    let (status, body) = call(
        &gateway,
        reqwest::Method::POST,
        &format!("/api/hubs/{HUB}/:nonsense"),
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = call(
        &gateway,
        reqwest::Method::POST,
        &format!("/api/hubs/{HUB}/:addToGroups"),
        "{not json",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // The gateway is still fine.
    let sid = open_session(&gateway).await;
    assert!(!sid.is_empty());
}

/// A token minted by `portcullis token` with `args`.
fn token_from_cli(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["token", "--hub", HUB, "--access-key", KEY])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_token_subcommand_mints_operator_tokens() {
    let gateway = TestGateway::start(&["--echo-hub", HUB]);
    let head = |token: String| {
        let url = format!("{}/api/hubs/{HUB}/groups/none", gateway.http());
        async move {
            reqwest::Client::new()
                .head(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        head(token_from_cli(&["--api"])).await,
        404,
        "authenticated: the group does not exist"
    );
    // Without --api the token is a client token, refused by the REST API.
    assert_eq!(head(token_from_cli(&[])).await, 401);
}

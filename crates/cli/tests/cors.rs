//! CORS on the client endpoint: every origin is allowed without credentials
//! by default; configured origins (and only they) get credentials.

mod common;

use common::TestGateway;

const HUB: &str = "chat";

/// The CORS headers of a polling handshake from `origin`.
async fn cors_of(gateway: &TestGateway, origin: &str) -> (Option<String>, Option<String>) {
    let query = format!(
        "EIO=4&transport=polling&access_token={}",
        gateway.token(HUB)
    );
    let response = reqwest::Client::new()
        .get(gateway.client_url(HUB, &query))
        .header("Origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    (
        header("access-control-allow-origin"),
        header("access-control-allow-credentials"),
    )
}

#[tokio::test]
async fn any_origin_is_allowed_without_credentials_by_default() {
    let gateway = TestGateway::start(&["--echo-hub", HUB]);
    let (origin, credentials) = cors_of(&gateway, "http://evil.example").await;
    assert_eq!(origin.as_deref(), Some("http://evil.example"));
    assert_eq!(
        credentials, None,
        "no credentials for an unconfigured origin"
    );
}

#[tokio::test]
async fn configured_origins_get_credentials_and_others_nothing() {
    let gateway =
        TestGateway::start(&["--echo-hub", HUB, "--allowed-origin", "http://app.example"]);
    let (origin, credentials) = cors_of(&gateway, "http://app.example").await;
    assert_eq!(origin.as_deref(), Some("http://app.example"));
    assert_eq!(credentials.as_deref(), Some("true"));
    let (origin, credentials) = cors_of(&gateway, "http://evil.example").await;
    assert_eq!((origin, credentials), (None, None));
}

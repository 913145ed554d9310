//! Logs of the real binary: `--log-format json` writes one JSON object per
//! line with the event's fields (`hub`, `reason`, `connection`) at the top
//! level, and no log line, at any level, holds an access key or a token
//! (a client's, a refused one, an application server's, an operator's), nor
//! at info level a connection id.

mod common;

use std::time::Duration;

use common::{KEY, TestGateway, token_for};
use futures_util::StreamExt;
use portcullis_auth::{ClientTokenOptions, mint_client_token};
use tokio_tungstenite::tungstenite::Message;

const HUB: &str = "logged";
/// A key only the gateway knows, long enough not to be warned about.
const SECRET_KEY: &str = "drain-logs-secret-access-key-0123456789abcdef";

/// The secrets a run used, and the session ids it opened.
struct Run {
    log: String,
    secrets: Vec<String>,
    sids: Vec<String>,
}

/// Runs the gateway at `level` through a good handshake (polling and
/// WebSocket), a refused one, a tunnel, a refused tunnel and a REST call,
/// then SIGTERM; returns its log.
async fn run(level: &str) -> Run {
    let dir = std::env::temp_dir().join(format!("portcullis-logs-{}-{level}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("stderr.log");
    let key_flag = format!("--access-key={SECRET_KEY}");
    let mut gateway = TestGateway::start_logging_to(
        &[
            &key_flag,
            "--echo-hub",
            HUB,
            "--log-format",
            "json",
            "--drain-period-ms",
            "100",
        ],
        &[("PORTCULLIS_LOG", level)],
        &log,
    );
    let audience = format!("http://localhost/clients/socketio/hubs/{HUB}");
    let options = ClientTokenOptions {
        user_id: Some("alice".into()),
        ..Default::default()
    };
    let good = mint_client_token(SECRET_KEY, &audience, &options);
    // Signed with another key: refused, and its text must not be logged
    // either.
    let refused = token_for(HUB, &options);
    let tunnel_token = mint_client_token(
        SECRET_KEY,
        "ws://localhost/server/tunnel?hub=apps",
        &ClientTokenOptions {
            user_id: Some("server-1".into()),
            ..Default::default()
        },
    );
    let bad_tunnel_token = mint_client_token(
        KEY,
        "ws://localhost/server/tunnel?hub=apps",
        &ClientTokenOptions::default(),
    );
    let api_token = mint_client_token(
        SECRET_KEY,
        &format!("{}/api/hubs/{HUB}", gateway.http()),
        &ClientTokenOptions::default(),
    );
    let http = reqwest::Client::new();
    let mut sids = Vec::new();

    let open = http
        .get(gateway.client_url(HUB, &format!("EIO=4&transport=polling&access_token={good}")))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    let open = open.text().await.unwrap();
    sids.push(sid_of(&open));
    let denied = http
        .get(gateway.client_url(
            HUB,
            &format!("EIO=4&transport=polling&access_token={refused}"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let bearer = http
        .get(gateway.client_url(HUB, "EIO=4&transport=polling"))
        .bearer_auth(&refused)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 401);

    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&access_token={good}",
        gateway.ws()
    ))
    .await
    .unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(open))) => sids.push(sid_of(&open)),
        other => panic!("expected the open packet, got {other:?}"),
    }

    let (mut tunnel, _) = tokio_tungstenite::connect_async(format!(
        "{}/server/tunnel?hub=apps&access_token={tunnel_token}",
        gateway.ws()
    ))
    .await
    .unwrap();
    let _connected = tunnel.next().await;
    let refused_tunnel = tokio_tungstenite::connect_async(format!(
        "{}/server/tunnel?hub=apps&access_token={bad_tunnel_token}",
        gateway.ws()
    ))
    .await;
    assert!(refused_tunnel.is_err());

    let rest = http
        .post(format!(
            "{}/api/hubs/{HUB}/:send?api-version=2023-07-01",
            gateway.http()
        ))
        .bearer_auth(&api_token)
        .body("42[\"x\"]")
        .send()
        .await
        .unwrap();
    assert!(rest.status().is_success(), "{}", rest.status());

    gateway.signal(libc::SIGTERM);
    let status = gateway
        .wait_exit(Duration::from_secs(15))
        .expect("the gateway exits");
    assert!(status.success());
    drop(ws);
    drop(tunnel);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        log: text,
        secrets: vec![
            SECRET_KEY.to_owned(),
            KEY.to_owned(),
            good,
            refused,
            tunnel_token,
            bad_tunnel_token,
            api_token,
        ],
        sids,
    }
}

fn sid_of(open: &str) -> String {
    open.split("\"sid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no sid in {open}"))
        .to_owned()
}

/// Every line is a JSON object with a timestamp, a level and a message.
fn parse(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            for field in ["timestamp", "level", "message"] {
                assert!(value.get(field).is_some(), "no {field}: {line}");
            }
            value
        })
        .collect()
}

fn assert_no_secret(run: &Run) {
    for secret in &run.secrets {
        // The signature alone (the part of a JWT only the key can make).
        let signature = secret.rsplit('.').next().unwrap();
        assert!(
            !run.log.contains(secret.as_str()) && !run.log.contains(signature),
            "a secret is in the log:\n{}",
            run.log
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_at_debug_carry_hub_reason_and_connection_but_no_secret() {
    let run = run("debug").await;
    let lines = parse(&run.log);
    assert_no_secret(&run);
    let refused = lines
        .iter()
        .find(|l| l["message"] == "client request refused" && l["status"] == 401)
        .unwrap_or_else(|| panic!("no refusal logged:\n{}", run.log));
    assert_eq!(refused["hub"], HUB);
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("signature does not match"),
        "{refused}"
    );
    let opened: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "connection opened")
        .collect();
    assert_eq!(opened.len(), 2, "{}", run.log);
    for (line, sid) in opened.iter().zip(&run.sids) {
        assert_eq!(
            (line["hub"].as_str(), line["connection"].as_str()),
            (Some(HUB), Some(sid.as_str()))
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "connection ended" && l["reason"] == "gateway shutting down"),
        "{}",
        run.log
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "application server attached" && l["hub"] == "apps"),
        "{}",
        run.log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_logs_hold_no_connection_id_and_no_secret() {
    let run = run("info").await;
    let lines = parse(&run.log);
    assert_no_secret(&run);
    for sid in &run.sids {
        assert!(
            !run.log.contains(sid.as_str()),
            "connection id at info:\n{}",
            run.log
        );
    }
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .unwrap()
            .starts_with("draining: not ready")),
        "{}",
        run.log
    );
}

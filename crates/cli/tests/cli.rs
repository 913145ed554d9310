//! The command line: configuration from flags, environment and TOML file, the
//! printed connection string, and the `token` subcommand.

mod common;

use std::process::Command;

use common::{KEY, TestGateway};
use portcullis_auth::{AccessKeys, ClientTokenVerifier, VerifierConfig};

fn portcullis(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_remove("PORTCULLIS_ACCESS_KEY")
        .output()
        .expect("run portcullis")
}

async fn open_packet(gateway: &TestGateway, hub: &str, token: Option<&str>) -> (u16, String) {
    let query = match token {
        Some(t) => format!("EIO=4&transport=polling&access_token={t}"),
        None => "EIO=4&transport=polling".to_owned(),
    };
    let response = reqwest::get(gateway.client_url(hub, &query)).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[test]
fn token_subcommand_mints_verifiable_tokens() {
    let output = portcullis(&[
        "token",
        "--hub",
        "chat",
        "--user",
        "alice",
        "--role",
        "admin",
        "--group",
        "g1",
        "--ttl",
        "10m",
        "--access-key",
        KEY,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let verifier = ClientTokenVerifier::new(VerifierConfig::new(
        AccessKeys::new(vec![KEY.into()]).unwrap(),
    ));
    let claims = verifier
        .verify(&token, "chat")
        .expect("a valid token for hub chat");
    assert_eq!(claims.user_id(), Some("alice"));
    assert_eq!(claims.roles(), ["admin"]);
    assert_eq!(claims.groups(), ["g1"]);
    let exp: u64 = claims.get("exp")[0].parse().unwrap();
    let iat: u64 = claims.get("iat")[0].parse().unwrap();
    assert_eq!(exp - iat, 600);
    assert!(verifier.verify(&token, "other").is_err());
}

#[test]
fn token_subcommand_reads_a_connection_string() {
    let output = portcullis(&[
        "token",
        "--hub",
        "chat",
        "--connection-string",
        "Endpoint=http://localhost;Port=9000;AccessKey=cs-key;Version=1.0;",
    ]);
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let verifier = ClientTokenVerifier::new(VerifierConfig::new(
        AccessKeys::new(vec!["cs-key".into()]).unwrap(),
    ));
    verifier
        .verify(&token, "chat")
        .expect("signed with the connection string's key");
}

#[test]
fn token_subcommand_without_key_explains() {
    let output = portcullis(&["token", "--hub", "chat"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--access-key"));
}

/// The shipped example configuration loads as it is, with the access key
/// from the environment as the systemd unit gives it; `--check-config`
/// prints a summary without the key, and refuses an invalid file.
#[test]
fn the_deploy_example_passes_check_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/portcullis.toml");
    let key = "an-access-key-from-the-environment-file-0123456789";
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config", example, "--check-config"])
        .env("PORTCULLIS_ACCESS_KEY", key)
        .output()
        .expect("run portcullis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("configuration OK")
            && stdout.contains("1 access key(s)")
            && stdout.contains("log format Json"),
        "{stdout}"
    );
    assert!(!stdout.contains(key) && !stderr.contains(key));

    let dir = std::env::temp_dir().join(format!("portcullis-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "drain_period_ms = 40000\ndrain_timeout_ms = 30000\n").unwrap();
    let output = portcullis(&["serve", "--config", bad.to_str().unwrap(), "--check-config"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--drain-timeout-ms"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_config_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("portcullis-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "ping_interval_ms = \"soon\"\n").unwrap();
    let output = portcullis(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid config file"), "{stderr}");

    let output = portcullis(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        "/nonexistent/portcullis.toml",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read config file"));
}

#[tokio::test]
async fn generates_a_key_when_none_is_given() {
    let gateway = TestGateway::start(&["--config", "/dev/null"]);
    let key = gateway
        .connection_string
        .split(';')
        .find_map(|part| part.strip_prefix("AccessKey="))
        .expect("AccessKey in the connection string");
    assert!(key.len() >= 32, "a generated key is long: {key}");
    assert_ne!(key, KEY);
    assert!(gateway.connection_string.ends_with(";Version=1.0;"));
}

#[tokio::test]
async fn settings_come_from_the_environment() {
    let gateway = TestGateway::start_with_env(
        &[],
        &[
            ("PORTCULLIS_ECHO_HUBS", "envhub"),
            ("PORTCULLIS_PING_INTERVAL_MS", "1234"),
            ("PORTCULLIS_MAX_PAYLOAD", "4321"),
        ],
    );
    let (status, body) = open_packet(&gateway, "envhub", Some(&gateway.token("envhub"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"pingInterval\":1234"), "{body}");
    assert!(body.contains("\"maxPayload\":4321"), "{body}");
}

#[tokio::test]
async fn settings_come_from_a_toml_file_and_flags_win() {
    let dir = std::env::temp_dir().join(format!("portcullis-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("portcullis.toml");
    std::fs::write(
        &path,
        format!(
            "access_keys = [\"{KEY}\"]\necho_hubs = [\"open\", \"closed\"]\nping_interval_ms = 2222\nping_timeout_ms = 1111\n\n[hubs.open]\nallow_anonymous = true\n"
        ),
    )
    .unwrap();
    let gateway = TestGateway::start(&[
        "--config",
        path.to_str().unwrap(),
        "--ping-timeout-ms",
        "3333",
    ]);
    let (status, body) = open_packet(&gateway, "open", None).await;
    assert_eq!(status, 200, "hub 'open' allows anonymous clients: {body}");
    assert!(
        body.contains("\"pingInterval\":2222") && body.contains("\"pingTimeout\":3333"),
        "{body}"
    );
    let (status, _) = open_packet(&gateway, "closed", None).await;
    assert_eq!(status, 401, "other hubs still deny anonymous clients");
    let (status, _) = open_packet(&gateway, "closed", Some(&gateway.token("closed"))).await;
    assert_eq!(status, 200, "the file's access key is used");
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let gateway = TestGateway::start(&[]);
    let response = reqwest::get(format!(
        "{}/socket.io/?EIO=4&transport=polling",
        gateway.http()
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("/clients/socketio/hubs/"),
        "{body}"
    );
    let response = reqwest::Client::new()
        .post(format!("{}/health", gateway.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("POST is not allowed on /health"),
        "{body}"
    );
}

/// The stderr of `portcullis serve` with `keys` (`PORTCULLIS_LOG=warn`),
/// once it has printed its connection string.
fn startup_log(keys: &[&str]) -> String {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    for key in keys {
        args.extend(["--access-key", key]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(&args)
        .env("PORTCULLIS_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("connection string");
    child.kill().ok();
    child.wait().ok();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).ok();
    log
}

#[test]
fn short_keys_are_warned_about_without_printing_them() {
    let short = "hunter2-short-key";
    let long = "a-long-random-key-of-more-than-32-bytes-0123456789";
    let log = startup_log(&[long, short]);
    assert!(
        log.contains("access key #1 is shorter than 32 bytes"),
        "{log}"
    );
    assert!(!log.contains("#0"), "the long key is fine: {log}");
    assert!(!log.contains(short), "the key must not be logged: {log}");
    let log = startup_log(&[long]);
    assert!(
        !log.contains("shorter than"),
        "no warning for long keys: {log}"
    );
}

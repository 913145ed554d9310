//! The harness itself, tested: `loadgen bench --ci` runs every scenario at
//! tiny scale against Portcullis (embedded, the Rust app over the tunnel, the
//! gateway's built-in echo hub, and the Node SDK app over the tunnel when `bench/peers/node-sdk-app`
//! has its `node_modules`), and every scenario's JSON is well-formed with the
//! expected keys. Figures are never asserted.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The gateway binary of the same build profile as this test (built if
/// missing), or `PORTCULLIS_BIN`.
fn portcullis_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORTCULLIS_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/ci_run-… → target/<profile>/portcullis
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("portcullis");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "portcullis-cli", "--bin", "portcullis"])
            .current_dir(root());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build portcullis");
        assert!(status.success(), "building portcullis failed");
    }
    bin
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

const SCENARIOS: [(&str, &[&str]); 7] = [
    (
        "connect",
        &["connects_per_s", "connected", "errors", "p50_ms", "p99_ms"],
    ),
    (
        "connect-upgrade",
        &["connects_per_s", "connected", "errors", "p50_ms", "p99_ms"],
    ),
    (
        "refused",
        &[
            "attempts_per_s",
            "answer",
            "cpu_us_per_attempt",
            "rss_before_mib",
            "rss_peak_mib",
            "rss_after_mib",
        ],
    ),
    (
        "idle-50",
        &[
            "kib_per_conn",
            "connected",
            "rss_before_mib",
            "rss_after_mib",
        ],
    ),
    (
        "fanout-20",
        &["deliveries_per_s", "delivered", "lost", "p50_ms", "p99_ms"],
    ),
    (
        "echo",
        &["achieved_rate", "acked", "p50_ms", "p99_ms", "p999_ms"],
    ),
    (
        "polling",
        &["achieved_rate", "acked", "p50_ms", "p99_ms", "p999_ms"],
    ),
];

#[test]
fn ci_run_completes_every_scenario_against_portcullis() {
    let out = std::env::temp_dir().join(format!("portcullis-bench-ci-{}", std::process::id()));
    std::fs::remove_dir_all(&out).ok();
    let mut peers = vec![
        "portcullis-embedded",
        "portcullis-tunnel-rust",
        "portcullis-echo",
    ];
    let sdk = root().join("bench/peers/node-sdk-app/node_modules/@azure/web-pubsub-socket.io");
    if sdk.exists() && node_available() {
        peers.push("portcullis-tunnel");
    } else {
        eprintln!(
            "skipping portcullis-tunnel: no node_modules in bench/peers/node-sdk-app (npm ci there) or no node"
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "bench",
            "--ci",
            "--prefix",
            "ci",
            "--peers",
            &peers.join(","),
        ])
        .arg("--out")
        .arg(&out)
        .arg("--embedded-bin")
        .arg(env!("CARGO_BIN_EXE_bench-embedded-peer"))
        .arg("--portcullis-bin")
        .arg(portcullis_bin())
        .arg("--root")
        .arg(root())
        .output()
        .expect("run loadgen");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "loadgen bench --ci failed:\n{stderr}"
    );
    assert!(
        stdout.contains("| scenario | figure |"),
        "no Markdown table on stdout:\n{stdout}"
    );
    assert!(out.join("ci-summary.md").exists());
    assert!(
        out.join("ci-memory.png").exists(),
        "the memory chart was not drawn:\n{stderr}"
    );
    assert!(
        out.join("ci-echo-latency.png").exists(),
        "the echo chart was not drawn:\n{stderr}"
    );

    for (scenario, keys) in SCENARIOS {
        let path = out.join(format!("ci-{scenario}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", path.display()));
        let doc: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{scenario}: not JSON: {e}"));
        for key in [
            "date",
            "mode",
            "machine",
            "versions",
            "parameters",
            "baseline",
            "servers",
            "title",
        ] {
            assert!(doc.get(key).is_some(), "{scenario}: no {key}");
        }
        assert_eq!(doc["scenario"], scenario);
        assert_eq!(doc["mode"], "ci");
        for key in ["cpu_model", "cores", "memory_gib"] {
            assert!(
                doc["machine"].get(key).is_some(),
                "{scenario}: no machine.{key}"
            );
        }
        assert!(
            doc["versions"]["portcullis"].is_string(),
            "{scenario}: no portcullis version"
        );
        let servers = doc["servers"].as_array().expect("servers array");
        assert_eq!(
            servers.len(),
            peers.len(),
            "{scenario}: one entry per server"
        );
        for server in servers {
            let peer = server["peer"].as_str().expect("peer name");
            assert_eq!(
                server["status"], "ok",
                "{scenario} against {peer} did not complete: {}\n{stderr}",
                server["error"]
            );
            let figures = server["figures"].as_object().expect("figures object");
            for key in keys {
                assert!(
                    figures.contains_key(*key),
                    "{scenario} against {peer}: no figure {key}"
                );
            }
            assert!(
                server["ratio_to_portcullis"].is_object(),
                "{scenario}: no ratios for {peer}"
            );
        }
    }
    std::fs::remove_dir_all(&out).ok();
}

fn redis_answers() -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:6379".parse().expect("address"),
        std::time::Duration::from_secs(1),
    ) else {
        return false;
    };
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok();
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

/// `cluster-fanout` at `--ci` scale against three Portcullis nodes, when a
/// Redis answers at 127.0.0.1:6379 (skipped otherwise).
#[test]
fn ci_cluster_fanout_against_three_portcullis_nodes() {
    if !redis_answers() {
        eprintln!("skipping cluster-fanout: no Redis answers at 127.0.0.1:6379");
        return;
    }
    let out = std::env::temp_dir().join(format!(
        "portcullis-bench-ci-cluster-{}",
        std::process::id()
    ));
    std::fs::remove_dir_all(&out).ok();
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["bench", "--ci", "--prefix", "ci"])
        .args([
            "--scenarios",
            "cluster-fanout",
            "--peers",
            "portcullis-cluster",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--portcullis-bin")
        .arg(portcullis_bin())
        .arg("--root")
        .arg(root())
        .output()
        .expect("run loadgen");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadgen failed:\n{stderr}");
    let path = out.join("ci-cluster-fanout-30.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(doc["baseline"], "portcullis-cluster");
    let server = &doc["servers"][0];
    assert_eq!(
        server["status"], "ok",
        "cluster-fanout did not complete: {}\n{stderr}",
        server["error"]
    );
    let figures = &server["figures"];
    for key in [
        "deliveries_per_s",
        "cross_node_deliveries_per_s",
        "same_node_p50_ms",
        "cross_node_p99_ms",
        "lost",
        "joined_same_node",
        "joined_cross_node",
        "redis_commands_per_broadcast",
        "redis_commands_per_broadcast_net",
        "redis_server_commands_per_broadcast",
    ] {
        assert!(figures.get(key).is_some(), "no figure {key}");
    }
    assert_eq!(figures["joined_same_node"], 10);
    assert_eq!(figures["joined_cross_node"], 20);
    std::fs::remove_dir_all(&out).ok();
}

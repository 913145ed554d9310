//! Test support: runs the real `portcullis` binary on a free loopback port.
#![allow(dead_code)]

pub mod certs;
pub mod redis;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portcullis_auth::{ClientTokenOptions, mint_client_token};

/// The access key every test gateway uses unless told otherwise.
pub const KEY: &str = "test-access-key";

/// A running gateway process, killed on drop.
pub struct TestGateway {
    child: Child,
    /// e.g. `127.0.0.1:41234`
    pub addr: String,
    /// The connection string it printed.
    pub connection_string: String,
    /// The client token of each hub, minted once: a session accepts only the
    /// token it started with, as a real client repeats its own.
    tokens: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl TestGateway {
    /// Starts `portcullis serve --listen 127.0.0.1:0 --access-key KEY <extra>`.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// Same, with extra environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(extra, env, Stdio::null())
    }

    /// Same, with the log lines (stderr) written to `log` and the log level
    /// taken from `env` (`PORTCULLIS_LOG`, default `warn`).
    pub fn start_logging_to(extra: &[&str], env: &[(&str, &str)], log: &std::path::Path) -> Self {
        let file = std::fs::File::create(log).expect("log file");
        Self::spawn(extra, env, Stdio::from(file))
    }

    fn spawn(extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Self {
        // With a public endpoint the printed connection string does not name
        // the local port, so pick one up front.
        let listen = if extra.contains(&"--public-endpoint") {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("addr").to_string()
        } else {
            "127.0.0.1:0".to_owned()
        };
        let mut args = vec!["serve", "--listen", listen.as_str()];
        if !extra
            .iter()
            .any(|a| a.starts_with("--access-key") || *a == "--config")
        {
            args.extend(["--access-key", KEY]);
        }
        args.extend_from_slice(extra);
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env("PORTCULLIS_LOG", "warn");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start portcullis");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read connection string");
        let connection_string = line.trim().to_owned();
        let addr = if listen.ends_with(":0") {
            connection_string
                .strip_prefix("Endpoint=http://")
                .or_else(|| connection_string.strip_prefix("Endpoint=https://"))
                .and_then(|rest| rest.split(';').next())
                .unwrap_or_else(|| panic!("unexpected first line: {connection_string:?}"))
                .to_owned()
        } else {
            listen.clone()
        };
        TestGateway {
            child,
            addr,
            connection_string,
            tokens: Default::default(),
        }
    }

    /// `http://addr`
    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://addr`
    pub fn ws(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The client endpoint URL of `hub` with a trailing slash and `query`.
    pub fn client_url(&self, hub: &str, query: &str) -> String {
        format!("{}/clients/socketio/hubs/{hub}/?{query}", self.http())
    }

    /// A valid token for `hub` signed with [`KEY`].
    pub fn token(&self, hub: &str) -> String {
        let mut tokens = self.tokens.lock().unwrap();
        let token = tokens.entry(hub.to_owned()).or_insert_with(|| {
            token_for(
                hub,
                &ClientTokenOptions {
                    user_id: Some("tester".into()),
                    ..Default::default()
                },
            )
        });
        token.clone()
    }

    /// Opens a polling session on `hub` with the hub's token; its sid.
    pub async fn open_polling(&self, hub: &str) -> String {
        let query = format!("EIO=4&transport=polling&access_token={}", self.token(hub));
        let open = reqwest::get(self.client_url(hub, &query))
            .await
            .expect("handshake")
            .text()
            .await
            .expect("open packet");
        let open: serde_json::Value =
            serde_json::from_str(open.strip_prefix('0').expect("an open packet")).expect("JSON");
        open["sid"].as_str().expect("a sid").to_owned()
    }

    /// Live connections, from `/health`.
    pub async fn connections(&self) -> u64 {
        let health: serde_json::Value = reqwest::get(format!("{}/health", self.http()))
            .await
            .expect("health")
            .json()
            .await
            .expect("health json");
        health["connections"].as_u64().expect("connections")
    }

    /// Waits until `/health` reports `n` connections (or panics after 5 s).
    pub async fn wait_connections(&self, n: u64) {
        for _ in 0..100 {
            if self.connections().await == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(self.connections().await, n, "connection count");
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid.
        let done = unsafe { libc::kill(pid, signal) };
        assert_eq!(done, 0, "kill({pid}, {signal})");
    }

    /// Waits up to `limit` for the process to exit; its status if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id (for /proc measurements).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token for `hub` at the default audience, signed with [`KEY`].
pub fn token_for(hub: &str, options: &ClientTokenOptions) -> String {
    mint_client_token(
        KEY,
        &format!("http://localhost/clients/socketio/hubs/{hub}"),
        options,
    )
}

/// Resident memory of a process (VmRSS), in KiB.
pub fn resident_kib(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS")
}

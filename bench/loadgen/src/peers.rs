//! The servers compared, how each is started (one fresh process per
//! scenario), and their versions.
//!
//! Every peer serves the same tiny app on `/clients/socketio/hubs/<hub>/`
//! with the same auth rule (an HS256 JWT signed with the access key, in
//! `?access_token=`): `echo` acks its arguments, `join` joins a room,
//! `emit-room` (room, data) emits `fanout` to the room.
//!
//! The cluster peers (`node-socketio-redis`, `socketioxide-redis`,
//! `portcullis-cluster`) run three processes each, node i bound to
//! 127.0.0.(i+2), sharing state over Redis; only the `cluster-fanout`
//! scenario runs them, and it runs only them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::scenarios::Probe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerId {
    /// Portcullis with the app in process, written with crates/server
    /// (`bench-embedded-peer`, src/bin/bench-embedded-peer.rs).
    PortcullisEmbedded,
    /// Portcullis with the app over the tunnel: the official Node SDK
    /// `@azure/web-pubsub-socket.io` (bench/peers/node-sdk-app).
    PortcullisTunnel,
    /// Portcullis with the app over the tunnel: the same Rust app as the
    /// embedded peer, attached with `SocketIo::connect_tunnel`.
    PortcullisTunnelRust,
    /// The gateway alone with its built-in echo hub (no app): a reference
    /// for the gateway's own costs, and what the CI run uses.
    PortcullisEcho,
    /// Node socket.io 4.8, JWT in `io.use` (bench/peers/node-socketio).
    NodeUse,
    /// Node socket.io 4.8, JWT in engine.io `allowRequest`.
    NodeAllow,
    /// socketioxide 0.18 behind a tower layer (bench/peers/socketioxide).
    Socketioxide,
    /// Three Portcullis gateways sharing hub state over Redis, each with the
    /// built-in echo hub (`--redis`, `--cluster-advertise`).
    PortcullisCluster,
    /// Three Portcullis gateways sharing hub state over Redis, each with the
    /// bench app of `portcullis-tunnel-rust` attached over its own tunnel.
    PortcullisClusterTunnelRust,
    /// Three Node socket.io 4.8 servers with `@socket.io/redis-adapter`.
    NodeSocketioRedis,
    /// Three socketioxide 0.18 servers with `socketioxide-redis`.
    SocketioxideRedis,
}

/// Nodes of every cluster peer.
pub const CLUSTER_NODES: usize = 3;

impl PeerId {
    pub const ALL: [PeerId; 11] = [
        PeerId::PortcullisEmbedded,
        PeerId::PortcullisTunnel,
        PeerId::PortcullisTunnelRust,
        PeerId::PortcullisEcho,
        PeerId::NodeUse,
        PeerId::NodeAllow,
        PeerId::Socketioxide,
        PeerId::PortcullisCluster,
        PeerId::PortcullisClusterTunnelRust,
        PeerId::NodeSocketioRedis,
        PeerId::SocketioxideRedis,
    ];

    /// A peer of several nodes sharing state over Redis (only the
    /// `cluster-fanout` scenario runs these).
    pub fn cluster(self) -> bool {
        matches!(
            self,
            PeerId::PortcullisCluster
                | PeerId::PortcullisClusterTunnelRust
                | PeerId::NodeSocketioRedis
                | PeerId::SocketioxideRedis
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            PeerId::PortcullisEmbedded => "portcullis-embedded",
            PeerId::PortcullisTunnel => "portcullis-tunnel",
            PeerId::PortcullisTunnelRust => "portcullis-tunnel-rust",
            PeerId::PortcullisEcho => "portcullis-echo",
            PeerId::NodeUse => "node-use",
            PeerId::NodeAllow => "node-allow",
            PeerId::Socketioxide => "socketioxide",
            PeerId::PortcullisCluster => "portcullis-cluster",
            PeerId::PortcullisClusterTunnelRust => "portcullis-cluster-tunnel-rust",
            PeerId::NodeSocketioRedis => "node-socketio-redis",
            PeerId::SocketioxideRedis => "socketioxide-redis",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            PeerId::PortcullisEmbedded => "Portcullis embedded",
            PeerId::PortcullisTunnel => "Portcullis + Node SDK (tunnel)",
            PeerId::PortcullisTunnelRust => "Portcullis + Rust app (tunnel)",
            PeerId::PortcullisEcho => "Portcullis echo hub",
            PeerId::NodeUse => "socket.io (io.use)",
            PeerId::NodeAllow => "socket.io (allowRequest)",
            PeerId::Socketioxide => "socketioxide + layer",
            PeerId::PortcullisCluster => "Portcullis cluster echo hub (3 nodes)",
            PeerId::PortcullisClusterTunnelRust => {
                "Portcullis cluster + Rust app per node (3 nodes)"
            }
            PeerId::NodeSocketioRedis => "socket.io + redis-adapter (3 nodes)",
            PeerId::SocketioxideRedis => "socketioxide + socketioxide-redis (3 nodes)",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            PeerId::PortcullisEmbedded => {
                "Portcullis gateway with the bench app in process (crates/server)"
            }
            PeerId::PortcullisTunnel => {
                "Portcullis gateway; the bench app on @azure/web-pubsub-socket.io over the server tunnel (two processes)"
            }
            PeerId::PortcullisTunnelRust => {
                "Portcullis gateway; the bench app on portcullis-server attached over the server tunnel (two processes)"
            }
            PeerId::PortcullisEcho => {
                "Portcullis gateway with its built-in echo hub and no app: acks are the echoed events, fan-out is triggered through the REST API"
            }
            PeerId::NodeUse => {
                "Node socket.io 4.8, JWT verified in io.use middleware (after the Engine.IO session exists)"
            }
            PeerId::NodeAllow => {
                "Node socket.io 4.8, JWT verified in engine.io allowRequest (403 before a session)"
            }
            PeerId::Socketioxide => {
                "socketioxide 0.18 on axum, JWT verified in a tower layer answering 401"
            }
            PeerId::PortcullisCluster => {
                "three Portcullis gateways (--redis, --cluster-advertise) sharing hub state over Redis, each with the built-in echo hub; fan-out triggered through node 1's REST API"
            }
            PeerId::PortcullisClusterTunnelRust => {
                "three Portcullis gateways (--redis, --cluster-advertise) sharing hub state over Redis, each with the bench app (portcullis-server) attached over its own tunnel (which then also tunnels to the other nodes, following ConnectionRebalance): six processes; fan-out triggered by an emit-room event on node 1"
            }
            PeerId::NodeSocketioRedis => {
                "three Node socket.io 4.8 servers with @socket.io/redis-adapter 8.3 (node-redis 5), JWT in io.use; clients connect straight to a node (sticky)"
            }
            PeerId::SocketioxideRedis => {
                "three socketioxide 0.18 servers with socketioxide-redis 0.4 (redis crate driver, RESP3), JWT in a tower layer"
            }
        }
    }

    pub fn parse(text: &str) -> Option<PeerId> {
        let text = text.trim();
        PeerId::ALL
            .into_iter()
            .find(|p| p.name() == text)
            .or(match text {
                "embedded" => Some(PeerId::PortcullisEmbedded),
                "tunnel" | "portcullis" => Some(PeerId::PortcullisTunnel),
                "tunnel-rust" => Some(PeerId::PortcullisTunnelRust),
                "echo" => Some(PeerId::PortcullisEcho),
                "node" => Some(PeerId::NodeUse),
                "allow" | "allowrequest" => Some(PeerId::NodeAllow),
                "cluster" => Some(PeerId::PortcullisCluster),
                "cluster-tunnel-rust" => Some(PeerId::PortcullisClusterTunnelRust),
                "node-redis" => Some(PeerId::NodeSocketioRedis),
                _ => None,
            })
    }

    /// The server echoes Engine.IO messages instead of running the app.
    pub fn echo_mode(self) -> bool {
        matches!(self, PeerId::PortcullisEcho | PeerId::PortcullisCluster)
    }
}

/// Where the servers' programs are.
#[derive(Debug, Clone)]
pub struct Bins {
    /// The repository root.
    pub root: PathBuf,
    pub portcullis: PathBuf,
    pub socketioxide: PathBuf,
    /// The embedded peer's program (`bench-embedded-peer`): it takes
    /// `ACCESS_KEY`, `HUB` and `PORT` from the environment and prints
    /// `LISTENING <port>`. None: not part of this build.
    pub embedded: Option<PathBuf>,
    pub node: String,
    /// The Redis the cluster peers share (`redis://HOST:PORT`).
    pub redis_url: String,
}

impl Bins {
    pub fn node_socketio_dir(&self) -> PathBuf {
        self.root.join("bench/peers/node-socketio")
    }

    pub fn node_sdk_dir(&self) -> PathBuf {
        self.root.join("bench/peers/node-sdk-app")
    }

    /// Why `peer` cannot run here (None if it can).
    pub fn unavailable(&self, peer: PeerId) -> Option<(&'static str, String)> {
        let missing = |p: &Path, hint: &str| {
            (!p.exists()).then(|| ("skipped", format!("{} not found ({hint})", p.display())))
        };
        let portcullis = || missing(&self.portcullis, "cargo build --release --bin portcullis");
        match peer {
            PeerId::PortcullisEmbedded | PeerId::PortcullisTunnelRust => match &self.embedded {
                None => Some((
                    "pending",
                    "no embedded peer program in this build (--embedded-bin)".into(),
                )),
                Some(p) => {
                    missing(p, "cargo build --release --bin bench-embedded-peer").or_else(|| {
                        (peer == PeerId::PortcullisTunnelRust)
                            .then(portcullis)
                            .flatten()
                    })
                }
            },
            PeerId::PortcullisEcho => portcullis(),
            PeerId::PortcullisTunnel => portcullis().or_else(|| {
                missing(
                    &self
                        .node_sdk_dir()
                        .join("node_modules/@azure/web-pubsub-socket.io"),
                    "npm ci in bench/peers/node-sdk-app",
                )
            }),
            PeerId::NodeUse | PeerId::NodeAllow => missing(
                &self.node_socketio_dir().join("node_modules/socket.io"),
                "npm ci in bench/peers/node-socketio",
            ),
            PeerId::Socketioxide | PeerId::SocketioxideRedis => missing(
                &self.socketioxide,
                "cargo build --release --manifest-path bench/peers/socketioxide/Cargo.toml",
            ),
            PeerId::NodeSocketioRedis => missing(
                &self
                    .node_socketio_dir()
                    .join("node_modules/@socket.io/redis-adapter"),
                "npm ci in bench/peers/node-socketio",
            ),
            PeerId::PortcullisCluster | PeerId::PortcullisClusterTunnelRust => portcullis()
                .or_else(|| {
                    if peer != PeerId::PortcullisClusterTunnelRust {
                        return None;
                    }
                    match &self.embedded {
                        None => Some((
                            "pending",
                            "no embedded peer program in this build (--embedded-bin)".into(),
                        )),
                        Some(p) => missing(p, "cargo build --release --bin bench-embedded-peer"),
                    }
                })
                .or_else(|| {
                let help = command_output(
                    self.portcullis.to_str().unwrap_or(""),
                    &["serve", "--help"],
                    None,
                )
                .unwrap_or_default();
                (!(help.contains("--redis") && help.contains("--cluster-advertise"))).then(|| {
                    (
                        "pending",
                        format!(
                            "{} has no cluster flags (`serve --redis … --cluster-advertise …`): the cluster mode is not in this build",
                            self.portcullis.display()
                        ),
                    )
                })
            }),
        }
    }
}

/// A started server.
pub struct Running {
    /// The server's address; every node's for a cluster peer (node 1 first).
    pub nodes: Vec<SocketAddr>,
    pub probe: Probe,
    children: Vec<Child>,
}

fn command(program: impl AsRef<std::ffi::OsStr>, log: &Path) -> Result<Command> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    Ok(cmd)
}

/// Reads stdout lines until `pick` returns a value; the rest is drained in
/// the background.
async fn wait_line<T>(
    child: &mut Child,
    what: &str,
    pick: impl Fn(&str) -> Option<T>,
) -> Result<T> {
    let stdout: ChildStdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(v) = pick(&line) {
                return Ok::<_, std::io::Error>(Some(v));
            }
        }
        Ok(None)
    })
    .await;
    let value = match found {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) => bail!("{what} exited before it was ready (see its log)"),
        Ok(Err(e)) => bail!("{what}: reading its output: {e}"),
        Err(_) => bail!("{what} was not ready within 30 s"),
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(value)
}

fn listening(line: &str) -> Option<u16> {
    line.strip_prefix("LISTENING ")?.trim().parse().ok()
}

fn endpoint_port(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("Endpoint=http://127.0.0.1:")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts a fresh `peer`; its stderr goes to `log`.
pub async fn start(peer: PeerId, bins: &Bins, key: &str, hub: &str, log: &Path) -> Result<Running> {
    if peer.cluster() {
        return start_cluster(peer, bins, key, hub, log).await;
    }
    let mut children = Vec::new();
    let mut processes = Vec::new();
    let addr = match peer {
        PeerId::PortcullisEcho | PeerId::PortcullisTunnel | PeerId::PortcullisTunnelRust => {
            let mut cmd = command(&bins.portcullis, log)?;
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--access-key", key])
                .args(["--max-connections", "1000000"])
                // Every load-generator client carries the same token.
                .args(["--max-connections-per-user", "0"])
                .args(["--max-pending-handshakes", "100000"])
                .env("RUST_LOG", "warn");
            if peer == PeerId::PortcullisEcho {
                cmd.args(["--echo-hub", hub]);
            }
            let mut child = cmd.spawn().context("start portcullis")?;
            let port = wait_line(&mut child, "portcullis", endpoint_port).await?;
            processes.push(("gateway".to_owned(), child.id().unwrap_or(0)));
            children.push(child);
            let connection_string =
                format!("Endpoint=http://127.0.0.1;Port={port};AccessKey={key};Version=1.0;");
            let app = match peer {
                PeerId::PortcullisTunnelRust => {
                    let program = bins
                        .embedded
                        .clone()
                        .ok_or_else(|| anyhow!("the embedded peer program is not built"))?;
                    let mut cmd = command(&program, log)?;
                    cmd.env("CONNECTION_STRING", &connection_string)
                        .env("RUST_LOG", "warn");
                    Some(("rust-app", cmd))
                }
                PeerId::PortcullisTunnel => {
                    let dir = bins.node_sdk_dir();
                    let mut cmd = command(&bins.node, log)?;
                    cmd.arg(dir.join("app.js"))
                        .current_dir(&dir)
                        .env("PORTCULLIS_CONNECTION_STRING", &connection_string);
                    Some(("node-sdk-app", cmd))
                }
                _ => None,
            };
            if let Some((name, mut cmd)) = app {
                // The app attaches over the tunnel and says READY.
                let mut child = cmd
                    .env("HUB", hub)
                    .spawn()
                    .with_context(|| format!("start {name}"))?;
                wait_line(&mut child, name, |l| (l.trim() == "READY").then_some(())).await?;
                processes.push((name.to_owned(), child.id().unwrap_or(0)));
                children.push(child);
            }
            loopback(port)
        }
        PeerId::NodeUse | PeerId::NodeAllow => {
            let dir = bins.node_socketio_dir();
            let mut cmd = command(&bins.node, log)?;
            cmd.arg(dir.join("server.js"))
                .current_dir(&dir)
                .env("ACCESS_KEY", key)
                .env("HUB", hub)
                .env(
                    "AUTH",
                    if peer == PeerId::NodeUse {
                        "use"
                    } else {
                        "allow"
                    },
                );
            let mut child = cmd.spawn().context("start node socket.io")?;
            let port = wait_line(&mut child, "node socket.io", listening).await?;
            processes.push(("node".to_owned(), child.id().unwrap_or(0)));
            children.push(child);
            loopback(port)
        }
        PeerId::Socketioxide | PeerId::PortcullisEmbedded => {
            let program = if peer == PeerId::Socketioxide {
                bins.socketioxide.clone()
            } else {
                bins.embedded
                    .clone()
                    .ok_or_else(|| anyhow!("the embedded peer is pending"))?
            };
            let mut cmd = command(&program, log)?;
            cmd.env("ACCESS_KEY", key)
                .env("HUB", hub)
                .env("RUST_LOG", "warn");
            let mut child = cmd
                .spawn()
                .with_context(|| format!("start {}", program.display()))?;
            let port = wait_line(&mut child, peer.name(), listening).await?;
            processes.push((peer.name().to_owned(), child.id().unwrap_or(0)));
            children.push(child);
            loopback(port)
        }
        PeerId::PortcullisCluster
        | PeerId::PortcullisClusterTunnelRust
        | PeerId::NodeSocketioRedis
        | PeerId::SocketioxideRedis => {
            unreachable!("cluster peers are started by start_cluster")
        }
    };
    crate::net::check_loopback(&addr)?;
    Ok(Running {
        nodes: vec![addr],
        probe: Probe { processes },
        children,
    })
}

/// The address of node `i` (0-based) of a cluster: 127.0.0.(i+2).
pub fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8))
}

/// A port free on every node address (the nodes then all listen on it).
fn free_port(nodes: usize) -> Result<u16> {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind(SocketAddr::new(node_ip(0), 0))
            .context("bind 127.0.0.2 (is the loopback 127.0.0.0/8?)")?;
        let port = first.local_addr()?.port();
        let rest: Vec<_> = (1..nodes)
            .map(|i| std::net::TcpListener::bind(SocketAddr::new(node_ip(i), port)))
            .collect();
        if rest.iter().all(Result::is_ok) {
            return Ok(port);
        }
    }
    bail!("no port free on all of 127.0.0.2..127.0.0.{}", nodes + 1)
}

/// The log of node `i`: `<log stem>-node<i+1>.log`.
fn node_log(log: &Path, i: usize) -> PathBuf {
    let stem = log
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    log.with_file_name(format!("{stem}-node{}.log", i + 1))
}

/// The URL the socketioxide-redis driver needs: RESP3.
fn resp3(url: &str) -> String {
    let has_path = url
        .strip_prefix("redis://")
        .is_some_and(|rest| rest.contains('/'));
    match (url.contains('?'), has_path) {
        (true, _) => format!("{url}&protocol=resp3"),
        (false, true) => format!("{url}?protocol=resp3"),
        (false, false) => format!("{url}/?protocol=resp3"),
    }
}

/// What `GET /health` of a Portcullis node says: (node id, live nodes).
async fn cluster_health(addr: SocketAddr) -> Result<(String, u64)> {
    let sources = crate::net::Sources::new(1);
    let mut conn = crate::http::HttpConn::connect(&sources, addr).await?;
    let response = conn.request("GET", "/health", &[], None).await?;
    let value: Value = serde_json::from_slice(&response.body)
        .with_context(|| format!("/health of {addr}: not JSON"))?;
    let node = match &value["node"] {
        Value::String(s) => s.clone(),
        Value::Null => bail!("/health of {addr} has no \"node\": not a cluster node"),
        other => other.to_string(),
    };
    let nodes = value["nodes"]
        .as_u64()
        .ok_or_else(|| anyhow!("/health of {addr} has no \"nodes\" count"))?;
    Ok((node, nodes))
}

/// Starts a fresh cluster peer: [`CLUSTER_NODES`] processes, node i on
/// 127.0.0.(i+2), all on one port, sharing `bins.redis_url`; each node's
/// stderr goes to its own log beside `log`. Ready once every node listens
/// (and, for Portcullis, once every node's /health counts all nodes, and
/// the apps of `portcullis-cluster-tunnel-rust` have attached, one to each).
pub async fn start_cluster(
    peer: PeerId,
    bins: &Bins,
    key: &str,
    hub: &str,
    log: &Path,
) -> Result<Running> {
    let port = free_port(CLUSTER_NODES)?;
    let mut running = Running {
        nodes: Vec::new(),
        probe: Probe::default(),
        children: Vec::new(),
    };
    for i in 0..CLUSTER_NODES {
        let addr = SocketAddr::new(node_ip(i), port);
        let log = node_log(log, i);
        std::fs::remove_file(&log).ok();
        let name = format!("{} node {}", peer.name(), i + 1);
        let started = start_node(peer, bins, key, hub, &log, addr, &name).await;
        match started {
            Ok(child) => {
                running
                    .probe
                    .processes
                    .push((format!("node{}", i + 1), child.id().unwrap_or(0)));
                running.children.push(child);
                running.nodes.push(addr);
            }
            Err(e) => {
                running.stop().await;
                return Err(e);
            }
        }
    }
    let portcullis = matches!(
        peer,
        PeerId::PortcullisCluster | PeerId::PortcullisClusterTunnelRust
    );
    if portcullis {
        // Every node must see the others before clients come.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut seen = Vec::new();
            for &addr in &running.nodes {
                seen.push(cluster_health(addr).await);
            }
            let counts: Vec<Option<u64>> = seen
                .iter()
                .map(|r| r.as_ref().ok().map(|(_, n)| *n))
                .collect();
            if counts.iter().all(|n| *n == Some(CLUSTER_NODES as u64)) {
                break;
            }
            if std::time::Instant::now() > deadline {
                let detail: Vec<String> = seen
                    .iter()
                    .zip(&running.nodes)
                    .map(|(r, addr)| match r {
                        Ok((id, n)) => format!("{addr} (node {id}) sees {n} nodes"),
                        Err(e) => format!("{addr}: {e:#}"),
                    })
                    .collect();
                running.stop().await;
                bail!(
                    "the cluster did not form within 30 s (every node must see {CLUSTER_NODES}; more means another cluster shares this Redis): {}",
                    detail.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if peer == PeerId::PortcullisClusterTunnelRust {
        // The bench app attached to each node over that node's tunnel.
        for i in 0..CLUSTER_NODES {
            let addr = running.nodes[i];
            let log = node_log(log, i);
            let started = start_tunnel_app(bins, key, hub, &log, addr).await;
            match started {
                Ok(child) => {
                    running
                        .probe
                        .processes
                        .push((format!("app{}", i + 1), child.id().unwrap_or(0)));
                    running.children.push(child);
                }
                Err(e) => {
                    running.stop().await;
                    return Err(e.context(format!("the app of node {}", i + 1)));
                }
            }
        }
    }
    Ok(running)
}

/// The bench app (`bench-embedded-peer` with `CONNECTION_STRING`) attached
/// over the tunnel to the gateway at `addr`, once it says READY.
async fn start_tunnel_app(
    bins: &Bins,
    key: &str,
    hub: &str,
    log: &Path,
    addr: SocketAddr,
) -> Result<Child> {
    let program = bins
        .embedded
        .clone()
        .ok_or_else(|| anyhow!("the embedded peer program is not built"))?;
    let connection_string = format!(
        "Endpoint=http://{};Port={};AccessKey={key};Version=1.0;",
        addr.ip(),
        addr.port()
    );
    let mut cmd = command(&program, log)?;
    cmd.env("CONNECTION_STRING", &connection_string)
        .env("HUB", hub)
        .env("RUST_LOG", "warn");
    let mut child = cmd.spawn().context("start the tunnel app")?;
    if let Err(e) = wait_line(&mut child, "tunnel app", |l| {
        (l.trim() == "READY").then_some(())
    })
    .await
    {
        child.kill().await.ok();
        return Err(e);
    }
    Ok(child)
}

/// Starts node `addr` of a cluster peer and waits until it listens.
async fn start_node(
    peer: PeerId,
    bins: &Bins,
    key: &str,
    hub: &str,
    log: &Path,
    addr: SocketAddr,
    name: &str,
) -> Result<Child> {
    let host = addr.ip().to_string();
    let port = addr.port().to_string();
    let mut cmd = match peer {
        PeerId::PortcullisCluster | PeerId::PortcullisClusterTunnelRust => {
            let mut cmd = command(&bins.portcullis, log)?;
            cmd.args(["serve", "--listen", &addr.to_string(), "--access-key", key])
                .args(["--redis", &bins.redis_url])
                .args(["--cluster-advertise", &format!("http://{addr}")])
                .args(["--cluster-prefix", "portcullis-bench"])
                .args(["--max-connections", "1000000"])
                .args(["--max-connections-per-user", "0"])
                .args(["--max-pending-handshakes", "100000"])
                .env("RUST_LOG", "warn");
            if peer == PeerId::PortcullisCluster {
                cmd.args(["--echo-hub", hub]);
            }
            cmd
        }
        PeerId::NodeSocketioRedis => {
            let dir = bins.node_socketio_dir();
            let mut cmd = command(&bins.node, log)?;
            cmd.arg(dir.join("server.js"))
                .current_dir(&dir)
                .env("AUTH", "use")
                .env("REDIS_URL", &bins.redis_url)
                .env("REDIS_PREFIX", "portcullis-bench-node");
            cmd
        }
        PeerId::SocketioxideRedis => {
            let mut cmd = command(&bins.socketioxide, log)?;
            cmd.env("REDIS_URL", resp3(&bins.redis_url))
                .env("REDIS_PREFIX", "portcullis-bench-socketioxide")
                .env("RUST_LOG", "warn");
            cmd
        }
        other => bail!("{} is not a cluster peer", other.name()),
    };
    cmd.env("ACCESS_KEY", key)
        .env("HUB", hub)
        .env("HOST", &host)
        .env("PORT", &port);
    let mut child = cmd.spawn().with_context(|| format!("start {name}"))?;
    let ready = if matches!(
        peer,
        PeerId::PortcullisCluster | PeerId::PortcullisClusterTunnelRust
    ) {
        wait_line(&mut child, name, |l| {
            l.starts_with("Endpoint=").then_some(())
        })
        .await
    } else {
        wait_line(&mut child, name, listening).await.map(|_| ())
    };
    if let Err(e) = ready {
        child.kill().await.ok();
        return Err(e);
    }
    Ok(child)
}

impl Running {
    /// Whether every process is still running.
    pub fn alive(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, then SIGKILL after 3 s; the app before the gateway.
    pub async fn stop(mut self) {
        while let Some(mut child) = self.children.pop() {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on the pid of a child we started and have not reaped.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
            if tokio::time::timeout(Duration::from_secs(3), child.wait())
                .await
                .is_err()
            {
                child.kill().await.ok();
            }
        }
    }
}

fn command_output(program: &str, args: &[&str], dir: Option<&Path>) -> Option<String> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn package_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("package.json")).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    value.get("version")?.as_str().map(str::to_owned)
}

fn lock_version(lockfile: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(lockfile).ok()?;
    let marker = format!("name = \"{name}\"\nversion = \"");
    let at = text.find(&marker)? + marker.len();
    Some(text[at..].split('"').next()?.to_owned())
}

/// The versions of everything measured.
pub fn versions(bins: &Bins) -> Value {
    let mut v = Map::new();
    let git = command_output("git", &["rev-parse", "--short", "HEAD"], Some(&bins.root));
    let dirty = command_output(
        "git",
        // Results written by earlier runs do not make the code dirty.
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!bench/results",
        ],
        Some(&bins.root),
    )
    .is_some_and(|s| !s.is_empty());
    v.insert(
        "portcullis".into(),
        json!(
            command_output(bins.portcullis.to_str().unwrap_or(""), &["--version"], None)
                .map(|s| s.trim_start_matches("portcullis ").to_owned())
        ),
    );
    v.insert(
        "portcullis_commit".into(),
        json!(git.map(|g| if dirty { format!("{g}+dirty") } else { g })),
    );
    v.insert("loadgen".into(), json!(env!("CARGO_PKG_VERSION")));
    v.insert(
        "rustc".into(),
        json!(command_output("rustc", &["--version"], None)),
    );
    v.insert(
        "node".into(),
        json!(command_output(&bins.node, &["--version"], None)),
    );
    let nm = bins.node_socketio_dir().join("node_modules");
    v.insert(
        "socket.io".into(),
        json!(package_version(&nm.join("socket.io"))),
    );
    v.insert(
        "engine.io".into(),
        json!(package_version(&nm.join("engine.io"))),
    );
    v.insert(
        "jsonwebtoken (node)".into(),
        json!(package_version(&nm.join("jsonwebtoken"))),
    );
    let sdk = bins.node_sdk_dir().join("node_modules");
    v.insert(
        "@azure/web-pubsub-socket.io".into(),
        json!(package_version(&sdk.join("@azure/web-pubsub-socket.io"))),
    );
    v.insert(
        "socket.io (sdk app)".into(),
        json!(package_version(&sdk.join("socket.io"))),
    );
    let lock = bins.root.join("bench/peers/socketioxide/Cargo.lock");
    v.insert(
        "socketioxide".into(),
        json!(lock_version(&lock, "socketioxide")),
    );
    v.insert(
        "axum (socketioxide peer)".into(),
        json!(lock_version(&lock, "axum")),
    );
    v.insert(
        "socketioxide-redis".into(),
        json!(lock_version(&lock, "socketioxide-redis")),
    );
    v.insert(
        "redis (rust, socketioxide peer)".into(),
        json!(lock_version(&lock, "redis")),
    );
    v.insert(
        "@socket.io/redis-adapter".into(),
        json!(package_version(&nm.join("@socket.io/redis-adapter"))),
    );
    v.insert(
        "redis (node)".into(),
        json!(package_version(&nm.join("redis"))),
    );
    Value::Object(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ready_lines() {
        assert_eq!(
            endpoint_port("Endpoint=http://127.0.0.1:40123;AccessKey=k;Version=1.0;"),
            Some(40123)
        );
        assert_eq!(listening("LISTENING 8080"), Some(8080));
        assert_eq!(listening("something else"), None);
    }

    #[test]
    fn parses_peer_names() {
        for peer in PeerId::ALL {
            assert_eq!(PeerId::parse(peer.name()), Some(peer));
        }
        assert_eq!(PeerId::parse("tunnel"), Some(PeerId::PortcullisTunnel));
        assert_eq!(PeerId::parse("nope"), None);
    }
}

//! Real Redis servers for the cluster tests: a private standalone server
//! (so a test may stop and restart it) and a three-master Redis Cluster,
//! each on free loopback ports, stopped on drop. They need `redis-server`
//! and `redis-cli` (Debian's redis-server package; `scripts/install-deps`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn redis_server(port: u16, dir: &std::path::Path, extra: &[&str]) -> Child {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir.to_str().expect("utf-8 dir"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new("redis-server")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/install-deps)")
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (scripts/install-deps)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wait_ping(port: u16) {
    for _ in 0..200 {
        if cli(port, &["ping"]).trim() == "PONG" {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("redis on port {port} did not start");
}

/// A standalone Redis of this test alone.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = free_port();
        let dir = scratch_dir("redis");
        let child = redis_server(port, &dir, &[]);
        wait_ping(port);
        RedisServer {
            child: Some(child),
            port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(redis_server(self.port, &self.dir, &[]));
        wait_ping(self.port);
    }

    /// How many times a command ran (`INFO commandstats`).
    pub fn calls_of(&self, command: &str) -> u64 {
        let prefix = format!("cmdstat_{command}:calls=");
        cli(self.port, &["info", "commandstats"])
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters and no replicas.
pub struct RedisCluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
    dir: PathBuf,
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = scratch_dir("redis-cluster");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = ports
            .iter()
            .map(|port| {
                let node_dir = dir.join(port.to_string());
                std::fs::create_dir_all(&node_dir).expect("node dir");
                redis_server(
                    *port,
                    &node_dir,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    ],
                )
            })
            .collect();
        for port in &ports {
            wait_ping(*port);
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        cli(ports[0], &args);
        for _ in 0..200 {
            if ports
                .iter()
                .all(|p| cli(*p, &["cluster", "info"]).contains("cluster_state:ok"))
            {
                return RedisCluster { nodes, ports, dir };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the redis cluster did not come up");
    }

    /// The nodes' URLs, comma-separated (the form of `--redis`).
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Which shard (port) serves a key or sharded channel.
    pub fn shard_of(&self, name: &str) -> u16 {
        let slot: u64 = cli(self.ports[0], &["cluster", "keyslot", name])
            .trim()
            .parse()
            .expect("slot");
        // `CLUSTER NODES`: id host:port@bus flags master ... epoch state ranges...
        let nodes = cli(self.ports[0], &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(address) = fields.get(1) else {
                continue;
            };
            let port: u16 = address
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .expect("port");
            let serves = fields.iter().skip(8).any(|range| {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                match (start.parse::<u64>(), end.parse::<u64>()) {
                    (Ok(start), Ok(end)) => (start..=end).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                return port;
            }
        }
        panic!("no shard for {name}: {nodes}");
    }

    /// Sharded channels with subscribers on the shard at `port`.
    pub fn shard_channels(&self, port: u16) -> Vec<String> {
        cli(port, &["pubsub", "shardchannels"])
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

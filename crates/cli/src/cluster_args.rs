//! The cluster's settings of `portcullis serve` (issue #13): flag, then
//! environment, then file, then default. Without `--redis` the node is
//! alone and none of the others apply.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use portcullis_cluster::{ClusterConfig, NodeId, NodeInfo, RedisConfig};

/// Flags and environment variables.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Join a cluster of gateway nodes over Redis at this URL
    /// (`redis://[:password@]host:port`); several comma-separated URLs with
    /// --redis-cluster.
    #[arg(
        long,
        env = "PORTCULLIS_REDIS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub redis: Vec<String>,
    /// The --redis URLs are nodes of a Redis Cluster: use sharded pub/sub.
    #[arg(long, env = "PORTCULLIS_REDIS_CLUSTER")]
    pub redis_cluster: bool,
    /// This node's id, written into its connection ids (1 to 32 letters,
    /// digits, '_' or '-') [default: random].
    #[arg(long, env = "PORTCULLIS_NODE_ID")]
    pub node_id: Option<String>,
    /// The base URL other nodes and application servers reach this node at
    /// [default: http://<listen>].
    #[arg(long, env = "PORTCULLIS_CLUSTER_ADVERTISE")]
    pub cluster_advertise: Option<url::Url>,
    /// Prefix of the cluster's Redis keys and channels [default: portcullis].
    #[arg(long, env = "PORTCULLIS_CLUSTER_PREFIX")]
    pub cluster_prefix: Option<String>,
    /// Milliseconds between heartbeats [default: 1000].
    #[arg(long, env = "PORTCULLIS_CLUSTER_HEARTBEAT_MS")]
    pub cluster_heartbeat_ms: Option<u64>,
    /// Milliseconds without a heartbeat after which a node is dead
    /// [default: 5000].
    #[arg(long, env = "PORTCULLIS_CLUSTER_DEAD_AFTER_MS")]
    pub cluster_dead_after_ms: Option<u64>,
    /// Milliseconds an operation waits for the other nodes' outcomes
    /// [default: 2000].
    #[arg(long, env = "PORTCULLIS_CLUSTER_REQUEST_TIMEOUT_MS")]
    pub cluster_request_timeout_ms: Option<u64>,
    /// Messages to or from other nodes that may wait at once, each way;
    /// beyond, they are dropped and counted [default: 65536].
    #[arg(long, env = "PORTCULLIS_CLUSTER_MAX_QUEUE")]
    pub cluster_max_queue: Option<usize>,
}

/// The same from the TOML file.
#[derive(Debug, Default)]
pub(crate) struct FileCluster {
    pub redis: Option<Vec<String>>,
    pub redis_cluster: Option<bool>,
    pub node_id: Option<String>,
    pub cluster_advertise: Option<url::Url>,
    pub cluster_prefix: Option<String>,
    pub cluster_heartbeat_ms: Option<u64>,
    pub cluster_dead_after_ms: Option<u64>,
    pub cluster_request_timeout_ms: Option<u64>,
    pub cluster_max_queue: Option<usize>,
}

impl ClusterArgs {
    /// The cluster configuration, or `None` without Redis.
    pub(crate) fn resolve(
        self,
        file: FileCluster,
        listen: SocketAddr,
        revocation_ttl: Duration,
    ) -> Result<Option<ClusterConfig>, String> {
        let urls = match (self.redis.is_empty(), file.redis) {
            (false, _) => self.redis,
            (true, Some(urls)) => urls,
            (true, None) => return Ok(None),
        };
        if urls.is_empty() || urls.iter().any(|u| !u.starts_with("redis")) {
            return Err("--redis takes redis:// or rediss:// URLs".into());
        }
        let cluster = self.redis_cluster || file.redis_cluster.unwrap_or(false);
        if urls.len() > 1 && !cluster {
            return Err(
                "several --redis URLs are the nodes of a Redis Cluster: add --redis-cluster".into(),
            );
        }
        let id = match self.node_id.or(file.node_id) {
            Some(id) => NodeId::parse(&id).map_err(|e| format!("--node-id: {e}"))?,
            None => NodeId::generate(),
        };
        let advertise = match self.cluster_advertise.or(file.cluster_advertise) {
            Some(url) => url,
            None if listen.ip().is_unspecified() => {
                return Err(format!(
                    "--listen {listen} does not say where other nodes reach this one: give --cluster-advertise http://<this node's address>:{}",
                    listen.port()
                ));
            }
            None => url::Url::parse(&format!("http://{listen}/")).map_err(|e| e.to_string())?,
        };
        if !matches!(advertise.scheme(), "http" | "https") || advertise.host().is_none() {
            return Err(
                "--cluster-advertise must be an http:// or https:// URL with a host".into(),
            );
        }
        let redis = RedisConfig::new(urls, cluster);
        let mut config = ClusterConfig::new(redis, NodeInfo { id, advertise });
        config.revocation_ttl = revocation_ttl;
        if let Some(prefix) = self.cluster_prefix.or(file.cluster_prefix) {
            config.prefix = prefix;
        }
        let ms = Duration::from_millis;
        if let Some(v) = self.cluster_heartbeat_ms.or(file.cluster_heartbeat_ms) {
            config.heartbeat = ms(v);
        }
        if let Some(v) = self.cluster_dead_after_ms.or(file.cluster_dead_after_ms) {
            config.dead_after = ms(v);
        }
        if let Some(v) = self
            .cluster_request_timeout_ms
            .or(file.cluster_request_timeout_ms)
        {
            config.request_timeout = ms(v);
        }
        if let Some(v) = self.cluster_max_queue.or(file.cluster_max_queue) {
            config.max_outbound = v;
            config.max_inbound = v;
        }
        validate(&config)?;
        Ok(Some(config))
    }
}

fn validate(config: &ClusterConfig) -> Result<(), String> {
    if config.heartbeat.is_zero() || config.request_timeout.is_zero() {
        return Err(
            "--cluster-heartbeat-ms and --cluster-request-timeout-ms must be greater than zero"
                .into(),
        );
    }
    if config.dead_after < config.heartbeat * 2 {
        return Err("--cluster-dead-after-ms must be at least two heartbeats".into());
    }
    if config.max_outbound == 0 {
        return Err("--cluster-max-queue must be greater than zero".into());
    }
    let prefix_ok = !config.prefix.is_empty()
        && config
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !prefix_ok {
        return Err("--cluster-prefix is letters, digits, '_', '-' or '.'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(redis: &[&str]) -> ClusterArgs {
        ClusterArgs {
            redis: redis.iter().map(|s| s.to_string()).collect(),
            redis_cluster: false,
            node_id: None,
            cluster_advertise: None,
            cluster_prefix: None,
            cluster_heartbeat_ms: None,
            cluster_dead_after_ms: None,
            cluster_request_timeout_ms: None,
            cluster_max_queue: None,
        }
    }

    const LISTEN: &str = "10.0.0.2:8080";
    const TTL: Duration = Duration::from_secs(60);

    fn resolve(args: ClusterArgs, listen: &str) -> Result<Option<ClusterConfig>, String> {
        args.resolve(FileCluster::default(), listen.parse().unwrap(), TTL)
    }

    #[test]
    fn alone_without_redis() {
        assert!(resolve(args(&[]), LISTEN).unwrap().is_none());
    }

    #[test]
    fn defaults_advertise_the_listen_address() {
        let config = resolve(args(&["redis://127.0.0.1:6379"]), LISTEN)
            .unwrap()
            .unwrap();
        assert_eq!(config.node.advertise.as_str(), "http://10.0.0.2:8080/");
        assert!(!config.redis.cluster);
        assert_eq!(config.revocation_ttl, TTL);
        assert_eq!(config.prefix, "portcullis");
    }

    #[test]
    fn the_file_is_read_when_no_flag_is_given() {
        let file = FileCluster {
            redis: Some(vec!["redis://r:6379".into()]),
            node_id: Some("gw-1".into()),
            cluster_max_queue: Some(10),
            ..FileCluster::default()
        };
        let config = args(&[])
            .resolve(file, LISTEN.parse().unwrap(), TTL)
            .unwrap()
            .unwrap();
        assert_eq!(config.node.id.as_str(), "gw-1");
        assert_eq!((config.max_inbound, config.max_outbound), (10, 10));
    }

    #[test]
    fn bad_settings_say_what_to_do() {
        let cases: Vec<(ClusterArgs, &str, &str)> = vec![
            (args(&["http://r"]), LISTEN, "redis:// or rediss://"),
            (args(&["redis://a", "redis://b"]), LISTEN, "--redis-cluster"),
            (args(&["redis://a"]), "0.0.0.0:8080", "--cluster-advertise"),
            (
                ClusterArgs {
                    node_id: Some("a.b".into()),
                    ..args(&["redis://a"])
                },
                LISTEN,
                "--node-id",
            ),
            (
                ClusterArgs {
                    cluster_advertise: Some("ftp://x/".parse().unwrap()),
                    ..args(&["redis://a"])
                },
                LISTEN,
                "http:// or https://",
            ),
            (
                ClusterArgs {
                    cluster_heartbeat_ms: Some(1000),
                    cluster_dead_after_ms: Some(1500),
                    ..args(&["redis://a"])
                },
                LISTEN,
                "two heartbeats",
            ),
            (
                ClusterArgs {
                    cluster_max_queue: Some(0),
                    ..args(&["redis://a"])
                },
                LISTEN,
                "--cluster-max-queue",
            ),
            (
                ClusterArgs {
                    cluster_prefix: Some("a b".into()),
                    ..args(&["redis://a"])
                },
                LISTEN,
                "--cluster-prefix",
            ),
        ];
        for (args, listen, expected) in cases {
            let error = resolve(args, listen).unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should mention {expected}"
            );
        }
    }
}

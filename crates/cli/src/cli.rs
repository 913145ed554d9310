//! The command line: `portcullis serve` and `portcullis token`. Every flag can
//! also come from a `PORTCULLIS_*` environment variable or, for `serve`, from
//! a TOML file given with `--config`. Precedence: flag, then environment, then
//! file, then default.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use portcullis_auth::{AccessKeys, ClientTokenOptions, ConnectionString};
use serde::Deserialize;

use portcullis_gateway::hub::HubSettings;
use portcullis_gateway::{GatewayConfig, Secret, TlsConfig};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, the event's fields (`hub`, `reason`, …) at
    /// the top level, for log collectors.
    Json,
}

/// What `portcullis serve` runs with: the gateway's configuration and the
/// binary's own settings.
#[derive(Debug)]
pub struct ServeConfig {
    /// The gateway's configuration.
    pub gateway: GatewayConfig,
    /// The log format.
    pub log_format: LogFormat,
    /// Only check the configuration, then exit.
    pub check_config: bool,
}

/// Portcullis: a self-hosted Socket.IO gateway that authenticates clients
/// before any session exists.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(Box<ServeArgs>),
    /// Print a client access token (for operators and tests).
    Token(Box<TokenArgs>),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below (snake_case keys) and
    /// per-hub sections `[hubs.NAME]` with `allow_anonymous`.
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Check the configuration (flags, environment and file), print a
    /// summary without secrets, and exit: 0 if valid, 2 if not.
    #[arg(long)]
    pub check_config: bool,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "PORTCULLIS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Access key for tokens; repeat to rotate keys (all are accepted, the
    /// first is printed). A random key is generated if none is given.
    #[arg(
        long = "access-key",
        env = "PORTCULLIS_ACCESS_KEY",
        value_delimiter = ','
    )]
    pub access_keys: Vec<Secret>,
    /// Accept clients without a token on every hub (default: refuse them).
    #[arg(long, env = "PORTCULLIS_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// The URL the gateway is reached at (behind a proxy); token audiences
    /// must then match its scheme and host.
    #[arg(long, env = "PORTCULLIS_PUBLIC_ENDPOINT")]
    pub public_endpoint: Option<url::Url>,
    /// Engine.IO ping interval in milliseconds [default: 25000].
    #[arg(long, env = "PORTCULLIS_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// Engine.IO ping timeout in milliseconds [default: 20000].
    #[arg(long, env = "PORTCULLIS_PING_TIMEOUT_MS")]
    pub ping_timeout_ms: Option<u64>,
    /// Largest payload a client may send at once, in bytes [default: 1000000].
    #[arg(long, env = "PORTCULLIS_MAX_PAYLOAD")]
    pub max_payload: Option<u64>,
    /// Largest access token accepted, in bytes [default: 8192].
    #[arg(long, env = "PORTCULLIS_MAX_TOKEN_BYTES")]
    pub max_token_bytes: Option<usize>,
    /// Most client connections held at once [default: 100000].
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most packets queued for one client before it is closed as too slow
    /// [default: 4096].
    #[arg(long, env = "PORTCULLIS_MAX_QUEUED_PACKETS")]
    pub max_queued_packets: Option<usize>,
    /// Most handshakes waiting for the application's verdict at once; more
    /// get 503 [default: 1024].
    #[arg(long, env = "PORTCULLIS_MAX_PENDING_HANDSHAKES")]
    pub max_pending_handshakes: Option<usize>,
    /// Most connections of one user (the token's `sub`) at once; more get
    /// 429. 0: no limit [default: 100].
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<usize>,
    /// Most connections from one client IP address at once; more get 429.
    /// 0: no limit; leave it off behind a proxy [default: 0].
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
    /// Milliseconds a write to a client's WebSocket may take before the
    /// client is closed as not reading [default: 10000].
    #[arg(long, env = "PORTCULLIS_WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: Option<u64>,
    /// Milliseconds the application server may take to accept a client
    /// [default: 30000].
    #[arg(long, env = "PORTCULLIS_CONNECT_TIMEOUT_MS")]
    pub connect_timeout_ms: Option<u64>,
    /// Browser origin allowed to connect; repeat for several (default: any).
    #[arg(
        long = "allowed-origin",
        env = "PORTCULLIS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Milliseconds an application server may be without a tunnel before its
    /// clients are closed so they re-negotiate [default: 30000].
    #[arg(long, env = "PORTCULLIS_SERVER_GRACE_MS")]
    pub server_grace_ms: Option<u64>,
    /// Milliseconds between keep-alive messages on each tunnel (at most
    /// 60000: the official SDK drops a tunnel silent for 120 s) [default: 30000].
    #[arg(long, env = "PORTCULLIS_TUNNEL_KEEPALIVE_MS")]
    pub tunnel_keepalive_ms: Option<u64>,
    /// Largest tunnel frame accepted from an application server, in bytes
    /// [default: 16777216].
    #[arg(long, env = "PORTCULLIS_MAX_TUNNEL_FRAME")]
    pub max_tunnel_frame: Option<usize>,
    /// Frames that may wait to be written to one tunnel; client events
    /// beyond wait for room [default: 65536].
    #[arg(long, env = "PORTCULLIS_TUNNEL_QUEUE_FRAMES")]
    pub tunnel_queue_frames: Option<usize>,
    /// Bytes one client may have waiting for its application server before
    /// it is closed [default: 4194304].
    #[arg(long, env = "PORTCULLIS_MAX_APP_BACKLOG_BYTES")]
    pub max_app_backlog_bytes: Option<usize>,
    /// Packets one client may have waiting for its application server before
    /// it is closed [default: 4096].
    #[arg(long, env = "PORTCULLIS_MAX_APP_BACKLOG_PACKETS")]
    pub max_app_backlog_packets: Option<usize>,
    /// Attach the built-in echo application to this hub (smoke tests of a
    /// deployment, conformance runs); repeatable.
    #[arg(long = "echo-hub", env = "PORTCULLIS_ECHO_HUBS", value_delimiter = ',')]
    pub echo_hubs: Vec<String>,
    /// Milliseconds a connection not yet past the gate may take to send a
    /// request [default: 10000].
    #[arg(long, env = "PORTCULLIS_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// Milliseconds a keep-alive connection may sit with no request in flight
    /// [default: 60000].
    #[arg(long, env = "PORTCULLIS_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Most connections not yet past the gate; beyond, the oldest idle one is
    /// closed [default: 10000].
    #[arg(long, env = "PORTCULLIS_MAX_PENDING_CONNECTIONS")]
    pub max_pending_connections: Option<usize>,
    /// Most connections not yet past the gate from one client address (IPv6:
    /// one /64); beyond, new ones are refused [default: 256].
    #[arg(long, env = "PORTCULLIS_MAX_PENDING_PER_ADDRESS")]
    pub max_pending_per_address: Option<usize>,
    /// Serve HTTPS/WSS with this certificate chain (PEM, leaf first); needs
    /// --tls-key. Reloaded when the file changes and on SIGHUP.
    #[arg(long, env = "PORTCULLIS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "PORTCULLIS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Milliseconds between checks of the certificate and key files for a
    /// change; 0: reload on SIGHUP only [default: 5000].
    #[arg(long, env = "PORTCULLIS_TLS_RELOAD_INTERVAL_MS")]
    pub tls_reload_interval_ms: Option<u64>,
    /// Close live connections whose token has expired (after a grace period
    /// in which the client can refresh it in band), on every hub; per hub
    /// with `[hubs.NAME] token_expiry` (default: off, the token is checked
    /// at the handshake only).
    #[arg(long, env = "PORTCULLIS_TOKEN_EXPIRY")]
    pub token_expiry: bool,
    /// Milliseconds a connection stays open after its token's `exp` for the
    /// client to refresh it [default: 25000].
    #[arg(long, env = "PORTCULLIS_TOKEN_EXPIRY_GRACE_MS")]
    pub token_expiry_grace_ms: Option<u64>,
    /// Most token revocations one hub keeps at once [default: 100000].
    #[arg(long, env = "PORTCULLIS_MAX_REVOCATIONS")]
    pub max_revocations: Option<usize>,
    /// The longest lifetime your client tokens have, in milliseconds: how
    /// long a revocation is kept when the tokens' `exp` is unknown
    /// [default: 86400000].
    #[arg(long, env = "PORTCULLIS_REVOCATION_TTL_MS")]
    pub revocation_ttl_ms: Option<u64>,
    /// Milliseconds over which a drain (SIGTERM or SIGINT) closes the live
    /// clients, in spread-out batches, so they reconnect elsewhere; 0 closes
    /// them at once [default: 10000].
    #[arg(long, env = "PORTCULLIS_DRAIN_PERIOD_MS")]
    pub drain_period_ms: Option<u64>,
    /// Milliseconds from SIGTERM or SIGINT to exit at the latest, whatever is
    /// left; longer than the drain period. A second signal exits at once
    /// [default: 30000].
    #[arg(long, env = "PORTCULLIS_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<u64>,
    /// Log format on stderr: text or json (one object per line, with `hub`,
    /// `reason` and, at debug level, `connection` fields). The level is set
    /// by PORTCULLIS_LOG (e.g. `info`, `debug`) [default: text].
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(flatten)]
    pub ops: OpsArgs,
    #[command(flatten)]
    pub cluster: crate::cluster_args::ClusterArgs,
}

/// Metrics and the operator's page (issue #15); all off unless enabled.
#[derive(Debug, Args)]
pub struct OpsArgs {
    /// Serve Prometheus metrics at GET /metrics (off by default: they name
    /// every hub).
    #[arg(long, env = "PORTCULLIS_METRICS")]
    pub metrics: bool,
    /// Serve /metrics on this address instead of the main listener (implies
    /// --metrics).
    #[arg(long, env = "PORTCULLIS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>` on /metrics (prefer the
    /// environment variable or the file: flags show in `ps`).
    #[arg(long, env = "PORTCULLIS_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,
    /// Serve the operator's page at /admin (off by default).
    #[arg(long, env = "PORTCULLIS_ADMIN")]
    pub admin: bool,
    /// The key that logs in to /admin [default: any access key].
    #[arg(long, env = "PORTCULLIS_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<Secret>,
    /// Milliseconds an /admin login lasts [default: 3600000].
    #[arg(long, env = "PORTCULLIS_ADMIN_SESSION_TTL_MS")]
    pub admin_session_ttl_ms: Option<u64>,
    /// Most /admin sessions at once; a login beyond ends the oldest
    /// [default: 16].
    #[arg(long, env = "PORTCULLIS_ADMIN_MAX_SESSIONS")]
    pub admin_max_sessions: Option<usize>,
}

/// The optional TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    access_keys: Option<Vec<Secret>>,
    allow_anonymous: Option<bool>,
    public_endpoint: Option<url::Url>,
    ping_interval_ms: Option<u64>,
    ping_timeout_ms: Option<u64>,
    max_payload: Option<u64>,
    max_token_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_queued_packets: Option<usize>,
    max_pending_handshakes: Option<usize>,
    max_connections_per_user: Option<usize>,
    max_connections_per_address: Option<usize>,
    write_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    server_grace_ms: Option<u64>,
    tunnel_keepalive_ms: Option<u64>,
    max_tunnel_frame: Option<usize>,
    tunnel_queue_frames: Option<usize>,
    max_app_backlog_bytes: Option<usize>,
    max_app_backlog_packets: Option<usize>,
    allowed_origins: Option<Vec<String>>,
    echo_hubs: Option<Vec<String>>,
    header_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_pending_connections: Option<usize>,
    max_pending_per_address: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_reload_interval_ms: Option<u64>,
    token_expiry: Option<bool>,
    token_expiry_grace_ms: Option<u64>,
    max_revocations: Option<usize>,
    revocation_ttl_ms: Option<u64>,
    drain_period_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    log_format: Option<LogFormat>,
    // Metrics and the operator's page (issue #15).
    metrics: Option<bool>,
    metrics_listen: Option<SocketAddr>,
    metrics_token: Option<Secret>,
    admin: Option<bool>,
    admin_key: Option<Secret>,
    admin_session_ttl_ms: Option<u64>,
    admin_max_sessions: Option<usize>,
    // The cluster (issue #13).
    redis: Option<Vec<String>>,
    redis_cluster: Option<bool>,
    node_id: Option<String>,
    cluster_advertise: Option<url::Url>,
    cluster_prefix: Option<String>,
    cluster_heartbeat_ms: Option<u64>,
    cluster_dead_after_ms: Option<u64>,
    cluster_request_timeout_ms: Option<u64>,
    cluster_max_queue: Option<usize>,
    #[serde(default)]
    hubs: HashMap<String, FileHub>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHub {
    allow_anonymous: Option<bool>,
    token_expiry: Option<bool>,
    token_expiry_grace_ms: Option<u64>,
}

/// Default grace after `exp` before a connection is closed.
const DEFAULT_TOKEN_EXPIRY_GRACE: Duration = Duration::from_secs(25);

fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

impl ServeArgs {
    /// Merges flags, environment, file and defaults into a configuration.
    pub fn resolve(self) -> Result<ServeConfig, String> {
        let mut file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("invalid config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let file_ops = FileOps::take(&mut file);
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or(([127, 0, 0, 1], 8080).into());
        let keys = match non_empty(self.access_keys).or(file.access_keys) {
            Some(keys) => {
                let keys = keys.into_iter().map(|k| k.expose().to_owned()).collect();
                AccessKeys::new(keys).map_err(|e| format!("invalid --access-key: {e}"))?
            }
            None => AccessKeys::generate(),
        };
        let mut config = GatewayConfig::new(listen, keys);
        let allow_anonymous = self.allow_anonymous || file.allow_anonymous.unwrap_or(false);
        config.allow_anonymous = allow_anonymous;
        config.public_endpoint = self.public_endpoint.or(file.public_endpoint);
        let ms = Duration::from_millis;
        if let Some(v) = self.ping_interval_ms.or(file.ping_interval_ms) {
            config.ping_interval = ms(v);
        }
        if let Some(v) = self.ping_timeout_ms.or(file.ping_timeout_ms) {
            config.ping_timeout = ms(v);
        }
        if let Some(v) = self.write_timeout_ms.or(file.write_timeout_ms) {
            config.write_timeout = ms(v);
        }
        if let Some(v) = self.connect_timeout_ms.or(file.connect_timeout_ms) {
            config.connect_timeout = ms(v);
        }
        if let Some(v) = self.server_grace_ms.or(file.server_grace_ms) {
            config.server_grace = ms(v);
        }
        if let Some(v) = self.tunnel_keepalive_ms.or(file.tunnel_keepalive_ms) {
            config.tunnel_keepalive = ms(v);
        }
        if let Some(v) = self.drain_period_ms.or(file.drain_period_ms) {
            config.drain_period = ms(v);
        }
        if let Some(v) = self.drain_timeout_ms.or(file.drain_timeout_ms) {
            config.drain_timeout = ms(v);
        }
        let log_format = self.log_format.or(file.log_format).unwrap_or_default();
        let limits = &mut config.connection_limits;
        if let Some(v) = self.header_read_timeout_ms.or(file.header_read_timeout_ms) {
            limits.header_read_timeout = ms(v);
        }
        if let Some(v) = self.idle_timeout_ms.or(file.idle_timeout_ms) {
            limits.idle_timeout = ms(v);
        }
        let pending = self
            .max_pending_connections
            .or(file.max_pending_connections);
        limits.max_pending_connections = pending.unwrap_or(limits.max_pending_connections);
        let per_address = self
            .max_pending_per_address
            .or(file.max_pending_per_address);
        limits.max_pending_per_address = per_address.unwrap_or(limits.max_pending_per_address);
        config.max_tunnel_frame = self
            .max_tunnel_frame
            .or(file.max_tunnel_frame)
            .unwrap_or(config.max_tunnel_frame);
        let backlog_bytes = self.max_app_backlog_bytes.or(file.max_app_backlog_bytes);
        config.max_app_backlog_bytes = backlog_bytes.unwrap_or(config.max_app_backlog_bytes);
        let backlog_packets = self
            .max_app_backlog_packets
            .or(file.max_app_backlog_packets);
        config.max_app_backlog_packets = backlog_packets.unwrap_or(config.max_app_backlog_packets);
        config.tunnel_queue_frames = self
            .tunnel_queue_frames
            .or(file.tunnel_queue_frames)
            .unwrap_or(config.tunnel_queue_frames);
        config.max_payload = self
            .max_payload
            .or(file.max_payload)
            .unwrap_or(config.max_payload);
        config.max_token_bytes = self
            .max_token_bytes
            .or(file.max_token_bytes)
            .unwrap_or(config.max_token_bytes);
        config.max_connections = self
            .max_connections
            .or(file.max_connections)
            .unwrap_or(config.max_connections);
        config.max_pending_handshakes = self
            .max_pending_handshakes
            .or(file.max_pending_handshakes)
            .unwrap_or(config.max_pending_handshakes);
        config.max_connections_per_user = self
            .max_connections_per_user
            .or(file.max_connections_per_user)
            .unwrap_or(config.max_connections_per_user);
        config.max_connections_per_address = self
            .max_connections_per_address
            .or(file.max_connections_per_address)
            .unwrap_or(config.max_connections_per_address);
        config.max_queued_frames = self
            .max_queued_packets
            .or(file.max_queued_packets)
            .unwrap_or(config.max_queued_frames);
        config.allowed_origins = non_empty(self.allowed_origins)
            .or(file.allowed_origins)
            .unwrap_or_default();
        config.echo_hubs = non_empty(self.echo_hubs)
            .or(file.echo_hubs)
            .unwrap_or_default();
        config.tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => {
                let mut tls = TlsConfig::new(cert, key);
                if let Some(v) = self.tls_reload_interval_ms.or(file.tls_reload_interval_ms) {
                    tls.reload_interval = ms(v);
                }
                Some(tls)
            }
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together: give both or neither".into()),
        };
        let grace = self
            .token_expiry_grace_ms
            .or(file.token_expiry_grace_ms)
            .map_or(DEFAULT_TOKEN_EXPIRY_GRACE, ms);
        let token_expiry =
            (self.token_expiry || file.token_expiry.unwrap_or(false)).then_some(grace);
        config.token_expiry = token_expiry;
        config.max_revocations = self
            .max_revocations
            .or(file.max_revocations)
            .unwrap_or(config.max_revocations);
        if let Some(v) = self.revocation_ttl_ms.or(file.revocation_ttl_ms) {
            config.revocation_ttl = ms(v);
        }
        config.hubs = file
            .hubs
            .into_iter()
            .map(|(name, hub)| {
                let hub_grace = hub.token_expiry_grace_ms.map_or(grace, ms);
                let settings = HubSettings {
                    allow_anonymous: hub.allow_anonymous.unwrap_or(allow_anonymous),
                    token_expiry: match hub.token_expiry {
                        Some(on) => on.then_some(hub_grace),
                        None => token_expiry.map(|_| hub_grace),
                    },
                };
                (name, settings)
            })
            .collect();
        self.ops.resolve(file_ops, &mut config);
        let file_cluster = crate::cluster_args::FileCluster {
            redis: file.redis.take(),
            redis_cluster: file.redis_cluster,
            node_id: file.node_id.take(),
            cluster_advertise: file.cluster_advertise.take(),
            cluster_prefix: file.cluster_prefix.take(),
            cluster_heartbeat_ms: file.cluster_heartbeat_ms,
            cluster_dead_after_ms: file.cluster_dead_after_ms,
            cluster_request_timeout_ms: file.cluster_request_timeout_ms,
            cluster_max_queue: file.cluster_max_queue,
        };
        config.cluster =
            self.cluster
                .resolve(file_cluster, config.listen, config.revocation_ttl)?;
        validate(&config)?;
        Ok(ServeConfig {
            gateway: config,
            log_format,
            check_config: self.check_config,
        })
    }
}

impl OpsArgs {
    /// Metrics and the operator's page: flag, then environment, then file.
    fn resolve(self, file: FileOps, config: &mut GatewayConfig) {
        let metrics = &mut config.metrics;
        metrics.listen = self.metrics_listen.or(file.metrics_listen);
        metrics.enabled = self.metrics || file.metrics.unwrap_or(false) || metrics.listen.is_some();
        metrics.token = self.metrics_token.or(file.metrics_token);
        let admin = &mut config.admin;
        admin.enabled = self.admin || file.admin.unwrap_or(false);
        admin.key = self.admin_key.or(file.admin_key);
        if let Some(ms) = self.admin_session_ttl_ms.or(file.admin_session_ttl_ms) {
            admin.session_ttl = Duration::from_millis(ms);
        }
        let max_sessions = self.admin_max_sessions.or(file.admin_max_sessions);
        admin.max_sessions = max_sessions.unwrap_or(admin.max_sessions);
    }
}

/// The file's settings of metrics and the operator's page.
struct FileOps {
    metrics: Option<bool>,
    metrics_listen: Option<SocketAddr>,
    metrics_token: Option<Secret>,
    admin: Option<bool>,
    admin_key: Option<Secret>,
    admin_session_ttl_ms: Option<u64>,
    admin_max_sessions: Option<usize>,
}

impl FileOps {
    fn take(file: &mut FileConfig) -> Self {
        FileOps {
            metrics: file.metrics,
            metrics_listen: file.metrics_listen,
            metrics_token: file.metrics_token.take(),
            admin: file.admin,
            admin_key: file.admin_key.take(),
            admin_session_ttl_ms: file.admin_session_ttl_ms,
            admin_max_sessions: file.admin_max_sessions,
        }
    }
}

/// Checks of the metrics and operator's page settings.
fn validate_ops(config: &GatewayConfig) -> Result<(), String> {
    if config
        .metrics
        .token
        .as_ref()
        .is_some_and(|t| t.expose().is_empty())
    {
        return Err("--metrics-token must not be empty".into());
    }
    let admin = &config.admin;
    if admin.key.as_ref().is_some_and(|k| k.expose().is_empty()) {
        return Err("--admin-key must not be empty".into());
    }
    if admin.session_ttl.is_zero() || admin.max_sessions == 0 {
        return Err(
            "--admin-session-ttl-ms and --admin-max-sessions must be greater than zero".into(),
        );
    }
    Ok(())
}

fn validate(config: &GatewayConfig) -> Result<(), String> {
    validate_ops(config)?;
    if config.ping_interval.is_zero() || config.ping_timeout.is_zero() {
        return Err("ping interval and timeout must be greater than zero".into());
    }
    if config.tunnel_queue_frames == 0 {
        return Err("--tunnel-queue-frames must be greater than zero".into());
    }
    if config.max_pending_handshakes == 0 {
        return Err("--max-pending-handshakes must be greater than zero".into());
    }
    if config.write_timeout.is_zero() {
        return Err("--write-timeout-ms must be greater than zero".into());
    }
    if config.tunnel_keepalive.is_zero() || config.tunnel_keepalive > Duration::from_secs(60) {
        return Err("--tunnel-keepalive-ms must be between 1 and 60000".into());
    }
    if config.max_app_backlog_bytes == 0 || config.max_app_backlog_packets == 0 {
        return Err(
            "--max-app-backlog-bytes and --max-app-backlog-packets must be greater than zero"
                .into(),
        );
    }
    if config.max_payload == 0 || config.max_token_bytes == 0 || config.max_queued_frames == 0 {
        return Err(
            "--max-payload, --max-token-bytes and --max-queued-packets must be greater than zero"
                .into(),
        );
    }
    if config.max_revocations == 0 || config.revocation_ttl.is_zero() {
        return Err("--max-revocations and --revocation-ttl-ms must be greater than zero".into());
    }
    if config.drain_timeout <= config.drain_period {
        return Err(
            "--drain-timeout-ms must be greater than --drain-period-ms (the clients are closed within the period; the rest of the timeout is for the tunnels and the last writes)"
                .into(),
        );
    }
    let limits = &config.connection_limits;
    if limits.header_read_timeout.is_zero() || limits.idle_timeout.is_zero() {
        return Err(
            "--header-read-timeout-ms and --idle-timeout-ms must be greater than zero".into(),
        );
    }
    if limits.max_pending_connections == 0 || limits.max_pending_per_address == 0 {
        return Err(
            "--max-pending-connections and --max-pending-per-address must be greater than zero"
                .into(),
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The hub the token is for.
    #[arg(long)]
    pub hub: String,
    /// User id (the `sub` and `userId` claims).
    #[arg(long)]
    pub user: Option<String>,
    /// Role; repeatable.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Group to join on connect; repeatable.
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Lifetime, e.g. 90s, 10m, 1h [default: 1h].
    #[arg(long, default_value = "1h", value_parser = portcullis_auth::parse_ttl)]
    pub ttl: Duration,
    /// The access key to sign with.
    #[arg(
        long,
        env = "PORTCULLIS_ACCESS_KEY",
        conflicts_with = "connection_string",
        value_delimiter = ','
    )]
    pub access_key: Option<Vec<Secret>>,
    /// A connection string (`Endpoint=…;AccessKey=…;Version=1.0;`) to take the
    /// key and endpoint from.
    #[arg(long, env = "PORTCULLIS_CONNECTION_STRING")]
    pub connection_string: Option<ConnectionString>,
    /// The gateway's URL, for the token's audience [default: http://127.0.0.1:8080].
    #[arg(long)]
    pub endpoint: Option<url::Url>,
    /// Mint an operator token for the REST API (`/api/hubs/{hub}/...`)
    /// instead of a client token.
    #[arg(long)]
    pub api: bool,
    /// The token's id, its `jti` claim, by which it can be revoked
    /// [default: random].
    #[arg(long)]
    pub token_id: Option<String>,
}

impl TokenArgs {
    /// Mints the token.
    pub fn mint(self) -> Result<String, String> {
        let (endpoint, key) =
            match (self.connection_string, self.access_key) {
                (Some(cs), _) => (cs.endpoint, cs.access_key),
                (None, Some(keys)) => {
                    let key = keys
                        .into_iter()
                        .next()
                        .map(|k| k.expose().to_owned())
                        .unwrap_or_default();
                    let endpoint = self.endpoint.unwrap_or_else(|| {
                        url::Url::parse("http://127.0.0.1:8080/").expect("valid URL")
                    });
                    (endpoint, key)
                }
                (None, None) => return Err(
                    "give --access-key KEY or --connection-string CS (or PORTCULLIS_ACCESS_KEY)"
                        .into(),
                ),
            };
        if key.is_empty() {
            return Err("the access key is empty".into());
        }
        let audience = if self.api {
            let base = endpoint.as_str().trim_end_matches('/');
            format!("{base}/api/hubs/{}", self.hub)
        } else {
            ConnectionString::new(endpoint, key.clone()).client_url(&self.hub)
        };
        let options = ClientTokenOptions {
            user_id: self.user,
            roles: self.roles,
            groups: self.groups,
            ttl: self.ttl,
            custom_claims: Default::default(),
            token_id: self.token_id.map_or(
                portcullis_auth::TokenId::Random,
                portcullis_auth::TokenId::Fixed,
            ),
        };
        Ok(portcullis_auth::mint_client_token(
            &key, &audience, &options,
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn repo_file(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The options of `serve` that are settings (not `--config` itself, nor
    /// `--check-config`): (TOML key, long flag, environment variable).
    fn settings() -> Vec<(String, String, String)> {
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve");
        serve
            .get_arguments()
            .filter(|a| !["help", "config", "check_config"].contains(&a.get_id().as_str()))
            .map(|a| {
                (
                    a.get_id().to_string(),
                    format!("--{}", a.get_long().expect("a long flag")),
                    a.get_env()
                        .expect("an environment variable")
                        .to_string_lossy()
                        .into_owned(),
                )
            })
            .collect()
    }

    /// `deploy/portcullis.toml` with every commented-out setting (`#key =`,
    /// `#[hubs.…]`) enabled.
    fn example_with_everything_enabled() -> String {
        repo_file("deploy/portcullis.toml")
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest)
                    if rest.starts_with("[hubs.")
                        || rest.split_once(" = ").is_some_and(|(key, _)| {
                            key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_serve_option_is_in_the_example_file_and_the_readme() {
        let example = repo_file("deploy/portcullis.toml");
        let readme = repo_file("README.md");
        let table = readme
            .split("## Configuration")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has a Configuration section");
        let settings = settings();
        assert!(settings.len() >= 30, "{settings:?}");
        for (key, flag, env) in settings {
            let in_example = example
                .lines()
                .any(|l| l.trim_start_matches('#').starts_with(&format!("{key} = ")));
            assert!(in_example, "{key} is not in deploy/portcullis.toml");
            let row = table
                .lines()
                .find(|l| {
                    l.starts_with(&format!("| `{flag} ")) || l.starts_with(&format!("| `{flag}`"))
                })
                .unwrap_or_else(|| panic!("{flag} has no row in README's configuration table"));
            assert!(
                row.contains(&format!("`{env}`")),
                "{flag}: {env} not in {row}"
            );
            assert!(
                row.contains(&format!("`{key}`")),
                "{flag}: TOML key {key} not in {row}"
            );
        }
    }

    #[test]
    fn the_example_file_is_valid_with_every_setting_enabled() {
        let text = example_with_everything_enabled();
        let file: FileConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // Every option is set, so a key missing from FileConfig, or of the
        // wrong type, would have failed above; and the values resolve.
        assert!(file.access_keys.is_some() && file.hubs.contains_key("public_lobby"));
        let path =
            std::env::temp_dir().join(format!("portcullis-example-{}.toml", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        let cli = Cli::try_parse_from(["portcullis", "serve", "--config", path.to_str().unwrap()])
            .expect("arguments");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let resolved = args.resolve();
        std::fs::remove_file(&path).ok();
        let resolved = resolved.expect("the example resolves");
        assert_eq!(resolved.gateway.access_keys.all().len(), 2);
        assert_eq!(resolved.log_format, LogFormat::Json);
        assert_eq!(resolved.gateway.drain_timeout, Duration::from_secs(30));
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let cli = Cli::try_parse_from([
            "portcullis",
            "serve",
            "--access-key",
            "super-secret-key-1",
            "--access-key=super-secret-key-2",
        ])
        .expect("arguments");
        let text = format!("{cli:?}");
        assert!(!text.contains("super-secret"), "{text}");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let text = format!("{:?}", args.resolve().expect("valid"));
        assert!(!text.contains("super-secret"), "{text}");
        let token = Cli::try_parse_from([
            "portcullis",
            "token",
            "--hub",
            "h",
            "--access-key",
            "super-secret-key-3",
        ])
        .expect("arguments");
        assert!(!format!("{token:?}").contains("super-secret"));
    }

    #[test]
    fn the_drain_timeout_must_exceed_the_period() {
        let cli = Cli::try_parse_from([
            "portcullis",
            "serve",
            "--drain-period-ms",
            "5000",
            "--drain-timeout-ms",
            "5000",
        ])
        .expect("arguments");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let error = args.resolve().expect_err("refused");
        assert!(error.contains("--drain-timeout-ms"), "{error}");
    }
}

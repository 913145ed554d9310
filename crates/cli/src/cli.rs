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
use portcullis_gateway::{GatewayConfig, TlsConfig};

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
    pub access_keys: Vec<String>,
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
}

/// The optional TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    access_keys: Option<Vec<String>>,
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

fn non_empty(list: Vec<String>) -> Option<Vec<String>> {
    (!list.is_empty()).then_some(list)
}

impl ServeArgs {
    /// Merges flags, environment, file and defaults into a configuration.
    pub fn resolve(self) -> Result<GatewayConfig, String> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("invalid config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or(([127, 0, 0, 1], 8080).into());
        let keys = match non_empty(self.access_keys).or(file.access_keys) {
            Some(keys) => {
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
        validate(&config)?;
        Ok(config)
    }
}

fn validate(config: &GatewayConfig) -> Result<(), String> {
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
    pub access_key: Option<Vec<String>>,
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
                    let key = keys.into_iter().next().unwrap_or_default();
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

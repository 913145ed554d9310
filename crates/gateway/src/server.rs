//! The gateway service: configuration, shared state, routes and serving.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use http::StatusCode;
use portcullis_auth::{AccessKeys, ClientTokenVerifier, ConnectionString, VerifierConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use crate::admin::{AdminConfig, Sessions};
use crate::admission::{Admission, AdmissionLimits};
use crate::drain::Drain;
use crate::echo::EchoHandler;
use crate::engine::{self, CorsPolicy};
use crate::hub::{HubSettings, Hubs};
use crate::listener::ConnectionLimits;
use crate::metrics::{Metrics, MetricsConfig};
use crate::tls::{self, CertificateStore, TlsConfig};
use crate::tokens::Tokens;
use crate::tunnel::{TunnelSettings, Tunnels};

/// Everything the gateway is told at start.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Access keys: tokens signed with any of them are accepted.
    pub access_keys: AccessKeys,
    /// Accept clients without a token on every hub (default: deny).
    pub allow_anonymous: bool,
    /// The URL clients and application servers reach the gateway at, when it
    /// differs from `listen` (behind a proxy). When set, token audiences must
    /// match its scheme and host too.
    pub public_endpoint: Option<url::Url>,
    /// Default Engine.IO ping interval.
    pub ping_interval: Duration,
    /// Default Engine.IO ping timeout.
    pub ping_timeout: Duration,
    /// Largest payload a client may send at once, in bytes.
    pub max_payload: u64,
    /// Largest access token accepted, in bytes.
    pub max_token_bytes: usize,
    /// Most client connections held at once.
    pub max_connections: usize,
    /// Most handshakes waiting for the application's verdict at once.
    pub max_pending_handshakes: usize,
    /// Most connections of one user (`sub`) at once; 0: no limit.
    pub max_connections_per_user: usize,
    /// Most connections from one client IP address at once; 0: no limit.
    /// (Behind a proxy every client has the proxy's address: leave it off.)
    pub max_connections_per_address: usize,
    /// Most packets queued for one client before it is closed as too slow.
    pub max_queued_frames: usize,
    /// Longest a write to a client's WebSocket may take (a client that stops
    /// reading is closed after it, and its socket freed); also the longest
    /// the rest of a refused request's body is read and thrown away, so that
    /// its client gets the answer (see the `linger` module).
    pub write_timeout: Duration,
    /// How long the application server may take to accept a connection.
    pub connect_timeout: Duration,
    /// Clock skew allowed on `exp` and `nbf`.
    pub token_leeway: Duration,
    /// Per-hub settings by hub name.
    pub hubs: HashMap<String, HubSettings>,
    /// Hubs served by the built-in echo application.
    pub echo_hubs: Vec<String>,
    /// Browser origins allowed on the client endpoint (empty: any).
    pub allowed_origins: Vec<String>,
    /// How long an application server may be without a tunnel before its
    /// clients are closed (they then re-negotiate).
    pub server_grace: Duration,
    /// Largest tunnel frame accepted from an application server, in bytes.
    pub max_tunnel_frame: usize,
    /// Interval of the keep-alive status messages on every tunnel (the
    /// official SDK drops a tunnel that hears nothing for 120 s).
    pub tunnel_keepalive: Duration,
    /// Frames that may wait to be written to one tunnel; requests beyond
    /// wait for room, replies beyond close the tunnel as stuck.
    pub tunnel_queue_frames: usize,
    /// Timeouts and caps on connections, above all those not yet past the
    /// gate (see [`crate::listener`]).
    pub connection_limits: ConnectionLimits,
    /// Close connections whose token has expired, this long after `exp`,
    /// unless the client refreshes it in band (default: `None`, tokens are
    /// checked at the handshake only). Per hub in [`HubSettings`].
    pub token_expiry: Option<Duration>,
    /// Most revocations one hub keeps at once (each is forgotten when the
    /// tokens it covers expire).
    pub max_revocations: usize,
    /// The longest lifetime client tokens are minted with: how long a
    /// revocation is kept when the expiry of the tokens it covers is unknown
    /// (a `jti` revoked without its `exp`, every token of a user).
    pub revocation_ttl: Duration,
    /// Bytes and packets one client may have waiting for its application
    /// server (which answers one event at a time) before it is closed.
    pub max_app_backlog_bytes: usize,
    /// See `max_app_backlog_bytes`.
    pub max_app_backlog_packets: usize,
    /// Over how long a drain closes the live clients, in spread-out batches
    /// (see [`crate::drain`]); zero closes them all at once.
    pub drain_period: Duration,
    /// The longest a drain may take, from the shutdown signal to
    /// [`Gateway::serve`] returning; must exceed `drain_period`.
    pub drain_timeout: Duration,
    // -- Operations: metrics and the operator's page (issue #15) --
    /// `GET /metrics` (off unless enabled).
    pub metrics: MetricsConfig,
    /// The operator's page `/admin` (off unless enabled).
    pub admin: AdminConfig,
    /// Serve HTTPS and WSS with this certificate instead of plain HTTP and
    /// WS (default: plain).
    pub tls: Option<TlsConfig>,
    // -- Cluster (issue #13) --
    /// Join a cluster of gateway nodes over Redis (default: alone). Its
    /// `node.advertise` may have port 0: it is then the bound port.
    pub cluster: Option<portcullis_cluster::ClusterConfig>,
}

impl GatewayConfig {
    /// Defaults for `listen` and `keys`: Engine.IO's usual 25 s / 20 s
    /// heartbeat and 1 MB payloads.
    pub fn new(listen: SocketAddr, access_keys: AccessKeys) -> Self {
        GatewayConfig {
            listen,
            access_keys,
            allow_anonymous: false,
            public_endpoint: None,
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            max_token_bytes: 8 * 1024,
            max_connections: 100_000,
            max_pending_handshakes: 1024,
            max_connections_per_user: 100,
            max_connections_per_address: 0,
            max_queued_frames: 4096,
            write_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(30),
            token_leeway: Duration::from_secs(30),
            hubs: HashMap::new(),
            echo_hubs: Vec::new(),
            allowed_origins: Vec::new(),
            server_grace: Duration::from_secs(30),
            max_tunnel_frame: 16 * 1024 * 1024,
            tunnel_keepalive: Duration::from_secs(30),
            tunnel_queue_frames: 65_536,
            connection_limits: ConnectionLimits::default(),
            token_expiry: None,
            max_revocations: 100_000,
            revocation_ttl: Duration::from_secs(24 * 3600),
            max_app_backlog_bytes: 4 * 1024 * 1024,
            max_app_backlog_packets: 4096,
            drain_period: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            metrics: MetricsConfig::default(),
            admin: AdminConfig::default(),
            tls: None,
            cluster: None,
        }
    }
}

/// Bytes read from a client's WebSocket at a time (see
/// [`GatewayState::configure_websocket`]).
const WEBSOCKET_READ_BUFFER: usize = 1024;

/// State shared by every request.
pub(crate) struct GatewayState {
    pub config: GatewayConfig,
    pub hubs: Hubs,
    pub cors: CorsPolicy,
    pub tokens: Arc<Tokens>,
    pub tunnels: Tunnels,
    pub admission: Arc<Admission>,
    pub drain: Drain,
    /// Login sessions of the operator's page, when it is enabled.
    pub admin_sessions: Option<Sessions>,
    /// Bumped by [`Gateway::reload_tls`]; every certificate watcher (one per
    /// `serve`) reloads when it changes.
    pub tls_reload: watch::Sender<u64>,
}

impl GatewayState {
    /// Applies the gateway's WebSocket limits: small buffers (idle connections
    /// are mostly buffers) and the payload limit.
    ///
    /// The read buffer is allocated per connection for its whole life, so it
    /// is kept at 1 KiB: Socket.IO messages from clients are mostly smaller,
    /// and a larger frame still arrives whole (tungstenite reserves its full
    /// length once the header is read), in 1 KiB reads.
    pub(crate) fn configure_websocket(
        &self,
        upgrade: WebSocketUpgrade,
        max_payload: u64,
    ) -> WebSocketUpgrade {
        let max = usize::try_from(max_payload).unwrap_or(usize::MAX);
        upgrade
            .read_buffer_size(WEBSOCKET_READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(max)
            .max_frame_size(max)
    }
}

/// The gateway: build it from a [`GatewayConfig`], attach handlers to hubs,
/// then [`Gateway::serve`].
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use portcullis_auth::AccessKeys;
/// use portcullis_gateway::{Gateway, GatewayConfig};
///
/// let config = GatewayConfig::new("127.0.0.1:8080".parse().unwrap(), AccessKeys::generate());
/// let gateway = Gateway::new(config);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// println!("{}", gateway.connection_string(listener.local_addr()?));
/// gateway.serve(listener, std::future::pending()).await
/// # }
/// ```
#[derive(Clone)]
pub struct Gateway {
    state: Arc<GatewayState>,
}

impl Gateway {
    /// A gateway with `config`; hubs named in `config.echo_hubs` get the echo
    /// application attached.
    pub fn new(config: GatewayConfig) -> Self {
        let verifier = ClientTokenVerifier::new(VerifierConfig {
            keys: config.access_keys.clone(),
            leeway_secs: config.token_leeway.as_secs(),
            max_token_bytes: config.max_token_bytes,
            public_endpoint: config.public_endpoint.clone(),
        });
        let tokens = Arc::new(Tokens::new(verifier));
        let default_settings = HubSettings {
            allow_anonymous: config.allow_anonymous,
            token_expiry: config.token_expiry,
        };
        let metrics = Arc::new(Metrics::new());
        let hubs = Hubs::with_metrics(default_settings, config.hubs.clone(), metrics)
            .with_token_checks(
                tokens.clone(),
                config.max_revocations,
                config.revocation_ttl,
            );
        if let Some(cluster) = &config.cluster {
            hubs.set_node(cluster.node.id.clone());
        }
        for name in &config.echo_hubs {
            hubs.get_or_create(name)
                .attach(Arc::new(EchoHandler::new(&config)));
        }
        let cors = CorsPolicy {
            allowed_origins: config.allowed_origins.clone(),
        };
        let tunnels = Tunnels::new(TunnelSettings {
            access_keys: config.access_keys.all().to_vec(),
            origin_host: config
                .public_endpoint
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| config.listen.ip().to_string()),
            grace: config.server_grace,
            backlog: crate::tunnel::BacklogLimits {
                max_bytes: config.max_app_backlog_bytes,
                max_packets: config.max_app_backlog_packets,
            },
        });
        let admission = Admission::new(AdmissionLimits {
            max_connections: config.max_connections,
            max_pending_handshakes: config.max_pending_handshakes,
            max_connections_per_user: config.max_connections_per_user,
            max_connections_per_address: config.max_connections_per_address,
        });
        let admin_sessions = config
            .admin
            .enabled
            .then(|| Sessions::new(config.admin.session_ttl, config.admin.max_sessions));
        Gateway {
            state: Arc::new(GatewayState {
                tokens,
                admin_sessions,
                admission,
                config,
                hubs,
                cors,
                tunnels,
                drain: Drain::default(),
                tls_reload: watch::Sender::new(0),
            }),
        }
    }

    /// The gateway's hubs.
    pub fn hubs(&self) -> &Hubs {
        &self.state.hubs
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.state.config
    }

    /// The gateway's metrics (what `/metrics` renders).
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.state.hubs.metrics()
    }

    /// The connection string application servers use: the public endpoint
    /// when configured, else `http://<local_addr>` (`https://` with TLS).
    pub fn connection_string(&self, local_addr: SocketAddr) -> ConnectionString {
        let endpoint = self
            .state
            .config
            .public_endpoint
            .clone()
            .unwrap_or_else(|| {
                let scheme = if self.state.config.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                url::Url::parse(&format!("{scheme}://{local_addr}/"))
                    .expect("a socket address is a valid host")
            });
        ConnectionString::new(endpoint, self.state.config.access_keys.primary())
    }

    /// The HTTP routes of the gateway, all under fixed paths
    /// (`/clients/socketio/hubs/{hub}`, `/server/tunnel`, `/api/...`,
    /// `/health`, `/ready`) and without a fallback, so that an application merges
    /// them into its own router, fallback and all:
    /// `my_routes.merge(gateway.router())`. (axum refuses to merge two
    /// routers that both have a fallback.) [`serve`](Self::serve) adds the
    /// gateway's JSON 404 for everything else.
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        // -- Operations (issue #15): each only when enabled.
        let metrics = &self.state.config.metrics;
        if metrics.enabled && metrics.listen.is_none() {
            router = router.route("/metrics", get(crate::metrics::endpoint));
        }
        if self.state.config.admin.enabled {
            router = router.merge(crate::admin::routes());
        }
        router
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/clients/socketio/hubs/{hub}", any(engine::client_endpoint))
            .route(
                "/clients/socketio/hubs/{hub}/",
                any(engine::client_endpoint),
            )
            .route("/server/tunnel", get(crate::tunnel::tunnel_endpoint))
            .route("/api/{*path}", any(crate::tunnel::rest_endpoint))
            // Only the methods of the routes above: not a router fallback.
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(self.state.clone())
    }

    /// The connection string for the configured listen address (see
    /// [`connection_string`](Self::connection_string)).
    pub fn local_connection_string(&self) -> ConnectionString {
        self.connection_string(self.state.config.listen)
    }

    /// Binds the configured listen address and serves an application's
    /// router that includes the gateway's ([`router`](Self::router)), with
    /// the gateway's limits on connections (header timeout, idle timeout,
    /// pre-gate caps), until `shutdown` resolves; then closes every client
    /// connection. The embedded mode's one call:
    /// `gateway.serve_app(my_routes.merge(gateway.router()), shutdown)`.
    ///
    /// With [`GatewayConfig::tls`] every connection is TLS (HTTPS and WSS);
    /// a certificate or key that does not load is an error before anything
    /// is accepted.
    pub async fn serve_app(
        self,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.state.config.listen).await?;
        self.serve_router(listener, app, shutdown).await
    }

    /// Re-reads the TLS certificate and key now (the binary calls this on
    /// SIGHUP), as the watcher does when the files change: new handshakes
    /// get the new certificate, live connections are not touched, and a bad
    /// file keeps the current certificate (the outcome is logged). Does
    /// nothing without TLS or before serving.
    pub fn reload_tls(&self) {
        if self.state.config.tls.is_some() {
            self.state.tls_reload.send_modify(|requests| *requests += 1);
        }
    }

    /// Serves until `shutdown` resolves, then drains (see [`crate::drain`]):
    /// not ready, clients closed in batches over `drain_period` so they
    /// reconnect elsewhere, tunnels asked to reconnect; returns when all are
    /// gone, or at the latest `drain_timeout` after `shutdown` resolved.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router().fallback(not_found);
        self.serve_router(listener, router, shutdown).await
    }

    async fn serve_router(
        self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // `/metrics` on its own address, when configured, keeps answering
        // through the drain and stops with the gateway.
        let stopping = tokio_util::sync::CancellationToken::new();
        let cluster = self.join_cluster(listener.local_addr()?).await?;
        let metrics_server = self.serve_metrics_apart(stopping.clone()).await?;
        let state = self.state;
        let limits = state.config.connection_limits.clone();
        // Loaded here, not in `new`: a bad file is an error of `serve`.
        let (tls, _watcher) = match &state.config.tls {
            Some(config) => {
                let store = CertificateStore::load(config).map_err(std::io::Error::other)?;
                let server_config =
                    tls::server_config(store.clone()).map_err(std::io::Error::other)?;
                let watcher = tokio::spawn(tls::watch(
                    store,
                    config.reload_interval,
                    state.tls_reload.subscribe(),
                ));
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
                (Some(acceptor), Some(AbortOnDropHandle::new(watcher)))
            }
            None => (None, None),
        };
        // The listener keeps answering (`/ready` 503, handshakes 503) until
        // the drain is done.
        let drained = {
            let state = state.clone();
            async move {
                shutdown.await;
                crate::drain::run(&state).await;
            }
        };
        let serving = async {
            crate::listener::serve(listener, router, limits, tls, drained).await;
            // The last close frames of upgraded WebSockets, which the
            // listener no longer tracks.
            let sockets = state.drain.sockets();
            sockets.close();
            sockets.wait().await;
        };
        let deadline = async {
            state.drain.started().await;
            tokio::time::sleep(state.config.drain_timeout).await;
        };
        tokio::select! {
            () = serving => {}
            () = deadline => {
                tracing::warn!(
                    timeout_ms = state.config.drain_timeout.as_millis() as u64,
                    connections = state.hubs.connection_count(),
                    "drain timeout reached; stopping with connections still open"
                );
            }
        }
        stopping.cancel();
        if let Some(cluster) = cluster {
            cluster.leave().await;
        }
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        Ok(())
    }

    /// Joins the configured cluster before anything is served (a node that
    /// cannot reach Redis at start does not start), advertising the bound
    /// port when the configured one is 0.
    async fn join_cluster(
        &self,
        local_addr: SocketAddr,
    ) -> std::io::Result<Option<portcullis_cluster::Cluster>> {
        let Some(mut config) = self.state.config.cluster.clone() else {
            return Ok(None);
        };
        if let Some(cluster) = self.state.hubs.cluster() {
            return Ok(Some(cluster.clone()));
        }
        if config.node.advertise.port() == Some(0) {
            let _ = config.node.advertise.set_port(Some(local_addr.port()));
        }
        let peer = Arc::new(crate::peer::Peer(Arc::downgrade(&self.state)));
        let cluster = portcullis_cluster::Cluster::join(config, peer)
            .await
            .map_err(|e| std::io::Error::other(format!("cannot join the cluster: {e}")))?;
        self.state.hubs.set_cluster(cluster.clone());
        self.metrics()
            .register_collector(Box::new(crate::metrics::ClusterFigures(cluster.clone())));
        Ok(Some(cluster))
    }

    /// With `metrics.listen`, serves `/metrics` alone on that address (with
    /// the same connection limits) until `stopping`.
    async fn serve_metrics_apart(
        &self,
        stopping: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<Option<tokio::task::JoinHandle<()>>> {
        let config = &self.state.config.metrics;
        let Some(addr) = config.listen.filter(|_| config.enabled) else {
            return Ok(None);
        };
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(local = %listener.local_addr().unwrap_or(addr), "metrics listening");
        let router = Router::new()
            .route("/metrics", get(crate::metrics::endpoint))
            .fallback(not_found)
            .with_state(self.state.clone());
        let limits = self.state.config.connection_limits.clone();
        Ok(Some(tokio::spawn(async move {
            crate::listener::serve(listener, router, limits, None, stopping.cancelled_owned())
                .await;
        })))
    }

    /// Whether the gateway accepts new clients (false once it drains).
    pub fn is_ready(&self) -> bool {
        !self.state.drain.is_draining()
    }
}

/// `GET /ready`: `200` while the gateway accepts new clients, `503` (with
/// `Retry-After`) once it drains, for load balancers and orchestrators.
async fn ready(State(state): State<Arc<GatewayState>>) -> Response {
    if state.drain.is_draining() {
        let body = serde_json::json!({
            "status": "draining",
            "message": "this gateway is shutting down and accepts no new clients; connect to another node",
        });
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(crate::drain::RETRY_AFTER_SECS),
        );
        return response;
    }
    Json(serde_json::json!({ "status": "ready" })).into_response()
}

async fn health(State(state): State<Arc<GatewayState>>) -> Json<serde_json::Value> {
    let mut health = serde_json::json!({
        "status": "ok",
        "ready": !state.drain.is_draining(),
        "version": env!("CARGO_PKG_VERSION"),
        "connections": state.hubs.connection_count(),
        "hubs": state.hubs.len(),
    });
    if let Some(cluster) = state.hubs.cluster() {
        let counters = cluster.counters();
        let read = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        health["node"] = cluster.node_id().as_str().into();
        health["nodes"] = cluster.members().len().into();
        health["cluster"] = serde_json::json!({
            "published": read(&counters.published),
            "undelivered": read(&counters.undelivered),
            "received": read(&counters.received),
            "dropped_inbound": read(&counters.dropped_inbound),
            "missing_answers": read(&counters.missing_answers),
        });
    }
    Json(health)
}

async fn method_not_allowed(method: http::Method, uri: http::Uri) -> Response {
    let body = serde_json::json!({
        "code": 405,
        "message": format!("{method} is not allowed on {}; /health answers GET, the tunnel a WebSocket GET", uri.path()),
    });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

async fn not_found() -> Response {
    let body = serde_json::json!({
        "code": 404,
        "message": "no such endpoint: clients connect to /clients/socketio/hubs/{hub}; status is at /health and /ready",
    });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

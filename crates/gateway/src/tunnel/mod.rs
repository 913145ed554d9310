//! The server tunnel (`/server/tunnel`), through which application servers
//! (the official Node SDK, or the Rust server crate) serve a hub's clients,
//! and the same REST operations over plain HTTP (`/api/hubs/...`).

mod client;
mod hub;
mod rebalance;
mod rest;
pub(crate) use rest::invoke_here;
mod socket;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode, header};
use portcullis_tunnel::rest::parse_rest;
use portcullis_tunnel::{HttpRequest, HttpResponse, TunnelMessage};

pub(crate) use client::BacklogLimits;
pub(crate) use hub::{TunnelHub, TunnelSettings};
use rest::{RestOutcome, Target};
use socket::TunnelSocket;

use crate::engine::EngineError;
use crate::hub::{ConnectionId, Hubs, is_valid_hub_name};
use crate::metrics::{REST_INVALID, rest_operation};
use crate::server::GatewayState;

/// The tunnel handlers of the gateway's hubs.
pub(crate) struct Tunnels {
    settings: TunnelSettings,
    by_hub: Mutex<HashMap<String, Arc<TunnelHub>>>,
    socket_ids: AtomicU64,
}

impl Tunnels {
    pub fn new(settings: TunnelSettings) -> Self {
        Tunnels {
            settings,
            by_hub: Mutex::new(HashMap::new()),
            socket_ids: AtomicU64::new(1),
        }
    }

    /// The tunnel handler of `name`, if application servers ever attached.
    pub fn get(&self, name: &str) -> Option<Arc<TunnelHub>> {
        self.lock().get(&name.to_lowercase()).cloned()
    }

    /// Every hub's tunnel handler.
    pub fn all(&self) -> Vec<Arc<TunnelHub>> {
        self.lock().values().cloned().collect()
    }

    /// The tunnel handler of `name`, attached to the hub on first use. Fails
    /// if the hub is served by something else (the echo application).
    fn attach(&self, hubs: &Hubs, name: &str) -> Result<Arc<TunnelHub>, EngineError> {
        let hub = hubs.get_or_create(name);
        let mut by_hub = self.lock();
        if let Some(tunnel) = by_hub.get(hub.name()) {
            return Ok(tunnel.clone());
        }
        if hub.handler().is_some() {
            return Err(EngineError::new(
                StatusCode::CONFLICT,
                crate::engine::ErrorCode::BadRequest,
                format!("hub '{name}' is served by the built-in echo application; use another hub"),
            ));
        }
        let tunnel = Arc::new(TunnelHub::new(hub.clone(), self.settings.clone()));
        hub.attach(Arc::new(hub::TunnelHandler(tunnel.clone())));
        by_hub.insert(hub.name().to_owned(), tunnel.clone());
        Ok(tunnel)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TunnelHub>>> {
        self.by_hub.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The application servers attached to hub `name` now: each server's
    /// id (its tunnel token's `sub`) and its number of tunnels.
    pub fn servers_of(&self, name: &str) -> Vec<(String, usize)> {
        self.get(name).map(|t| t.servers()).unwrap_or_default()
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// `GET /server/tunnel?hub=H&access_token=JWT`: an application server attaches.
pub(crate) async fn tunnel_endpoint(
    State(state): State<Arc<GatewayState>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Response {
    if state.drain.is_draining() {
        // An application server that reconnects reaches another node.
        return crate::engine::draining();
    }
    let mut upgrade = upgrade;
    if let Some(relayed) = relay_to_target(&state, upgrade.as_ref().ok(), &request) {
        let cluster = state
            .hubs
            .cluster()
            .expect("checked by relay_to_target")
            .clone();
        let (uri, headers) = (request.uri().clone(), request.headers().clone());
        let client = upgrade.expect("checked by relay_to_target");
        let relay = crate::engine::forward::relay_tunnel(
            &state, &cluster, &relayed, client, &uri, &headers,
        );
        match relay.await {
            Ok(response) => return response,
            // The target just died: serve the tunnel here.
            Err(client) => upgrade = Ok(client),
        }
    }
    match attach_server(&state, upgrade, &request) {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(status = error.status.as_u16(), reason = %error.message, "application server refused");
            error.into_response()
        }
    }
}

/// The live node a tunnel names with `&target=`, when it is another one
/// and the tunnel came straight from an application server (not relayed
/// already). A tunnel naming a dead or unknown node is served here: the
/// server keeps a working tunnel, and this node's clients reach it.
fn relay_to_target(
    state: &GatewayState,
    upgrade: Option<&WebSocketUpgrade>,
    request: &Request,
) -> Option<portcullis_cluster::NodeInfo> {
    let cluster = state.hubs.cluster()?;
    upgrade?;
    let target = query_param(request.uri().query().unwrap_or(""), "target")?;
    if target == cluster.node_id().as_str()
        || request
            .headers()
            .contains_key(&crate::engine::forward::FORWARDED_BY)
    {
        return None;
    }
    cluster.members().get(&target).cloned()
}

fn attach_server(
    state: &Arc<GatewayState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: &Request,
) -> Result<Response, EngineError> {
    let query = request.uri().query().unwrap_or("");
    let hub = query_param(query, "hub").unwrap_or_default();
    if !is_valid_hub_name(&hub) {
        return Err(EngineError::bad_request(
            "the tunnel needs ?hub=NAME with 1 to 128 letters, digits, '_', '-' or '.'",
        ));
    }
    let query_token = query_param(query, "access_token");
    let token =
        crate::gate::token_of(query_token.as_deref(), request.headers()).ok_or_else(|| {
            EngineError::unauthorized(
                "the tunnel needs ?access_token=<jwt> signed with an access key",
            )
        })?;
    let claims = state
        .tokens
        .verifier()
        .verify_tunnel(token, &hub)
        .map_err(|e| EngineError::unauthorized(e.to_string()))?;
    // The SDK signs with a `sub` per process, stable across reconnects.
    let server: Arc<str> = match claims.user_id() {
        Some(sub) => Arc::from(sub),
        None => Arc::from(ConnectionId::generate().as_str()),
    };
    let upgrade = upgrade.map_err(|_| {
        EngineError::bad_request("the tunnel is a WebSocket: send an upgrade request")
    })?;
    let tunnel = state.tunnels.attach(&state.hubs, &hub)?;
    // Echo the first offered subprotocol (clients fail on a missing echo).
    let offered = request
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_owned());
    let upgrade = match offered {
        Some(protocol) if !protocol.is_empty() => upgrade.protocols([protocol]),
        _ => upgrade,
    };
    let socket_id = state.tunnels.socket_ids.fetch_add(1, Ordering::Relaxed);
    // A tunnel opened without `target` is the server's first to this
    // cluster: it is told to attach to every other node as well. One with a
    // target came from such a message and is told nothing more.
    let rebalance = match query_param(query, "target") {
        None => state.hubs.cluster().cloned(),
        Some(_) => None,
    };
    let sockets = state.drain.sockets().clone();
    let limits = TunnelLimits {
        max_frame: state.config.max_tunnel_frame,
        keepalive: state.config.tunnel_keepalive,
        queue: state.config.tunnel_queue_frames,
    };
    Ok(upgrade
        .max_message_size(limits.max_frame)
        .max_frame_size(limits.max_frame)
        .on_upgrade(move |ws| {
            sockets.track_future(serve_tunnel(
                ws, tunnel, server, socket_id, limits, rebalance,
            ))
        }))
}

/// Per-tunnel settings.
#[derive(Debug, Clone, Copy)]
struct TunnelLimits {
    max_frame: usize,
    keepalive: std::time::Duration,
    queue: usize,
}

async fn serve_tunnel(
    ws: WebSocket,
    tunnel: Arc<TunnelHub>,
    server: Arc<str>,
    socket_id: u64,
    limits: TunnelLimits,
    rebalance: Option<portcullis_cluster::Cluster>,
) {
    let (sink, mut stream) = ws.split();
    let socket = TunnelSocket::spawn(socket_id, sink, limits.keepalive, limits.queue);
    socket.send(&TunnelMessage::ConnectionConnected {
        connection_id: ConnectionId::generate().to_string(),
        user_id: None,
        reconnection_token: None,
    });
    tunnel.add_socket(&server, socket.clone());
    tracing::info!(hub = %tunnel.hub.name(), %server, "application server attached");
    let _rebalancer = rebalance.map(|cluster| {
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(rebalance::to_every_node(
            cluster,
            socket.clone(),
        )))
    });
    loop {
        let message = tokio::select! {
            _ = socket.closed.cancelled() => break,
            message = stream.next() => message,
        };
        let bytes = match message {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_))) => continue,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
        };
        match portcullis_tunnel::decode_with_limit(&bytes, limits.max_frame) {
            Ok(TunnelMessage::HttpResponse(response)) => socket.on_response(response),
            Ok(TunnelMessage::HttpRequest(request)) => {
                handle_request(&tunnel, &socket, request).await
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(hub = %tunnel.hub.name(), %server, %error, "invalid tunnel frame dropped")
            }
        }
    }
    socket.close();
    tunnel.remove_socket(&server, socket_id);
    tracing::info!(hub = %tunnel.hub.name(), %server, "tunnel closed");
}

/// A REST call from the application server, answered on the same tunnel.
/// Runs inline so the calls of one tunnel apply in order; an `:invoke`
/// stream continues in its own task.
async fn handle_request(tunnel: &Arc<TunnelHub>, socket: &Arc<TunnelSocket>, request: HttpRequest) {
    let metrics = tunnel.hub.metrics_registry();
    let call = match parse_rest(&request.method, &request.url) {
        Ok(call) if call.hub().eq_ignore_ascii_case(tunnel.hub.name()) => call,
        Ok(call) => {
            metrics.rest_request(rest_operation(&call), 403);
            socket.send(&reply(
                &request,
                403,
                Some("a tunnel may only operate on its own hub".into()),
            ));
            return;
        }
        Err(error) => {
            metrics.rest_request(REST_INVALID, error.status_code());
            socket.send(&reply(
                &request,
                error.status_code(),
                Some(error.to_string()),
            ));
            return;
        }
    };
    let body = request.content.clone().unwrap_or_default();
    let target = Target {
        hub: tunnel.hub.clone(),
        tunnel: Some(tunnel.clone()),
    };
    let operation = rest_operation(&call);
    // The first poll applies the call here and queues it for the other
    // nodes, in this tunnel's order; only its answer may wait (for Redis,
    // or the owner node), and it waits in its own task so the next call of
    // the tunnel goes on.
    let mut running = Box::pin(rest::execute(target, call, body));
    match futures_util::poll!(running.as_mut()) {
        std::task::Poll::Ready(outcome) => answer(tunnel, socket, request, operation, outcome),
        std::task::Poll::Pending => {
            let (tunnel, socket) = (tunnel.clone(), socket.clone());
            tokio::spawn(async move {
                let outcome = running.await;
                answer(&tunnel, &socket, request, operation, outcome);
            });
        }
    }
}

/// Sends a REST call's answer back on its tunnel.
fn answer(
    tunnel: &Arc<TunnelHub>,
    socket: &Arc<TunnelSocket>,
    request: HttpRequest,
    operation: &'static str,
    outcome: RestOutcome,
) {
    let metrics = tunnel.hub.metrics_registry();
    match outcome {
        RestOutcome::Done(status, body) => {
            metrics.rest_request(operation, status);
            let mut response = HttpResponse::reply_to(&request, status);
            if !body.is_empty() {
                response = response.with_content(body);
            }
            // An answer too large for a frame still gets one, so the call
            // does not hang.
            if !socket.send(&TunnelMessage::HttpResponse(response)) {
                socket.send(&reply(
                    &request,
                    500,
                    Some("the answer exceeds a tunnel frame".into()),
                ));
            }
        }
        RestOutcome::Stream(mut lines) => {
            metrics.rest_request(operation, 200);
            let head = HttpResponse::reply_to(&request, 200).with_not_completed(true);
            socket.send(&TunnelMessage::HttpResponse(head));
            let socket = socket.clone();
            tokio::spawn(async move {
                while let Some(line) = lines.recv().await {
                    let chunk = HttpResponse::reply_to(&request, 200)
                        .with_not_completed(true)
                        .with_content(line);
                    socket.send(&TunnelMessage::HttpResponse(chunk));
                }
                socket.send(&TunnelMessage::HttpResponse(HttpResponse::reply_to(
                    &request, 200,
                )));
            });
        }
    }
}

fn reply(request: &HttpRequest, status: u16, message: Option<String>) -> TunnelMessage {
    let mut response = HttpResponse::reply_to(request, status);
    if let Some(message) = message {
        let body = serde_json::json!({ "code": status, "message": message });
        response = response.with_content(body.to_string());
    }
    TunnelMessage::HttpResponse(response)
}

/// `/api/hubs/{hub}/...`: the REST operations over plain HTTP, for operators
/// and other backends, authenticated with a Bearer JWT signed by an access
/// key whose audience names this hub's API (`…/api/hubs/{hub}[/…]`).
pub(crate) async fn rest_endpoint(
    State(state): State<Arc<GatewayState>>,
    request: Request,
) -> Response {
    let mut operation = REST_INVALID;
    // A refused call's body is read before the answer goes (see `linger`).
    let (request, unread) = crate::linger::watch(request);
    let response = match rest_over_http(&state, request, &mut operation).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let metrics = state.hubs.metrics();
    metrics.rest_request(operation, response.status().as_u16());
    unread.read_rest(&state).await;
    response
}

async fn rest_over_http(
    state: &Arc<GatewayState>,
    request: Request,
    operation: &mut &'static str,
) -> Result<Response, EngineError> {
    let token = crate::gate::token_of(None, request.headers()).ok_or_else(|| {
        EngineError::unauthorized(
            "the REST API needs an Authorization: Bearer <jwt> header signed with an access key",
        )
    })?;
    let method = request.method().as_str().to_owned();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let call = parse_rest(&method, &path_and_query).map_err(|e| {
        let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::BAD_REQUEST);
        EngineError::new(status, crate::engine::ErrorCode::BadRequest, e.to_string())
    })?;
    *operation = rest_operation(&call);
    if !is_valid_hub_name(call.hub()) {
        return Err(EngineError::bad_request(
            "invalid hub name: use 1 to 128 letters, digits, '_', '-' or '.'",
        ));
    }
    // The token must be for this hub's API (as the hosted service checks the
    // request URL): a token for another hub, or a client token, is refused.
    state
        .tokens
        .verifier()
        .verify_api(token, call.hub())
        .map_err(|e| EngineError::unauthorized(e.to_string()))?;
    let limit = usize::try_from(state.config.max_payload).unwrap_or(usize::MAX);
    let body = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            EngineError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                crate::engine::ErrorCode::BadRequest,
                format!("the body exceeds --max-payload ({limit} bytes)"),
            )
        })?;
    let hub = state.hubs.get_or_create(call.hub());
    let tunnel = state.tunnels.get(call.hub());
    let target = Target { hub, tunnel };
    Ok(match rest::execute(target, call, body).await {
        RestOutcome::Done(status, body) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, body.clone()).into_response();
            if !body.is_empty() {
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            response
        }
        RestOutcome::Stream(lines) => {
            let stream = tokio_stream_from(lines);
            let mut response = Response::new(Body::from_stream(stream));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            response
        }
    })
}

fn tokio_stream_from(
    mut lines: tokio::sync::mpsc::Receiver<bytes::Bytes>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> {
    futures_util::stream::poll_fn(move |cx| lines.poll_recv(cx).map(|line| line.map(Ok)))
}

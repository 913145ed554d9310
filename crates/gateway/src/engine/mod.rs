//! The client endpoint `/clients/socketio/hubs/{hub}`: Engine.IO v4 over
//! long-polling and WebSocket, with upgrade, behind the gate.

mod cors;
mod error;
pub(crate) mod forward;
mod inbound;
mod polling;
mod query;
mod websocket;

use std::sync::Arc;

use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use portcullis_protocol::engine::{OpenParams, PROTOCOL_VERSION};

pub use cors::CorsPolicy;
pub use error::{EngineError, ErrorCode};

use crate::admission::{Applicant, Ticket};
use crate::gate;
use crate::hub::{
    Accept, ConnectRequest, Connection, DisconnectReason, Ending, Lease, LocalHub, SessionParams,
    Transport, TransportKind,
};
use crate::metrics::RefusalReason;
use crate::server::GatewayState;
use query::EngineQuery;

/// Serves every request to the client endpoint.
pub(crate) async fn client_endpoint(
    State(state): State<Arc<GatewayState>>,
    Path(hub): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Response {
    // A refused POST's body is read before the answer goes, so its client
    // sees the answer (see `linger`).
    let (request, unread) = crate::linger::watch(request);
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = if request.method() == Method::OPTIONS {
        state.cors.preflight(request.headers())
    } else if !crate::hub::is_valid_hub_name(&hub) {
        EngineError::bad_request("invalid hub name: use 1 to 128 letters, digits, '_', '-' or '.'")
            .into_response()
    } else {
        match route(&state, &hub, upgrade, request).await {
            Ok(response) => response,
            Err(error) => {
                // The reason never contains the token (see `TokenError`).
                tracing::debug!(hub = %hub, status = error.status.as_u16(), reason = %error.message, "client request refused");
                error.into_response()
            }
        }
    };
    state.cors.apply(origin.as_ref(), &mut response);
    unread.read_rest(&state).await;
    response
}

async fn route(
    state: &Arc<GatewayState>,
    hub: &str,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Result<Response, EngineError> {
    // The query borrows from a cheap clone of the URI, so `request` can move on.
    let uri = request.uri().clone();
    let raw_query = uri.query().unwrap_or("");
    let query = EngineQuery::parse(raw_query);
    match query.sid.as_deref() {
        // A draining gateway takes no new clients (before the gate: a
        // refusal that costs nothing); live sessions go on until closed.
        None if state.drain.is_draining() => Ok(draining()),
        None => {
            let transport = transport_of(&query).ok();
            let outcome = handshake(state, hub, &query, raw_query, upgrade, request).await;
            count_handshake(state, hub, transport, &outcome);
            outcome
        }
        Some(sid) => match forward::owned_elsewhere(state, sid) {
            // Boxed: forwarding's future is about 12 KB, and every request's
            // future (moved, then boxed by axum) would carry it otherwise.
            Some(cluster) => {
                Box::pin(forward::to_owner(state, cluster, sid, upgrade, request)).await
            }
            None => {
                if state.hubs.cluster().is_some() {
                    // Refuses a forward whose MAC is wrong.
                    forward::forwarded(state, request.headers())?;
                }
                existing_session(state, hub, sid, &query, upgrade, request).await
            }
        },
    }
}

/// Counts a handshake's outcome under its hub (refusals of hubs that do not
/// exist under one shared label, so invented names add no series).
fn count_handshake(
    state: &GatewayState,
    hub: &str,
    transport: Option<TransportKind>,
    outcome: &Result<Response, EngineError>,
) {
    let hub = state.hubs.get(hub);
    match (outcome, transport, &hub) {
        (Ok(_), Some(transport), Some(hub)) => hub.metrics().accepted(transport),
        (Ok(_), _, _) => {}
        (Err(error), _, Some(hub)) => hub.metrics().handshakes().refused(error.refusal_reason()),
        (Err(error), _, None) => {
            let unknown = state.hubs.metrics().unknown_hub();
            unknown.refused(error.refusal_reason());
        }
    }
}

fn transport_of(query: &EngineQuery<'_>) -> Result<TransportKind, EngineError> {
    match query.transport.as_deref() {
        Some("polling") => Ok(TransportKind::Polling),
        Some("websocket") => Ok(TransportKind::WebSocket),
        _ => Err(EngineError::unknown_transport()),
    }
}

/// A request without `sid`: gate, protocol checks, the handler's verdict,
/// then the session.
async fn handshake(
    state: &Arc<GatewayState>,
    hub_name: &str,
    query: &EngineQuery<'_>,
    raw_query: &str,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Result<Response, EngineError> {
    let settings = state.hubs.settings_for(hub_name);
    let token = gate::token_of(query.access_token.as_deref(), request.headers());
    let admitted = gate::admit(state, hub_name, &settings, token)?;

    let transport = transport_of(query)?;
    if query.eio.as_deref() != Some(PROTOCOL_VERSION) {
        return Err(EngineError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedProtocolVersion,
            "Unsupported protocol version: this gateway speaks Engine.IO 4 (EIO=4)",
        ));
    }
    if request.method() != Method::GET {
        return Err(EngineError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadHandshakeMethod,
            "Bad handshake method: a handshake is a GET request",
        ));
    }
    let upgrade = match transport {
        TransportKind::WebSocket => Some(upgrade.map_err(|_| {
            EngineError::bad_request("transport=websocket needs a WebSocket upgrade request")
        })?),
        TransportKind::Polling => None,
    };
    let hub = state
        .hubs
        .get(hub_name)
        .filter(|hub| hub.handler().is_some())
        .ok_or_else(|| no_application(hub_name))?;
    if let Some(cluster) = state.hubs.cluster() {
        // Subscribed before the first connection of the hub is registered,
        // so no operation of another node for it is missed.
        cluster.watch_hub(hub.name()).await;
    }
    let ticket = state.admission.admit(Applicant {
        user: admitted.claims.user_id().map(Arc::from),
        address: client_address(&request),
    })?;

    let connect = ConnectRequest {
        connection_id: state.hubs.new_connection_id(),
        hub: hub_name.to_owned(),
        claims: admitted.claims,
        query: query::all_pairs(raw_query),
        headers: request.headers().clone(),
        transport,
    };
    let connection = open_session(state, &hub, connect, admitted.token_fingerprint, ticket).await?;
    let open = open_packet(&connection, transport);
    Ok(match upgrade {
        None => polling::payload_response(open),
        Some(upgrade) => state
            .configure_websocket(upgrade, connection.params.max_payload)
            .on_upgrade({
                let sockets = state.drain.sockets().clone();
                move |socket| {
                    sockets.track_future(websocket::serve_new(socket, hub, connection, open))
                }
            }),
    })
}

/// The client's IP address, where the server loop recorded it.
fn client_address(request: &Request) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

/// The `503` of a handshake while the gateway drains, with `Retry-After`:
/// the client's retry (socket.io-client reconnects by itself) reaches
/// another node through the load balancer.
pub(crate) fn draining() -> Response {
    let mut response = EngineError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Forbidden,
        "this gateway is shutting down and accepts no new connections; retry (another node will take it)",
    )
    .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        http::HeaderValue::from(crate::drain::RETRY_AFTER_SECS),
    );
    response
}

fn no_application(hub: &str) -> EngineError {
    EngineError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Forbidden,
        format!(
            "no application server is attached to hub '{hub}'; start the application (or check its hub name) and retry"
        ),
    )
    .with_reason(RefusalReason::NoApplication)
}

/// Asks the handler and, if it accepts, registers the session. Runs in its own
/// task so a client that hangs up mid-way cannot leave the handler believing
/// in a connection the gateway never registered.
async fn open_session(
    state: &Arc<GatewayState>,
    hub: &LocalHub,
    request: ConnectRequest,
    token_fingerprint: Option<u64>,
    mut ticket: Ticket,
) -> Result<Arc<Connection>, EngineError> {
    let handler = hub.handler().ok_or_else(|| no_application(&request.hub))?;
    let state = state.clone();
    let hub = hub.clone();
    let task = tokio::spawn(async move {
        let id = request.connection_id.clone();
        let user_id = request.user_id().map(str::to_owned);
        let lease = match token_fingerprint {
            Some(_) => Lease::of(&request.claims, hub.settings().token_expiry),
            None => Lease::default(),
        };
        let transport = request.transport;
        let verdict =
            tokio::time::timeout(state.config.connect_timeout, handler.connect(&hub, request))
                .await;
        ticket.settled();
        let accept = match verdict {
            Ok(Ok(accept)) => accept,
            Ok(Err(refusal)) => {
                // A tunnel hub with no server attached refuses with 503.
                let reason = match refusal.status {
                    StatusCode::SERVICE_UNAVAILABLE => RefusalReason::NoApplication,
                    _ => RefusalReason::ApplicationRefused,
                };
                return Err(EngineError::new(
                    refusal.status,
                    ErrorCode::Forbidden,
                    refusal.message,
                )
                .with_reason(reason));
            }
            Err(_) => {
                return Err(EngineError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    ErrorCode::Forbidden,
                    "the application server did not answer the connect request in time; retry",
                )
                .with_reason(RefusalReason::ApplicationTimeout));
            }
        };
        let revoked = hub.revokes_lease(&lease, user_id.as_deref());
        let params = session_params(&state, &accept);
        let transport = match transport {
            TransportKind::Polling => Transport::Polling,
            TransportKind::WebSocket => Transport::WebSocket,
        };
        let connection = Arc::new(
            Connection::new(id, user_id.as_deref(), token_fingerprint, params, transport)
                .with_lease(lease),
        );
        connection.hold(ticket);
        hub.register(connection.clone());
        tracing::debug!(hub = %hub.name(), connection = %connection.id, "connection opened");
        handler.on_connected(&hub, &connection.id);
        if revoked {
            // Revoked while the application decided: the revocation closed
            // every holder it could see, and this one was not registered
            // yet. The handler hears it end like any other.
            hub.end(
                &connection,
                Ending::ByServer,
                DisconnectReason::TokenRevoked,
            );
            return Err(EngineError::unauthorized(crate::gate::REVOKED)
                .with_reason(RefusalReason::RevokedToken));
        }
        Ok(connection)
    });
    task.await.unwrap_or_else(|_| {
        Err(EngineError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::BadRequest,
            "the connect request failed inside the gateway; retry",
        )
        .with_reason(RefusalReason::Internal))
    })
}

fn session_params(state: &GatewayState, accept: &Accept) -> SessionParams {
    SessionParams {
        ping_interval: accept.ping_interval,
        ping_timeout: accept.ping_timeout,
        // The gateway's own limit caps whatever the handler asks for.
        max_payload: accept.max_payload.min(state.config.max_payload),
        heartbeat: accept.heartbeat,
        max_queued_frames: state.config.max_queued_frames,
        write_timeout: state.config.write_timeout,
    }
}

fn open_packet(connection: &Connection, transport: TransportKind) -> String {
    let upgrades = match transport {
        TransportKind::Polling => vec!["websocket".to_owned()],
        TransportKind::WebSocket => Vec::new(),
    };
    let params = OpenParams {
        sid: connection.id.to_string(),
        upgrades,
        ping_interval: connection.params.ping_interval.as_millis() as u64,
        ping_timeout: connection.params.ping_timeout.as_millis() as u64,
        max_payload: connection.params.max_payload,
    };
    format!("0{}", params.to_json())
}

/// How long a polling request waits for a probing WebSocket to handle the
/// frames it has received (see [`Connection::sync_with_probe`]).
const PROBE_SYNC_LIMIT: std::time::Duration = std::time::Duration::from_millis(250);

/// A request with `sid`: a poll, a POST, or an upgrade of a live session.
async fn existing_session(
    state: &Arc<GatewayState>,
    hub_name: &str,
    sid: &str,
    query: &EngineQuery<'_>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Result<Response, EngineError> {
    let transport = transport_of(query)?;
    let hub = state
        .hubs
        .get(hub_name)
        .ok_or_else(EngineError::unknown_sid)?;
    let Some(connection) = hub.connection(sid) else {
        let is_poll = transport == TransportKind::Polling && request.method() == Method::GET;
        return closed_session(&hub, sid, is_poll).await;
    };
    gate::check_session_token(
        state,
        &connection,
        gate::token_of(query.access_token.as_deref(), request.headers()),
    )?;
    if connection.heartbeat_overdue(std::time::Instant::now()) {
        // The heartbeat timer may run a little late; the session is over
        // all the same.
        hub.end(&connection, Ending::ByServer, DisconnectReason::PingTimeout);
        return Err(EngineError::unknown_sid());
    }
    match transport {
        TransportKind::Polling => polling_request(&hub, &connection, request).await,
        TransportKind::WebSocket => {
            let upgrade = upgrade.map_err(|_| {
                EngineError::bad_request("transport=websocket needs a WebSocket upgrade request")
            })?;
            let socket = state.configure_websocket(upgrade, connection.params.max_payload);
            let sockets = state.drain.sockets().clone();
            Ok(match websocket::ProbeClaim::new(connection) {
                Some(claim) => socket.on_upgrade(move |socket| {
                    sockets.track_future(websocket::serve_upgrade(socket, hub, claim))
                }),
                // engine.io accepts a second WebSocket for a session that is
                // upgrading or upgraded, and closes it at once.
                None => socket.on_upgrade(websocket::refuse),
            })
        }
    }
}

/// A poll or POST of a live session, once any probing WebSocket has caught
/// up with what the client sent on it.
async fn polling_request(
    hub: &LocalHub,
    connection: &Arc<Connection>,
    request: Request,
) -> Result<Response, EngineError> {
    if connection.transport().is_probing() {
        connection.sync_with_probe(PROBE_SYNC_LIMIT).await;
    }
    if connection.transport() == Transport::WebSocket {
        return Err(EngineError::bad_request(
            "this session was upgraded to WebSocket; polling requests are no longer accepted",
        ));
    }
    match *request.method() {
        Method::GET => Ok(polling::poll(hub, connection).await),
        Method::POST => Ok(polling::push(hub, connection, request.into_body()).await),
        _ => Err(EngineError::bad_request("polling requests are GET or POST")),
    }
}

/// A request for a sid the hub no longer holds: an ended polling session
/// answers the polls it still owes (its last frames, then the noop or the
/// close); anything else is an unknown session.
async fn closed_session(hub: &LocalHub, sid: &str, is_poll: bool) -> Result<Response, EngineError> {
    match hub.take_awaiting_last_poll(sid).filter(|_| is_poll) {
        Some(connection) if !connection.farewell_sent() => {
            let response = polling::poll(hub, &connection).await;
            if !connection.farewell_sent() {
                hub.await_last_poll(connection);
            }
            Ok(response)
        }
        _ => Err(EngineError::unknown_sid()),
    }
}

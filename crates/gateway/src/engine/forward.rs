//! Requests for sessions of other nodes, with no sticky sessions.
//!
//! A session id names the node that owns the session. A request for it that
//! the load balancer sends here goes straight to the owner, node to node:
//! - a polling request (GET or POST) is sent on as it came (method, path,
//!   query, headers, body) and the owner's answer comes back as it is;
//! - a WebSocket upgrade is proxied: this node opens a WebSocket to the
//!   owner with the same request, then accepts the client's and relays
//!   every message both ways, until either side closes. (Taking the session
//!   over instead would move its queues and state between processes; the
//!   relay costs one extra hop for clients whose upgrade was misrouted and
//!   nothing for the others.)
//!
//! Forwarded requests carry this node's id and a MAC of it under the access
//! key; the owner refuses a forwarded request with a bad MAC, and never
//! forwards a forwarded request again. A session whose owner is not alive
//! gets the `400` of an unknown session, so the client opens a new one.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::Request;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_cluster::{Cluster, owner_of};
use sha2::Sha256;
use tokio_tungstenite::tungstenite;

use super::EngineError;
use crate::server::GatewayState;

/// Names the node a request was forwarded by.
pub(crate) const FORWARDED_BY: HeaderName = HeaderName::from_static("x-portcullis-forwarded-by");
/// The MAC of [`FORWARDED_BY`] under the access key.
pub(crate) const FORWARD_MAC: HeaderName = HeaderName::from_static("x-portcullis-forward-mac");

fn mac_of(key: &[u8], node: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(b"portcullis-forward:");
    mac.update(node.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The same path and query at `node`.
fn toward(node: &portcullis_cluster::NodeInfo, uri: &http::Uri) -> url::Url {
    let mut target = node.advertise.clone();
    target.set_path(uri.path());
    target.set_query(uri.query());
    target
}

/// This node's id and its MAC, as forwarded requests carry them.
fn signed_by<'a>(state: &GatewayState, cluster: &'a Cluster) -> (&'a str, String) {
    let me = cluster.node_id().as_str();
    (
        me,
        mac_of(state.config.access_keys.primary().as_bytes(), me),
    )
}

/// Whether `request` was forwarded by another node; `Err` when it claims so
/// with a MAC none of the access keys gives.
pub(crate) fn forwarded(state: &GatewayState, headers: &HeaderMap) -> Result<bool, EngineError> {
    let Some(node) = headers.get(&FORWARDED_BY) else {
        return Ok(false);
    };
    let node = node.to_str().unwrap_or_default();
    let given = headers
        .get(&FORWARD_MAC)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let valid = state.config.access_keys.all().iter().any(|key| {
        let expected = mac_of(key.as_bytes(), node);
        subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes()).into()
    });
    if valid {
        Ok(true)
    } else {
        Err(EngineError::unauthorized(
            "a forwarded request must come from a node of this cluster",
        ))
    }
}

/// Whether a request for `sid` belongs to another node, which it must then
/// go to.
pub(crate) fn owned_elsewhere<'a>(state: &'a GatewayState, sid: &str) -> Option<&'a Cluster> {
    let cluster = state.hubs.cluster()?;
    (owner_of(sid).is_some() && !cluster.owns(sid)).then_some(cluster)
}

/// Sends the request for `sid` to its owner node and answers with the
/// owner's answer.
pub(crate) async fn to_owner(
    state: &Arc<GatewayState>,
    cluster: &Cluster,
    sid: &str,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Result<Response, EngineError> {
    if forwarded(state, request.headers())? {
        // The owner's peer sent it here: our view and theirs differ (a node
        // restarted under the same id). Never bounce it back.
        return Err(EngineError::unknown_sid());
    }
    let owner = owner_of(sid).unwrap_or_default();
    let Some(node) = cluster.members().get(owner).cloned() else {
        tracing::debug!(owner, "a request for a session of a node that is not alive");
        return Err(EngineError::unknown_sid());
    };
    let target = toward(&node, request.uri());
    let (me, mac) = signed_by(state, cluster);
    match upgrade {
        Ok(upgrade) => {
            let limit = state.config.max_payload;
            relay_websocket(state, upgrade, target, request.headers(), me, &mac, limit).await
        }
        Err(_) => forward_http(target, request, me, &mac).await,
    }
}

/// Relays an application server's tunnel that names another live node
/// (`&target=`) to that node: the official SDK opens the tunnels a
/// `ConnectionRebalance` asks for through its own endpoint, the load
/// balancer, which may pick any node. The target node checks the token.
/// `Err(upgrade)` when the target cannot be reached (it just died): the
/// caller serves the tunnel itself, so the server's tunnel heals at once.
pub(crate) async fn relay_tunnel(
    state: &Arc<GatewayState>,
    cluster: &Cluster,
    node: &portcullis_cluster::NodeInfo,
    upgrade: WebSocketUpgrade,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<Response, WebSocketUpgrade> {
    let target = toward(node, uri);
    let (me, mac) = signed_by(state, cluster);
    match connect_to_owner(target, headers, me, &mac).await {
        Ok(owner) => Ok(accept_relay(
            state,
            upgrade,
            owner,
            state.config.max_tunnel_frame as u64,
        )),
        Err(Unrelayed::Refused(response)) => Ok(response),
        Err(Unrelayed::Unreachable) => Err(upgrade),
    }
}

/// One client for every forward: keeps connections to the other nodes.
fn client() -> &'static Client<HttpConnector, Body> {
    static CLIENT: OnceLock<Client<HttpConnector, Body>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build_http()
    })
}

/// Headers that belong to one hop, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
    )
}

async fn forward_http(
    target: url::Url,
    request: Request,
    me: &str,
    mac: &str,
) -> Result<Response, EngineError> {
    let (parts, body) = request.into_parts();
    let mut forwarded = http::Request::builder()
        .method(parts.method)
        .uri(target.as_str());
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            forwarded = forwarded.header(name, value);
        }
    }
    let forwarded = forwarded
        .header(FORWARDED_BY, me)
        .header(FORWARD_MAC, mac)
        .body(body)
        .map_err(|_| EngineError::bad_request("the request cannot be forwarded"))?;
    let answer = client().request(forwarded).await.map_err(|error| {
        tracing::warn!(%error, owner = %target.host_str().unwrap_or(""), "forwarding to the owner node failed");
        EngineError::unknown_sid()
    })?;
    let (mut parts, body) = answer.into_parts();
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        parts.headers.remove(name);
    }
    parts.headers.remove("keep-alive");
    Ok(Response::from_parts(parts, Body::new(body)))
}

async fn relay_websocket(
    state: &Arc<GatewayState>,
    upgrade: WebSocketUpgrade,
    target: url::Url,
    headers: &HeaderMap,
    me: &str,
    mac: &str,
    max_message: u64,
) -> Result<Response, EngineError> {
    match connect_to_owner(target, headers, me, mac).await {
        Ok(owner) => Ok(accept_relay(state, upgrade, owner, max_message)),
        Err(Unrelayed::Refused(response)) => Ok(response),
        Err(Unrelayed::Unreachable) => Err(EngineError::unknown_sid()),
    }
}

/// Why a WebSocket was not relayed.
enum Unrelayed {
    /// The owner answered the upgrade with this (an unknown session, a bad
    /// token): it goes back to the client as it is.
    Refused(Response),
    /// The owner could not be reached.
    Unreachable,
}

/// Opens the owner's side of a relay with the client's request.
async fn connect_to_owner(
    mut target: url::Url,
    headers: &HeaderMap,
    me: &str,
    mac: &str,
) -> Result<OwnerSocket, Unrelayed> {
    let scheme = if target.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    let _ = target.set_scheme(scheme);
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(target.as_str())
        .map_err(|_| Unrelayed::Unreachable)?;
    for name in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::ORIGIN,
        header::USER_AGENT,
    ] {
        if let Some(value) = headers.get(&name) {
            request.headers_mut().insert(name, value.clone());
        }
    }
    let me = HeaderValue::from_str(me).expect("node ids are header-safe");
    request.headers_mut().insert(FORWARDED_BY, me);
    let mac = HeaderValue::from_str(mac).expect("hex is header-safe");
    request.headers_mut().insert(FORWARD_MAC, mac);
    match tokio_tungstenite::connect_async(request).await {
        Ok((owner, _)) => Ok(owner),
        Err(tungstenite::Error::Http(refused)) => {
            let (parts, body) = refused.into_parts();
            let body = Body::from(body.unwrap_or_default());
            Err(Unrelayed::Refused(Response::from_parts(parts, body)))
        }
        Err(error) => {
            tracing::warn!(%error, "relaying a WebSocket to the owner node failed");
            Err(Unrelayed::Unreachable)
        }
    }
}

/// Accepts the client's upgrade and relays it to `owner`.
fn accept_relay(
    state: &Arc<GatewayState>,
    upgrade: WebSocketUpgrade,
    owner: OwnerSocket,
    max_message: u64,
) -> Response {
    let sockets = state.drain.sockets().clone();
    let upgrade = state.configure_websocket(upgrade, max_message);
    upgrade
        .on_upgrade(move |client| sockets.track_future(relay(client, owner)))
        .into_response()
}

type OwnerSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Relays messages both ways until either side closes.
async fn relay(client: WebSocket, owner: OwnerSocket) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut owner_tx, mut owner_rx) = owner.split();
    let upstream = async {
        while let Some(Ok(message)) = client_rx.next().await {
            let message = match message {
                ws::Message::Text(text) => tungstenite::Message::text(text.as_str()),
                ws::Message::Binary(bytes) => tungstenite::Message::binary(bytes),
                ws::Message::Ping(bytes) => tungstenite::Message::Ping(bytes),
                ws::Message::Pong(bytes) => tungstenite::Message::Pong(bytes),
                ws::Message::Close(_) => break,
            };
            if owner_tx.send(message).await.is_err() {
                break;
            }
        }
        let _ = owner_tx.close().await;
    };
    let downstream = async {
        while let Some(Ok(message)) = owner_rx.next().await {
            let message = match message {
                tungstenite::Message::Text(text) => ws::Message::text(text.as_str()),
                tungstenite::Message::Binary(bytes) => ws::Message::Binary(bytes),
                tungstenite::Message::Ping(bytes) => ws::Message::Ping(bytes),
                tungstenite::Message::Pong(bytes) => ws::Message::Pong(bytes),
                tungstenite::Message::Close(_) | tungstenite::Message::Frame(_) => break,
            };
            if client_tx.send(message).await.is_err() {
                break;
            }
        }
        let _ = client_tx.close().await;
    };
    // Either side ending ends the relay (dropping the other half closes it).
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_depend_on_key_and_node() {
        assert_eq!(mac_of(b"k", "a"), mac_of(b"k", "a"));
        assert_ne!(mac_of(b"k", "a"), mac_of(b"k", "b"));
        assert_ne!(mac_of(b"k", "a"), mac_of(b"j", "a"));
    }

    #[test]
    fn hop_headers_stay_behind() {
        assert!(hop_by_hop(&header::CONNECTION));
        assert!(hop_by_hop(&header::HOST));
        assert!(!hop_by_hop(&header::AUTHORIZATION));
        assert!(!hop_by_hop(&header::CONTENT_TYPE));
    }
}

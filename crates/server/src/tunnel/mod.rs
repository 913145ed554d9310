//! The tunnel attach mode: the application runs in its own process and
//! reaches a gateway elsewhere over the server tunnel, speaking exactly the
//! protocol of the official Node SDK (`@azure/web-pubsub-socket.io`), so
//! one gateway serves Node and Rust applications alike and several
//! processes can share a hub.
//!
//! What crosses the tunnel:
//! - from the gateway, the CloudEvents `connect` (answered with the
//!   Engine.IO handshake and `"heartbeat":"gateway"`), `connected`, the
//!   user `message` events carrying the clients' Engine.IO payloads, and
//!   `disconnected`;
//! - to the gateway, every operation as the REST call the SDK makes:
//!   `:send` to a connection, group and hub sends with an OData filter,
//!   `:addToGroups` / `:removeFromGroups` / `DELETE` membership, and
//!   `:invoke` for acknowledged broadcasts to the sockets of other
//!   processes.
//!
//! **Heartbeats** stay in the gateway: the answer to `connect` says
//! `"heartbeat":"gateway"`, so the gateway pings the clients and consumes
//! their pongs, and an idle client costs the tunnel nothing. (The Node SDK
//! runs the heartbeat itself: a ping and a pong cross the tunnel per client
//! every ping interval.)

mod events;
mod link;
pub(crate) use link::ack_of;
mod rest;
mod tls;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use portcullis_auth::ConnectionString;
use portcullis_hub::is_valid_hub_name;
use tokio::sync::{oneshot, watch};

pub(crate) use link::Link;
pub use tls::TunnelOptions;

use crate::backend::Backend;
use crate::errors::AttachError;
use crate::io::SocketIo;

/// Why [`SocketIo::connect_tunnel`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The connection string does not parse.
    #[error("invalid connection string: {0}")]
    ConnectionString(#[from] portcullis_auth::ConnectionStringError),
    /// The hub name is invalid, or the server is already attached.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// TLS failed: a bad CA in [`TunnelOptions`], or the gateway's
    /// certificate is not trusted or not for its host name. Not retried.
    #[error("TLS to the gateway failed: {0}")]
    Tls(String),
    /// The gateway refused the tunnel (wrong access key, hub taken, …).
    #[error("the gateway refused the tunnel with status {status}: {message}")]
    Refused {
        /// The HTTP status of the refused WebSocket upgrade.
        status: u16,
        /// The gateway's explanation.
        message: String,
    },
    /// The gateway could not be reached (retried every second by the handle).
    #[error("could not reach the gateway: {0}")]
    Connect(String),
}

impl TunnelError {
    /// Whether retrying cannot help (a refusal other than 5xx).
    fn is_permanent(&self) -> bool {
        matches!(self, TunnelError::Refused { status, .. } if *status < 500)
            || matches!(self, TunnelError::Tls(_))
    }
}

/// Keeps the tunnel of a [`SocketIo`] open: it is re-opened with a fresh
/// token one second after it is lost, for as long as the handle lives.
/// Dropping the handle (or [`close`](Self::close)) closes the tunnel; the
/// gateway then closes this server's clients after its grace period unless
/// the server comes back.
#[derive(Debug)]
#[must_use = "the tunnel closes when the handle is dropped"]
pub struct TunnelHandle {
    link: Arc<Link>,
    stop: watch::Sender<bool>,
}

impl TunnelHandle {
    /// This server's id: the `sub` of its tunnel tokens, random per
    /// [`SocketIo`] and stable across reconnects (the gateway routes every
    /// event of a client to the server that accepted it by this id).
    pub fn server_id(&self) -> &str {
        self.link.server_id()
    }

    /// Whether the tunnel is open right now.
    pub fn is_connected(&self) -> bool {
        self.link.is_connected()
    }

    /// The tunnel URL without its token, e.g.
    /// `ws://127.0.0.1:8080/server/tunnel?hub=chat`.
    pub fn url(&self) -> String {
        self.link.tunnel_url()
    }

    /// The ids of the other cluster nodes this server has an additional
    /// tunnel to right now: a gateway node that is one of several sends a
    /// `ConnectionRebalance` per other node, and the server then serves
    /// that node's clients over a WebSocket of its own (as the official SDK
    /// does). Empty with a single gateway. Sorted.
    pub fn targets(&self) -> Vec<String> {
        self.link.open_targets()
    }

    /// Traffic counters since the tunnel was first opened.
    pub fn stats(&self) -> TunnelStats {
        let stats = &self.link.stats;
        TunnelStats {
            events: stats.events.load(Ordering::Relaxed),
            user_events: stats.user_events.load(Ordering::Relaxed),
            calls: stats.calls.load(Ordering::Relaxed),
        }
    }

    /// Closes the tunnel (and those to other cluster nodes) for good.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for TunnelHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Traffic counters of a tunnel ([`TunnelHandle::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TunnelStats {
    /// CloudEvents received from the gateway (all kinds).
    pub events: u64,
    /// User `message` events: client packets carried to this server. With
    /// the gateway owning the heartbeat, an idle client adds none.
    pub user_events: u64,
    /// REST calls sent to the gateway.
    pub calls: u64,
}

/// A random id in the GUID form the SDK uses for its tunnel `sub`.
fn server_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex = |r: &[u8]| r.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        hex(&b[0..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    )
}

impl SocketIo {
    /// Attaches the server to hub `hub` of a gateway elsewhere, over the
    /// server tunnel, with the connection string the gateway prints (the
    /// same one the official Node SDK takes):
    ///
    /// ```no_run
    /// use portcullis_server::{SocketIo, SocketRef};
    ///
    /// # async fn run() -> Result<(), portcullis_server::TunnelError> {
    /// let io = SocketIo::new();
    /// io.ns("/", |socket: SocketRef| async move { /* ... */ });
    ///
    /// // Embedded instead: io.attach(&gateway, "chat")?
    /// let tunnel = io
    ///     .connect_tunnel("Endpoint=http://127.0.0.1;Port=8080;AccessKey=...;Version=1.0;", "chat")
    ///     .await?;
    /// // ... serve the rest of the application; keep `tunnel` alive.
    /// # drop(tunnel); Ok(()) }
    /// ```
    ///
    /// Resolves once the gateway confirmed the tunnel. While the gateway
    /// cannot be reached it keeps trying every second (start the
    /// application before or after the gateway); a refusal (a wrong access
    /// key, a hub served by something else) is returned as an error.
    ///
    /// The tunnel token is signed with the access key (HS256), for the
    /// audience `ws://host:port/server/tunnel?hub=HUB`, with a `sub` random
    /// per `SocketIo` ([`TunnelHandle::server_id`]) and a one-hour expiry,
    /// minted afresh at every (re)connect.
    ///
    /// Semantics that differ from embedded mode: room joins and emits are
    /// REST calls sent in order without waiting (a later broadcast sees an
    /// earlier join), [`BroadcastOperator::sockets`](crate::BroadcastOperator::sockets)
    /// lists this process's sockets only, and acknowledgements of broadcasts
    /// from sockets of other processes carry no socket id (see
    /// [`AckStream`](crate::AckStream)).
    ///
    /// In a cluster of gateway nodes (the connection string may name a load
    /// balancer in front of them), the node the tunnel reaches sends a
    /// `ConnectionRebalance` per other node, and the server opens a tunnel
    /// of its own to each (`&target=<node id>`, as the official SDK does),
    /// so the clients of every node reach it; those tunnels carry their
    /// node's events, every call still leaves on the first tunnel and the
    /// cluster delivers it. See [`TunnelHandle::targets`].
    ///
    /// An `https://` endpoint opens a `wss://` tunnel that trusts the public
    /// web PKI; for a private CA use
    /// [`connect_tunnel_with`](Self::connect_tunnel_with).
    pub async fn connect_tunnel(
        &self,
        connection_string: &str,
        hub: &str,
    ) -> Result<TunnelHandle, TunnelError> {
        self.connect_tunnel_with(connection_string, hub, TunnelOptions::new())
            .await
    }

    /// [`connect_tunnel`](Self::connect_tunnel) with options: the
    /// certificates a `wss://` tunnel trusts. A certificate the gateway
    /// presents that is not trusted is an error ([`TunnelError::Tls`]), not
    /// retried.
    pub async fn connect_tunnel_with(
        &self,
        connection_string: &str,
        hub: &str,
        options: TunnelOptions,
    ) -> Result<TunnelHandle, TunnelError> {
        let cs: ConnectionString = connection_string.parse()?;
        if !is_valid_hub_name(hub) {
            return Err(AttachError::InvalidHubName(hub.to_owned()).into());
        }
        let tls = match cs.endpoint.scheme() {
            "https" => Some(options.client_config()?),
            _ => None,
        };
        let (link, queue) = Link::new(
            hub,
            server_id(),
            cs.endpoint,
            cs.access_key,
            tls,
            Arc::downgrade(&self.0),
        );
        let backend = Backend::new(link.clone()).with_remote_acks(link.clone());
        self.0.set_backend(backend)?;
        let (stop, stopped) = watch::channel(false);
        let (first, attached) = oneshot::channel();
        tokio::spawn(link::dispatch(link.clone(), queue, stopped.clone()));
        tokio::spawn(link::run(link.clone(), first, stopped));
        let handle = TunnelHandle { link, stop };
        match attached.await {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(TunnelError::Connect("the tunnel task ended".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_look_like_guids() {
        let id = server_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, server_id());
    }

    #[test]
    fn tunnel_url_is_the_token_audience() {
        let cs: ConnectionString = "Endpoint=http://127.0.0.1;Port=8080;AccessKey=k;Version=1.0;"
            .parse()
            .unwrap();
        let (link, _queue) = Link::new(
            "chat",
            "s".into(),
            cs.endpoint,
            cs.access_key,
            None,
            std::sync::Weak::new(),
        );
        assert_eq!(
            link.tunnel_url(),
            "ws://127.0.0.1:8080/server/tunnel?hub=chat"
        );
    }
}

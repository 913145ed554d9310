//! `TunnelHub`: serves a hub's clients through the application servers
//! attached over tunnels (the official Node SDK, or our Rust server crate).
//!
//! New clients are spread across the attached servers; every event of a
//! client goes to the server that accepted it (its tunnel token's `sub`,
//! stable across tunnel reconnects). A server gone for longer than the grace
//! period has its clients closed, so they re-negotiate elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::StatusCode;
use portcullis_protocol::engine::Packet;
use portcullis_protocol::socket::{Header, PacketKind};
use portcullis_tunnel::TunnelMessage;
use portcullis_tunnel::cloud_events::{self, ConnectEventBody, ConnectOutcome, EventContext};

use super::client::{BacklogFull, BacklogLimits, Next, Push, TunnelClient};
use super::socket::{RequestError, TunnelSocket};
use crate::hub::{
    Accept, BoxFuture, ConnectRequest, ConnectionId, DisconnectReason, Heartbeat, Hub, HubHandler,
    LocalHub, Refusal,
};

/// Settings of the tunnels of one gateway.
#[derive(Clone)]
pub(crate) struct TunnelSettings {
    /// Signs the CloudEvents sent to application servers; never printed.
    pub access_keys: Vec<String>,
    pub origin_host: String,
    /// How long a server may have no tunnel before its clients are closed.
    pub grace: Duration,
    /// What one client may have waiting for its server.
    pub backlog: BacklogLimits,
}

impl std::fmt::Debug for TunnelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelSettings")
            .field(
                "access_keys",
                &format_args!("[{} redacted]", self.access_keys.len()),
            )
            .field("origin_host", &self.origin_host)
            .field("grace", &self.grace)
            .field("backlog", &self.backlog)
            .finish()
    }
}

/// The handler of a hub whose application servers attach over tunnels.
pub(crate) struct TunnelHub {
    pub hub: LocalHub,
    settings: TunnelSettings,
    state: Mutex<State>,
    event_ids: AtomicU64,
    /// Woken when a tunnel attaches, for events waiting for their server.
    socket_added: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    servers: BTreeMap<Arc<str>, Server>,
    next_server: usize,
    clients: HashMap<ConnectionId, Arc<TunnelClient>>,
}

#[derive(Default)]
struct Server {
    sockets: Vec<Arc<TunnelSocket>>,
    /// Bumped whenever the server loses its last socket, so an old grace
    /// timer can tell a reconnect happened meanwhile.
    epoch: u64,
}

impl TunnelHub {
    pub fn new(hub: LocalHub, settings: TunnelSettings) -> Self {
        TunnelHub {
            hub,
            settings,
            state: Mutex::new(State::default()),
            event_ids: AtomicU64::new(1),
            socket_added: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a server's tunnel and wakes the events waiting for one, so a
    /// server that reconnects resumes its clients at once.
    pub fn add_socket(&self, server: &Arc<str>, socket: Arc<TunnelSocket>) {
        self.lock()
            .servers
            .entry(server.clone())
            .or_default()
            .sockets
            .push(socket);
        self.hub.metrics().tunnel_attached(true);
        // Waiters register before they look (see `wait_socket_of`), so none
        // misses this tunnel.
        self.socket_added.notify_waiters();
    }

    /// Removes a closed tunnel; if it was the server's last, its clients are
    /// closed after the grace period unless it comes back.
    pub fn remove_socket(self: &Arc<Self>, server: &Arc<str>, socket_id: u64) {
        let epoch = {
            let mut state = self.lock();
            let Some(entry) = state.servers.get_mut(server) else {
                return;
            };
            let before = entry.sockets.len();
            entry.sockets.retain(|s| s.id != socket_id);
            if entry.sockets.len() < before {
                self.hub.metrics().tunnel_attached(false);
            }
            if !entry.sockets.is_empty() {
                return;
            }
            entry.epoch += 1;
            entry.epoch
        };
        let this = self.clone();
        let server = server.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.settings.grace).await;
            this.expire_server(&server, epoch);
        });
    }

    /// The servers with a tunnel attached now: id and number of tunnels.
    pub fn servers(&self) -> Vec<(String, usize)> {
        self.lock()
            .servers
            .iter()
            .filter(|(_, s)| !s.sockets.is_empty())
            .map(|(id, s)| (id.to_string(), s.sockets.len()))
            .collect()
    }

    fn expire_server(&self, server: &Arc<str>, epoch: u64) {
        let orphans: Vec<ConnectionId> = {
            let mut state = self.lock();
            match state.servers.get(server) {
                Some(entry) if entry.sockets.is_empty() && entry.epoch == epoch => {}
                _ => return,
            }
            state.servers.remove(server);
            state
                .clients
                .values()
                .filter(|c| &c.server == server)
                .map(|c| c.id.clone())
                .collect()
        };
        tracing::info!(hub = %self.hub.name(), %server, clients = orphans.len(), "application server gone; closing its clients");
        for id in orphans {
            self.hub
                .close_connection(id.as_str(), "application server gone");
        }
    }

    /// Whether clients of this hub are still known to the application
    /// servers (their `disconnected` event not yet sent).
    pub fn has_clients(&self) -> bool {
        !self.lock().clients.is_empty()
    }

    /// How many tunnel WebSockets are open.
    pub fn socket_count(&self) -> usize {
        self.lock().servers.values().map(|s| s.sockets.len()).sum()
    }

    /// Asks every open tunnel to reconnect (the gateway drains): a
    /// `ConnectionReconnect` with no endpoint and no target, which the
    /// official SDK and the Rust crate answer by closing this WebSocket and
    /// opening a new one to the endpoint they were configured with. (A
    /// `ConnectionClose` would stop them for good.) Returns how many were
    /// asked.
    pub fn ask_to_reconnect(&self) -> usize {
        let sockets: Vec<Arc<TunnelSocket>> = self
            .lock()
            .servers
            .values()
            .flat_map(|s| s.sockets.iter().cloned())
            .collect();
        let message = TunnelMessage::ConnectionReconnect {
            target_id: String::new(),
            endpoint: String::new(),
            message: "the gateway is draining; reconnect".to_owned(),
        };
        sockets.iter().filter(|s| s.send(&message)).count()
    }

    /// Closes every open tunnel WebSocket.
    pub fn close_sockets(&self) {
        let sockets: Vec<Arc<TunnelSocket>> = self
            .lock()
            .servers
            .values()
            .flat_map(|s| s.sockets.iter().cloned())
            .collect();
        for socket in sockets {
            socket.close();
        }
    }

    /// A live tunnel of `server`.
    fn socket_of(&self, server: &str) -> Option<Arc<TunnelSocket>> {
        let state = self.lock();
        let sockets = &state.servers.get(server)?.sockets;
        sockets
            .iter()
            .rev()
            .find(|s| !s.closed.is_cancelled())
            .cloned()
    }

    /// The next server for a new client, round robin over live servers.
    fn pick_server(&self) -> Option<(Arc<str>, Arc<TunnelSocket>)> {
        let mut state = self.lock();
        let live: Vec<(Arc<str>, Arc<TunnelSocket>)> = state
            .servers
            .iter()
            .filter_map(|(id, s)| {
                let socket = s.sockets.iter().rev().find(|s| !s.closed.is_cancelled())?;
                Some((id.clone(), socket.clone()))
            })
            .collect();
        if live.is_empty() {
            return None;
        }
        let index = state.next_server % live.len();
        state.next_server = state.next_server.wrapping_add(1);
        live.into_iter().nth(index)
    }

    pub fn client(&self, id: &str) -> Option<Arc<TunnelClient>> {
        self.lock().clients.get(id).cloned()
    }

    fn context(&self, client: &TunnelClient) -> EventContext {
        let event_id = self.event_ids.fetch_add(1, Ordering::Relaxed).to_string();
        EventContext::new(self.hub.name(), client.id.as_str(), event_id)
            .with_user_id(client.user_id.clone())
            .with_origin_host(self.settings.origin_host.clone())
            .with_access_keys(self.settings.access_keys.iter().cloned())
    }

    /// Queues an Engine.IO record for the client's server; a client past its
    /// backlog is closed.
    pub fn forward(self: &Arc<Self>, client: &Arc<TunnelClient>, record: &str) {
        match client.push_record(record) {
            Ok(Push::StartPump) => self.spawn_pump(client.clone()),
            Ok(Push::Queued) => {}
            Err(full) => self.close_flooding(client, &full),
        }
    }

    /// Closes a client that sent more than its server took in time.
    fn close_flooding(&self, client: &TunnelClient, full: &BacklogFull) {
        // Connection ids are logged at debug level only.
        tracing::info!(hub = %self.hub.name(), server = %client.server, reason = %full, "client closed: it sent more than its application server took");
        tracing::debug!(hub = %self.hub.name(), connection = %client.id, reason = %full, "client closed: it sent more than its application server took");
        self.hub.metrics().backlog_closure();
        self.hub
            .close_connection(client.id.as_str(), &full.to_string());
    }

    /// Sends the client's queued events one at a time, in order.
    fn spawn_pump(self: &Arc<Self>, client: Arc<TunnelClient>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match client.next() {
                    Next::Idle => return,
                    Next::Message(payload) => this.send_user_event(&client, &payload).await,
                    Next::Disconnected(reason) => {
                        this.send_disconnected(&client, &reason).await;
                        return;
                    }
                }
            }
        });
    }

    /// A live tunnel of `server`, waiting up to the grace period for one
    /// while the server reconnects (the SDK does so within a second).
    async fn wait_socket_of(&self, server: &str) -> Option<Arc<TunnelSocket>> {
        let deadline = tokio::time::Instant::now() + self.settings.grace;
        loop {
            let added = self.socket_added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if let Some(socket) = self.socket_of(server) {
                return Some(socket);
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return None;
            }
        }
    }

    async fn send_user_event(&self, client: &TunnelClient, payload: &str) {
        // One retry: a tunnel that closes mid-request is usually replaced
        // by the same server a moment later.
        for _ in 0..2 {
            let Some(socket) = self.wait_socket_of(&client.server).await else {
                break;
            };
            let ctx = self.context(client);
            let started = std::time::Instant::now();
            let answer = socket
                .request(|ack| cloud_events::user_message(&ctx, payload, ack))
                .await;
            self.hub.metrics().tunnel_request(started.elapsed());
            match answer {
                Ok(response) if (200..300).contains(&response.status_code) => return,
                Ok(response) => {
                    // Web PubSub semantics: a refused user event drops the client.
                    let why = format!("application server answered {}", response.status_code);
                    self.hub.close_connection(client.id.as_str(), &why);
                    return;
                }
                Err(RequestError::Timeout) => break,
                Err(RequestError::Closed) => continue,
                Err(error @ RequestError::TooLarge(_)) => {
                    self.hub
                        .close_connection(client.id.as_str(), &error.to_string());
                    return;
                }
            }
        }
        self.hub
            .close_connection(client.id.as_str(), "application server unavailable");
    }

    async fn send_disconnected(&self, client: &TunnelClient, reason: &str) {
        if let Some(socket) = self.wait_socket_of(&client.server).await {
            let ctx = self.context(client);
            socket.notify(|ack| cloud_events::disconnected(&ctx, reason, ack));
        }
        // Only once the event is queued: a drain waits for no client to be
        // left here before it asks the tunnels to reconnect, so the event
        // goes out before that request on the same tunnel.
        self.lock().clients.remove(&client.id);
    }

    /// Handles a client's Socket.IO packet before it goes to the server:
    /// namespace disconnects leave their groups, invoke acks are taken (true),
    /// binary packets announcing more attachments than fit are refused.
    fn inspect_client_message(
        &self,
        client: &TunnelClient,
        text: &str,
    ) -> Result<bool, BacklogFull> {
        let Ok(header) = Header::parse(text) else {
            return Ok(false);
        };
        match header.kind {
            PacketKind::Ack | PacketKind::BinaryAck => match header.ack_id {
                Some(id) => client.intercept_ack(text, id, header.attachments),
                None => client.check_attachments(header.attachments).map(|_| false),
            },
            PacketKind::BinaryEvent => client.check_attachments(header.attachments).map(|_| false),
            _ => Ok(false),
        }
    }
}

/// Who keeps the client alive: the official SDK pings through the tunnel;
/// an application server that answers `connect` with `"heartbeat":"gateway"`
/// beside `socketio` (our Rust server crate) leaves it to the gateway, so
/// idle clients cost the tunnel nothing.
fn heartbeat_owner(connect_body: &[u8]) -> Heartbeat {
    #[derive(serde::Deserialize)]
    struct Extension {
        heartbeat: Option<String>,
    }
    match serde_json::from_slice::<Extension>(connect_body) {
        Ok(Extension {
            heartbeat: Some(owner),
        }) if owner == "gateway" => Heartbeat::Gateway,
        _ => Heartbeat::Application,
    }
}

fn to_multimap(pairs: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in pairs {
        map.entry(k).or_default().push(v);
    }
    map
}

/// The tunnel as the handler of its hub's clients.
pub(crate) struct TunnelHandler(pub Arc<TunnelHub>);

impl std::ops::Deref for TunnelHandler {
    type Target = Arc<TunnelHub>;
    fn deref(&self) -> &Arc<TunnelHub> {
        &self.0
    }
}

impl HubHandler for TunnelHandler {
    fn connect(
        &self,
        _hub: &dyn Hub,
        request: ConnectRequest,
    ) -> BoxFuture<'static, Result<Accept, Refusal>> {
        let this = self.0.clone();
        Box::pin(async move { this.connect_client(request).await })
    }

    fn on_connected(&self, _hub: &dyn Hub, connection: &ConnectionId) {
        if let Some(client) = self.client(connection.as_str())
            && let Some(socket) = self.socket_of(&client.server)
        {
            let ctx = self.context(&client);
            socket.notify(|ack| cloud_events::connected(&ctx, ack));
        }
    }

    fn on_packet(&self, _hub: &dyn Hub, connection: &ConnectionId, packet: Packet) {
        let Some(client) = self.client(connection.as_str()) else {
            return;
        };
        let record = match packet {
            Packet::Message(text) => match self.inspect_client_message(&client, &text) {
                Ok(false) => format!("4{text}"),
                Ok(true) => return,
                Err(full) => return self.close_flooding(&client, &full),
            },
            Packet::Binary(bytes) => {
                match client.intercept_attachment(&bytes) {
                    Ok(false) => {}
                    Ok(true) => return,
                    Err(full) => return self.close_flooding(&client, &full),
                }
                let mut record = String::new();
                Packet::Binary(bytes).encode_record(&mut record);
                record
            }
            Packet::Pong(data) => format!("3{data}"),
            _ => return,
        };
        self.forward(&client, &record);
    }

    fn on_disconnected(
        &self,
        _hub: &dyn Hub,
        connection: &ConnectionId,
        reason: &DisconnectReason,
    ) {
        let Some(client) = self.client(connection.as_str()) else {
            return;
        };
        if client.end(reason.to_string()) {
            self.spawn_pump(client);
        }
    }
}

impl TunnelHub {
    async fn connect_client(self: &Arc<Self>, request: ConnectRequest) -> Result<Accept, Refusal> {
        let Some((server, socket)) = self.pick_server() else {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "no application server is attached to hub '{}'; start the application and retry",
                    request.hub
                ),
            ));
        };
        let client = Arc::new(TunnelClient::new(
            request.connection_id.clone(),
            request.user_id().map(str::to_owned),
            server,
            self.settings.backlog,
        ));
        let body = ConnectEventBody {
            claims: request.claims.0.clone(),
            query: to_multimap(request.query),
            headers: to_multimap(request.headers.iter().filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })),
            ..ConnectEventBody::default()
        };
        let ctx = self.context(&client);
        let started = std::time::Instant::now();
        let response = socket
            .request(|ack| cloud_events::connect(&ctx, &body, ack))
            .await;
        self.hub.metrics().tunnel_request(started.elapsed());
        let response =
            response.map_err(|e| Refusal::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
        let content = response.content.as_deref().unwrap_or_default();
        match cloud_events::parse_connect_response(response.status_code, content) {
            Ok(ConnectOutcome::Accepted(open)) => {
                self.lock().clients.insert(client.id.clone(), client);
                Ok(Accept {
                    ping_interval: Duration::from_millis(open.ping_interval),
                    ping_timeout: Duration::from_millis(open.ping_timeout),
                    max_payload: open.max_payload,
                    heartbeat: heartbeat_owner(content),
                })
            }
            Ok(ConnectOutcome::Rejected { status, message }) => Err(Refusal::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                message,
            )),
            Err(error) => Err(Refusal::new(StatusCode::BAD_GATEWAY, error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_access_keys() {
        let settings = TunnelSettings {
            access_keys: vec!["very-secret-access-key".into()],
            origin_host: "h".into(),
            grace: Duration::from_secs(1),
            backlog: BacklogLimits {
                max_bytes: 1,
                max_packets: 1,
            },
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}

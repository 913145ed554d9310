//! Local hubs: the connections of one application held by this process,
//! their groups, and the handler that serves them.
//!
//! [`LocalHub`] is where the transports register connections and report
//! their packets, and it implements the contract's [`Hub`]: handlers answer
//! by applying [`Operation`]s to it (`operations.rs`). The contract itself
//! (handler interface, operations, filters, payloads) lives in the
//! `portcullis-hub` crate and is re-exported here.

mod cluster;
mod connection;
mod heartbeat;
mod invoke;
mod lifetime;
mod operations;
mod refresh;
mod socketio;
#[cfg(test)]
mod testing;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use portcullis_auth::Claims;
use portcullis_protocol::engine::Packet;

use crate::tokens::Tokens;
use lifetime::{RevocationList, RevocationListFull};

pub use connection::Connection;
pub(crate) use connection::{Ending, PollReady, SessionParams, Transport};
pub(crate) use lifetime::{Lease, unix_now};
pub use portcullis_hub::{
    Accept, Applied, BoxFuture, Candidates, ConnectRequest, ConnectionId, DisconnectReason, Filter,
    FilterSubject, Frame, Groups, Heartbeat, Hub, HubHandler, Operation, Outcome, Payload, Refusal,
    Revocation, Selection, TransportKind, is_valid_hub_name, odata,
};
pub use refresh::REFRESH_EVENT;

/// Per-hub settings.
#[derive(Debug, Clone, Default)]
pub struct HubSettings {
    /// Accept clients that bring no token.
    pub allow_anonymous: bool,
    /// Close a connection this long after its token's `exp` unless the
    /// client hands it a fresh token first (`None`: the token is checked at
    /// the handshake only).
    pub token_expiry: Option<Duration>,
}

/// A handle to one hub. Cheap to clone.
#[derive(Clone)]
pub struct LocalHub(Arc<HubInner>);

struct HubInner {
    name: String,
    /// This hub's metric handles, resolved once (see `crate::metrics`).
    metrics: crate::metrics::HubMetrics,
    settings: HubSettings,
    handler: RwLock<Option<Arc<dyn HubHandler>>>,
    members: RwLock<Members>,
    registry: Arc<Registry>,
    heartbeats: heartbeat::Heartbeats,
    /// Ended polling sessions that still owe their client a last poll (a
    /// noop, or the close after the last frames): kept out of the hub until
    /// that poll comes or `ping_timeout` passes (see [`LocalHub::end`]).
    awaiting_last_poll: Mutex<HashMap<ConnectionId, Arc<Connection>>>,
    /// Tokens revoked for this hub.
    revocations: Mutex<RevocationList>,
    /// Acknowledgements owed to other nodes' invocations.
    invocations: invoke::Invocations,
}

#[derive(Default)]
struct Members {
    connections: HashMap<ConnectionId, Member>,
    groups: HashMap<Arc<str>, HashSet<ConnectionId>>,
}

struct Member {
    connection: Arc<Connection>,
    groups: HashSet<Arc<str>>,
}

impl FilterSubject for Member {
    fn connection_id(&self) -> &str {
        self.connection.id.as_str()
    }
    fn user_id(&self) -> Option<&str> {
        self.connection.user_id()
    }
    fn in_group(&self, group: &str) -> bool {
        self.groups.contains(group)
    }
}

/// What [`LocalHub::revoke`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// Connections closed because they held a revoked token.
    pub closed: usize,
    /// Whether the revocation was recorded (false: the hub's list is full,
    /// so handshakes with the token are not refused).
    pub recorded: bool,
}

/// Gateway-wide state shared by every hub.
#[derive(Default)]
pub(crate) struct Registry {
    pub connections: std::sync::atomic::AtomicUsize,
    /// Verifies the fresh tokens of in-band refreshes (none: refreshes are
    /// refused).
    pub tokens: Option<Arc<Tokens>>,
    /// Most revocations one hub keeps.
    pub max_revocations: usize,
    /// How long a revocation is kept when the tokens' expiry is unknown.
    pub revocation_ttl: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// This node's id in a cluster: written into every connection id.
    pub node: std::sync::OnceLock<portcullis_cluster::NodeId>,
    /// The cluster, once joined: operations then reach every node.
    pub cluster: std::sync::OnceLock<portcullis_cluster::Cluster>,
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

impl LocalHub {
    pub(crate) fn new(name: String, settings: HubSettings, registry: Arc<Registry>) -> Self {
        LocalHub(Arc::new(HubInner {
            metrics: registry.metrics.hub(&name),
            name,
            settings,
            handler: RwLock::new(None),
            members: RwLock::new(Members::default()),
            registry,
            heartbeats: heartbeat::Heartbeats::default(),
            awaiting_last_poll: Mutex::default(),
            revocations: Mutex::default(),
            invocations: Default::default(),
        }))
    }

    /// The hub's name (lowercase: hub names are case-insensitive).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The hub's settings.
    pub fn settings(&self) -> &HubSettings {
        &self.0.settings
    }

    /// The hub's metric handles (`/metrics`).
    pub fn metrics(&self) -> &crate::metrics::HubMetrics {
        &self.0.metrics
    }

    /// The gateway's metrics this hub counts into.
    pub(crate) fn metrics_registry(&self) -> &crate::metrics::Metrics {
        &self.0.registry.metrics
    }

    /// Calls `f` with the transport of every live connection (scrape time).
    pub(crate) fn for_each_transport(&self, mut f: impl FnMut(Transport)) {
        for member in read(&self.0.members).connections.values() {
            f(member.connection.transport());
        }
    }

    /// Attaches the handler that serves this hub's connections, replacing any
    /// previous one.
    pub fn attach(&self, handler: Arc<dyn HubHandler>) {
        *write(&self.0.handler) = Some(handler);
    }

    /// Detaches the handler; new clients are then refused with 503.
    pub fn detach(&self) {
        *write(&self.0.handler) = None;
    }

    /// The attached handler, if any.
    pub fn handler(&self) -> Option<Arc<dyn HubHandler>> {
        read(&self.0.handler).clone()
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        read(&self.0.members).connections.len()
    }

    /// The live connection with this id.
    pub fn connection(&self, id: &str) -> Option<Arc<Connection>> {
        read(&self.0.members)
            .connections
            .get(id)
            .map(|m| m.connection.clone())
    }

    /// Adds an accepted connection to the hub and starts its heartbeat.
    pub(crate) fn register(&self, connection: Arc<Connection>) {
        let id = connection.id.clone();
        self.0.heartbeats.watch(self, &connection);
        let member = Member {
            connection,
            groups: HashSet::new(),
        };
        write(&self.0.members).connections.insert(id, member);
        self.0
            .registry
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records a client's pong; the heartbeat schedules the next ping.
    pub(crate) fn pong(&self, connection: &Arc<Connection>) {
        if connection.pong() {
            self.0.heartbeats.pong(self, connection);
        }
    }

    /// Ends a connection: it leaves the hub and every group, its transport
    /// finishes, and the handler hears `on_disconnected` (once).
    pub(crate) fn end(&self, connection: &Connection, ending: Ending, reason: DisconnectReason) {
        if !connection.end(ending, &reason) {
            return;
        }
        self.0.metrics.disconnected(&reason);
        if let Some(connection) = self.unregister(&connection.id) {
            // A polling session may owe its client a last poll: the noop
            // that ends a poll racing the client's own close (`1` over POST
            // and the poll travel on two connections, in no order); the
            // close packet `1` when a drain closed it between two polls, as
            // engine.io sends it (socket.io-client then sees "transport
            // close" rather than an error); or, when a revocation closed it,
            // its DISCONNECTs and then the close packet in separate
            // responses (see `Connection::poll_ready`). Any later request,
            // and any request after a timeout, an error or another close,
            // finds no session (400), as engine.io answers.
            let owes_frames =
                reason == DisconnectReason::TokenRevoked && connection.has_queued_frames();
            if (ending == Ending::ByClient || reason == DisconnectReason::Shutdown || owes_frames)
                && connection.transport() != Transport::WebSocket
                && !connection.farewell_sent()
            {
                self.awaiting_last_poll()
                    .insert(connection.id.clone(), connection.clone());
            }
            self.0.heartbeats.forget(connection);
        }
        tracing::debug!(hub = %self.name(), connection = %connection.id, %reason, "connection ended");
        if let Some(handler) = self.handler() {
            handler.on_disconnected(self, &connection.id, &reason);
        }
    }

    fn awaiting_last_poll(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Arc<Connection>>> {
        self.0
            .awaiting_last_poll
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Takes an ended polling session whose last poll has not come yet.
    pub(crate) fn take_awaiting_last_poll(&self, id: &str) -> Option<Arc<Connection>> {
        self.awaiting_last_poll().remove(id)
    }

    /// Keeps an ended polling session for one more poll.
    pub(crate) fn await_last_poll(&self, connection: Arc<Connection>) {
        self.awaiting_last_poll()
            .insert(connection.id.clone(), connection);
    }

    /// Whether an ended session is still kept for its last poll.
    pub(crate) fn keeps_for_last_poll(&self, id: &str) -> bool {
        self.awaiting_last_poll().contains_key(id)
    }

    /// Drops an ended session whose last poll never came.
    pub(crate) fn forget_last_poll(&self, id: &str) {
        self.awaiting_last_poll().remove(id);
    }

    /// Removes a connection from the hub and its groups; returns it.
    fn unregister(&self, id: &ConnectionId) -> Option<Arc<Connection>> {
        let mut members = write(&self.0.members);
        let member = members.connections.remove(id)?;
        self.0.invocations.forget(id);
        for group in &member.groups {
            if let Some(set) = members.groups.get_mut(group) {
                set.remove(id);
                if set.is_empty() {
                    members.groups.remove(group);
                }
            }
        }
        self.0
            .registry
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        Some(member.connection)
    }

    /// Delivers a client packet to the handler.
    /// A client's DISCONNECT of a namespace first leaves that namespace's
    /// groups, whoever serves the hub.
    /// A token refresh (the reserved event, see `refresh.rs`) is answered
    /// here and never reaches the handler.
    pub(crate) fn dispatch(&self, connection: &ConnectionId, packet: Packet) {
        if self.take_invocation_answer(connection, &packet) {
            return;
        }
        if let Packet::Message(text) = &packet {
            if text.starts_with('1')
                && let Some(prefix) = socketio::left_by_client(text)
            {
                self.leave(
                    &Selection::connection(connection.as_str()),
                    &Groups::Prefixed(prefix),
                );
            }
            if let Some(request) = refresh::parse(text) {
                self.refresh(connection, &request);
                return;
            }
        }
        if let Some(handler) = self.handler() {
            handler.on_packet(self, connection, packet);
        }
    }

    pub(crate) fn deliver(&self, connection: &Arc<Connection>, payload: &Payload) {
        match connection.enqueue(payload) {
            Ok(false) => {}
            Ok(true) => self.end(
                connection,
                Ending::ByServer,
                DisconnectReason::ServerClosed(String::new()),
            ),
            Err(reason) => self.end(connection, Ending::ByServer, reason),
        }
    }

    /// Connections matching `filter` (within `group` if given), found by the
    /// filter's plan.
    pub(crate) fn select(&self, group: Option<&str>, filter: &Filter) -> Vec<Arc<Connection>> {
        let members = read(&self.0.members);
        let matching = |id: &ConnectionId| {
            members
                .connections
                .get(id)
                .filter(|m| filter.matches(*m))
                .map(|m| m.connection.clone())
        };
        if let Some(group) = group {
            return members
                .groups
                .get(group)
                .map(|set| set.iter().filter_map(matching).collect())
                .unwrap_or_default();
        }
        match filter.candidates() {
            Candidates::Everyone => members
                .connections
                .values()
                .filter(|m| filter.matches(*m))
                .map(|m| m.connection.clone())
                .collect(),
            Candidates::Connections(ids) => {
                let mut seen = HashSet::new();
                ids.into_iter()
                    .filter(|id| seen.insert(*id))
                    .filter_map(|id| {
                        members
                            .connections
                            .get_key_value(id)
                            .and_then(|(k, _)| matching(k))
                    })
                    .collect()
            }
            Candidates::Groups(groups) => {
                let mut seen = HashSet::new();
                groups
                    .into_iter()
                    .filter_map(|g| members.groups.get(g))
                    .flatten()
                    .filter(|id| seen.insert((*id).clone()))
                    .filter_map(matching)
                    .collect()
            }
        }
    }

    /// The connections a selection names. One connection is found by its
    /// id alone (the common case: a reply to one client).
    fn selected(&self, who: &Selection) -> Vec<Arc<Connection>> {
        if let (None, Filter::ConnectionId(id)) = (&who.group, &who.filter) {
            return self.connection(id).into_iter().collect();
        }
        self.select(who.group.as_deref(), &who.filter)
    }

    /// Sends a payload to one connection. Returns false if it does not exist.
    pub fn send_to_connection(&self, id: &str, payload: &Payload) -> bool {
        match self.connection(id) {
            Some(connection) => {
                self.deliver(&connection, payload);
                true
            }
            None => false,
        }
    }

    /// Sends a payload to the selected connections, with the Socket.IO
    /// bookkeeping its packets call for (namespace groups, `{"close":…}`
    /// disconnects; see `socketio.rs`); returns how many.
    pub fn send(&self, to: &Selection, payload: &Payload) -> usize {
        self.send_selected(to, payload).0.len()
    }

    /// [`send`](Self::send), giving the selected connections and whether
    /// the payload took them out of groups (a DISCONNECT or CONNECT_ERROR).
    fn send_selected(&self, to: &Selection, payload: &Payload) -> (Vec<Arc<Connection>>, bool) {
        // The whole operation is timed once, not each recipient.
        let started = std::time::Instant::now();
        let effects = socketio::effects_of(payload);
        let delivered = effects.rewritten.as_ref().unwrap_or(payload);
        let targets = self.selected(to);
        for connection in &targets {
            self.deliver(connection, delivered);
            if !effects.is_empty() {
                self.apply_effects(connection, &effects);
            }
        }
        self.0.metrics.fanout(targets.len(), started.elapsed());
        (targets, !effects.leave.is_empty())
    }

    fn apply_effects(&self, connection: &Connection, effects: &socketio::Effects) {
        let who = Selection::connection(connection.id.as_str());
        for prefix in &effects.leave {
            self.leave(&who, &Groups::Prefixed(prefix.clone()));
        }
        if !effects.join.is_empty() {
            self.join(&who, &effects.join);
        }
        for namespace in &effects.disconnect_namespaces {
            let disconnect = socketio::client_disconnect(namespace);
            self.dispatch(&connection.id, Packet::Message(disconnect));
        }
        if effects.close {
            self.close_connection(
                connection.id.as_str(),
                "disconnected by the application server",
            );
        }
    }

    /// The ids of the connections matching `filter` (within `group` if given).
    pub fn select_ids(&self, group: Option<&str>, filter: &Filter) -> Vec<ConnectionId> {
        self.select(group, filter)
            .iter()
            .map(|c| c.id.clone())
            .collect()
    }

    /// The selected connections join every group in `groups`; returns how
    /// many connections were selected.
    pub fn join(&self, who: &Selection, groups: &[String]) -> usize {
        self.join_selected(who, groups).len()
    }

    /// [`join`](Self::join), giving the selected connections.
    fn join_selected(&self, who: &Selection, groups: &[String]) -> Vec<Arc<Connection>> {
        let targets = self.selected(who);
        let mut members = write(&self.0.members);
        for group in groups {
            // One shared name per group, however many members it has.
            let group = members.group_name(group);
            for connection in &targets {
                let Some(member) = members.connections.get_mut(&connection.id) else {
                    continue;
                };
                member.groups.insert(group.clone());
                members
                    .groups
                    .entry(group.clone())
                    .or_default()
                    .insert(connection.id.clone());
            }
        }
        drop(members);
        targets
    }

    /// The selected connections leave `groups`; returns how many connections
    /// were selected.
    pub fn leave(&self, who: &Selection, groups: &Groups) -> usize {
        self.leave_selected(who, groups).len()
    }

    /// [`leave`](Self::leave), giving the selected connections.
    fn leave_selected(&self, who: &Selection, groups: &Groups) -> Vec<Arc<Connection>> {
        let targets = self.selected(who);
        let mut members = write(&self.0.members);
        for connection in &targets {
            let leaving: Vec<Arc<str>> = match (groups, members.connections.get(&connection.id)) {
                (Groups::Named(names), _) => names.iter().map(|n| Arc::from(n.as_str())).collect(),
                (_, Some(member)) => member
                    .groups
                    .iter()
                    .filter(|g| groups.contains(g))
                    .cloned()
                    .collect(),
                (_, None) => continue,
            };
            for group in &leaving {
                members.leave(&connection.id, group);
            }
        }
        drop(members);
        targets
    }

    /// Applies an operation that did not come from this hub's handler (the
    /// REST API, another node) to this node's connections, like
    /// [`apply_now`](Self::apply_now); the handler then hears which of its
    /// connections changed groups, so a view of them it keeps (a server's
    /// `socket.rooms()`, its sockets of a namespace it was disconnected
    /// from) stays true.
    pub(crate) fn apply_from_outside(&self, operation: Operation) -> Outcome {
        let changed = match &operation {
            Operation::Join { who, groups } => self.join_selected(who, groups),
            Operation::Leave { who, groups } => self.leave_selected(who, groups),
            // A DISCONNECT (or CONNECT_ERROR) takes the connections it is
            // delivered to out of its namespace's groups.
            Operation::Send { to, payload } => match self.send_selected(to, payload) {
                (targets, true) => targets,
                (targets, false) => return Outcome::Count(targets.len()),
            },
            _ => return self.apply_now(operation),
        };
        if !changed.is_empty()
            && let Some(handler) = self.handler()
        {
            let ids: Vec<ConnectionId> = changed.iter().map(|c| c.id.clone()).collect();
            handler.on_groups_changed(self, &ids);
        }
        Outcome::Count(changed.len())
    }

    /// Whether any connection is selected.
    pub fn exists(&self, who: &Selection) -> bool {
        let members = read(&self.0.members);
        match (&who.group, &who.filter) {
            (Some(group), Filter::All) => members.groups.contains_key(group.as_str()),
            (None, Filter::ConnectionId(id)) => members.connections.contains_key(id.as_str()),
            (None, Filter::UserId(user)) => members
                .connections
                .values()
                .any(|m| m.connection.user_id() == Some(user.as_str())),
            _ => {
                drop(members);
                !self.select(who.group.as_deref(), &who.filter).is_empty()
            }
        }
    }

    /// The groups a connection is in.
    pub fn groups_of(&self, id: &str) -> Vec<String> {
        read(&self.0.members)
            .connections
            .get(id)
            .map(|m| m.groups.iter().map(|g| g.to_string()).collect())
            .unwrap_or_default()
    }

    /// Closes a connection; the client is told with an Engine.IO close packet.
    pub fn close_connection(&self, id: &str, reason: &str) -> bool {
        match self.connection(id) {
            Some(connection) => {
                self.end(
                    &connection,
                    Ending::ByServer,
                    DisconnectReason::ServerClosed(reason.to_owned()),
                );
                true
            }
            None => false,
        }
    }

    /// Closes the selected connections; returns how many.
    pub fn close(&self, who: &Selection, reason: &str) -> usize {
        let targets = self.selected(who);
        for connection in &targets {
            self.end(
                connection,
                Ending::ByServer,
                DisconnectReason::ServerClosed(reason.to_owned()),
            );
        }
        targets.len()
    }

    /// Every live connection of the hub.
    pub(crate) fn connections(&self) -> Vec<Arc<Connection>> {
        read(&self.0.members)
            .connections
            .values()
            .map(|m| m.connection.clone())
            .collect()
    }

    /// Closes every connection of the hub (shutdown, detach).
    pub fn close_all(&self, reason: DisconnectReason) {
        for connection in self.connections() {
            self.end(&connection, Ending::ByServer, reason.clone());
        }
    }
}

impl LocalHub {
    /// Applies an in-band token refresh and acknowledges it.
    fn refresh(&self, id: &ConnectionId, request: &refresh::RefreshRequest<'_>) {
        let Some(connection) = self.connection(id.as_str()) else {
            return;
        };
        let answer = match self.renew(&connection, request) {
            Ok(expires_at) => {
                self.metrics().tokens.refreshed.inc();
                tracing::info!(hub = %self.name(), "token refreshed");
                refresh::RefreshAnswer::Refreshed { expires_at }
            }
            Err((code, message)) => {
                self.metrics().tokens.refresh_refused.inc();
                tracing::info!(hub = %self.name(), code, %message, "token refresh refused");
                refresh::RefreshAnswer::Refused { code, message }
            }
        };
        if let Some(ack) = answer.ack_for(request) {
            self.deliver(&connection, &Payload::packet(Packet::Message(ack)));
        }
    }

    /// Checks a fresh token and gives the connection its lease; the new
    /// `exp`, or a status and message saying why not.
    fn renew(
        &self,
        connection: &Arc<Connection>,
        request: &refresh::RefreshRequest<'_>,
    ) -> Result<Option<u64>, (u16, String)> {
        let token = request
            .token
            .as_ref()
            .map_err(|why| (400, why.to_string()))?;
        if connection.token_fingerprint.is_none() {
            return Err((
                403,
                "this connection was opened without an access token: there is none to refresh"
                    .into(),
            ));
        }
        let tokens = self.0.registry.tokens.as_ref().ok_or((
            503,
            "this gateway does not verify tokens for live connections".to_string(),
        ))?;
        let claims = tokens
            .verify(token, self.name())
            .map_err(|e| (401, e.to_string()))?;
        if claims.user_id() != connection.user_id() {
            return Err((
                403,
                "the fresh token is for another user than this connection's".into(),
            ));
        }
        if self.revokes(&claims) {
            return Err((401, crate::gate::REVOKED.into()));
        }
        let mut lease = Lease::of(&claims, self.0.settings.token_expiry);
        lease.refreshed_fingerprint = Some(tokens.fingerprint(token));
        let expires_at = lease.expires_at;
        connection.renew(lease);
        // The deadline may have moved either way: the queue looks again.
        self.0.heartbeats.pong(self, connection);
        Ok(expires_at)
    }

    /// Whether a token with these claims is revoked for this hub.
    pub(crate) fn revokes(&self, claims: &Claims) -> bool {
        self.revocations().revokes(claims)
    }

    /// Whether a connection about to be registered holds a token revoked
    /// while the application was deciding on it.
    pub(crate) fn revokes_lease(&self, lease: &Lease, user: Option<&str>) -> bool {
        self.revocations().revokes_lease(lease, user)
    }

    fn revocations(&self) -> std::sync::MutexGuard<'_, RevocationList> {
        self.0.revocations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Revokes tokens: handshakes and refreshes with them are refused, and
    /// every connection holding one is closed (a Socket.IO DISCONNECT for
    /// each of its namespaces, so socket.io-client does not reconnect on
    /// its own, then an Engine.IO close). The connections are closed even
    /// if the list is full (and the revocation then not recorded).
    pub fn revoke(&self, revocation: &Revocation) -> Revoked {
        let registry = &self.0.registry;
        let recorded = self.revocations().add(
            revocation,
            registry.revocation_ttl,
            registry.max_revocations,
        );
        if recorded.is_ok() {
            self.metrics().tokens.revoked.inc();
        }
        if let Err(RevocationListFull(max)) = recorded {
            tracing::error!(hub = %self.name(), max, "revocation list full; raise --max-revocations");
        }
        let holders: Vec<Arc<Connection>> = read(&self.0.members)
            .connections
            .values()
            .map(|m| &m.connection)
            .filter(|c| c.holds_revoked(revocation))
            .cloned()
            .collect();
        for connection in &holders {
            self.close_revoked(connection);
        }
        tracing::info!(hub = %self.name(), closed = holders.len(), "tokens revoked");
        Revoked {
            closed: holders.len(),
            recorded: recorded.is_ok(),
        }
    }

    fn close_revoked(&self, connection: &Arc<Connection>) {
        let namespaces: Vec<String> = self
            .groups_of(connection.id.as_str())
            .iter()
            .filter_map(|group| portcullis_tunnel::group_name::parse_group_name(group))
            .filter(|(_, room)| room.is_none())
            .map(|(namespace, _)| namespace)
            .collect();
        let disconnects = namespaces
            .iter()
            .map(|namespace| match namespace.as_str() {
                "/" => Frame::text("41"),
                namespace => Frame::text(format!("41{namespace},")),
            })
            .collect();
        self.send(
            &Selection::connection(connection.id.as_str()),
            &Payload::from_frames(disconnects),
        );
        self.end(connection, Ending::ByServer, DisconnectReason::TokenRevoked);
    }
}

impl Members {
    /// The group's name as already stored, or a new one for a new group.
    fn group_name(&self, group: &str) -> Arc<str> {
        self.groups
            .get_key_value(group)
            .map_or_else(|| Arc::from(group), |(name, _)| name.clone())
    }

    fn leave(&mut self, id: &ConnectionId, group: &str) {
        if let Some(member) = self.connections.get_mut(id) {
            member.groups.remove(group);
        }
        if let Some(set) = self.groups.get_mut(group) {
            set.remove(id);
            if set.is_empty() {
                self.groups.remove(group);
            }
        }
    }
}

impl fmt::Debug for LocalHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalHub")
            .field("name", &self.0.name)
            .finish_non_exhaustive()
    }
}

/// The hubs by lowercase name.
pub(crate) type HubMap = RwLock<HashMap<String, LocalHub>>;

/// Every hub in `map`.
pub(crate) fn all_of(map: &HubMap) -> Vec<LocalHub> {
    read(map).values().cloned().collect()
}

/// Every hub of the gateway, by lowercase name. Clones share the hubs.
#[derive(Default, Clone)]
pub struct Hubs {
    hubs: Arc<HubMap>,
    settings: HashMap<String, HubSettings>,
    default_settings: HubSettings,
    registry: Arc<Registry>,
}

impl Hubs {
    /// A registry whose hubs take `default_settings` unless `per_hub` names them.
    pub fn new(default_settings: HubSettings, per_hub: HashMap<String, HubSettings>) -> Self {
        Self::with_metrics(default_settings, per_hub, Arc::default())
    }

    /// The same, counting into `metrics` (which then also reports the live
    /// connections of these hubs).
    pub fn with_metrics(
        default_settings: HubSettings,
        per_hub: HashMap<String, HubSettings>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let hubs = Arc::new(HubMap::default());
        metrics.register_collector(Box::new(crate::metrics::OpenConnections(Arc::downgrade(
            &hubs,
        ))));
        Hubs {
            hubs,
            settings: per_hub
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
            default_settings,
            registry: Arc::new(Registry {
                metrics,
                ..Registry::default()
            }),
        }
    }

    /// Hubs that verify in-band token refreshes with `tokens` and keep at
    /// most `max_revocations` revocations each, for `revocation_ttl` when
    /// the expiry of the tokens they cover is unknown.
    pub(crate) fn with_token_checks(
        mut self,
        tokens: Arc<Tokens>,
        max_revocations: usize,
        revocation_ttl: Duration,
    ) -> Self {
        self.registry = Arc::new(Registry {
            connections: Default::default(),
            metrics: self.registry.metrics.clone(),
            tokens: Some(tokens),
            max_revocations,
            revocation_ttl,
            node: Default::default(),
            cluster: Default::default(),
        });
        self
    }

    /// The metrics these hubs count into.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.registry.metrics
    }

    /// The hub of this name if it exists (hub names are case-insensitive).
    pub fn get(&self, name: &str) -> Option<LocalHub> {
        let hubs = read(&self.hubs);
        match hubs.get(name) {
            Some(hub) => Some(hub.clone()),
            None => hubs.get(&name.to_lowercase()).cloned(),
        }
    }

    /// The hub of this name, created on first use.
    pub fn get_or_create(&self, name: &str) -> LocalHub {
        let key = name.to_lowercase();
        if let Some(hub) = self.get(&key) {
            return hub;
        }
        write(&self.hubs)
            .entry(key.clone())
            .or_insert_with(|| {
                let settings = self.settings_for(&key);
                LocalHub::new(key, settings, self.registry.clone())
            })
            .clone()
    }

    /// The settings a hub of this name has (or would have).
    pub fn settings_for(&self, name: &str) -> HubSettings {
        if self.settings.is_empty() {
            return self.default_settings.clone();
        }
        self.settings
            .get(&name.to_lowercase())
            .cloned()
            .unwrap_or_else(|| self.default_settings.clone())
    }

    /// Number of hubs.
    pub fn len(&self) -> usize {
        read(&self.hubs).len()
    }

    /// Whether there is no hub.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live connections across every hub.
    pub fn connection_count(&self) -> usize {
        self.registry
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every hub.
    pub fn all(&self) -> Vec<LocalHub> {
        read(&self.hubs).values().cloned().collect()
    }
}

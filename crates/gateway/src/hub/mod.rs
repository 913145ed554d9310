//! Local hubs: the connections of one application held by this process,
//! their groups, and the handler that serves them.
//!
//! [`LocalHub`] is where the transports register connections and report
//! their packets, and it implements the contract's [`Hub`]: handlers answer
//! by applying [`Operation`]s to it (`operations.rs`). The contract itself
//! (handler interface, operations, filters, payloads) lives in the
//! `portcullis-hub` crate and is re-exported here.

mod connection;
mod heartbeat;
mod operations;
mod socketio;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use portcullis_protocol::engine::Packet;

pub use connection::Connection;
pub(crate) use connection::{Ending, PollReady, SessionParams, Transport};
pub use portcullis_hub::{
    Accept, Applied, BoxFuture, Candidates, ConnectRequest, ConnectionId, DisconnectReason, Filter,
    FilterSubject, Frame, Groups, Heartbeat, Hub, HubHandler, Operation, Outcome, Payload, Refusal,
    Selection, TransportKind, is_valid_hub_name, odata,
};

/// Per-hub settings.
#[derive(Debug, Clone, Default)]
pub struct HubSettings {
    /// Accept clients that bring no token.
    pub allow_anonymous: bool,
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
    /// Polling sessions the client closed while no poll was there to take
    /// its noop: kept out of the hub, for a poll that raced the close
    /// (until the poll comes or `ping_timeout` passes; see [`LocalHub::end`]).
    closed_by_client: Mutex<HashMap<ConnectionId, Arc<Connection>>>,
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

/// Gateway-wide counters shared by every hub.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub connections: std::sync::atomic::AtomicUsize,
    pub metrics: Arc<crate::metrics::Metrics>,
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
            closed_by_client: Mutex::default(),
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
            // A client that sends `1` over POST while its poll is on the way
            // (two connections, no order between them) still gets the noop
            // that ends that poll; any later request finds no session.
            if ending == Ending::ByClient
                && connection.transport() != Transport::WebSocket
                && !connection.farewell_sent()
            {
                self.closed_by_client()
                    .insert(connection.id.clone(), connection.clone());
            }
            self.0.heartbeats.forget(connection);
        }
        tracing::debug!(hub = %self.name(), connection = %connection.id, %reason, "connection ended");
        if let Some(handler) = self.handler() {
            handler.on_disconnected(self, &connection.id, &reason);
        }
    }

    fn closed_by_client(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Arc<Connection>>> {
        self.0
            .closed_by_client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a session the client closed whose last poll has not come yet
    /// (it is answered once, then the sid is unknown).
    pub(crate) fn take_closed_by_client(&self, id: &str) -> Option<Arc<Connection>> {
        self.closed_by_client().remove(id)
    }

    /// Whether a client-closed session is still kept for its last poll.
    pub(crate) fn keeps_closed(&self, id: &str) -> bool {
        self.closed_by_client().contains_key(id)
    }

    /// Drops a client-closed session whose last poll never came.
    pub(crate) fn forget_closed(&self, id: &str) {
        self.closed_by_client().remove(id);
    }

    /// Removes a connection from the hub and its groups; returns it.
    fn unregister(&self, id: &ConnectionId) -> Option<Arc<Connection>> {
        let mut members = write(&self.0.members);
        let member = members.connections.remove(id)?;
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
    pub(crate) fn dispatch(&self, connection: &ConnectionId, packet: Packet) {
        if let Packet::Message(text) = &packet
            && text.starts_with('1')
            && let Some(prefix) = socketio::left_by_client(text)
        {
            self.leave(
                &Selection::connection(connection.as_str()),
                &Groups::Prefixed(prefix),
            );
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
        targets.len()
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
        targets.len()
    }

    /// The selected connections leave `groups`; returns how many connections
    /// were selected.
    pub fn leave(&self, who: &Selection, groups: &Groups) -> usize {
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
        targets.len()
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

    /// Closes every connection of the hub (shutdown, detach).
    pub fn close_all(&self, reason: DisconnectReason) {
        let all: Vec<_> = read(&self.0.members)
            .connections
            .values()
            .map(|m| m.connection.clone())
            .collect();
        for connection in all {
            self.end(&connection, Ending::ByServer, reason.clone());
        }
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

/// Every hub of the gateway, by lowercase name.
#[derive(Default)]
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
                connections: Default::default(),
                metrics,
            }),
        }
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

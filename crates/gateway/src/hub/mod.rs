//! Hubs: the connections of one application, their groups, and the handler
//! that serves them.
//!
//! The [`Hub`] handle is the one interface between the transports (which
//! register connections and report their packets) and the handler (which
//! answers through [`Hub`]'s operations). A cluster layer can later forward
//! the same operations to other nodes behind this handle.

mod connection;
mod filter;
mod handler;
mod heartbeat;
pub mod odata;
mod payload;

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use base64::Engine as _;
use portcullis_protocol::engine::Packet;

pub use connection::Connection;
pub(crate) use connection::{Ending, PollReady, SessionParams, Transport};
pub use filter::{Candidates, Filter, FilterSubject};
pub use handler::{
    Accept, BoxFuture, ConnectRequest, DisconnectReason, Heartbeat, HubHandler, Refusal,
    TransportKind,
};
pub use payload::{Frame, Payload};

/// A connection id: 128 random bits in URL-safe base64, so it is unguessable,
/// unique across gateway nodes, and safe unencoded in URLs and filters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(Arc<str>);

impl ConnectionId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::random();
        ConnectionId(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(bytes)
                .into(),
        )
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.0)
    }
}

impl Borrow<str> for ConnectionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Whether `name` is an acceptable hub name: 1 to 128 ASCII letters, digits,
/// `_`, `-` or `.`, but not `.` or `..` (hub names appear in URLs, token
/// audiences and logs; the dot segments would be resolved away by URL
/// normalisation, so a token's audience could never name them faithfully).
pub fn is_valid_hub_name(name: &str) -> bool {
    !matches!(name, "." | "..")
        && (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Per-hub settings.
#[derive(Debug, Clone, Default)]
pub struct HubSettings {
    /// Accept clients that bring no token.
    pub allow_anonymous: bool,
}

/// A handle to one hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

struct HubInner {
    name: String,
    settings: HubSettings,
    handler: RwLock<Option<Arc<dyn HubHandler>>>,
    members: RwLock<Members>,
    registry: Arc<Registry>,
    heartbeats: heartbeat::Heartbeats,
    /// Polling sessions the client closed while no poll was there to take
    /// its noop: kept out of the hub, for a poll that raced the close
    /// (until the poll comes or `ping_timeout` passes; see [`Hub::end`]).
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
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    pub(crate) fn new(name: String, settings: HubSettings, registry: Arc<Registry>) -> Self {
        Hub(Arc::new(HubInner {
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
    pub(crate) fn dispatch(&self, connection: &ConnectionId, packet: Packet) {
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

    /// Sends a payload to one connection. Returns false if it does not exist.
    pub async fn send_to_connection(&self, id: &str, payload: Payload) -> bool {
        self.send_to_connection_now(id, &payload)
    }

    /// [`Hub::send_to_connection`] without waiting: the in-process form,
    /// for handlers that run inside the gateway (their packets are queued
    /// at once).
    pub fn send_to_connection_now(&self, id: &str, payload: &Payload) -> bool {
        match self.connection(id) {
            Some(connection) => {
                self.deliver(&connection, payload);
                true
            }
            None => false,
        }
    }

    /// Sends a payload to every connection matching `filter`; returns how many.
    pub async fn send_to_all(&self, filter: &Filter, payload: Payload) -> usize {
        self.send_to_all_now(filter, &payload)
    }

    /// [`Hub::send_to_all`] without waiting.
    pub fn send_to_all_now(&self, filter: &Filter, payload: &Payload) -> usize {
        let targets = self.select(None, filter);
        targets.iter().for_each(|c| self.deliver(c, payload));
        targets.len()
    }

    /// The ids of the connections matching `filter` (within `group` if given).
    pub fn select_ids(&self, group: Option<&str>, filter: &Filter) -> Vec<ConnectionId> {
        self.select(group, filter)
            .iter()
            .map(|c| c.id.clone())
            .collect()
    }

    /// Sends a payload to the members of `group` matching `filter`.
    pub async fn send_to_group(&self, group: &str, filter: &Filter, payload: Payload) -> usize {
        let targets = self.select(Some(group), filter);
        targets.iter().for_each(|c| self.deliver(c, &payload));
        targets.len()
    }

    /// Sends a payload to every connection of `user`.
    pub async fn send_to_user(&self, user: &str, payload: Payload) -> usize {
        self.send_to_all(&Filter::UserId(user.to_owned()), payload)
            .await
    }

    /// Adds the connections matching `filter` to every group in `groups`.
    pub async fn add_to_groups(&self, groups: &[String], filter: &Filter) -> usize {
        self.add_to_groups_now(groups, filter)
    }

    /// [`Hub::add_to_groups`] without waiting; returns how many connections matched.
    pub fn add_to_groups_now(&self, groups: &[String], filter: &Filter) -> usize {
        let targets = self.select(None, filter);
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

    /// Removes the connections matching `filter` from every group in `groups`.
    pub async fn remove_from_groups(&self, groups: &[String], filter: &Filter) -> usize {
        self.remove_from_groups_now(groups, filter)
    }

    /// [`Hub::remove_from_groups`] without waiting; returns how many connections matched.
    pub fn remove_from_groups_now(&self, groups: &[String], filter: &Filter) -> usize {
        let targets = self.select(None, filter);
        let mut members = write(&self.0.members);
        for connection in &targets {
            for group in groups {
                members.leave(&connection.id, group);
            }
        }
        targets.len()
    }

    /// Removes one connection from the groups for which `which` is true (all
    /// groups with a prefix, say). Returns how many it left.
    pub async fn leave_groups_where(&self, id: &str, which: impl Fn(&str) -> bool) -> usize {
        self.leave_groups_where_now(id, which)
    }

    /// [`Hub::leave_groups_where`] without waiting.
    pub fn leave_groups_where_now(&self, id: &str, which: impl Fn(&str) -> bool) -> usize {
        let mut members = write(&self.0.members);
        let Some((key, member)) = members.connections.get_key_value(id) else {
            return 0;
        };
        let key = key.clone();
        let leaving: Vec<Arc<str>> = member.groups.iter().filter(|g| which(g)).cloned().collect();
        for group in &leaving {
            members.leave(&key, group);
        }
        leaving.len()
    }

    /// Whether `user` has at least one connection.
    pub async fn user_exists(&self, user: &str) -> bool {
        read(&self.0.members)
            .connections
            .values()
            .any(|m| m.connection.user_id() == Some(user))
    }

    /// Whether `group` has at least one member.
    pub async fn group_exists(&self, group: &str) -> bool {
        read(&self.0.members).groups.contains_key(group)
    }

    /// The groups a connection is in.
    pub async fn groups_of(&self, id: &str) -> Vec<String> {
        read(&self.0.members)
            .connections
            .get(id)
            .map(|m| m.groups.iter().map(|g| g.to_string()).collect())
            .unwrap_or_default()
    }

    /// Closes a connection; the client is told with an Engine.IO close packet.
    pub async fn close_connection(&self, id: &str, reason: &str) -> bool {
        self.close_connection_now(id, reason)
    }

    /// [`Hub::close_connection`] without waiting.
    pub fn close_connection_now(&self, id: &str, reason: &str) -> bool {
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

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("name", &self.0.name)
            .finish_non_exhaustive()
    }
}

/// Every hub of the gateway, by lowercase name.
#[derive(Default)]
pub struct Hubs {
    hubs: RwLock<HashMap<String, Hub>>,
    settings: HashMap<String, HubSettings>,
    default_settings: HubSettings,
    registry: Arc<Registry>,
}

impl Hubs {
    /// A registry whose hubs take `default_settings` unless `per_hub` names them.
    pub fn new(default_settings: HubSettings, per_hub: HashMap<String, HubSettings>) -> Self {
        Hubs {
            hubs: RwLock::new(HashMap::new()),
            settings: per_hub
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
            default_settings,
            registry: Arc::default(),
        }
    }

    /// The hub of this name if it exists (hub names are case-insensitive).
    pub fn get(&self, name: &str) -> Option<Hub> {
        let hubs = read(&self.hubs);
        match hubs.get(name) {
            Some(hub) => Some(hub.clone()),
            None => hubs.get(&name.to_lowercase()).cloned(),
        }
    }

    /// The hub of this name, created on first use.
    pub fn get_or_create(&self, name: &str) -> Hub {
        let key = name.to_lowercase();
        if let Some(hub) = self.get(&key) {
            return hub;
        }
        write(&self.hubs)
            .entry(key.clone())
            .or_insert_with(|| {
                let settings = self.settings_for(&key);
                Hub::new(key, settings, self.registry.clone())
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
    pub fn all(&self) -> Vec<Hub> {
        read(&self.hubs).values().cloned().collect()
    }
}

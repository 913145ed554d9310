//! The server: configuration, namespaces, attachment to a gateway, and the
//! server-wide emit API.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use portcullis_hub::Revocation;
use serde::Serialize;

use crate::ack::{AckStream, FromAck};
use crate::backend::Backend;
use crate::conn::Conn;
use crate::conn_id::ConnId;

use crate::connect_timeout::ConnectDeadlines;
use crate::errors::{AttachError, RevokeError, SendError};
use crate::extract::ConnectHandler;
use crate::ns::{Namespace, NamespaceInner, Namespaces};
use crate::operators::{BroadcastOperator, IntoRooms};
use crate::socket::SocketRef;
use crate::sync::{lock, read, write};

/// Settings of a [`SocketIo`] server; see [`SocketIoBuilder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Engine.IO ping interval (default 25 s). The gateway sends the pings.
    pub ping_interval: Duration,
    /// How long the gateway waits for a pong (default 20 s).
    pub ping_timeout: Duration,
    /// Largest payload a client may send at once, in bytes (default 1 MB;
    /// the gateway's own limit caps it).
    pub max_payload: u64,
    /// How long a client may stay without joining any namespace before its
    /// connection is closed (default 45 s, as socket.io).
    pub connect_timeout: Duration,
    /// Default wait for acknowledgements of `emit_with_ack` (default 5 s).
    pub ack_timeout: Duration,
    /// Packets of one connection queued for processing before it is closed
    /// as flooding (default 4096).
    pub max_queued_packets: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_secs(45),
            ack_timeout: Duration::from_secs(5),
            max_queued_packets: 4096,
        }
    }
}

/// Builds a [`SocketIo`] with non-default settings.
///
/// ```
/// use std::time::Duration;
/// use portcullis_server::SocketIo;
///
/// let io = SocketIo::builder()
///     .ping_interval(Duration::from_secs(10))
///     .ping_timeout(Duration::from_secs(5))
///     .max_payload(64 * 1024)
///     .connect_timeout(Duration::from_secs(10))
///     .ack_timeout(Duration::from_secs(2))
///     .build();
/// assert_eq!(io.config().ack_timeout, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SocketIoBuilder {
    config: Config,
    state: StateMap,
}

/// The application state given to the builder, one value per type; read-only
/// once the server is built, so it needs no lock.
#[derive(Clone, Default)]
pub(crate) struct StateMap(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl StateMap {
    /// A clone of the state of type `T`.
    pub fn get<T: Clone + 'static>(&self) -> Option<T> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }
}

impl fmt::Debug for StateMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State").field("len", &self.0.len()).finish()
    }
}

impl SocketIoBuilder {
    /// Engine.IO ping interval.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// Engine.IO ping timeout.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.config.ping_timeout = timeout;
        self
    }

    /// Largest payload a client may send at once, in bytes.
    pub fn max_payload(mut self, bytes: u64) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// How long a client may take to join a namespace.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Default acknowledgement timeout.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.config.ack_timeout = timeout;
        self
    }

    /// Packets of one connection queued for processing before it is closed.
    pub fn max_queued_packets(mut self, packets: usize) -> Self {
        self.config.max_queued_packets = packets.max(1);
        self
    }

    /// Adds application state, one value per type: handlers, connect
    /// handlers and middlewares get a clone of it with the
    /// [`State<T>`](crate::extract::State) extractor. Store cheap clones
    /// (`Arc`, pools, handles).
    pub fn with_state<T: Clone + Send + Sync + 'static>(mut self, state: T) -> Self {
        self.state.0.insert(TypeId::of::<T>(), Arc::new(state));
        self
    }

    /// The server.
    pub fn build(self) -> SocketIo {
        SocketIo(Arc::new(IoInner {
            config: self.config,
            state: self.state,
            namespaces: RwLock::default(),
            backend: OnceLock::new(),
            conns: Mutex::default(),
            connect_deadlines: ConnectDeadlines::default(),
        }))
    }
}

pub(crate) struct IoInner {
    pub config: Config,
    /// The application state given to the builder (see `State<T>`).
    pub(crate) state: StateMap,
    namespaces: RwLock<Namespaces>,
    backend: OnceLock<Backend>,
    pub(crate) conns: Mutex<HashMap<ConnId, Arc<Conn>>>,
    pub(crate) connect_deadlines: ConnectDeadlines,
}

impl fmt::Debug for IoInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketIo")
            .field("hub", &self.backend.get().map(Backend::hub_name))
            .field("connections", &lock(&self.conns).len())
            .finish_non_exhaustive()
    }
}

impl IoInner {
    pub fn backend(&self) -> Option<&Backend> {
        self.backend.get()
    }

    /// Sets the backend once; the attach modes call this.
    pub fn set_backend(&self, backend: Backend) -> Result<(), AttachError> {
        if let Some(existing) = self.backend.get() {
            return Err(AttachError::AlreadyAttached(existing.hub_name().to_owned()));
        }
        self.backend
            .set(backend)
            .map_err(|b| AttachError::AlreadyAttached(b.hub_name().to_owned()))
    }

    /// The namespace serving `path`, and the path as sockets keep it.
    pub fn find_namespace(&self, path: &str) -> Option<(Arc<str>, Arc<NamespaceInner>)> {
        read(&self.namespaces).find(path)
    }

    /// Closes a client connection (the gateway then reports its end).
    pub fn close_connection(&self, id: &ConnId, reason: &str) {
        if let Some(backend) = self.backend() {
            backend.close(id, reason);
        }
    }

    pub fn conn(&self, id: &str) -> Option<Arc<Conn>> {
        lock(&self.conns).get(id).cloned()
    }

    /// The connected sockets of `namespace`. Each connection owns its
    /// sockets (they live and end with it), so this walks the connections
    /// instead of keeping a second, server-wide registry in step.
    pub fn sockets_of(&self, namespace: &str) -> Vec<SocketRef> {
        lock(&self.conns)
            .values()
            .filter_map(|conn| conn.socket(namespace))
            .collect()
    }

    /// The connected socket with id `sid`, in any namespace.
    pub fn find_socket(&self, sid: &str) -> Option<SocketRef> {
        lock(&self.conns)
            .values()
            .find_map(|conn| conn.socket_by_id(sid))
    }
}

/// A Socket.IO server whose clients are held by a Portcullis gateway.
/// Cheap to clone: every clone is the same server.
///
/// Declare namespaces with [`ns`](Self::ns) (and [`dyn_ns`](Self::dyn_ns)),
/// then attach the server to a gateway's hub with
/// [`attach`](Self::attach). Clients connect to the gateway at
/// `/clients/socketio/hubs/{hub}` with an access token.
///
/// ```no_run
/// use portcullis_auth::AccessKeys;
/// use portcullis_gateway::{Gateway, GatewayConfig};
/// use portcullis_server::{SocketIo, SocketRef, extract::Data};
///
/// # async fn run() -> std::io::Result<()> {
/// let io = SocketIo::new();
/// io.ns("/", |socket: SocketRef| async move {
///     socket.on("echo", |socket: SocketRef, Data(v): Data<serde_json::Value>| async move {
///         socket.emit("echo", &v).ok();
///     });
/// });
///
/// let gateway = Gateway::new(GatewayConfig::new("127.0.0.1:8080".parse().unwrap(), AccessKeys::generate()));
/// io.attach(&gateway, "chat").expect("a fresh hub");
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// gateway.serve(listener, std::future::pending()).await
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SocketIo(pub(crate) Arc<IoInner>);

impl Default for SocketIo {
    fn default() -> Self {
        SocketIo::new()
    }
}

impl SocketIo {
    /// A server with default settings.
    pub fn new() -> Self {
        SocketIo::builder().build()
    }

    /// A builder for non-default settings.
    pub fn builder() -> SocketIoBuilder {
        SocketIoBuilder::default()
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// Declares the namespace `path` (`"/"`, `"/chat"`): `handler` runs for
    /// every socket accepted in it, after the middlewares added with
    /// [`Namespace::with`]. Declaring a path again replaces it.
    ///
    /// The handler takes [`FromConnect`](crate::extract::FromConnect)
    /// arguments in any order, up to six: [`SocketRef`],
    /// [`State<T>`](crate::extract::State), [`Data<T>`](crate::extract::Data)
    /// or [`TryData<T>`](crate::extract::TryData) (the `auth` payload of the
    /// client's CONNECT), [`Extension<T>`](crate::extract::Extension). If
    /// one cannot be built, the socket is refused with the reason (see
    /// [`ConnectHandler`]).
    ///
    /// Clients connecting to a namespace that is not declared get a
    /// CONNECT_ERROR `"Invalid namespace"`.
    ///
    /// ```no_run
    /// use portcullis_server::{SocketIo, SocketRef, extract::{Data, State}};
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Auth { nickname: String }
    /// #[derive(Clone)]
    /// struct Motd(&'static str);
    ///
    /// let io = SocketIo::builder().with_state(Motd("be nice")).build();
    /// io.ns("/", |socket: SocketRef, Data(auth): Data<Auth>, State(motd): State<Motd>| async move {
    ///     socket.emit("hello", &(auth.nickname, motd.0)).ok();
    /// });
    /// ```
    pub fn ns<H, T>(&self, path: impl Into<String>, handler: H) -> Namespace
    where
        H: ConnectHandler<T>,
        T: 'static,
    {
        let ns = NamespaceInner::new(handler);
        write(&self.0.namespaces).insert(normalize(path.into()), ns.clone());
        Namespace(ns)
    }

    /// Declares a dynamic namespace: every path for which `matcher` returns
    /// true (and that no static namespace claims) is served by `handler`.
    /// [`SocketRef::ns`] then tells the path the client asked for.
    ///
    /// ```no_run
    /// use portcullis_server::{SocketIo, SocketRef};
    ///
    /// let io = SocketIo::new();
    /// io.dyn_ns(|path| path.starts_with("/team-"), |socket: SocketRef| async move {
    ///     println!("joined {}", socket.ns());
    /// });
    /// ```
    pub fn dyn_ns<M, H, T>(&self, matcher: M, handler: H) -> Namespace
    where
        M: Fn(&str) -> bool + Send + Sync + 'static,
        H: ConnectHandler<T>,
        T: 'static,
    {
        let ns = NamespaceInner::new(handler);
        write(&self.0.namespaces).insert_dynamic(Arc::new(matcher), ns.clone());
        Namespace(ns)
    }

    /// Broadcasts in namespace `path` (declared or not).
    pub fn of(&self, path: &str) -> BroadcastOperator {
        BroadcastOperator::new(self.0.clone(), &normalize(path.to_owned()))
    }

    /// Broadcasts to rooms of the `/` namespace.
    pub fn to(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.of("/").to(rooms)
    }

    /// Broadcasts to the `/` namespace except some rooms.
    pub fn except(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.of("/").except(rooms)
    }

    /// Broadcasts with binary attachments in the `/` namespace.
    pub fn bin(&self, binary: impl IntoIterator<Item = impl Into<Bytes>>) -> BroadcastOperator {
        self.of("/").bin(binary)
    }

    /// Sets the acknowledgement timeout of a broadcast in the `/` namespace.
    pub fn timeout(&self, timeout: Duration) -> BroadcastOperator {
        self.of("/").timeout(timeout)
    }

    /// Emits to every socket of the `/` namespace.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), SendError> {
        self.of("/").emit(event, data)
    }

    /// Emits to every socket of the `/` namespace and collects their
    /// acknowledgements (see [`BroadcastOperator::emit_with_ack`]).
    pub fn emit_with_ack<T: FromAck>(
        &self,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> AckStream<T> {
        self.of("/").emit_with_ack(event, data)
    }

    /// The connected sockets of the `/` namespace.
    pub fn sockets(&self) -> Vec<SocketRef> {
        self.of("/").sockets()
    }

    /// The connected socket with id `sid`, in any namespace.
    pub fn get_socket(&self, sid: &str) -> Option<SocketRef> {
        self.0.find_socket(sid)
    }

    /// The hub this server is attached to, if any.
    pub fn hub_name(&self) -> Option<&str> {
        self.0.backend().map(Backend::hub_name)
    }

    /// Revokes every token of `user` issued before `issued_before` (a
    /// logout: pass `SystemTime::now()`). The gateway refuses them at the
    /// handshake and at in-band refresh from then on, and disconnects every
    /// connection of the user holding one (the clients get "io server
    /// disconnect", so socket.io-client does not reconnect by itself).
    /// Resolves once the gateway has it. Tokens issued from the next whole
    /// second after `issued_before` on (a new login) stay valid: `iat` has
    /// whole seconds, so a token issued in the same second is revoked too.
    pub async fn revoke_user_tokens(
        &self,
        user: &str,
        issued_before: SystemTime,
    ) -> Result<(), RevokeError> {
        // `iat` has whole seconds: round up, so that a token issued just
        // before `issued_before`, in the same second, is revoked too (and
        // one issued just after it in that second as well).
        let since_epoch = issued_before.duration_since(UNIX_EPOCH).unwrap_or_default();
        let issued_before = since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0);
        self.revoke(Revocation::User {
            user: user.to_owned(),
            issued_before,
        })
        .await
    }

    /// Revokes one token by its `jti` (tokens minted by
    /// [`Negotiate`](crate::negotiate::Negotiate) carry one). `expires_at`,
    /// the token's `exp` when known, lets the gateway forget the revocation
    /// when the token would have expired anyway.
    pub async fn revoke_token(
        &self,
        token_id: &str,
        expires_at: Option<SystemTime>,
    ) -> Result<(), RevokeError> {
        let expires_at =
            expires_at.map(|at| at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
        self.revoke(Revocation::Token {
            id: token_id.to_owned(),
            expires_at,
        })
        .await
    }

    async fn revoke(&self, revocation: Revocation) -> Result<(), RevokeError> {
        let backend = self.0.backend().ok_or(RevokeError::NotAttached)?;
        if backend.revoke(revocation).await {
            Ok(())
        } else {
            Err(RevokeError::NotRecorded)
        }
    }
}

/// socket.io treats a namespace without a leading slash as if it had one.
fn normalize(path: String) -> String {
    if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    }
}

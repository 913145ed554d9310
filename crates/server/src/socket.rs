//! A client's socket in one namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use portcullis_auth::Claims;
use portcullis_hub::{Filter, FilterSubject, TransportKind};
use portcullis_protocol::socket::PacketKind;
use portcullis_tunnel::group_name::{group_name, parse_group_name};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::ack::{AckFuture, AckResponse, FromAck};
use crate::conn::Conn;

use crate::errors::SendError;
use crate::extensions::Extensions;
use crate::extract::{EventHandler, EventParts};
use crate::handlers::Handlers;
use crate::io::IoInner;
use crate::operators::{BroadcastOperator, Emitter, IntoRooms};
use crate::packet;
use crate::short_id::ShortId;
use crate::sync::{lock, read, write};

/// A socket id: 128 random bits in URL-safe base64, distinct from the
/// connection id (one connection has one socket per namespace it joined).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(ShortId);

impl Sid {
    pub(crate) fn generate() -> Self {
        let bytes: [u8; 16] = rand::random();
        let mut text = [0; 22];
        let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(bytes, &mut text)
            .unwrap_or_default();
        Sid(ShortId::new(
            std::str::from_utf8(&text[..len]).unwrap_or_default(),
        ))
    }

    /// The empty id of an acknowledgement from a socket of another
    /// application process (see [`AckStream`](crate::AckStream)).
    pub(crate) fn unknown() -> Self {
        Sid(ShortId::new(""))
    }

    /// The id as text (empty for a socket of another application process
    /// that answered a broadcast over the tunnel; see
    /// [`AckStream`](crate::AckStream)).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

impl PartialEq<str> for Sid {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Sid {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl AsRef<str> for Sid {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// What the client sent when it connected: the Engine.IO handshake request's
/// query and headers, and the `auth` object of its Socket.IO CONNECT
/// (`io(url, { auth: {...} })`).
pub struct Handshake {
    conn: Arc<Conn>,
    /// `None` for `null`, what most clients send.
    auth: Option<Box<Value>>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The query carries the client's access token (`?access_token=`):
        // show that it was there, never its value.
        let query: Vec<(&str, &str)> = self
            .query()
            .iter()
            .map(|(name, value)| match name.as_str() {
                "access_token" => (name.as_str(), "<redacted>"),
                _ => (name.as_str(), value.as_str()),
            })
            .collect();
        f.debug_struct("Handshake")
            .field("auth", self.auth())
            .field("query", &query)
            .field("transport", &self.conn.transport)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// The `auth` payload of the CONNECT packet (`null` when absent).
    pub fn auth(&self) -> &Value {
        self.auth.as_deref().unwrap_or(&Value::Null)
    }

    /// The handshake request's query parameters, in order.
    pub fn query(&self) -> &[(String, String)] {
        self.conn.request.query()
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.conn.request.query_param(name)
    }

    /// The handshake request's headers.
    pub fn headers(&self) -> &HeaderMap {
        self.conn.request.headers()
    }

    /// The transport of the handshake (the client may upgrade later).
    pub fn transport(&self) -> TransportKind {
        self.conn.transport
    }
}

/// Why a socket disconnected, with socket.io's wording ([`as_str`](Self::as_str)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client's connection closed (it went away or closed it).
    TransportClose,
    /// The connection failed (too slow, payload too large).
    TransportError,
    /// The client stopped answering pings.
    PingTimeout,
    /// The client left the namespace (`socket.disconnect()` on the client).
    ClientNamespaceDisconnect,
    /// The server disconnected the socket ([`SocketRef::disconnect`]).
    ServerNamespaceDisconnect,
    /// The gateway is shutting down.
    ServerShuttingDown,
    /// The connection was closed by the server or an operator.
    ForcedClose,
    /// The client sent a packet that could not be parsed.
    ParseError,
}

impl DisconnectReason {
    /// socket.io's name for the reason, e.g. `"client namespace disconnect"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ParseError => "parse error",
        }
    }

    pub(crate) fn from_gateway(reason: &portcullis_hub::DisconnectReason) -> Self {
        use portcullis_hub::DisconnectReason as G;
        match reason {
            G::ClientClosed | G::TransportClosed => DisconnectReason::TransportClose,
            G::PingTimeout => DisconnectReason::PingTimeout,
            G::ServerClosed(_) => DisconnectReason::ForcedClose,
            G::ProtocolError(_) => DisconnectReason::ParseError,
            G::Shutdown => DisconnectReason::ServerShuttingDown,
            _ => DisconnectReason::TransportError,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type DisconnectFn = Arc<
    dyn Fn(SocketRef, DisconnectReason) -> futures_util::future::BoxFuture<'static, ()>
        + Send
        + Sync,
>;

const CONNECTING: u8 = 0;
const CONNECTED: u8 = 1;
const DISCONNECTED: u8 = 2;

pub(crate) struct SocketInner {
    id: Sid,
    namespace: Arc<str>,
    pub(crate) conn: Arc<Conn>,
    pub(crate) io: Arc<IoInner>,
    handshake: Handshake,
    handlers: Handlers,
    on_disconnect: Mutex<Option<DisconnectFn>>,
    /// Pending acknowledgements by id (a map that costs nothing empty).
    acks: Mutex<BTreeMap<u64, oneshot::Sender<AckResponse>>>,
    next_ack: AtomicU64,
    rooms: RwLock<BTreeSet<String>>,
    extensions: Extensions,
    state: AtomicU8,
    /// Set once the gateway has delivered the CONNECT answer (and put the
    /// connection in the namespace's group).
    announced: AtomicBool,
}

/// A client's socket in one namespace: what socket.io calls `socket`.
/// Cheap to clone; every handler gets one.
///
/// ```no_run
/// use portcullis_server::{SocketIo, SocketRef, extract::{Data, AckSender}};
///
/// let io = SocketIo::new();
/// io.ns("/", |socket: SocketRef| async move {
///     println!("{} connected as {:?}", socket.id(), socket.user_id());
///     socket.join("lobby");
///     socket.on("chat", |socket: SocketRef, Data(text): Data<String>, ack: Option<AckSender>| async move {
///         socket.to("lobby").emit("chat", &(socket.user_id(), &text)).ok();
///         if let Some(ack) = ack {
///             ack.send(&"delivered").ok();
///         }
///     });
///     socket.on_disconnect(|socket: SocketRef, reason| async move {
///         println!("{} left: {reason}", socket.id());
///     });
/// });
/// ```
#[derive(Clone)]
pub struct SocketRef(pub(crate) Arc<SocketInner>);

impl fmt::Debug for SocketRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketRef")
            .field("id", &self.0.id)
            .field("namespace", &self.0.namespace)
            .field("connection", &self.0.conn.id)
            .finish()
    }
}

impl PartialEq for SocketRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SocketRef {}

impl SocketRef {
    pub(crate) fn new(io: Arc<IoInner>, conn: Arc<Conn>, namespace: Arc<str>, auth: Value) -> Self {
        SocketRef(Arc::new(SocketInner {
            id: Sid::generate(),
            namespace,
            handshake: Handshake {
                conn: conn.clone(),
                auth: (!auth.is_null()).then(|| Box::new(auth)),
            },
            conn,
            io,
            handlers: Handlers::default(),
            on_disconnect: Mutex::default(),
            acks: Mutex::default(),
            next_ack: AtomicU64::new(0),
            rooms: RwLock::default(),
            extensions: Extensions::default(),
            state: AtomicU8::new(CONNECTING),
            announced: AtomicBool::new(false),
        }))
    }

    /// The socket id (`socket.id` in socket.io), sent to the client in the
    /// CONNECT answer.
    pub fn id(&self) -> &Sid {
        &self.0.id
    }

    /// The namespace this socket is in, e.g. `/chat`.
    pub fn ns(&self) -> &str {
        &self.0.namespace
    }

    /// The id of the underlying connection (shared by the connection's
    /// sockets in every namespace; the gateway's `connectionId`).
    pub fn connection_id(&self) -> &str {
        self.0.conn.id.as_str()
    }

    /// The verified claims of the client's access token: every claim by
    /// name, each value a list of strings (what the official SDK exposes as
    /// `socket.request.claims`). Empty for anonymous clients.
    pub fn claims(&self) -> &Claims {
        self.0.conn.request.claims()
    }

    /// The verified user id: the token's `sub` claim.
    pub fn user_id(&self) -> Option<&str> {
        self.0.conn.request.user_id()
    }

    /// The token's roles (the `role` claim).
    pub fn roles(&self) -> &[String] {
        self.claims().roles()
    }

    /// The handshake: query, headers and the CONNECT `auth` payload.
    pub fn handshake(&self) -> &Handshake {
        &self.0.handshake
    }

    /// Typed per-socket storage.
    pub fn extensions(&self) -> &Extensions {
        &self.0.extensions
    }

    /// Whether the socket is connected: false in middlewares (not yet) and
    /// after a disconnect.
    pub fn connected(&self) -> bool {
        self.0.state.load(Ordering::Acquire) == CONNECTED
    }

    /// Registers the handler of `event`, replacing any previous one.
    ///
    /// Handlers take extractors in any order: [`SocketRef`],
    /// [`Data<T>`](crate::extract::Data), [`TryData<T>`](crate::extract::TryData),
    /// [`Bin`](crate::extract::Bin), [`AckSender`](crate::extract::AckSender)
    /// or `Option<AckSender>`, [`Extension<T>`](crate::extract::Extension),
    /// [`State<T>`](crate::extract::State), [`Event`](crate::extract::Event).
    /// If an extractor fails (say the data does not deserialize) the handler
    /// is not called and the failure is logged.
    ///
    /// Handlers of one socket start in the order the events arrived; each
    /// runs on its own once it awaits, so a slow handler does not hold up
    /// the next event.
    pub fn on<H, T>(&self, event: impl Into<String>, handler: H)
    where
        H: EventHandler<T>,
        T: 'static,
    {
        self.0.handlers.insert(event.into(), handler);
    }

    /// Registers the disconnect handler, called once with the reason.
    pub fn on_disconnect<F, Fut>(&self, handler: F)
    where
        F: Fn(SocketRef, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: DisconnectFn = Arc::new(move |s, r| Box::pin(handler(s, r)));
        *lock(&self.0.on_disconnect) = Some(handler);
    }

    /// Emits `event` to this client. Only a tuple is spread into several
    /// arguments (`&("a", 1)` arrives as `(a, 1)` in the client's handler),
    /// `&()` sends no argument, anything else is one argument: an array,
    /// slice or `Vec` arrives as one JSON array (`&["a", "b"]` and
    /// `&vec!["a", "b"]` alike). To send a tuple as one argument, wrap it
    /// in a one-element tuple: `&((1, 2),)`.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), SendError> {
        self.emitter().emit(event, data)
    }

    /// Emits `event` and waits for the client's acknowledgement (the
    /// client's handler calls its callback). The wait is bounded by the
    /// server's `ack_timeout` (5 s by default) or by `.timeout(d)`.
    ///
    /// The answer's arguments deserialize into `T` like [`Data`](crate::extract::Data):
    /// one argument as itself, several as a tuple. Use
    /// [`WithBinary<T>`](crate::WithBinary) to receive binary attachments too.
    ///
    /// ```no_run
    /// # use portcullis_server::SocketRef;
    /// # use std::time::Duration;
    /// # async fn f(socket: SocketRef) {
    /// match socket.emit_with_ack::<String>("question", &"ready?").timeout(Duration::from_secs(2)).await {
    ///     Ok(answer) => println!("client says {answer}"),
    ///     Err(e) => println!("no answer: {e}"),
    /// }
    /// # }
    /// ```
    pub fn emit_with_ack<T: FromAck>(
        &self,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> AckFuture<T> {
        self.emitter().emit_with_ack(event, data)
    }

    /// Adds binary attachments to the next emit: they arrive after the
    /// data's arguments, as `Buffer`s (Node) or `ArrayBuffer`s (browsers).
    ///
    /// ```no_run
    /// # use portcullis_server::SocketRef;
    /// # fn f(socket: SocketRef) {
    /// socket.bin(vec![bytes::Bytes::from_static(b"\x01\x02")]).emit("file", &"name.bin").ok();
    /// # }
    /// ```
    pub fn bin(&self, binary: impl IntoIterator<Item = impl Into<Bytes>>) -> Emitter {
        self.emitter().bin(binary)
    }

    /// Sets the acknowledgement timeout of the next `emit_with_ack`.
    pub fn timeout(&self, timeout: Duration) -> Emitter {
        self.emitter().timeout(timeout)
    }

    fn emitter(&self) -> Emitter {
        Emitter::new(self.clone())
    }

    /// Joins rooms (`"room"`, `["a", "b"]`, a `Vec`). Rooms are gateway
    /// groups named as the official SDK names them, so room broadcasts fan
    /// out in the gateway.
    pub fn join(&self, rooms: impl IntoRooms) {
        let rooms = rooms.into_rooms();
        let groups = {
            let mut mine = write(&self.0.rooms);
            rooms
                .into_iter()
                .filter(|r| mine.insert(r.clone()))
                .map(|r| group_name(self.ns(), Some(&r)))
                .collect::<Vec<_>>()
        };
        if !groups.is_empty()
            && let Some(backend) = self.0.io.backend()
        {
            backend.join(&self.0.conn.id, groups);
        }
    }

    /// Leaves rooms.
    pub fn leave(&self, rooms: impl IntoRooms) {
        let rooms = rooms.into_rooms();
        let groups = {
            let mut mine = write(&self.0.rooms);
            rooms
                .into_iter()
                .filter(|r| mine.remove(r))
                .map(|r| group_name(self.ns(), Some(&r)))
                .collect::<Vec<_>>()
        };
        if !groups.is_empty()
            && let Some(backend) = self.0.io.backend()
        {
            backend.leave(&self.0.conn.id, groups);
        }
    }

    /// Leaves every room this socket joined.
    pub fn leave_all(&self) {
        let rooms = self.rooms();
        self.leave(rooms);
    }

    /// Records rooms joined for this socket by a group change that covered
    /// it with others (`io.to(..).join(..)`): the gateway has them already.
    pub(crate) fn remember_rooms(&self, rooms: &[String]) {
        write(&self.0.rooms).extend(rooms.iter().cloned());
    }

    /// Records rooms left the same way.
    pub(crate) fn forget_rooms(&self, rooms: &[String]) {
        let mut mine = write(&self.0.rooms);
        for room in rooms {
            mine.remove(room);
        }
    }

    /// The rooms the gateway says this socket is in.
    pub(crate) fn replace_rooms(&self, rooms: BTreeSet<String>) {
        *write(&self.0.rooms) = rooms;
    }

    /// The rooms this socket joined (not counting its own id room).
    pub fn rooms(&self) -> Vec<String> {
        read(&self.0.rooms).iter().cloned().collect()
    }

    /// Broadcasts to the sockets in `rooms` of this namespace, except this
    /// one (`socket.to(room).emit(...)`).
    pub fn to(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.broadcast().to(rooms)
    }

    /// Like [`to`](Self::to) but includes this socket if it is in the rooms.
    pub fn within(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        BroadcastOperator::new(self.0.io.clone(), self.ns()).to(rooms)
    }

    /// Broadcasts to every socket of the namespace except those in `rooms`
    /// and this one.
    pub fn except(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.broadcast().except(rooms)
    }

    /// Broadcasts to every other socket of the namespace
    /// (`socket.broadcast.emit(...)`).
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.0.io.clone(), self.ns()).except_socket(self.id().clone())
    }

    /// Disconnects the socket from its namespace: the client receives a
    /// DISCONNECT packet (its `disconnect` event says
    /// `"io server disconnect"`) and the disconnect handler runs with
    /// [`DisconnectReason::ServerNamespaceDisconnect`].
    pub fn disconnect(&self) {
        if self
            .0
            .conn
            .remove_socket(self.ns(), self.id().as_str())
            .is_none()
        {
            return;
        }
        if let Some(backend) = self.0.io.backend() {
            backend.send_to(
                &self.0.conn.id,
                packet::encode(PacketKind::Disconnect, self.ns(), None, "", &[]),
            );
        }
        self.finish(DisconnectReason::ServerNamespaceDisconnect);
    }

    // ----- crate-internal -----

    pub(crate) fn mark_connected(&self) {
        self.0.state.store(CONNECTED, Ordering::Release);
    }

    /// The gateway delivered the CONNECT answer: from now on, the
    /// connection out of the namespace's group means the socket is gone.
    pub(crate) fn mark_announced(&self) {
        self.0.announced.store(true, Ordering::Release);
    }

    pub(crate) fn announced(&self) -> bool {
        self.0.announced.load(Ordering::Acquire)
    }

    /// The gateway delivered a DISCONNECT of this namespace that another
    /// process sent (`io.to(..).disconnect_sockets()` there): the socket
    /// ends as if this process had disconnected it.
    pub(crate) fn disconnected_elsewhere(&self) {
        if self
            .0
            .conn
            .remove_socket(self.ns(), self.id().as_str())
            .is_some()
        {
            self.finish(DisconnectReason::ServerNamespaceDisconnect);
        }
    }

    pub(crate) fn next_ack_id(&self) -> u64 {
        self.0.next_ack.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a pending acknowledgement.
    pub(crate) fn expect_ack(&self, id: u64) -> oneshot::Receiver<AckResponse> {
        let (tx, rx) = oneshot::channel();
        lock(&self.0.acks).insert(id, tx);
        rx
    }

    pub(crate) fn forget_ack(&self, id: u64) {
        lock(&self.0.acks).remove(&id);
    }

    pub(crate) fn resolve_ack(&self, id: u64, response: AckResponse) {
        if let Some(tx) = lock(&self.0.acks).remove(&id) {
            let _ = tx.send(response);
        }
    }

    /// Sends a packet of this socket's namespace to its client.
    pub(crate) fn send_packet(
        &self,
        kind: PacketKind,
        ack_id: Option<u64>,
        data: &str,
        binary: &[Bytes],
    ) -> Result<(), SendError> {
        if !self.connected() {
            return Err(SendError::Disconnected);
        }
        let backend = self.0.io.backend().ok_or(SendError::NotAttached)?;
        let payload = packet::encode(kind, self.ns(), ack_id, data, binary);
        if backend.send_to(&self.0.conn.id, payload) {
            Ok(())
        } else {
            Err(SendError::Disconnected)
        }
    }

    /// Dispatches an event to its handler.
    pub(crate) fn dispatch(
        &self,
        event: String,
        args: Vec<Value>,
        binary: Vec<Bytes>,
        ack_id: Option<u64>,
    ) {
        let Some(handler) = self.0.handlers.get(&event) else {
            tracing::debug!(socket = %self.id(), %event, "no handler for event");
            return;
        };
        let data = packet::args_value(args, !binary.is_empty());
        handler.call(EventParts {
            socket: self.clone(),
            event,
            data,
            binary,
            ack_id,
        });
    }

    /// Ends the socket: it leaves its namespace's groups (unless the
    /// connection is gone, which took care of that), pending acks fail,
    /// handlers are dropped and the disconnect handler runs. `rooms()` and
    /// the extensions stay readable for the disconnect handler.
    pub(crate) fn finish(&self, reason: DisconnectReason) {
        let previous = self.0.state.swap(DISCONNECTED, Ordering::AcqRel);
        if previous == DISCONNECTED {
            return;
        }
        lock(&self.0.acks).clear();
        self.0.handlers.clear();
        let handler = lock(&self.0.on_disconnect).take();
        if previous == CONNECTED
            && let Some(handler) = handler
        {
            crate::runtime::run_handler(handler(self.clone(), reason));
        }
    }

    /// Whether the socket matches a broadcast filter (evaluated locally, for
    /// broadcasts that need one packet per recipient).
    pub(crate) fn matches(&self, filter: &Filter) -> bool {
        filter.matches(&Subject(self))
    }
}

struct Subject<'a>(&'a SocketRef);

impl FilterSubject for Subject<'_> {
    fn connection_id(&self) -> &str {
        self.0.connection_id()
    }

    fn user_id(&self) -> Option<&str> {
        self.0.user_id()
    }

    fn in_group(&self, group: &str) -> bool {
        match parse_group_name(group) {
            Some((namespace, room)) if namespace == self.0.ns() => match room {
                None => true,
                Some(room) => {
                    *self.0.id() == room.as_str() || read(&self.0.0.rooms).contains(&room)
                }
            },
            _ => false,
        }
    }
}

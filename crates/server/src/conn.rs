//! One client connection (an Engine.IO session) as the Socket.IO layer sees
//! it: its verified claims, handshake, sockets per namespace and inbox.

use std::collections::VecDeque;
use std::sync::Mutex;

#[cfg(feature = "embedded")]
use portcullis_hub::ConnectRequest;
use portcullis_hub::TransportKind;
use portcullis_protocol::engine::Packet as EioPacket;
use portcullis_tunnel::group_name::parse_group_name;

use crate::conn_id::ConnId;
use crate::packet::Decoder;
use crate::request::RequestData;
use crate::socket::SocketRef;
use crate::sync::lock;

/// A connection and the registry of its sockets: the only one, so a
/// socket is registered and removed in one place, atomically with the
/// connection's end (server-wide lookups walk the connections).
pub(crate) struct Conn {
    pub id: ConnId,
    /// Claims, query and headers of the handshake.
    pub request: RequestData,
    pub transport: TransportKind,
    sockets: Mutex<Sockets>,
    inbox: Mutex<Inbox>,
    pub decoder: Mutex<Decoder>,
}

#[derive(Default)]
struct Sockets {
    /// One per namespace joined: usually one or two, so a list beats a map.
    by_namespace: Vec<SocketRef>,
    closed: bool,
    /// A socket was accepted at least once (the connect timeout is over).
    ever_connected: bool,
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<EioPacket>,
    running: bool,
}

/// What to do after queueing a packet.
pub(crate) enum Queued {
    /// A drain task is running and will take it.
    Running,
    /// Start a drain task.
    StartDrain,
    /// The inbox is over its bound.
    Overflow,
}

impl Sockets {
    fn find(&self, namespace: &str) -> Option<&SocketRef> {
        self.by_namespace.iter().find(|s| s.ns() == namespace)
    }
}

impl Conn {
    /// A connection handed over in-process (embedded mode).
    #[cfg(feature = "embedded")]
    pub fn from_request(request: ConnectRequest) -> Self {
        Conn::new(
            ConnId::new(request.connection_id.as_str()),
            RequestData::new(&request.claims, &request.query, &request.headers),
            request.transport,
        )
    }

    pub fn new(id: ConnId, request: RequestData, transport: TransportKind) -> Self {
        Conn {
            id,
            request,
            transport,
            sockets: Mutex::default(),
            inbox: Mutex::default(),
            decoder: Mutex::default(),
        }
    }

    pub fn socket(&self, namespace: &str) -> Option<SocketRef> {
        lock(&self.sockets).find(namespace).cloned()
    }

    /// The socket with id `sid`, in whichever namespace.
    pub fn socket_by_id(&self, sid: &str) -> Option<SocketRef> {
        let sockets = lock(&self.sockets);
        sockets.by_namespace.iter().find(|s| s.id() == sid).cloned()
    }

    /// Brings each socket's rooms in line with the connection's groups at
    /// the gateway, as `groups_now` reads them (the socket's own id room
    /// left out), and returns the sockets whose namespace group is gone: the
    /// gateway delivered their DISCONNECT.
    pub fn sync_rooms(&self, groups_now: impl FnOnce() -> Option<Vec<String>>) -> Vec<SocketRef> {
        // Which sockets were announced is read before the groups: one
        // announced by then is in its namespace group unless it left since.
        let sockets: Vec<(SocketRef, bool)> = lock(&self.sockets)
            .by_namespace
            .iter()
            .map(|socket| (socket.clone(), socket.announced()))
            .collect();
        let Some(groups) = groups_now() else {
            return Vec::new();
        };
        let parsed: Vec<(String, Option<String>)> =
            groups.iter().filter_map(|g| parse_group_name(g)).collect();
        let mut gone = Vec::new();
        for (socket, announced) in sockets {
            let in_namespace = parsed
                .iter()
                .any(|(ns, room)| ns == socket.ns() && room.is_none());
            if announced && !in_namespace {
                gone.push(socket);
                continue;
            }
            let rooms = parsed
                .iter()
                .filter(|(ns, _)| ns == socket.ns())
                .filter_map(|(_, room)| room.clone())
                .filter(|room| room != socket.id().as_str())
                .collect();
            socket.replace_rooms(rooms);
        }
        gone
    }

    /// Whether any namespace is joined.
    pub fn has_sockets(&self) -> bool {
        !lock(&self.sockets).by_namespace.is_empty()
    }

    pub fn has_socket(&self, namespace: &str) -> bool {
        lock(&self.sockets).find(namespace).is_some()
    }

    /// Registers an accepted socket; false if the connection already ended.
    pub fn insert_socket(&self, namespace: &str, socket: SocketRef) -> bool {
        let mut sockets = lock(&self.sockets);
        if sockets.closed {
            return false;
        }
        sockets.ever_connected = true;
        debug_assert!(sockets.find(namespace).is_none() && socket.ns() == namespace);
        sockets.by_namespace.push(socket);
        true
    }

    pub fn remove_socket(&self, namespace: &str, sid: &str) -> Option<SocketRef> {
        let mut sockets = lock(&self.sockets);
        let index = sockets
            .by_namespace
            .iter()
            .position(|s| s.ns() == namespace && s.id().as_str() == sid)?;
        Some(sockets.by_namespace.swap_remove(index))
    }

    /// Marks the connection ended and returns its sockets.
    pub fn close(&self) -> Vec<SocketRef> {
        let mut sockets = lock(&self.sockets);
        sockets.closed = true;
        let all = std::mem::take(&mut sockets.by_namespace);
        drop(sockets);
        lock(&self.inbox).queue = VecDeque::new();
        all
    }

    /// Whether no socket was ever accepted on this connection.
    pub fn never_connected(&self) -> bool {
        let sockets = lock(&self.sockets);
        !sockets.closed && !sockets.ever_connected
    }

    pub fn push(&self, packet: EioPacket, bound: usize) -> Queued {
        let mut inbox = lock(&self.inbox);
        if inbox.queue.len() >= bound {
            return Queued::Overflow;
        }
        inbox.queue.push_back(packet);
        if inbox.running {
            Queued::Running
        } else {
            inbox.running = true;
            Queued::StartDrain
        }
    }

    /// Takes the packets not processed yet (the connection is ending).
    pub fn take_queued(&self) -> Vec<EioPacket> {
        std::mem::take(&mut lock(&self.inbox).queue).into()
    }

    /// The next queued packet, or `None` (and the drain stops) when empty.
    pub fn next(&self) -> Option<EioPacket> {
        let mut inbox = lock(&self.inbox);
        let next = inbox.queue.pop_front();
        if next.is_none() {
            inbox.running = false;
            // An idle connection keeps no buffer.
            inbox.queue = VecDeque::new();
        }
        next
    }
}

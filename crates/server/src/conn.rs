//! One client connection (an Engine.IO session) as the Socket.IO layer sees
//! it: its verified claims, handshake, sockets per namespace and inbox.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use http::HeaderMap;
use portcullis_auth::Claims;
use portcullis_gateway::hub::{ConnectRequest, ConnectionId, TransportKind};
use portcullis_protocol::engine::Packet as EioPacket;
use tokio::task::AbortHandle;

use crate::packet::Decoder;
use crate::socket::SocketRef;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct Conn {
    pub id: ConnectionId,
    pub claims: Claims,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub transport: TransportKind,
    sockets: Mutex<Sockets>,
    inbox: Mutex<Inbox>,
    pub decoder: Mutex<Decoder>,
    timer: Mutex<Option<AbortHandle>>,
}

#[derive(Default)]
struct Sockets {
    by_namespace: HashMap<String, SocketRef>,
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

impl Conn {
    pub fn new(request: ConnectRequest) -> Self {
        Conn {
            id: request.connection_id,
            claims: request.claims,
            query: request.query,
            headers: request.headers,
            transport: request.transport,
            sockets: Mutex::default(),
            inbox: Mutex::default(),
            decoder: Mutex::default(),
            timer: Mutex::default(),
        }
    }

    pub fn socket(&self, namespace: &str) -> Option<SocketRef> {
        lock(&self.sockets).by_namespace.get(namespace).cloned()
    }

    pub fn has_socket(&self, namespace: &str) -> bool {
        lock(&self.sockets).by_namespace.contains_key(namespace)
    }

    /// Registers an accepted socket; false if the connection already ended.
    pub fn insert_socket(&self, namespace: &str, socket: SocketRef) -> bool {
        let mut sockets = lock(&self.sockets);
        if sockets.closed {
            return false;
        }
        sockets.ever_connected = true;
        sockets.by_namespace.insert(namespace.to_owned(), socket);
        drop(sockets);
        if let Some(timer) = lock(&self.timer).take() {
            timer.abort();
        }
        true
    }

    pub fn remove_socket(&self, namespace: &str, sid: &str) -> Option<SocketRef> {
        let mut sockets = lock(&self.sockets);
        match sockets.by_namespace.get(namespace) {
            Some(s) if s.id().as_str() == sid => sockets.by_namespace.remove(namespace),
            _ => None,
        }
    }

    /// Marks the connection ended and returns its sockets.
    pub fn close(&self) -> Vec<SocketRef> {
        let mut sockets = lock(&self.sockets);
        sockets.closed = true;
        let all = sockets.by_namespace.drain().map(|(_, s)| s).collect();
        drop(sockets);
        lock(&self.inbox).queue.clear();
        if let Some(timer) = lock(&self.timer).take() {
            timer.abort();
        }
        all
    }

    /// Whether no socket was ever accepted on this connection.
    pub fn never_connected(&self) -> bool {
        let sockets = lock(&self.sockets);
        !sockets.closed && !sockets.ever_connected
    }

    pub fn set_timer(&self, timer: AbortHandle) {
        *lock(&self.timer) = Some(timer);
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

    /// The next queued packet, or `None` (and the drain stops) when empty.
    pub fn next(&self) -> Option<EioPacket> {
        let mut inbox = lock(&self.inbox);
        let next = inbox.queue.pop_front();
        if next.is_none() {
            inbox.running = false;
        }
        next
    }
}

//! Emit builders: to one socket ([`Emitter`]) and to many
//! ([`BroadcastOperator`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_hub::Filter;
use portcullis_protocol::socket::PacketKind;
use portcullis_tunnel::group_name::group_name;
use serde::Serialize;
use tokio::time::Instant;

use crate::ack::{AckFuture, AckStream, FromAck, Pending};
use crate::errors::SendError;
use crate::io::IoInner;
use crate::packet;
use crate::socket::{Sid, SocketRef};

/// One room or several: `"room"`, `String`, `["a", "b"]`, `Vec<String>`,
/// `&[&str]`.
pub trait IntoRooms {
    /// The room names.
    fn into_rooms(self) -> Vec<String>;
}

impl IntoRooms for &str {
    fn into_rooms(self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl IntoRooms for String {
    fn into_rooms(self) -> Vec<String> {
        vec![self]
    }
}

impl IntoRooms for &String {
    fn into_rooms(self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl IntoRooms for Vec<String> {
    fn into_rooms(self) -> Vec<String> {
        self
    }
}

impl IntoRooms for Vec<&str> {
    fn into_rooms(self) -> Vec<String> {
        self.into_iter().map(str::to_owned).collect()
    }
}

impl IntoRooms for &[&str] {
    fn into_rooms(self) -> Vec<String> {
        self.iter().map(|r| (*r).to_owned()).collect()
    }
}

impl<const N: usize> IntoRooms for [&str; N] {
    fn into_rooms(self) -> Vec<String> {
        self.into_iter().map(str::to_owned).collect()
    }
}

/// An emit to one socket, with attachments or an acknowledgement timeout;
/// made by [`SocketRef::bin`] and [`SocketRef::timeout`].
#[derive(Debug)]
#[must_use = "nothing is sent until emit or emit_with_ack"]
pub struct Emitter {
    socket: SocketRef,
    binary: Vec<Bytes>,
    timeout: Option<Duration>,
}

impl Emitter {
    pub(crate) fn new(socket: SocketRef) -> Self {
        Emitter {
            socket,
            binary: Vec::new(),
            timeout: None,
        }
    }

    /// Adds binary attachments, sent after the data's arguments.
    pub fn bin(mut self, binary: impl IntoIterator<Item = impl Into<Bytes>>) -> Self {
        self.binary.extend(binary.into_iter().map(Into::into));
        self
    }

    /// Sets the acknowledgement timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Emits the event (see [`SocketRef::emit`]).
    pub fn emit<T: Serialize + ?Sized>(self, event: &str, data: &T) -> Result<(), SendError> {
        let args = packet::to_args(data)?;
        let data = packet::event_data(event, args, self.binary.len());
        self.socket
            .send_packet(PacketKind::Event, None, &data, &self.binary)
    }

    /// Emits the event and returns its acknowledgement (see
    /// [`SocketRef::emit_with_ack`]).
    pub fn emit_with_ack<T: FromAck>(
        self,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> AckFuture<T> {
        let timeout = self.timeout.unwrap_or(self.socket.0.io.config.ack_timeout);
        let pending = send_with_ack(&self.socket, event, data, &self.binary);
        AckFuture::new(pending, timeout)
    }
}

fn send_with_ack(
    socket: &SocketRef,
    event: &str,
    data: &(impl Serialize + ?Sized),
    binary: &[Bytes],
) -> Result<Pending, SendError> {
    let args = packet::to_args(data)?;
    let data = packet::event_data(event, args, binary.len());
    send_event_with_ack(socket, &data, binary)
}

fn send_event_with_ack(
    socket: &SocketRef,
    data: &str,
    binary: &[Bytes],
) -> Result<Pending, SendError> {
    let id = socket.next_ack_id();
    let rx = socket.expect_ack(id);
    let sent_at = Instant::now();
    if let Err(e) = socket.send_packet(PacketKind::Event, Some(id), data, binary) {
        socket.forget_ack(id);
        return Err(e);
    }
    Ok(Pending {
        socket: socket.clone(),
        id,
        rx,
        sent_at,
    })
}

/// An emit to many sockets of one namespace: every socket, those in some
/// rooms, minus some rooms (and minus the sending socket for
/// [`SocketRef::broadcast`] and [`SocketRef::to`]).
///
/// Plain emits are one group send in the gateway, which does the fan-out;
/// `emit_with_ack` sends each recipient its own packet with its own ack id.
///
/// ```no_run
/// # use portcullis_server::SocketIo;
/// # fn f(io: SocketIo) {
/// io.of("/chat").to("general").except("muted").emit("notice", &"maintenance at noon").ok();
/// io.of("/chat").to(["a", "b"]).emit("hello", &()).ok();
/// io.emit("everyone", &1).ok(); // the "/" namespace
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "nothing is sent until emit or emit_with_ack"]
pub struct BroadcastOperator {
    io: Arc<IoInner>,
    namespace: String,
    rooms: Vec<String>,
    except: Vec<String>,
    except_socket: Option<Sid>,
    binary: Vec<Bytes>,
    timeout: Option<Duration>,
}

impl BroadcastOperator {
    pub(crate) fn new(io: Arc<IoInner>, namespace: &str) -> Self {
        BroadcastOperator {
            io,
            namespace: namespace.to_owned(),
            rooms: Vec::new(),
            except: Vec::new(),
            except_socket: None,
            binary: Vec::new(),
            timeout: None,
        }
    }

    pub(crate) fn except_socket(mut self, sid: Sid) -> Self {
        self.except_socket = Some(sid);
        self
    }

    /// Targets the sockets in these rooms (added to earlier `to` rooms: a
    /// socket in any of them receives the event once).
    pub fn to(mut self, rooms: impl IntoRooms) -> Self {
        self.rooms.extend(rooms.into_rooms());
        self
    }

    /// Leaves out the sockets in these rooms.
    pub fn except(mut self, rooms: impl IntoRooms) -> Self {
        self.except.extend(rooms.into_rooms());
        self
    }

    /// Adds binary attachments, sent after the data's arguments.
    pub fn bin(mut self, binary: impl IntoIterator<Item = impl Into<Bytes>>) -> Self {
        self.binary.extend(binary.into_iter().map(Into::into));
        self
    }

    /// Sets the per-socket acknowledgement timeout of `emit_with_ack`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The gateway filter selecting the targets, in the official SDK's
    /// group naming.
    pub(crate) fn filter(&self) -> Filter {
        let ns = self.namespace.as_str();
        let in_room = |room: &str| Filter::InGroup(group_name(ns, Some(room)));
        let mut filter = match self.rooms.as_slice() {
            [] => Filter::InGroup(group_name(ns, None)),
            [room] => in_room(room),
            rooms => Filter::Or(rooms.iter().map(|r| in_room(r)).collect()),
        };
        for room in &self.except {
            filter = filter.and(Filter::Not(Box::new(in_room(room))));
        }
        if let Some(sid) = &self.except_socket {
            filter = filter.and(Filter::Not(Box::new(in_room(sid.as_str()))));
        }
        filter
    }

    /// Emits the event to every target; the gateway fans it out.
    pub fn emit<T: Serialize + ?Sized>(self, event: &str, data: &T) -> Result<(), SendError> {
        let backend = self.io.backend().ok_or(SendError::NotAttached)?;
        let args = packet::to_args(data)?;
        let data = packet::event_data(event, args, self.binary.len());
        let payload = packet::encode(
            PacketKind::Event,
            &self.namespace,
            None,
            &data,
            &self.binary,
        );
        backend.broadcast(self.filter(), payload);
        Ok(())
    }

    /// Emits the event to every target, each with its own ack id, and
    /// returns their acknowledgements. A socket that does not answer in
    /// time yields [`AckError::Timeout`](crate::AckError::Timeout) without
    /// holding up the others.
    pub fn emit_with_ack<T: FromAck>(
        self,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> AckStream<T> {
        let timeout = self.timeout.unwrap_or(self.io.config.ack_timeout);
        let encoded =
            packet::to_args(data).map(|args| packet::event_data(event, args, self.binary.len()));
        let data = match encoded {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(error = %e, "broadcast data could not be serialized");
                return AckStream::new(Vec::new(), None, timeout);
            }
        };
        // Sockets of this process: one packet each, with its own ack id.
        let pending = self
            .sockets()
            .into_iter()
            .map(|s| send_event_with_ack(&s, &data, &self.binary).map_err(|e| (s.id().clone(), e)))
            .collect();
        // Sockets of other processes sharing the hub (tunnel mode): the
        // gateway gives them ack ids and streams their answers back.
        let remote = self.io.backend().and_then(|backend| {
            let payload = packet::encode(
                PacketKind::Event,
                &self.namespace,
                None,
                &data,
                &self.binary,
            );
            backend.remote_acks(&self.filter(), payload)
        });
        AckStream::new(pending, remote, timeout)
    }

    /// The connected sockets of this process that are targets (those of
    /// other processes sharing the hub are not listed).
    pub fn sockets(&self) -> Vec<SocketRef> {
        let filter = self.filter();
        self.io
            .sockets_of(&self.namespace)
            .into_iter()
            .filter(|s| s.matches(&filter))
            .collect()
    }

    /// Makes every target join `rooms`. Embedded, that is every target of
    /// every process sharing the hub (one group operation at the gateway,
    /// which the other processes hear of); over the tunnel, the targets of
    /// this process.
    pub fn join(self, rooms: impl IntoRooms) {
        self.change_rooms(rooms.into_rooms(), RoomChange::Join);
    }

    /// Makes every target leave `rooms` (which targets: as in
    /// [`join`](Self::join)).
    pub fn leave(self, rooms: impl IntoRooms) {
        self.change_rooms(rooms.into_rooms(), RoomChange::Leave);
    }

    /// Where every process hears of group changes, this process's targets
    /// only record the change and one group operation makes it for all;
    /// otherwise each socket of this process makes its own.
    fn change_rooms(self, rooms: Vec<String>, change: RoomChange) {
        let shared = self.io.backend().filter(|b| b.shares_group_changes());
        for socket in self.sockets() {
            match (shared.is_some(), change) {
                (true, RoomChange::Join) => socket.remember_rooms(&rooms),
                (true, RoomChange::Leave) => socket.forget_rooms(&rooms),
                (false, RoomChange::Join) => socket.join(rooms.clone()),
                (false, RoomChange::Leave) => socket.leave(rooms.clone()),
            }
        }
        if let Some(backend) = shared {
            let (filter, groups) = (self.filter(), self.groups_of(&rooms));
            match change {
                RoomChange::Join => backend.join_matching(filter, groups),
                RoomChange::Leave => backend.leave_matching(filter, groups),
            }
        }
    }

    /// The gateway groups of `rooms` in this namespace.
    fn groups_of(&self, rooms: &[String]) -> Vec<String> {
        rooms
            .iter()
            .map(|room| group_name(&self.namespace, Some(room)))
            .collect()
    }

    /// Disconnects every target from the namespace (see
    /// [`SocketRef::disconnect`]). Embedded, that is every target of every
    /// process sharing the hub, whose disconnect handlers run there with the
    /// same reason; over the tunnel, the targets of this process.
    pub fn disconnect_sockets(self) {
        for socket in self.sockets() {
            socket.disconnect();
        }
        if let Some(backend) = self.io.backend().filter(|b| b.shares_group_changes()) {
            // This process's targets have left the namespace's groups with
            // their DISCONNECT, so the filter now finds the others' only.
            let disconnect = packet::encode(PacketKind::Disconnect, &self.namespace, None, "", &[]);
            backend.broadcast(self.filter(), disconnect);
        }
    }
}

/// A change of the targets' rooms.
#[derive(Clone, Copy)]
enum RoomChange {
    Join,
    Leave,
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_use_sdk_group_names() {
        let io = crate::SocketIo::new();
        let op = io.of("/");
        assert_eq!(op.filter(), Filter::InGroup("0~Lw~".into()));
        let op = io.of("/chat").to("r").except("x");
        assert_eq!(
            op.filter(),
            Filter::And(vec![
                Filter::InGroup("0~L2NoYXQ~cg".into()),
                Filter::Not(Box::new(Filter::InGroup(group_name("/chat", Some("x"))))),
            ])
        );
        let op = io.to(["room1", "room2"]);
        assert_eq!(
            op.filter(),
            Filter::Or(vec![
                Filter::InGroup("0~Lw~cm9vbTE".into()),
                Filter::InGroup("0~Lw~cm9vbTI".into()),
            ])
        );
    }
}

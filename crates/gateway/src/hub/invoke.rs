//! Invocations of other nodes on a hub whose handler is in this process
//! (embedded applications): the gateway sends the event with ack ids of its
//! own and takes the clients' acknowledgements before the handler sees
//! them, streaming each back as Engine.IO payload text.
//!
//! (Hubs served over the tunnel take acknowledgements in the tunnel's
//! client state instead, `tunnel::client`, next to their backlog.)
//!
//! Nothing is kept for a connection without an invocation in flight, so
//! idle connections pay nothing; what one connection may keep is bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use portcullis_protocol::engine::{Packet, PayloadBuilder};
use portcullis_protocol::socket::{Header, PacketKind};
use tokio::sync::mpsc;

use super::{Connection, ConnectionId, Frame, LocalHub, Payload};

/// The gateway's ack ids, far above an application's own counters.
const FIRST_ACK: u64 = 2_000_000_000;
/// Invocations one connection may owe at once.
const MAX_PER_CONNECTION: usize = 256;
/// Largest acknowledgement kept, attachments included (base64 bytes).
const MAX_ACK_BYTES: usize = 4 * 1024 * 1024;

/// The invocations one connection owes answers to.
#[derive(Default)]
struct Owed {
    next: u64,
    acks: HashMap<u64, mpsc::UnboundedSender<String>>,
    /// An ACK whose attachments are still arriving.
    binary: Option<(PayloadBuilder, u32, mpsc::UnboundedSender<String>)>,
}

/// Per hub: the connections that owe answers, and how many they are (read
/// without the lock on every client packet: almost always zero).
#[derive(Default)]
pub(crate) struct Invocations {
    owed: Mutex<HashMap<ConnectionId, Owed>>,
    owing: AtomicUsize,
}

impl Invocations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Owed>> {
        self.owed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn none_owed(&self) -> bool {
        self.owing.load(Ordering::Acquire) == 0
    }

    fn removed(&self, owed: &mut HashMap<ConnectionId, Owed>, id: &ConnectionId) {
        if owed.remove(id).is_some() {
            self.owing.store(owed.len(), Ordering::Release);
        }
    }

    /// Forgets a connection that ended (its answers never come).
    pub(crate) fn forget(&self, id: &ConnectionId) {
        if !self.none_owed() {
            let mut owed = self.lock();
            self.removed(&mut owed, id);
        }
    }
}

impl LocalHub {
    /// Sends `payload` (a Socket.IO EVENT without ack id) to `targets`, each
    /// with an ack id of the gateway's; the acknowledgements arrive on the
    /// receiver, which closes when all have answered or gone. `None` when
    /// the payload is not an event.
    pub(crate) fn invoke_here(
        &self,
        targets: &[Arc<Connection>],
        payload: &Payload,
    ) -> Option<mpsc::UnboundedReceiver<String>> {
        let (first, attachments) = payload.frames().split_first()?;
        let Frame::Text(first) = first else {
            return None;
        };
        let sio = std::str::from_utf8(first).ok()?.strip_prefix('4')?;
        let header = Header::parse(sio).ok()?;
        if !matches!(header.kind, PacketKind::Event | PacketKind::BinaryEvent) {
            return None;
        }
        let (answers, receiver) = mpsc::unbounded_channel();
        for connection in targets {
            let Some(ack_id) = self.owe(&connection.id, answers.clone()) else {
                continue;
            };
            let with_id = Header {
                ack_id: Some(ack_id),
                ..header.clone()
            };
            let mut frames = vec![Frame::text(format!("4{}", with_id.encode()))];
            frames.extend(attachments.iter().cloned());
            self.deliver(connection, &Payload::from_frames(frames));
        }
        Some(receiver)
    }

    fn owe(&self, id: &ConnectionId, answer: mpsc::UnboundedSender<String>) -> Option<u64> {
        let invocations = &self.0.invocations;
        let mut owed = invocations.lock();
        let entry = owed.entry(id.clone()).or_default();
        if entry.acks.len() >= MAX_PER_CONNECTION {
            return None;
        }
        let ack_id = FIRST_ACK + entry.next;
        entry.next += 1;
        entry.acks.insert(ack_id, answer);
        invocations.owing.store(owed.len(), Ordering::Release);
        Some(ack_id)
    }

    /// Takes a client's packet if it answers an invocation (true); the
    /// handler never sees it then.
    pub(crate) fn take_invocation_answer(&self, id: &ConnectionId, packet: &Packet) -> bool {
        let invocations = &self.0.invocations;
        if invocations.none_owed() {
            return false;
        }
        let mut owed = invocations.lock();
        let Some(entry) = owed.get_mut(id) else {
            return false;
        };
        let taken = match packet {
            Packet::Message(text) => take_ack(entry, text),
            Packet::Binary(bytes) => take_attachment(entry, bytes),
            _ => false,
        };
        if entry.acks.is_empty() && entry.binary.is_none() {
            invocations.removed(&mut owed, id);
        }
        taken
    }
}

fn take_ack(entry: &mut Owed, text: &str) -> bool {
    let Ok(header) = Header::parse(text) else {
        return false;
    };
    if !matches!(header.kind, PacketKind::Ack | PacketKind::BinaryAck) {
        return false;
    }
    let Some(answer) = header.ack_id.and_then(|id| entry.acks.remove(&id)) else {
        return false;
    };
    let mut payload = PayloadBuilder::default();
    payload.push_encoded(&format!("4{text}"));
    if header.attachments == 0 {
        let _ = answer.send(payload.finish());
    } else {
        entry.binary = Some((payload, header.attachments, answer));
    }
    true
}

fn take_attachment(entry: &mut Owed, bytes: &[u8]) -> bool {
    let Some((payload, remaining, _)) = entry.binary.as_mut() else {
        return false;
    };
    if payload
        .len()
        .saturating_add(bytes.len().div_ceil(3) * 4 + 2)
        > MAX_ACK_BYTES
    {
        // Too large to keep: the answer is dropped, the attachment taken.
        entry.binary = None;
        return true;
    }
    payload.push_binary(bytes);
    *remaining -= 1;
    if *remaining == 0
        && let Some((payload, _, answer)) = entry.binary.take()
    {
        let _ = answer.send(payload.finish());
    }
    true
}

#[cfg(test)]
mod tests {
    use portcullis_hub::DisconnectReason;

    use super::*;
    use crate::hub::Ending;
    use crate::hub::testing::hub_with_one_connection as hub;

    #[tokio::test]
    async fn answers_are_taken_before_the_handler() {
        let (hub, connection, seen) = hub();
        let (tx, mut answers) = mpsc::unbounded_channel();
        let id = hub.owe(&connection.id, tx).unwrap();
        assert!(id >= FIRST_ACK);
        hub.dispatch(&connection.id, Packet::Message(format!("3{id}[\"yes\"]")));
        assert_eq!(answers.recv().await, Some(format!("43{id}[\"yes\"]")));
        assert_eq!(answers.recv().await, None, "every answer given");
        // The application's own acks still reach it.
        hub.dispatch(&connection.id, Packet::Message("37[\"mine\"]".into()));
        hub.dispatch(&connection.id, Packet::Message(format!("3{id}[\"again\"]")));
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec!["37[\"mine\"]".to_owned(), format!("3{id}[\"again\"]")]
        );
    }

    #[tokio::test]
    async fn binary_answers_keep_their_attachments() {
        let (hub, connection, seen) = hub();
        let (tx, mut answers) = mpsc::unbounded_channel();
        let id = hub.owe(&connection.id, tx).unwrap();
        let head = format!("61-{id}[{{\"_placeholder\":true,\"num\":0}}]");
        hub.dispatch(&connection.id, Packet::Message(head.clone()));
        hub.dispatch(
            &connection.id,
            Packet::Binary(bytes::Bytes::from_static(&[1, 2, 3])),
        );
        assert_eq!(answers.recv().await, Some(format!("4{head}\u{1e}bAQID")));
        assert!(seen.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_connection_that_ends_owes_nothing() {
        let (hub, connection, _) = hub();
        let (tx, mut answers) = mpsc::unbounded_channel();
        hub.owe(&connection.id, tx).unwrap();
        hub.end(&connection, Ending::ByServer, DisconnectReason::PingTimeout);
        assert_eq!(answers.recv().await, None);
        assert!(hub.0.invocations.none_owed());
    }

    #[tokio::test]
    async fn one_connection_owes_a_bounded_number() {
        let (hub, connection, _) = hub();
        let (tx, _answers) = mpsc::unbounded_channel();
        for _ in 0..MAX_PER_CONNECTION {
            assert!(hub.owe(&connection.id, tx.clone()).is_some());
        }
        assert!(hub.owe(&connection.id, tx).is_none());
    }
}

//! The tunnel side of one client connection: the ordered stream of its
//! packets to the application server (one event in flight, later packets
//! coalesced, up to [`BacklogLimits`]), and the acknowledgements it owes to
//! `:invoke` broadcasts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use portcullis_protocol::engine::PayloadBuilder;
use tokio::sync::mpsc;

use crate::hub::ConnectionId;

/// First ack id the gateway gives an `:invoke` broadcast on a connection:
/// far above the application server's own per-namespace counters.
const FIRST_INVOKE_ACK: u64 = 1_000_000_000;

/// How much of one client's traffic may wait for its application server
/// while an event is in flight (the server may take up to 30 s to answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BacklogLimits {
    /// Bytes of queued records (and of an `:invoke` ack being collected).
    pub max_bytes: usize,
    /// Queued records (and attachments announced by one binary packet).
    pub max_packets: usize,
}

/// A client sent more than its application server took in time: it is
/// closed with this as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "client backlog full: more than {} bytes or {} packets waiting for the application server",
    .0.max_bytes,
    .0.max_packets
)]
pub(crate) struct BacklogFull(pub BacklogLimits);

/// What became of a queued record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued behind the event in flight (or dropped after the end).
    Queued,
    /// Queued, and nothing is in flight: the caller must start a pump.
    StartPump,
}

/// State of one client connection as the tunnel sees it.
#[derive(Debug)]
pub(crate) struct TunnelClient {
    pub id: ConnectionId,
    pub user_id: Option<String>,
    /// The application server (tunnel token `sub`) that accepted it.
    pub server: Arc<str>,
    limits: BacklogLimits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Records waiting for the next user event, as one polling payload.
    outbox: PayloadBuilder,
    in_flight: bool,
    /// Set when the connection ended: `disconnected` goes after the outbox.
    ended: Option<String>,
    invoke_acks: HashMap<u64, mpsc::UnboundedSender<String>>,
    next_invoke_ack: u64,
    binary_ack: Option<BinaryAck>,
}

/// A client acknowledgement with attachments, collected until complete.
#[derive(Debug)]
struct BinaryAck {
    payload: PayloadBuilder,
    remaining: u32,
    stream: mpsc::UnboundedSender<String>,
}

/// What the pump sends next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A user event with this payload.
    Message(String),
    /// The `disconnected` event, with its reason; the pump ends after it.
    Disconnected(String),
    /// Nothing to send: the pump stops.
    Idle,
}

impl TunnelClient {
    pub fn new(
        id: ConnectionId,
        user_id: Option<String>,
        server: Arc<str>,
        limits: BacklogLimits,
    ) -> Self {
        TunnelClient {
            id,
            user_id,
            server,
            limits,
            inner: Mutex::new(Inner {
                next_invoke_ack: FIRST_INVOKE_ACK,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an encoded record. Past the backlog limits nothing is queued
    /// and the queue is dropped: the caller must close the client, whose
    /// `disconnected` then follows the event in flight.
    pub fn push_record(&self, record: &str) -> Result<Push, BacklogFull> {
        let mut inner = self.lock();
        if inner.ended.is_some() {
            return Ok(Push::Queued);
        }
        let bytes = inner.outbox.len() + record.len() + 1;
        if bytes > self.limits.max_bytes || inner.outbox.records() >= self.limits.max_packets {
            inner.outbox = PayloadBuilder::default();
            return Err(BacklogFull(self.limits));
        }
        inner.outbox.push_encoded(record);
        Ok(match std::mem::replace(&mut inner.in_flight, true) {
            true => Push::Queued,
            false => Push::StartPump,
        })
    }

    /// Refuses a binary packet announcing more attachments than the backlog
    /// could ever hold, before anything is queued or allocated for them.
    pub fn check_attachments(&self, announced: u32) -> Result<(), BacklogFull> {
        match usize::try_from(announced) {
            Ok(n) if n < self.limits.max_packets => Ok(()),
            _ => Err(BacklogFull(self.limits)),
        }
    }

    /// Marks the connection ended; true if the caller must start a pump to
    /// deliver `disconnected`. Pending `:invoke` acks are dropped, so their
    /// streams count this connection as gone.
    pub fn end(&self, reason: String) -> bool {
        let mut inner = self.lock();
        inner.ended = Some(reason);
        inner.invoke_acks.clear();
        inner.binary_ack = None;
        !std::mem::replace(&mut inner.in_flight, true)
    }

    /// What to send next; clears the in-flight flag when there is nothing.
    pub fn next(&self) -> Next {
        let mut inner = self.lock();
        if !inner.outbox.is_empty() {
            return Next::Message(std::mem::take(&mut inner.outbox).finish());
        }
        if let Some(reason) = inner.ended.take() {
            // Nothing may follow `disconnected`; leave the flag set.
            inner.ended = Some(String::new());
            return Next::Disconnected(reason);
        }
        inner.in_flight = false;
        Next::Idle
    }

    /// Gives an `:invoke` broadcast an ack id on this connection.
    pub fn register_invoke(&self, stream: mpsc::UnboundedSender<String>) -> Option<u64> {
        let mut inner = self.lock();
        if inner.ended.is_some() {
            return None;
        }
        let id = inner.next_invoke_ack;
        inner.next_invoke_ack += 1;
        inner.invoke_acks.insert(id, stream);
        Some(id)
    }

    /// A client ACK (`3<id>…` or `6<n>-<id>…`): if it answers an `:invoke`,
    /// takes it (true) and streams it back once complete. An attachment
    /// count past the backlog limit is refused before anything is kept.
    pub fn intercept_ack(
        &self,
        sio_text: &str,
        ack_id: u64,
        attachments: u32,
    ) -> Result<bool, BacklogFull> {
        self.check_attachments(attachments)?;
        let mut inner = self.lock();
        let Some(stream) = inner.invoke_acks.remove(&ack_id) else {
            return Ok(false);
        };
        let mut payload = PayloadBuilder::default();
        payload.push_encoded(&format!("4{sio_text}"));
        if attachments == 0 {
            let _ = stream.send(payload.finish());
        } else {
            inner.binary_ack = Some(BinaryAck {
                payload,
                remaining: attachments,
                stream,
            });
        }
        Ok(true)
    }

    /// A binary packet: if it is an attachment of an intercepted ACK, takes it
    /// (true). An ack growing past the backlog byte limit is dropped.
    pub fn intercept_attachment(&self, bytes: &[u8]) -> Result<bool, BacklogFull> {
        let mut inner = self.lock();
        let Some(ack) = inner.binary_ack.as_mut() else {
            return Ok(false);
        };
        let encoded = bytes.len().div_ceil(3) * 4 + 2;
        if ack.payload.len().saturating_add(encoded) > self.limits.max_bytes {
            inner.binary_ack = None;
            return Err(BacklogFull(self.limits));
        }
        ack.payload.push_binary(bytes);
        ack.remaining -= 1;
        if ack.remaining == 0
            && let Some(done) = inner.binary_ack.take()
        {
            let _ = done.stream.send(done.payload.finish());
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BacklogLimits = BacklogLimits {
        max_bytes: 64,
        max_packets: 4,
    };

    fn client() -> TunnelClient {
        TunnelClient::new(ConnectionId::generate(), None, Arc::from("server"), LIMITS)
    }

    #[test]
    fn coalesces_while_in_flight_and_ends_with_disconnected() {
        let c = client();
        assert_eq!(c.push_record("40"), Ok(Push::StartPump));
        assert_eq!(c.push_record("42[1]"), Ok(Push::Queued), "pump running");
        assert_eq!(c.next(), Next::Message("40\u{1e}42[1]".into()));
        assert_eq!(c.push_record("3"), Ok(Push::Queued));
        assert!(!c.end("bye".into()), "the running pump sends disconnected");
        assert_eq!(
            c.push_record("42[2]"),
            Ok(Push::Queued),
            "dropped after the end"
        );
        assert_eq!(c.next(), Next::Message("3".into()));
        assert_eq!(c.next(), Next::Disconnected("bye".into()));
    }

    #[test]
    fn the_backlog_is_bounded_by_packets_and_by_bytes() {
        let c = client();
        assert_eq!(c.push_record("40"), Ok(Push::StartPump));
        assert_eq!(c.next(), Next::Message("40".into()), "now in flight");
        for _ in 0..4 {
            assert_eq!(c.push_record("42[0]"), Ok(Push::Queued));
        }
        assert_eq!(c.push_record("42[0]"), Err(BacklogFull(LIMITS)));
        assert!(!c.end("full".into()));
        assert_eq!(c.next(), Next::Disconnected("full".into()), "queue dropped");

        let c = client();
        assert_eq!(c.push_record(&"x".repeat(60)), Ok(Push::StartPump));
        assert_eq!(c.push_record("42[1]"), Err(BacklogFull(LIMITS)));
        let reason = BacklogFull(LIMITS).to_string();
        assert!(
            reason.contains("64 bytes") && reason.contains("4 packets"),
            "{reason}"
        );
    }

    #[test]
    fn announced_attachments_are_bounded_before_anything_is_kept() {
        let c = client();
        let (tx, _rx) = mpsc::unbounded_channel();
        let id = c.register_invoke(tx).unwrap();
        let huge = format!("6{}-{id}[]", u32::MAX);
        assert_eq!(
            c.intercept_ack(&huge, id, u32::MAX),
            Err(BacklogFull(LIMITS))
        );
        assert!(c.lock().binary_ack.is_none(), "nothing kept for it");
        assert_eq!(c.check_attachments(3), Ok(()));
        assert_eq!(c.check_attachments(4), Err(BacklogFull(LIMITS)));
    }

    #[test]
    fn a_collected_ack_is_bounded_by_bytes() {
        let c = client();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = c.register_invoke(tx).unwrap();
        assert_eq!(c.intercept_ack(&format!("62-{id}[]"), id, 2), Ok(true));
        assert_eq!(c.intercept_attachment(&[0; 30]), Ok(true));
        assert_eq!(c.intercept_attachment(&[0; 30]), Err(BacklogFull(LIMITS)));
        assert!(rx.try_recv().is_err(), "nothing streamed back");
        assert_eq!(
            c.intercept_attachment(&[0]),
            Ok(false),
            "the ack is dropped"
        );
    }

    #[test]
    fn intercepts_invoke_acks_with_attachments() {
        let c = client();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = c.register_invoke(tx).unwrap();
        assert_eq!(id, FIRST_INVOKE_ACK);
        assert_eq!(
            c.intercept_ack("3[\"x\"]", 7, 0),
            Ok(false),
            "not an invoke ack"
        );
        assert_eq!(
            c.intercept_ack(
                &format!("61-{id}[{{\"_placeholder\":true,\"num\":0}}]"),
                id,
                1
            ),
            Ok(true)
        );
        assert_eq!(c.intercept_attachment(&[1, 2, 3]), Ok(true));
        assert_eq!(
            rx.try_recv().unwrap(),
            format!("461-{id}[{{\"_placeholder\":true,\"num\":0}}]\u{1e}bAQID")
        );
        assert_eq!(
            c.intercept_attachment(&[4]),
            Ok(false),
            "no ack is being collected"
        );
    }
}

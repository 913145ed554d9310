//! The tunnel side of one client connection: the ordered stream of its
//! packets to the application server (one event in flight, later packets
//! coalesced), and the acknowledgements it owes to `:invoke` broadcasts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use portcullis_protocol::engine::RECORD_SEPARATOR;
use tokio::sync::mpsc;

use crate::hub::ConnectionId;

/// First ack id the gateway gives an `:invoke` broadcast on a connection:
/// far above the application server's own per-namespace counters.
const FIRST_INVOKE_ACK: u64 = 1_000_000_000;

/// State of one client connection as the tunnel sees it.
#[derive(Debug)]
pub(crate) struct TunnelClient {
    pub id: ConnectionId,
    pub user_id: Option<String>,
    /// The application server (tunnel token `sub`) that accepted it.
    pub server: Arc<str>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Records waiting for the next user event, joined by `\x1e`.
    outbox: String,
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
    payload: String,
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
    pub fn new(id: ConnectionId, user_id: Option<String>, server: Arc<str>) -> Self {
        TunnelClient {
            id,
            user_id,
            server,
            inner: Mutex::new(Inner {
                next_invoke_ack: FIRST_INVOKE_ACK,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an encoded record; true if the caller must start a pump.
    pub fn push_record(&self, record: &str) -> bool {
        let mut inner = self.lock();
        if inner.ended.is_some() {
            return false;
        }
        if !inner.outbox.is_empty() {
            inner.outbox.push(RECORD_SEPARATOR);
        }
        inner.outbox.push_str(record);
        !std::mem::replace(&mut inner.in_flight, true)
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
            return Next::Message(std::mem::take(&mut inner.outbox));
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
    /// takes it (true) and streams it back once complete.
    pub fn intercept_ack(&self, sio_text: &str, ack_id: u64, attachments: u32) -> bool {
        let mut inner = self.lock();
        let Some(stream) = inner.invoke_acks.remove(&ack_id) else {
            return false;
        };
        let payload = format!("4{sio_text}");
        if attachments == 0 {
            let _ = stream.send(payload);
        } else {
            inner.binary_ack = Some(BinaryAck {
                payload,
                remaining: attachments,
                stream,
            });
        }
        true
    }

    /// A binary packet: if it is an attachment of an intercepted ACK, takes it
    /// (true).
    pub fn intercept_attachment(&self, bytes: &[u8]) -> bool {
        let mut inner = self.lock();
        let Some(ack) = inner.binary_ack.as_mut() else {
            return false;
        };
        ack.payload.push(RECORD_SEPARATOR);
        ack.payload.push('b');
        base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut ack.payload);
        ack.remaining -= 1;
        if ack.remaining == 0
            && let Some(done) = inner.binary_ack.take()
        {
            let _ = done.stream.send(done.payload);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> TunnelClient {
        TunnelClient::new(ConnectionId::generate(), None, Arc::from("server"))
    }

    #[test]
    fn coalesces_while_in_flight_and_ends_with_disconnected() {
        let c = client();
        assert!(c.push_record("40"), "first record starts a pump");
        assert!(!c.push_record("42[1]"), "the pump is running");
        assert_eq!(c.next(), Next::Message("40\u{1e}42[1]".into()));
        assert!(!c.push_record("3"));
        assert!(!c.end("bye".into()), "the running pump sends disconnected");
        assert!(!c.push_record("42[2]"), "nothing is queued after the end");
        assert_eq!(c.next(), Next::Message("3".into()));
        assert_eq!(c.next(), Next::Disconnected("bye".into()));
    }

    #[test]
    fn intercepts_invoke_acks_with_attachments() {
        let c = client();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = c.register_invoke(tx).unwrap();
        assert_eq!(id, FIRST_INVOKE_ACK);
        assert!(!c.intercept_ack("3[\"x\"]", 7, 0), "not an invoke ack");
        assert!(c.intercept_ack(
            &format!("61-{id}[{{\"_placeholder\":true,\"num\":0}}]"),
            id,
            1
        ));
        assert!(c.intercept_attachment(&[1, 2, 3]));
        assert_eq!(
            rx.try_recv().unwrap(),
            format!("461-{id}[{{\"_placeholder\":true,\"num\":0}}]\u{1e}bAQID")
        );
        assert!(!c.intercept_attachment(&[4]), "no ack is being collected");
    }
}

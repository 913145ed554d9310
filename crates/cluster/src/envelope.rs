//! The one wire format between nodes: MessagePack envelopes on Redis
//! channels.

use portcullis_hub::{Filter, Operation, Outcome, Payload};
use serde::{Deserialize, Serialize};

use crate::NodeId;

/// One message from a node to others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The sender (a node ignores its own messages).
    pub from: NodeId,
    /// What it says.
    pub body: Body,
}

/// What an envelope says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Body {
    /// Apply an operation to your connections of `hub`; answer on the
    /// sender's node channel when `reply` names a request.
    Apply {
        hub: String,
        operation: Operation,
        reply: Option<u64>,
    },
    /// The answer to request `request`.
    Reply { request: u64, outcome: Outcome },
    /// Send this event to your connections of `hub` matching `filter`, with
    /// an ack id of yours, and stream their acknowledgements back.
    Invoke {
        hub: String,
        filter: Filter,
        payload: Payload,
        request: u64,
        /// How long the origin waits for acknowledgements, in milliseconds.
        deadline_ms: u64,
    },
    /// One acknowledgement of invocation `request` (a Socket.IO ACK packet).
    InvokeAck { request: u64, answer: String },
    /// No more acknowledgements of invocation `request` from this node.
    InvokeEnd { request: u64 },
}

impl Envelope {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Encoding plain data into a Vec cannot fail.
        rmp_serde::to_vec(self).expect("an envelope encodes")
    }

    /// Decodes an envelope; `None` for anything else (never panics).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Envelope> {
        rmp_serde::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use portcullis_hub::{Frame, Payload, Selection};

    use super::*;

    #[test]
    fn envelopes_survive_the_wire() {
        let envelopes = [
            Envelope {
                from: NodeId::parse("a").unwrap(),
                body: Body::Apply {
                    hub: "chat".into(),
                    operation: Operation::Send {
                        to: Selection::group("room").excluding(&["x".into()]),
                        payload: Payload::from_frames(vec![
                            Frame::text("451-[\"f\",{\"_placeholder\":true,\"num\":0}]"),
                            Frame::Binary(bytes::Bytes::from_static(&[0, 255])),
                        ]),
                    },
                    reply: Some(7),
                },
            },
            Envelope {
                from: NodeId::parse("b").unwrap(),
                body: Body::Reply {
                    request: 7,
                    outcome: Outcome::Groups(vec!["g".into()]),
                },
            },
        ];
        for envelope in envelopes {
            let bytes = envelope.encode();
            assert_eq!(Envelope::decode(&bytes), Some(envelope));
        }
    }

    proptest::proptest! {
        /// Whatever arrives on a channel, decoding never panics.
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&bytes);
        }

        /// Bytes that start like a real envelope and then go wrong.
        #[test]
        fn damaged_envelopes_never_panic(cut in 0usize..200, flip in 0usize..200, bit in 0u8..8) {
            let mut bytes = Envelope {
                from: NodeId::parse("n").unwrap(),
                body: Body::Apply {
                    hub: "h".into(),
                    operation: Operation::Exists(Selection::group("g")),
                    reply: Some(1),
                },
            }
            .encode();
            let at = flip % bytes.len().max(1);
            if let Some(byte) = bytes.get_mut(at) {
                *byte ^= 1 << bit;
            }
            bytes.truncate(cut);
            let _ = Envelope::decode(&bytes);
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for bytes in [
            &b""[..],
            b"\xff\xff",
            b"\x92\xa1a\x81\xa5Apply\x90",
            b"hello",
        ] {
            assert_eq!(Envelope::decode(bytes), None);
        }
    }
}

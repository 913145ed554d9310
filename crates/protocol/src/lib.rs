//! Wire codecs for Portcullis: Engine.IO v4 packets and HTTP long-polling
//! payloads, with no I/O.
//!
//! The gateway speaks Engine.IO to clients; everything above it (Socket.IO
//! namespaces, events, acks) travels inside Engine.IO `message` packets.
//! Decoders here never panic on input: malformed data is a [`engine::DecodeError`].
//!
//! Owns: the Engine.IO packet and long-polling payload formats (the one
//! place that writes a record separator or a `b` + base64 record) and the
//! Socket.IO packet header. Must not depend on any other Portcullis crate,
//! on tokio or on anything that does I/O.
//!
//! ```
//! use portcullis_protocol::engine::{Packet, decode_payload};
//!
//! let packets = decode_payload("4hello\u{1e}bAQID").unwrap();
//! assert_eq!(packets[0], Packet::Message("hello".into()));
//! assert_eq!(packets[1], Packet::Binary(vec![1, 2, 3].into()));
//! ```

pub mod engine;
pub mod socket;

//! Engine.IO protocol version 4.
//!
//! - [`Packet`]: one Engine.IO packet, as carried by one WebSocket frame.
//! - [`decode_payload`] / [`encode_payload`]: the HTTP long-polling body, packets
//!   joined by the record separator `\x1e`, binary packets as `b` + base64.
//! - [`OpenParams`]: the JSON of the `open` packet that starts a session.

mod handshake;
mod packet;
mod payload;

pub use handshake::OpenParams;
pub use packet::{DecodeError, Packet, PacketType};
pub use payload::{
    PayloadBuilder, RECORD_SEPARATOR, decode_payload, encode_payload, split_records,
};

/// The only Engine.IO protocol revision this crate speaks (`EIO=4`).
pub const PROTOCOL_VERSION: &str = "4";

//! What the handler sends to clients: Engine.IO packets, encoded once and
//! shared by every recipient.

use std::sync::Arc;

use bytes::Bytes;
use portcullis_protocol::engine::{DecodeError, Packet, PayloadBuilder, split_records};

/// One Engine.IO packet as the client's transport carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Frame {
    /// A text packet including its type digit (`4hello`, `2`, `1`), UTF-8.
    Text(Bytes),
    /// A binary message: its raw bytes.
    Binary(Bytes),
}

impl Frame {
    /// A text frame from packet text such as `42["ev"]`.
    pub fn text(text: impl Into<String>) -> Self {
        Frame::Text(Bytes::from(text.into()))
    }

    /// Whether this is the Engine.IO close packet `1`.
    pub fn is_close(&self) -> bool {
        matches!(self, Frame::Text(t) if t.as_ref() == b"1")
    }

    /// Size in bytes on the wire (before any base64).
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(b) | Frame::Binary(b) => b.len(),
        }
    }

    /// Whether the frame carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the frame as one record of a polling payload.
    pub fn push_to(&self, body: &mut PayloadBuilder) {
        match self {
            Frame::Text(text) => body.push_encoded(&String::from_utf8_lossy(text)),
            Frame::Binary(bytes) => body.push_binary(bytes),
        }
    }

    /// The frame as a packet.
    pub fn to_packet(&self) -> Result<Packet, DecodeError> {
        match self {
            Frame::Text(text) => Packet::decode_text(std::str::from_utf8(text).unwrap_or("")),
            Frame::Binary(bytes) => Ok(Packet::Binary(bytes.clone())),
        }
    }
}

impl From<Packet> for Frame {
    fn from(packet: Packet) -> Self {
        match packet {
            Packet::Binary(bytes) => Frame::Binary(bytes),
            other => Frame::text(other.to_text().unwrap_or_default()),
        }
    }
}

/// A sequence of frames delivered together and in order (a Socket.IO binary
/// event is one text frame followed by its attachments). Cloning is cheap.
///
/// ```
/// use portcullis_hub::Payload;
/// let payload = Payload::parse("42[\"a\"]\u{1e}bAQID").unwrap();
/// assert_eq!(payload.frames().len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Vec<Frame>", into = "Vec<Frame>")]
pub struct Payload(Arc<[Frame]>);

impl From<Vec<Frame>> for Payload {
    fn from(frames: Vec<Frame>) -> Self {
        Payload::from_frames(frames)
    }
}

impl From<Payload> for Vec<Frame> {
    fn from(payload: Payload) -> Self {
        payload.frames().to_vec()
    }
}

impl Payload {
    /// A payload of one packet.
    pub fn packet(packet: Packet) -> Self {
        Payload(Arc::new([Frame::from(packet)]))
    }

    /// A payload of several frames.
    pub fn from_frames(frames: Vec<Frame>) -> Self {
        Payload(frames.into())
    }

    /// Parses the Engine.IO polling payload format (`\x1e`-joined, binary as
    /// `b` + base64), which is what the tunnel carries. Records are validated
    /// as packets but kept as text, so nothing is re-encoded.
    pub fn parse(eio_payload: &str) -> Result<Self, DecodeError> {
        let frames = split_records(eio_payload)
            .map(|record| match Packet::decode_record(record)? {
                Packet::Binary(bytes) => Ok(Frame::Binary(bytes)),
                _ => Ok(Frame::text(record)),
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(Payload::from_frames(frames))
    }

    /// The payload in the Engine.IO polling format (what [`Payload::parse`]
    /// reads): the tunnel's REST bodies and long-polling responses.
    pub fn to_polling_text(&self) -> String {
        let mut body = PayloadBuilder::default();
        self.frames()
            .iter()
            .for_each(|frame| frame.push_to(&mut body));
        body.finish()
    }

    /// The frames, in order.
    pub fn frames(&self) -> &[Frame] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            "[^\u{1e}]{0,40}".prop_map(|text| Frame::text(format!("4{text}"))),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|bytes| Frame::Binary(Bytes::from(bytes))),
        ]
    }

    proptest! {
        #[test]
        fn polling_text_parses_back(frames in proptest::collection::vec(frame(), 1..6)) {
            let payload = Payload::from_frames(frames);
            prop_assert_eq!(Payload::parse(&payload.to_polling_text()).unwrap(), payload);
        }
    }

    #[test]
    fn polling_text_of_an_event_with_an_attachment() {
        let payload = Payload::from_frames(vec![
            Frame::text("451-[\"f\",{\"_placeholder\":true,\"num\":0}]"),
            Frame::Binary(Bytes::from_static(&[1, 2, 3])),
        ]);
        assert_eq!(
            payload.to_polling_text(),
            "451-[\"f\",{\"_placeholder\":true,\"num\":0}]\u{1e}bAQID"
        );
    }
}

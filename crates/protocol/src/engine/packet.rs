use base64::Engine as _;
use bytes::Bytes;

/// The type digit that starts every text-encoded Engine.IO packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// `0`: the server opens a session (handshake JSON follows).
    Open,
    /// `1`: either side closes the session.
    Close,
    /// `2`: heartbeat request (`2probe` during an upgrade).
    Ping,
    /// `3`: heartbeat answer (`3probe` during an upgrade).
    Pong,
    /// `4`: application data.
    Message,
    /// `5`: the client completes an upgrade to WebSocket.
    Upgrade,
    /// `6`: no operation; used to release a pending long-poll.
    Noop,
}

impl PacketType {
    /// The digit that encodes this type.
    pub const fn as_char(self) -> char {
        match self {
            PacketType::Open => '0',
            PacketType::Close => '1',
            PacketType::Ping => '2',
            PacketType::Pong => '3',
            PacketType::Message => '4',
            PacketType::Upgrade => '5',
            PacketType::Noop => '6',
        }
    }

    /// Parses a type digit.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            b'0' => PacketType::Open,
            b'1' => PacketType::Close,
            b'2' => PacketType::Ping,
            b'3' => PacketType::Pong,
            b'4' => PacketType::Message,
            b'5' => PacketType::Upgrade,
            b'6' => PacketType::Noop,
            _ => return None,
        })
    }
}

/// One Engine.IO v4 packet.
///
/// Text packets keep their data as `String`; binary messages as [`Bytes`], so
/// one encoded broadcast can be shared by every recipient without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0{json}`: the handshake, see [`crate::engine::OpenParams`].
    Open(String),
    /// `1`.
    Close,
    /// `2` with optional data (`probe` during an upgrade).
    Ping(String),
    /// `3` with optional data.
    Pong(String),
    /// `4text`: a text message.
    Message(String),
    /// A binary message: a binary WebSocket frame, or `b<base64>` in a payload.
    Binary(Bytes),
    /// `5`.
    Upgrade,
    /// `6`.
    Noop,
}

/// Why some input is not a valid Engine.IO packet or payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An empty packet (no type digit).
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type digit.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A `b`-prefixed packet whose base64 does not decode.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    /// A payload holding more packets than the caller allows.
    #[error("payload holds more than {0} packets")]
    TooManyPackets(usize),
}

impl Packet {
    /// Decodes a text-encoded packet: one WebSocket text frame, or one record
    /// of a polling payload that does not start with `b`.
    ///
    /// ```
    /// use portcullis_protocol::engine::Packet;
    /// assert_eq!(Packet::decode_text("2probe"), Ok(Packet::Ping("probe".into())));
    /// assert!(Packet::decode_text("abc").is_err());
    /// ```
    pub fn decode_text(text: &str) -> Result<Packet, DecodeError> {
        let first = *text.as_bytes().first().ok_or(DecodeError::Empty)?;
        let kind = PacketType::from_byte(first)
            .ok_or_else(|| DecodeError::UnknownType(text.chars().next().unwrap_or_default()))?;
        // The type digit is ASCII, so slicing after it stays on a char boundary.
        let data = &text[1..];
        Ok(match kind {
            PacketType::Open => Packet::Open(data.to_owned()),
            PacketType::Close => Packet::Close,
            PacketType::Ping => Packet::Ping(data.to_owned()),
            PacketType::Pong => Packet::Pong(data.to_owned()),
            PacketType::Message => Packet::Message(data.to_owned()),
            PacketType::Upgrade => Packet::Upgrade,
            PacketType::Noop => Packet::Noop,
        })
    }

    /// Decodes one record of a polling payload: `b<base64>` is a binary
    /// message, anything else a text packet.
    pub fn decode_record(record: &str) -> Result<Packet, DecodeError> {
        match record.strip_prefix('b') {
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map(|bytes| Packet::Binary(bytes.into()))
                .map_err(|_| DecodeError::InvalidBase64),
            None => Packet::decode_text(record),
        }
    }

    /// The packet's type. Binary messages are [`PacketType::Message`].
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Open(_) => PacketType::Open,
            Packet::Close => PacketType::Close,
            Packet::Ping(_) => PacketType::Ping,
            Packet::Pong(_) => PacketType::Pong,
            Packet::Message(_) | Packet::Binary(_) => PacketType::Message,
            Packet::Upgrade => PacketType::Upgrade,
            Packet::Noop => PacketType::Noop,
        }
    }

    /// Appends the packet as one polling-payload record (`b<base64>` for
    /// binary) to `out`.
    pub fn encode_record(&self, out: &mut String) {
        match self {
            Packet::Binary(bytes) => super::payload::encode_binary_record(bytes, out),
            _ => self.encode_text_into(out),
        }
    }

    /// The text form of a non-binary packet, as sent in a WebSocket text
    /// frame. Returns `None` for [`Packet::Binary`], which travels as a binary
    /// frame of its raw bytes.
    ///
    /// ```
    /// use portcullis_protocol::engine::Packet;
    /// assert_eq!(Packet::Message("hi".into()).to_text().as_deref(), Some("4hi"));
    /// ```
    pub fn to_text(&self) -> Option<String> {
        if matches!(self, Packet::Binary(_)) {
            return None;
        }
        let mut out = String::with_capacity(1 + self.data_len());
        self.encode_text_into(&mut out);
        Some(out)
    }

    fn encode_text_into(&self, out: &mut String) {
        out.push(self.packet_type().as_char());
        match self {
            Packet::Open(data)
            | Packet::Ping(data)
            | Packet::Pong(data)
            | Packet::Message(data) => out.push_str(data),
            Packet::Binary(_) | Packet::Close | Packet::Upgrade | Packet::Noop => {}
        }
    }

    /// Length of the packet's data in bytes (the text after the type digit, or
    /// the raw binary length).
    pub fn data_len(&self) -> usize {
        match self {
            Packet::Open(d) | Packet::Ping(d) | Packet::Pong(d) | Packet::Message(d) => d.len(),
            Packet::Binary(b) => b.len(),
            Packet::Close | Packet::Upgrade | Packet::Noop => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_type() {
        let cases = [
            ("0{}", Packet::Open("{}".into())),
            ("1", Packet::Close),
            ("2", Packet::Ping(String::new())),
            ("3probe", Packet::Pong("probe".into())),
            ("4héllo", Packet::Message("héllo".into())),
            ("5", Packet::Upgrade),
            ("6", Packet::Noop),
        ];
        for (text, packet) in cases {
            assert_eq!(Packet::decode_text(text).as_ref(), Ok(&packet), "{text}");
            assert_eq!(packet.to_text().as_deref(), Some(text));
        }
    }

    #[test]
    fn refuses_bad_packets() {
        assert_eq!(Packet::decode_text(""), Err(DecodeError::Empty));
        assert_eq!(Packet::decode_text("7"), Err(DecodeError::UnknownType('7')));
        assert_eq!(Packet::decode_text("é"), Err(DecodeError::UnknownType('é')));
        assert_eq!(
            Packet::decode_record("b!!"),
            Err(DecodeError::InvalidBase64)
        );
    }

    #[test]
    fn binary_records_are_base64() {
        let packet = Packet::Binary(vec![1, 2, 3, 4].into());
        let mut out = String::new();
        packet.encode_record(&mut out);
        assert_eq!(out, "bAQIDBA==");
        assert_eq!(Packet::decode_record(&out), Ok(packet));
    }
}

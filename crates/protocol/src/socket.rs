//! Socket.IO protocol version 5: the header of a packet carried in an
//! Engine.IO message, `<type>[<attachments>-][/<namespace>,][<ack id>][<json>]`.
//!
//! The gateway inspects headers only (namespace groups, disconnects, ack ids
//! of broadcast acknowledgements); it never needs to parse the JSON data.
//!
//! ```
//! use portcullis_protocol::socket::{Header, PacketKind};
//! let header = Header::parse("51-/chat,12[\"ev\",{\"_placeholder\":true,\"num\":0}]").unwrap();
//! assert_eq!(header.kind, PacketKind::BinaryEvent);
//! assert_eq!(header.attachments, 1);
//! assert_eq!(header.namespace, "/chat");
//! assert_eq!(header.ack_id, Some(12));
//! assert_eq!(header.data, "[\"ev\",{\"_placeholder\":true,\"num\":0}]");
//! ```

/// The Socket.IO packet type (the first digit after the Engine.IO `4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// `0`: connect to a namespace (client) or its acceptance (server).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event.
    Event,
    /// `3`: an acknowledgement.
    Ack,
    /// `4`: a refused connect.
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck,
}

impl PacketKind {
    /// Parses a type digit.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            b'0' => PacketKind::Connect,
            b'1' => PacketKind::Disconnect,
            b'2' => PacketKind::Event,
            b'3' => PacketKind::Ack,
            b'4' => PacketKind::ConnectError,
            b'5' => PacketKind::BinaryEvent,
            b'6' => PacketKind::BinaryAck,
            _ => return None,
        })
    }

    /// The type digit.
    pub fn as_char(self) -> char {
        (b'0' + self as u8) as char
    }

    /// Whether packets of this kind carry binary attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketKind::BinaryEvent | PacketKind::BinaryAck)
    }
}

/// Largest attachment count accepted (socket.io-parser has no limit; ours
/// bounds the bookkeeping of incomplete packets).
pub const MAX_ATTACHMENTS: u32 = 1024;

/// The parsed header of a Socket.IO packet, borrowing from its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// The packet type.
    pub kind: PacketKind,
    /// Number of binary attachments that follow (binary kinds only).
    pub attachments: u32,
    /// The namespace, `/` when absent.
    pub namespace: &'a str,
    /// The acknowledgement id, if any.
    pub ack_id: Option<u64>,
    /// The JSON data after the header (may be empty).
    pub data: &'a str,
}

/// Why a text is not a Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Empty text.
    #[error("empty Socket.IO packet")]
    Empty,
    /// The type digit is not 0–6.
    #[error("unknown Socket.IO packet type")]
    UnknownType,
    /// A binary packet without a valid `<n>-` attachment count.
    #[error("invalid attachment count")]
    InvalidAttachments,
    /// A namespace without its terminating comma.
    #[error("namespace is not terminated by ','")]
    UnterminatedNamespace,
    /// An ack id that does not fit in 64 bits.
    #[error("ack id out of range")]
    InvalidAckId,
}

impl<'a> Header<'a> {
    /// Parses the Socket.IO packet `text` (the Engine.IO message data, without
    /// the leading `4`).
    pub fn parse(text: &'a str) -> Result<Header<'a>, HeaderError> {
        let bytes = text.as_bytes();
        let kind = PacketKind::from_byte(*bytes.first().ok_or(HeaderError::Empty)?)
            .ok_or(HeaderError::UnknownType)?;
        let mut rest = &text[1..];
        let mut attachments = 0;
        if kind.is_binary() {
            let dash = rest.find('-').ok_or(HeaderError::InvalidAttachments)?;
            attachments = rest[..dash]
                .parse::<u32>()
                .ok()
                .filter(|n| {
                    *n <= MAX_ATTACHMENTS
                        && dash > 0
                        && rest[..dash].bytes().all(|b| b.is_ascii_digit())
                })
                .ok_or(HeaderError::InvalidAttachments)?;
            rest = &rest[dash + 1..];
        }
        let mut namespace = "/";
        if rest.starts_with('/') {
            let comma = rest.find(',');
            // socket.io-parser accepts a namespace that ends the packet.
            let end = comma.unwrap_or(rest.len());
            namespace = &rest[..end];
            if comma.is_none() && rest[..end].contains(['[', '{', '"']) {
                return Err(HeaderError::UnterminatedNamespace);
            }
            rest = comma.map_or("", |c| &rest[c + 1..]);
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let ack_id = if digits > 0 {
            Some(
                rest[..digits]
                    .parse::<u64>()
                    .map_err(|_| HeaderError::InvalidAckId)?,
            )
        } else {
            None
        };
        Ok(Header {
            kind,
            attachments,
            namespace,
            ack_id,
            data: &rest[digits..],
        })
    }

    /// Encodes a header with `data` appended (the inverse of [`Header::parse`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 + self.namespace.len() + self.data.len());
        out.push(self.kind.as_char());
        if self.kind.is_binary() {
            out.push_str(&self.attachments.to_string());
            out.push('-');
        }
        // An explicit "/," keeps data that starts with '/' from reading as a
        // namespace.
        if self.namespace != "/" || self.data.starts_with('/') {
            out.push_str(self.namespace);
            out.push(',');
        }
        if let Some(id) = self.ack_id {
            out.push_str(&id.to_string());
        }
        out.push_str(self.data);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_packets() {
        let h = Header::parse("0").unwrap();
        assert_eq!(
            (h.kind, h.namespace, h.ack_id, h.data),
            (PacketKind::Connect, "/", None, "")
        );
        let h = Header::parse("0{\"sid\":\"x\"}").unwrap();
        assert_eq!(h.data, "{\"sid\":\"x\"}");
        let h = Header::parse("0/chat,{\"sid\":\"x\"}").unwrap();
        assert_eq!(h.namespace, "/chat");
        let h = Header::parse("1/chat,").unwrap();
        assert_eq!(
            (h.kind, h.namespace, h.data),
            (PacketKind::Disconnect, "/chat", "")
        );
        let h = Header::parse("1/chat").unwrap();
        assert_eq!(h.namespace, "/chat");
        let h = Header::parse("31[\"ack\"]").unwrap();
        assert_eq!(
            (h.kind, h.ack_id, h.data),
            (PacketKind::Ack, Some(1), "[\"ack\"]")
        );
        let h = Header::parse("1{\"close\":true}").unwrap();
        assert_eq!(
            (h.kind, h.data),
            (PacketKind::Disconnect, "{\"close\":true}")
        );
        let h = Header::parse("62-/nsp,7[1]").unwrap();
        assert_eq!(
            (h.kind, h.attachments, h.namespace, h.ack_id),
            (PacketKind::BinaryAck, 2, "/nsp", Some(7))
        );
    }

    #[test]
    fn encodes_back() {
        for text in [
            "0",
            "2[\"a\"]",
            "2/chat,5[\"a\"]",
            "51-[\"b\",{}]",
            "61-/x,3[1]",
            "1/chat,",
        ] {
            assert_eq!(Header::parse(text).unwrap().encode(), text);
        }
    }

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(Header::parse(""), Err(HeaderError::Empty));
        assert_eq!(Header::parse("9"), Err(HeaderError::UnknownType));
        assert_eq!(
            Header::parse("5[\"a\"]"),
            Err(HeaderError::InvalidAttachments)
        );
        assert_eq!(
            Header::parse("5x-[\"a\"]"),
            Err(HeaderError::InvalidAttachments)
        );
        assert_eq!(
            Header::parse("599999-[]"),
            Err(HeaderError::InvalidAttachments)
        );
        assert_eq!(
            Header::parse("2/chat[\"a\"]"),
            Err(HeaderError::UnterminatedNamespace)
        );
        assert_eq!(
            Header::parse("299999999999999999999999[]"),
            Err(HeaderError::InvalidAckId)
        );
    }
}

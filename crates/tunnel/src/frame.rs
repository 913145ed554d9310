//! Tunnel framing (`TunnelMessageProtocol.ts`): one message per WebSocket
//! binary frame.
//!
//! ```text
//! u32 little-endian N | MessagePack array(3) of N bytes: [type int, json str, content bin|nil]
//! ```
//!
//! [`encode`] writes the minimal MessagePack forms (fixint, fixstr/str8/16/32,
//! bin8/16/32 or nil), exactly like the SDK's encoder, so encoded frames match
//! captured bytes. [`decode`] accepts any integer width, any string width and,
//! for the content, bin8/16/32, str8/16/32 or nil. It rejects everything else
//! with a [`FrameError`] and never panics.
//!
//! ```
//! use portcullis_tunnel::{HttpResponse, TunnelMessage, frame};
//!
//! let msg = TunnelMessage::HttpResponse(HttpResponse::new(3, 202));
//! let bytes = frame::encode(&msg).unwrap();
//! assert_eq!(&bytes[..4], &((bytes.len() - 4) as u32).to_le_bytes());
//! assert_eq!(frame::decode(&bytes).unwrap(), msg);
//! assert!(frame::decode(&bytes[..bytes.len() - 1]).is_err());
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::TunnelMessage;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame is larger than the limit given to [`decode_with_limit`].
    #[error("tunnel frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversized {
        /// Frame length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Fewer than 4 bytes: no length prefix.
    #[error("tunnel frame of {len} bytes is too short for its 4-byte length prefix")]
    MissingLengthPrefix {
        /// Frame length in bytes.
        len: usize,
    },
    /// The length prefix does not equal the number of bytes after it.
    #[error("tunnel frame length prefix says {declared} bytes but {actual} bytes follow it")]
    LengthMismatch {
        /// The value of the prefix.
        declared: u32,
        /// Bytes actually present after the prefix.
        actual: usize,
    },
    /// The MessagePack data ends in the middle of a value.
    #[error("tunnel frame truncated while reading {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// The outer value is not a MessagePack array.
    #[error("tunnel frame is not a MessagePack array (marker 0x{marker:02x})")]
    NotAnArray {
        /// The MessagePack marker byte found.
        marker: u8,
    },
    /// The outer array does not have exactly 3 elements.
    #[error("tunnel frame array has {len} elements, expected 3")]
    WrongArrayLength {
        /// Number of elements declared.
        len: u32,
    },
    /// An element has the wrong MessagePack type.
    #[error("tunnel frame element {element} must be {expected}, found marker 0x{marker:02x}")]
    WrongType {
        /// Which element (`"type"`, `"json"` or `"content"`).
        element: &'static str,
        /// What was expected.
        expected: &'static str,
        /// The MessagePack marker byte found.
        marker: u8,
    },
    /// The message type integer does not fit in an `i64`.
    #[error("tunnel message type {0} is out of range")]
    TypeOutOfRange(u64),
    /// The JSON element is not valid UTF-8.
    #[error("tunnel frame JSON element is not valid UTF-8")]
    InvalidUtf8,
    /// The JSON element is not valid JSON or lacks required fields for its type.
    #[error("tunnel message of type {type_code} has invalid JSON: {source}")]
    InvalidJson {
        /// The message type.
        type_code: i64,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A message too large to encode: MessagePack and the length prefix
    /// cannot express more than `u32::MAX` bytes, or the caller's limit is
    /// lower (see [`encode_with_limit`]).
    #[error("tunnel message of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// Size the frame would have, prefix included (saturating).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes remain after the 3-element array.
    #[error("tunnel frame has {count} trailing bytes after the message")]
    TrailingBytes {
        /// Number of extra bytes.
        count: usize,
    },
}

/// Largest frame [`encode`] writes: the length prefix is a `u32`.
pub const MAX_FRAME_BYTES: usize = 4 + u32::MAX as usize;

/// Encodes one message as a complete frame (length prefix included).
///
/// The content is written as MessagePack `bin` (never `str`), or `nil` when
/// absent; the JSON element as `str`. A message whose frame would exceed
/// [`MAX_FRAME_BYTES`] is a [`FrameError::TooLarge`], found before anything
/// is allocated.
///
/// ```
/// use portcullis_tunnel::{TunnelMessage, frame};
///
/// let bytes = frame::encode(&TunnelMessage::ServiceStatus { message: "keepalive".into() }).unwrap();
/// assert_eq!(&bytes[..8], &[0x36, 0, 0, 0, 0x93, 0x05, 0xd9, 0x31]);
/// assert_eq!(bytes[bytes.len() - 1], 0xc0); // nil content
/// ```
pub fn encode(message: &TunnelMessage) -> Result<Bytes, FrameError> {
    encode_with_limit(message, MAX_FRAME_BYTES)
}

/// Encodes one message, refusing frames longer than `max_frame_bytes`
/// (prefix included; capped at [`MAX_FRAME_BYTES`]).
///
/// ```
/// use portcullis_tunnel::{FrameError, HttpResponse, TunnelMessage, frame};
///
/// let msg = TunnelMessage::HttpResponse(HttpResponse::new(1, 200).with_content(vec![0u8; 100]));
/// assert!(frame::encode_with_limit(&msg, 1024).is_ok());
/// assert!(matches!(frame::encode_with_limit(&msg, 64), Err(FrameError::TooLarge { .. })));
/// ```
pub fn encode_with_limit(
    message: &TunnelMessage,
    max_frame_bytes: usize,
) -> Result<Bytes, FrameError> {
    let json = message.to_json();
    let content = message.content();
    let max = max_frame_bytes.min(MAX_FRAME_BYTES);
    let capacity = frame_len(message.type_code(), json.len(), content.map(Bytes::len))
        .filter(|&len| len <= max)
        .ok_or_else(|| FrameError::TooLarge {
            len: 4usize
                .saturating_add(json.len())
                .saturating_add(content.map_or(0, Bytes::len)),
            max,
        })?;
    let mut out = BytesMut::with_capacity(capacity);
    out.put_u32_le(0);
    out.put_u8(0x93);
    write_int(&mut out, message.type_code());
    write_str(&mut out, &json);
    match content {
        Some(bytes) => write_bin(&mut out, bytes),
        None => out.put_u8(0xc0),
    }
    // Cannot fail: `frame_len` bounded the length.
    let len = u32::try_from(out.len() - 4).map_err(|_| FrameError::TooLarge {
        len: out.len(),
        max,
    })?;
    out[..4].copy_from_slice(&len.to_le_bytes());
    Ok(out.freeze())
}

/// The exact frame length (prefix included) of a message with this type
/// code, JSON element and content sizes; `None` when an element or the whole
/// cannot be expressed (MessagePack lengths and the prefix are `u32`).
fn frame_len(type_code: i64, json_len: usize, content_len: Option<usize>) -> Option<usize> {
    let int_len = match type_code {
        -32..=0x7f => 1,
        -0x80..=0xff => 2,
        -0x8000..=0xffff => 3,
        -0x8000_0000..=0xffff_ffff => 5,
        _ => 9,
    };
    let str_header = if json_len < 32 {
        1
    } else {
        len_header(json_len)?
    };
    let content = match content_len {
        Some(n) => len_header(n)?.checked_add(n)?,
        None => 1,
    };
    let body = (1 + int_len + str_header + content).checked_add(json_len)?;
    (body <= u32::MAX as usize).then_some(4 + body)
}

/// Bytes of a str8/16/32 or bin8/16/32 header for `len` (as `write_len`).
fn len_header(len: usize) -> Option<usize> {
    match len {
        0..=0xff => Some(2),
        0x100..=0xffff => Some(3),
        _ => u32::try_from(len).ok().map(|_| 5),
    }
}

/// Decodes one frame with no size limit beyond the slice itself.
///
/// Decoding never allocates more than the input size, so this is safe on
/// untrusted input; use [`decode_with_limit`] to enforce a policy limit.
///
/// ```
/// use portcullis_tunnel::{TunnelMessage, frame};
///
/// let hex = "36000000 93 05 d931 7b2254797065223a352c224d657373616765223a226b656570616c697665222c2254726163696e674964223a6e756c6c7d c0";
/// let bytes: Vec<u8> = (0..hex.replace(' ', "").len())
///     .step_by(2)
///     .map(|i| u8::from_str_radix(&hex.replace(' ', "")[i..i + 2], 16).unwrap())
///     .collect();
/// assert_eq!(
///     frame::decode(&bytes).unwrap(),
///     TunnelMessage::ServiceStatus { message: "keepalive".into() }
/// );
/// ```
pub fn decode(frame: &[u8]) -> Result<TunnelMessage, FrameError> {
    decode_with_limit(frame, usize::MAX)
}

/// Decodes one frame, rejecting frames longer than `max_frame_bytes` (prefix included).
///
/// ```
/// use portcullis_tunnel::{FrameError, TunnelMessage, frame};
///
/// let bytes = frame::encode(&TunnelMessage::ConnectionClose { message: "bye".into() }).unwrap();
/// assert!(frame::decode_with_limit(&bytes, 1024).is_ok());
/// assert!(matches!(
///     frame::decode_with_limit(&bytes, 8),
///     Err(FrameError::Oversized { .. })
/// ));
/// ```
pub fn decode_with_limit(
    frame: &[u8],
    max_frame_bytes: usize,
) -> Result<TunnelMessage, FrameError> {
    if frame.len() > max_frame_bytes {
        return Err(FrameError::Oversized {
            len: frame.len(),
            max: max_frame_bytes,
        });
    }
    let Some((prefix, body)) = frame.split_first_chunk::<4>() else {
        return Err(FrameError::MissingLengthPrefix { len: frame.len() });
    };
    let declared = u32::from_le_bytes(*prefix);
    if usize::try_from(declared).ok() != Some(body.len()) {
        return Err(FrameError::LengthMismatch {
            declared,
            actual: body.len(),
        });
    }

    let mut r = Reader { data: body, pos: 0 };
    let marker = r.u8("array header")?;
    let len = match marker {
        0x90..=0x9f => u32::from(marker & 0x0f),
        0xdc => u32::from(r.be::<2>("array16 length").map(u16::from_be_bytes)?),
        0xdd => r.be::<4>("array32 length").map(u32::from_be_bytes)?,
        _ => return Err(FrameError::NotAnArray { marker }),
    };
    if len != 3 {
        return Err(FrameError::WrongArrayLength { len });
    }

    let type_code = r.int()?;
    let json = r.json()?;
    let content = r.content()?;
    if r.pos != r.data.len() {
        return Err(FrameError::TrailingBytes {
            count: r.data.len() - r.pos,
        });
    }
    let json = std::str::from_utf8(json).map_err(|_| FrameError::InvalidUtf8)?;
    TunnelMessage::from_parts(type_code, json, content.map(Bytes::copy_from_slice))
        .map_err(|source| FrameError::InvalidJson { type_code, source })
}

/// A bounds-checked cursor over the MessagePack body.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or(FrameError::Truncated { what })?;
        let slice = &self.data[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(1, what)?[0])
    }

    fn be<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn sized(&mut self, len_bytes: u8, what: &'static str) -> Result<&'a [u8], FrameError> {
        let len = match len_bytes {
            1 => usize::from(self.u8(what)?),
            2 => usize::from(u16::from_be_bytes(self.be::<2>(what)?)),
            _ => u32::from_be_bytes(self.be::<4>(what)?) as usize,
        };
        self.take(len, what)
    }

    fn int(&mut self) -> Result<i64, FrameError> {
        const WHAT: &str = "message type";
        let marker = self.u8(WHAT)?;
        Ok(match marker {
            0x00..=0x7f => i64::from(marker),
            0xe0..=0xff => i64::from(marker as i8),
            0xcc => i64::from(self.u8(WHAT)?),
            0xcd => i64::from(u16::from_be_bytes(self.be::<2>(WHAT)?)),
            0xce => i64::from(u32::from_be_bytes(self.be::<4>(WHAT)?)),
            0xcf => {
                let v = u64::from_be_bytes(self.be::<8>(WHAT)?);
                i64::try_from(v).map_err(|_| FrameError::TypeOutOfRange(v))?
            }
            0xd0 => i64::from(i8::from_be_bytes(self.be::<1>(WHAT)?)),
            0xd1 => i64::from(i16::from_be_bytes(self.be::<2>(WHAT)?)),
            0xd2 => i64::from(i32::from_be_bytes(self.be::<4>(WHAT)?)),
            0xd3 => i64::from_be_bytes(self.be::<8>(WHAT)?),
            _ => {
                return Err(FrameError::WrongType {
                    element: "type",
                    expected: "an integer",
                    marker,
                });
            }
        })
    }

    fn json(&mut self) -> Result<&'a [u8], FrameError> {
        const WHAT: &str = "JSON string";
        let marker = self.u8(WHAT)?;
        match marker {
            0xa0..=0xbf => self.take(usize::from(marker & 0x1f), WHAT),
            0xd9 => self.sized(1, WHAT),
            0xda => self.sized(2, WHAT),
            0xdb => self.sized(4, WHAT),
            _ => Err(FrameError::WrongType {
                element: "json",
                expected: "a string",
                marker,
            }),
        }
    }

    fn content(&mut self) -> Result<Option<&'a [u8]>, FrameError> {
        const WHAT: &str = "content";
        let marker = self.u8(WHAT)?;
        match marker {
            0xc0 => Ok(None),
            0xc4 | 0xd9 => self.sized(1, WHAT).map(Some),
            0xc5 | 0xda => self.sized(2, WHAT).map(Some),
            0xc6 | 0xdb => self.sized(4, WHAT).map(Some),
            0xa0..=0xbf => self.take(usize::from(marker & 0x1f), WHAT).map(Some),
            _ => Err(FrameError::WrongType {
                element: "content",
                expected: "binary, string or nil",
                marker,
            }),
        }
    }
}

fn write_int(out: &mut BytesMut, v: i64) {
    match v {
        0..=0x7f => out.put_u8(v as u8),
        -32..=-1 => out.put_i8(v as i8),
        0x80..=0xff => {
            out.put_u8(0xcc);
            out.put_u8(v as u8);
        }
        0x100..=0xffff => {
            out.put_u8(0xcd);
            out.put_u16(v as u16);
        }
        0x1_0000..=0xffff_ffff => {
            out.put_u8(0xce);
            out.put_u32(v as u32);
        }
        0x1_0000_0000.. => {
            out.put_u8(0xcf);
            out.put_u64(v as u64);
        }
        -0x80..=-33 => {
            out.put_u8(0xd0);
            out.put_i8(v as i8);
        }
        -0x8000..=-0x81 => {
            out.put_u8(0xd1);
            out.put_i16(v as i16);
        }
        -0x8000_0000..=-0x8001 => {
            out.put_u8(0xd2);
            out.put_i32(v as i32);
        }
        _ => {
            out.put_u8(0xd3);
            out.put_i64(v);
        }
    }
}

fn write_len(out: &mut BytesMut, len: usize, markers: [u8; 3]) {
    if let Ok(l) = u8::try_from(len) {
        out.put_u8(markers[0]);
        out.put_u8(l);
    } else if let Ok(l) = u16::try_from(len) {
        out.put_u8(markers[1]);
        out.put_u16(l);
    } else {
        // `frame_len` bounded every element by u32::MAX first.
        out.put_u8(markers[2]);
        out.put_u32(len as u32);
    }
}

fn write_str(out: &mut BytesMut, s: &str) {
    if s.len() < 32 {
        out.put_u8(0xa0 | s.len() as u8);
    } else {
        write_len(out, s.len(), [0xd9, 0xda, 0xdb]);
    }
    out.put_slice(s.as_bytes());
}

fn write_bin(out: &mut BytesMut, b: &[u8]) {
    write_len(out, b.len(), [0xc4, 0xc5, 0xc6]);
    out.put_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn ints_of_every_width_round_trip() {
        for v in [
            0i64,
            3,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u32::MAX as i64,
            u32::MAX as i64 + 1,
            i64::MAX,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32_768,
            -32_769,
            i32::MIN as i64,
            i32::MIN as i64 - 1,
            i64::MIN,
        ] {
            let msg = TunnelMessage::Unknown {
                type_code: v,
                json: "{}".into(),
            };
            let bytes = encode(&msg).unwrap();
            assert_eq!(frame_len(v, 2, None), Some(bytes.len()), "{v}");
            assert_eq!(decode(&bytes).unwrap(), msg, "{v}");
        }
    }

    #[test]
    fn wide_encodings_are_accepted() {
        // array16(3), uint64 type 5, str32 json, bin32 content (dropped for type 5).
        let json = br#"{"Message":"m"}"#;
        let mut body = vec![0xdc, 0, 3, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5, 0xdb, 0, 0, 0];
        body.push(json.len() as u8);
        body.extend_from_slice(json);
        body.extend_from_slice(&[0xc6, 0, 0, 0, 1, 0xff]);
        assert_eq!(
            decode(&frame_of(&body)).unwrap(),
            TunnelMessage::ServiceStatus {
                message: "m".into()
            }
        );
    }

    #[test]
    fn str_content_is_accepted_as_bytes() {
        let json = br#"{"AckId":1,"StatusCode":200}"#;
        let mut body = vec![0x93, 0x02, 0xa0 | json.len() as u8];
        body.extend_from_slice(json);
        body.extend_from_slice(&[0xa2, b'h', b'i']);
        let TunnelMessage::HttpResponse(r) = decode(&frame_of(&body)).unwrap() else {
            panic!("not a response");
        };
        assert_eq!(r.content.as_deref(), Some(&b"hi"[..]));
    }

    #[test]
    fn bin16_content_is_written_for_large_bodies() {
        let msg = TunnelMessage::HttpResponse(
            crate::HttpResponse::new(1, 200).with_content(vec![7u8; 300]),
        );
        let bytes = encode(&msg).unwrap();
        let pos = bytes.len() - 300 - 3;
        assert_eq!(&bytes[pos..pos + 3], &[0xc5, 0x01, 0x2c]);
        assert_eq!(decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn oversized_messages_are_an_error_not_a_panic() {
        // Lengths MessagePack and the u32 prefix cannot express, checked
        // without allocating them.
        let max = u32::MAX as usize;
        assert_eq!(frame_len(1, max + 1, None), None);
        assert_eq!(frame_len(1, 0, Some(max + 1)), None);
        assert_eq!(frame_len(1, max / 2, Some(max / 2 + 1)), None);
        assert_eq!(frame_len(i64::MIN, usize::MAX, Some(usize::MAX)), None);
        assert!(frame_len(1, 16, Some(1024)).is_some_and(|n| n <= MAX_FRAME_BYTES));

        let msg = TunnelMessage::HttpResponse(
            crate::HttpResponse::new(1, 200).with_content(vec![0u8; 4096]),
        );
        let err = encode_with_limit(&msg, 1024).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { max: 1024, .. }),
            "{err}"
        );
        assert!(
            encode_with_limit(&msg, usize::MAX).is_ok(),
            "capped, not refused"
        );
    }

    #[test]
    fn errors_are_specific() {
        let good = encode(&TunnelMessage::ServiceStatus {
            message: "x".into(),
        })
        .unwrap();
        assert!(matches!(
            decode(&good[..3]),
            Err(FrameError::MissingLengthPrefix { len: 3 })
        ));
        let mut short = good.to_vec();
        short.pop();
        assert!(matches!(
            decode(&short),
            Err(FrameError::LengthMismatch { .. })
        ));
        // Prefix consistent but the body is cut inside the string.
        let body = &good[4..good.len() - 5];
        assert!(matches!(
            decode(&frame_of(body)),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&frame_of(&[0x92, 0x05, 0xa2, b'{', b'}'])),
            Err(FrameError::WrongArrayLength { len: 2 })
        ));
        assert!(matches!(
            decode(&frame_of(&[0x80])),
            Err(FrameError::NotAnArray { marker: 0x80 })
        ));
        assert!(matches!(
            decode(&frame_of(&[0x93, 0xa1, b'1', 0xa2, b'{', b'}', 0xc0])),
            Err(FrameError::WrongType {
                element: "type",
                ..
            })
        ));
        assert!(matches!(
            decode(&frame_of(&[0x93, 0x05, 0xc4, 2, b'{', b'}', 0xc0])),
            Err(FrameError::WrongType {
                element: "json",
                ..
            })
        ));
        assert!(matches!(
            decode(&frame_of(&[0x93, 0x05, 0xa2, b'{', b'}', 0x01])),
            Err(FrameError::WrongType {
                element: "content",
                ..
            })
        ));
        assert!(matches!(
            decode(&frame_of(&[0x93, 0x05, 0xa2, b'{', b'}', 0xc0, 0xc0])),
            Err(FrameError::TrailingBytes { count: 1 })
        ));
        assert!(matches!(
            decode(&frame_of(&[0x93, 0x05, 0xa2, b'{', b'x', 0xc0])),
            Err(FrameError::InvalidJson { type_code: 5, .. })
        ));
        assert!(matches!(
            decode(&frame_of(&[0x93, 0x05, 0xa2, 0xff, 0xfe, 0xc0])),
            Err(FrameError::InvalidUtf8)
        ));
        assert!(matches!(
            decode(&frame_of(&[0x93, 0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0])),
            Err(FrameError::TypeOutOfRange(_))
        ));
        // An HttpRequest without its required Url.
        let json = br#"{"AckId":1,"HttpMethod":"GET"}"#;
        let mut body = vec![0x93, 0x01, 0xa0 | json.len() as u8];
        body.extend_from_slice(json);
        body.push(0xc0);
        let err = decode(&frame_of(&body)).unwrap_err();
        assert!(err.to_string().contains("Url"), "{err}");
    }
}

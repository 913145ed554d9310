//! Tunnel framing (`TunnelMessageProtocol.ts`): one message per WebSocket
//! binary frame.
//!
//! ```text
//! u32 little-endian N | MessagePack array(3) of N bytes: [type int, json str, content bin|nil]
//! ```
//!
//! The MessagePack is read and written with [`rmp`]. [`encode`] writes the
//! minimal forms (fixint, fixstr/str8/16/32, bin8/16/32 or nil), exactly like
//! the SDK's encoder, so encoded frames match captured bytes. [`decode`] accepts any integer width, any string width and,
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

use std::convert::Infallible;

use bytes::Bytes;
use rmp::Marker;
use rmp::decode::{self, NumValueReadError, ValueReadError};
use rmp::encode::{self, ByteBuf, ValueWriteError};

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
    let (capacity, body_len) = frame_len(message.type_code(), json.len(), content.map(Bytes::len))
        .filter(|&len| len <= max)
        .and_then(|len| Some((len, u32::try_from(len - 4).ok()?)))
        .ok_or_else(|| FrameError::TooLarge {
            len: 4usize
                .saturating_add(json.len())
                .saturating_add(content.map_or(0, Bytes::len)),
            max,
        })?;
    // `frame_len` is exact, so the buffer never grows and turns into `Bytes`
    // without copying.
    let mut out = ByteBuf::with_capacity(capacity);
    infallible(write_body(
        &mut out,
        body_len,
        message.type_code(),
        &json,
        content,
    ));
    Ok(Bytes::from(out.into_vec()))
}

/// Writes the length prefix and the `[type, json, content]` array with
/// rmp, which picks the minimal form of every value (as the SDK's encoder
/// does). `frame_len` has checked that every length fits in a `u32`.
fn write_body(
    out: &mut ByteBuf,
    body_len: u32,
    type_code: i64,
    json: &str,
    content: Option<&Bytes>,
) -> Result<(), ValueWriteError<Infallible>> {
    out.as_mut_vec().extend_from_slice(&body_len.to_le_bytes());
    encode::write_array_len(out, 3)?;
    encode::write_sint(out, type_code)?;
    encode::write_str(out, json)?;
    match content {
        Some(bytes) => encode::write_bin(out, bytes),
        None => encode::write_nil(out).map_err(ValueWriteError::InvalidMarkerWrite),
    }
}

/// Writing to a [`ByteBuf`] cannot fail: its error type has no values.
fn infallible<T>(result: Result<T, ValueWriteError<Infallible>>) -> T {
    match result {
        Ok(value) => value,
        Err(
            ValueWriteError::InvalidMarkerWrite(never) | ValueWriteError::InvalidDataWrite(never),
        ) => match never {},
    }
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

/// Bytes of a str8/16/32 or bin8/16/32 header for `len` (as rmp writes it).
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
/// let bytes = hex::decode(hex.replace(' ', "")).unwrap();
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

    let mut rd = body;
    let len = decode::read_array_len(&mut rd).map_err(|error| match error {
        ValueReadError::TypeMismatch(marker) => FrameError::NotAnArray {
            marker: marker.to_u8(),
        },
        _ => FrameError::Truncated {
            what: "array header",
        },
    })?;
    if len != 3 {
        return Err(FrameError::WrongArrayLength { len });
    }

    let type_code = read_type(&mut rd)?;
    let json = read_json(&mut rd)?;
    let content = read_content(&mut rd)?;
    if !rd.is_empty() {
        return Err(FrameError::TrailingBytes { count: rd.len() });
    }
    let json = std::str::from_utf8(json).map_err(|_| FrameError::InvalidUtf8)?;
    TunnelMessage::from_parts(type_code, json, content.map(Bytes::copy_from_slice))
        .map_err(|source| FrameError::InvalidJson { type_code, source })
}

/// The message type: an integer of any width that fits in an `i64`.
fn read_type(rd: &mut &[u8]) -> Result<i64, FrameError> {
    const WHAT: &str = "message type";
    // `&[u8]` is `Copy`: the probe re-reads a uint64 too large for an i64.
    let probe = *rd;
    decode::read_int::<i64, _>(rd).map_err(|error| match error {
        NumValueReadError::TypeMismatch(marker) => FrameError::WrongType {
            element: "type",
            expected: "an integer",
            marker: marker.to_u8(),
        },
        NumValueReadError::OutOfRange => match decode::read_u64(&mut { probe }) {
            Ok(value) => FrameError::TypeOutOfRange(value),
            Err(_) => FrameError::Truncated { what: WHAT },
        },
        _ => FrameError::Truncated { what: WHAT },
    })
}

/// The JSON element: a MessagePack string of any width.
fn read_json<'a>(rd: &mut &'a [u8]) -> Result<&'a [u8], FrameError> {
    const WHAT: &str = "JSON string";
    let len = decode::read_str_len(rd).map_err(|error| match error {
        ValueReadError::TypeMismatch(marker) => FrameError::WrongType {
            element: "json",
            expected: "a string",
            marker: marker.to_u8(),
        },
        _ => FrameError::Truncated { what: WHAT },
    })?;
    take(rd, len, WHAT)
}

/// The content: `nil`, or binary or a string of any width (read as bytes).
fn read_content<'a>(rd: &mut &'a [u8]) -> Result<Option<&'a [u8]>, FrameError> {
    const WHAT: &str = "content";
    let &first = rd.first().ok_or(FrameError::Truncated { what: WHAT })?;
    let truncated = |_| FrameError::Truncated { what: WHAT };
    let len = match Marker::from_u8(first) {
        Marker::Null => {
            *rd = &rd[1..];
            return Ok(None);
        }
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
            decode::read_bin_len(rd).map_err(truncated)?
        }
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
            decode::read_str_len(rd).map_err(truncated)?
        }
        _ => {
            return Err(FrameError::WrongType {
                element: "content",
                expected: "binary, string or nil",
                marker: first,
            });
        }
    };
    take(rd, len, WHAT).map(Some)
}

/// The next `len` bytes, borrowed from the input: nothing is allocated for
/// a declared length before the bytes are known to be there.
fn take<'a>(rd: &mut &'a [u8], len: u32, what: &'static str) -> Result<&'a [u8], FrameError> {
    let len = usize::try_from(len).map_err(|_| FrameError::Truncated { what })?;
    let (value, rest) = rd
        .split_at_checked(len)
        .ok_or(FrameError::Truncated { what })?;
    *rd = rest;
    Ok(value)
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

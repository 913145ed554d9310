//! Socket.IO v5 packets as this crate reads and writes them: the header is
//! parsed by [`portcullis_protocol::socket::Header`], the JSON body here.

use bytes::Bytes;
use portcullis_hub::{Frame, Payload};
use portcullis_protocol::socket::{Header, HeaderError, PacketKind};
use serde::Serialize;
use serde::ser::{Impossible, SerializeTuple};
use serde_json::Value;

/// A client's answer to an emit: its arguments (as handlers see them) and
/// binary attachments.
#[derive(Debug)]
pub(crate) struct AckResponse {
    pub data: Value,
    pub binary: Vec<Bytes>,
}

impl AckResponse {
    /// An ACK's arguments as handlers see them; `None` if they are not an
    /// array.
    pub fn from_ack(data: Value, binary: Vec<Bytes>) -> Option<Self> {
        let args = match data {
            Value::Array(args) => args,
            Value::Null => Vec::new(),
            _ => return None,
        };
        let data = args_value(args, !binary.is_empty());
        Some(AckResponse { data, binary })
    }
}

/// A decoded client packet, attachments reassembled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Packet {
    pub kind: PacketKind,
    pub namespace: String,
    pub ack_id: Option<u64>,
    /// The parsed JSON body (`Null` when absent).
    pub data: Value,
    pub attachments: Vec<Bytes>,
}

/// Why a client's packet could not be read; the connection is then closed,
/// as socket.io does on a parse error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParseError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("invalid JSON in packet: {0}")]
    Json(#[from] serde_json::Error),
    #[error("binary data without a packet expecting attachments")]
    UnexpectedBinary,
    #[error("text packet while attachments were expected")]
    UnexpectedText,
}

/// A packet whose attachments have not all arrived.
#[derive(Debug)]
pub(crate) struct Partial {
    packet: Packet,
    expected: usize,
}

/// Reassembles binary packets across Engine.IO messages.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    /// Boxed: every connection has a decoder, few are mid-packet.
    partial: Option<Box<Partial>>,
}

impl Decoder {
    /// Feeds an Engine.IO text message (without its leading `4`).
    pub fn text(&mut self, text: &str) -> Result<Option<Packet>, ParseError> {
        if self.partial.is_some() {
            return Err(ParseError::UnexpectedText);
        }
        let header = Header::parse(text)?;
        let data = if header.data.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(header.data)?
        };
        let packet = Packet {
            kind: header.kind,
            namespace: header.namespace.to_owned(),
            ack_id: header.ack_id,
            data,
            attachments: Vec::new(),
        };
        if header.kind.is_binary() && header.attachments > 0 {
            self.partial = Some(Box::new(Partial {
                packet,
                expected: header.attachments as usize,
            }));
            return Ok(None);
        }
        Ok(Some(packet))
    }

    /// Feeds an Engine.IO binary message.
    pub fn binary(&mut self, bytes: Bytes) -> Result<Option<Packet>, ParseError> {
        let partial = self.partial.as_mut().ok_or(ParseError::UnexpectedBinary)?;
        partial.packet.attachments.push(bytes);
        if partial.packet.attachments.len() < partial.expected {
            return Ok(None);
        }
        Ok(self.partial.take().map(|p| p.packet))
    }
}

/// The JSON placeholder of attachment `num`.
pub(crate) fn placeholder(num: usize) -> Value {
    serde_json::json!({"_placeholder": true, "num": num})
}

fn is_placeholder(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.get("_placeholder") == Some(&Value::Bool(true)) && o.contains_key("num"))
}

/// Arguments as handlers see them: top-level placeholders removed (the
/// attachments are given separately), then one argument as itself, several
/// as an array, none as `null`.
pub(crate) fn args_value(mut args: Vec<Value>, binary: bool) -> Value {
    if binary {
        args.retain(|v| !is_placeholder(v));
    }
    match args.len() {
        0 => Value::Null,
        1 => args.pop().unwrap_or(Value::Null),
        _ => Value::Array(args),
    }
}

/// Encodes a server packet: the text frame, then the attachments.
pub(crate) fn encode(
    kind: PacketKind,
    namespace: &str,
    ack_id: Option<u64>,
    data: &str,
    attachments: &[Bytes],
) -> Payload {
    let kind = match (kind, attachments.is_empty()) {
        (PacketKind::Event | PacketKind::BinaryEvent, true) => PacketKind::Event,
        (PacketKind::Event | PacketKind::BinaryEvent, false) => PacketKind::BinaryEvent,
        (PacketKind::Ack | PacketKind::BinaryAck, true) => PacketKind::Ack,
        (PacketKind::Ack | PacketKind::BinaryAck, false) => PacketKind::BinaryAck,
        (other, _) => other,
    };
    let header = Header {
        kind,
        attachments: u32::try_from(attachments.len()).unwrap_or(u32::MAX),
        namespace,
        ack_id,
        data,
    };
    let mut text = String::with_capacity(2 + namespace.len() + data.len() + 8);
    text.push('4');
    text.push_str(&header.encode());
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(Frame::text(text));
    frames.extend(attachments.iter().cloned().map(Frame::Binary));
    Payload::from_frames(frames)
}

/// The JSON array of an EVENT: the name, the arguments, then one placeholder
/// per attachment.
pub(crate) fn event_data(event: &str, mut args: Vec<Value>, attachments: usize) -> String {
    args.insert(0, Value::String(event.to_owned()));
    args.extend((0..attachments).map(placeholder));
    Value::Array(args).to_string()
}

/// The JSON array of an ACK.
pub(crate) fn ack_data(mut args: Vec<Value>, attachments: usize) -> String {
    args.extend((0..attachments).map(placeholder));
    Value::Array(args).to_string()
}

/// Turns emitted data into Socket.IO arguments: a tuple is spread into
/// several arguments, `()` is no argument, anything else (arrays, slices and
/// `Vec`s included) is one argument.
///
/// "A tuple" is what serde serializes as one: Rust tuples, and types whose
/// `Serialize` says so on purpose (a list of arguments built at run time),
/// except fixed-size arrays, which serde serializes the same way but which
/// are one argument here, like the `Vec` and the slice they resemble.
pub(crate) fn to_args<T: Serialize + ?Sized>(data: &T) -> Result<Vec<Value>, serde_json::Error> {
    if !is_array_type::<T>()
        && let Ok(args) = data.serialize(TupleProbe)
    {
        return Ok(args);
    }
    Ok(vec![serde_json::to_value(data)?])
}

/// Whether `T`, behind references and the standard smart pointers (which
/// serialize as what they point to), is a fixed-size array.
///
/// serde gives tuples and fixed-size arrays the same shape
/// (`serialize_tuple`), so the serializer cannot tell `&("a", "b")` (two
/// arguments) from `&["a", "b"]` (one array, like `&vec!["a", "b"]`); the
/// type can. Array types are the only ones whose name starts with `[` and
/// ends with `]` once those wrappers are peeled off; a test below pins
/// the names down in case the compiler's naming changes.
fn is_array_type<T: ?Sized>() -> bool {
    let mut name = std::any::type_name::<T>();
    loop {
        let peeled = name
            .strip_prefix("&mut ")
            .or_else(|| name.strip_prefix('&'))
            .or_else(|| {
                ["alloc::boxed::Box<", "alloc::sync::Arc<", "alloc::rc::Rc<"]
                    .iter()
                    .find_map(|p| name.strip_prefix(p)?.strip_suffix('>'))
            });
        match peeled {
            Some(inner) => name = inner,
            None => break,
        }
    }
    // `[T; N]`; a slice `[T]` serializes as a sequence, one argument anyway.
    name.starts_with('[') && name.ends_with(']')
}

/// A serializer that succeeds only for tuples and unit, collecting the
/// elements; every other shape fails at once without traversal.
struct TupleProbe;

struct TupleCollector(Vec<Value>);

fn not_a_tuple<T>() -> Result<T, serde_json::Error> {
    Err(serde::ser::Error::custom("not a tuple"))
}

impl SerializeTuple for TupleCollector {
    type Ok = Vec<Value>;
    type Error = serde_json::Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.0.push(serde_json::to_value(value)?);
        Ok(())
    }

    fn end(self) -> Result<Self::Ok, Self::Error> {
        Ok(self.0)
    }
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*);)*) => {
        $(fn $name(self, $(_: $arg),*) -> Result<Self::Ok, Self::Error> { not_a_tuple() })*
    };
}

impl serde::Serializer for TupleProbe {
    type Ok = Vec<Value>;
    type Error = serde_json::Error;
    type SerializeSeq = Impossible<Vec<Value>, serde_json::Error>;
    type SerializeTuple = TupleCollector;
    type SerializeTupleStruct = Impossible<Vec<Value>, serde_json::Error>;
    type SerializeTupleVariant = Impossible<Vec<Value>, serde_json::Error>;
    type SerializeMap = Impossible<Vec<Value>, serde_json::Error>;
    type SerializeStruct = Impossible<Vec<Value>, serde_json::Error>;
    type SerializeStructVariant = Impossible<Vec<Value>, serde_json::Error>;

    refuse! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_unit(self) -> Result<Self::Ok, Self::Error> {
        Ok(Vec::new())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Self::Ok, Self::Error> {
        not_a_tuple()
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Self::Error> {
        not_a_tuple()
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Self::Error> {
        not_a_tuple()
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        not_a_tuple()
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Self::Error> {
        Ok(TupleCollector(Vec::with_capacity(len)))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        not_a_tuple()
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        not_a_tuple()
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        not_a_tuple()
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        not_a_tuple()
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        not_a_tuple()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spreads_tuples_only() {
        assert_eq!(to_args(&("a", 1)).unwrap(), vec![json!("a"), json!(1)]);
        assert_eq!(to_args(&()).unwrap(), Vec::<Value>::new());
        assert_eq!(to_args(&"x").unwrap(), vec![json!("x")]);
        assert_eq!(to_args(&vec![1, 2]).unwrap(), vec![json!([1, 2])]);
        assert_eq!(to_args(&json!({"a": 1})).unwrap(), vec![json!({"a": 1})]);
        assert_eq!(to_args(&Some(3)).unwrap(), vec![json!(3)]);
        assert_eq!(to_args(&[1, 2]).unwrap(), vec![json!([1, 2])]);
        assert_eq!(to_args(&[1, 2][..]).unwrap(), vec![json!([1, 2])]);
        assert_eq!(to_args(&[0u8; 0]).unwrap(), vec![json!([])]);
        assert_eq!(to_args(&&("a", 1)).unwrap(), vec![json!("a"), json!(1)]);
        assert_eq!(to_args(&(1,)).unwrap(), vec![json!(1)]);
        assert_eq!(to_args(&([1, 2],)).unwrap(), vec![json!([1, 2])]);
        // Arrays in a box are arrays; a tuple struct is one argument.
        assert_eq!(to_args(&Box::new([1, 2])).unwrap(), vec![json!([1, 2])]);
        assert_eq!(
            to_args(&std::sync::Arc::new(("a", 1))).unwrap(),
            vec![json!("a"), json!(1)]
        );
        #[derive(Serialize)]
        struct Pair(u8, u8);
        assert_eq!(to_args(&Pair(1, 2)).unwrap(), vec![json!([1, 2])]);
    }

    #[test]
    fn array_types_are_told_from_the_others_by_name() {
        assert!(is_array_type::<[u8; 2]>());
        assert!(is_array_type::<&&mut [(u8, u8); 0]>());
        assert!(is_array_type::<Box<[String; 3]>>());
        assert!(is_array_type::<std::sync::Arc<[u8; 1]>>());
        assert!(is_array_type::<std::rc::Rc<&[u8; 1]>>());
        assert!(!is_array_type::<()>());
        assert!(!is_array_type::<([u8; 2], u8)>());
        assert!(!is_array_type::<Vec<[u8; 2]>>());
        assert!(!is_array_type::<Box<([u8; 2], [u8; 2])>>());
        assert!(!is_array_type::<str>());
    }

    #[test]
    fn reassembles_attachments() {
        let mut d = Decoder::default();
        let text =
            r#"52-/chat,7["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert!(d.text(text).unwrap().is_none());
        assert!(d.binary(Bytes::from_static(b"a")).unwrap().is_none());
        let p = d.binary(Bytes::from_static(b"b")).unwrap().unwrap();
        assert_eq!(p.kind, PacketKind::BinaryEvent);
        assert_eq!(p.namespace, "/chat");
        assert_eq!(p.ack_id, Some(7));
        assert_eq!(
            p.attachments,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
        assert!(d.binary(Bytes::from_static(b"c")).is_err());
    }

    #[test]
    fn text_during_reassembly_is_an_error() {
        let mut d = Decoder::default();
        d.text(r#"51-["x",{"_placeholder":true,"num":0}]"#).unwrap();
        assert!(d.text(r#"2["y"]"#).is_err());
    }

    #[test]
    fn encodes_events_and_acks() {
        let p = encode(
            PacketKind::Event,
            "/",
            None,
            &event_data("hi", vec![json!(1)], 0),
            &[],
        );
        assert_eq!(p.frames(), [Frame::text(r#"42["hi",1]"#)]);
        let bin = [Bytes::from_static(b"\x01")];
        let p = encode(
            PacketKind::Event,
            "/c",
            Some(3),
            &event_data("b", vec![], 1),
            &bin,
        );
        assert_eq!(
            p.frames(),
            [
                Frame::text(r#"451-/c,3["b",{"_placeholder":true,"num":0}]"#),
                Frame::Binary(bin[0].clone())
            ]
        );
        let p = encode(
            PacketKind::Ack,
            "/",
            Some(9),
            &ack_data(vec![json!("ok")], 0),
            &[],
        );
        assert_eq!(p.frames(), [Frame::text(r#"439["ok"]"#)]);
    }

    #[test]
    fn handler_view_of_arguments() {
        assert_eq!(args_value(vec![], false), Value::Null);
        assert_eq!(args_value(vec![json!(1)], false), json!(1));
        assert_eq!(args_value(vec![json!(1), json!(2)], false), json!([1, 2]));
        assert_eq!(
            args_value(vec![json!("a"), placeholder(0)], true),
            json!("a")
        );
    }
}

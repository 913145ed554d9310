//! Socket.IO v5 packet headers (`portcullis_protocol::socket::Header`), both ways.
//!
//! - Parse: the input, as UTF-8, is carried in an Engine.IO message (`4…`,
//!   which must decode back to the same text) and parsed as a header. What
//!   parses must be well-formed (namespace starts with `/`, attachment count
//!   only on binary kinds and at most `MAX_ATTACHMENTS`, data a suffix of the
//!   text) and must encode to text that parses to the *same* header. When the
//!   data is JSON, re-encoding the header with the canonical JSON keeps the
//!   kind, namespace and ack id (as the SDK-side decoder relies on).
//! - Build: the same bytes, read as fields (kind, attachments, namespace, ack
//!   id, data), make a header that must survive `encode` then `parse`.
//!
//! Run with `cargo +nightly fuzz run socketio_packet` from `fuzz/`.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use portcullis_protocol::engine::Packet;
use portcullis_protocol::socket::{Header, MAX_ATTACHMENTS, PacketKind};

fn check_parsed(text: &str) {
    let Ok(header) = Header::parse(text) else {
        return;
    };
    assert!(header.namespace.starts_with('/'), "{header:?}");
    assert!(header.attachments <= MAX_ATTACHMENTS, "{header:?}");
    assert!(
        header.kind.is_binary() || header.attachments == 0,
        "{header:?}"
    );
    assert!(text.ends_with(header.data), "{header:?}");
    let encoded = header.encode();
    assert_eq!(Header::parse(&encoded).as_ref(), Ok(&header), "{encoded:?}");
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(header.data) {
        let data = json.to_string();
        if !data.starts_with(|c: char| c.is_ascii_digit()) {
            let again = Header {
                data: &data,
                ..header.clone()
            }
            .encode();
            let again = Header::parse(&again).expect("canonical JSON data parses");
            assert_eq!(
                (again.kind, again.namespace, again.ack_id),
                (header.kind, header.namespace, header.ack_id)
            );
            assert_eq!(again.data, data);
        }
    }
}

fn check_built(u: &mut Unstructured) -> Result<()> {
    let kind = PacketKind::from_byte(b'0' + u.int_in_range(0..=6)?).expect("0-6 is a kind");
    let attachments = if kind.is_binary() {
        u.int_in_range(0..=MAX_ATTACHMENTS)?
    } else {
        0
    };
    let namespace = format!("/{}", short_str(u)?.replace(',', ""));
    let ack_id = u.arbitrary::<Option<u64>>()?;
    let data = u.arbitrary::<&str>()?;
    if data.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok(()); // would read as (part of) the ack id
    }
    let header = Header {
        kind,
        attachments,
        namespace: &namespace,
        ack_id,
        data,
    };
    let encoded = header.encode();
    assert_eq!(Header::parse(&encoded), Ok(header), "{encoded:?}");
    Ok(())
}

/// A string of at most 64 bytes whose length is read first, leaving bytes
/// for the fields after it.
fn short_str<'a>(u: &mut Unstructured<'a>) -> Result<&'a str> {
    let len = u.int_in_range(0..=64)?;
    Ok(std::str::from_utf8(u.bytes(len)?).unwrap_or(""))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let message = Packet::Message(text.to_owned())
            .to_text()
            .expect("text packet");
        assert_eq!(
            Packet::decode_text(&message),
            Ok(Packet::Message(text.to_owned()))
        );
        check_parsed(text);
    }
    let _ = check_built(&mut Unstructured::new(data));
});

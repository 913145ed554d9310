//! Feeds arbitrary bytes to the Engine.IO packet and payload decoders and the
//! Socket.IO header parser; decoded payloads must re-encode to equal packets.
//!
//! Run with `cargo +nightly fuzz run eio_payload` from `fuzz/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_protocol::engine::{Packet, decode_payload, encode_payload};
use portcullis_protocol::socket::Header;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Packet::decode_text(text);
    if let Ok(header) = Header::parse(text) {
        // What parses must encode back to something that parses the same.
        let encoded = header.encode();
        assert_eq!(Header::parse(&encoded).ok().map(|h| h.encode()), Some(encoded));
    }
    if let Ok(packets) = decode_payload(text) {
        let encoded = encode_payload(&packets);
        assert_eq!(decode_payload(&encoded), Ok(packets));
    }
});

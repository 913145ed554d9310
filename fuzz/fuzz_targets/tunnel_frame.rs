//! Feeds arbitrary bytes to the tunnel frame decoder, and checks that every
//! frame it accepts re-encodes to a frame that decodes to the same message.
//! Also feeds the bytes, as lossy UTF-8, to the REST router.
//!
//! Run with `cargo +nightly fuzz run tunnel_frame` from `fuzz/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_tunnel::{decode, decode_with_limit, encode, rest};

fuzz_target!(|data: &[u8]| {
    // Raw input, and the same bytes behind a consistent length prefix so the
    // MessagePack parser is reached more often.
    let mut framed = (data.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(data);
    for frame in [data, framed.as_slice()] {
        if let Ok(message) = decode(frame) {
            let again = encode(&message).expect("a decoded message re-encodes");
            let back = decode(&again).expect("re-encoded frame must decode");
            assert_eq!(back, message);
        }
        let _ = decode_with_limit(frame, 64);
    }
    let text = String::from_utf8_lossy(data);
    let (method, url) = text.split_once(' ').unwrap_or(("POST", &text));
    let _ = rest::parse_rest(method, url);
});

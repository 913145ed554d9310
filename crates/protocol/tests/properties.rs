//! Property tests: the decoders never panic, and encoding round-trips.

use portcullis_protocol::engine::{
    OpenParams, Packet, RECORD_SEPARATOR, decode_payload, encode_payload,
};
use proptest::prelude::*;

/// Text without the record separator: what a packet's data may hold.
fn packet_text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.replace(RECORD_SEPARATOR, ""))
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        packet_text().prop_map(Packet::Open),
        Just(Packet::Close),
        packet_text().prop_map(Packet::Ping),
        packet_text().prop_map(Packet::Pong),
        packet_text().prop_map(Packet::Message),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| Packet::Binary(b.into())),
        Just(Packet::Upgrade),
        Just(Packet::Noop),
    ]
}

proptest! {
    #[test]
    fn decoding_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = Packet::decode_text(&text);
        let _ = Packet::decode_record(&text);
        let _ = decode_payload(&text);
    }

    #[test]
    fn payloads_round_trip(packets in proptest::collection::vec(packet(), 1..16)) {
        let encoded = encode_payload(&packets);
        prop_assert_eq!(decode_payload(&encoded), Ok(packets));
    }

    #[test]
    fn text_packets_round_trip(packet in packet()) {
        if let Some(text) = packet.to_text() {
            prop_assert_eq!(Packet::decode_text(&text), Ok(packet));
        }
    }

    #[test]
    fn open_params_round_trip(sid in "[A-Za-z0-9_-]{1,32}", interval in any::<u32>(), timeout in any::<u32>(), max in any::<u32>()) {
        let params = OpenParams {
            sid,
            upgrades: vec!["websocket".into()],
            ping_interval: interval.into(),
            ping_timeout: timeout.into(),
            max_payload: max.into(),
        };
        let parsed: OpenParams = serde_json::from_str(&params.to_json()).unwrap();
        prop_assert_eq!(parsed, params);
    }
}

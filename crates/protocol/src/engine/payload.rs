use super::packet::{DecodeError, Packet};

/// Separates the packets of a long-polling payload.
pub const RECORD_SEPARATOR: char = '\u{1e}';

/// The records of a long-polling payload, undecoded, in order.
pub fn split_records(body: &str) -> std::str::Split<'_, char> {
    body.split(RECORD_SEPARATOR)
}

/// Appends the record of a binary packet (`b` + base64) to `out`.
pub(crate) fn encode_binary_record(bytes: &[u8], out: &mut String) {
    use base64::Engine as _;
    out.push('b');
    base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
}

/// Decodes an HTTP long-polling payload into its packets.
///
/// An empty body is an error: engine.io clients never send one, and the
/// official server treats it as a parse error.
pub fn decode_payload(body: &str) -> Result<Vec<Packet>, DecodeError> {
    split_records(body).map(Packet::decode_record).collect()
}

/// Encodes packets as an HTTP long-polling payload.
///
/// ```
/// use portcullis_protocol::engine::{encode_payload, Packet};
/// let body = encode_payload(&[Packet::Message("a".into()), Packet::Ping(String::new())]);
/// assert_eq!(body, "4a\u{1e}2");
/// ```
pub fn encode_payload(packets: &[Packet]) -> String {
    let mut builder = PayloadBuilder::default();
    for packet in packets {
        builder.push(packet);
    }
    builder.finish()
}

/// Builds a polling payload packet by packet, without intermediate copies.
#[derive(Debug, Default)]
pub struct PayloadBuilder {
    body: String,
    records: usize,
}

impl PayloadBuilder {
    /// Appends one packet.
    pub fn push(&mut self, packet: &Packet) {
        self.separate();
        packet.encode_record(&mut self.body);
    }

    /// Appends a record that is already encoded (e.g. `4hello` or `bAQID`).
    pub fn push_encoded(&mut self, record: &str) {
        self.separate();
        self.body.push_str(record);
    }

    /// Appends a binary packet's record (`b` + base64) from its bytes.
    pub fn push_binary(&mut self, bytes: &[u8]) {
        self.separate();
        encode_binary_record(bytes, &mut self.body);
    }

    /// Number of records pushed so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Number of bytes written so far.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Whether no record was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    fn separate(&mut self) {
        if self.records > 0 {
            self.body.push(RECORD_SEPARATOR);
        }
        self.records += 1;
    }

    /// The finished payload.
    pub fn finish(self) -> String {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_record_separator() {
        let packets = decode_payload("4test1\u{1e}4test2\u{1e}bAQIDBA==").unwrap();
        assert_eq!(
            packets,
            vec![
                Packet::Message("test1".into()),
                Packet::Message("test2".into()),
                Packet::Binary(vec![1, 2, 3, 4].into()),
            ]
        );
        assert_eq!(
            encode_payload(&packets),
            "4test1\u{1e}4test2\u{1e}bAQIDBA=="
        );
    }

    #[test]
    fn refuses_invalid_payloads() {
        assert!(decode_payload("").is_err());
        assert!(decode_payload("abc").is_err());
        assert!(decode_payload("4a\u{1e}").is_err());
        assert!(decode_payload("4a\u{1e}b%%").is_err());
    }
}

//! Engine.IO v4 and Socket.IO v5 text framing: just what the load generator
//! sends and reads, parsed without allocating where it is hot.

/// The Engine.IO record separator of polling payloads.
pub const RECORD_SEPARATOR: char = '\u{1e}';

/// The parts of an Engine.IO OPEN packet the client needs.
#[derive(Debug, Clone)]
pub struct Open {
    pub sid: String,
}

/// Parses an OPEN packet (`0{"sid":…}`).
pub fn parse_open(text: &str) -> Option<Open> {
    let json = text.strip_prefix('0')?;
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(Open {
        sid: value.get("sid")?.as_str()?.to_owned(),
    })
}

/// A Socket.IO packet (the text after the Engine.IO MESSAGE type `4`), for
/// the default namespace.
#[derive(Debug, PartialEq, Eq)]
pub enum Sio<'a> {
    Connect,
    ConnectError(&'a str),
    Disconnect,
    Event { id: Option<u64>, data: &'a str },
    Ack { id: u64, data: &'a str },
    Other,
}

/// Parses a Socket.IO packet of the default namespace.
pub fn parse_sio(text: &str) -> Sio<'_> {
    let mut chars = text.char_indices();
    let Some((_, kind)) = chars.next() else {
        return Sio::Other;
    };
    let mut rest = &text[1..];
    // An explicit namespace ("/…,") is not the default one: skip it anyway.
    if rest.starts_with('/') {
        match rest.find(',') {
            Some(comma) => rest = &rest[comma + 1..],
            None => rest = "",
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 {
        rest[..digits].parse().ok()
    } else {
        None
    };
    let data = &rest[digits..];
    match kind {
        '0' => Sio::Connect,
        '1' => Sio::Disconnect,
        '2' => Sio::Event { id, data },
        '3' => match id {
            Some(id) => Sio::Ack { id, data },
            None => Sio::Other,
        },
        '4' => Sio::ConnectError(data),
        _ => Sio::Other,
    }
}

/// An Engine.IO packet received as text.
#[derive(Debug, PartialEq, Eq)]
pub enum Eio<'a> {
    Open(&'a str),
    Close,
    Ping,
    Pong,
    Message(&'a str),
    Noop,
    Other,
}

/// Classifies one Engine.IO text packet.
pub fn parse_eio(text: &str) -> Eio<'_> {
    match text.as_bytes().first() {
        Some(b'0') => Eio::Open(text),
        Some(b'1') => Eio::Close,
        Some(b'2') => Eio::Ping,
        Some(b'3') => Eio::Pong,
        Some(b'4') => Eio::Message(&text[1..]),
        Some(b'6') => Eio::Noop,
        _ => Eio::Other,
    }
}

/// The integer value of the first `"t":` key in `data` (the send timestamp
/// the harness puts in payloads), without parsing the JSON.
pub fn extract_t(data: &str) -> Option<u64> {
    let at = data.find("\"t\":")? + 4;
    let digits: &str = &data[at..];
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The query of a client request.
pub fn query(token: Option<&str>, transport: &str, sid: Option<&str>) -> String {
    let mut q = format!("EIO=4&transport={transport}");
    if let Some(sid) = sid {
        q.push_str("&sid=");
        q.push_str(sid);
    }
    if let Some(token) = token {
        q.push_str("&access_token=");
        q.push_str(token);
    }
    q
}

/// Splits a polling payload into its packets.
pub fn split_payload(body: &str) -> impl Iterator<Item = &str> {
    body.split(RECORD_SEPARATOR).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sio_packets() {
        assert_eq!(parse_sio("0{\"sid\":\"x\"}"), Sio::Connect);
        assert_eq!(parse_sio("0"), Sio::Connect);
        assert_eq!(
            parse_sio("31[{\"t\":5}]"),
            Sio::Ack {
                id: 1,
                data: "[{\"t\":5}]"
            }
        );
        assert_eq!(
            parse_sio("212[\"echo\",1]"),
            Sio::Event {
                id: Some(12),
                data: "[\"echo\",1]"
            }
        );
        assert_eq!(
            parse_sio("2[\"fanout\",1]"),
            Sio::Event {
                id: None,
                data: "[\"fanout\",1]"
            }
        );
        assert_eq!(
            parse_sio("4{\"message\":\"no\"}"),
            Sio::ConnectError("{\"message\":\"no\"}")
        );
    }

    #[test]
    fn extracts_timestamps() {
        assert_eq!(
            extract_t("[\"fanout\",{\"t\":12345,\"seq\":3}]"),
            Some(12345)
        );
        assert_eq!(extract_t("[\"fanout\",{\"seq\":3}]"), None);
    }

    #[test]
    fn parses_open() {
        let open = parse_open("0{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":300}").unwrap();
        assert_eq!(open.sid, "abc");
    }
}

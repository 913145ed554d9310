//! The Socket.IO bookkeeping a hub does for every payload it delivers and
//! every packet a client sends, whoever serves the hub (the tunnel, the
//! in-process Rust server): one rule for namespace groups in every mode,
//! as the hosted service keeps them for the official SDK (§4.3, §6.6 of the
//! protocol reference).
//!
//! - A CONNECT to the client joins its namespace group; a CONNECT_ERROR or
//!   DISCONNECT leaves every group of that namespace, and so does the
//!   client's own DISCONNECT.
//! - `41{"close":true}` closes the connection after delivery;
//!   `41/ns,{"close":false}` is answered with a client DISCONNECT for `ns`
//!   (handed to the handler as if the client had sent it). The `close` data
//!   is for the gateway only and is stripped from what the client gets.

use portcullis_protocol::socket::{Header, PacketKind};
use portcullis_tunnel::group_name::namespace_group_prefix;

use super::{Frame, Payload};

/// What delivering a payload does besides queueing it, found once per
/// payload from the Socket.IO headers of its packets (§4.3, §6.6 of the
/// protocol reference).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Namespace groups to join: the server accepted the socket.
    pub join: Vec<String>,
    /// Namespace group prefixes to leave: DISCONNECT or CONNECT_ERROR.
    pub leave: Vec<String>,
    /// `41{"close":true}`: close the connection after delivery.
    pub close: bool,
    /// `41/ns,{"close":false}`: answer with a client DISCONNECT for `ns`.
    pub disconnect_namespaces: Vec<String>,
    /// The payload as the client must see it: the `{"close":…}` data of a
    /// DISCONNECT is for the gateway only (socket.io-client's parser rejects
    /// a DISCONNECT with data and drops the whole connection).
    pub rewritten: Option<Payload>,
}

impl Effects {
    /// Whether delivering the payload needs nothing but queueing it.
    pub fn is_empty(&self) -> bool {
        self.join.is_empty()
            && self.leave.is_empty()
            && !self.close
            && self.disconnect_namespaces.is_empty()
    }
}

pub(crate) fn effects_of(payload: &Payload) -> Effects {
    let mut effects = Effects::default();
    for (index, frame) in payload.frames().iter().enumerate() {
        let Frame::Text(text) = frame else { continue };
        // Only CONNECT (0), DISCONNECT (1) and CONNECT_ERROR (4) have
        // effects: events and acks, nearly every packet, are not parsed.
        if !matches!(text.get(..2), Some(b"40" | b"41" | b"44")) {
            continue;
        }
        let Some(sio) = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.strip_prefix('4'))
        else {
            continue;
        };
        let Ok(header) = Header::parse(sio) else {
            continue;
        };
        let prefix = namespace_group_prefix(header.namespace);
        match header.kind {
            PacketKind::Connect => effects.join.push(prefix),
            PacketKind::ConnectError => effects.leave.push(prefix),
            PacketKind::Disconnect => {
                match close_flag(header.data) {
                    Some(true) => effects.close = true,
                    Some(false) => effects
                        .disconnect_namespaces
                        .push(header.namespace.to_owned()),
                    None => {}
                }
                if !header.data.is_empty() {
                    let bare = Header {
                        data: "",
                        ..header.clone()
                    };
                    let mut frames = effects
                        .rewritten
                        .take()
                        .map_or_else(|| payload.frames().to_vec(), |p| p.frames().to_vec());
                    frames[index] = Frame::text(format!("4{}", bare.encode()));
                    effects.rewritten = Some(Payload::from_frames(frames));
                }
                effects.leave.push(prefix);
            }
            _ => {}
        }
    }
    effects
}

fn close_flag(data: &str) -> Option<bool> {
    #[derive(serde::Deserialize)]
    struct Close {
        close: bool,
    }
    serde_json::from_str::<Close>(data).ok().map(|c| c.close)
}

/// The namespace group prefix a client's own Socket.IO packet makes its
/// connection leave: its DISCONNECT's namespace.
pub(crate) fn left_by_client(sio_text: &str) -> Option<String> {
    let header = Header::parse(sio_text).ok()?;
    (header.kind == PacketKind::Disconnect).then(|| namespace_group_prefix(header.namespace))
}

/// The text of a client DISCONNECT for `namespace` (without the Engine.IO
/// message type).
pub(crate) fn client_disconnect(namespace: &str) -> String {
    if namespace == "/" {
        "1".to_owned()
    } else {
        format!("1{namespace},")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_disconnects() {
        assert_eq!(left_by_client("1/chat,").as_deref(), Some("0~L2NoYXQ~"));
        assert_eq!(left_by_client("1").as_deref(), Some("0~Lw~"));
        assert_eq!(left_by_client("2[\"x\"]"), None);
        assert_eq!(left_by_client("not socket.io"), None);
        assert_eq!(client_disconnect("/"), "1");
        assert_eq!(client_disconnect("/chat"), "1/chat,");
    }

    #[test]
    fn finds_group_effects() {
        let payload =
            Payload::parse("40{\"sid\":\"s\"}\u{1e}42[\"a\"]\u{1e}44/locked,{\"message\":\"no\"}")
                .unwrap();
        let effects = effects_of(&payload);
        assert_eq!(effects.join, vec!["0~Lw~".to_owned()]);
        assert_eq!(effects.leave, vec!["0~L2xvY2tlZA~".to_owned()]);
        assert!(!effects.close);

        let close = effects_of(&Payload::parse("41{\"close\":true}").unwrap());
        assert!(close.close);
        assert_eq!(
            close.rewritten,
            Some(Payload::parse("41").unwrap()),
            "the client gets a bare DISCONNECT"
        );
        let soft = effects_of(&Payload::parse("42[1]\u{1e}41/chat,{\"close\":false}").unwrap());
        assert_eq!(soft.disconnect_namespaces, vec!["/chat".to_owned()]);
        assert!(!soft.close);
        assert_eq!(
            soft.rewritten,
            Some(Payload::parse("42[1]\u{1e}41/chat,").unwrap())
        );
        assert_eq!(
            effects_of(&Payload::parse("41/chat,").unwrap()).rewritten,
            None
        );
        assert_eq!(
            effects_of(&Payload::parse("2").unwrap()),
            Effects::default()
        );
    }
}

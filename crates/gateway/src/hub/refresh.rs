//! The in-band refresh's wire form: a client hands its live connection a
//! fresh token with a reserved Socket.IO event, which the gateway answers
//! itself and never passes to the application:
//!
//! ```text
//! client:  42[/ns,]<ack>["portcullis:refresh",{"token":"<jwt>"}]
//! gateway: 43[/ns,]<ack>[{"ok":true,"expiresAt":<exp, unix seconds>}]
//!      or  43[/ns,]<ack>[{"ok":false,"code":401,"message":"…"}]
//! ```
//!
//! Any namespace the client is connected to carries it; without an ack id
//! the refresh still happens, unanswered. (The texts here are Engine.IO
//! message frames; the functions below work on the Socket.IO packet inside,
//! without the leading `4`.)

use serde::Deserialize;

/// The reserved event name.
pub const REFRESH_EVENT: &str = "portcullis:refresh";

/// A refresh request found in a client packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RefreshRequest<'a> {
    /// The namespace, as the client wrote it (`/` when absent).
    pub namespace: &'a str,
    /// The ack id, if the client asked for an answer.
    pub ack: Option<&'a str>,
    /// The fresh token, or why the event carries none.
    pub token: Result<String, &'static str>,
}

#[derive(Deserialize)]
struct Arguments {
    token: String,
}

/// The refresh request in a Socket.IO packet's text, or `None` for any
/// other packet. Costs a few byte comparisons for ordinary events (every
/// client event passes here): the header is walked, not parsed.
pub(crate) fn parse(text: &str) -> Option<RefreshRequest<'_>> {
    let rest = text.strip_prefix('2')?;
    let (namespace, rest) = match rest.strip_prefix('/') {
        Some(_) => {
            let comma = rest.find(',')?;
            (&rest[..comma], &rest[comma + 1..])
        }
        None => ("/", rest),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (ack, data) = rest.split_at(digits);
    data.strip_prefix('[')?
        .trim_start()
        .strip_prefix('"')?
        .strip_prefix(REFRESH_EVENT)?
        .strip_prefix('"')?;
    let token = serde_json::from_str::<(String, Arguments)>(data)
        .map(|(_, arguments)| arguments.token)
        .map_err(|_| "the refresh event takes one argument, {\"token\": \"<jwt>\"}");
    Some(RefreshRequest {
        namespace,
        ack: (!ack.is_empty()).then_some(ack),
        token,
    })
}

/// How a refresh ended, as the client's acknowledgement says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefreshAnswer {
    /// The connection now holds the fresh token, which expires then.
    Refreshed { expires_at: Option<u64> },
    /// Refused; the connection keeps its old token and deadline.
    Refused { code: u16, message: String },
}

impl RefreshAnswer {
    /// The acknowledgement (Socket.IO packet text) answering
    /// `request`, if it asked for one.
    pub fn ack_for(&self, request: &RefreshRequest<'_>) -> Option<String> {
        let ack = request.ack?;
        let body = match self {
            RefreshAnswer::Refreshed { expires_at } => {
                serde_json::json!([{ "ok": true, "expiresAt": expires_at }])
            }
            RefreshAnswer::Refused { code, message } => {
                serde_json::json!([{ "ok": false, "code": code, "message": message }])
            }
        };
        let namespace = match request.namespace {
            "/" => String::new(),
            namespace => format!("{namespace},"),
        };
        Some(format!("3{namespace}{ack}{body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any client text: no panic, and only the reserved event is taken.
        #[test]
        fn never_panics_and_takes_only_the_reserved_event(text in ".{0,64}", tail in ".{0,32}") {
            let parsed = parse(&text);
            let reserved = format!("2{text}[\"{REFRESH_EVENT}\"{tail}");
            let _ = parse(&reserved);
            if parsed.is_some() {
                prop_assert!(text.starts_with('2') && text.contains(REFRESH_EVENT));
            }
        }

        /// A well-formed refresh round-trips its parts.
        #[test]
        fn well_formed_requests_parse(
            namespace in "(/[a-z]{1,8})?",
            ack in proptest::option::of(0u32..1_000_000),
            token in "[A-Za-z0-9._-]{1,40}",
        ) {
            let prefix = if namespace.is_empty() { String::new() } else { format!("{namespace},") };
            let ack_text = ack.map(|a| a.to_string()).unwrap_or_default();
            let text = format!(r#"2{prefix}{ack_text}["{REFRESH_EVENT}",{{"token":"{token}"}}]"#);
            let request = parse(&text).unwrap();
            prop_assert_eq!(request.namespace, if namespace.is_empty() { "/" } else { namespace.as_str() });
            prop_assert_eq!(request.ack.map(str::to_owned), ack.map(|a| a.to_string()));
            prop_assert_eq!(request.token, Ok(token));
        }
    }

    #[test]
    fn finds_the_reserved_event_in_any_namespace() {
        let request = parse(r#"21["portcullis:refresh",{"token":"a.b.c"}]"#).unwrap();
        assert_eq!(request.namespace, "/");
        assert_eq!(request.ack, Some("1"));
        assert_eq!(request.token.as_deref(), Ok("a.b.c"));
        let request = parse(r#"2/chat,77["portcullis:refresh",{"token":"t"}]"#).unwrap();
        assert_eq!(request.namespace, "/chat");
        assert_eq!(request.ack, Some("77"));
        let request = parse(r#"2["portcullis:refresh",{"token":"t"}]"#).unwrap();
        assert_eq!(request.ack, None);
    }

    #[test]
    fn other_packets_pass() {
        for text in [
            r#"2["message","portcullis:refresh"]"#,
            r#"2["portcullis:refreshed",{}]"#,
            r#"3["portcullis:refresh",{"token":"t"}]"#,
            r#"51-["portcullis:refresh",{"_placeholder":true,"num":0}]"#,
            "0",
            "2",
            "2/chat",
            "",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn a_malformed_refresh_is_still_intercepted() {
        for text in [
            r#"21["portcullis:refresh"]"#,
            r#"21["portcullis:refresh","a.b.c"]"#,
            r#"21["portcullis:refresh",{"token":7}]"#,
            r#"21["portcullis:refresh",{"token":"t"}"#,
        ] {
            let request = parse(text).expect(text);
            assert!(request.token.is_err(), "{text}");
        }
    }

    #[test]
    fn acks_in_the_request_namespace() {
        let request = parse(r#"2/chat,5["portcullis:refresh",{"token":"t"}]"#).unwrap();
        let ok = RefreshAnswer::Refreshed {
            expires_at: Some(10),
        };
        assert_eq!(
            ok.ack_for(&request).unwrap(),
            r#"3/chat,5[{"expiresAt":10,"ok":true}]"#
        );
        let request = parse(r#"23["portcullis:refresh",{"token":"t"}]"#).unwrap();
        let refused = RefreshAnswer::Refused {
            code: 403,
            message: "no".into(),
        };
        assert_eq!(
            refused.ack_for(&request).unwrap(),
            r#"33[{"code":403,"message":"no","ok":false}]"#
        );
        let unasked = parse(r#"2["portcullis:refresh",{"token":"t"}]"#).unwrap();
        assert_eq!(ok.ack_for(&unasked), None);
    }
}

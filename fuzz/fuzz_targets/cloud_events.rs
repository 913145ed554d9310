//! The tunnel's HTTP-level parsers (`portcullis_tunnel`): the first byte picks
//! one, the rest is read as its fields.
//!
//! 0. `parse_connect_response(status, body)`: non-2xx is a rejection echoing
//!    status and body; an accepted handshake re-serialises (`to_body`) to the
//!    same handshake and its `open_packet` is an Engine.IO open packet.
//! 1. `ReceivedEvent::from_request` on a request with fuzzed `ce-*` headers and
//!    body: what parses reports the headers it was given.
//! 2. CloudEvents built by `connect` (body = the input parsed as a
//!    `ConnectEventBody`), `connected`, `disconnected`, `user_message` must
//!    parse back (`from_request`) to the event that was sent.
//! 3. `TunnelMessage::from_parts(type, json, content)` (the JSON element of
//!    requests/responses: lenient headers, tracing ids, …) must survive
//!    `to_json` then `from_parts`.
//! 4. `rest::parse_rest`: raw method/URL (case-insensitive methods, absolute
//!    URL = path), and URLs built for every route from fuzzed, percent-encoded
//!    segments and form-encoded query values, which must route to those values.
//!    Every call it routes must build back (`RestCall::method`,
//!    `path_and_query`) into a request that routes to the same call.
//! 5. `rest::GroupsBody::from_json` survives `serde_json::to_vec`.
//! 6. `invoke::InvokeLineDecoder`: fed in fuzzed chunks it yields what one push
//!    of all bytes yields; `invoke_line(s)` decodes to `s`.
//! 7. `group_name::parse_group_name` / `group_name` round trips.
//!
//! Run with `cargo +nightly fuzz run cloud_events` from `fuzz/`.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use portcullis_protocol::engine::Packet;
use portcullis_tunnel::cloud_events::{self as ce, ConnectOutcome, ConnectResponse, EventContext};
use portcullis_tunnel::cloud_events::{ConnectEventBody, EventKind, ReceivedEvent};
use portcullis_tunnel::group_name::{group_name, namespace_group_prefix, parse_group_name};
use portcullis_tunnel::invoke::{InvokeLineDecoder, invoke_line};
use portcullis_tunnel::rest::{GroupsBody, RestCall, parse_rest};
use portcullis_tunnel::{HttpRequest, TunnelMessage};

/// A string of at most 48 bytes whose length is read first.
fn short<'a>(u: &mut Unstructured<'a>) -> Result<&'a str> {
    let len = u.int_in_range(0..=48)?;
    Ok(std::str::from_utf8(u.bytes(len)?).unwrap_or("x"))
}

/// The unread bytes, without consuming them.
fn rest_bytes<'a>(u: &Unstructured<'a>) -> &'a [u8] {
    u.peek_bytes(u.len()).unwrap_or_default()
}

/// The unread bytes as text (empty if not UTF-8), without consuming them.
fn rest_str<'a>(u: &Unstructured<'a>) -> &'a str {
    std::str::from_utf8(rest_bytes(u)).unwrap_or("")
}

fn connect_response(u: &mut Unstructured) -> Result<()> {
    let status = u.arbitrary::<u16>()? % 600;
    let body = rest_bytes(u);
    match ce::parse_connect_response(status, body) {
        Ok(ConnectOutcome::Rejected { status: s, message }) => {
            assert!(s == status && !(200..300).contains(&s));
            assert_eq!(message, String::from_utf8_lossy(body));
        }
        Ok(ConnectOutcome::Accepted(open)) => {
            let again = ce::parse_connect_response(200, &open.to_body()).expect("to_body parses");
            assert_eq!(again, ConnectOutcome::Accepted(open.clone()));
            let Ok(Packet::Open(json)) = Packet::decode_text(&open.open_packet(&["websocket"]))
            else {
                panic!("open_packet is not an open packet");
            };
            let reread: ConnectResponse = serde_json::from_str(&json).expect("open JSON");
            assert_eq!(
                reread,
                ConnectResponse {
                    upgrades: vec!["websocket".into()],
                    ..open
                }
            );
        }
        Err(_) => assert!((200..300).contains(&status)),
    }
    Ok(())
}

const CE_HEADERS: [&str; 7] = [
    "ce-type",
    "ce-hub",
    "ce-connectionId",
    "ce-userId",
    "ce-id",
    "ce-eventName",
    "Content-Type",
];
const CE_TYPES: [&str; 5] = [
    ce::TYPE_CONNECT,
    ce::TYPE_CONNECTED,
    ce::TYPE_DISCONNECTED,
    "azure.webpubsub.user.message",
    "azure.webpubsub.user.",
];

fn received_event(u: &mut Unstructured) -> Result<()> {
    let mut request = HttpRequest::new(1, "POST", ce::EVENT_HANDLER_URL);
    for _ in 0..u.int_in_range(0..=10)? {
        let mut name = u.choose(&CE_HEADERS)?.to_string();
        if u.arbitrary()? {
            name = name.to_ascii_uppercase();
        }
        let value = if name.eq_ignore_ascii_case("ce-type") && u.arbitrary()? {
            u.choose(&CE_TYPES)?
        } else {
            short(u)?
        };
        request = request.with_header(name, value);
    }
    request.content = u
        .arbitrary::<bool>()?
        .then(|| Bytes::copy_from_slice(rest_bytes(u)));
    if let Ok(event) = ReceivedEvent::from_request(&request) {
        assert_eq!(Some(event.hub.as_str()), request.header("ce-hub"));
        assert_eq!(
            Some(event.connection_id.as_str()),
            request.header("ce-connectionId")
        );
        assert_eq!(event.user_id.as_deref(), request.header("ce-userId"));
        assert_eq!(event.event_id, request.header("ce-id").unwrap_or(""));
        if let EventKind::User { content_type, .. } = &event.kind {
            assert!(!content_type.contains(';') && content_type.trim() == content_type);
            assert_eq!(content_type, &content_type.to_ascii_lowercase());
        }
    }
    Ok(())
}

fn event_round_trip(u: &mut Unstructured) -> Result<()> {
    let ctx = EventContext::new(short(u)?, short(u)?, short(u)?)
        .with_user_id(u.arbitrary::<bool>()?.then_some(short(u)?.to_owned()))
        .with_access_keys(u.arbitrary::<bool>()?.then_some("key"));
    let choice = u.int_in_range(0..=3)?;
    let ack_id = u.arbitrary()?;
    let text = rest_str(u);
    let (request, kind) = match choice {
        0 => {
            let body: ConnectEventBody = serde_json::from_slice(rest_bytes(u)).unwrap_or_default();
            if let Ok(serde_json::Value::Object(claims)) = serde_json::from_str(text) {
                let converted = ce::claims_from_jwt(&claims);
                assert!(converted.keys().eq(claims.keys()));
            }
            (ce::connect(&ctx, &body, ack_id), EventKind::Connect(body))
        }
        1 => (ce::connected(&ctx, ack_id), EventKind::Connected),
        2 => (
            ce::disconnected(&ctx, text, ack_id),
            EventKind::Disconnected {
                reason: text.into(),
            },
        ),
        _ => (
            ce::user_message(&ctx, text, ack_id),
            EventKind::User {
                event_name: "message".into(),
                content_type: "text/plain".into(),
                data: Bytes::copy_from_slice(text.as_bytes()),
            },
        ),
    };
    let expected = ReceivedEvent {
        hub: ctx.hub.clone(),
        connection_id: ctx.connection_id.clone(),
        user_id: ctx.user_id.clone(),
        event_id: ctx.event_id.clone(),
        kind,
    };
    assert_eq!(
        ReceivedEvent::from_request(&request).expect("own event parses"),
        expected
    );
    Ok(())
}

fn tunnel_json(u: &mut Unstructured) -> Result<()> {
    let type_code = match u.int_in_range(0..=7u8)? {
        7 => u.arbitrary()?,
        i => [1, 2, 5, 6, 7, 8, 10][usize::from(i)],
    };
    let content = u.arbitrary::<Option<Vec<u8>>>()?.map(Bytes::from);
    if let Ok(message) = TunnelMessage::from_parts(type_code, rest_str(u), content) {
        let json = message.to_json();
        let again =
            TunnelMessage::from_parts(message.type_code(), &json, message.content().cloned());
        assert_eq!(again.as_ref().ok(), Some(&message), "{json}");
    }
    Ok(())
}

/// What a REST path segment must escape (the parser decodes every `%XX`).
const SEGMENT: &AsciiSet = &CONTROLS.add(b'/').add(b'?').add(b'#').add(b'%').add(b' ');
/// Every route: method, path after `/api/hubs/{hub}/`, query fields it keeps.
const ROUTES: [(&str, &str, &str); 20] = [
    ("POST", ":send", "filter"),
    ("POST", ":addToGroups", ""),
    ("POST", ":removeFromGroups", ""),
    ("POST", ":invoke", "filter"),
    ("POST", ":closeConnections", "excluded reason"),
    ("POST", "connections/{connection_id}/:send", ""),
    ("DELETE", "connections/{connection_id}", "reason"),
    ("HEAD", "connections/{connection_id}", ""),
    ("DELETE", "connections/{connection_id}/groups", ""),
    ("HEAD", "groups/{group}", ""),
    ("POST", "groups/{group}/:send", "filter"),
    (
        "POST",
        "groups/{group}/:closeConnections",
        "excluded reason",
    ),
    ("PUT", "groups/{group}/connections/{connection_id}", ""),
    ("DELETE", "groups/{group}/connections/{connection_id}", ""),
    ("HEAD", "users/{user}", ""),
    ("POST", "users/{user_id}/:send", "filter"),
    (
        "POST",
        "users/{user_id}/:closeConnections",
        "excluded reason",
    ),
    ("DELETE", "users/{user_id}/groups", ""),
    ("PUT", "users/{user_id}/groups/{group}", ""),
    ("DELETE", "users/{user_id}/groups/{group}", ""),
];

fn rest_call(u: &mut Unstructured) -> Result<()> {
    if u.arbitrary()? {
        let method = short(u)?;
        let url = rest_str(u);
        let result = parse_rest(method, url);
        assert_eq!(parse_rest(&method.to_ascii_lowercase(), url), result);
        if let Ok(call) = &result {
            assert_built_back(call);
        }
        if let Err(error) = &result {
            assert!(matches!(error.status_code(), 400 | 404 | 405));
        }
        if url.starts_with('/') && !url.contains("://") {
            assert_eq!(parse_rest(method, &format!("https://host{url}")), result);
        }
        return Ok(());
    }
    let (method, template, query_fields) = *u.choose(&ROUTES)?;
    let mut expect = Vec::new();
    let mut url = if u.arbitrary()? {
        "https://h.example".to_owned()
    } else {
        String::new()
    };
    for segment in ["api", "hubs", "{hub}"]
        .into_iter()
        .chain(template.split('/'))
    {
        url.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(field) => {
                let value = short(u)?;
                if value.is_empty() {
                    return Ok(());
                }
                url.extend(utf8_percent_encode(value, SEGMENT));
                expect.push(format!("{field}: {value:?}"));
            }
            None => url.push_str(segment),
        }
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("api-version", "2024-01-01");
    for field in ["filter", "reason"] {
        let value = u.arbitrary::<bool>()?.then_some(short(u)?);
        if let Some(value) = value {
            query.append_pair(field, value);
        }
        if query_fields.contains(field) {
            expect.push(format!("{field}: {value:?}"));
        }
    }
    let excluded = [short(u)?, short(u)?][..u.int_in_range(0..=2)?].to_vec();
    for id in &excluded {
        query.append_pair("excluded", id);
    }
    if query_fields.contains("excluded") {
        expect.push(format!("excluded: {excluded:?}"));
    }
    url = format!("{url}?{}", query.finish());
    let method = if u.arbitrary()? {
        method.to_ascii_lowercase()
    } else {
        method.to_owned()
    };
    let call = parse_rest(&method, &url).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    assert_built_back(&call);
    let debug = format!("{call:?}");
    for field in &expect {
        assert!(
            debug.contains(field.as_str()),
            "{method} {url}: {debug} lacks {field}"
        );
    }
    Ok(())
}

/// `call`, built into a method and path, routes back to itself.
fn assert_built_back(call: &RestCall) {
    let path = call.path_and_query();
    assert_eq!(
        parse_rest(call.method(), &path).as_ref(),
        Ok(call),
        "{} {path}",
        call.method()
    );
}

fn groups_body(u: &mut Unstructured) -> Result<()> {
    if let Ok(body) = GroupsBody::from_json(rest_bytes(u)) {
        let json = serde_json::to_vec(&body).expect("serialises");
        assert_eq!(GroupsBody::from_json(&json), Ok(body.clone()));
        assert!(body.effective_filter().is_none_or(|f| !f.trim().is_empty()));
    }
    Ok(())
}

fn invoke_stream(u: &mut Unstructured) -> Result<()> {
    let line = short(u)?;
    let mut decoder = InvokeLineDecoder::default();
    assert_eq!(decoder.push(&invoke_line(line)), vec![Ok(line.to_owned())]);
    let cuts: Vec<u8> = (0..u.int_in_range(0..=8)?)
        .map(|_| u.arbitrary())
        .collect::<Result<_>>()?;
    let bytes = rest_bytes(u);
    let mut whole = InvokeLineDecoder::default();
    let expected = whole.push(bytes);
    let (mut got, mut rest) = (Vec::new(), bytes);
    for cut in cuts {
        let (chunk, tail) = rest.split_at(usize::from(cut).min(rest.len()));
        got.extend(decoder.push(chunk));
        rest = tail;
    }
    got.extend(decoder.push(rest));
    assert_eq!(got, expected);
    assert_eq!(decoder.pending(), whole.pending());
    Ok(())
}

fn group_names(u: &mut Unstructured) -> Result<()> {
    let (namespace, room) = (short(u)?, u.arbitrary::<bool>()?.then_some(short(u)?));
    let name = group_name(namespace, room);
    assert!(name.starts_with(&namespace_group_prefix(namespace)));
    let expected = (
        namespace.to_owned(),
        room.filter(|r| !r.is_empty()).map(str::to_owned),
    );
    assert_eq!(parse_group_name(&name), Some(expected));
    if let Some((ns, room)) = parse_group_name(rest_str(u)) {
        let canonical = group_name(&ns, room.as_deref());
        assert_eq!(parse_group_name(&canonical), Some((ns, room)));
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let u = &mut Unstructured::new(rest);
    let _ = match which % 8 {
        0 => connect_response(u),
        1 => received_event(u),
        2 => event_round_trip(u),
        3 => tunnel_json(u),
        4 => rest_call(u),
        5 => groups_body(u),
        6 => invoke_stream(u),
        _ => group_names(u),
    };
});

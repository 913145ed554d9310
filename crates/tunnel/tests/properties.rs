//! Property tests: decoders never panic, encoders round-trip.

use bytes::Bytes;
use portcullis_tunnel::group_name::{group_name, parse_group_name};
use portcullis_tunnel::invoke::{InvokeLineDecoder, invoke_line};
use portcullis_tunnel::message::Headers;
use portcullis_tunnel::rest::{RestCall, parse_rest};
use portcullis_tunnel::{
    FrameError, HttpRequest, HttpResponse, TunnelMessage, decode, decode_with_limit, encode,
    encode_with_limit,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn headers() -> impl Strategy<Value = Headers> {
    btree_map(any::<String>(), vec(any::<String>(), 0..3), 0..4)
}

fn content() -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(vec(any::<u8>(), 0..600).prop_map(Bytes::from))
}

fn request() -> impl Strategy<Value = HttpRequest> {
    (
        any::<u64>(),
        any::<bool>(),
        any::<String>(),
        any::<String>(),
        any::<String>(),
        headers(),
        content(),
        any::<Option<u64>>(),
    )
        .prop_map(
            |(ack_id, local_routing, channel_name, method, url, headers, content, tracing_id)| {
                HttpRequest {
                    ack_id,
                    local_routing,
                    channel_name,
                    method,
                    url,
                    headers,
                    content,
                    tracing_id,
                }
            },
        )
}

fn response() -> impl Strategy<Value = HttpResponse> {
    (
        any::<u64>(),
        any::<bool>(),
        any::<u16>(),
        any::<String>(),
        any::<bool>(),
        headers(),
        content(),
        any::<Option<u64>>(),
    )
        .prop_map(
            |(
                ack_id,
                local_routing,
                status_code,
                channel_name,
                not_completed,
                headers,
                content,
                tracing_id,
            )| {
                HttpResponse {
                    ack_id,
                    local_routing,
                    status_code,
                    channel_name,
                    not_completed,
                    headers,
                    content,
                    tracing_id,
                }
            },
        )
}

fn with_prefix(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A path segment: any non-empty text (the router has no empty segments).
fn segment() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("empty segment", |s| !s.is_empty())
}

/// Every kind of REST call, with arbitrary segments and query values.
fn rest_call() -> impl Strategy<Value = RestCall> {
    let (s, text) = (segment, || any::<Option<String>>());
    let ids = || vec(any::<String>(), 0..4);
    prop_oneof![
        (s(), s())
            .prop_map(|(hub, connection_id)| RestCall::SendToConnection { hub, connection_id }),
        (s(), text()).prop_map(|(hub, filter)| RestCall::SendToAll { hub, filter }),
        (s(), s(), text()).prop_map(|(hub, group, filter)| RestCall::SendToGroup {
            hub,
            group,
            filter
        }),
        (s(), s(), text()).prop_map(|(hub, user_id, filter)| RestCall::SendToUser {
            hub,
            user_id,
            filter
        }),
        s().prop_map(|hub| RestCall::AddToGroups { hub }),
        s().prop_map(|hub| RestCall::RemoveFromGroups { hub }),
        (s(), s(), s()).prop_map(
            |(hub, group, connection_id)| RestCall::AddConnectionToGroup {
                hub,
                group,
                connection_id
            }
        ),
        (s(), s(), s()).prop_map(|(hub, group, connection_id)| {
            RestCall::RemoveConnectionFromGroup {
                hub,
                group,
                connection_id,
            }
        }),
        (s(), s()).prop_map(
            |(hub, connection_id)| RestCall::RemoveConnectionFromAllGroups { hub, connection_id }
        ),
        (s(), s(), s()).prop_map(|(hub, user_id, group)| RestCall::AddUserToGroup {
            hub,
            user_id,
            group
        }),
        (s(), s(), s()).prop_map(|(hub, user_id, group)| RestCall::RemoveUserFromGroup {
            hub,
            user_id,
            group
        }),
        (s(), s()).prop_map(|(hub, user_id)| RestCall::RemoveUserFromAllGroups { hub, user_id }),
        (s(), text()).prop_map(|(hub, filter)| RestCall::Invoke { hub, filter }),
        (s(), s(), text()).prop_map(|(hub, connection_id, reason)| RestCall::CloseConnection {
            hub,
            connection_id,
            reason
        }),
        (s(), s())
            .prop_map(|(hub, connection_id)| RestCall::ConnectionExists { hub, connection_id }),
        (s(), s()).prop_map(|(hub, group)| RestCall::GroupExists { hub, group }),
        (s(), s()).prop_map(|(hub, user)| RestCall::UserExists { hub, user }),
        (s(), ids(), text()).prop_map(|(hub, excluded, reason)| RestCall::CloseAll {
            hub,
            excluded,
            reason
        }),
        (s(), s(), ids(), text()).prop_map(|(hub, group, excluded, reason)| RestCall::CloseGroup {
            hub,
            group,
            excluded,
            reason
        }),
        (s(), s(), ids(), text()).prop_map(|(hub, user_id, excluded, reason)| {
            RestCall::CloseUser {
                hub,
                user_id,
                excluded,
                reason,
            }
        }),
        (s(), s(), any::<Option<u64>>()).prop_map(|(hub, token_id, expires_at)| {
            RestCall::RevokeToken {
                hub,
                token_id,
                expires_at,
            }
        }),
        (s(), s(), any::<Option<u64>>()).prop_map(|(hub, user_id, issued_before)| {
            RestCall::RevokeUserTokens {
                hub,
                user_id,
                issued_before,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_never_panics(data in vec(any::<u8>(), 0..256)) {
        let _ = decode(&data);
        // With a consistent length prefix, so the MessagePack parser is exercised.
        let _ = decode(&with_prefix(&data));
        let mut array = vec![0x93];
        array.extend_from_slice(&data);
        let _ = decode(&with_prefix(&array));
    }

    #[test]
    fn decode_never_panics_on_mutated_frames(
        req in request(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = encode(&TunnelMessage::HttpRequest(req)).unwrap().to_vec();
        for (i, b) in edits {
            let i = i.index(frame.len());
            frame[i] = b;
        }
        let _ = decode(&frame);
        let len = cut.index(frame.len());
        let _ = decode(&frame[..len]);
        let body = frame[4..].to_vec();
        let _ = decode(&with_prefix(&body[..cut.index(body.len())]));
    }

    #[test]
    fn http_request_round_trips(req in request()) {
        let msg = TunnelMessage::HttpRequest(req);
        let bytes = encode(&msg).unwrap();
        prop_assert_eq!(u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize, bytes.len() - 4);
        prop_assert_eq!(decode(&bytes).unwrap(), msg.clone());
        prop_assert_eq!(decode_with_limit(&bytes, bytes.len()).unwrap(), msg);
        prop_assert!(decode_with_limit(&bytes, bytes.len() - 1).is_err());
    }

    #[test]
    fn encoding_past_a_limit_is_an_error_not_a_panic(resp in response(), limit in 0usize..4096) {
        let msg = TunnelMessage::HttpResponse(resp);
        let full = encode(&msg).unwrap();
        match encode_with_limit(&msg, limit) {
            Ok(bytes) => prop_assert!(bytes.len() <= limit && bytes == full),
            Err(FrameError::TooLarge { max, .. }) => {
                prop_assert_eq!(max, limit);
                prop_assert!(full.len() > limit);
            }
            Err(other) => prop_assert!(false, "unexpected {}", other),
        }
    }

    #[test]
    fn http_response_round_trips(resp in response()) {
        let msg = TunnelMessage::HttpResponse(resp);
        prop_assert_eq!(decode(&encode(&msg).unwrap()).unwrap(), msg);
    }

    #[test]
    fn other_messages_round_trip(
        a in any::<String>(), b in any::<String>(), c in any::<String>(),
        u in any::<Option<String>>(), t in any::<Option<String>>(),
    ) {
        for msg in [
            TunnelMessage::ServiceStatus { message: a.clone() },
            TunnelMessage::ConnectionClose { message: a.clone() },
            TunnelMessage::ConnectionReconnect { target_id: a.clone(), endpoint: b.clone(), message: c.clone() },
            TunnelMessage::ConnectionRebalance { target_id: a.clone(), endpoint: b.clone(), message: c.clone() },
            TunnelMessage::ConnectionConnected { connection_id: a.clone(), user_id: u.clone(), reconnection_token: t.clone() },
        ] {
            prop_assert_eq!(decode(&encode(&msg).unwrap()).unwrap(), msg);
        }
    }

    #[test]
    fn parse_rest_never_panics(method in any::<String>(), url in any::<String>()) {
        let _ = parse_rest(&method, &url);
        let _ = parse_rest("POST", &format!("/api/hubs/{url}"));
        let _ = parse_rest("DELETE", &format!("https://host/api/hubs/h/groups/{url}"));
    }

    #[test]
    fn rest_paths_with_safe_segments_round_trip(
        hub in "[A-Za-z0-9_]{1,12}",
        group in "[0-9A-Za-z_~-]{1,20}",
        id in "[A-Za-z0-9_-]{1,20}",
        filter in any::<String>(),
    ) {
        let encoded: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        let url = format!("https://host/api/hubs/{hub}/groups/{group}/:send?api-version=2023-07-01&filter={encoded}");
        prop_assert_eq!(
            parse_rest("POST", &url).unwrap(),
            portcullis_tunnel::rest::RestCall::SendToGroup { hub: hub.clone(), group: group.clone(), filter: Some(filter) }
        );
        let url = format!("/api/hubs/{hub}/groups/{group}/connections/{id}");
        prop_assert_eq!(
            parse_rest("DELETE", &url).unwrap(),
            portcullis_tunnel::rest::RestCall::RemoveConnectionFromGroup { hub, group, connection_id: id }
        );
    }

    #[test]
    fn rest_calls_build_and_parse_back(call in rest_call(), absolute in any::<bool>()) {
        let path = call.path_and_query();
        let target = if absolute { format!("https://host{path}") } else { path };
        prop_assert_eq!(parse_rest(call.method(), &target), Ok(call));
    }

    #[test]
    fn group_names_round_trip(ns in any::<String>(), room in any::<Option<String>>()) {
        let name = group_name(&ns, room.as_deref());
        prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_~".contains(&b)));
        let expected_room = room.filter(|r| !r.is_empty());
        prop_assert_eq!(parse_group_name(&name), Some((ns, expected_room)));
    }

    #[test]
    fn invoke_lines_round_trip(payloads in vec(any::<String>(), 0..5), chunk in 1usize..16) {
        let mut all = Vec::new();
        for p in &payloads {
            let line = invoke_line(p);
            prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            all.extend_from_slice(&line);
        }
        let mut d = InvokeLineDecoder::default();
        let mut got = Vec::new();
        for c in all.chunks(chunk) {
            got.extend(d.push(c).into_iter().map(Result::unwrap));
        }
        prop_assert_eq!(got, payloads);
    }
}

//! The captured byte vectors of the protocol reference (§3.3, §4, §5, §7).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use portcullis_tunnel::cloud_events::{
    self, ConnectEventBody, ConnectOutcome, EventContext, EventKind, ReceivedEvent,
};
use portcullis_tunnel::rest::{GroupsBody, RestCall, parse_rest};
use portcullis_tunnel::{HttpRequest, HttpResponse, TunnelMessage, decode, encode};

/// Hex with spaces; `{...}` runs are literal ASCII (the doc prints the JSON that way).
fn bytes_of(spec: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = spec;
    while !rest.is_empty() {
        if rest.starts_with('{') {
            // JSON literal: up to the matching top-level '}'.
            let mut depth = 0;
            let mut end = 0;
            for (i, c) in rest.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            out.extend_from_slice(&rest.as_bytes()[..end]);
            rest = &rest[end..];
        } else if rest.starts_with(' ') {
            rest = &rest[1..];
        } else {
            out.push(u8::from_str_radix(&rest[..2], 16).unwrap());
            rest = &rest[2..];
        }
    }
    out
}

#[test]
fn connection_connected_is_byte_exact() {
    let expected = bytes_of(
        "5d000000 93 0a d958 7b2254797065223a31302c22436f6e6e656374696f6e4964223a22746331222c22557365724964223a6e756c6c2c225265636f6e6e656374696f6e546f6b656e223a6e756c6c2c2254726163696e674964223a6e756c6c7d c0",
    );
    let msg = TunnelMessage::ConnectionConnected {
        connection_id: "tc1".into(),
        user_id: None,
        reconnection_token: None,
    };
    assert_eq!(encode(&msg).unwrap().as_ref(), expected.as_slice());
    assert_eq!(decode(&expected).unwrap(), msg);
}

#[test]
fn http_response_202_is_byte_exact() {
    let expected = bytes_of(
        r#"83000000 93 02 d97e {"Type":2,"AckId":3,"StatusCode":202,"Headers":{},"LocalRouting":false,"ChannelName":"","NotCompleted":false,"TracingId":null} c0"#,
    );
    assert_eq!(expected.len(), 4 + 0x83);
    let msg = TunnelMessage::HttpResponse(HttpResponse::new(3, 202));
    assert_eq!(encode(&msg).unwrap().as_ref(), expected.as_slice());
    assert_eq!(decode(&expected).unwrap(), msg);
}

#[test]
fn service_status_keepalive_is_byte_exact() {
    let expected =
        bytes_of(r#"36000000 93 05 d931 {"Type":5,"Message":"keepalive","TracingId":null} c0"#);
    let msg = TunnelMessage::ServiceStatus {
        message: "keepalive".into(),
    };
    assert_eq!(encode(&msg).unwrap().as_ref(), expected.as_slice());
    assert_eq!(decode(&expected).unwrap(), msg);
}

#[test]
fn captured_sdk_send_to_connection_decodes() {
    let frame = bytes_of(
        r#"f8000000 93 01 d9d2 {"AckId":1,"LocalRouting":true,"ChannelName":"","HttpMethod":"POST","Url":"https://host/api/hubs/eio_hub/connections/conn-abc123/:send?api-version=2023-07-01","Headers":{"Content-Type":["text/plain"]},"Type":1} c4 20 34307b22736964223a226972723978483135423549344932636c41414141227d"#,
    );
    assert_eq!(frame.len(), 4 + 0xf8);
    let TunnelMessage::HttpRequest(req) = decode(&frame).unwrap() else {
        panic!("not a request");
    };
    assert_eq!(req.ack_id, 1);
    assert!(req.local_routing);
    assert_eq!(req.channel_name, "");
    assert_eq!(req.method, "POST");
    assert_eq!(req.header("content-type"), Some("text/plain"));
    assert_eq!(req.tracing_id, None);
    assert_eq!(
        req.content.as_deref(),
        Some(&br#"40{"sid":"irr9xH15B5I4I2clAAAA"}"#[..])
    );
    assert_eq!(
        parse_rest(&req.method, &req.url).unwrap(),
        RestCall::SendToConnection {
            hub: "eio_hub".into(),
            connection_id: "conn-abc123".into()
        }
    );
    // Re-encoding changes only the key order; it round-trips.
    let again = encode(&TunnelMessage::HttpRequest(req.clone())).unwrap();
    assert_eq!(
        decode(&again).unwrap(),
        TunnelMessage::HttpRequest(req.clone())
    );

    // The service's 202 reply echoes LocalRouting.
    let reply = HttpResponse::reply_to(&req, 202);
    assert!(reply.local_routing);
    assert_eq!(reply.ack_id, 1);
}

#[test]
fn service_bytes_can_parse_vector() {
    // TunnelMessageProtocol.test.ts "ServiceBytesCanParseTests": only the ends of the
    // base64 are in the reference; rebuild the frame from its decoded JSON + bin "Hello".
    let request = HttpRequest {
        ack_id: 1,
        local_routing: true,
        channel_name: "a".into(),
        method: "HEAD".into(),
        url: "a".into(),
        headers: [("a".to_owned(), vec!["b".to_owned()])].into(),
        content: Some(Bytes::from_static(b"Hello")),
        tracing_id: None,
    };
    let msg = TunnelMessage::HttpRequest(request);
    let bytes = encode(&msg).unwrap();
    let json = r#"{"Type":1,"AckId":1,"HttpMethod":"HEAD","Url":"a","Headers":{"a":["b"]},"LocalRouting":true,"ChannelName":"a","TracingId":null}"#;
    assert_eq!(&bytes[8..8 + json.len()], json.as_bytes());
    let b64 = STANDARD.encode(&bytes);
    assert!(b64.starts_with("igAAAJMB2X97IlR5cGUiOjEsIkFja0lk"), "{b64}");
    assert!(b64.ends_with("xAVIZWxsbw=="), "{b64}");
    assert_eq!(decode(&bytes).unwrap(), msg);
    assert_eq!(decode(&STANDARD.decode(&b64).unwrap()).unwrap(), msg);
}

#[test]
fn sdk_cloud_event_response_decodes() {
    // §3.7: SDK answers with lowercase header names.
    let json = r#"{"AckId":9,"LocalRouting":false,"StatusCode":200,"ChannelName":"","NotCompleted":false,"Headers":{"content-type":["application/json; charset=utf-8"]},"Type":2}"#;
    let body = br#"{"socketio":{"sid":"conn-abc123","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}}"#;
    let mut frame = vec![0x93, 0x02, 0xd9, json.len() as u8];
    frame.extend_from_slice(json.as_bytes());
    frame.extend_from_slice(&[0xc4, body.len() as u8]);
    frame.extend_from_slice(body);
    let mut full = (frame.len() as u32).to_le_bytes().to_vec();
    full.extend_from_slice(&frame);
    let TunnelMessage::HttpResponse(resp) = decode(&full).unwrap() else {
        panic!("not a response");
    };
    assert_eq!(
        resp.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    let outcome =
        cloud_events::parse_connect_response(resp.status_code, resp.content.as_deref().unwrap())
            .unwrap();
    let ConnectOutcome::Accepted(open) = outcome else {
        panic!("rejected");
    };
    assert_eq!(open.sid, "conn-abc123");
    assert_eq!(
        open.open_packet(&["websocket"]),
        r#"0{"sid":"conn-abc123","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
    );
    assert_eq!(open.to_body().as_ref(), body);
}

#[test]
fn connect_response_tolerates_extra_keys_and_reports_errors() {
    let body = br#"{"extra":1,"socketio":{"maxPayload":5,"sid":"s","pingTimeout":2,"pingInterval":1,"upgrades":[],"more":true}}"#;
    let ConnectOutcome::Accepted(open) = cloud_events::parse_connect_response(200, body).unwrap()
    else {
        panic!("rejected");
    };
    assert_eq!(
        (open.ping_interval, open.ping_timeout, open.max_payload),
        (1, 2, 5)
    );
    assert!(cloud_events::parse_connect_response(200, b"{}").is_err());
    assert!(cloud_events::parse_connect_response(200, b"").is_err());
    assert_eq!(
        cloud_events::parse_connect_response(
            500,
            b"EIO server cannot handle connect request with error: boom"
        )
        .unwrap(),
        ConnectOutcome::Rejected {
            status: 500,
            message: "EIO server cannot handle connect request with error: boom".into()
        }
    );
}

fn ctx() -> EventContext {
    EventContext::new("eio_hub", "conn-abc123", "evt-7")
        .with_user_id(Some("bob".into()))
        .with_origin_host("gateway.local")
        .with_access_keys(["primary", "secondary"])
        .with_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_704_067_200))
}

#[test]
fn cloud_event_headers_are_complete() {
    let req = cloud_events::connected(&ctx(), 42);
    assert_eq!(req.ack_id, 42);
    assert_eq!(req.method, "POST");
    assert_eq!(req.url, "http://localhost/eventhandler/");
    let h = |n: &str| req.header(n).unwrap_or_else(|| panic!("missing {n}"));
    assert_eq!(h("ce-specversion"), "1.0");
    assert_eq!(h("ce-awpsversion"), "1.0");
    assert_eq!(h("ce-type"), "azure.webpubsub.sys.connected");
    assert_eq!(h("ce-source"), "/hubs/eio_hub/client/conn-abc123");
    assert_eq!(h("ce-id"), "evt-7");
    assert_eq!(h("ce-time"), "2024-01-01T00:00:00Z");
    assert_eq!(h("ce-userId"), "bob");
    assert_eq!(h("ce-connectionId"), "conn-abc123");
    assert_eq!(h("ce-hub"), "eio_hub");
    assert_eq!(h("ce-eventName"), "connected");
    assert_eq!(h("WebHook-Request-Origin"), "gateway.local");
    assert_eq!(h("Content-Type"), "application/json; charset=utf-8");
    // HMAC-SHA256(key, "conn-abc123") per key, computed independently with
    // `printf conn-abc123 | openssl dgst -sha256 -hmac primary`.
    let sig = h("ce-signature");
    let parts: Vec<&str> = sig.split(',').collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0], SIG_PRIMARY);
    assert_eq!(parts[1], SIG_SECONDARY);
    assert_eq!(req.content.as_deref(), Some(&b"{}"[..]));

    // No user: no ce-userId header. No keys: no ce-signature.
    let anon = cloud_events::connected(&EventContext::new("h", "c", "e"), 1);
    assert!(anon.header("ce-userId").is_none());
    assert!(anon.header("ce-signature").is_none());
}

const SIG_PRIMARY: &str = "sha256=096d1b0a1ca6573148e95265bb6337f225ba8fbb5dbba048e6fe41eecee467c6";
const SIG_SECONDARY: &str =
    "sha256=c14056f0879c8165a37fdb1d050e5213bd16254eb47c8a5b4c097a509dabcaa6";

#[test]
fn cloud_events_round_trip_through_the_tunnel() {
    let mut body = ConnectEventBody::default();
    body.claims.insert("userId".into(), vec!["0".into()]);
    body.query.insert("EIO".into(), vec!["4".into()]);
    body.query
        .insert("transport".into(), vec!["polling".into()]);
    body.headers
        .insert("Host".into(), vec!["localhost:8080".into()]);
    let connect = cloud_events::connect(&ctx(), &body, 1);
    let json: serde_json::Value =
        serde_json::from_slice(connect.content.as_deref().unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "claims": {"userId": ["0"]},
            "query": {"EIO": ["4"], "transport": ["polling"]},
            "headers": {"Host": ["localhost:8080"]},
            "subprotocols": [],
            "clientCertificates": []
        })
    );
    let cases = [
        (connect, EventKind::Connect(body)),
        (cloud_events::connected(&ctx(), 2), EventKind::Connected),
        (
            cloud_events::disconnected(&ctx(), "client \"closed\"", 3),
            EventKind::Disconnected {
                reason: "client \"closed\"".into(),
            },
        ),
        (
            cloud_events::user_message(&ctx(), "42[\"msg\",\"hi\"]\u{1e}bAQID", 4),
            EventKind::User {
                event_name: "message".into(),
                content_type: "text/plain".into(),
                data: Bytes::from_static(b"42[\"msg\",\"hi\"]\x1ebAQID"),
            },
        ),
    ];
    for (req, kind) in cases {
        let TunnelMessage::HttpRequest(back) =
            decode(&encode(&req.clone().into()).unwrap()).unwrap()
        else {
            panic!("not a request");
        };
        assert_eq!(back, req);
        let event = ReceivedEvent::from_request(&back).unwrap();
        assert_eq!(event.kind, kind);
        assert_eq!(event.hub, "eio_hub");
        assert_eq!(event.connection_id, "conn-abc123");
        assert_eq!(event.user_id.as_deref(), Some("bob"));
        assert_eq!(event.event_id, "evt-7");
    }
    let user = cloud_events::user_message(&ctx(), "3", 5);
    assert_eq!(user.header("ce-type"), Some("azure.webpubsub.user.message"));
    assert_eq!(user.header("ce-eventName"), Some("message"));
    assert_eq!(user.header("Content-Type"), Some("text/plain"));
}

#[test]
fn groups_bodies_from_the_captures() {
    for (json, groups, filter) in [
        (
            r#"{"groups":["0~Lw~aXJyOXhIMTVCNUk0STJjbEFBQUE"],"filter":"connectionId eq 'conn-abc123'"}"#,
            vec!["0~Lw~aXJyOXhIMTVCNUk0STJjbEFBQUE"],
            Some("connectionId eq 'conn-abc123'"),
        ),
        (
            r#"{"groups":["0~Lw~cm9vbTM"],"filter":"'0~Lw~cm9vbTE' in groups"}"#,
            vec!["0~Lw~cm9vbTM"],
            Some("'0~Lw~cm9vbTE' in groups"),
        ),
        (r#"{"groups":["g"]}"#, vec!["g"], None),
    ] {
        let body = GroupsBody::from_json(json.as_bytes()).unwrap();
        assert_eq!(body.groups, groups);
        assert_eq!(body.effective_filter(), filter);
    }
}

#[test]
fn messages_tolerate_order_unknown_keys_and_missing_optionals() {
    let cases: [(i64, &str, TunnelMessage); 6] = [
        (
            2,
            r#"{"Extra":[1],"StatusCode":200,"AckId":5,"TracingId":77}"#,
            TunnelMessage::HttpResponse(HttpResponse {
                tracing_id: Some(77),
                ..HttpResponse::new(5, 200)
            }),
        ),
        (
            1,
            r#"{"Url":"u","HttpMethod":"GET","AckId":2,"Headers":{"X":"single","Y":null,"Z":[1,"a"]},"TracingId":null,"LocalRouting":null}"#,
            TunnelMessage::HttpRequest(HttpRequest {
                headers: [
                    ("X".to_owned(), vec!["single".to_owned()]),
                    ("Y".to_owned(), vec![]),
                    ("Z".to_owned(), vec!["1".to_owned(), "a".to_owned()]),
                ]
                .into(),
                ..HttpRequest::new(2, "GET", "u")
            }),
        ),
        (
            6,
            r#"{"Endpoint":"ws://e","TargetId":"t","Message":"m"}"#,
            TunnelMessage::ConnectionReconnect {
                target_id: "t".into(),
                endpoint: "ws://e".into(),
                message: "m".into(),
            },
        ),
        (
            8,
            r#"{"TargetId":"t"}"#,
            TunnelMessage::ConnectionRebalance {
                target_id: "t".into(),
                endpoint: String::new(),
                message: String::new(),
            },
        ),
        (
            7,
            r#"{"Type":7}"#,
            TunnelMessage::ConnectionClose {
                message: String::new(),
            },
        ),
        (
            10,
            r#"{"ConnectionId":"c","UserId":"u","ReconnectionToken":"r"}"#,
            TunnelMessage::ConnectionConnected {
                connection_id: "c".into(),
                user_id: Some("u".into()),
                reconnection_token: Some("r".into()),
            },
        ),
    ];
    for (type_code, json, expected) in cases {
        let got = TunnelMessage::from_parts(type_code, json, None).unwrap();
        assert_eq!(got, expected, "{json}");
        assert_eq!(decode(&encode(&got).unwrap()).unwrap(), got);
    }
    // Unknown types keep their JSON verbatim and are dropped by the SDK.
    let unknown = TunnelMessage::from_parts(4, r#"{"Type":4, "x":1}"#, None).unwrap();
    assert_eq!(
        unknown,
        TunnelMessage::Unknown {
            type_code: 4,
            json: r#"{"Type":4, "x":1}"#.into()
        }
    );
    assert_eq!(decode(&encode(&unknown).unwrap()).unwrap(), unknown);
}

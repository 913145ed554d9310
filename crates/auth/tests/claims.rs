//! Claims conversion (protocol reference §8).

use portcullis_auth::Claims;
use serde_json::json;

fn convert(value: serde_json::Value) -> Claims {
    Claims::from_json(value.as_object().unwrap())
}

#[test]
fn passport_user_id_zero_becomes_string_zero() {
    let claims = convert(json!({"userId": 0, "iat": 1795544222, "exp": 1795544822,
        "aud": "http://localhost:18080/clients/socketio/hubs/eio_hub"}));
    assert_eq!(claims.get("userId"), ["0"]);
    assert_eq!(claims.get("iat"), ["1795544222"]);
    assert_eq!(
        claims.get("aud"),
        ["http://localhost:18080/clients/socketio/hubs/eio_hub"]
    );
    assert_eq!(claims.user_id(), None);
}

#[test]
fn strings_arrays_bools_objects_and_null() {
    let claims = convert(json!({
        "sub": "bob",
        "role": ["webpubsub.sendToGroup", "webpubsub.joinLeaveGroup"],
        "webpubsub.group": ["g1"],
        "flag": true,
        "off": false,
        "mixed": ["a", 1, true, null, {"k": "v"}, [1, 2]],
        "obj": {"a": 1, "b": [true]},
        "nothing": null,
        "empty": [],
    }));
    assert_eq!(claims.user_id(), Some("bob"));
    assert_eq!(
        claims.roles(),
        ["webpubsub.sendToGroup", "webpubsub.joinLeaveGroup"]
    );
    assert_eq!(claims.groups(), ["g1"]);
    assert_eq!(claims.get("flag"), ["true"]);
    assert_eq!(claims.get("off"), ["false"]);
    assert_eq!(
        claims.get("mixed"),
        ["a", "1", "true", r#"{"k":"v"}"#, "[1,2]"]
    );
    assert_eq!(claims.get("obj"), [r#"{"a":1,"b":[true]}"#]);
    assert!(claims.get("nothing").is_empty());
    assert!(
        claims.0.contains_key("nothing"),
        "null claims keep their name"
    );
    assert!(claims.get("empty").is_empty());
    assert!(!claims.is_empty());
}

#[test]
fn serializes_as_a_plain_map() {
    let claims = convert(json!({"userId": 0, "sub": "bob"}));
    let text = serde_json::to_string(&claims).unwrap();
    assert_eq!(text, r#"{"sub":["bob"],"userId":["0"]}"#);
    let back: Claims = serde_json::from_str(&text).unwrap();
    assert_eq!(back, claims);
}

#[test]
fn anonymous_claims_are_empty() {
    let claims = Claims::default();
    assert!(claims.is_empty());
    assert_eq!(serde_json::to_string(&claims).unwrap(), "{}");
}

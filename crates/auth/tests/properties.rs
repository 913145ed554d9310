//! Property tests: no panics on any input, and the mint/verify round trip.

use std::time::Duration;

use portcullis_auth::{
    AccessKeys, Claims, ClientTokenOptions, ClientTokenVerifier, ConnectionString, TokenError,
    VerifierConfig, mint_client_token,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

const KEY: &str = "property-key";

fn verifier() -> ClientTokenVerifier {
    ClientTokenVerifier::new(VerifierConfig::new(
        AccessKeys::new(vec![KEY.into()]).unwrap(),
    ))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".*", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Base64url-ish text with dots, so that some inputs get past the shape check.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,60}",
        "eyJ[A-Za-z0-9_-]{0,40}\\.eyJ[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,50}",
    ]
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

proptest! {
    #[test]
    fn claims_from_json_never_panics(map in prop::collection::btree_map(".*", json_value(), 0..12)) {
        let map: Map<String, Value> = map.into_iter().collect();
        let claims = Claims::from_json(&map);
        prop_assert_eq!(claims.0.len(), map.len());
        for (name, value) in &map {
            let values: &[String] = claims.get(name);
            match value {
                Value::Null => prop_assert!(values.is_empty()),
                Value::Array(items) => {
                    prop_assert_eq!(values.len(), items.iter().filter(|v| !v.is_null()).count());
                }
                Value::String(s) => prop_assert_eq!(values, std::slice::from_ref(s)),
                _ => prop_assert_eq!(values.len(), 1),
            }
        }
    }

    #[test]
    fn verify_never_panics(token in token_like(), hub in ".{0,20}") {
        let result = verifier().verify(&token, &hub);
        prop_assert!(result.is_err());
        if let Err(error) = result {
            let text = error.to_string();
            prop_assert!(text.starts_with("access token"));
            if token.len() > 20 {
                prop_assert!(!text.contains(&token));
            }
        }
    }

    #[test]
    fn verify_never_panics_on_signed_garbage(header in json_value(), payload in json_value()) {
        // Correctly signed tokens with arbitrary header and payload JSON reach every later check.
        let message = format!("{}.{}", base64url(header.to_string().as_bytes()), base64url(payload.to_string().as_bytes()));
        let key = jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes());
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
        let _ = verifier().verify(&format!("{message}.{signature}"), "chat");
    }

    #[test]
    fn connection_string_parsing_never_panics(input in ".*") {
        if let Ok(cs) = input.parse::<ConnectionString>() {
            prop_assert!(cs.endpoint.path().ends_with('/'));
            prop_assert!(!cs.access_key.is_empty());
        }
    }

    #[test]
    fn connection_string_round_trip(
        // No "--" in the label: "xn--…" would be an (invalid) punycode name.
        host in "[a-z][a-z0-9]{0,20}(-[a-z0-9]{1,5})?(\\.[a-z]{2,5})?",
        port in proptest::option::of(1u16..),
        path in "(/[a-z0-9]{1,8}){0,3}",
        key in "[A-Za-z0-9+/=_-]{1,60}",
        https in any::<bool>(),
    ) {
        let scheme = if https { "https" } else { "http" };
        let port = port.map(|p| format!(";Port={p}")).unwrap_or_default();
        let input = format!("Endpoint={scheme}://{host}{path}{port};AccessKey={key};Version=1.0;");
        let cs: ConnectionString = input.parse().unwrap();
        let again: ConnectionString = cs.to_string().parse().unwrap();
        prop_assert_eq!(again, cs);
    }

    #[test]
    fn mint_verify_round_trip(
        user_id in proptest::option::of(".*"),
        roles in prop::collection::vec(".*", 0..5),
        groups in prop::collection::vec(".*", 0..5),
        hub in "[A-Za-z0-9_]{1,20}",
        ttl in 1u64..1_000_000,
    ) {
        let options = ClientTokenOptions {
            user_id: user_id.clone(),
            roles: roles.clone(),
            groups: groups.clone(),
            ttl: Duration::from_secs(ttl),
            ..Default::default()
        };
        let audience = format!("http://localhost:8080/clients/socketio/hubs/{hub}");
        let token = mint_client_token(KEY, &audience, &options);
        let claims = verifier().verify(&token, &hub.to_uppercase()).unwrap();
        prop_assert_eq!(claims.roles(), roles.as_slice());
        prop_assert_eq!(claims.groups(), groups.as_slice());
        match user_id.as_deref() {
            Some(id) => prop_assert_eq!(claims.get("userId"), [id.to_owned()]),
            None => prop_assert!(claims.get("userId").is_empty()),
        }
        prop_assert_eq!(claims.user_id(), user_id.as_deref().filter(|u| !u.is_empty()));
        // And a different key never verifies it.
        let other = ClientTokenVerifier::new(VerifierConfig::new(AccessKeys::new(vec!["other".into()]).unwrap()));
        prop_assert_eq!(other.verify(&token, &hub), Err(TokenError::BadSignature));
    }
}

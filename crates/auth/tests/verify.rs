//! Client token verification: the round trip and every refusal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use portcullis_auth::{
    AccessKeys, ClientTokenOptions, ClientTokenVerifier, TokenError, VerifierConfig,
    mint_client_token, mint_client_token_at,
};
use serde_json::{Value, json};

const KEY: &str = "test-access-key";
const AUD: &str = "http://localhost:8080/clients/socketio/hubs/chat";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn verifier() -> ClientTokenVerifier {
    ClientTokenVerifier::new(VerifierConfig::new(
        AccessKeys::new(vec![KEY.into()]).unwrap(),
    ))
}

fn public_verifier(endpoint: &str) -> ClientTokenVerifier {
    let mut config = VerifierConfig::new(AccessKeys::new(vec![KEY.into()]).unwrap());
    config.public_endpoint = Some(url::Url::parse(endpoint).unwrap());
    ClientTokenVerifier::new(config)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with any header and payload text, HMAC-SHA256-signed with `key`.
fn hand_built(header: &str, payload: &str, key: &str) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(key.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

/// An HS256 token with the given claims.
fn signed(claims: Value) -> String {
    hand_built(r#"{"alg":"HS256","typ":"JWT"}"#, &claims.to_string(), KEY)
}

fn valid_claims() -> Value {
    json!({"exp": now() + 600, "aud": AUD, "sub": "bob"})
}

fn mint(options: &ClientTokenOptions) -> String {
    mint_client_token(KEY, AUD, options)
}

#[test]
fn mint_then_verify_round_trip() {
    let options = ClientTokenOptions {
        user_id: Some("bob".into()),
        roles: vec!["webpubsub.joinLeaveGroup".into()],
        groups: vec!["room1".into(), "room2".into()],
        ttl: Duration::from_secs(300),
        ..Default::default()
    };
    let claims = verifier().verify(&mint(&options), "chat").unwrap();
    assert_eq!(claims.user_id(), Some("bob"));
    assert_eq!(claims.get("userId"), ["bob"]);
    assert_eq!(claims.roles(), ["webpubsub.joinLeaveGroup"]);
    assert_eq!(claims.groups(), ["room1", "room2"]);
    assert_eq!(claims.get("aud"), [AUD]);
    let iat: u64 = claims.get("iat")[0].parse().unwrap();
    let exp: u64 = claims.get("exp")[0].parse().unwrap();
    assert_eq!(exp - iat, 300);
}

#[test]
fn passport_style_numeric_user_id() {
    let token = signed(json!({"userId": 0, "exp": now() + 600, "aud": AUD}));
    let claims = verifier().verify(&token, "chat").unwrap();
    assert_eq!(claims.get("userId"), ["0"]);
    assert_eq!(claims.user_id(), None);
}

#[test]
fn missing() {
    assert_eq!(verifier().verify("", "chat"), Err(TokenError::Missing));
}

#[test]
fn expired_and_leeway() {
    let options = ClientTokenOptions::default();
    let old = mint_client_token_at(KEY, AUD, &options, now() - 7200);
    assert_eq!(verifier().verify(&old, "chat"), Err(TokenError::Expired));
    let just_expired = signed(json!({"exp": now() - 10, "aud": AUD}));
    assert!(
        verifier().verify(&just_expired, "chat").is_ok(),
        "within the 30 s leeway"
    );
    let mut config = VerifierConfig::new(AccessKeys::new(vec![KEY.into()]).unwrap());
    config.leeway_secs = 0;
    let strict = ClientTokenVerifier::new(config);
    assert_eq!(
        strict.verify(&just_expired, "chat"),
        Err(TokenError::Expired)
    );
}

#[test]
fn missing_expiry() {
    let token = signed(json!({"aud": AUD}));
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::MissingExpiry)
    );
    let token = signed(json!({"aud": AUD, "exp": null}));
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::MissingExpiry)
    );
    for exp in [json!("tomorrow"), json!(-5), json!(1e300)] {
        let token = signed(json!({"aud": AUD, "exp": exp}));
        assert_eq!(
            verifier().verify(&token, "chat"),
            Err(TokenError::Malformed(
                "the exp claim is not a non-negative number of seconds"
            )),
            "{exp}"
        );
    }
    for (name, value) in [
        ("exp", json!([1])),
        ("nbf", json!({"a": 1})),
        ("aud", json!([1, [2]])),
    ] {
        let mut claims = json!({"aud": AUD, "exp": now() + 600});
        claims[name] = value;
        assert!(
            matches!(
                verifier().verify(&signed(claims.clone()), "chat"),
                Err(TokenError::Malformed(_))
            ),
            "{claims}"
        );
    }
}

#[test]
fn future_nbf() {
    let token = signed(json!({"exp": now() + 7200, "nbf": now() + 3600, "aud": AUD}));
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::NotYetValid)
    );
    let token = signed(json!({"exp": now() + 7200, "nbf": now() + 10, "aud": AUD}));
    assert!(
        verifier().verify(&token, "chat").is_ok(),
        "within the leeway"
    );
    let mut options = ClientTokenOptions::default();
    options
        .custom_claims
        .insert("nbf".into(), json!(now() + 3600));
    assert_eq!(
        verifier().verify(&mint(&options), "chat"),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn bad_signature() {
    let token = mint_client_token("another-key", AUD, &ClientTokenOptions::default());
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::BadSignature)
    );
    // Same header and payload, last signature character changed.
    let good = mint(&ClientTokenOptions::default());
    let (message, signature) = good.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{message}.{flipped}{}", &signature[1..]);
    assert_eq!(
        verifier().verify(&tampered, "chat"),
        Err(TokenError::BadSignature)
    );
    // Payload changed, signature kept.
    let forged_payload = b64(json!({"exp": now() + 600, "aud": AUD, "sub": "admin"}).to_string());
    let header = good.split('.').next().unwrap();
    let forged = format!("{header}.{forged_payload}.{signature}");
    assert_eq!(
        verifier().verify(&forged, "chat"),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn signature_is_checked_before_claims() {
    let token = hand_built(r#"{"alg":"HS256"}"#, "[1,2,3]", "wrong-key");
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn key_rotation() {
    let keys = AccessKeys::new(vec!["new-key".into(), "old-key".into()]).unwrap();
    let verifier = ClientTokenVerifier::new(VerifierConfig::new(keys));
    for key in ["new-key", "old-key"] {
        let token = mint_client_token(key, AUD, &ClientTokenOptions::default());
        assert!(verifier.verify(&token, "chat").is_ok(), "signed with {key}");
    }
    let token = mint_client_token("retired-key", AUD, &ClientTokenOptions::default());
    assert_eq!(
        verifier.verify(&token, "chat"),
        Err(TokenError::BadSignature)
    );
    // An expired token signed with the second key is reported as expired, not as a bad signature.
    let old = mint_client_token_at("old-key", AUD, &ClientTokenOptions::default(), now() - 7200);
    assert_eq!(verifier.verify(&old, "chat"), Err(TokenError::Expired));
}

#[test]
fn wrong_audience() {
    let token = mint(&ClientTokenOptions::default());
    let expected = TokenError::WrongAudience {
        expected: "/clients/socketio/hubs/other".into(),
    };
    assert_eq!(verifier().verify(&token, "other"), Err(expected));
    for aud in [
        "http://localhost:8080/clients/socketio/hubs/chat/extra",
        "http://localhost:8080/clients/socketio/hubs/chatroom",
        "http://localhost:8080/api/hubs/chat",
        "http://localhost:8080/prefix/clients/socketio/hubs/chat",
        "http://localhost:8080/server/tunnel?hub=chat",
        "/clients/socketio/hubs/chat",
        "chat",
    ] {
        let token = mint_client_token(KEY, aud, &ClientTokenOptions::default());
        assert!(
            matches!(
                verifier().verify(&token, "chat"),
                Err(TokenError::WrongAudience { .. })
            ),
            "{aud} was accepted"
        );
    }
}

#[test]
fn audience_is_case_insensitive_with_optional_trailing_slash() {
    for aud in [
        "http://localhost:8080/clients/socketio/hubs/CHAT",
        "http://localhost:8080/clients/socketio/hubs/chat/",
        "https://elsewhere.example/Clients/SocketIO/Hubs/Chat/",
        "ws://localhost:8080/clients/socketio/hubs/chat",
    ] {
        let token = mint_client_token(KEY, aud, &ClientTokenOptions::default());
        assert!(
            verifier().verify(&token, "chat").is_ok(),
            "{aud} was refused"
        );
    }
    let token = mint(&ClientTokenOptions::default());
    assert!(verifier().verify(&token, "Chat").is_ok());
}

#[test]
fn audience_arrays_missing_and_malformed() {
    let token = signed(json!({"exp": now() + 600, "aud": ["http://x/other", AUD]}));
    assert!(verifier().verify(&token, "chat").is_ok());
    let token = signed(json!({"exp": now() + 600, "aud": ["http://x/other"]}));
    assert!(matches!(
        verifier().verify(&token, "chat"),
        Err(TokenError::WrongAudience { .. })
    ));
    let token = signed(json!({"exp": now() + 600}));
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::MissingAudience)
    );
    let token = signed(json!({"exp": now() + 600, "aud": []}));
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::MissingAudience)
    );
    let token = signed(json!({"exp": now() + 600, "aud": 42}));
    assert!(matches!(
        verifier().verify(&token, "chat"),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn public_endpoint_pins_scheme_host_and_port() {
    let verifier = public_verifier("http://localhost:8080/");
    let ok = |aud: &str| {
        let token = mint_client_token(KEY, aud, &ClientTokenOptions::default());
        verifier.verify(&token, "chat")
    };
    assert!(ok(AUD).is_ok());
    assert!(ok("ws://localhost:8080/clients/socketio/hubs/chat").is_ok());
    assert!(ok("http://LOCALHOST:8080/clients/socketio/hubs/chat/").is_ok());
    let refused = TokenError::WrongAudience {
        expected: "http://localhost:8080/clients/socketio/hubs/chat".into(),
    };
    assert_eq!(
        ok("http://evil.example:8080/clients/socketio/hubs/chat"),
        Err(refused.clone())
    );
    assert_eq!(
        ok("http://localhost:9090/clients/socketio/hubs/chat"),
        Err(refused.clone())
    );
    assert_eq!(
        ok("https://localhost:8080/clients/socketio/hubs/chat"),
        Err(refused.clone())
    );
    assert_eq!(
        ok("wss://localhost:8080/clients/socketio/hubs/chat"),
        Err(refused)
    );
}

#[test]
fn public_endpoint_default_ports_and_path_prefix() {
    let verifier = public_verifier("https://gw.example.com/portcullis");
    let check = |aud: &str| {
        let token = mint_client_token(KEY, aud, &ClientTokenOptions::default());
        verifier.verify(&token, "chat")
    };
    assert!(check("wss://gw.example.com/portcullis/clients/socketio/hubs/chat").is_ok());
    assert!(check("https://gw.example.com:443/portcullis/clients/socketio/hubs/chat").is_ok());
    assert!(check("https://gw.example.com/clients/socketio/hubs/chat").is_err());
}

#[test]
fn alg_none_is_refused_by_name() {
    let payload = valid_claims().to_string();
    let token = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&payload)
    );
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::UnsupportedAlgorithm("none".into()))
    );
    let token = hand_built(r#"{"alg":"none"}"#, &payload, KEY);
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::UnsupportedAlgorithm("none".into()))
    );
    let token = hand_built(r#"{"alg":"NONE"}"#, &payload, KEY);
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::UnsupportedAlgorithm("NONE".into()))
    );
}

#[test]
fn hs512_is_refused() {
    let header = jsonwebtoken::Header::new(Algorithm::HS512);
    let token = jsonwebtoken::encode(
        &header,
        &valid_claims(),
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::UnsupportedAlgorithm("HS512".into()))
    );
}

#[test]
fn rs256_hs256_confusion_is_refused() {
    // The classic attack: claim RS256 but sign with HMAC using the (public) key material.
    let token = hand_built(
        r#"{"alg":"RS256","typ":"JWT"}"#,
        &valid_claims().to_string(),
        KEY,
    );
    assert_eq!(
        verifier().verify(&token, "chat"),
        Err(TokenError::UnsupportedAlgorithm("RS256".into()))
    );
}

#[test]
fn other_header_problems() {
    let payload = valid_claims().to_string();
    let no_alg = hand_built(r#"{"typ":"JWT"}"#, &payload, KEY);
    assert!(matches!(
        verifier().verify(&no_alg, "chat"),
        Err(TokenError::Malformed(_))
    ));
    let numeric_alg = hand_built(r#"{"alg":256}"#, &payload, KEY);
    assert!(matches!(
        verifier().verify(&numeric_alg, "chat"),
        Err(TokenError::Malformed(_))
    ));
    let not_json = hand_built("not json", &payload, KEY);
    assert!(matches!(
        verifier().verify(&not_json, "chat"),
        Err(TokenError::Malformed(_))
    ));
    let array = hand_built("[]", &payload, KEY);
    assert!(matches!(
        verifier().verify(&array, "chat"),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn malformed_tokens() {
    let good = mint(&ClientTokenOptions::default());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        "abc".to_owned(),
        "a.b".to_owned(),
        format!("{good}.extra"),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}!.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}=.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}%", parts[0], parts[1], parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        "...".to_owned(),
        " ".to_owned(),
    ];
    for token in &cases {
        assert!(
            matches!(
                verifier().verify(token, "chat"),
                Err(TokenError::Malformed(_))
            ),
            "{token:?}: {:?}",
            verifier().verify(token, "chat")
        );
    }
}

#[test]
fn claims_that_are_not_an_object() {
    for payload in ["[1,2]", "\"text\"", "42", "null", "{not json"] {
        let token = hand_built(r#"{"alg":"HS256","typ":"JWT"}"#, payload, KEY);
        assert_eq!(
            verifier().verify(&token, "chat"),
            Err(TokenError::Malformed(
                "the claims (payload) are not a JSON object"
            )),
            "{payload}"
        );
    }
}

#[test]
fn oversized_before_decoding() {
    let token = "x".repeat(9000);
    let err = verifier().verify(&token, "chat").unwrap_err();
    assert_eq!(
        err,
        TokenError::TooLarge {
            len: 9000,
            limit: 8192
        }
    );
    assert_eq!(
        err.to_string(),
        "access token is too large (9000 bytes; the limit is 8192)"
    );
    // A genuine token is refused too when the limit is below its size.
    let mut config = VerifierConfig::new(AccessKeys::new(vec![KEY.into()]).unwrap());
    config.max_token_bytes = 50;
    let small = ClientTokenVerifier::new(config);
    let token = mint(&ClientTokenOptions::default());
    assert!(matches!(
        small.verify(&token, "chat"),
        Err(TokenError::TooLarge { .. })
    ));
    // Exactly at the limit is fine.
    let mut config = VerifierConfig::new(AccessKeys::new(vec![KEY.into()]).unwrap());
    config.max_token_bytes = token.len();
    assert!(
        ClientTokenVerifier::new(config)
            .verify(&token, "chat")
            .is_ok()
    );
}

#[test]
fn messages() {
    let cases = [
        (
            TokenError::Missing,
            "access token is missing: pass it as ?access_token=<jwt> or an Authorization: Bearer header",
        ),
        (
            TokenError::Expired,
            "access token has expired: ask the application's /negotiate for a new one",
        ),
        (
            TokenError::BadSignature,
            "access token signature does not match any access key of this gateway",
        ),
        (
            TokenError::WrongAudience {
                expected: "/clients/socketio/hubs/chat".into(),
            },
            "access token audience does not match this hub: expected a URL ending in /clients/socketio/hubs/chat",
        ),
        (
            TokenError::UnsupportedAlgorithm("none".into()),
            "access token algorithm 'none' is not accepted: tokens must be signed with HS256",
        ),
        (
            TokenError::NotYetValid,
            "access token is not valid yet (nbf is in the future)",
        ),
        (
            TokenError::Malformed("what"),
            "access token is malformed: what",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
}

#[test]
fn errors_never_echo_the_token_or_its_claims() {
    const MARKER: &str = "SECRETMARKER";
    let claims = json!({"exp": now() + 600, "aud": format!("http://h/{MARKER}"), "sub": MARKER});
    let expired = json!({"exp": 1, "aud": AUD, "userId": MARKER});
    let tokens = [
        signed(claims.clone()),
        signed(expired),
        hand_built(r#"{"alg":"HS256"}"#, &claims.to_string(), "wrong-key"),
        hand_built(
            &json!({"alg": "none", "kid": MARKER}).to_string(),
            &claims.to_string(),
            KEY,
        ),
        hand_built(r#"{"alg":"HS256"}"#, &json!([MARKER]).to_string(), KEY),
        hand_built(
            r#"{"alg":"HS256"}"#,
            &json!({"aud": AUD, "exp": MARKER}).to_string(),
            KEY,
        ),
        format!("{MARKER}.{MARKER}"),
        format!("{MARKER}.{MARKER}.{MARKER}"),
        format!("{MARKER}!.{MARKER}.{MARKER}"),
        format!("{MARKER}{}", "A".repeat(9000)),
    ];
    for token in &tokens {
        let error = verifier()
            .verify(token, "chat")
            .expect_err("must be refused");
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains(MARKER), "{text}");
            assert!(!text.contains(token.as_str()), "{text}");
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(!text.contains(part), "{text}");
            }
        }
    }
}

#[test]
fn long_algorithm_names_are_cut() {
    let long_alg = "X".repeat(200);
    let token = hand_built(
        &json!({"alg": long_alg}).to_string(),
        &valid_claims().to_string(),
        KEY,
    );
    let error = verifier().verify(&token, "chat").unwrap_err();
    assert_eq!(
        error,
        TokenError::UnsupportedAlgorithm(format!("{}...", "X".repeat(16)))
    );
    let token = hand_built(r#"{"alg":"a'b\n"}"#, &valid_claims().to_string(), KEY);
    let error = verifier().verify(&token, "chat").unwrap_err();
    assert_eq!(error, TokenError::UnsupportedAlgorithm("a?b?".into()));
}

#[test]
fn verify_with_for_other_audiences() {
    let aud = "ws://localhost:8080/server/tunnel?hub=chat";
    let options = ClientTokenOptions {
        user_id: Some("79e0cb2c".into()),
        ..Default::default()
    };
    let token = mint_client_token(KEY, aud, &options);
    let claims = verifier().verify_with(&token, &|a| a == aud).unwrap();
    assert_eq!(claims.user_id(), Some("79e0cb2c"));
    let refused = verifier().verify_with(&token, &|_| false).unwrap_err();
    assert!(matches!(refused, TokenError::WrongAudience { .. }));
    assert!(!refused.to_string().contains("tunnel"), "{refused}");
    let refused = verifier()
        .verify_with_expected(&token, "ws://gw/server/tunnel?hub=other", &|_| false)
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "access token audience does not match: expected ws://gw/server/tunnel?hub=other"
    );
    // The client check is not bypassed: a tunnel token is not a client token.
    assert!(matches!(
        verifier().verify(&token, "chat"),
        Err(TokenError::WrongAudience { .. })
    ));
}

#[test]
fn clones_share_keys_and_debug_hides_them() {
    let v = verifier();
    let clone = v.clone();
    let token = mint(&ClientTokenOptions::default());
    assert!(clone.verify(&token, "chat").is_ok());
    assert!(!format!("{v:?}").contains(KEY));
}

/// The rules for correctly signed tokens with odd registered claims, as they
/// were when jsonwebtoken decided them (the crate's own JWT code keeps them).
#[test]
fn registered_claim_edge_cases() {
    const TYPES: &str = "a registered claim (exp, nbf, sub, iss or aud) has the wrong type";
    const EXP: &str = "the exp claim is not a non-negative number of seconds";
    const NBF: &str = "the nbf claim is not a non-negative number of seconds";
    let exp = now() + 600;
    let cases = [
        // A registered claim given twice, even with the same value.
        (
            format!(r#"{{"aud":"{AUD}","exp":{exp},"exp":{exp}}}"#),
            Err(TYPES),
        ),
        (
            format!(r#"{{"aud":"{AUD}","exp":{exp},"sub":"a","sub":"a"}}"#),
            Err(TYPES),
        ),
        // Any other claim given twice: the last value counts.
        (
            format!(r#"{{"aud":"{AUD}","exp":{exp},"userId":"a","userId":"b"}}"#),
            Ok(()),
        ),
        // exp and nbf: an empty array or object is "not a number", a full one the wrong type.
        (format!(r#"{{"aud":"{AUD}","exp":[]}}"#), Err(EXP)),
        (format!(r#"{{"aud":"{AUD}","exp":{{}}}}"#), Err(EXP)),
        (
            format!(r#"{{"aud":"{AUD}","exp":{exp},"nbf":[1]}}"#),
            Err(TYPES),
        ),
        (
            format!(r#"{{"aud":"{AUD}","exp":{exp},"nbf":null}}"#),
            Err(NBF),
        ),
        (
            format!(r#"{{"aud":"{AUD}","exp":{exp},"nbf":-1}}"#),
            Err(NBF),
        ),
        // Whole seconds: a fraction is rounded, 2^64 is too large.
        (format!(r#"{{"aud":"{AUD}","exp":{exp}.4}}"#), Ok(())),
        (
            format!(r#"{{"aud":"{AUD}","exp":18446744073709551616}}"#),
            Err(EXP),
        ),
        // sub: a scalar of another type is ignored, an array or object is the wrong type.
        (format!(r#"{{"aud":"{AUD}","exp":{exp},"sub":5}}"#), Ok(())),
        (
            format!(r#"{{"aud":"{AUD}","exp":{exp},"sub":[]}}"#),
            Err(TYPES),
        ),
        // iss is never checked.
        (
            format!(r#"{{"aud":"{AUD}","exp":{exp},"iss":{{"a":[1]}}}}"#),
            Ok(()),
        ),
    ];
    for (payload, expected) in cases {
        let token = hand_built(r#"{"alg":"HS256"}"#, &payload, KEY);
        let result = verifier().verify(&token, "chat").map(|_| ());
        assert_eq!(result, expected.map_err(TokenError::Malformed), "{payload}");
    }
}

/// Registered header parameters of a correctly signed token must have their
/// JOSE types; other parameters may be anything.
#[test]
fn registered_header_parameter_types() {
    const INVALID: &str = "the header is not a valid JWT header";
    let cases = [
        (
            r#"{"alg":"HS256","typ":"JWT","kid":"k1","crit":["b64"]}"#,
            Ok(()),
        ),
        (r#"{"alg":"HS256","typ":null,"custom":{"any":[1]}}"#, Ok(())),
        (r#"{"alg":"HS256","typ":5}"#, Err(INVALID)),
        (r#"{"alg":"HS256","x5c":["a",1]}"#, Err(INVALID)),
        (r#"{"alg":"HS256","kid":"a","kid":"a"}"#, Err(INVALID)),
        (
            r#"{"alg":"HS256","jwk":{"kty":"oct","k":"AA","kid":"x"}}"#,
            Ok(()),
        ),
        (r#"{"alg":"HS256","jwk":{"alg":{"HS256":null}}}"#, Ok(())),
        (r#"{"alg":"HS256","jwk":[]}"#, Err(INVALID)),
        (r#"{"alg":"HS256","jwk":{"kid":1}}"#, Err(INVALID)),
        (
            r#"{"alg":"HS256","jwk":{"kid":"x","kid":"x"}}"#,
            Err(INVALID),
        ),
        (
            r#"{"alg":"HS256","jwk":{"key_ops":["sign",null]}}"#,
            Err(INVALID),
        ),
    ];
    for (header, expected) in cases {
        let token = hand_built(header, &valid_claims().to_string(), KEY);
        let result = verifier().verify(&token, "chat").map(|_| ());
        assert_eq!(result, expected.map_err(TokenError::Malformed), "{header}");
    }
}

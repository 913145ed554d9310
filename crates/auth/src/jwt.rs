//! The one HS256 JWT implementation of the crate: it signs the tokens that
//! [`mint`](crate::mint) writes and decides, for [`verify`](crate::verify),
//! whether a token's form, signature and time claims are valid.
//!
//! HS256 is the only algorithm Web PubSub tokens use, so the crate owns it on
//! `hmac`, `sha2`, `base64` and `serde_json` instead of pulling a JWT library
//! with RSA and elliptic-curve backends it never calls. Checks run cheapest
//! first, and a forged token is refused by its signature before anything of
//! it is decoded but the header's `alg`.
//!
//! The refusals of a correctly signed token keep the rules the crate had with
//! jsonwebtoken: the registered header parameters must have their JOSE types;
//! a registered claim (`exp`, `nbf`, `sub`, `iss`, `aud`) must not be given
//! twice; `exp` and `nbf` are whole seconds (a non-negative integer, or a
//! finite non-negative number below 2^64, rounded); `exp` or `nbf` given as a
//! non-empty array or object, or `sub` as an array or object, is the wrong
//! type.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::TokenError;
use crate::verify::MAX_LEEWAY_SECS;

/// Length of an HS256 signature.
const SIGNATURE_LEN: usize = 32;

const SHAPE: &str = "expected three dot-separated base64url parts (header.payload.signature)";
const EMPTY_PART: &str = "the header or the payload part is empty";
const NOT_BASE64URL: &str = "a part is not valid unpadded base64url";
const BAD_HEADER: &str = "the header is not a base64url-encoded JSON object";
const NO_ALG: &str = "the header has no \"alg\" string";
const INVALID_HEADER: &str = "the header is not a valid JWT header";
const CLAIMS_NOT_OBJECT: &str = "the claims (payload) are not a JSON object";
const CLAIM_TYPES: &str = "a registered claim (exp, nbf, sub, iss or aud) has the wrong type";
const EXP_NOT_NUMBER: &str = "the exp claim is not a non-negative number of seconds";
const NBF_NOT_NUMBER: &str = "the nbf claim is not a non-negative number of seconds";

/// The HMAC-SHA256 state of one key, keyed once.
#[derive(Clone)]
pub(crate) struct Hs256Key(Hmac<Sha256>);

impl Hs256Key {
    /// Keys HMAC-SHA256 with the UTF-8 bytes of `key` (not base64-decoded:
    /// this is what the SDK does).
    pub fn new(key: &str) -> Self {
        // HMAC takes keys of any length: longer ones are hashed, shorter ones padded.
        let mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        Hs256Key(mac)
    }

    /// The base64url signature of `signing_input` (`header.payload`).
    pub fn sign(&self, signing_input: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(signing_input.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `signature` (decoded) signs `signing_input`, compared in constant time.
    fn signed(&self, signing_input: &str, signature: &[u8]) -> bool {
        let mut mac = self.0.clone();
        mac.update(signing_input.as_bytes());
        mac.verify_slice(signature).is_ok()
    }
}

/// A signed token: `base64url(header).base64url(payload).signature`, with
/// the header and payload JSON given as text, so that the SDK's exact header
/// bytes can be written.
pub(crate) fn encode(key: &str, header_json: &str, payload_json: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(payload_json)
    );
    let signature = Hs256Key::new(key).sign(&signing_input);
    format!("{signing_input}.{signature}")
}

/// What [`Validator::validate`] checks a token against.
pub(crate) struct Validator {
    /// The access keys, primary first; any of them may have signed a token.
    keys: Vec<Hs256Key>,
    /// Clock-skew allowance for `exp` and `nbf`, in seconds.
    leeway_secs: u64,
    /// Tokens longer than this are refused before any decoding.
    max_token_bytes: usize,
}

impl Validator {
    /// A validator for tokens signed with any of `keys`; `leeway_secs` is
    /// clamped to [`MAX_LEEWAY_SECS`].
    pub fn new<'a>(
        keys: impl IntoIterator<Item = &'a str>,
        leeway_secs: u64,
        max_token_bytes: usize,
    ) -> Self {
        Validator {
            keys: keys.into_iter().map(Hs256Key::new).collect(),
            leeway_secs: leeway_secs.min(MAX_LEEWAY_SECS),
            max_token_bytes,
        }
    }

    /// The leeway in use, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway_secs
    }

    /// The token length limit, in bytes.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// The number of keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Every check but the audience, cheapest first: length (before any
    /// decoding); shape; `alg` is `HS256`; signature against every key;
    /// header parameters; claims JSON; `exp` required and not past; `nbf` not
    /// in the future, at the time `now` (unix seconds) returns. The claims of
    /// a token that passes.
    ///
    /// `now` is only asked for tokens that get as far as their time claims:
    /// reading the clock would be a noticeable part of refusing a forgery.
    pub fn validate(
        &self,
        token: &str,
        now: impl FnOnce() -> u64,
    ) -> Result<Map<String, Value>, TokenError> {
        check_length(token, self.max_token_bytes)?;
        let parts = TokenParts::split(token)?;
        check_algorithm(parts.header)?;
        if !self.signed_by_a_key(parts.signing_input, parts.signature) {
            return Err(TokenError::BadSignature);
        }
        check_header(parts.header)?;
        let claims = decode_claims(parts.payload)?;
        self.check_times(&claims, now)?;
        Ok(claims.map)
    }

    /// Whether one of the keys signed `signing_input` with `signature` (base64url).
    fn signed_by_a_key(&self, signing_input: &str, signature: &str) -> bool {
        let mut decoded = [0u8; SIGNATURE_LEN + 3];
        let Ok(SIGNATURE_LEN) = URL_SAFE_NO_PAD.decode_slice(signature, &mut decoded) else {
            return false;
        };
        let signature = &decoded[..SIGNATURE_LEN];
        self.keys
            .iter()
            .any(|key| key.signed(signing_input, signature))
    }

    /// `exp` is required and not past, `nbf` (if given) not in the future,
    /// both with the leeway.
    fn check_times(
        &self,
        claims: &JsonObject,
        now: impl FnOnce() -> u64,
    ) -> Result<(), TokenError> {
        let exp_claim = claims.map.get("exp");
        let exp = match numeric_date(exp_claim) {
            NumericDate::Seconds(exp) => exp,
            _ if exp_claim.is_none_or(Value::is_null) => return Err(TokenError::MissingExpiry),
            _ => return Err(TokenError::Malformed(EXP_NOT_NUMBER)),
        };
        let nbf = match numeric_date(claims.map.get("nbf")) {
            NumericDate::Seconds(nbf) => Some(nbf),
            NumericDate::Absent => None,
            NumericDate::Invalid => return Err(TokenError::Malformed(NBF_NOT_NUMBER)),
        };
        let now = now();
        if exp < now.saturating_sub(self.leeway_secs) {
            return Err(TokenError::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway_secs)) {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }
}

fn check_length(token: &str, limit: usize) -> Result<(), TokenError> {
    match token.len() {
        0 => Err(TokenError::Missing),
        len if len > limit => Err(TokenError::TooLarge { len, limit }),
        _ => Ok(()),
    }
}

/// A token's three parts, borrowed.
struct TokenParts<'a> {
    header: &'a str,
    payload: &'a str,
    /// `header.payload`, what the signature signs.
    signing_input: &'a str,
    signature: &'a str,
}

impl<'a> TokenParts<'a> {
    /// Three dot-separated parts, each valid unpadded base64url; header and
    /// payload non-empty. (The signature may be empty so that an `alg: none`
    /// token is refused by its algorithm.) Nothing is decoded here.
    fn split(token: &'a str) -> Result<Self, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(SHAPE));
        };
        if header.is_empty() || payload.is_empty() {
            return Err(TokenError::Malformed(EMPTY_PART));
        }
        if ![header, payload, signature].into_iter().all(is_base64url) {
            return Err(TokenError::Malformed(NOT_BASE64URL));
        }
        Ok(TokenParts {
            header,
            payload,
            signing_input: &token[..header.len() + 1 + payload.len()],
            signature,
        })
    }
}

/// Whether `part` decodes as unpadded base64url, checked without decoding it
/// all: every byte in the alphabet, and a last quantum that decodes (which
/// rules out impossible lengths and stray trailing bits).
fn is_base64url(part: &str) -> bool {
    let alphabet_ok = part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !alphabet_ok {
        return false;
    }
    if part.is_empty() {
        return true;
    }
    let last_quantum = &part[(part.len() - 1) / 4 * 4..];
    URL_SAFE_NO_PAD
        .decode_slice(last_quantum, &mut [0u8; 3])
        .is_ok()
}

/// The header must name `HS256`; anything else is refused by name before the
/// signature is looked at. Only `alg` is read here.
fn check_algorithm(header: &str) -> Result<(), TokenError> {
    /// Other members are skipped unparsed.
    #[derive(Deserialize)]
    struct AlgOnly {
        alg: Option<Value>,
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed(BAD_HEADER))?;
    // serde would also read a struct from a JSON array: require an object.
    let is_object = bytes.trim_ascii_start().starts_with(b"{");
    let header: AlgOnly = serde_json::from_slice(&bytes)
        .ok()
        .filter(|_| is_object)
        .ok_or(TokenError::Malformed(BAD_HEADER))?;
    match header.alg {
        Some(Value::String(alg)) if alg == "HS256" => Ok(()),
        Some(Value::String(alg)) => Err(TokenError::UnsupportedAlgorithm(sanitize_algorithm(&alg))),
        _ => Err(TokenError::Malformed(NO_ALG)),
    }
}

/// The algorithm name as shown in messages: at most 16 characters of `[A-Za-z0-9._+-]`,
/// anything else replaced by `?`, so that no token text can be smuggled through it.
fn sanitize_algorithm(alg: &str) -> String {
    const MAX_CHARS: usize = 16;
    let mut shown: String = alg
        .chars()
        .take(MAX_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if alg.chars().count() > MAX_CHARS {
        shown.push_str("...");
    }
    shown
}

/// The registered header parameters (RFC 7515 §4.1, RFC 7516 §4.1, RFC 8555
/// §6.4), each optional, with its JOSE type. A registered parameter given
/// twice is refused (serde's duplicate-field check).
#[derive(Deserialize)]
#[allow(dead_code)] // Read only to check the types.
struct RegisteredHeader {
    typ: Option<String>,
    cty: Option<String>,
    jku: Option<String>,
    jwk: Option<JsonObject>,
    kid: Option<String>,
    x5u: Option<String>,
    x5c: Option<Vec<String>>,
    x5t: Option<String>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
    crit: Option<Vec<String>>,
    enc: Option<String>,
    zip: Option<String>,
    url: Option<String>,
    nonce: Option<String>,
    /// Other parameters: any JSON value (read in full, so it must be valid JSON text).
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// The whole header of a correctly signed token: its registered parameters,
/// and the common parameters of an embedded `jwk` (RFC 7517 §4), must have
/// their types.
fn check_header(header: &str) -> Result<(), TokenError> {
    let invalid = TokenError::Malformed(INVALID_HEADER);
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| invalid.clone())?;
    let header: RegisteredHeader = serde_json::from_slice(&bytes).map_err(|_| invalid.clone())?;
    match header.jwk {
        Some(jwk) if !jwk_common_parameters_typed(&jwk) => Err(invalid),
        _ => Ok(()),
    }
}

/// The common parameters of a JWK (RFC 7517 §4).
const JWK_COMMON_PARAMETERS: [&str; 8] = [
    "use", "key_ops", "alg", "kid", "x5u", "x5c", "x5t", "x5t#S256",
];

/// Whether a JWK's common parameters are each given once and have their
/// types: strings, or arrays of strings for `key_ops` and `x5c`, `null`
/// meaning absent; `alg` a name, or an object of one name with a `null` value
/// (serde's externally tagged form of a name).
fn jwk_common_parameters_typed(jwk: &JsonObject) -> bool {
    if jwk.repeats_one_of(&JWK_COMMON_PARAMETERS) {
        return false;
    }
    let string = |v: &Value| matches!(v, Value::Null | Value::String(_));
    let strings = |v: &Value| match v {
        Value::Null => true,
        Value::Array(items) => items.iter().all(Value::is_string),
        _ => false,
    };
    let algorithm = |v: &Value| match v {
        Value::Object(tagged) => tagged.len() == 1 && tagged.values().all(Value::is_null),
        other => string(other),
    };
    jwk.map.iter().all(|(name, value)| match name.as_str() {
        "use" | "kid" | "x5u" | "x5t" | "x5t#S256" => string(value),
        "key_ops" | "x5c" => strings(value),
        "alg" => algorithm(value),
        _ => true,
    })
}

/// The claims names that must not be given twice.
const REGISTERED_CLAIMS: [&str; 5] = ["exp", "nbf", "sub", "iss", "aud"];

/// A JSON object, read in one pass that also notes the names given more than
/// once (the last value is kept, as `serde_json::Map` does).
struct JsonObject {
    map: Map<String, Value>,
    repeated: Vec<String>,
}

impl JsonObject {
    fn repeats_one_of(&self, names: &[&str]) -> bool {
        self.repeated
            .iter()
            .any(|name| names.contains(&name.as_str()))
    }
}

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = JsonObject;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<JsonObject, A::Error> {
                let mut map = Map::new();
                let mut repeated = Vec::new();
                while let Some(name) = access.next_key::<String>()? {
                    let value = access.next_value::<Value>()?;
                    if map.contains_key(&name) {
                        repeated.push(name.clone());
                    }
                    map.insert(name, value);
                }
                Ok(JsonObject { map, repeated })
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The claims of a correctly signed token: a JSON object, with no registered
/// claim given twice or with the wrong kind of value.
fn decode_claims(payload: &str) -> Result<JsonObject, TokenError> {
    let not_object = TokenError::Malformed(CLAIMS_NOT_OBJECT);
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| not_object.clone())?;
    let claims: JsonObject = serde_json::from_slice(&bytes).map_err(|_| not_object)?;
    let wrong_type = |name: &str| {
        claims.map.get(name).is_some_and(|value| match value {
            Value::Array(items) => name == "sub" || !items.is_empty(),
            Value::Object(members) => name == "sub" || !members.is_empty(),
            _ => false,
        })
    };
    if claims.repeats_one_of(&REGISTERED_CLAIMS)
        || ["exp", "nbf", "sub"].into_iter().any(wrong_type)
    {
        return Err(TokenError::Malformed(CLAIM_TYPES));
    }
    Ok(claims)
}

/// An `exp` or `nbf` claim.
enum NumericDate {
    Absent,
    Seconds(u64),
    /// Present, but not a non-negative number of seconds below 2^64 (`null` included).
    Invalid,
}

fn numeric_date(value: Option<&Value>) -> NumericDate {
    let Some(value) = value else {
        return NumericDate::Absent;
    };
    if let Some(seconds) = value.as_u64() {
        return NumericDate::Seconds(seconds);
    }
    match value.as_f64() {
        // `u64::MAX as f64` is 2^64: below it, the rounded value fits.
        Some(f) if value.is_f64() && f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
            NumericDate::Seconds(f.round() as u64)
        }
        _ => NumericDate::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_short_names_and_cuts_long_ones() {
        assert_eq!(sanitize_algorithm("none"), "none");
        assert_eq!(sanitize_algorithm("RS256"), "RS256");
        assert_eq!(sanitize_algorithm("a b\"c"), "a?b?c");
        assert_eq!(
            sanitize_algorithm("0123456789abcdefXYZ"),
            "0123456789abcdef..."
        );
    }

    fn check_shape(token: &str) -> Result<(), TokenError> {
        TokenParts::split(token).map(|_| ())
    }

    #[test]
    fn shape() {
        assert_eq!(check_shape("a.b"), Err(TokenError::Malformed(SHAPE)));
        assert_eq!(check_shape("a.b.c.d"), Err(TokenError::Malformed(SHAPE)));
        assert_eq!(
            check_shape(".eyJ9.x"),
            Err(TokenError::Malformed(EMPTY_PART))
        );
        assert_eq!(
            check_shape("e+J9.eyJ9.x"),
            Err(TokenError::Malformed(NOT_BASE64URL))
        );
        assert_eq!(
            check_shape("eyJ9=.eyJ9.x"),
            Err(TokenError::Malformed(NOT_BASE64URL))
        );
        assert_eq!(check_shape("eyJ9.eyJ9."), Ok(()));
        // A last symbol with stray bits, and an impossible length.
        assert_eq!(
            check_shape("eyJ9.eyJ9.eyK"),
            Err(TokenError::Malformed(NOT_BASE64URL))
        );
        assert_eq!(
            check_shape("eyJ9.eyJ9a.x"),
            Err(TokenError::Malformed(NOT_BASE64URL))
        );
    }

    #[test]
    fn leeway_is_clamped() {
        assert_eq!(
            Validator::new(["k"], u64::MAX, 1).leeway_secs(),
            MAX_LEEWAY_SECS
        );
        assert_eq!(Validator::new(["k"], 5, 1).leeway_secs(), 5);
    }

    fn sign(key: &str, input: &str) -> String {
        Hs256Key::new(key).sign(input)
    }

    #[test]
    fn known_signature() {
        // The well-known jwt.io HS256 example, signed with the UTF-8 bytes of the secret.
        let message = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ";
        assert_eq!(
            sign("your-256-bit-secret", message),
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
    }

    #[test]
    fn any_key_may_have_signed() {
        let validator = Validator::new(["old", "new"], 0, 100);
        assert!(validator.signed_by_a_key("a.b", &sign("new", "a.b")));
        assert!(validator.signed_by_a_key("a.b", &sign("old", "a.b")));
        assert!(!validator.signed_by_a_key("a.c", &sign("old", "a.b")));
        assert!(!validator.signed_by_a_key("a.b", &sign("other", "a.b")));
    }

    #[test]
    fn refuses_signatures_of_the_wrong_length_or_encoding() {
        let validator = Validator::new(["k"], 0, 100);
        let good = sign("k", "a.b");
        assert!(!validator.signed_by_a_key("a.b", ""));
        assert!(!validator.signed_by_a_key("a.b", &good[..good.len() - 2]));
        assert!(!validator.signed_by_a_key("a.b", &format!("{good}AAAA")));
        assert!(!validator.signed_by_a_key("a.b", "!!!!"));
    }
}

//! Verification of client access tokens.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use url::Url;

use crate::audience::{HubAudience, ServiceAudience};
use crate::signature::SigningKeys;
use crate::{AccessKeys, Claims, TokenError};

/// Default clock-skew allowance for `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Default limit on the token length, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Largest leeway honoured; larger configured values are clamped to it.
pub const MAX_LEEWAY_SECS: u64 = 86_400;

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
const AUD_NOT_STRING: &str = "the aud claim is not a string or an array of strings";
const UNVERIFIABLE: &str = "the token could not be verified";

/// Expectation shown by [`ClientTokenVerifier::verify_with`] when `aud` is refused.
const GENERIC_EXPECTED: &str = "an audience accepted by this endpoint";

/// Settings of a [`ClientTokenVerifier`].
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Keys a token may be signed with (rotation: any of them).
    pub keys: AccessKeys,
    /// Clock-skew allowance for `exp` and `nbf` in seconds (default 30, at most
    /// [`MAX_LEEWAY_SECS`]).
    pub leeway_secs: u64,
    /// Tokens longer than this many bytes are refused before any decoding (default 8192).
    pub max_token_bytes: usize,
    /// When set, `aud` must also match this endpoint's scheme, host and port, and its path
    /// is prefixed with this endpoint's path.
    pub public_endpoint: Option<Url>,
}

impl VerifierConfig {
    /// A configuration with the default leeway and size limit and no public endpoint.
    pub fn new(keys: AccessKeys) -> Self {
        Self {
            keys,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            public_endpoint: None,
        }
    }
}

/// Verifies client access tokens (HS256 JWTs minted by the application's `negotiate`).
///
/// Cheap to clone: the decoding keys are built once in [`new`](Self::new) and shared.
///
/// ```
/// use portcullis_auth::{AccessKeys, ClientTokenVerifier, TokenError, VerifierConfig};
///
/// let keys = AccessKeys::new(vec!["key".into()]).unwrap();
/// let verifier = ClientTokenVerifier::new(VerifierConfig::new(keys));
/// assert_eq!(verifier.verify("", "chat"), Err(TokenError::Missing));
/// assert!(matches!(verifier.verify("a.b", "chat"), Err(TokenError::Malformed(_))));
/// ```
#[derive(Clone)]
pub struct ClientTokenVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Vec<DecodingKey>,
    signing: SigningKeys,
    validation: Validation,
    max_token_bytes: usize,
    public_endpoint: Option<Url>,
}

impl ClientTokenVerifier {
    /// Builds the verifier: one HS256 decoding key per access key.
    pub fn new(config: VerifierConfig) -> Self {
        crate::crypto::ensure_provider();
        let keys = config
            .keys
            .all()
            .iter()
            .map(|key| DecodingKey::from_secret(key.as_bytes()))
            .collect();
        let signing = SigningKeys::new(config.keys.all().iter().map(String::as_str));
        let inner = Inner {
            keys,
            signing,
            validation: validation(config.leeway_secs),
            max_token_bytes: config.max_token_bytes,
            public_endpoint: config.public_endpoint,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Verifies a client access token for `hub` and returns its claims.
    ///
    /// Checks, cheapest first: length limit (before any decoding); shape (three dot-separated
    /// base64url parts); header (`alg` must be exactly `HS256`); signature against every key;
    /// claims JSON; `exp` required and not past; `nbf` honoured if present (both with the
    /// leeway); `aud` required and matching the hub (see [`HubAudience`]).
    ///
    /// ```
    /// use portcullis_auth::{AccessKeys, ClientTokenOptions, ClientTokenVerifier, TokenError, VerifierConfig};
    ///
    /// let keys = AccessKeys::new(vec!["key".into()]).unwrap();
    /// let verifier = ClientTokenVerifier::new(VerifierConfig::new(keys));
    /// let options = ClientTokenOptions { user_id: Some("bob".into()), ..Default::default() };
    /// let token = portcullis_auth::mint_client_token("key", "http://h/clients/socketio/hubs/chat", &options);
    ///
    /// assert_eq!(verifier.verify(&token, "chat").unwrap().user_id(), Some("bob"));
    /// assert!(matches!(verifier.verify(&token, "other"), Err(TokenError::WrongAudience { .. })));
    /// ```
    pub fn verify(&self, token: &str, hub: &str) -> Result<Claims, TokenError> {
        let payload = self.verified_payload(token)?;
        // Built only for tokens that passed the signature: forgeries cost no URL parsing.
        let audience = HubAudience::new(hub, self.inner.public_endpoint.as_ref());
        check_audience(&payload, audience.expected(), &|aud| audience.matches(aud))?;
        Ok(Claims::from_json(&payload))
    }

    /// Verifies a REST API token for calls on `hub` (see
    /// [`ServiceAudience::api`]).
    pub fn verify_api(&self, token: &str, hub: &str) -> Result<Claims, TokenError> {
        let audience = ServiceAudience::api(hub, self.inner.public_endpoint.as_ref());
        self.verify_with_expected(token, audience.expected(), &|aud| audience.matches(aud))
    }

    /// Verifies an application server's tunnel token for `hub` (see
    /// [`ServiceAudience::tunnel`]).
    pub fn verify_tunnel(&self, token: &str, hub: &str) -> Result<Claims, TokenError> {
        let audience = ServiceAudience::tunnel(hub, self.inner.public_endpoint.as_ref());
        self.verify_with_expected(token, audience.expected(), &|aud| audience.matches(aud))
    }

    /// Same checks as [`verify`](Self::verify), but `aud` is accepted when
    /// `audience_ok(aud)` returns true (for one of the values if `aud` is an array).
    ///
    /// The subject (`sub`) is available as [`Claims::user_id`].
    ///
    /// ```
    /// use portcullis_auth::{AccessKeys, ClientTokenOptions, ClientTokenVerifier, VerifierConfig};
    ///
    /// let keys = AccessKeys::new(vec!["key".into()]).unwrap();
    /// let verifier = ClientTokenVerifier::new(VerifierConfig::new(keys));
    /// let options = ClientTokenOptions { user_id: Some("sdk-1".into()), ..Default::default() };
    /// let aud = "ws://h/server/tunnel?hub=chat";
    /// let token = portcullis_auth::mint_client_token("key", aud, &options);
    /// let claims = verifier.verify_with(&token, &|a| a == aud).unwrap();
    /// assert_eq!(claims.user_id(), Some("sdk-1"));
    /// ```
    pub fn verify_with(
        &self,
        token: &str,
        audience_ok: &dyn Fn(&str) -> bool,
    ) -> Result<Claims, TokenError> {
        self.verify_with_expected(token, GENERIC_EXPECTED, audience_ok)
    }

    /// Like [`verify_with`](Self::verify_with); `expected` describes the accepted audience in
    /// [`TokenError::WrongAudience`] (a path starting with `/`, or a full URL). It must not
    /// come from the token.
    pub fn verify_with_expected(
        &self,
        token: &str,
        expected: &str,
        audience_ok: &dyn Fn(&str) -> bool,
    ) -> Result<Claims, TokenError> {
        let payload = self.verified_payload(token)?;
        check_audience(&payload, expected, audience_ok)?;
        Ok(Claims::from_json(&payload))
    }

    /// Every check but the audience, cheapest first; the claims of a token that
    /// passes them.
    fn verified_payload(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        check_length(token, self.inner.max_token_bytes)?;
        let parts = TokenParts::split(token)?;
        check_algorithm(parts.header)?;
        let signer = self
            .inner
            .signing
            .signer(parts.signing_input, parts.signature)
            .ok_or(TokenError::BadSignature)?;
        self.decode(token, signer)
    }

    /// Header, signature (again, with the key that matched), claims JSON,
    /// `exp` and `nbf`, by jsonwebtoken.
    fn decode(&self, token: &str, signer: usize) -> Result<Map<String, Value>, TokenError> {
        let key = &self.inner.keys[signer];
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.inner.validation)
            .map(|data| data.claims)
            .map_err(|e| map_error(e.kind(), token))
    }
}

impl fmt::Debug for ClientTokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTokenVerifier")
            .field("keys", &self.inner.keys.len())
            .field("leeway_secs", &self.inner.validation.leeway)
            .field("max_token_bytes", &self.inner.max_token_bytes)
            .field(
                "public_endpoint",
                &self.inner.public_endpoint.as_ref().map(Url::as_str),
            )
            .finish()
    }
}

fn validation(leeway_secs: u64) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = leeway_secs.min(MAX_LEEWAY_SECS);
    validation.set_required_spec_claims(&["exp"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation
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
/// signature is looked at.
fn check_algorithm(header: &str) -> Result<(), TokenError> {
    match raw_header_alg(header)? {
        alg if alg == "HS256" => Ok(()),
        alg => Err(TokenError::UnsupportedAlgorithm(sanitize_algorithm(&alg))),
    }
}

fn map_error(kind: &ErrorKind, token: &str) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => missing_or_invalid_exp(token),
        ErrorKind::InvalidClaimFormat(claim) if claim == "exp" => {
            TokenError::Malformed(EXP_NOT_NUMBER)
        }
        ErrorKind::InvalidClaimFormat(claim) if claim == "nbf" => {
            TokenError::Malformed(NBF_NOT_NUMBER)
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => unsupported_algorithm(token),
        ErrorKind::InvalidToken => TokenError::Malformed(SHAPE),
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => decoding_failure(token),
        _ => TokenError::Malformed(UNVERIFIABLE),
    }
}

/// jsonwebtoken could not decode the header or the claims. Only on this path is the header
/// decoded by hand, to name an algorithm jsonwebtoken does not know (such as `none`).
fn decoding_failure(token: &str) -> TokenError {
    if jsonwebtoken::decode_header(token).is_ok() {
        return match payload_object(token) {
            Some(_) => TokenError::Malformed(CLAIM_TYPES),
            None => TokenError::Malformed(CLAIMS_NOT_OBJECT),
        };
    }
    match raw_header_alg(header_part(token)) {
        Err(error) => error,
        Ok(alg) if alg == "HS256" => TokenError::Malformed(INVALID_HEADER),
        Ok(alg) => TokenError::UnsupportedAlgorithm(sanitize_algorithm(&alg)),
    }
}

/// jsonwebtoken reports an `exp` that is not a number as missing; tell the two apart.
/// (Only reached after the signature was verified.)
fn missing_or_invalid_exp(token: &str) -> TokenError {
    let has_exp = payload_object(token)
        .is_some_and(|claims| claims.get("exp").is_some_and(|exp| !exp.is_null()));
    if has_exp {
        TokenError::Malformed(EXP_NOT_NUMBER)
    } else {
        TokenError::MissingExpiry
    }
}

/// The token's payload as a JSON object, decoded by hand (error paths only).
fn payload_object(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unsupported_algorithm(token: &str) -> TokenError {
    match raw_header_alg(header_part(token)) {
        Ok(alg) => TokenError::UnsupportedAlgorithm(sanitize_algorithm(&alg)),
        Err(error) => error,
    }
}

fn header_part(token: &str) -> &str {
    token.split('.').next().unwrap_or_default()
}

/// The `alg` string of a token's header part, decoded without jsonwebtoken.
fn raw_header_alg(header: &str) -> Result<String, TokenError> {
    /// Only `alg` is read; other members are skipped unparsed.
    #[derive(serde::Deserialize)]
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
        Some(Value::String(alg)) => Ok(alg),
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

fn check_audience(
    claims: &Map<String, Value>,
    expected: &str,
    audience_ok: &dyn Fn(&str) -> bool,
) -> Result<(), TokenError> {
    let values = audience_values(claims.get("aud"))?;
    if values.is_empty() {
        return Err(TokenError::MissingAudience);
    }
    if values.into_iter().any(audience_ok) {
        Ok(())
    } else {
        Err(TokenError::WrongAudience {
            expected: expected.to_owned(),
        })
    }
}

/// The `aud` values: one string, or every string of an array.
fn audience_values(aud: Option<&Value>) -> Result<Vec<&str>, TokenError> {
    match aud {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or(TokenError::Malformed(AUD_NOT_STRING)))
            .collect(),
        Some(_) => Err(TokenError::Malformed(AUD_NOT_STRING)),
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
        assert_eq!(validation(u64::MAX).leeway, MAX_LEEWAY_SECS);
        assert_eq!(validation(5).leeway, 5);
    }
}

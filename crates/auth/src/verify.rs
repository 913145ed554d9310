//! Verification of client access tokens.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use url::Url;

use crate::audience::{HubAudience, ServiceAudience};
use crate::jwt::Validator;
use crate::{AccessKeys, Claims, TokenError};

/// Default clock-skew allowance for `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Default limit on the token length, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Largest leeway honoured; larger configured values are clamped to it.
pub const MAX_LEEWAY_SECS: u64 = 86_400;

const AUD_NOT_STRING: &str = "the aud claim is not a string or an array of strings";

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
/// Cheap to clone: the keys' HMAC states are built once in [`new`](Self::new) and shared.
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
    /// Form, signature and time claims: the crate's one JWT implementation.
    validator: Validator,
    public_endpoint: Option<Url>,
}

impl ClientTokenVerifier {
    /// Builds the verifier: one keyed HMAC-SHA256 state per access key.
    pub fn new(config: VerifierConfig) -> Self {
        let validator = Validator::new(
            config.keys.all().iter().map(String::as_str),
            config.leeway_secs,
            config.max_token_bytes,
        );
        let inner = Inner {
            validator,
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

    /// Every check but the audience, cheapest first (see [`Validator::validate`]);
    /// the claims of a token that passes them.
    fn verified_payload(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        self.inner.validator.validate(token, crate::mint::unix_now)
    }
}

impl fmt::Debug for ClientTokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTokenVerifier")
            .field("keys", &self.inner.validator.key_count())
            .field("leeway_secs", &self.inner.validator.leeway_secs())
            .field("max_token_bytes", &self.inner.validator.max_token_bytes())
            .field(
                "public_endpoint",
                &self.inner.public_endpoint.as_ref().map(Url::as_str),
            )
            .finish()
    }
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

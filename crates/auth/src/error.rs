//! Why a client access token was refused.

/// Why an access token was refused.
///
/// The messages say what is wrong and what to do. They never contain the token or its claims;
/// the only token-derived text is a (shortened, sanitised) algorithm name. The expected
/// audience comes from the gateway's own configuration.
///
/// ```
/// use portcullis_auth::TokenError;
///
/// assert_eq!(
///     TokenError::Expired.to_string(),
///     "access token has expired: ask the application's /negotiate for a new one"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was given (empty string).
    #[error(
        "access token is missing: pass it as ?access_token=<jwt> or an Authorization: Bearer header"
    )]
    Missing,
    /// The token is longer than the configured limit; nothing of it was decoded.
    #[error("access token is too large ({len} bytes; the limit is {limit})")]
    TooLarge {
        /// Length of the token in bytes.
        len: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The token is not a well-formed JWT; the text says which part is wrong.
    #[error("access token is malformed: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than HS256 (including `none`).
    #[error("access token algorithm '{0}' is not accepted: tokens must be signed with HS256")]
    UnsupportedAlgorithm(String),
    /// The HS256 signature matches none of the access keys.
    #[error("access token signature does not match any access key of this gateway")]
    BadSignature,
    /// There is no `exp` claim.
    #[error(
        "access token has no expiry (exp claim): mint tokens with an expiry, e.g. through the application's /negotiate"
    )]
    MissingExpiry,
    /// `exp` is in the past (beyond the leeway).
    #[error("access token has expired: ask the application's /negotiate for a new one")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("access token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// There is no `aud` claim.
    #[error(
        "access token has no audience (aud claim): it must be the hub's client URL, as the application's /negotiate sets it"
    )]
    MissingAudience,
    /// No `aud` value is acceptable here.
    #[error("{}", wrong_audience_message(expected))]
    WrongAudience {
        /// What was expected: a path such as `/clients/socketio/hubs/chat` or a full URL.
        expected: String,
    },
}

fn wrong_audience_message(expected: &str) -> String {
    if expected.starts_with('/') {
        format!(
            "access token audience does not match this hub: expected a URL ending in {expected}"
        )
    } else {
        format!("access token audience does not match: expected {expected}")
    }
}

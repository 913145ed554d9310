//! The gate: a client's handshake is checked here before anything of a
//! session exists. A refusal allocates nothing beyond its reply.

use std::hash::BuildHasher;

use http::{HeaderMap, header};
use portcullis_auth::{Claims, TokenError};

use crate::engine::EngineError;
use crate::hub::HubSettings;
use crate::server::GatewayState;

/// A client admitted by the gate.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub claims: Claims,
    /// Keyed hash of the token, to recognise it on the session's later
    /// requests without keeping it.
    pub token_fingerprint: Option<u64>,
}

/// The token a request carries: `?access_token=` first, then
/// `Authorization: Bearer`. An empty value counts as none.
pub(crate) fn token_of<'a>(
    query_token: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Option<&'a str> {
    query_token
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)?
                .to_str()
                .ok()?
                .strip_prefix("Bearer ")
                .map(str::trim)
        })
        .filter(|token| !token.is_empty())
}

/// Checks a handshake's token for `hub`.
pub(crate) fn admit(
    state: &GatewayState,
    hub: &str,
    settings: &HubSettings,
    token: Option<&str>,
) -> Result<Admitted, EngineError> {
    let Some(token) = token else {
        if settings.allow_anonymous {
            return Ok(Admitted {
                claims: Claims::default(),
                token_fingerprint: None,
            });
        }
        return Err(refusal(&TokenError::Missing));
    };
    let claims = state.verifier.verify(token, hub).map_err(|e| refusal(&e))?;
    Ok(Admitted {
        claims,
        token_fingerprint: Some(state.fingerprint(token)),
    })
}

fn refusal(error: &TokenError) -> EngineError {
    EngineError::unauthorized(error.to_string())
}

impl GatewayState {
    /// The keyed hash of a token (keys random per process).
    pub(crate) fn fingerprint(&self, token: &str) -> u64 {
        self.fingerprint_keys.hash_one(token)
    }
}

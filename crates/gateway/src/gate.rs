//! The gate: a client's handshake is checked here before anything of a
//! session exists. A refusal allocates nothing beyond its reply.

use http::{HeaderMap, header};
use portcullis_auth::{Claims, TokenError};

use crate::engine::EngineError;
use crate::hub::{Connection, HubSettings};
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
    let claims = state.tokens.verify(token, hub).map_err(|e| refusal(&e))?;
    if state.hubs.get(hub).is_some_and(|hub| hub.revokes(&claims)) {
        return Err(EngineError::unauthorized(REVOKED));
    }
    Ok(Admitted {
        claims,
        token_fingerprint: Some(state.tokens.fingerprint(token)),
    })
}

/// Checks the token of a later request (poll, POST, upgrade) of a session.
///
/// A session opened with a token belongs to that token: knowing its sid is
/// not enough to send or receive as its client. socket.io-client and
/// engine.io-client repeat the handshake's query (and so `access_token`) on
/// every request, so they always pass. An anonymous session accepts any
/// request, as before, but not one carrying a token it never had.
pub(crate) fn check_session_token(
    state: &GatewayState,
    connection: &Connection,
    token: Option<&str>,
) -> Result<(), EngineError> {
    let presented = token.map(|token| state.tokens.fingerprint(token));
    match (connection.token_fingerprint, presented) {
        (None, None) => Ok(()),
        (Some(_), Some(presented)) if connection.holds_token(presented) => Ok(()),
        (Some(_), None) => Err(EngineError::unauthorized(
            "this session was opened with an access token: send the same access_token on every request",
        )),
        _ => Err(EngineError::unauthorized(
            "access token does not match the one this session started with",
        )),
    }
}

/// What a client with a revoked token is told.
pub(crate) const REVOKED: &str =
    "access token has been revoked: ask the application's /negotiate for a new one";

fn refusal(error: &TokenError) -> EngineError {
    EngineError::unauthorized(error.to_string())
}

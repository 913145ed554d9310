//! The gateway's one authority on client tokens: verification against the
//! access keys, and keyed fingerprints that let a session recognise its token
//! on later requests without keeping it. Shared by the gate (handshakes) and
//! the hubs (in-band refresh of live connections).

use std::hash::{BuildHasher, RandomState};

use portcullis_auth::{Claims, ClientTokenVerifier, TokenError};

/// Verifies client tokens and fingerprints them.
pub(crate) struct Tokens {
    verifier: ClientTokenVerifier,
    /// Random per process: a fingerprint means nothing outside it.
    fingerprint_keys: RandomState,
}

impl Tokens {
    pub(crate) fn new(verifier: ClientTokenVerifier) -> Self {
        Tokens {
            verifier,
            fingerprint_keys: RandomState::new(),
        }
    }

    /// The claims of a token valid for `hub`'s client endpoint.
    pub(crate) fn verify(&self, token: &str, hub: &str) -> Result<Claims, TokenError> {
        self.verifier.verify(token, hub)
    }

    /// The verifier itself, for the tunnel's and the REST API's tokens.
    pub(crate) fn verifier(&self) -> &ClientTokenVerifier {
        &self.verifier
    }

    /// The keyed hash of a token.
    pub(crate) fn fingerprint(&self, token: &str) -> u64 {
        self.fingerprint_keys.hash_one(token)
    }
}

//! Feeds arbitrary UTF-8 to client token verification and connection string parsing;
//! an algorithm name quoted in an error must be short and sanitised.
//!
//! Run with `cargo +nightly fuzz run jwt_verify` from `fuzz/`.

#![no_main]

use std::str::FromStr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_auth::{
    AccessKeys, ClientTokenVerifier, ConnectionString, TokenError, VerifierConfig,
};

/// Two verifiers: one that ignores the audience's host, one pinned to a public endpoint.
fn verifiers() -> &'static [ClientTokenVerifier; 2] {
    static VERIFIERS: OnceLock<[ClientTokenVerifier; 2]> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let keys = AccessKeys::new(vec!["fuzz-key".to_owned(), "second-key".to_owned()])
            .expect("static keys are valid");
        let mut pinned = VerifierConfig::new(keys.clone());
        pinned.public_endpoint =
            ConnectionString::from_str("Endpoint=http://localhost:8080;AccessKey=k")
                .ok()
                .map(|cs| cs.endpoint);
        [
            ClientTokenVerifier::new(VerifierConfig::new(keys)),
            ClientTokenVerifier::new(pinned),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Everything after the first newline (if any) is the hub name.
    let (token, hub) = text.split_once('\n').unwrap_or((text, "chat"));
    for verifier in verifiers() {
        // Only the algorithm name of an error comes from the token, shortened and
        // sanitised; every other message is fixed text or configuration (the hub). (A
        // check that the message does not contain the token fails on tokens that are
        // themselves a piece of that fixed text: see fuzz/regressions/jwt_verify/.)
        if let Err(TokenError::UnsupportedAlgorithm(alg)) = verifier.verify(token, hub) {
            let shown = alg.strip_suffix("...").unwrap_or(&alg);
            assert!(
                shown.chars().count() <= 16
                    && shown
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._+-?".contains(c)),
                "algorithm shown unsanitised: {alg:?}"
            );
        }
        let _ = verifier.verify_with(token, &|aud| aud.len() % 2 == 0);
    }
    if let Ok(parsed) = ConnectionString::from_str(text) {
        let again = ConnectionString::from_str(&parsed.to_string());
        assert!(again.is_ok(), "Display output does not parse back");
        let _ = parsed.client_url(hub);
    }
});

//! Cost of [`ClientTokenVerifier::verify`] on its two hot paths: a forged
//! token (refused by its signature) and a valid token (accepted).
//!
//! Run in release mode, on an otherwise idle machine:
//!
//! ```text
//! cargo run --release -p portcullis-auth --example verify_cost [-- CALLS]
//! ```
//!
//! Prints nanoseconds per call for each path (best of three rounds, so that
//! a burst of other work on the machine does not count).

use std::hint::black_box;
use std::time::{Duration, Instant};

use portcullis_auth::{
    AccessKeys, ClientTokenOptions, ClientTokenVerifier, VerifierConfig, mint_client_token,
};

const AUDIENCE: &str = "http://localhost:8080/clients/socketio/hubs/chat";

fn main() {
    let calls: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("CALLS is a whole number"))
        .unwrap_or(1_000_000);
    let key = "x".repeat(43);
    let keys = AccessKeys::new(vec![key.clone()]).expect("a non-empty key");
    let verifier = ClientTokenVerifier::new(VerifierConfig::new(keys));

    // A token as the SDK's negotiate mints it: user, role, group.
    let options = ClientTokenOptions {
        user_id: Some("bob".into()),
        roles: vec!["webpubsub.joinLeaveGroup".into()],
        groups: vec!["room1".into()],
        ..Default::default()
    };
    let valid = mint_client_token(&key, AUDIENCE, &options);
    let forged = mint_client_token("not-the-access-key", AUDIENCE, &options);
    assert!(verifier.verify(&valid, "chat").is_ok());
    assert!(verifier.verify(&forged, "chat").is_err());

    for (name, token) in [("forged (refused)", &forged), ("valid (accepted)", &valid)] {
        let best = (0..3)
            .map(|_| {
                time(calls, || {
                    drop(black_box(verifier.verify(black_box(token), "chat")))
                })
            })
            .min()
            .unwrap_or_default();
        let ns = best.as_nanos() as f64 / f64::from(calls);
        println!(
            "{name}: {ns:.0} ns per call ({calls} calls, {} bytes)",
            token.len()
        );
    }
}

fn time(calls: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    start.elapsed()
}

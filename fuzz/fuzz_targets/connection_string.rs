//! Connection strings (`portcullis_auth::ConnectionString`), both ways.
//!
//! - Parse: arbitrary text; what parses has an `http(s)` endpoint ending in
//!   `/`, a non-empty access key, a client URL under the endpoint, and prints
//!   (`Display`) to text that parses back to an *equal* connection string.
//! - Build: the text after the first newline (if any) is read as a URL and the
//!   text before it as an access key; `ConnectionString::new` then `Display`
//!   must parse back equal, whenever the documented limits are respected (a key
//!   without `;`, an endpoint whose text has no `;`).
//!
//! Run with `cargo +nightly fuzz run connection_string` from `fuzz/`.

#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use portcullis_auth::ConnectionString;

fn round_trip(cs: &ConnectionString) {
    let printed = cs.to_string();
    match ConnectionString::from_str(&printed) {
        Ok(again) => assert_eq!(&again, cs, "{printed:?} parses back differently"),
        Err(error) => panic!("{printed:?} does not parse back: {error}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cs) = ConnectionString::from_str(text) {
        assert!(matches!(cs.endpoint.scheme(), "http" | "https"), "{cs:?}");
        assert!(cs.endpoint.path().ends_with('/'), "{cs:?}");
        assert!(!cs.access_key.is_empty() && !cs.access_key.contains(';'));
        assert!(cs.client_url("hub").starts_with(cs.endpoint.as_str()));
        round_trip(&cs);
    }
    let (key, endpoint) = text.split_once('\n').unwrap_or(("key", text));
    if key.is_empty() || key.contains(';') {
        return;
    }
    let Ok(url) = url::Url::parse(endpoint) else {
        return;
    };
    if matches!(url.scheme(), "http" | "https") && !url.as_str().contains(';') {
        round_trip(&ConnectionString::new(url, key));
    }
});

//! Feeds arbitrary text to the OData filter parser of the REST API.
//!
//! Checks that parsing never panics, that errors point inside the input, and
//! that a parsed filter prints back (`to_odata`) to text that parses to the
//! same filter. Run with `cargo +nightly fuzz run odata_filter` from `fuzz/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_hub::odata::{self, FilterErrorKind};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match odata::parse(&text) {
        Ok(filter) => {
            let printed = odata::to_odata(&filter);
            match odata::parse(&printed) {
                Ok(again) => assert_eq!(again, filter, "{printed:?} does not parse back"),
                // Printing can lengthen a filter (`x in ('a','b')` becomes
                // `(x eq 'a' or x eq 'b')`), so only a limit may then be hit.
                Err(error) => assert!(
                    error.kind == FilterErrorKind::Limit,
                    "{printed:?} does not parse back: {error}"
                ),
            }
        }
        Err(error) => {
            assert!(error.position <= text.len(), "{error} is past the end");
            assert!(
                text.is_char_boundary(error.position),
                "{error} splits a char"
            );
        }
    }
});

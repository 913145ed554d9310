//! The HS256 signature check that runs before anything else of a token is
//! decoded.
//!
//! Most refused handshakes are forgeries: the signature is what fails. Each
//! access key's HMAC state is keyed once here, so checking a signature costs
//! the hash of the token and nothing else (jsonwebtoken keys a fresh HMAC,
//! and decodes the header twice, on every call). jsonwebtoken stays the
//! authority on tokens that pass: it verifies them again, with the key that
//! matched, and validates their claims.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of an HS256 signature.
const SIGNATURE_LEN: usize = 32;

/// The access keys' HMAC-SHA256 states, keyed once.
#[derive(Clone)]
pub(crate) struct SigningKeys {
    macs: Vec<Hmac<Sha256>>,
}

impl SigningKeys {
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        let macs = keys
            .into_iter()
            .map(|key| {
                Hmac::<Sha256>::new_from_slice(key.as_bytes())
                    .expect("HMAC accepts keys of any length")
            })
            .collect();
        SigningKeys { macs }
    }

    /// The index of the key that signed `signing_input` (`header.payload`)
    /// with `signature` (base64url), or `None` when no key did. Comparisons
    /// are constant-time.
    pub fn signer(&self, signing_input: &str, signature: &str) -> Option<usize> {
        let mut decoded = [0u8; SIGNATURE_LEN + 3];
        let len = URL_SAFE_NO_PAD
            .decode_slice(signature, &mut decoded)
            .ok()
            .filter(|len| *len == SIGNATURE_LEN)?;
        self.macs.iter().position(|mac| {
            let mut mac = mac.clone();
            mac.update(signing_input.as_bytes());
            mac.verify_slice(&decoded[..len]).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(key: &str, input: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn finds_the_key_that_signed() {
        let keys = SigningKeys::new(["old", "new"]);
        assert_eq!(keys.signer("a.b", &sign("new", "a.b")), Some(1));
        assert_eq!(keys.signer("a.b", &sign("old", "a.b")), Some(0));
        assert_eq!(keys.signer("a.c", &sign("old", "a.b")), None);
        assert_eq!(keys.signer("a.b", &sign("other", "a.b")), None);
    }

    #[test]
    fn refuses_signatures_of_the_wrong_length_or_encoding() {
        let keys = SigningKeys::new(["k"]);
        let good = sign("k", "a.b");
        assert_eq!(keys.signer("a.b", ""), None);
        assert_eq!(keys.signer("a.b", &good[..good.len() - 2]), None);
        assert_eq!(keys.signer("a.b", &format!("{good}AAAA")), None);
        assert_eq!(keys.signer("a.b", "!!!!"), None);
    }
}

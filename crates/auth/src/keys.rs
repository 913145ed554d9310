//! HS256 access keys, with rotation.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The shortest key length, in bytes, considered strong: HS256 is keyed by
/// the key's UTF-8 bytes, and RFC 7518 §3.2 asks for a key at least as long
/// as the hash output (32 bytes). Shorter keys still work, but an attacker
/// holding one token can try to guess them offline.
pub const MIN_STRONG_KEY_BYTES: usize = 32;

/// One or more HS256 access keys.
///
/// Several keys allow rotation: a token signed with any of them verifies, and new tokens are
/// signed with the [`primary`](AccessKeys::primary) (first) key. The HMAC secret is the UTF-8
/// bytes of the key string; it is **not** base64-decoded (this is what the SDK does).
///
/// `Debug` never prints the keys.
///
/// ```
/// use portcullis_auth::AccessKeys;
///
/// let keys = AccessKeys::new(vec!["new-key".into(), "old-key".into()]).unwrap();
/// assert_eq!(keys.primary(), "new-key");
/// assert_eq!(keys.all().len(), 2);
/// assert!(!format!("{keys:?}").contains("new-key"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKeys {
    keys: Arc<[String]>,
}

/// Why a list of access keys was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The list is empty.
    #[error("no access key given: configure at least one access key")]
    NoKeys,
    /// One of the keys is the empty string.
    #[error("access key #{index} is empty: access keys must not be empty strings")]
    EmptyKey {
        /// Position of the empty key in the list (0-based).
        index: usize,
    },
}

impl AccessKeys {
    /// Creates the key set. The first key is the primary one.
    ///
    /// Fails on an empty list or on any empty key.
    pub fn new(keys: Vec<String>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        if let Some(index) = keys.iter().position(String::is_empty) {
            return Err(KeyError::EmptyKey { index });
        }
        Ok(Self { keys: keys.into() })
    }

    /// Generates one random key: 32 random bytes as 43 characters of unpadded base64url.
    ///
    /// ```
    /// let keys = portcullis_auth::AccessKeys::generate();
    /// assert_eq!(keys.primary().len(), 43);
    /// ```
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        let key = URL_SAFE_NO_PAD.encode(bytes);
        Self {
            keys: vec![key].into(),
        }
    }

    /// The key new tokens are signed with (the first one).
    pub fn primary(&self) -> &str {
        // `new` and `generate` guarantee at least one key.
        self.keys.first().map(String::as_str).unwrap_or_default()
    }

    /// All keys, primary first.
    pub fn all(&self) -> &[String] {
        &self.keys
    }

    /// The positions (0-based, primary first) of the keys shorter than
    /// [`MIN_STRONG_KEY_BYTES`]: what to warn about without naming the key.
    ///
    /// ```
    /// use portcullis_auth::AccessKeys;
    ///
    /// let keys = AccessKeys::new(vec!["x".repeat(32), "short".into()]).unwrap();
    /// assert_eq!(keys.weak_key_positions(), [1]);
    /// ```
    pub fn weak_key_positions(&self) -> Vec<usize> {
        self.keys
            .iter()
            .enumerate()
            .filter(|(_, key)| key.len() < MIN_STRONG_KEY_BYTES)
            .map(|(index, _)| index)
            .collect()
    }
}

impl fmt::Debug for AccessKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeys")
            .field("count", &self.keys.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_empty_list_and_empty_key() {
        assert_eq!(AccessKeys::new(vec![]), Err(KeyError::NoKeys));
        assert_eq!(
            AccessKeys::new(vec!["a".into(), String::new()]),
            Err(KeyError::EmptyKey { index: 1 })
        );
    }

    #[test]
    fn generated_keys_are_43_base64url_chars_and_differ() {
        let a = AccessKeys::generate();
        let b = AccessKeys::generate();
        assert_eq!(a.primary().len(), 43);
        assert!(
            a.primary()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a.primary(), b.primary());
        assert_eq!(a.all().len(), 1);
    }

    #[test]
    fn debug_hides_keys() {
        let keys = AccessKeys::new(vec!["supersecret".into()]).unwrap();
        let text = format!("{keys:?}");
        assert!(!text.contains("supersecret"), "{text}");
        assert!(text.contains("count: 1"), "{text}");
    }
}

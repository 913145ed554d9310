//! Connection ids and hub names.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A connection id: 128 random bits in URL-safe base64, so it is unguessable,
/// unique across gateway nodes, and safe unencoded in URLs and filters.
///
/// Ids that come from elsewhere (a REST call, a tunnel message) are taken as
/// they are spelled, with [`ConnectionId::from`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(Arc<str>);

impl ConnectionId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::random();
        ConnectionId(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(bytes)
                .into(),
        )
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ConnectionId {
    fn from(id: &str) -> Self {
        ConnectionId(id.into())
    }
}

impl From<String> for ConnectionId {
    fn from(id: String) -> Self {
        ConnectionId(id.into())
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.0)
    }
}

impl Borrow<str> for ConnectionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Whether `name` is an acceptable hub name: 1 to 128 ASCII letters, digits,
/// `_`, `-` or `.`, but not `.` or `..` (hub names appear in URLs, token
/// audiences and logs; the dot segments would be resolved away by URL
/// normalisation, so a token's audience could never name them faithfully).
pub fn is_valid_hub_name(name: &str) -> bool {
    !matches!(name, "." | "..")
        && (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_22_url_safe_characters_and_distinct() {
        let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn hub_names() {
        assert!(is_valid_hub_name("chat_1.v-2"));
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(!is_valid_hub_name(bad), "{bad:?}");
        }
    }
}

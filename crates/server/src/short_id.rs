//! Ids kept inline: connection and socket ids are 22 characters (16 random
//! bytes in base64), so storing them in place saves an allocation per id
//! and a reference count per copy.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The longest id stored inline.
const INLINE: usize = 22;

/// An immutable id string: inline up to [`INLINE`] bytes, shared on the
/// heap beyond. Compares, orders and hashes as its text.
#[derive(Clone)]
pub(crate) enum ShortId {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Arc<str>),
}

impl ShortId {
    pub fn new(id: &str) -> Self {
        if id.len() > INLINE {
            return ShortId::Heap(id.into());
        }
        let mut bytes = [0; INLINE];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        ShortId::Inline {
            len: id.len() as u8,
            bytes,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Copied from a `str` whole, so always valid.
            ShortId::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            ShortId::Heap(id) => id,
        }
    }
}

impl std::fmt::Debug for ShortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for ShortId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ShortId {}

impl PartialOrd for ShortId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShortId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for ShortId {
    /// As the text, so that maps keyed by ids can be searched with a `&str`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn short_and_long_ids_behave_as_their_text() {
        for text in [
            "",
            "AAAAAAAAAAAAAAAAAAAAAA",
            "an id longer than twenty-two bytes, é",
        ] {
            let id = ShortId::new(text);
            assert_eq!(id.as_str(), text);
            assert_eq!(id.clone(), id);
            let hasher = std::collections::hash_map::RandomState::new();
            assert_eq!(hasher.hash_one(&id), hasher.hash_one(text));
        }
        assert!(matches!(ShortId::new("abc"), ShortId::Inline { .. }));
        assert!(ShortId::new("a") < ShortId::new("b"));
        assert!(ShortId::new("b") < ShortId::new(&"c".repeat(30)));
        assert_ne!(ShortId::new("a"), ShortId::new("ab"));
    }
}

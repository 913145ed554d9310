//! Secrets given in the configuration (access keys, the metrics token, the
//! admin key):
//! kept out of `Debug` and compared in constant time.

use subtle::ConstantTimeEq;

/// A configured secret (an access key, the metrics token, the admin key).
/// Its `Debug` prints `<redacted>`, so a logged configuration, or an error
/// that prints the arguments, never shows it.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Secret(value.to_owned()))
    }
}

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, in time that does not depend on
    /// where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        secret_eq(presented, &self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Constant-time equality of two strings (only their lengths leak).
pub(crate) fn secret_eq(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret_and_matching_is_exact() {
        let secret = Secret::new("s3cret");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert!(secret.matches("s3cret"));
        assert!(!secret.matches("s3cre"));
        assert!(!secret.matches("s3cres"));
        assert!(!secret.matches(""));
    }
}

//! Verified claims in the form the SDK reads them (`name -> [strings]`).

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

/// Verified claims in the form the official SDK reads them: every JWT claim by its name, each
/// value an array of strings.
///
/// Conversion (protocol reference §8): string → `[s]`; number → `[decimal text]` (`userId: 0`
/// → `["0"]`); bool → `["true"]`/`["false"]`; array → one string per element (elements
/// converted by the same rules, `null` elements skipped, nested arrays and objects as JSON
/// text); object → `[JSON text]`; `null` → `[]`.
///
/// ```
/// use portcullis_auth::Claims;
///
/// let json = serde_json::json!({"userId": 0, "sub": "bob", "role": ["a", "b"]});
/// let claims = Claims::from_json(json.as_object().unwrap());
/// assert_eq!(claims.get("userId"), ["0"]);
/// assert_eq!(claims.user_id(), Some("bob"));
/// assert_eq!(claims.roles(), ["a", "b"]);
/// assert!(claims.groups().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Claims(pub BTreeMap<String, Vec<String>>);

impl Claims {
    /// Converts a JWT payload into claims (see the type's documentation for the rules).
    pub fn from_json(map: &Map<String, Value>) -> Self {
        Self(
            map.iter()
                .map(|(name, value)| (name.clone(), claim_values(value)))
                .collect(),
        )
    }

    /// The connection's user id: the first value of `sub`, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.get("sub").first().map(String::as_str)
    }

    /// The values of claim `name` (empty if the claim is absent).
    pub fn get(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// The `role` claim.
    pub fn roles(&self) -> &[String] {
        self.get("role")
    }

    /// The `webpubsub.group` claim (groups the connection joins on connect).
    pub fn groups(&self) -> &[String] {
        self.get("webpubsub.group")
    }

    /// The token's id, the `jti` claim (tokens minted by Portcullis carry
    /// one; the official SDK's do not).
    pub fn token_id(&self) -> Option<&str> {
        self.get("jti").first().map(String::as_str)
    }

    /// When the token was issued (`iat`, unix seconds), if it says.
    pub fn issued_at(&self) -> Option<u64> {
        self.unix_time("iat")
    }

    /// When the token expires (`exp`, unix seconds), if it says.
    pub fn expires_at(&self) -> Option<u64> {
        self.unix_time("exp")
    }

    /// A numeric-date claim; a fractional one counts from its whole second.
    fn unix_time(&self, name: &str) -> Option<u64> {
        let text = self.get(name).first()?;
        text.parse::<u64>().ok().or_else(|| {
            let value = text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)?;
            Some(value as u64)
        })
    }

    /// True when there is no claim at all (an anonymous connection).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The string values of one claim.
fn claim_values(value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().filter_map(element_text).collect(),
        other => element_text(other).into_iter().collect(),
    }
}

/// The text of one value: `None` for `null`, JSON text for arrays and objects.
fn element_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(number_text(n)),
        Value::Array(_) | Value::Object(_) => Some(value.to_string()),
    }
}

/// Decimal text of a number, with whole floats written like JavaScript's `String(n)` (`1.0` → `1`).
fn number_text(n: &Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e21 => {
            // `+ 0.0` turns -0 into 0, as JavaScript prints it.
            format!("{:.0}", f + 0.0)
        }
        _ => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(value: Value) -> Claims {
        Claims::from_json(value.as_object().unwrap())
    }

    #[test]
    fn numbers() {
        let c = convert(json!({"a": 0, "b": -7, "c": 1.5, "d": 2.0, "e": 18446744073709551615u64}));
        assert_eq!(c.get("a"), ["0"]);
        assert_eq!(c.get("b"), ["-7"]);
        assert_eq!(c.get("c"), ["1.5"]);
        assert_eq!(c.get("d"), ["2"]);
        assert_eq!(c.get("e"), ["18446744073709551615"]);
    }

    #[test]
    fn negative_zero_is_written_like_javascript() {
        let c = convert(json!({"z": -0.0}));
        assert_eq!(c.get("z"), ["0"]);
    }

    #[test]
    fn token_times_and_id() {
        let c = convert(json!({"iat": 100, "exp": 160.5, "jti": "t1"}));
        assert_eq!(c.issued_at(), Some(100));
        assert_eq!(c.expires_at(), Some(160));
        assert_eq!(c.token_id(), Some("t1"));
        let c = convert(json!({"exp": "soon", "iat": -1}));
        assert_eq!(c.expires_at(), None);
        assert_eq!(c.issued_at(), None);
    }

    #[test]
    fn missing_claim_is_empty() {
        let c = Claims::default();
        assert!(c.is_empty());
        assert!(c.get("x").is_empty());
        assert_eq!(c.user_id(), None);
    }
}

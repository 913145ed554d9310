//! Minting client access tokens the way the SDK's `negotiate` does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

pub use crate::ttl::parse_ttl;

/// The JWT header the SDK (node `jsonwebtoken`) writes, byte for byte.
const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Claims whose values always come from the arguments of [`mint_client_token_at`]; a custom
/// claim with one of these names is dropped. Identity (`sub`, `userId`), permissions (`role`)
/// and group membership (`webpubsub.group`) are reserved too: custom claims often carry
/// user-supplied data, which must never be able to grant a role or impersonate a user.
pub const RESERVED_CLAIMS: [&str; 8] = [
    "iat",
    "exp",
    "aud",
    "jti",
    "sub",
    "userId",
    "role",
    "webpubsub.group",
];

/// The token's own id, the `jti` claim: what a single token is revoked by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenId {
    /// A fresh random id (128 bits, 22 characters of base64url): the default,
    /// so every minted token can be revoked on its own.
    #[default]
    Random,
    /// This id (the caller keeps ids unique).
    Fixed(String),
    /// No `jti`, as the official SDK mints (such a token is revoked only with
    /// every token of its user).
    Omitted,
}

impl TokenId {
    fn value(&self) -> Option<String> {
        match self {
            TokenId::Random => Some(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())),
            TokenId::Fixed(id) => Some(id.clone()),
            TokenId::Omitted => None,
        }
    }
}

/// What goes into a client token besides the audience.
#[derive(Debug, Clone)]
pub struct ClientTokenOptions {
    /// The user id: written as the `userId` claim and, when non-empty, as `sub`.
    pub user_id: Option<String>,
    /// Roles, written as the `role` array (omitted when empty).
    pub roles: Vec<String>,
    /// Groups to join, written as the `webpubsub.group` array (omitted when empty).
    pub groups: Vec<String>,
    /// Lifetime of the token: `exp = iat + ttl` (rounded up to whole seconds). Default 1 hour.
    pub ttl: Duration,
    /// Extra claims. A custom claim named like a reserved claim ([`RESERVED_CLAIMS`]: `iat`,
    /// `exp`, `aud`, `jti`, `sub`, `userId`, `role`, `webpubsub.group`) is silently dropped, so
    /// identity, roles and groups come only from the fields above.
    pub custom_claims: Map<String, Value>,
    /// The `jti` claim (default: random).
    pub token_id: TokenId,
}

impl Default for ClientTokenOptions {
    fn default() -> Self {
        Self {
            user_id: None,
            roles: Vec::new(),
            groups: Vec::new(),
            ttl: Duration::from_secs(3600),
            custom_claims: Map::new(),
            token_id: TokenId::Random,
        }
    }
}

/// Mints a client token the way the SDK's `negotiate` does, with the current time as `iat`.
///
/// HS256 with header `{"alg":"HS256","typ":"JWT"}`, signed with the UTF-8 bytes of `key`.
/// Payload: `role` (array, only if non-empty), `webpubsub.group` (array, only if non-empty),
/// `userId` (if set), the custom claims, `iat`, `exp = iat + ttl`, `aud = audience`,
/// `sub = user_id` (if set and non-empty) and `jti` (see [`TokenId`]).
///
/// ```
/// use portcullis_auth::{ClientTokenOptions, mint_client_token};
///
/// let options = ClientTokenOptions { roles: vec!["webpubsub.joinLeaveGroup".into()], ..Default::default() };
/// let token = mint_client_token("key", "http://localhost:8080/clients/socketio/hubs/chat", &options);
/// assert_eq!(token.split('.').count(), 3);
/// assert!(token.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
/// ```
pub fn mint_client_token(key: &str, audience: &str, options: &ClientTokenOptions) -> String {
    mint_client_token_at(key, audience, options, unix_now())
}

/// Same as [`mint_client_token`], with an explicit "now" (unix seconds) used as `iat`.
///
/// ```
/// use portcullis_auth::{ClientTokenOptions, TokenId, mint_client_token_at};
///
/// let options = ClientTokenOptions { token_id: TokenId::Fixed("t1".into()), ..Default::default() };
/// let a = mint_client_token_at("key", "aud", &options, 1_700_000_000);
/// let b = mint_client_token_at("key", "aud", &options, 1_700_000_000);
/// assert_eq!(a, b);
/// ```
pub fn mint_client_token_at(
    key: &str,
    audience: &str,
    options: &ClientTokenOptions,
    now_unix: u64,
) -> String {
    let payload = Value::Object(client_payload(audience, options, now_unix)).to_string();
    crate::jwt::encode(key, HEADER_JSON, &payload)
}

/// The JWT payload of a client token.
fn client_payload(audience: &str, options: &ClientTokenOptions, now: u64) -> Map<String, Value> {
    let mut claims = Map::new();
    if !options.roles.is_empty() {
        claims.insert("role".into(), string_array(&options.roles));
    }
    if !options.groups.is_empty() {
        claims.insert("webpubsub.group".into(), string_array(&options.groups));
    }
    if let Some(user_id) = &options.user_id {
        claims.insert("userId".into(), Value::from(user_id.as_str()));
    }
    for (name, value) in &options.custom_claims {
        if !RESERVED_CLAIMS.contains(&name.as_str()) {
            claims.insert(name.clone(), value.clone());
        }
    }
    claims.insert("iat".into(), Value::from(now));
    let exp = now.saturating_add(whole_seconds_rounded_up(options.ttl));
    claims.insert("exp".into(), Value::from(exp));
    claims.insert("aud".into(), Value::from(audience));
    if let Some(user_id) = options.user_id.as_deref().filter(|u| !u.is_empty()) {
        claims.insert("sub".into(), Value::from(user_id));
    }
    if let Some(id) = options.token_id.value() {
        claims.insert("jti".into(), Value::from(id));
    }
    claims
}

fn string_array(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
}

fn whole_seconds_rounded_up(ttl: Duration) -> u64 {
    ttl.as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload_of(token: &str) -> Value {
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn default_options_give_iat_exp_aud_only() {
        let options = ClientTokenOptions {
            token_id: TokenId::Omitted,
            ..Default::default()
        };
        let token = mint_client_token_at("k", "http://h/clients/socketio/hubs/x", &options, 100);
        assert_eq!(
            payload_of(&token),
            json!({"iat": 100, "exp": 3700, "aud": "http://h/clients/socketio/hubs/x"})
        );
    }

    #[test]
    fn full_payload_matches_the_sdk() {
        let mut custom = Map::new();
        custom.insert("tenant".into(), json!("acme"));
        custom.insert("exp".into(), json!(1));
        custom.insert("sub".into(), json!("mallory"));
        custom.insert("userId".into(), json!("mallory"));
        custom.insert("jti".into(), json!("stolen"));
        custom.insert("role".into(), json!(["webpubsub.sendToGroup"]));
        custom.insert("webpubsub.group".into(), json!(["admins"]));
        let options = ClientTokenOptions {
            user_id: Some("bob".into()),
            roles: vec!["r1".into()],
            groups: vec!["g1".into(), "g2".into()],
            ttl: Duration::from_secs(300),
            custom_claims: custom,
            token_id: TokenId::Fixed("t-1".into()),
        };
        let token = mint_client_token_at("k", "aud", &options, 1_795_544_222);
        assert_eq!(
            payload_of(&token),
            json!({"role": ["r1"], "webpubsub.group": ["g1", "g2"], "userId": "bob", "tenant": "acme",
                   "iat": 1_795_544_222u64, "exp": 1_795_544_522u64, "aud": "aud", "sub": "bob",
                   "jti": "t-1"})
        );
    }

    #[test]
    fn empty_user_id_gives_user_id_claim_but_no_sub() {
        let options = ClientTokenOptions {
            user_id: Some(String::new()),
            ..Default::default()
        };
        let payload = payload_of(&mint_client_token_at("k", "a", &options, 0));
        assert_eq!(payload["userId"], json!(""));
        assert!(payload.get("sub").is_none());
    }

    #[test]
    fn every_token_gets_its_own_id_by_default() {
        let a = payload_of(&mint_client_token_at("k", "a", &Default::default(), 0));
        let b = payload_of(&mint_client_token_at("k", "a", &Default::default(), 0));
        let id = a["jti"].as_str().unwrap();
        assert_eq!(id.len(), 22);
        assert_ne!(a["jti"], b["jti"]);
    }

    #[test]
    fn header_is_the_sdk_header() {
        let token = mint_client_token_at("k", "a", &Default::default(), 0);
        let header = URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        assert_eq!(header, HEADER_JSON.as_bytes());
    }

    #[test]
    fn ttl_rounds_up_and_saturates() {
        let options = ClientTokenOptions {
            ttl: Duration::from_millis(500),
            ..Default::default()
        };
        assert_eq!(
            payload_of(&mint_client_token_at("k", "a", &options, 10))["exp"],
            json!(11)
        );
        let options = ClientTokenOptions {
            ttl: Duration::MAX,
            ..Default::default()
        };
        assert_eq!(
            payload_of(&mint_client_token_at("k", "a", &options, 10))["exp"],
            json!(u64::MAX)
        );
    }
}

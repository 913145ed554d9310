//! Token lifetime on live connections: what a connection knows of the token
//! it holds ([`Lease`]), the deadline that closes it once that token has
//! expired (on hubs that enforce expiry), and the hub's list of revoked
//! tokens ([`RevocationList`]).
//!
//! Deadlines live in the hub's heartbeat queue (`heartbeat.rs`), beside the
//! ping schedule: an idle connection costs no task and no timer of its own.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_auth::Claims;
use portcullis_hub::Revocation;

/// What a connection knows of the token it holds now (the handshake's, or
/// the last one refreshed in band).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The token's `jti`.
    pub token_id: Option<Box<str>>,
    /// Its `iat`, unix seconds.
    pub issued_at: Option<u64>,
    /// Its `exp`, unix seconds.
    pub expires_at: Option<u64>,
    /// When the connection is closed unless a fresh token arrives first:
    /// `exp` plus the hub's grace, on hubs that enforce expiry.
    pub deadline: Option<Instant>,
    /// Fingerprint of the last token refreshed in band: later requests of
    /// the session may carry it as well as the handshake's (a client that
    /// refreshed updates its query for new transports only).
    pub refreshed_fingerprint: Option<u64>,
}

impl Lease {
    /// The lease of a token with these claims; `grace` is the hub's
    /// expiry grace when it enforces expiry.
    pub fn of(claims: &Claims, grace: Option<Duration>) -> Self {
        let expires_at = claims.expires_at();
        Lease {
            token_id: claims.token_id().map(Box::from),
            issued_at: claims.issued_at(),
            expires_at,
            deadline: grace.and_then(|grace| Some(deadline(expires_at?, grace))),
            refreshed_fingerprint: None,
        }
    }

    /// Whether `revocation` covers this lease's token (of `user`).
    pub fn revoked_by(&self, revocation: &Revocation, user: Option<&str>) -> bool {
        revocation.covers(self.token_id.as_deref(), user, self.issued_at)
    }
}

/// The instant `grace` after the unix time `exp` (now + grace if `exp` has
/// passed: a token accepted within the verifier's leeway still gets its
/// grace).
fn deadline(exp: u64, grace: Duration) -> Instant {
    let left = Duration::from_secs(exp).saturating_sub(unix_now());
    Instant::now() + left + grace
}

/// The current unix time.
pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The revocations of one hub, each kept until the tokens it covers have
/// expired anyway, and bounded in number.
#[derive(Debug, Default)]
pub(crate) struct RevocationList {
    /// Revoked `jti`s and when to forget them.
    tokens: HashMap<String, u64>,
    /// Per user: tokens issued before `.0` are revoked; forget at `.1`.
    users: HashMap<String, (u64, u64)>,
}

/// The list is full of revocations that have not expired yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RevocationListFull(pub usize);

impl RevocationList {
    /// Records a revocation, kept until the tokens it covers have expired:
    /// a token's `exp` when given, else `ttl` (the longest lifetime tokens
    /// are minted with) after now or after the user's revocation time.
    /// `max` bounds the entries; expired ones make room first.
    pub fn add(
        &mut self,
        revocation: &Revocation,
        ttl: Duration,
        max: usize,
    ) -> Result<(), RevocationListFull> {
        let now = unix_now().as_secs();
        let until = match revocation {
            Revocation::Token { expires_at, .. } => {
                expires_at.unwrap_or_else(|| now.saturating_add(ttl.as_secs()))
            }
            Revocation::User { issued_before, .. } => issued_before.saturating_add(ttl.as_secs()),
        };
        if until <= now {
            // Covers only tokens that are expired already.
            return Ok(());
        }
        let is_new = match revocation {
            Revocation::Token { id, .. } => !self.tokens.contains_key(id),
            Revocation::User { user, .. } => !self.users.contains_key(user),
        };
        if is_new && self.len() >= max {
            self.forget_expired(now);
            if self.len() >= max {
                return Err(RevocationListFull(max));
            }
        }
        match revocation {
            Revocation::Token { id, .. } => {
                let kept = self.tokens.entry(id.clone()).or_default();
                *kept = (*kept).max(until);
            }
            Revocation::User {
                user,
                issued_before,
            } => {
                let kept = self.users.entry(user.clone()).or_default();
                *kept = (kept.0.max(*issued_before), kept.1.max(until));
            }
        }
        Ok(())
    }

    /// Whether a token with these claims is revoked.
    pub fn revokes(&self, claims: &Claims) -> bool {
        self.revokes_token(claims.token_id(), claims.user_id(), claims.issued_at())
    }

    /// Whether a connection's lease (of `user`) holds a revoked token.
    pub fn revokes_lease(&self, lease: &Lease, user: Option<&str>) -> bool {
        self.revokes_token(lease.token_id.as_deref(), user, lease.issued_at)
    }

    fn revokes_token(&self, id: Option<&str>, user: Option<&str>, issued_at: Option<u64>) -> bool {
        if self.is_empty() {
            return false;
        }
        let now = unix_now().as_secs();
        let by_id = id
            .and_then(|id| self.tokens.get(id))
            .is_some_and(|until| *until > now);
        by_id
            || user
                .and_then(|user| self.users.get(user))
                .is_some_and(|(before, until)| *until > now && issued_at.unwrap_or(0) < *before)
    }

    pub fn len(&self) -> usize {
        self.tokens.len() + self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.users.is_empty()
    }

    fn forget_expired(&mut self, now: u64) {
        self.tokens.retain(|_, until| *until > now);
        self.users.retain(|_, (_, until)| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: serde_json::Value) -> Claims {
        Claims::from_json(json.as_object().unwrap())
    }

    const TTL: Duration = Duration::from_secs(3600);

    fn later(secs: u64) -> u64 {
        unix_now().as_secs() + secs
    }

    #[test]
    fn a_lease_has_a_deadline_only_where_expiry_is_enforced() {
        let c = claims(serde_json::json!({"exp": later(60), "iat": 1, "jti": "t"}));
        let lease = Lease::of(&c, None);
        assert_eq!(lease.deadline, None);
        assert_eq!(lease.token_id.as_deref(), Some("t"));
        let lease = Lease::of(&c, Some(Duration::from_secs(25)));
        let left = lease.deadline.unwrap() - Instant::now();
        assert!(left > Duration::from_secs(80) && left <= Duration::from_secs(85));
    }

    #[test]
    fn an_expired_token_still_gets_its_grace() {
        let c = claims(serde_json::json!({"exp": 1}));
        let lease = Lease::of(&c, Some(Duration::from_secs(25)));
        let left = lease.deadline.unwrap() - Instant::now();
        assert!(left > Duration::from_secs(24));
    }

    #[test]
    fn revoked_tokens_and_users() {
        let mut list = RevocationList::default();
        let token = Revocation::Token {
            id: "t1".into(),
            expires_at: Some(later(60)),
        };
        list.add(&token, TTL, 10).unwrap();
        let logout = later(0);
        let bob = Revocation::User {
            user: "bob".into(),
            issued_before: logout,
        };
        list.add(&bob, TTL, 10).unwrap();
        assert!(list.revokes(&claims(serde_json::json!({"jti": "t1"}))));
        assert!(!list.revokes(&claims(serde_json::json!({"jti": "t2"}))));
        let issued = |iat: u64| claims(serde_json::json!({"sub": "bob", "iat": iat}));
        assert!(list.revokes(&issued(logout - 1)));
        assert!(!list.revokes(&issued(logout)), "a new login");
        assert!(!list.revokes(&claims(serde_json::json!({"sub": "al", "iat": 1}))));
    }

    #[test]
    fn expired_revocations_are_not_kept_and_make_room() {
        let mut list = RevocationList::default();
        let past = Revocation::Token {
            id: "old".into(),
            expires_at: Some(1),
        };
        list.add(&past, TTL, 1).unwrap();
        let long_ago = Revocation::User {
            user: "bob".into(),
            issued_before: 1,
        };
        list.add(&long_ago, TTL, 1).unwrap();
        assert!(list.is_empty(), "covers only expired tokens");
        list.tokens.insert("stale".into(), 1);
        let fresh = Revocation::Token {
            id: "new".into(),
            expires_at: None,
        };
        list.add(&fresh, TTL, 1).unwrap();
        assert_eq!(list.len(), 1, "the stale entry made room");
        let until = list.tokens["new"];
        assert!(
            until >= later(3590) && until <= later(3600),
            "kept for the ttl"
        );
        let another = Revocation::Token {
            id: "another".into(),
            expires_at: Some(later(60)),
        };
        assert_eq!(list.add(&another, TTL, 1), Err(RevocationListFull(1)));
        // Revoking the same token again needs no room.
        list.add(&fresh, TTL, 1).unwrap();
    }
}

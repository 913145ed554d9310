//! The operator page's login sessions: random ids, an expiry each, and a
//! bound on how many exist at once (the oldest goes first).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore;

/// Live sessions by id.
#[derive(Debug)]
pub(crate) struct Sessions {
    ttl: Duration,
    max: usize,
    by_id: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    /// At most `max` sessions, each valid for `ttl` after login.
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Sessions {
            ttl,
            max: max.max(1),
            by_id: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session; returns its id (256 random bits, URL-safe base64).
    /// At the bound, expired sessions go first, then the oldest.
    pub(crate) fn open(&self) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut sessions = self.lock();
        if sessions.len() >= self.max {
            sessions.retain(|_, expiry| *expiry > now);
        }
        while sessions.len() >= self.max {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, expiry)| **expiry)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(oldest) => sessions.remove(&oldest),
                None => break,
            };
        }
        sessions.insert(id.clone(), now + self.ttl);
        id
    }

    /// Whether `id` names a live session.
    pub(crate) fn is_valid(&self, id: &str) -> bool {
        let mut sessions = self.lock();
        match sessions.get(id) {
            Some(expiry) if *expiry > Instant::now() => true,
            Some(_) => {
                sessions.remove(id);
                false
            }
            None => false,
        }
    }

    /// Ends a session (logout).
    pub(crate) fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    /// How long a session lasts.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_bounded_and_expire() {
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let a = sessions.open();
        let b = sessions.open();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(sessions.is_valid(&a) && sessions.is_valid(&b));
        let c = sessions.open();
        assert!(!sessions.is_valid(&a), "the oldest session makes room");
        assert!(sessions.is_valid(&b) && sessions.is_valid(&c));
        sessions.close(&b);
        assert!(!sessions.is_valid(&b));

        let short = Sessions::new(Duration::from_millis(1), 10);
        let id = short.open();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!short.is_valid(&id));
    }
}

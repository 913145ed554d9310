//! Admission: the counts a handshake must fit in before the application
//! hears of it, so that one token, one user or one address cannot fill the
//! gateway.
//!
//! Every count is taken and given back under one lock, so concurrent
//! handshakes cannot all pass a check that only one of them fits (the race
//! of checking a count and registering later). A [`Ticket`] holds a
//! handshake's share from the check until its connection ends.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use http::StatusCode;

use crate::engine::{EngineError, ErrorCode};
use crate::metrics::RefusalReason;

/// The limits; 0 means no limit for the per-user and per-address ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Connections held at once, handshakes in progress included.
    pub max_connections: usize,
    /// Handshakes waiting for the application's verdict at once.
    pub max_pending_handshakes: usize,
    /// Connections of one user (the token's `sub`) at once; 0: no limit.
    pub max_connections_per_user: usize,
    /// Connections from one client IP address at once; 0: no limit.
    pub max_connections_per_address: usize,
}

/// The gateway's admission counts.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: AdmissionLimits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    connections: usize,
    pending: usize,
    per_user: HashMap<Arc<str>, usize>,
    per_address: HashMap<IpAddr, usize>,
}

/// Who is asking.
#[derive(Debug, Clone, Default)]
pub(crate) struct Applicant {
    pub user: Option<Arc<str>>,
    pub address: Option<IpAddr>,
}

impl Admission {
    pub(crate) fn new(limits: AdmissionLimits) -> Arc<Self> {
        Arc::new(Admission {
            limits,
            counts: Mutex::default(),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a connection slot and a pending-handshake slot for `applicant`,
    /// or says which limit it hit.
    pub(crate) fn admit(self: &Arc<Self>, applicant: Applicant) -> Result<Ticket, EngineError> {
        let limits = self.limits;
        let mut counts = self.counts();
        if counts.connections >= limits.max_connections {
            return Err(busy(
                "the gateway is at its connection limit (--max-connections); try again later",
            )
            .with_reason(RefusalReason::ConnectionLimit));
        }
        if counts.pending >= limits.max_pending_handshakes {
            return Err(busy(
                "too many handshakes are waiting for the application (--max-pending-handshakes); try again shortly",
            )
            .with_reason(RefusalReason::PendingLimit));
        }
        if at_limit(
            &counts.per_user,
            &applicant.user,
            limits.max_connections_per_user,
        ) {
            return Err(too_many(
                "this user has as many connections as allowed (--max-connections-per-user); close one first",
            )
            .with_reason(RefusalReason::UserLimit));
        }
        if at_limit(
            &counts.per_address,
            &applicant.address,
            limits.max_connections_per_address,
        ) {
            return Err(too_many(
                "this address has as many connections as allowed (--max-connections-per-address); close one first",
            )
            .with_reason(RefusalReason::AddressLimit));
        }
        counts.connections += 1;
        counts.pending += 1;
        take(
            &mut counts.per_user,
            &applicant.user,
            limits.max_connections_per_user,
        );
        take(
            &mut counts.per_address,
            &applicant.address,
            limits.max_connections_per_address,
        );
        Ok(Ticket {
            admission: self.clone(),
            applicant,
            pending: true,
        })
    }

    /// Connections held, handshakes in progress included.
    #[cfg(test)]
    fn connections(&self) -> usize {
        self.counts().connections
    }
}

/// A handshake's (then its connection's) share of the counts; given back
/// when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    applicant: Applicant,
    pending: bool,
}

impl Ticket {
    /// The application answered: the handshake no longer counts as pending.
    pub(crate) fn settled(&mut self) {
        if std::mem::take(&mut self.pending) {
            self.admission.counts().pending -= 1;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let limits = self.admission.limits;
        let mut counts = self.admission.counts();
        counts.connections -= 1;
        if self.pending {
            counts.pending -= 1;
        }
        give_back(
            &mut counts.per_user,
            &self.applicant.user,
            limits.max_connections_per_user,
        );
        give_back(
            &mut counts.per_address,
            &self.applicant.address,
            limits.max_connections_per_address,
        );
    }
}

fn at_limit<K: Eq + Hash>(map: &HashMap<K, usize>, key: &Option<K>, limit: usize) -> bool {
    match key {
        Some(key) if limit > 0 => map.get(key).is_some_and(|n| *n >= limit),
        _ => false,
    }
}

// Keys are only counted while their limit is on, so an unlimited gateway
// keeps no per-user or per-address map at all.
fn take<K: Eq + Hash + Clone>(map: &mut HashMap<K, usize>, key: &Option<K>, limit: usize) {
    if let Some(key) = key.as_ref().filter(|_| limit > 0) {
        *map.entry(key.clone()).or_default() += 1;
    }
}

fn give_back<K: Eq + Hash>(map: &mut HashMap<K, usize>, key: &Option<K>, limit: usize) {
    let Some(key) = key.as_ref().filter(|_| limit > 0) else {
        return;
    };
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

fn busy(message: &'static str) -> EngineError {
    EngineError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Forbidden,
        message,
    )
}

fn too_many(message: &'static str) -> EngineError {
    EngineError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::Forbidden, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_connections: 10,
            max_pending_handshakes: 3,
            max_connections_per_user: 2,
            max_connections_per_address: 4,
        }
    }

    fn user(name: &str) -> Applicant {
        Applicant {
            user: Some(Arc::from(name)),
            address: None,
        }
    }

    #[test]
    fn a_user_gets_its_share_and_gets_it_back() {
        let admission = Admission::new(limits());
        let mut first = admission.admit(user("bob")).unwrap();
        first.settled();
        let mut second = admission.admit(user("bob")).unwrap();
        second.settled();
        let refused = admission.admit(user("bob")).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            admission.admit(user("alice")).is_ok(),
            "others are not affected"
        );
        drop(first);
        assert!(admission.admit(user("bob")).is_ok());
    }

    #[test]
    fn pending_handshakes_are_bounded_until_settled() {
        let admission = Admission::new(limits());
        let mut tickets: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|u| admission.admit(user(u)).unwrap())
            .collect();
        let refused = admission.admit(user("d")).unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        tickets[0].settled();
        assert!(admission.admit(user("d")).is_ok());
    }

    #[test]
    fn addresses_and_the_total_are_bounded_and_counts_return_to_zero() {
        let admission = Admission::new(limits());
        let from = |ip: [u8; 4]| Applicant {
            user: None,
            address: Some(IpAddr::from(ip)),
        };
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut ticket = admission.admit(from([10, 0, 0, 1])).unwrap();
            ticket.settled();
            held.push(ticket);
        }
        assert!(admission.admit(from([10, 0, 0, 1])).is_err());
        for i in 0..6 {
            let mut ticket = admission.admit(from([10, 0, 0, 2 + i])).unwrap();
            ticket.settled();
            held.push(ticket);
        }
        let refused = admission.admit(from([10, 0, 1, 1])).unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        drop(held);
        assert_eq!(admission.connections(), 0);
        let counts = admission.counts();
        assert!(counts.per_address.is_empty() && counts.pending == 0);
    }
}

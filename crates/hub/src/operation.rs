//! Hub operations as data.
//!
//! Everything a handler, an application server or the REST API can ask of a
//! hub is one [`Operation`]: a value that can be applied to the local hub, or
//! serialised and sent to another node that holds some of the connections.
//! Sends, group changes and closes name *who* with a [`Selection`] (a group
//! scope and a [`Filter`]), so "this connection", "this user", "this group
//! except these connections" and OData filters are one shape.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};

use crate::{BoxFuture, ConnectionId, Filter, Payload};

/// The connections an operation is for: the members of `group` (every
/// connection of the hub when `None`) that match `filter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Only members of this group.
    pub group: Option<String>,
    /// Only connections matching this filter.
    pub filter: Filter,
}

impl Selection {
    /// Every connection of the hub.
    pub fn all() -> Self {
        Selection::matching(Filter::All)
    }

    /// The connections matching `filter`.
    pub fn matching(filter: Filter) -> Self {
        Selection {
            group: None,
            filter,
        }
    }

    /// One connection.
    pub fn connection(id: impl Into<String>) -> Self {
        Selection::matching(Filter::ConnectionId(id.into()))
    }

    /// Every connection of a user.
    pub fn user(id: impl Into<String>) -> Self {
        Selection::matching(Filter::UserId(id.into()))
    }

    /// Every member of a group.
    pub fn group(group: impl Into<String>) -> Self {
        Selection {
            group: Some(group.into()),
            filter: Filter::All,
        }
    }

    /// Narrows the selection to the connections that also match `filter`.
    pub fn and(mut self, filter: Filter) -> Self {
        self.filter = self.filter.and(filter);
        self
    }

    /// Leaves out these connections.
    pub fn excluding(self, connections: &[String]) -> Self {
        connections.iter().fold(self, |selection, id| {
            selection.and(Filter::Not(Box::new(Filter::ConnectionId(id.clone()))))
        })
    }
}

/// Which groups a connection leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Groups {
    /// These groups.
    Named(Vec<String>),
    /// The groups whose names start with this prefix (a Socket.IO
    /// namespace's groups share one).
    Prefixed(String),
    /// Every group.
    All,
}

impl Groups {
    /// Whether `group` is one of them.
    pub fn contains(&self, group: &str) -> bool {
        match self {
            Groups::Named(names) => names.iter().any(|n| n == group),
            Groups::Prefixed(prefix) => group.starts_with(prefix.as_str()),
            Groups::All => true,
        }
    }
}

/// One operation on a hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// Delivers a payload to the selected connections.
    Send {
        /// Who.
        to: Selection,
        /// What, encoded once for every recipient.
        payload: Payload,
    },
    /// The selected connections join every group of `groups`.
    Join {
        /// Who.
        who: Selection,
        /// The groups.
        groups: Vec<String>,
    },
    /// The selected connections leave `groups`.
    Leave {
        /// Who.
        who: Selection,
        /// Which of their groups.
        groups: Groups,
    },
    /// Closes the selected connections; clients get an Engine.IO close
    /// packet and handlers `on_disconnected` with
    /// [`DisconnectReason::ServerClosed`](crate::DisconnectReason::ServerClosed).
    Close {
        /// Who.
        who: Selection,
        /// Why, passed on to the handler.
        reason: String,
    },
    /// Whether any connection is selected.
    Exists(Selection),
    /// The groups a connection is in.
    GroupsOf(ConnectionId),
    /// Revokes tokens: handshakes and refreshes with them are refused from
    /// now on, and connections holding one are closed with
    /// [`DisconnectReason::TokenRevoked`](crate::DisconnectReason::TokenRevoked).
    /// The outcome is [`Outcome::Done`]: whether the revocation is recorded.
    Revoke(Revocation),
}

/// Which tokens a [`Operation::Revoke`] covers. A hub keeps a revocation
/// until the tokens it covers have expired anyway, then forgets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Revocation {
    /// One token, by its `jti` claim.
    Token {
        /// The token's `jti`.
        id: String,
        /// The token's `exp` (unix seconds), when the caller knows it; else
        /// the hub keeps the revocation for its longest token lifetime.
        expires_at: Option<u64>,
    },
    /// Every token of a user (`sub`) issued before a time.
    User {
        /// The user.
        user: String,
        /// Tokens with `iat` before this (unix seconds) are revoked; tokens
        /// issued at or after it are not, so the user can log in again at once.
        issued_before: u64,
    },
}

impl Revocation {
    /// Whether it covers a token with this `jti`, user and `iat`. A token
    /// without `iat` counts as issued at the beginning of time.
    pub fn covers(
        &self,
        token_id: Option<&str>,
        user: Option<&str>,
        issued_at: Option<u64>,
    ) -> bool {
        match self {
            Revocation::Token { id, .. } => token_id == Some(id.as_str()),
            Revocation::User {
                user: revoked,
                issued_before,
            } => user == Some(revoked.as_str()) && issued_at.unwrap_or(0) < *issued_before,
        }
    }
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// How many connections it reached (sends, group changes, closes).
    Count(usize),
    /// The answer of [`Operation::Exists`].
    Exists(bool),
    /// The answer of [`Operation::GroupsOf`] (empty for an unknown connection).
    Groups(Vec<String>),
    /// Whether an operation that reaches no connection in particular took
    /// effect ([`Operation::Revoke`]: the revocation is recorded).
    Done(bool),
}

impl Outcome {
    /// The count of a send, group change or close (0 for the others).
    pub fn count(&self) -> usize {
        match self {
            Outcome::Count(n) => *n,
            Outcome::Exists(found) => usize::from(*found),
            Outcome::Groups(groups) => groups.len(),
            Outcome::Done(done) => usize::from(*done),
        }
    }

    /// Combines the outcomes of one operation applied to two parts of a hub
    /// (two nodes): counts add up, a connection exists if it exists in
    /// either, groups are united, and a revocation is done only if done in
    /// both. Outcomes of different kinds (which one operation never gives)
    /// keep `self`.
    pub fn merge(self, other: Outcome) -> Outcome {
        match (self, other) {
            (Outcome::Count(a), Outcome::Count(b)) => Outcome::Count(a + b),
            (Outcome::Exists(a), Outcome::Exists(b)) => Outcome::Exists(a || b),
            (Outcome::Groups(mut a), Outcome::Groups(b)) => {
                for group in b {
                    if !a.contains(&group) {
                        a.push(group);
                    }
                }
                Outcome::Groups(a)
            }
            (Outcome::Done(a), Outcome::Done(b)) => Outcome::Done(a && b),
            (mine, _) => mine,
        }
    }
}

/// An applied operation: done already (a hub in this process), or on its way
/// (a hub whose connections are partly elsewhere).
///
/// The operation takes effect whether or not this is awaited: awaiting it
/// only gives its [`Outcome`]. So a handler that does not need the outcome
/// drops it, and pays nothing for a local hub.
pub struct Applied(AppliedState);

enum AppliedState {
    Ready(Option<Outcome>),
    Pending(BoxFuture<'static, Outcome>),
}

impl Applied {
    /// An operation already applied.
    pub fn ready(outcome: Outcome) -> Self {
        Applied(AppliedState::Ready(Some(outcome)))
    }

    /// An operation whose outcome comes later. The future must not be needed
    /// for the operation to take effect (see the type's documentation).
    pub fn pending(outcome: impl Future<Output = Outcome> + Send + 'static) -> Self {
        Applied(AppliedState::Pending(Box::pin(outcome)))
    }

    /// The outcome, if the operation is already applied.
    pub fn now(self) -> Option<Outcome> {
        match self.0 {
            AppliedState::Ready(outcome) => outcome,
            AppliedState::Pending(_) => None,
        }
    }
}

impl Future for Applied {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        match &mut self.0 {
            AppliedState::Ready(outcome) => Poll::Ready(
                outcome
                    .take()
                    .expect("an Applied polled after it completed"),
            ),
            AppliedState::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl std::fmt::Debug for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            AppliedState::Ready(outcome) => f.debug_tuple("Applied::Ready").field(outcome).finish(),
            AppliedState::Pending(_) => f.write_str("Applied::Pending"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frame;

    #[test]
    fn operations_survive_serialisation() {
        let payload = Payload::from_frames(vec![
            Frame::text("451-[\"file\",{\"_placeholder\":true,\"num\":0}]"),
            Frame::Binary(bytes::Bytes::from_static(&[0, 1, 255])),
        ]);
        let operations = [
            Operation::Send {
                to: Selection::group("0~Lw~").excluding(&["a".into(), "b".into()]),
                payload,
            },
            Operation::Join {
                who: Selection::user("alice"),
                groups: vec!["g1".into(), "g2".into()],
            },
            Operation::Leave {
                who: Selection::connection("c1"),
                groups: Groups::Prefixed("0~L2NoYXQ~".into()),
            },
            Operation::Close {
                who: Selection::matching(Filter::UserIdIsNull),
                reason: "bye".into(),
            },
            Operation::Exists(Selection::group("g")),
            Operation::GroupsOf(ConnectionId::from("c1")),
            Operation::Revoke(Revocation::Token {
                id: "t1".into(),
                expires_at: Some(10),
            }),
            Operation::Revoke(Revocation::User {
                user: "bob".into(),
                issued_before: 5,
            }),
        ];
        for operation in operations {
            let json = serde_json::to_string(&operation).unwrap();
            let back: Operation = serde_json::from_str(&json).unwrap();
            assert_eq!(back, operation, "{json}");
        }
    }

    #[test]
    fn revocations_cover_their_tokens_only() {
        let token = Revocation::Token {
            id: "t1".into(),
            expires_at: None,
        };
        assert!(token.covers(Some("t1"), None, None));
        assert!(!token.covers(Some("t2"), Some("bob"), Some(1)));
        assert!(!token.covers(None, Some("bob"), Some(1)));
        let user = Revocation::User {
            user: "bob".into(),
            issued_before: 100,
        };
        assert!(user.covers(None, Some("bob"), Some(99)));
        assert!(user.covers(Some("x"), Some("bob"), None));
        assert!(
            !user.covers(None, Some("bob"), Some(100)),
            "issued at the revocation time"
        );
        assert!(!user.covers(None, Some("alice"), Some(1)));
        assert!(!user.covers(None, None, Some(1)));
    }

    #[test]
    fn outcomes_of_two_nodes_merge() {
        assert_eq!(
            Outcome::Count(2).merge(Outcome::Count(3)),
            Outcome::Count(5)
        );
        assert_eq!(
            Outcome::Exists(false).merge(Outcome::Exists(true)),
            Outcome::Exists(true)
        );
        assert_eq!(
            Outcome::Groups(vec!["a".into(), "b".into()])
                .merge(Outcome::Groups(vec!["b".into(), "c".into()])),
            Outcome::Groups(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            Outcome::Done(true).merge(Outcome::Done(false)),
            Outcome::Done(false)
        );
    }

    #[test]
    fn excluding_narrows_with_negations() {
        let selection = Selection::all().excluding(&["x".into()]);
        assert_eq!(
            selection.filter,
            Filter::Not(Box::new(Filter::ConnectionId("x".into())))
        );
    }

    #[test]
    fn prefixed_groups() {
        let groups = Groups::Prefixed("0~Lw~".into());
        assert!(groups.contains("0~Lw~cm9vbQ"));
        assert!(!groups.contains("0~L2E~"));
        assert!(Groups::All.contains("anything"));
    }

    #[tokio::test]
    async fn ready_and_pending_outcomes_are_awaited_alike() {
        assert_eq!(Applied::ready(Outcome::Count(3)).await, Outcome::Count(3));
        assert_eq!(
            Applied::pending(async { Outcome::Exists(true) }).await,
            Outcome::Exists(true)
        );
        assert_eq!(Applied::pending(async { Outcome::Count(1) }).now(), None);
    }
}

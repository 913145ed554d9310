//! Which connections of a hub an operation targets.
//!
//! The tunnel's OData parser (a later layer) produces a [`Filter`]; the Rust
//! server builds one directly. Evaluation is planned: when a filter requires
//! membership of some group, only that group's members are tested.

/// A predicate over a hub's connections.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Filter {
    /// Every connection.
    All,
    /// `connectionId eq 'id'`.
    ConnectionId(String),
    /// `userId eq 'user'`.
    UserId(String),
    /// `userId eq null`: the connection has no user id.
    UserIdIsNull,
    /// `'group' in groups`.
    InGroup(String),
    /// Negation.
    Not(Box<Filter>),
    /// Every operand holds.
    And(Vec<Filter>),
    /// At least one operand holds.
    Or(Vec<Filter>),
}

/// What a filter is evaluated against.
pub trait FilterSubject {
    /// The connection id.
    fn connection_id(&self) -> &str;
    /// The connection's user id, if any.
    fn user_id(&self) -> Option<&str>;
    /// Whether the connection is in `group`.
    fn in_group(&self, group: &str) -> bool;
}

/// Where to look for the connections a filter may match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidates<'a> {
    /// Scan every connection of the hub.
    Everyone,
    /// Only these connection ids can match.
    Connections(Vec<&'a str>),
    /// Only members of these groups can match (a union).
    Groups(Vec<&'a str>),
}

impl Filter {
    /// Whether `subject` matches.
    pub fn matches(&self, subject: &impl FilterSubject) -> bool {
        match self {
            Filter::All => true,
            Filter::ConnectionId(id) => subject.connection_id() == id,
            Filter::UserId(user) => subject.user_id() == Some(user.as_str()),
            Filter::UserIdIsNull => subject.user_id().is_none(),
            Filter::InGroup(group) => subject.in_group(group),
            Filter::Not(inner) => !inner.matches(subject),
            Filter::And(all) => all.iter().all(|f| f.matches(subject)),
            Filter::Or(any) => any.iter().any(|f| f.matches(subject)),
        }
    }

    /// The smallest set of connections that can match, found without
    /// looking at any connection: a positive group or connection-id term in
    /// a top-level `and`, or the union of such terms across an `or`.
    pub fn candidates(&self) -> Candidates<'_> {
        match self {
            Filter::ConnectionId(id) => Candidates::Connections(vec![id]),
            Filter::InGroup(group) => Candidates::Groups(vec![group]),
            Filter::And(all) => all
                .iter()
                .map(Filter::candidates)
                .find(|c| *c != Candidates::Everyone)
                .unwrap_or(Candidates::Everyone),
            Filter::Or(any) => union(any.iter().map(Filter::candidates)),
            Filter::All | Filter::UserId(_) | Filter::UserIdIsNull | Filter::Not(_) => {
                Candidates::Everyone
            }
        }
    }

    /// `self and other`, flattening nested `and`s.
    pub fn and(self, other: Filter) -> Filter {
        match (self, other) {
            (Filter::All, f) | (f, Filter::All) => f,
            (Filter::And(mut a), Filter::And(b)) => {
                a.extend(b);
                Filter::And(a)
            }
            (Filter::And(mut a), f) => {
                a.push(f);
                Filter::And(a)
            }
            (f, g) => Filter::And(vec![f, g]),
        }
    }
}

fn union<'a>(parts: impl Iterator<Item = Candidates<'a>>) -> Candidates<'a> {
    let mut connections = Vec::new();
    let mut groups = Vec::new();
    for part in parts {
        match part {
            Candidates::Everyone => return Candidates::Everyone,
            Candidates::Connections(c) => connections.extend(c),
            Candidates::Groups(g) => groups.extend(g),
        }
    }
    // Mixed unions are rare; scanning is simpler than merging two kinds.
    match (connections.is_empty(), groups.is_empty()) {
        (false, true) => Candidates::Connections(connections),
        (true, false) => Candidates::Groups(groups),
        _ => Candidates::Everyone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Subject {
        id: &'static str,
        user: Option<&'static str>,
        groups: &'static [&'static str],
    }

    impl FilterSubject for Subject {
        fn connection_id(&self) -> &str {
            self.id
        }
        fn user_id(&self) -> Option<&str> {
            self.user
        }
        fn in_group(&self, group: &str) -> bool {
            self.groups.contains(&group)
        }
    }

    const ALICE: Subject = Subject {
        id: "c1",
        user: Some("alice"),
        groups: &["a", "b"],
    };

    #[test]
    fn evaluates() {
        assert!(Filter::All.matches(&ALICE));
        assert!(Filter::ConnectionId("c1".into()).matches(&ALICE));
        assert!(!Filter::ConnectionId("c2".into()).matches(&ALICE));
        assert!(Filter::UserId("alice".into()).matches(&ALICE));
        let f = Filter::InGroup("a".into()).and(Filter::Not(Box::new(Filter::InGroup("b".into()))));
        assert!(!f.matches(&ALICE));
        let g = Filter::Or(vec![
            Filter::InGroup("x".into()),
            Filter::UserId("alice".into()),
        ]);
        assert!(g.matches(&ALICE));
    }

    #[test]
    fn plans_candidates_from_positive_terms() {
        let f = Filter::Not(Box::new(Filter::InGroup("b".into()))).and(Filter::InGroup("a".into()));
        assert_eq!(f.candidates(), Candidates::Groups(vec!["a"]));
        let g = Filter::Or(vec![
            Filter::InGroup("x".into()),
            Filter::InGroup("y".into()),
        ]);
        assert_eq!(g.candidates(), Candidates::Groups(vec!["x", "y"]));
        let h = Filter::Or(vec![
            Filter::InGroup("x".into()),
            Filter::UserId("u".into()),
        ]);
        assert_eq!(h.candidates(), Candidates::Everyone);
        assert_eq!(
            Filter::ConnectionId("c".into()).candidates(),
            Candidates::Connections(vec!["c"])
        );
    }
}

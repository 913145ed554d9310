//! The REST calls of the official SDK (`InprocessServerProxy`), built for
//! the tunnel: same methods, paths, query encoding, headers and bodies
//! (protocol reference §3.10, §4), and [`route`], which turns each hub
//! [`Operation`] into the call the SDK would make for it.

use bytes::Bytes;
use portcullis_hub::{Filter, Groups, Operation, Outcome, Payload, Revocation, Selection, odata};
use portcullis_protocol::engine::Packet as EioPacket;
use portcullis_tunnel::rest::{GroupsBody, RestCall};

use crate::conn_id::ConnId;

/// The SDK's placeholder host (the tunnel is the real destination).
const HOST: &str = "https://host";

/// One REST call, as carried by a tunnel `HttpRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub method: &'static str,
    pub url: String,
    pub content_type: Option<&'static str>,
    pub body: Option<Bytes>,
}

impl Call {
    /// `rest` as the SDK sends it (its method, `https://host` + its path and
    /// query), with this body.
    fn new(rest: &RestCall, content_type: Option<&'static str>, body: Option<Bytes>) -> Self {
        Call {
            method: rest.method(),
            url: format!("{HOST}{}", rest.path_and_query()),
            content_type,
            body,
        }
    }

    /// A `text/plain` call whose body is the Engine.IO payload text.
    fn with_payload(rest: &RestCall, payload: &Payload) -> Self {
        Self::new(rest, Some("text/plain"), text_body(payload))
    }

    /// An `application/json` call whose body is `{"groups":[…],"filter":"…"}`.
    fn with_groups(rest: &RestCall, groups: &[String], filter: &Filter) -> Self {
        let body = GroupsBody {
            groups: groups.to_vec(),
            filter: Some(odata::to_odata(filter)),
        };
        // Serialising strings cannot fail.
        let json = serde_json::to_vec(&body).unwrap_or_default();
        Self::new(rest, Some("application/json"), Some(Bytes::from(json)))
    }
}

/// The `filter` query value: the OData text, or none for "everyone".
fn filter_text(filter: &Filter) -> Option<String> {
    (*filter != Filter::All).then(|| odata::to_odata(filter))
}

fn text_body(payload: &Payload) -> Option<Bytes> {
    Some(Bytes::from(payload.to_polling_text()))
}

/// `POST …/connections/{id}/:send` → 202.
pub(crate) fn send_to_connection(hub: &str, connection: &ConnId, payload: &Payload) -> Call {
    let rest = RestCall::SendToConnection {
        hub: hub.to_owned(),
        connection_id: connection.to_string(),
    };
    Call::with_payload(&rest, payload)
}

/// A broadcast as the SDK's adapter sends it: a group send when the filter
/// requires one group (the rest as a filter), else a hub send with the
/// filter. → 202.
pub(crate) fn broadcast(hub: &str, filter: &Filter, payload: &Payload) -> Call {
    let hub = hub.to_owned();
    // The group the filter requires first, and the terms after it.
    let (group, others) = match filter {
        Filter::InGroup(group) => (Some(group), None),
        Filter::And(terms) => match terms.as_slice() {
            [Filter::InGroup(group), others @ ..] => (Some(group), Some(others)),
            _ => (None, None),
        },
        _ => (None, None),
    };
    let call = match group {
        Some(group) => RestCall::SendToGroup {
            hub,
            group: group.clone(),
            filter: others.and_then(|others| match others {
                [only] => filter_text(only),
                more => filter_text(&Filter::And(more.to_vec())),
            }),
        },
        None => RestCall::SendToAll {
            hub,
            filter: filter_text(filter),
        },
    };
    Call::with_payload(&call, payload)
}

/// `POST …/:addToGroups` with `connectionId eq '…'` → 200.
pub(crate) fn add_to_groups(hub: &str, connection: &ConnId, groups: &[String]) -> Call {
    add_where(hub, groups, &Filter::ConnectionId(connection.to_string()))
}

/// `POST …/:addToGroups` with any filter → 200.
pub(crate) fn add_where(hub: &str, groups: &[String], filter: &Filter) -> Call {
    let rest = RestCall::AddToGroups {
        hub: hub.to_owned(),
    };
    Call::with_groups(&rest, groups, filter)
}

/// One group: `DELETE …/groups/{g}/connections/{id}` (what `socket.leave`
/// sends); several: `POST …/:removeFromGroups` → 200.
pub(crate) fn remove_from_groups(hub: &str, connection: &ConnId, groups: &[String]) -> Call {
    let hub = hub.to_owned();
    match groups {
        [group] => {
            let rest = RestCall::RemoveConnectionFromGroup {
                hub,
                group: group.clone(),
                connection_id: connection.to_string(),
            };
            Call::new(&rest, None, None)
        }
        _ => {
            let filter = Filter::ConnectionId(connection.to_string());
            Call::with_groups(&RestCall::RemoveFromGroups { hub }, groups, &filter)
        }
    }
}

/// `POST …/:invoke[?filter=]` → 200, then NDJSON acknowledgements.
pub(crate) fn invoke(hub: &str, filter: &Filter, payload: &Payload) -> Call {
    let rest = RestCall::Invoke {
        hub: hub.to_owned(),
        filter: filter_text(filter),
    };
    Call::with_payload(&rest, payload)
}

/// `POST …/:removeFromGroups` with any filter → 200.
fn remove_where(hub: &str, groups: &[String], filter: &Filter) -> Call {
    let rest = RestCall::RemoveFromGroups {
        hub: hub.to_owned(),
    };
    Call::with_groups(&rest, groups, filter)
}

/// A `HEAD` existence check → 200 (found) or 404.
fn head(rest: RestCall) -> Call {
    Call::new(&rest, None, None)
}

/// An operation as the REST call that carries it over the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Routed {
    pub call: Call,
    /// The one connection the call addresses, if any: such calls are kept
    /// in order per connection (see [`super::link`]).
    pub connection: Option<ConnId>,
    /// How the gateway's answer reads as the operation's [`Outcome`].
    pub answer: Answer,
}

/// How a REST answer reads as an [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Sends, group changes and closes. The REST API counts no recipients
    /// (it answers 202 or 200), so the count is 1 once the gateway accepted
    /// the call and 0 if it refused it or the tunnel lost it.
    Accepted,
    /// `HEAD` checks: 200 is found, anything else (404, a lost call) is not.
    Found,
    /// Revocations: done once the gateway answered 200.
    Done,
}

impl Answer {
    /// The outcome of a call answered with `status` (`None`: never answered).
    pub fn outcome(self, status: Option<u16>) -> Outcome {
        match self {
            Answer::Accepted => {
                Outcome::Count(usize::from(status.is_some_and(|s| (200..300).contains(&s))))
            }
            Answer::Found => Outcome::Exists(status == Some(200)),
            Answer::Done => Outcome::Done(status == Some(200)),
        }
    }
}

/// The connection a selection names alone, if it names exactly one.
fn single_connection(selection: &Selection) -> Option<ConnId> {
    match selection {
        Selection {
            group: None,
            filter: Filter::ConnectionId(id),
        } => Some(ConnId::new(id)),
        _ => None,
    }
}

/// The selection as one filter (group scope included).
fn filter_of(selection: Selection) -> Filter {
    match selection.group {
        Some(group) => Filter::InGroup(group).and(selection.filter),
        None => selection.filter,
    }
}

/// The REST call the official SDK makes for `operation`, or `None` when the
/// REST API cannot express it (leaving groups by prefix, every group of a
/// selection wider than one connection, the groups of a connection, the
/// existence of an arbitrary selection).
///
/// A close is the SDK's: an Engine.IO close packet sent to the selected
/// connections (the gateway closes a client that receives one), not the
/// REST `DELETE`, so it keeps its place among the sends to that client.
pub(crate) fn route(hub: &str, operation: Operation) -> Option<Routed> {
    let accepted = |call: Call, connection: Option<ConnId>| Routed {
        call,
        connection,
        answer: Answer::Accepted,
    };
    let found = |rest: RestCall, connection: Option<ConnId>| Routed {
        call: head(rest),
        connection,
        answer: Answer::Found,
    };
    let routed = match operation {
        Operation::Send { to, payload } => match (single_connection(&to), to.group) {
            (Some(connection), _) => {
                let call = send_to_connection(hub, &connection, &payload);
                accepted(call, Some(connection))
            }
            (None, Some(group)) => {
                let rest = RestCall::SendToGroup {
                    hub: hub.to_owned(),
                    group,
                    filter: filter_text(&to.filter),
                };
                accepted(Call::with_payload(&rest, &payload), None)
            }
            (None, None) => accepted(broadcast(hub, &to.filter, &payload), None),
        },
        Operation::Join { who, groups } => match single_connection(&who) {
            Some(connection) => {
                accepted(add_to_groups(hub, &connection, &groups), Some(connection))
            }
            None => accepted(add_where(hub, &groups, &filter_of(who)), None),
        },
        Operation::Leave { who, groups } => match (single_connection(&who), groups) {
            (Some(connection), Groups::Named(groups)) => {
                let call = remove_from_groups(hub, &connection, &groups);
                accepted(call, Some(connection))
            }
            (None, Groups::Named(groups)) => {
                accepted(remove_where(hub, &groups, &filter_of(who)), None)
            }
            (Some(connection), Groups::All) => {
                let rest = RestCall::RemoveConnectionFromAllGroups {
                    hub: hub.to_owned(),
                    connection_id: connection.to_string(),
                };
                accepted(Call::new(&rest, None, None), Some(connection))
            }
            (None, Groups::All) | (_, Groups::Prefixed(_)) => return None,
        },
        Operation::Close { who, reason: _ } => {
            let payload = Payload::packet(EioPacket::Close);
            return route(hub, Operation::Send { to: who, payload });
        }
        Operation::Exists(selection) => {
            let hub = hub.to_owned();
            match (single_connection(&selection), selection) {
                (Some(connection), _) => found(
                    RestCall::ConnectionExists {
                        hub,
                        connection_id: connection.to_string(),
                    },
                    Some(connection),
                ),
                (
                    None,
                    Selection {
                        group: Some(group),
                        filter: Filter::All,
                    },
                ) => found(RestCall::GroupExists { hub, group }, None),
                (
                    None,
                    Selection {
                        group: None,
                        filter: Filter::UserId(user),
                    },
                ) => found(RestCall::UserExists { hub, user }, None),
                _ => return None,
            }
        }
        Operation::GroupsOf(_) => return None,
        Operation::Revoke(revocation) => {
            let rest = match revocation {
                Revocation::Token { id, expires_at } => RestCall::RevokeToken {
                    hub: hub.to_owned(),
                    token_id: id,
                    expires_at,
                },
                Revocation::User {
                    user,
                    issued_before,
                } => RestCall::RevokeUserTokens {
                    hub: hub.to_owned(),
                    user_id: user,
                    issued_before: Some(issued_before),
                },
            };
            Routed {
                call: Call::new(&rest, None, None),
                connection: None,
                answer: Answer::Done,
            }
        }
    };
    Some(routed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_tunnel::group_name::group_name;
    use portcullis_tunnel::rest::{RestCall, parse_rest};

    fn text(p: &str) -> Payload {
        Payload::parse(p).unwrap()
    }

    #[test]
    fn calls_match_the_sdk_captures() {
        let c = ConnId::new("conn-abc123");
        let call = send_to_connection("eio_hub", &c, &text("42[\"hello\",\"world\"]"));
        assert_eq!(
            call.url,
            "https://host/api/hubs/eio_hub/connections/conn-abc123/:send?api-version=2023-07-01"
        );
        assert_eq!(call.body.as_deref(), Some(&b"42[\"hello\",\"world\"]"[..]));

        let all = broadcast(
            "eio_hub",
            &Filter::InGroup("0~Lw~".into()),
            &text("42[\"all\",1]"),
        );
        assert_eq!(
            all.url,
            "https://host/api/hubs/eio_hub/groups/0~Lw~/:send?api-version=2023-07-01"
        );
        let to_except = Filter::InGroup(group_name("/", Some("room1"))).and(Filter::Not(Box::new(
            Filter::InGroup(group_name("/", Some("room2"))),
        )));
        assert_eq!(
            broadcast("eio_hub", &to_except, &text("42[\"r1\",\"x\"]")).url,
            "https://host/api/hubs/eio_hub/groups/0~Lw~cm9vbTE/:send?api-version=2023-07-01&filter=not+%28%270%7ELw%7Ecm9vbTI%27+in+groups%29"
        );
        let two = Filter::Or(vec![
            Filter::InGroup("0~Lw~YQ".into()),
            Filter::InGroup("0~Lw~Yg".into()),
        ]);
        let call = broadcast(
            "h",
            &two,
            &text("451-[\"m\",{\"_placeholder\":true,\"num\":0}]\u{1e}bAQID"),
        );
        assert_eq!(
            parse_rest(call.method, &call.url).unwrap(),
            RestCall::SendToAll {
                hub: "h".into(),
                filter: Some("'0~Lw~YQ' in groups or '0~Lw~Yg' in groups".into())
            }
        );
        assert_eq!(
            call.body.as_deref(),
            Some(&b"451-[\"m\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID"[..])
        );

        let join = add_to_groups("eio_hub", &c, &["0~Lw~cm9vbTE".into()]);
        let body: serde_json::Value =
            serde_json::from_slice(join.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"groups": ["0~Lw~cm9vbTE"], "filter": "connectionId eq 'conn-abc123'"})
        );
        assert_eq!(join.content_type, Some("application/json"));
        let leave = remove_from_groups("eio_hub", &c, &["0~Lw~cm9vbTE".into()]);
        assert_eq!(
            (leave.method, leave.url.as_str()),
            (
                "DELETE",
                "https://host/api/hubs/eio_hub/groups/0~Lw~cm9vbTE/connections/conn-abc123?api-version=2023-07-01"
            )
        );
        let many = remove_from_groups("h", &c, &["a".into(), "b".into()]);
        assert_eq!(
            parse_rest(many.method, &many.url).unwrap(),
            RestCall::RemoveFromGroups { hub: "h".into() }
        );
        let ask = invoke(
            "eio_hub",
            &Filter::InGroup("0~Lw~".into()),
            &text("42[\"ask\",\"q\"]"),
        );
        assert_eq!(
            ask.url,
            "https://host/api/hubs/eio_hub/:invoke?api-version=2023-07-01&filter=%270%7ELw%7E%27+in+groups"
        );
    }

    #[test]
    fn operations_route_to_the_sdk_calls() {
        let c = ConnId::new("conn-abc123");
        let one = || Selection::connection("conn-abc123");
        let payload = text("42[\"hello\"]");
        let route = |op| route("h", op).expect("a REST call carries it");

        // One connection: the helpers' calls, ordered per connection.
        let sent = route(Operation::Send {
            to: one(),
            payload: payload.clone(),
        });
        assert_eq!(sent.call, send_to_connection("h", &c, &payload));
        assert_eq!(sent.connection, Some(c.clone()));
        let groups = vec!["0~Lw~YQ".to_owned(), "0~Lw~Yg".to_owned()];
        let joined = route(Operation::Join {
            who: one(),
            groups: groups.clone(),
        });
        assert_eq!(joined.call, add_to_groups("h", &c, &groups));
        assert_eq!(joined.connection, Some(c.clone()));
        let left = route(Operation::Leave {
            who: one(),
            groups: Groups::Named(groups[..1].to_vec()),
        });
        assert_eq!(left.call, remove_from_groups("h", &c, &groups[..1]));
        // A close is the SDK's Engine.IO close packet, in line with the sends.
        let closed = route(Operation::Close {
            who: one(),
            reason: "bye".into(),
        });
        assert_eq!(closed.call.body.as_deref(), Some(&b"1"[..]));
        assert_eq!(closed.connection, Some(c.clone()));
        assert_eq!(closed.answer, Answer::Accepted);

        // Broadcasts: a filter is mapped as `broadcast` maps it; a group
        // scope is a group send.
        let filter = Filter::InGroup("0~Lw~".into())
            .and(Filter::Not(Box::new(Filter::ConnectionId("x".into()))));
        let all = route(Operation::Send {
            to: Selection::matching(filter.clone()),
            payload: payload.clone(),
        });
        assert_eq!(all.call, broadcast("h", &filter, &payload));
        assert_eq!(all.connection, None);
        let scoped = route(Operation::Send {
            to: Selection::group("0~Lw~").excluding(&["x".into()]),
            payload: payload.clone(),
        });
        assert_eq!(scoped.call, all.call);

        // Wider selections go as filters.
        let users = route(Operation::Join {
            who: Selection::user("alice"),
            groups: groups.clone(),
        });
        assert_eq!(
            users.call,
            add_where("h", &groups, &Filter::UserId("alice".into()))
        );
        let everyone_leaves = route(Operation::Leave {
            who: Selection::group("g"),
            groups: Groups::Named(groups.clone()),
        });
        assert_eq!(
            parse_rest(everyone_leaves.call.method, &everyone_leaves.call.url).unwrap(),
            RestCall::RemoveFromGroups { hub: "h".into() }
        );
        let every_group = route(Operation::Leave {
            who: one(),
            groups: Groups::All,
        });
        assert_eq!(
            parse_rest(every_group.call.method, &every_group.call.url).unwrap(),
            RestCall::RemoveConnectionFromAllGroups {
                hub: "h".into(),
                connection_id: "conn-abc123".into()
            }
        );

        // Existence checks are HEAD calls.
        for (selection, expected) in [
            (
                one(),
                RestCall::ConnectionExists {
                    hub: "h".into(),
                    connection_id: "conn-abc123".into(),
                },
            ),
            (
                Selection::group("g"),
                RestCall::GroupExists {
                    hub: "h".into(),
                    group: "g".into(),
                },
            ),
            (
                Selection::user("alice"),
                RestCall::UserExists {
                    hub: "h".into(),
                    user: "alice".into(),
                },
            ),
        ] {
            let exists = route(Operation::Exists(selection));
            assert_eq!((exists.call.method, exists.answer), ("HEAD", Answer::Found));
            assert_eq!(parse_rest("HEAD", &exists.call.url).unwrap(), expected);
        }
    }

    #[test]
    fn what_the_rest_api_cannot_say_is_not_routed() {
        let namespace = Operation::Leave {
            who: Selection::connection("c"),
            groups: Groups::Prefixed("0~Lw~".into()),
        };
        assert_eq!(route("h", namespace), None);
        let all_of_a_user = Operation::Leave {
            who: Selection::user("u"),
            groups: Groups::All,
        };
        assert_eq!(route("h", all_of_a_user), None);
        let groups_of = Operation::GroupsOf(portcullis_hub::ConnectionId::from("c"));
        assert_eq!(route("h", groups_of), None);
        let odd = Operation::Exists(Selection::matching(Filter::UserIdIsNull));
        assert_eq!(route("h", odd), None);
    }

    #[test]
    fn answers_read_as_outcomes() {
        assert_eq!(Answer::Accepted.outcome(Some(202)), Outcome::Count(1));
        assert_eq!(Answer::Accepted.outcome(Some(400)), Outcome::Count(0));
        assert_eq!(Answer::Accepted.outcome(None), Outcome::Count(0));
        assert_eq!(Answer::Found.outcome(Some(200)), Outcome::Exists(true));
        assert_eq!(Answer::Found.outcome(Some(404)), Outcome::Exists(false));
        assert_eq!(Answer::Found.outcome(None), Outcome::Exists(false));
    }
}

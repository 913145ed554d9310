//! The REST calls of the official SDK (`InprocessServerProxy`), built for
//! the tunnel: same methods, paths, query encoding, headers and bodies
//! (protocol reference §3.10, §4).

use bytes::Bytes;
use portcullis_hub::{Filter, Payload, odata};
use portcullis_tunnel::rest::{GroupsBody, RestCall};

use crate::conn::ConnId;

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
}

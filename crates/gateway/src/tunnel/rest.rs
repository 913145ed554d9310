//! The REST operations application servers call (over the tunnel, and over
//! plain HTTP at `/api/hubs/...`), with the status codes the official SDK
//! requires, and the Socket.IO bookkeeping the service owes it: namespace
//! groups, `{"close":…}` disconnects and `:invoke` acknowledgements.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_protocol::socket::{Header, PacketKind};
use portcullis_tunnel::group_name::namespace_group_prefix;
use portcullis_tunnel::invoke::invoke_line;
use portcullis_tunnel::rest::{GroupsBody, RestCall};
use tokio::sync::mpsc;

use super::hub::TunnelHub;
use crate::hub::{Connection, Filter, Frame, Groups, LocalHub, Payload, Selection, odata};

/// The longest an `:invoke` stream stays open waiting for acknowledgements.
pub(crate) const INVOKE_CAP: Duration = Duration::from_secs(60);

/// The answer to a REST call.
#[derive(Debug)]
pub(crate) enum RestOutcome {
    /// A status and a (possibly empty) body.
    Done(u16, Bytes),
    /// `:invoke`: 200 now, then one NDJSON line per acknowledgement from this
    /// channel, closed when the stream is complete.
    Stream(mpsc::Receiver<Bytes>),
}

fn done(status: u16) -> RestOutcome {
    RestOutcome::Done(status, Bytes::new())
}

fn error(status: u16, message: impl Into<String>) -> RestOutcome {
    let body = serde_json::json!({ "code": status, "message": message.into() });
    RestOutcome::Done(status, Bytes::from(body.to_string()))
}

fn parse_filter(text: Option<&str>) -> Result<Filter, RestOutcome> {
    match text {
        None => Ok(Filter::All),
        Some(text) => odata::parse(text).map_err(|e| error(400, format!("invalid filter: {e}"))),
    }
}

fn parse_payload(body: &[u8]) -> Result<Payload, RestOutcome> {
    let text = std::str::from_utf8(body)
        .map_err(|_| error(400, "the body must be UTF-8 Engine.IO payload text"))?;
    Payload::parse(text)
        .map_err(|e| error(400, format!("the body is not an Engine.IO payload: {e}")))
}

/// The hub a REST call works on, and its tunnel handler when application
/// servers are attached over tunnels (needed for the Socket.IO bookkeeping
/// of client disconnects and for `:invoke`).
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub hub: &'a LocalHub,
    pub tunnel: Option<&'a Arc<TunnelHub>>,
}

/// Executes `call` on `target` with request `body`.
pub(crate) async fn execute(target: Target<'_>, call: RestCall, body: &[u8]) -> RestOutcome {
    match run(target, call, body).await {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

async fn run(target: Target<'_>, call: RestCall, body: &[u8]) -> Result<RestOutcome, RestOutcome> {
    let hub = target.hub;
    let tunnel = target;
    Ok(match call {
        RestCall::SendToConnection { connection_id, .. } => {
            let payload = parse_payload(body)?;
            let targets: Vec<_> = hub.connection(&connection_id).into_iter().collect();
            send(tunnel, &targets, &payload);
            done(202)
        }
        RestCall::SendToAll { filter, .. } => {
            let (filter, payload) = (parse_filter(filter.as_deref())?, parse_payload(body)?);
            send(tunnel, &hub.select(None, &filter), &payload);
            done(202)
        }
        RestCall::SendToGroup { group, filter, .. } => {
            let (filter, payload) = (parse_filter(filter.as_deref())?, parse_payload(body)?);
            send(tunnel, &hub.select(Some(&group), &filter), &payload);
            done(202)
        }
        RestCall::SendToUser {
            user_id, filter, ..
        } => {
            let filter = Filter::UserId(user_id).and(parse_filter(filter.as_deref())?);
            send(tunnel, &hub.select(None, &filter), &parse_payload(body)?);
            done(202)
        }
        RestCall::AddToGroups { .. } => {
            let request = GroupsBody::from_json(body).map_err(|e| error(400, e.to_string()))?;
            let filter = parse_filter(request.effective_filter())?;
            hub.join(&Selection::matching(filter), &request.groups);
            done(200)
        }
        RestCall::RemoveFromGroups { .. } => {
            let request = GroupsBody::from_json(body).map_err(|e| error(400, e.to_string()))?;
            let filter = parse_filter(request.effective_filter())?;
            hub.leave(&Selection::matching(filter), &Groups::Named(request.groups));
            done(200)
        }
        RestCall::AddConnectionToGroup {
            group,
            connection_id,
            ..
        } => match hub.join(&Selection::connection(connection_id), &[group]) {
            0 => error(404, "no such connection"),
            _ => done(200),
        },
        RestCall::RemoveConnectionFromGroup {
            group,
            connection_id,
            ..
        } => {
            hub.leave(
                &Selection::connection(connection_id),
                &Groups::Named(vec![group]),
            );
            done(200)
        }
        RestCall::RemoveConnectionFromAllGroups { connection_id, .. } => {
            hub.leave(&Selection::connection(connection_id), &Groups::All);
            done(200)
        }
        RestCall::AddUserToGroup { user_id, group, .. } => {
            hub.join(&Selection::user(user_id), &[group]);
            done(200)
        }
        RestCall::RemoveUserFromGroup { user_id, group, .. } => {
            hub.leave(&Selection::user(user_id), &Groups::Named(vec![group]));
            done(200)
        }
        RestCall::RemoveUserFromAllGroups { user_id, .. } => {
            hub.leave(&Selection::user(user_id), &Groups::All);
            done(200)
        }
        RestCall::Invoke { filter, .. } => {
            let Some(tunnel) = target.tunnel else {
                return Err(error(
                    404,
                    "invoke needs an application server attached over the tunnel",
                ));
            };
            let (filter, payload) = (parse_filter(filter.as_deref())?, parse_payload(body)?);
            RestOutcome::Stream(invoke(tunnel, &hub.select(None, &filter), &payload)?)
        }
        RestCall::CloseConnection {
            connection_id,
            reason,
            ..
        } => {
            hub.close_connection(&connection_id, reason.as_deref().unwrap_or(""));
            done(204)
        }
        RestCall::CloseAll {
            excluded, reason, ..
        } => close_where(hub, Selection::all(), &excluded, reason),
        RestCall::CloseGroup {
            group,
            excluded,
            reason,
            ..
        } => close_where(hub, Selection::group(group), &excluded, reason),
        RestCall::CloseUser {
            user_id,
            excluded,
            reason,
            ..
        } => close_where(hub, Selection::user(user_id), &excluded, reason),
        RestCall::ConnectionExists { connection_id, .. } => {
            exists(hub.connection(&connection_id).is_some())
        }
        RestCall::GroupExists { group, .. } => exists(hub.exists(&Selection::group(group))),
        RestCall::UserExists { user, .. } => exists(hub.exists(&Selection::user(user))),
    })
}

fn exists(found: bool) -> RestOutcome {
    done(if found { 200 } else { 404 })
}

fn close_where(
    hub: &LocalHub,
    who: Selection,
    excluded: &[String],
    reason: Option<String>,
) -> RestOutcome {
    hub.close(&who.excluding(excluded), &reason.unwrap_or_default());
    done(204)
}

/// What delivering a payload does besides queueing it, found once per
/// payload from the Socket.IO headers of its packets (§4.3, §6.6 of the
/// protocol reference).
#[derive(Debug, Default, PartialEq, Eq)]
struct Effects {
    /// Namespace groups to join: the server accepted the socket.
    join: Vec<String>,
    /// Namespace group prefixes to leave: DISCONNECT or CONNECT_ERROR.
    leave: Vec<String>,
    /// `41{"close":true}`: close the connection after delivery.
    close: bool,
    /// `41/ns,{"close":false}`: answer with a client DISCONNECT for `ns`.
    disconnect_namespaces: Vec<String>,
    /// The payload as the client must see it: the `{"close":…}` data of a
    /// DISCONNECT is for the gateway only (socket.io-client's parser rejects
    /// a DISCONNECT with data and drops the whole connection).
    rewritten: Option<Payload>,
}

fn effects_of(payload: &Payload) -> Effects {
    let mut effects = Effects::default();
    for (index, frame) in payload.frames().iter().enumerate() {
        let Frame::Text(text) = frame else { continue };
        let Some(sio) = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.strip_prefix('4'))
        else {
            continue;
        };
        let Ok(header) = Header::parse(sio) else {
            continue;
        };
        let prefix = namespace_group_prefix(header.namespace);
        match header.kind {
            PacketKind::Connect => effects.join.push(prefix),
            PacketKind::ConnectError => effects.leave.push(prefix),
            PacketKind::Disconnect => {
                match close_flag(header.data) {
                    Some(true) => effects.close = true,
                    Some(false) => effects
                        .disconnect_namespaces
                        .push(header.namespace.to_owned()),
                    None => {}
                }
                if !header.data.is_empty() {
                    let bare = Header {
                        data: "",
                        ..header.clone()
                    };
                    let mut frames = effects
                        .rewritten
                        .take()
                        .map_or_else(|| payload.frames().to_vec(), |p| p.frames().to_vec());
                    frames[index] = Frame::text(format!("4{}", bare.encode()));
                    effects.rewritten = Some(Payload::from_frames(frames));
                }
                effects.leave.push(prefix);
            }
            _ => {}
        }
    }
    effects
}

fn close_flag(data: &str) -> Option<bool> {
    #[derive(serde::Deserialize)]
    struct Close {
        close: bool,
    }
    serde_json::from_str::<Close>(data).ok().map(|c| c.close)
}

/// Delivers `payload` to `targets` in order, with its effects.
fn send(target: Target<'_>, targets: &[Arc<Connection>], payload: &Payload) {
    let effects = effects_of(payload);
    let payload = effects.rewritten.as_ref().unwrap_or(payload);
    for connection in targets {
        target.hub.deliver(connection, payload);
        apply(target, connection, &effects);
    }
}

fn apply(target: Target<'_>, connection: &Connection, effects: &Effects) {
    let hub = target.hub;
    let id = connection.id().as_str();
    for prefix in &effects.leave {
        hub.leave(
            &Selection::connection(id),
            &Groups::Prefixed(prefix.clone()),
        );
    }
    if !effects.join.is_empty() {
        hub.join(&Selection::connection(id), &effects.join);
    }
    for namespace in &effects.disconnect_namespaces {
        if let Some(tunnel) = target.tunnel
            && let Some(client) = tunnel.client(id)
        {
            let record = if namespace == "/" {
                "41".to_owned()
            } else {
                format!("41{namespace},")
            };
            tunnel.forward(&client, &record);
        }
    }
    if effects.close {
        hub.close_connection(id, "disconnected by the application server");
    }
}

/// Starts an `:invoke`: the event goes to every target with an ack id of the
/// gateway's choosing; each acknowledgement becomes one NDJSON line.
fn invoke(
    tunnel: &Arc<TunnelHub>,
    targets: &[Arc<Connection>],
    payload: &Payload,
) -> Result<mpsc::Receiver<Bytes>, RestOutcome> {
    let (first, attachments) = payload
        .frames()
        .split_first()
        .ok_or_else(|| error(400, "empty payload"))?;
    let Frame::Text(first) = first else {
        return Err(error(400, "an invoke payload starts with an event packet"));
    };
    let sio = std::str::from_utf8(first)
        .ok()
        .and_then(|t| t.strip_prefix('4'))
        .ok_or_else(|| error(400, "an invoke payload starts with a Socket.IO event"))?;
    let header =
        Header::parse(sio).map_err(|e| error(400, format!("invalid Socket.IO packet: {e}")))?;
    if !matches!(header.kind, PacketKind::Event | PacketKind::BinaryEvent) {
        return Err(error(
            400,
            "an invoke payload must be an EVENT or BINARY_EVENT",
        ));
    }
    let (acks, mut answers) = mpsc::unbounded_channel::<String>();
    let mut expected = 0usize;
    for connection in targets {
        let Some(client) = tunnel.client(connection.id().as_str()) else {
            continue;
        };
        let Some(ack_id) = client.register_invoke(acks.clone()) else {
            continue;
        };
        let with_id = Header {
            ack_id: Some(ack_id),
            ..header.clone()
        };
        let mut frames = vec![Frame::text(format!("4{}", with_id.encode()))];
        frames.extend(attachments.iter().cloned());
        tunnel
            .hub
            .deliver(connection, &Payload::from_frames(frames));
        expected += 1;
    }
    // Only the clients hold senders now: the channel closes when every one
    // has answered or gone.
    drop(acks);
    let (lines, stream) = mpsc::channel(64);
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(INVOKE_CAP);
        tokio::pin!(deadline);
        let mut answered = 0;
        while answered < expected {
            tokio::select! {
                answer = answers.recv() => match answer {
                    Some(payload) => {
                        answered += 1;
                        if lines.send(invoke_line(&payload)).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                _ = &mut deadline => return,
            }
        }
    });
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_group_effects() {
        let payload =
            Payload::parse("40{\"sid\":\"s\"}\u{1e}42[\"a\"]\u{1e}44/locked,{\"message\":\"no\"}")
                .unwrap();
        let effects = effects_of(&payload);
        assert_eq!(effects.join, vec!["0~Lw~".to_owned()]);
        assert_eq!(effects.leave, vec!["0~L2xvY2tlZA~".to_owned()]);
        assert!(!effects.close);

        let close = effects_of(&Payload::parse("41{\"close\":true}").unwrap());
        assert!(close.close);
        assert_eq!(
            close.rewritten,
            Some(Payload::parse("41").unwrap()),
            "the client gets a bare DISCONNECT"
        );
        let soft = effects_of(&Payload::parse("42[1]\u{1e}41/chat,{\"close\":false}").unwrap());
        assert_eq!(soft.disconnect_namespaces, vec!["/chat".to_owned()]);
        assert!(!soft.close);
        assert_eq!(
            soft.rewritten,
            Some(Payload::parse("42[1]\u{1e}41/chat,").unwrap())
        );
        assert_eq!(
            effects_of(&Payload::parse("41/chat,").unwrap()).rewritten,
            None
        );
        assert_eq!(
            effects_of(&Payload::parse("2").unwrap()),
            Effects::default()
        );
    }
}

//! The REST operations application servers call (over the tunnel, and over
//! plain HTTP at `/api/hubs/...`), with the status codes the official SDK
//! requires, and the Socket.IO bookkeeping the service owes it: namespace
//! groups, `{"close":…}` disconnects and `:invoke` acknowledgements.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_protocol::socket::{Header, PacketKind};
use portcullis_tunnel::invoke::invoke_line;
use portcullis_tunnel::rest::{GroupsBody, RestCall};
use tokio::sync::mpsc;

use super::hub::TunnelHub;
use crate::hub::{
    Connection, Filter, Frame, Groups, Hub, LocalHub, Operation, Payload, Revocation, Selection,
    odata,
};

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
pub(crate) struct Target {
    pub hub: LocalHub,
    pub tunnel: Option<Arc<TunnelHub>>,
}

/// Executes `call` on `target` with request `body`. Everything but waiting
/// for other nodes happens when the future is first polled, so callers that
/// poll calls in order apply them in order (see `tunnel::handle_request`).
pub(crate) async fn execute(target: Target, call: RestCall, body: Bytes) -> RestOutcome {
    match run(&target, call, &body).await {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

async fn run(target: &Target, call: RestCall, body: &[u8]) -> Result<RestOutcome, RestOutcome> {
    let hub = &target.hub;
    Ok(match call {
        RestCall::SendToConnection { connection_id, .. } => {
            let payload = parse_payload(body)?;
            send(hub, Selection::connection(connection_id), payload).await
        }
        RestCall::SendToAll { filter, .. } => {
            let (filter, payload) = (parse_filter(filter.as_deref())?, parse_payload(body)?);
            send(hub, Selection::matching(filter), payload).await
        }
        RestCall::SendToGroup { group, filter, .. } => {
            let (filter, payload) = (parse_filter(filter.as_deref())?, parse_payload(body)?);
            send(hub, Selection::group(group).and(filter), payload).await
        }
        RestCall::SendToUser {
            user_id, filter, ..
        } => {
            let (filter, payload) = (parse_filter(filter.as_deref())?, parse_payload(body)?);
            send(hub, Selection::user(user_id).and(filter), payload).await
        }
        RestCall::AddToGroups { .. } => {
            let request = GroupsBody::from_json(body).map_err(|e| error(400, e.to_string()))?;
            let filter = parse_filter(request.effective_filter())?;
            join(hub, Selection::matching(filter), request.groups).await;
            done(200)
        }
        RestCall::RemoveFromGroups { .. } => {
            let request = GroupsBody::from_json(body).map_err(|e| error(400, e.to_string()))?;
            let filter = parse_filter(request.effective_filter())?;
            leave(
                hub,
                Selection::matching(filter),
                Groups::Named(request.groups),
            )
            .await;
            done(200)
        }
        RestCall::AddConnectionToGroup {
            group,
            connection_id,
            ..
        } => {
            let joined = hub.apply_in_order(Operation::Join {
                who: Selection::connection(connection_id),
                groups: vec![group],
            });
            match joined.await.count() {
                0 => error(404, "no such connection"),
                _ => done(200),
            }
        }
        RestCall::RemoveConnectionFromGroup {
            group,
            connection_id,
            ..
        } => {
            leave(
                hub,
                Selection::connection(connection_id),
                Groups::Named(vec![group]),
            )
            .await;
            done(200)
        }
        RestCall::RemoveConnectionFromAllGroups { connection_id, .. } => {
            leave(hub, Selection::connection(connection_id), Groups::All).await;
            done(200)
        }
        RestCall::AddUserToGroup { user_id, group, .. } => {
            join(hub, Selection::user(user_id), vec![group]).await;
            done(200)
        }
        RestCall::RemoveUserFromGroup { user_id, group, .. } => {
            leave(hub, Selection::user(user_id), Groups::Named(vec![group])).await;
            done(200)
        }
        RestCall::RemoveUserFromAllGroups { user_id, .. } => {
            leave(hub, Selection::user(user_id), Groups::All).await;
            done(200)
        }
        RestCall::Invoke { filter, .. } => {
            let Some(tunnel) = target.tunnel.as_ref() else {
                return Err(error(
                    404,
                    "invoke needs an application server attached over the tunnel",
                ));
            };
            let (filter, payload) = (parse_filter(filter.as_deref())?, parse_payload(body)?);
            let (local, expected) = invoke_here(tunnel, &hub.select(None, &filter), &payload)?;
            // The other nodes' connections answer through the cluster.
            let remote = hub.invoke_elsewhere(filter, payload, INVOKE_CAP);
            RestOutcome::Stream(stream_lines(local, expected, remote))
        }
        RestCall::CloseConnection {
            connection_id,
            reason,
            ..
        } => {
            hub.apply_in_order(Operation::Close {
                who: Selection::connection(connection_id),
                reason: reason.unwrap_or_default(),
            })
            .await;
            done(204)
        }
        RestCall::CloseAll {
            excluded, reason, ..
        } => close_where(hub, Selection::all(), &excluded, reason).await,
        RestCall::CloseGroup {
            group,
            excluded,
            reason,
            ..
        } => close_where(hub, Selection::group(group), &excluded, reason).await,
        RestCall::CloseUser {
            user_id,
            excluded,
            reason,
            ..
        } => close_where(hub, Selection::user(user_id), &excluded, reason).await,
        RestCall::ConnectionExists { connection_id, .. } => {
            exists(hub, Selection::connection(connection_id)).await
        }
        RestCall::GroupExists { group, .. } => exists(hub, Selection::group(group)).await,
        RestCall::UserExists { user, .. } => exists(hub, Selection::user(user)).await,
        RestCall::RevokeToken {
            token_id,
            expires_at,
            ..
        } => {
            revoke(
                hub,
                Revocation::Token {
                    id: token_id,
                    expires_at,
                },
            )
            .await
        }
        RestCall::RevokeUserTokens {
            user_id,
            issued_before,
            ..
        } => {
            revoke(
                hub,
                Revocation::User {
                    user: user_id,
                    // `iat` has whole seconds: by default every token issued
                    // up to now, this second included, is revoked.
                    issued_before: issued_before
                        .unwrap_or_else(|| crate::hub::unix_now().as_secs() + 1),
                },
            )
            .await
        }
    })
}

/// Sends a payload; 202 once it is in this node's recipients' queues and
/// its place in the order is fixed for the other nodes (see
/// [`LocalHub::apply_in_order`]): the SDK may send its next call through
/// another node's tunnel.
async fn send(hub: &LocalHub, to: Selection, payload: Payload) -> RestOutcome {
    hub.apply_in_order(Operation::Send { to, payload }).await;
    done(202)
}

async fn join(hub: &LocalHub, who: Selection, groups: Vec<String>) {
    hub.apply_in_order(Operation::Join { who, groups }).await;
}

async fn leave(hub: &LocalHub, who: Selection, groups: Groups) {
    hub.apply_in_order(Operation::Leave { who, groups }).await;
}

/// Revokes tokens on every node: 200 with how many connections were
/// closed, or 507 if a revocation list is full (the holders are closed all
/// the same).
async fn revoke(hub: &LocalHub, revocation: Revocation) -> RestOutcome {
    let revoked = revoke_everywhere(hub, revocation).await;
    if !revoked.recorded {
        return error(
            507,
            format!(
                "the hub's revocation list is full: {} connections were closed, but the tokens are not refused at the handshake; raise --max-revocations",
                revoked.closed
            ),
        );
    }
    let body = serde_json::json!({ "closed": revoked.closed });
    RestOutcome::Done(200, Bytes::from(body.to_string()))
}

/// What a revocation did here and on the other nodes.
async fn revoke_everywhere(hub: &LocalHub, revocation: Revocation) -> crate::hub::Revoked {
    if hub.cluster_member() {
        // Recorded and applied on every node; the count of closed holders
        // is this node's (the others close theirs as they receive it).
        let here = hub.revoke(&revocation);
        let recorded = hub.spread_revocation(revocation).await.unwrap_or(true);
        return crate::hub::Revoked {
            closed: here.closed,
            recorded: here.recorded && recorded,
        };
    }
    hub.revoke(&revocation)
}

async fn exists(hub: &LocalHub, who: Selection) -> RestOutcome {
    let found = hub.apply(Operation::Exists(who)).await.count() > 0;
    done(if found { 200 } else { 404 })
}

async fn close_where(
    hub: &LocalHub,
    who: Selection,
    excluded: &[String],
    reason: Option<String>,
) -> RestOutcome {
    hub.apply_in_order(Operation::Close {
        who: who.excluding(excluded),
        reason: reason.unwrap_or_default(),
    })
    .await;
    done(204)
}

/// Starts an `:invoke` on this node's connections: the event goes to every
/// target with an ack id of the gateway's choosing; their acknowledgements
/// arrive on the receiver, of which `expected` are awaited.
pub(crate) fn invoke_here(
    tunnel: &Arc<TunnelHub>,
    targets: &[Arc<Connection>],
    payload: &Payload,
) -> Result<(mpsc::UnboundedReceiver<String>, usize), RestOutcome> {
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
    let (acks, answers) = mpsc::unbounded_channel::<String>();
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
    Ok((answers, expected))
}

/// The NDJSON lines of an `:invoke`: this node's `expected` answers and the
/// other nodes' (whose stream ends when they have all finished), until
/// both are done or [`INVOKE_CAP`].
fn stream_lines(
    mut local: mpsc::UnboundedReceiver<String>,
    expected: usize,
    remote: Option<mpsc::UnboundedReceiver<String>>,
) -> mpsc::Receiver<Bytes> {
    let (lines, stream) = mpsc::channel(64);
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(INVOKE_CAP);
        tokio::pin!(deadline);
        let mut answered = 0;
        let mut local_done = expected == 0;
        let mut remote = remote;
        while !local_done || remote.is_some() {
            tokio::select! {
                answer = local.recv(), if !local_done => match answer {
                    Some(payload) => {
                        answered += 1;
                        local_done = answered >= expected;
                        if lines.send(invoke_line(&payload)).await.is_err() {
                            return;
                        }
                    }
                    None => local_done = true,
                },
                answer = recv_some(&mut remote) => match answer {
                    Some(payload) => {
                        if lines.send(invoke_line(&payload)).await.is_err() {
                            return;
                        }
                    }
                    None => remote = None,
                },
                _ = &mut deadline => return,
            }
        }
    });
    stream
}

/// The next item of an optional stream (pending forever without one).
async fn recv_some(stream: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match stream {
        Some(stream) => stream.recv().await,
        None => std::future::pending().await,
    }
}

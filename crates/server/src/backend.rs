//! The operations the Socket.IO layer asks of the gateway.
//!
//! [`Backend`] speaks only the hub contract ([`portcullis_hub::Hub`]): the
//! attach mode gives it a hub (the gateway's in-process hub when embedded,
//! the tunnel's [`Link`](crate::tunnel) otherwise, which turns each
//! operation into the REST call the official SDK would make) and says the
//! one thing the modes differ in: whether sockets of other processes can
//! acknowledge broadcasts ([`RemoteAcks`]). Nothing here knows a mode.
//!
//! Namespace groups are the gateway's in every mode: its hub joins a
//! socket's namespace group when it delivers the CONNECT and leaves every
//! group of the namespace with the DISCONNECT or CONNECT_ERROR it delivers,
//! or the client's own DISCONNECT (as the service does for the official
//! SDK), so this crate never sends a namespace leave.

use std::sync::Arc;

use portcullis_hub::{Filter, Groups, Hub, Operation, Outcome, Payload, Revocation, Selection};
use tokio::sync::mpsc;

use crate::conn_id::ConnId;
use crate::packet::AckResponse;

/// Acknowledgements of a broadcast from the sockets that *other*
/// application processes serve on the same hub (the tunnel's `:invoke`).
pub(crate) trait RemoteAcks: Send + Sync {
    /// Sends `payload` (an EVENT without ack id) to the matching connections
    /// of other processes; their acknowledgements arrive on the receiver.
    fn invoke(&self, filter: &Filter, payload: Payload) -> mpsc::UnboundedReceiver<AckResponse>;
}

/// Where sends and group changes go.
#[derive(Clone)]
pub(crate) struct Backend {
    hub: Arc<dyn Hub>,
    remote_acks: Option<Arc<dyn RemoteAcks>>,
    shared_group_changes: bool,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("hub", &self.hub.name())
            .field("remote_acks", &self.remote_acks.is_some())
            .field("shared_group_changes", &self.shared_group_changes)
            .finish()
    }
}

impl Backend {
    /// Operations go to `hub`.
    pub fn new(hub: Arc<dyn Hub>) -> Self {
        Backend {
            hub,
            remote_acks: None,
            shared_group_changes: false,
        }
    }

    /// Group changes by filter reach the sockets of every process, whose
    /// handlers hear of them (`HubHandler::on_groups_changed`) and keep
    /// their sockets' rooms true: one operation instead of one per socket.
    pub fn with_shared_group_changes(mut self) -> Self {
        self.shared_group_changes = true;
        self
    }

    /// Whether [`join_matching`](Self::join_matching) and
    /// [`leave_matching`](Self::leave_matching) keep every process's view of
    /// its sockets' rooms.
    pub fn shares_group_changes(&self) -> bool {
        self.shared_group_changes
    }

    /// The connections matching `filter`, in every process, join `groups`.
    pub fn join_matching(&self, filter: Filter, groups: Vec<String>) {
        let who = Selection::matching(filter);
        self.hub.apply_and_forget(Operation::Join { who, groups });
    }

    /// The connections matching `filter`, in every process, leave `groups`.
    pub fn leave_matching(&self, filter: Filter, groups: Vec<String>) {
        let who = Selection::matching(filter);
        let groups = Groups::Named(groups);
        self.hub.apply_and_forget(Operation::Leave { who, groups });
    }

    /// Broadcasts with acknowledgements also reach other processes' sockets.
    pub fn with_remote_acks(mut self, remote_acks: Arc<dyn RemoteAcks>) -> Self {
        self.remote_acks = Some(remote_acks);
        self
    }

    pub fn hub_name(&self) -> &str {
        self.hub.name()
    }

    /// Sends a payload to one connection; false if it is known to be gone
    /// (a hub that answers later, like the tunnel, never knows that now).
    pub fn send_to(&self, connection: &ConnId, payload: Payload) -> bool {
        self.hub
            .apply(Operation::Send {
                to: Selection::connection(connection.as_str()),
                payload,
            })
            .now()
            .is_none_or(|outcome| outcome.count() > 0)
    }

    /// Sends a payload to every connection matching `filter`.
    pub fn broadcast(&self, filter: Filter, payload: Payload) {
        self.hub.apply_and_forget(Operation::Send {
            to: Selection::matching(filter),
            payload,
        });
    }

    pub fn join(&self, connection: &ConnId, groups: Vec<String>) {
        let who = Selection::connection(connection.as_str());
        self.hub.apply_and_forget(Operation::Join { who, groups });
    }

    pub fn leave(&self, connection: &ConnId, groups: Vec<String>) {
        let who = Selection::connection(connection.as_str());
        let groups = Groups::Named(groups);
        self.hub.apply_and_forget(Operation::Leave { who, groups });
    }

    pub fn close(&self, connection: &ConnId, reason: &str) {
        let who = Selection::connection(connection.as_str());
        let reason = reason.to_owned();
        self.hub.apply_and_forget(Operation::Close { who, reason });
    }

    /// Revokes tokens at the gateway; resolves once it is in effect there.
    pub async fn revoke(&self, revocation: Revocation) -> bool {
        matches!(
            self.hub.apply(Operation::Revoke(revocation)).await,
            Outcome::Done(true)
        )
    }

    /// Acknowledgements of `payload` (an EVENT without ack id) from the
    /// matching connections served by *other* application processes; `None`
    /// when there are none (embedded).
    pub fn remote_acks(
        &self,
        filter: &Filter,
        payload: Payload,
    ) -> Option<mpsc::UnboundedReceiver<AckResponse>> {
        self.remote_acks
            .as_ref()
            .map(|remote| remote.invoke(filter, payload))
    }
}

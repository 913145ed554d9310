//! The operations the Socket.IO layer asks of the gateway.
//!
//! [`Backend`] speaks only the hub contract ([`portcullis_hub::Hub`]): the
//! attach mode gives it a hub (the gateway's in-process hub when embedded,
//! the tunnel's [`Link`](crate::tunnel) otherwise, which turns each
//! operation into the REST call the official SDK would make) and says the
//! two things the modes differ in: who keeps a socket's namespace groups
//! ([`NamespaceGroups`]) and whether sockets of other processes can
//! acknowledge broadcasts ([`RemoteAcks`]). Nothing here knows a mode.

use std::sync::Arc;

use portcullis_hub::{Filter, Groups, Hub, Operation, Payload, Selection};
use portcullis_tunnel::group_name::namespace_group_prefix;
use tokio::sync::mpsc;

use crate::conn_id::ConnId;
use crate::packet::AckResponse;

/// Who removes a socket from its namespace group and room groups when it
/// leaves its namespace (or is refused after a middleware joined rooms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NamespaceGroups {
    /// This server: it tells the hub (embedded mode).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    Server,
    /// The gateway: over the tunnel it leaves them itself when it forwards
    /// the DISCONNECT or CONNECT_ERROR that always goes with the leave, or
    /// receives the client's DISCONNECT (as the service does for the
    /// official SDK), so the server sends nothing.
    Gateway,
}

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
    namespace_groups: NamespaceGroups,
    remote_acks: Option<Arc<dyn RemoteAcks>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("hub", &self.hub.name())
            .field("namespace_groups", &self.namespace_groups)
            .field("remote_acks", &self.remote_acks.is_some())
            .finish()
    }
}

impl Backend {
    /// Operations go to `hub`; namespace groups are kept by `namespace_groups`.
    pub fn new(hub: Arc<dyn Hub>, namespace_groups: NamespaceGroups) -> Self {
        Backend {
            hub,
            namespace_groups,
            remote_acks: None,
        }
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
        self.hub.apply(Operation::Send {
            to: Selection::matching(filter),
            payload,
        });
    }

    pub fn join(&self, connection: &ConnId, groups: Vec<String>) {
        let who = Selection::connection(connection.as_str());
        self.hub.apply(Operation::Join { who, groups });
    }

    pub fn leave(&self, connection: &ConnId, groups: Vec<String>) {
        let who = Selection::connection(connection.as_str());
        let groups = Groups::Named(groups);
        self.hub.apply(Operation::Leave { who, groups });
    }

    /// Leaves the namespace group and every room group of `namespace`,
    /// unless the gateway does that itself (see [`NamespaceGroups`]).
    pub fn leave_namespace(&self, connection: &ConnId, namespace: &str) {
        match self.namespace_groups {
            NamespaceGroups::Server => {
                let who = Selection::connection(connection.as_str());
                let groups = Groups::Prefixed(namespace_group_prefix(namespace));
                self.hub.apply(Operation::Leave { who, groups });
            }
            NamespaceGroups::Gateway => {}
        }
    }

    pub fn close(&self, connection: &ConnId, reason: &str) {
        let who = Selection::connection(connection.as_str());
        let reason = reason.to_owned();
        self.hub.apply(Operation::Close { who, reason });
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use portcullis_hub::{Applied, Outcome};

    use super::*;

    /// A hub that keeps what it is asked: the contract's boundary, where
    /// the attach modes differ.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Operation>>);

    impl Hub for Recorder {
        fn name(&self) -> &str {
            "h"
        }

        fn apply(&self, operation: Operation) -> Applied {
            self.0.lock().unwrap().push(operation);
            Applied::ready(Outcome::Count(1))
        }
    }

    #[test]
    fn namespace_groups_are_left_by_whoever_keeps_them() {
        let c = ConnId::new("c1");
        let server = Arc::new(Recorder::default());
        Backend::new(server.clone(), NamespaceGroups::Server).leave_namespace(&c, "/chat");
        assert_eq!(
            *server.0.lock().unwrap(),
            [Operation::Leave {
                who: Selection::connection("c1"),
                groups: Groups::Prefixed(namespace_group_prefix("/chat")),
            }]
        );
        let gateway = Arc::new(Recorder::default());
        Backend::new(gateway.clone(), NamespaceGroups::Gateway).leave_namespace(&c, "/chat");
        assert_eq!(*gateway.0.lock().unwrap(), []);
    }
}

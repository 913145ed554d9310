//! The operations the Socket.IO layer asks of the gateway.
//!
//! [`Backend`] is the one place that knows the attach mode. Embedded, the
//! operations go straight to the gateway's [`Hub`]; they complete without
//! waiting, so they are driven to completion in place. Over the tunnel,
//! each becomes the REST call the official SDK would make, sent in program
//! order (see [`crate::tunnel`]).

use std::sync::Arc;

use portcullis_hub::{Filter, Groups, Hub, Operation, Payload, Selection};
use portcullis_tunnel::group_name::namespace_group_prefix;
use tokio::sync::mpsc;

use crate::ack::AckResponse;
use crate::conn::ConnId;
use crate::tunnel::Link;

/// Where sends and group changes go.
#[derive(Clone)]
pub(crate) enum Backend {
    /// An in-process gateway hub.
    Embedded(Arc<dyn Hub>),
    /// A gateway reached over the server tunnel.
    Tunnel(Arc<Link>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Embedded(hub) => f.debug_tuple("Embedded").field(&hub.name()).finish(),
            Backend::Tunnel(link) => f.debug_tuple("Tunnel").field(link).finish(),
        }
    }
}

impl Backend {
    pub fn hub_name(&self) -> &str {
        match self {
            Backend::Embedded(hub) => hub.name(),
            Backend::Tunnel(link) => link.hub(),
        }
    }

    /// Sends a payload to one connection; false if it is known to be gone.
    pub fn send_to(&self, connection: &ConnId, payload: Payload) -> bool {
        match self {
            Backend::Embedded(hub) => hub
                .apply(Operation::Send {
                    to: Selection::connection(connection.as_str()),
                    payload,
                })
                .now()
                .is_none_or(|outcome| outcome.count() > 0),
            Backend::Tunnel(link) => {
                link.send_to_connection(connection, payload);
                true
            }
        }
    }

    /// Sends a payload to every connection matching `filter`.
    pub fn broadcast(&self, filter: Filter, payload: Payload) {
        match self {
            Backend::Embedded(hub) => {
                hub.apply(Operation::Send {
                    to: Selection::matching(filter),
                    payload,
                });
            }
            Backend::Tunnel(link) => link.broadcast(filter, payload),
        }
    }

    pub fn join(&self, connection: &ConnId, groups: Vec<String>) {
        match self {
            Backend::Embedded(hub) => {
                let who = Selection::connection(connection.as_str());
                hub.apply(Operation::Join { who, groups });
            }
            Backend::Tunnel(link) => link.add_to_groups(connection, groups),
        }
    }

    pub fn leave(&self, connection: &ConnId, groups: Vec<String>) {
        match self {
            Backend::Embedded(hub) => {
                let who = Selection::connection(connection.as_str());
                let groups = Groups::Named(groups);
                hub.apply(Operation::Leave { who, groups });
            }
            Backend::Tunnel(link) => link.remove_from_groups(connection, groups),
        }
    }

    /// Leaves the namespace group and every room group of `namespace`.
    ///
    /// Over the tunnel the gateway does this itself when it forwards the
    /// DISCONNECT or CONNECT_ERROR that always goes with it, or receives the
    /// client's DISCONNECT (as the service does for the official SDK).
    pub fn leave_namespace(&self, connection: &ConnId, namespace: &str) {
        match self {
            Backend::Embedded(hub) => {
                let who = Selection::connection(connection.as_str());
                let groups = Groups::Prefixed(namespace_group_prefix(namespace));
                hub.apply(Operation::Leave { who, groups });
            }
            Backend::Tunnel(_) => {}
        }
    }

    pub fn close(&self, connection: &ConnId, reason: &str) {
        match self {
            Backend::Embedded(hub) => {
                let who = Selection::connection(connection.as_str());
                let reason = reason.to_owned();
                hub.apply(Operation::Close { who, reason });
            }
            Backend::Tunnel(link) => link.close_connection(connection, reason),
        }
    }

    /// Acknowledgements of `payload` (an EVENT without ack id) from the
    /// matching connections served by *other* application processes: over
    /// the tunnel, one `:invoke`; embedded, there are none.
    pub fn remote_acks(
        &self,
        filter: &Filter,
        payload: Payload,
    ) -> Option<mpsc::UnboundedReceiver<AckResponse>> {
        match self {
            Backend::Embedded(_) => None,
            Backend::Tunnel(link) => Some(link.invoke_remote(filter, payload)),
        }
    }
}

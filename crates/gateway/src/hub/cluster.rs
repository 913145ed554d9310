//! Hubs spread over the nodes of a cluster.
//!
//! A node applies every operation to its own connections at once, then
//! sends it to the nodes that may hold more of them, with one publish:
//! - an operation on one connection goes to its owner alone (the owner is
//!   written in the connection id), or is applied here if it is ours;
//! - a revocation goes to every node, whether or not it has the hub yet;
//! - everything else goes to the nodes subscribed to the hub's channel.
//!
//! Operations other nodes send are applied with
//! [`LocalHub::apply_from_outside`], never spread again.

use portcullis_cluster::{Cluster, Destination, NodeId, owner_of};

use super::{Filter, Hubs, LocalHub, Operation, Outcome, Selection};
use crate::hub::{Applied, ConnectionId};

impl Hubs {
    /// Makes this gateway node `node` of a cluster: connection ids carry its
    /// id from now on. Call it before any connection exists.
    pub(crate) fn set_node(&self, node: NodeId) {
        let _ = self.registry.node.set(node);
    }

    /// Operations reach the other nodes of `cluster` from now on.
    pub(crate) fn set_cluster(&self, cluster: Cluster) {
        let _ = self.registry.cluster.set(cluster);
    }

    /// The cluster this node belongs to, once joined.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.registry.cluster.get()
    }

    /// A fresh connection id: `<node>.<random>` in a cluster.
    pub(crate) fn new_connection_id(&self) -> ConnectionId {
        let random = ConnectionId::generate();
        match self.registry.node.get() {
            Some(node) => ConnectionId::from(node.connection_id(random.as_str())),
            None => random,
        }
    }

    /// Applies an operation another node sent to this node's connections.
    pub(crate) fn apply_from_peer(&self, hub: &str, operation: Operation) -> Outcome {
        match (&operation, self.get(hub)) {
            // A revocation must hold at this node's next handshake even if
            // the hub has no connection here yet.
            (Operation::Revoke(_), _) => self.get_or_create(hub).apply_now(operation),
            (_, Some(hub)) => hub.apply_from_outside(operation),
            (_, None) => neutral(&operation),
        }
    }
}

/// Where an operation must go besides this node.
enum Reach {
    /// Nowhere: it is about one connection of this node.
    Here,
    /// The nodes of the hub's channel.
    Hub,
    /// The owner of its one connection.
    Owner(String),
    /// Every node.
    Everyone,
}

impl Reach {
    /// Where the other nodes' part goes (nowhere for [`Reach::Here`]; the
    /// hub's channel is only a placeholder then).
    fn destination(&self) -> Destination<'_> {
        match self {
            Reach::Owner(node) => Destination::Node(node),
            Reach::Everyone => Destination::Everyone,
            Reach::Here | Reach::Hub => Destination::Hub,
        }
    }
}

fn reach(cluster: &Cluster, operation: &Operation) -> Reach {
    let one = match operation {
        Operation::Send { to, .. } => one_connection(to),
        Operation::Join { who, .. }
        | Operation::Leave { who, .. }
        | Operation::Close { who, .. }
        | Operation::Exists(who) => one_connection(who),
        Operation::GroupsOf(id) => Some(id.as_str()),
        Operation::Revoke(_) => return Reach::Everyone,
    };
    match one.map(owner_of) {
        None => Reach::Hub,
        Some(Some(owner)) if owner != cluster.node_id().as_str() => Reach::Owner(owner.to_owned()),
        // Ours, or an id no node of the cluster made.
        Some(_) => Reach::Here,
    }
}

fn one_connection(selection: &Selection) -> Option<&str> {
    match (&selection.group, &selection.filter) {
        (None, Filter::ConnectionId(id)) => Some(id),
        _ => None,
    }
}

/// The outcome of an operation that reached no connection.
fn neutral(operation: &Operation) -> Outcome {
    match operation {
        Operation::Exists(_) => Outcome::Exists(false),
        Operation::GroupsOf(_) => Outcome::Groups(Vec::new()),
        Operation::Revoke(_) => Outcome::Done(false),
        _ => Outcome::Count(0),
    }
}

impl LocalHub {
    fn cluster(&self) -> Option<&Cluster> {
        self.0.registry.cluster.get()
    }

    /// Applies an operation here and on the other nodes that may hold its
    /// connections; with `observe`, the outcome merges theirs.
    pub(crate) fn apply_everywhere(&self, operation: Operation, observe: bool) -> Applied {
        let Some(cluster) = self.cluster() else {
            return Applied::ready(self.apply_now(operation));
        };
        let reach = reach(cluster, &operation);
        let here = match reach {
            Reach::Here => return Applied::ready(self.apply_now(operation)),
            // Not ours: nothing of it is here.
            Reach::Owner(_) => None,
            Reach::Hub | Reach::Everyone => Some(self.apply_now(operation.clone())),
        };
        if matches!(here, Some(Outcome::Exists(true))) {
            return Applied::ready(Outcome::Exists(true));
        }
        let fallback = neutral(&operation);
        let there = cluster.spread(self.name(), operation, reach.destination(), observe);
        if !observe {
            return Applied::ready(here.unwrap_or(fallback));
        }
        Applied::pending(async move {
            match (here, there.await) {
                (Some(here), Some(there)) => here.merge(there),
                (Some(one), None) | (None, Some(one)) => one,
                (None, None) => fallback,
            }
        })
    }
}

impl LocalHub {
    /// Sends an invocation (a Socket.IO EVENT without ack id) to the
    /// matching connections of the other nodes of the cluster; their
    /// acknowledgements (Engine.IO payload text of one ACK packet and its
    /// attachments) arrive on the receiver, which closes when every node
    /// has finished or after `deadline`. `None` outside a cluster.
    pub fn invoke_elsewhere(
        &self,
        filter: Filter,
        payload: super::Payload,
        deadline: std::time::Duration,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.cluster()?
            .invoke(self.name(), filter, payload, deadline)
    }

    /// Applies an operation everywhere, resolving once its place in the
    /// order is fixed: applied here, taken by Redis for the other nodes (so
    /// they receive it before anything published later), or applied by the
    /// one connection's owner node. A caller that waits for this before its
    /// next operation, through whichever node that goes, keeps them in
    /// order (the official SDK spreads its calls over its tunnels). The
    /// outcome is this node's, or the owner's.
    pub(crate) fn apply_in_order(&self, operation: Operation) -> Applied {
        let Some(cluster) = self.cluster() else {
            return Applied::ready(self.apply_from_outside(operation));
        };
        match reach(cluster, &operation) {
            Reach::Here => Applied::ready(self.apply_from_outside(operation)),
            Reach::Owner(node) => {
                let fallback = neutral(&operation);
                let owner = cluster.spread(self.name(), operation, Destination::Node(&node), true);
                Applied::pending(async move { owner.await.unwrap_or(fallback) })
            }
            reach @ (Reach::Hub | Reach::Everyone) => {
                let here = self.apply_from_outside(operation.clone());
                let taken = cluster.spread_published(self.name(), operation, reach.destination());
                Applied::pending(async move {
                    taken.await;
                    here
                })
            }
        }
    }

    /// Whether this hub's node belongs to a cluster.
    pub(crate) fn cluster_member(&self) -> bool {
        self.cluster().is_some()
    }

    /// Sends a revocation already applied here to every other node;
    /// resolves with whether all that answered recorded it (`None` alone,
    /// or when no other node answered).
    pub(crate) fn spread_revocation(
        &self,
        revocation: super::Revocation,
    ) -> impl std::future::Future<Output = Option<bool>> + Send + 'static {
        let spread = self.cluster().map(|cluster| {
            cluster.spread(
                self.name(),
                Operation::Revoke(revocation),
                Destination::Everyone,
                true,
            )
        });
        async move {
            match spread?.await? {
                Outcome::Done(recorded) => Some(recorded),
                _ => None,
            }
        }
    }
}

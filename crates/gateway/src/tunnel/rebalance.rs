//! Application servers attached to every node of a cluster.
//!
//! A client's events go to an application server over a tunnel of the node
//! that holds the client, so every node needs a tunnel of every server. The
//! official SDK opens one tunnel through the load balancer; the node it
//! reaches sends it a `ConnectionRebalance` per other node (`TargetId` the
//! node's id, `Endpoint` empty), and the SDK opens an extra tunnel to each
//! through its own endpoint, with `&target=`; the node that gets it relays
//! it to the target. Nodes that join later are announced on the first
//! tunnel as they appear.

use std::collections::HashSet;
use std::sync::Arc;

use portcullis_cluster::{Cluster, NodeId};
use portcullis_tunnel::TunnelMessage;

use super::socket::TunnelSocket;

/// Tells the server on `socket` to attach to every other live node, now and
/// as nodes join, until the tunnel closes (the caller aborts this then).
pub(crate) async fn to_every_node(cluster: Cluster, socket: Arc<TunnelSocket>) {
    let mut told: HashSet<NodeId> = HashSet::new();
    let mut members = cluster.watch_members();
    loop {
        let nodes = members.borrow_and_update().clone();
        for node in nodes.iter() {
            if node.id == *cluster.node_id() || told.contains(&node.id) {
                continue;
            }
            // No endpoint: the server opens the tunnel through its own
            // endpoint (the load balancer), and whichever node gets it
            // relays it to the target, or serves it if the target died, so
            // the server's tunnel heals instead of retrying a dead address.
            let message = TunnelMessage::ConnectionRebalance {
                target_id: node.id.to_string(),
                endpoint: String::new(),
                message: "attach to every gateway node of the cluster".into(),
            };
            if !socket.send(&message) {
                return;
            }
            tracing::debug!(node = %node.id, "application server asked to attach to another node");
            told.insert(node.id.clone());
        }
        // A node that died and came back is announced again.
        told.retain(|id| nodes.get(id.as_str()).is_some());
        if members.changed().await.is_err() {
            return;
        }
    }
}

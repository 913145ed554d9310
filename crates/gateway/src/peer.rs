//! What this node does for the other nodes of its cluster: apply their
//! operations to its connections, and send their invocations to its
//! connections with the acknowledgements streamed back.

use std::sync::Weak;

use portcullis_cluster::LocalHubs;
use tokio::sync::mpsc;

use crate::hub::{Filter, Operation, Outcome, Payload};
use crate::server::GatewayState;

/// The gateway as the cluster sees it. Weak: the cluster's tasks must not
/// keep a stopped gateway alive.
pub(crate) struct Peer(pub Weak<GatewayState>);

impl LocalHubs for Peer {
    fn apply(&self, hub: &str, operation: Operation) -> Outcome {
        match self.0.upgrade() {
            Some(state) => state.hubs.apply_from_peer(hub, operation),
            None => Outcome::Count(0),
        }
    }

    fn invoke(
        &self,
        hub: &str,
        filter: Filter,
        payload: Payload,
    ) -> Option<mpsc::UnboundedReceiver<String>> {
        let state = self.0.upgrade()?;
        // Served over tunnels: the tunnel's client state takes the acks.
        if let Some(tunnel) = state.tunnels.get(hub) {
            let targets = tunnel.hub.select(None, &filter);
            let (answers, _) = crate::tunnel::invoke_here(&tunnel, &targets, &payload).ok()?;
            return Some(answers);
        }
        // Served in this process (embedded): the hub takes them.
        let local = state.hubs.get(hub)?;
        let targets = local.select(None, &filter);
        local.invoke_here(&targets, &payload)
    }
}

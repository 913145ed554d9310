//! Graceful drain: how the gateway leaves when it is told to stop, without
//! dropping its users.
//!
//! When the shutdown future given to [`Gateway::serve`](crate::Gateway::serve)
//! resolves (SIGTERM or SIGINT for the binary), the gateway:
//!
//! 1. turns not ready: `GET /ready` answers `503`, new client handshakes and
//!    new tunnels get `503` with `Retry-After`, so a load balancer and the
//!    clients go to another node, while the listener keeps answering;
//! 2. closes its live clients in batches spread over the drain period
//!    (`--drain-period-ms`), so they do not all reconnect elsewhere in the
//!    same instant. Each close is at the Engine.IO level (a WebSocket close,
//!    or a close packet `1` to the pending or next poll): socket.io-client sees
//!    "transport close" and reconnects. A Socket.IO DISCONNECT ("io server
//!    disconnect") would stop its reconnection, so none is sent;
//! 3. once the application servers have heard their clients' `disconnected`
//!    events, tells every tunnel to reconnect (`ConnectionReconnect` with no
//!    endpoint: the official SDK and the Rust crate open a new tunnel to the
//!    endpoint they were configured with, a load balancer's, which sends them
//!    to a node that is ready), then closes the tunnels still open;
//! 4. stops the listener and waits for the last close frames to be written.
//!
//! All of it is bounded by the drain timeout (`--drain-timeout-ms`), counted
//! from the signal: past it, [`Gateway::serve`](crate::Gateway::serve)
//! returns whatever is left.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::{Connection, DisconnectReason, Ending, LocalHub};
use crate::server::GatewayState;

/// The shortest time between two batches of closes: with few connections
/// there are fewer batches, never one per millisecond.
const MIN_BATCH_INTERVAL: Duration = Duration::from_millis(50);

/// How long the application servers may take to receive the `disconnected`
/// events of the last closed clients before their tunnels are told to go.
const TUNNEL_SETTLE: Duration = Duration::from_secs(2);

/// How long a tunnel told to reconnect may take to close its WebSocket
/// itself before the gateway closes it.
const TUNNEL_LEAVE: Duration = Duration::from_secs(2);

/// How often the drain looks whether the tunnels are done (above).
const TUNNEL_CHECK: Duration = Duration::from_millis(20);

/// The `Retry-After` (seconds) of the `503` a draining gateway answers: a
/// client or application server that retries soon reaches another node.
pub(crate) const RETRY_AFTER_SECS: u64 = 1;

/// Whether the gateway is draining, and the tasks it waits for at the end.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    draining: AtomicBool,
    /// Cancelled when the drain starts (the deadline counts from then).
    started: CancellationToken,
    /// The tasks serving upgraded WebSockets (clients and tunnels), which
    /// the HTTP listener no longer sees: the drain waits for their last
    /// close frames.
    sockets: TaskTracker,
}

impl Drain {
    /// Whether new clients and tunnels are refused.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The tasks of upgraded WebSockets; wrap their futures with
    /// `track_future` so the drain waits for them.
    pub(crate) fn sockets(&self) -> &TaskTracker {
        &self.sockets
    }

    /// Resolves when the drain has started.
    pub(crate) async fn started(&self) {
        self.started.cancelled().await;
    }

    fn start(&self) {
        self.draining.store(true, Ordering::Release);
        self.started.cancel();
    }
}

/// Runs steps 1–3 of the drain (see the module). Returns once every client
/// is closed and every tunnel is gone; the caller stops the listener.
pub(crate) async fn run(state: &Arc<GatewayState>) {
    state.drain.start();
    let period = state.config.drain_period;
    let clients: Vec<(LocalHub, Arc<Connection>)> = state
        .hubs
        .all()
        .into_iter()
        .flat_map(|hub| {
            hub.connections()
                .into_iter()
                .map(move |connection| (hub.clone(), connection))
        })
        .collect();
    tracing::info!(
        clients = clients.len(),
        period_ms = period.as_millis() as u64,
        "draining: not ready; closing clients in batches so they reconnect elsewhere"
    );
    close_in_batches(&clients, period).await;
    drop(clients);
    // A handshake that was waiting for its application's verdict when the
    // drain started may have registered since.
    for hub in state.hubs.all() {
        hub.close_all(DisconnectReason::Shutdown);
    }
    send_tunnels_away(state).await;
    tracing::info!("drained: every client closed, every tunnel gone");
}

/// How many batches `total` clients are closed in over `period`: one per
/// client at most, and at least [`MIN_BATCH_INTERVAL`] apart.
pub(crate) fn batch_count(total: usize, period: Duration) -> usize {
    let by_time = period.as_millis() / MIN_BATCH_INTERVAL.as_millis();
    let by_time = usize::try_from(by_time).unwrap_or(usize::MAX);
    total.min(by_time).max(1)
}

/// Closes `clients` in batches: batch `i` of `n` at `period * i / n`, so the
/// first goes at once and the last a batch interval before the period ends.
async fn close_in_batches(clients: &[(LocalHub, Arc<Connection>)], period: Duration) {
    let total = clients.len();
    let batches = batch_count(total, period);
    let start = Instant::now();
    let mut closed = 0;
    for batch in 0..batches {
        let due = start + period.mul_f64(batch as f64 / batches as f64);
        tokio::time::sleep_until(due).await;
        let end = total * (batch + 1) / batches;
        for (hub, connection) in &clients[closed..end] {
            // Engine.IO close by the server: a WebSocket close frame, or `1`
            // to a pending poll; never a Socket.IO DISCONNECT.
            hub.end(connection, Ending::ByServer, DisconnectReason::Shutdown);
        }
        closed = end;
    }
}

/// Step 3: lets the application servers hear their last clients go, asks
/// every tunnel to reconnect (elsewhere, through the endpoint it was given),
/// and closes those that have not gone by themselves.
async fn send_tunnels_away(state: &GatewayState) {
    let tunnels = state.tunnels.all();
    if tunnels.is_empty() {
        return;
    }
    let settle = Instant::now() + TUNNEL_SETTLE;
    while Instant::now() < settle && tunnels.iter().any(|t| t.has_clients()) {
        tokio::time::sleep(TUNNEL_CHECK).await;
    }
    let told: usize = tunnels.iter().map(|t| t.ask_to_reconnect()).sum();
    tracing::info!(
        tunnels = told,
        "draining: application servers told to reconnect"
    );
    let leave = Instant::now() + TUNNEL_LEAVE;
    while Instant::now() < leave && tunnels.iter().any(|t| t.socket_count() > 0) {
        tokio::time::sleep(TUNNEL_CHECK).await;
    }
    for tunnel in &tunnels {
        tunnel.close_sockets();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_one_per_client_at_most_and_50_ms_apart_at_least() {
        let s = Duration::from_secs;
        assert_eq!(batch_count(0, s(10)), 1);
        assert_eq!(batch_count(22, s(2)), 22);
        assert_eq!(batch_count(100_000, s(10)), 200);
        assert_eq!(batch_count(5, Duration::ZERO), 1);
    }
}

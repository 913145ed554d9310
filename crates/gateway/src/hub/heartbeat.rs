//! Keeps sessions alive or ends them: Engine.IO pings when the gateway owns
//! the heartbeat, a silence limit when the handler does.
//!
//! Every connection of a hub shares one timer queue served by one task, so an
//! idle connection costs a queue entry instead of a task with its timers
//! (the largest part of an idle connection after its socket buffers).
//! Each entry is re-evaluated from the connection's own heartbeat state when
//! it falls due, and when an awaited pong arrives, so the queue never has to
//! be told about anything else.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use futures_util::StreamExt;
use portcullis_protocol::engine::Packet;
use tokio::sync::mpsc;
use tokio_util::time::DelayQueue;

use super::connection::HeartbeatState;
use super::{Connection, DisconnectReason, Ending, Heartbeat, Hub, HubInner, Payload};

/// A hub's heartbeat queue; its task starts with the first connection.
#[derive(Default)]
pub(crate) struct Heartbeats {
    events: OnceLock<mpsc::UnboundedSender<Weak<Connection>>>,
}

impl Heartbeats {
    /// Starts the heartbeat of a registered connection.
    pub fn watch(&self, hub: &Hub, connection: &Arc<Connection>) {
        self.send(hub, connection);
    }

    /// An awaited pong arrived: the next ping is due `ping_interval` from now.
    pub fn pong(&self, hub: &Hub, connection: &Arc<Connection>) {
        self.send(hub, connection);
    }

    fn send(&self, hub: &Hub, connection: &Arc<Connection>) {
        let events = self.events.get_or_init(|| {
            let (events, receiver) = mpsc::unbounded_channel();
            tokio::spawn(serve(Arc::downgrade(&hub.0), receiver));
            events
        });
        // Fails only once the hub is gone, and its connections with it.
        let _ = events.send(Arc::downgrade(connection));
    }
}

/// The hub's heartbeat task: ends when the hub is dropped.
async fn serve(hub: Weak<HubInner>, mut events: mpsc::UnboundedReceiver<Weak<Connection>>) {
    let ping = Payload::packet(Packet::Ping(String::new()));
    let mut queue: DelayQueue<Weak<Connection>> = DelayQueue::new();
    loop {
        let (connection, expired) = tokio::select! {
            event = events.recv() => match event {
                Some(connection) => (connection, false),
                None => return,
            },
            Some(entry) = queue.next(), if !queue.is_empty() => (entry.into_inner(), true),
        };
        let (Some(hub), Some(connection)) = (hub.upgrade(), connection.upgrade()) else {
            continue;
        };
        let hub = Hub(hub);
        // One entry per connection: a fallen-due entry has left the queue;
        // an event replaces the connection's pending entry.
        if let Some(key) = connection.take_heartbeat_key()
            && !expired
        {
            queue.try_remove(&key);
        }
        if let Some(deadline) = next_deadline(&hub, &connection, &ping, Instant::now()) {
            let key = queue.insert_at(Arc::downgrade(&connection), deadline.into());
            connection.set_heartbeat_key(key);
        }
    }
}

/// Acts on the connection's heartbeat at `now` (ping it, or end it) and
/// returns when to look again, or `None` once it has ended.
fn next_deadline(
    hub: &Hub,
    connection: &Connection,
    ping: &Payload,
    now: Instant,
) -> Option<Instant> {
    if connection.ending().is_some() {
        return None;
    }
    let params = &connection.params;
    let deadline = match params.heartbeat {
        // The handler pings: the client must be heard from within
        // interval + timeout.
        Heartbeat::Application => {
            Some(connection.last_seen() + params.ping_interval + params.ping_timeout)
                .filter(|deadline| now < *deadline)
        }
        // Engine.IO's schedule: a ping `ping_interval` after the previous
        // pong; the connection ends if that ping's pong takes longer than
        // `ping_timeout`. (Clients expect the next ping within interval +
        // timeout of the last one.)
        Heartbeat::Gateway => match connection.heartbeat_state() {
            HeartbeatState::AwaitingPong { ping_sent } => {
                Some(ping_sent + params.ping_timeout).filter(|deadline| now < *deadline)
            }
            HeartbeatState::Idle { last_pong } => {
                let due = last_pong + params.ping_interval;
                if now < due {
                    return Some(due);
                }
                connection.ping_sent(now);
                hub.send_to_connection_now(connection.id.as_str(), ping);
                return Some(now + params.ping_timeout);
            }
        },
    };
    if deadline.is_none() {
        hub.end(connection, Ending::ByServer, DisconnectReason::PingTimeout);
    }
    deadline
}

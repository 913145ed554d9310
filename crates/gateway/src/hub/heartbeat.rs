//! Keeps sessions alive or ends them: Engine.IO pings when the gateway owns
//! the heartbeat, a silence limit when the handler does.
//!
//! Every connection of a hub shares one timer queue served by one task, so an
//! idle connection costs a queue entry instead of a task with its timers
//! (the largest part of an idle connection after its socket buffers).
//! Each entry is re-evaluated from the connection's own heartbeat state when
//! it falls due, when an awaited pong arrives and when the connection ends,
//! so the queue never has to be told about anything else.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use futures_util::StreamExt;
use portcullis_protocol::engine::Packet;
use tokio::sync::mpsc;
use tokio_util::time::DelayQueue;

use super::connection::HeartbeatState;
use super::{Connection, DisconnectReason, Ending, Heartbeat, HubInner, LocalHub, Payload};

/// A hub's heartbeat queue; its task starts with the first connection.
#[derive(Default)]
pub(crate) struct Heartbeats {
    events: OnceLock<mpsc::UnboundedSender<Arc<Connection>>>,
}

impl Heartbeats {
    /// Starts the heartbeat of a registered connection.
    pub fn watch(&self, hub: &LocalHub, connection: &Arc<Connection>) {
        self.send(hub, connection);
    }

    /// An awaited pong arrived: the next ping is due `ping_interval` from now.
    pub fn pong(&self, hub: &LocalHub, connection: &Arc<Connection>) {
        self.send(hub, connection);
    }

    /// The connection ended: its entry leaves the queue now rather than when
    /// it falls due (under churn, ended connections would pile up there).
    pub fn forget(&self, connection: Arc<Connection>) {
        if let Some(events) = self.events.get() {
            let _ = events.send(connection);
        }
    }

    fn send(&self, hub: &LocalHub, connection: &Arc<Connection>) {
        let events = self.events.get_or_init(|| {
            let (events, receiver) = mpsc::unbounded_channel();
            tokio::spawn(serve(Arc::downgrade(&hub.0), receiver));
            events
        });
        // Fails only once the hub is gone, and its connections with it.
        let _ = events.send(connection.clone());
    }
}

/// The hub's heartbeat task: ends when the hub is dropped.
async fn serve(hub: Weak<HubInner>, mut events: mpsc::UnboundedReceiver<Arc<Connection>>) {
    let ping = Payload::packet(Packet::Ping(String::new()));
    let mut queue: DelayQueue<Weak<Connection>> = DelayQueue::new();
    loop {
        let (connection, expired) = tokio::select! {
            event = events.recv() => match event {
                Some(connection) => (Some(connection), false),
                None => return,
            },
            Some(entry) = queue.next(), if !queue.is_empty() => (entry.into_inner().upgrade(), true),
        };
        let (Some(hub), Some(connection)) = (hub.upgrade(), connection) else {
            continue;
        };
        let hub = LocalHub(hub);
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

/// Acts on the connection's heartbeat and token deadline at `now` (ping
/// it, or end it) and returns when to look again, or `None` once it has
/// ended.
fn next_deadline(
    hub: &LocalHub,
    connection: &Connection,
    ping: &Payload,
    now: Instant,
) -> Option<Instant> {
    if connection.ending().is_some() {
        return linger(hub, connection, now);
    }
    let token_deadline = connection.token_deadline();
    if token_deadline.is_some_and(|deadline| now >= deadline) {
        // An Engine.IO close, not a Socket.IO DISCONNECT: socket.io-client
        // sees "transport close" and reconnects (through negotiate, for a
        // fresh token).
        tracing::info!(hub = %hub.name(), "token expired: connection closed");
        hub.end(connection, Ending::ByServer, DisconnectReason::TokenExpired);
        return None;
    }
    let heartbeat = heartbeat_deadline(hub, connection, ping, now)?;
    Some(token_deadline.map_or(heartbeat, |token| token.min(heartbeat)))
}

/// The heartbeat's part of [`next_deadline`].
fn heartbeat_deadline(
    hub: &LocalHub,
    connection: &Connection,
    ping: &Payload,
    now: Instant,
) -> Option<Instant> {
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
                // The pong is due `ping_timeout` after the ping was due, as
                // on engine.io's single thread, rather than after this task
                // got round to it; only a runtime far behind its timers
                // counts from now, so a backlog cannot time clients out.
                let sent_at = if now.duration_since(due) < params.ping_timeout / 2 {
                    due
                } else {
                    now
                };
                connection.ping_sent(sent_at);
                hub.send_to_connection(connection.id.as_str(), ping);
                return Some(sent_at + params.ping_timeout);
            }
        },
    };
    if deadline.is_none() {
        hub.end(connection, Ending::ByServer, DisconnectReason::PingTimeout);
    }
    deadline
}

/// An ended connection the hub keeps for a last poll stays until
/// `ping_timeout` after it ended (its entry is then re-evaluated once more).
fn linger(hub: &LocalHub, connection: &Connection, now: Instant) -> Option<Instant> {
    if !hub.keeps_for_last_poll(connection.id.as_str()) {
        return None;
    }
    match connection.ended_at() {
        Some(ended) if now < ended + connection.params.ping_timeout => {
            Some(ended + connection.params.ping_timeout)
        }
        _ => {
            hub.forget_last_poll(connection.id.as_str());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hub::{ConnectionId, HubSettings, SessionParams, Transport};

    fn connection(ping_interval: Duration) -> Arc<Connection> {
        let params = SessionParams {
            ping_interval,
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            heartbeat: Heartbeat::Gateway,
            max_queued_frames: 16,
            write_timeout: Duration::from_secs(10),
        };
        Arc::new(Connection::new(
            ConnectionId::generate(),
            None,
            None,
            params,
            Transport::WebSocket,
        ))
    }

    /// Waits up to a second for `done`.
    async fn eventually(done: impl Fn() -> bool) -> bool {
        for _ in 0..100 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done()
    }

    #[tokio::test]
    async fn an_ended_connection_leaves_the_queue_at_once() {
        let hub = LocalHub::new("h".into(), HubSettings::default(), Arc::default());
        let connection = connection(Duration::from_secs(25));
        hub.register(connection.clone());
        // The queue's entry is the one weak reference.
        assert!(eventually(|| Arc::weak_count(&connection) == 1).await);
        hub.end(&connection, Ending::ByServer, DisconnectReason::PingTimeout);
        assert!(
            eventually(|| Arc::weak_count(&connection) == 0).await,
            "the entry stays until it falls due, 25 s later"
        );
    }

    #[tokio::test]
    async fn pings_fall_due_and_a_pong_reschedules() {
        let hub = LocalHub::new("h".into(), HubSettings::default(), Arc::default());
        let connection = connection(Duration::from_millis(30));
        hub.register(connection.clone());
        let awaiting = || {
            matches!(
                connection.heartbeat_state(),
                HeartbeatState::AwaitingPong { .. }
            )
        };
        assert!(eventually(awaiting).await, "no ping was sent");
        assert_eq!(connection.drain().len(), 1, "the ping is queued");
        hub.pong(&connection);
        assert!(!awaiting());
        assert!(eventually(awaiting).await, "no second ping");
        assert!(connection.ending().is_none());
    }
}

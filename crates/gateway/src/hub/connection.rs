//! One client connection (an Engine.IO session): its outbound queue and the
//! state its transports share.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::time::delay_queue::Key;

use super::ConnectionId;
use super::handler::{DisconnectReason, Heartbeat};
use super::payload::{Frame, Payload};

/// Which transport currently carries the connection's outbound packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Long-polling, no upgrade under way.
    Polling,
    /// A WebSocket answered the probe; polls are released with noops until
    /// the client sends `5` on it.
    Upgrading,
    /// The WebSocket carries everything.
    WebSocket,
}

/// Settings fixed at accept time.
#[derive(Debug, Clone)]
pub(crate) struct SessionParams {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub max_payload: u64,
    pub heartbeat: Heartbeat,
    pub max_queued_frames: usize,
}

/// A client connection. Shared by the hub (which sends to it) and by the
/// transport that currently serves it.
#[derive(Debug)]
pub struct Connection {
    pub(crate) id: ConnectionId,
    pub(crate) user_id: Option<Arc<str>>,
    /// Keyed hash of the handshake's token: later requests that carry a token
    /// must carry the same one. The token itself is not kept.
    pub(crate) token_fingerprint: Option<u64>,
    pub(crate) params: SessionParams,
    state: Mutex<State>,
    /// Wakes whoever drains the queue (the pending poll or the WebSocket).
    pub(crate) wake: Notify,
    /// Cancelled once, when the connection ends.
    pub(crate) closed: CancellationToken,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Frame>,
    transport: Transport,
    poll_active: bool,
    post_active: bool,
    /// Set when the connection ends. `Some(true)` when the server ended it,
    /// so a pending poll carries a close packet to the client.
    end: Option<Ending>,
    reason: Option<DisconnectReason>,
    heartbeat: HeartbeatState,
    /// The connection's entry in its hub's heartbeat queue.
    heartbeat_key: Option<Key>,
    last_seen: Instant,
}

/// Where a connection is in its heartbeat (when the gateway pings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatState {
    /// No ping outstanding; the last pong (or the start) was at `last_pong`.
    Idle { last_pong: Instant },
    /// A ping was sent at `ping_sent` and its pong has not arrived.
    AwaitingPong { ping_sent: Instant },
}

/// How the connection ended, as its transports must tell the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The client asked: release a pending poll with a noop.
    ByClient,
    /// The gateway or the handler decided: tell the client with `1`.
    ByServer,
}

impl Connection {
    pub(crate) fn new(
        id: ConnectionId,
        user_id: Option<&str>,
        token_fingerprint: Option<u64>,
        params: SessionParams,
        transport: Transport,
    ) -> Self {
        let now = Instant::now();
        Connection {
            id,
            user_id: user_id.map(Arc::from),
            token_fingerprint,
            params,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                transport,
                poll_active: false,
                post_active: false,
                end: None,
                reason: None,
                heartbeat: HeartbeatState::Idle { last_pong: now },
                heartbeat_key: None,
                last_seen: now,
            }),
            wake: Notify::new(),
            closed: CancellationToken::new(),
        }
    }

    /// The connection id.
    pub fn id(&self) -> &ConnectionId {
        &self.id
    }

    /// The user id from the token's `sub` claim.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-written
        // in a way that matters more than losing the connection; carry on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a payload. Returns `Err` with the reason the connection must end
    /// (queue bound reached), or `Ok(true)` if the payload held a close packet
    /// `1`: the frames before it are queued and the caller ends the connection.
    pub(crate) fn enqueue(&self, payload: &Payload) -> Result<bool, DisconnectReason> {
        let mut state = self.lock();
        if state.end.is_some() {
            return Ok(false);
        }
        let mut close = false;
        for frame in payload.frames() {
            if frame.is_close() {
                close = true;
                break;
            }
            if state.queue.len() >= self.params.max_queued_frames {
                return Err(DisconnectReason::SlowClient);
            }
            state.queue.push_back(frame.clone());
        }
        drop(state);
        self.wake.notify_one();
        Ok(close)
    }

    /// Marks the connection ended; returns false if it already was.
    pub(crate) fn end(&self, ending: Ending, reason: &DisconnectReason) -> bool {
        let mut state = self.lock();
        if state.end.is_some() {
            return false;
        }
        state.end = Some(ending);
        state.reason = Some(reason.clone());
        drop(state);
        self.closed.cancel();
        self.wake.notify_waiters();
        self.wake.notify_one();
        true
    }

    /// How the connection ended, if it did.
    pub(crate) fn ending(&self) -> Option<Ending> {
        self.lock().end
    }

    /// Why the connection ended, if it did.
    pub(crate) fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.lock().reason.clone()
    }

    /// Takes every queued frame, with the queue's buffer: an idle
    /// connection keeps no buffer sized for its last burst.
    pub(crate) fn drain(&self) -> VecDeque<Frame> {
        std::mem::take(&mut self.lock().queue)
    }

    pub(crate) fn transport(&self) -> Transport {
        self.lock().transport
    }

    pub(crate) fn set_transport(&self, transport: Transport) {
        self.lock().transport = transport;
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// Claims the single long-poll slot; false if a poll is already pending.
    pub(crate) fn begin_poll(&self) -> bool {
        !std::mem::replace(&mut self.lock().poll_active, true)
    }

    pub(crate) fn end_poll(&self) {
        self.lock().poll_active = false;
    }

    /// Claims the single POST slot; false if a POST is already in progress.
    pub(crate) fn begin_post(&self) -> bool {
        !std::mem::replace(&mut self.lock().post_active, true)
    }

    pub(crate) fn end_post(&self) {
        self.lock().post_active = false;
    }

    /// What a long-poll may return now: `None` to keep waiting.
    pub(crate) fn poll_ready(&self) -> Option<PollReady> {
        let mut state = self.lock();
        if let Some(ending) = state.end {
            let frames = std::mem::take(&mut state.queue).into();
            return Some(PollReady::Ended(ending, frames));
        }
        if state.transport != Transport::Polling {
            return Some(PollReady::Noop);
        }
        if state.queue.is_empty() {
            return None;
        }
        Some(PollReady::Frames(std::mem::take(&mut state.queue).into()))
    }

    /// Records that the client was heard from.
    pub(crate) fn touch(&self) {
        self.lock().last_seen = Instant::now();
    }

    /// Records a pong; returns false if none was expected.
    pub(crate) fn pong(&self) -> bool {
        let mut state = self.lock();
        let now = Instant::now();
        state.last_seen = now;
        let expected = matches!(state.heartbeat, HeartbeatState::AwaitingPong { .. });
        if expected {
            state.heartbeat = HeartbeatState::Idle { last_pong: now };
        }
        expected
    }

    /// Records that a ping went out at `at`.
    pub(crate) fn ping_sent(&self, at: Instant) {
        self.lock().heartbeat = HeartbeatState::AwaitingPong { ping_sent: at };
    }

    pub(crate) fn heartbeat_state(&self) -> HeartbeatState {
        self.lock().heartbeat
    }

    /// When the client was last heard from.
    pub(crate) fn last_seen(&self) -> Instant {
        self.lock().last_seen
    }

    pub(crate) fn take_heartbeat_key(&self) -> Option<Key> {
        self.lock().heartbeat_key.take()
    }

    pub(crate) fn set_heartbeat_key(&self, key: Key) {
        self.lock().heartbeat_key = Some(key);
    }
}

/// The answer to a long-poll.
#[derive(Debug)]
pub(crate) enum PollReady {
    Frames(Vec<Frame>),
    /// An upgrade is under way or done: release the poll with a noop.
    Noop,
    Ended(Ending, Vec<Frame>),
}

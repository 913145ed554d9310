//! One client connection (an Engine.IO session): its outbound queue and the
//! state its transports share.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::time::delay_queue::Key;

use super::lifetime::Lease;
use super::{ConnectionId, DisconnectReason, Frame, Heartbeat, Payload, Revocation};
use crate::admission::Ticket;

/// Which transport currently carries the connection's outbound packets.
///
/// An upgrade moves forward only: `Polling` → `Probing` → `Upgrading` →
/// `WebSocket`, or back to `Polling` if the probing WebSocket goes away.
/// Exactly one WebSocket may probe a session: it claims `Probing` when its
/// upgrade request is accepted, so any other WebSocket with the same sid is
/// turned away from then on (as engine.io does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Long-polling, no upgrade under way.
    Polling,
    /// A WebSocket was accepted for this session and has not answered the
    /// probe yet; polling goes on as before.
    Probing,
    /// A WebSocket answered the probe; polls are released with noops until
    /// the client sends `5` on it.
    Upgrading,
    /// The WebSocket carries everything.
    WebSocket,
}

impl Transport {
    /// Whether a probing WebSocket may still change the transport, so a
    /// polling request must first let it read what the client already sent.
    pub(crate) fn is_probing(self) -> bool {
        matches!(self, Transport::Probing | Transport::Upgrading)
    }
}

/// Settings fixed at accept time.
#[derive(Debug, Clone)]
pub(crate) struct SessionParams {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub max_payload: u64,
    pub heartbeat: Heartbeat,
    pub max_queued_frames: usize,
    /// Longest a write to the client may take.
    pub write_timeout: Duration,
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
    /// A polling request asks the probing WebSocket to handle the frames it
    /// has already received ([`Connection::sync_with_probe`]) …
    probe_sync: Notify,
    /// … and the WebSocket answers here once it has.
    probe_synced: Notify,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Frame>,
    transport: Transport,
    poll_active: bool,
    post_active: bool,
    /// Whether the connection's last frames (and the close, if any) went to
    /// a poll: a client-closed session lingers until a racing poll has them.
    farewell_sent: bool,
    /// Set when the connection ends. `Some(true)` when the server ended it,
    /// so a pending poll carries a close packet to the client.
    end: Option<Ending>,
    ended_at: Option<Instant>,
    reason: Option<DisconnectReason>,
    heartbeat: HeartbeatState,
    /// The connection's entry in its hub's heartbeat queue.
    heartbeat_key: Option<Key>,
    /// Its share of the gateway's admission counts, given back when it ends.
    ticket: Option<Ticket>,
    last_seen: Instant,
    /// The token the connection holds now.
    lease: Lease,
    /// Set when a revocation ends the connection: a poll takes its last
    /// frames (the DISCONNECTs) alone, and the close comes with the next.
    last_frames_alone: bool,
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
                farewell_sent: false,
                end: None,
                ended_at: None,
                reason: None,
                heartbeat: HeartbeatState::Idle { last_pong: now },
                heartbeat_key: None,
                ticket: None,
                last_seen: now,
                lease: Lease::default(),
                last_frames_alone: false,
            }),
            wake: Notify::new(),
            closed: CancellationToken::new(),
            probe_sync: Notify::new(),
            probe_synced: Notify::new(),
        }
    }

    /// The connection with the lease of the token it was opened with.
    pub(crate) fn with_lease(self, lease: Lease) -> Self {
        self.lock().lease = lease;
        self
    }

    /// Whether the token the connection holds now is covered by
    /// `revocation`.
    pub(crate) fn holds_revoked(&self, revocation: &Revocation) -> bool {
        self.lock()
            .lease
            .revoked_by(revocation, self.user_id.as_deref())
    }

    /// Replaces the lease after an in-band refresh.
    pub(crate) fn renew(&self, lease: Lease) {
        self.lock().lease = lease;
    }

    /// When the connection's token runs out, on hubs that enforce expiry.
    pub(crate) fn token_deadline(&self) -> Option<Instant> {
        self.lock().lease.deadline
    }

    /// Whether a later request's token fingerprint is one of this session's:
    /// the handshake's, or the last one refreshed in band.
    pub(crate) fn holds_token(&self, fingerprint: u64) -> bool {
        self.token_fingerprint == Some(fingerprint)
            || self.lock().lease.refreshed_fingerprint == Some(fingerprint)
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

    /// Keeps the connection's admission ticket until it ends.
    pub(crate) fn hold(&self, ticket: Ticket) {
        self.lock().ticket = Some(ticket);
    }

    /// Marks the connection ended; returns false if it already was.
    pub(crate) fn end(&self, ending: Ending, reason: &DisconnectReason) -> bool {
        let mut state = self.lock();
        if state.end.is_some() {
            return false;
        }
        state.end = Some(ending);
        state.ended_at = Some(Instant::now());
        state.reason = Some(reason.clone());
        state.last_frames_alone = *reason == DisconnectReason::TokenRevoked;
        let ticket = state.ticket.take();
        drop(state);
        drop(ticket);
        self.closed.cancel();
        self.wake.notify_waiters();
        self.wake.notify_one();
        true
    }

    /// How the connection ended, if it did.
    pub(crate) fn ending(&self) -> Option<Ending> {
        self.lock().end
    }

    /// When the connection ended, if it did.
    pub(crate) fn ended_at(&self) -> Option<Instant> {
        self.lock().ended_at
    }

    /// Why the connection ended, if it did.
    pub(crate) fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.lock().reason.clone()
    }

    /// Whether frames wait to be sent.
    pub(crate) fn has_queued_frames(&self) -> bool {
        !self.lock().queue.is_empty()
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

    /// Claims the session's one probe for a WebSocket upgrade request;
    /// false if another WebSocket probes or carries it, or it has ended.
    pub(crate) fn claim_probe(&self) -> bool {
        let mut state = self.lock();
        if state.transport != Transport::Polling || state.end.is_some() {
            return false;
        }
        state.transport = Transport::Probing;
        true
    }

    /// The probing WebSocket went away before the client sent `5`: the
    /// session stays on polling (and a later WebSocket may probe again).
    pub(crate) fn abandon_probe(&self) {
        if self.transport().is_probing() {
            self.set_transport(Transport::Polling);
        }
    }

    /// Lets the probing WebSocket handle the frames it has already received
    /// before a polling request is judged against the transport.
    ///
    /// The client orders its frames: it sends `2probe` and `5` on the
    /// WebSocket before its next poll, but the two arrive on different TCP
    /// connections served by different tasks. engine.io, on one thread,
    /// sees them in arrival order; here the poll asks the WebSocket task to
    /// catch up first. Bounded by `limit`, in case the WebSocket task never
    /// runs (its client hung up during the upgrade).
    pub(crate) async fn sync_with_probe(&self, limit: Duration) {
        // What the client sent on the WebSocket may be in the kernel while
        // the runtime has not yet polled for it (tokio marks a socket
        // drained after a short read). A yielded task resumes only after its
        // worker has polled the I/O driver, so the WebSocket's readiness is
        // current when it catches up.
        tokio::task::yield_now().await;
        let synced = self.probe_synced.notified();
        tokio::pin!(synced);
        synced.as_mut().enable();
        if !self.transport().is_probing() {
            // The probe finished (and told nobody) while this task yielded.
            return;
        }
        // `notify_one` keeps a permit if the WebSocket task is not waiting
        // yet, so a task that has not started still syncs when it does.
        self.probe_sync.notify_one();
        let _ = tokio::time::timeout(limit, synced).await;
    }

    /// Resolves when a polling request asks the probing WebSocket to sync.
    pub(crate) async fn probe_sync_requested(&self) {
        self.probe_sync.notified().await;
    }

    /// The probing WebSocket has handled every frame it had received.
    pub(crate) fn probe_synced(&self) {
        self.probe_synced.notify_waiters();
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
            if state.last_frames_alone && !state.queue.is_empty() {
                // The last frames go alone, the close with the next poll:
                // socket.io-client handles a packet a tick after reading
                // it, so a DISCONNECT read in the same response as the
                // close would come too late (the client would take
                // "transport close" and reconnect).
                return Some(PollReady::Frames(std::mem::take(&mut state.queue).into()));
            }
            state.farewell_sent = true;
            let frames = std::mem::take(&mut state.queue).into();
            return Some(PollReady::Ended(ending, frames));
        }
        if matches!(state.transport, Transport::Upgrading | Transport::WebSocket) {
            return Some(PollReady::Noop);
        }
        if state.queue.is_empty() {
            return None;
        }
        Some(PollReady::Frames(std::mem::take(&mut state.queue).into()))
    }

    /// Whether a poll already took the ended connection's last frames.
    pub(crate) fn farewell_sent(&self) -> bool {
        self.lock().farewell_sent
    }

    /// Whether the client has missed its heartbeat deadline at `now`: a
    /// request that arrives after it finds the session timed out, however
    /// late the heartbeat timer runs.
    pub(crate) fn heartbeat_overdue(&self, now: Instant) -> bool {
        let state = self.lock();
        let params = &self.params;
        let deadline = match (params.heartbeat, state.heartbeat) {
            (Heartbeat::Application, _) => {
                state.last_seen + params.ping_interval + params.ping_timeout
            }
            (Heartbeat::Gateway, HeartbeatState::AwaitingPong { ping_sent }) => {
                ping_sent + params.ping_timeout
            }
            (Heartbeat::Gateway, HeartbeatState::Idle { last_pong }) => {
                last_pong + params.ping_interval + params.ping_timeout
            }
        };
        now >= deadline
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

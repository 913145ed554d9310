//! One tunnel WebSocket to an application server: a writer task fed by a
//! channel, requests the gateway sends (correlated by ack id), and the
//! keep-alive the SDK needs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use portcullis_tunnel::{HttpRequest, HttpResponse, TunnelMessage, frame};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How long the gateway waits for an answer to a request it sent.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Frames waiting to be written to one tunnel before it counts as stuck.
const OUTBOUND_QUEUE: usize = 65_536;

/// Why a request over the tunnel got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("the tunnel to the application server closed")]
    Closed,
    #[error("the application server did not answer in time")]
    Timeout,
    #[error("the request does not fit in a tunnel frame: {0}")]
    TooLarge(String),
}

/// The sending half of a tunnel WebSocket, shared by everything that talks to
/// the application server over it.
#[derive(Debug)]
pub(crate) struct TunnelSocket {
    pub id: u64,
    outbound: mpsc::Sender<Bytes>,
    pending: Mutex<HashMap<u64, oneshot::Sender<HttpResponse>>>,
    next_ack: AtomicU64,
    pub closed: CancellationToken,
}

impl TunnelSocket {
    /// Wraps the sink of a tunnel WebSocket: spawns its writer (with the
    /// keep-alive) and returns the shared handle.
    pub fn spawn(
        id: u64,
        sink: SplitSink<WebSocket, Message>,
        keepalive: Duration,
    ) -> Arc<TunnelSocket> {
        let (outbound, frames) = mpsc::channel(OUTBOUND_QUEUE);
        let socket = Arc::new(TunnelSocket {
            id,
            outbound,
            pending: Mutex::new(HashMap::new()),
            next_ack: AtomicU64::new(1),
            closed: CancellationToken::new(),
        });
        tokio::spawn(write_frames(sink, frames, socket.closed.clone(), keepalive));
        socket
    }

    /// Queues a message; false if the tunnel is gone or hopelessly behind,
    /// or the message cannot be framed (logged; the tunnel stays up).
    pub fn send(&self, message: &TunnelMessage) -> bool {
        match frame::encode(message) {
            Ok(bytes) => self.send_frame(bytes),
            Err(error) => {
                tracing::warn!(%error, "tunnel message not sent");
                false
            }
        }
    }

    /// Queues an encoded frame; false if the tunnel is gone or hopelessly
    /// behind.
    fn send_frame(&self, bytes: Bytes) -> bool {
        if self.closed.is_cancelled() {
            return false;
        }
        match self.outbound.try_send(bytes) {
            Ok(()) => true,
            Err(_) => {
                // A tunnel that cannot take 64k frames is stuck: drop it and
                // let the SDK reconnect rather than grow without bound.
                self.close();
                false
            }
        }
    }

    /// Sends a request built by `build` (given a fresh ack id) and waits for
    /// its first response.
    pub async fn request(
        &self,
        build: impl FnOnce(u64) -> HttpRequest,
    ) -> Result<HttpResponse, RequestError> {
        let ack_id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let bytes = frame::encode(&TunnelMessage::HttpRequest(build(ack_id)))
            .map_err(|e| RequestError::TooLarge(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        self.lock_pending().insert(ack_id, reply);
        if !self.send_frame(bytes) {
            self.lock_pending().remove(&ack_id);
            return Err(RequestError::Closed);
        }
        let result = tokio::select! {
            answer = answer => answer.map_err(|_| RequestError::Closed),
            _ = tokio::time::sleep(REQUEST_TIMEOUT) => Err(RequestError::Timeout),
            _ = self.closed.cancelled() => Err(RequestError::Closed),
        };
        self.lock_pending().remove(&ack_id);
        result
    }

    /// Hands a response from the application server to whoever waits for it.
    pub fn on_response(&self, response: HttpResponse) {
        if let Some(waiter) = self.lock_pending().remove(&response.ack_id) {
            let _ = waiter.send(response);
        }
    }

    pub fn close(&self) {
        self.closed.cancel();
        self.lock_pending().clear();
    }

    fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<HttpResponse>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut frames: mpsc::Receiver<Bytes>,
    closed: CancellationToken,
    interval: Duration,
) {
    // A few bytes: encoding cannot fail, but a failure must not panic.
    let keepalive = frame::encode(&TunnelMessage::ServiceStatus {
        message: "keepalive".to_owned(),
    })
    .unwrap_or_default();
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        let next = tokio::select! {
            _ = closed.cancelled() => break,
            _ = ticker.tick() => keepalive.clone(),
            frame = frames.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
        };
        if sink.feed(Message::Binary(next)).await.is_err() {
            break;
        }
        // Write whatever else is queued before one flush.
        while let Ok(more) = frames.try_recv() {
            if sink.feed(Message::Binary(more)).await.is_err() {
                closed.cancel();
                return;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    closed.cancel();
    let _ = sink.close().await;
}

impl TunnelSocket {
    /// Sends a request whose answer nobody waits for (`connected`,
    /// `disconnected`): the response is dropped on arrival.
    pub fn notify(&self, build: impl FnOnce(u64) -> HttpRequest) {
        let ack_id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        self.send(&TunnelMessage::HttpRequest(build(ack_id)));
    }
}

//! One tunnel WebSocket to an application server: a writer task fed by a
//! channel, requests the gateway sends (correlated by ack id), and the
//! keep-alive the SDK needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use portcullis_tunnel::pending::Requests;
use portcullis_tunnel::{HttpRequest, HttpResponse, TunnelMessage, frame};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// How long the gateway waits for an answer to a request it sent.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The fewest queued frames at which a tunnel counts as stuck, whatever
/// its request queue (`--tunnel-queue-frames`).
const STUCK_FLOOR: usize = 65_536;

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
    outbound: mpsc::UnboundedSender<Queued>,
    /// Room for requests in the queue: a request waits for a permit, held
    /// until the writer has written it.
    request_room: Arc<Semaphore>,
    /// Frames in the queue, requests or not.
    queued: Arc<AtomicUsize>,
    /// Past this many queued frames the tunnel is stuck (replies and
    /// notifications, which cannot wait, would otherwise pile up).
    stuck_at: usize,
    /// Requests sent and not answered yet, by ack id.
    pending: Requests<HttpResponse>,
    pub closed: CancellationToken,
}

impl TunnelSocket {
    /// Wraps the sink of a tunnel WebSocket: spawns its writer (with the
    /// keep-alive) and returns the shared handle.
    ///
    /// `queue` frames may wait to be written: requests wait for room
    /// (backpressure on the clients that send them); replies and
    /// notifications that find no room mean the tunnel is stuck.
    pub fn spawn(
        id: u64,
        sink: SplitSink<WebSocket, Message>,
        keepalive: Duration,
        queue: usize,
    ) -> Arc<TunnelSocket> {
        let queue = queue.max(1);
        let (outbound, frames) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let socket = Arc::new(TunnelSocket {
            id,
            outbound,
            request_room: Arc::new(Semaphore::new(queue)),
            queued: queued.clone(),
            // Replies and notifications are few per client and request;
            // this many waiting means nobody reads.
            stuck_at: queue.saturating_mul(4).max(STUCK_FLOOR),
            pending: Requests::default(),
            closed: CancellationToken::new(),
        });
        let writer = Writer {
            frames,
            queued,
            closed: socket.closed.clone(),
            keepalive,
        };
        tokio::spawn(writer.run(sink));
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
        self.enqueue(bytes, None)
    }

    fn enqueue(&self, bytes: Bytes, permit: Option<OwnedSemaphorePermit>) -> bool {
        if self.closed.is_cancelled() {
            return false;
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.stuck_at {
            // The application server has stopped reading: drop its tunnel
            // and let the SDK reconnect rather than grow without bound.
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.close();
            return false;
        }
        let queued = Queued {
            bytes,
            _permit: permit,
        };
        if self.outbound.send(queued).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Sends a request built by `build` (given a fresh ack id) and waits for
    /// its first response.
    pub async fn request(
        &self,
        build: impl FnOnce(u64) -> HttpRequest,
    ) -> Result<HttpResponse, RequestError> {
        let (ack_id, answer) = self.pending.wait();
        let bytes = match frame::encode(&TunnelMessage::HttpRequest(build(ack_id))) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.pending.remove(ack_id);
                return Err(RequestError::TooLarge(error.to_string()));
            }
        };
        // A busy tunnel makes the request wait for room (within its timeout)
        // rather than closing the tunnel of every client of that server.
        let exchange = async {
            let room = self.request_room.clone().acquire_owned().await;
            if !room.is_ok_and(|permit| self.enqueue(bytes, Some(permit))) {
                return Err(RequestError::Closed);
            }
            answer.await.map_err(|_| RequestError::Closed)
        };
        let result = tokio::select! {
            answer = exchange => answer,
            _ = tokio::time::sleep(REQUEST_TIMEOUT) => Err(RequestError::Timeout),
            _ = self.closed.cancelled() => Err(RequestError::Closed),
        };
        self.pending.remove(ack_id);
        result
    }

    /// Hands a response from the application server to whoever waits for it.
    pub fn on_response(&self, response: HttpResponse) {
        self.pending.resolve(response.ack_id, response);
    }

    pub fn close(&self) {
        self.closed.cancel();
        self.pending.clear();
    }
}

/// A frame waiting to be written; a request's permit goes with it.
#[derive(Debug)]
struct Queued {
    bytes: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

/// The task that writes a tunnel's frames, with the keep-alive.
struct Writer {
    frames: mpsc::UnboundedReceiver<Queued>,
    queued: Arc<AtomicUsize>,
    closed: CancellationToken,
    keepalive: Duration,
}

impl Writer {
    async fn run(mut self, mut sink: SplitSink<WebSocket, Message>) {
        // A few bytes: encoding cannot fail, but a failure must not panic.
        let keepalive = frame::encode(&TunnelMessage::ServiceStatus {
            message: "keepalive".to_owned(),
        })
        .unwrap_or_default();
        let mut ticker = tokio::time::interval(self.keepalive);
        ticker.tick().await;
        loop {
            let next = tokio::select! {
                _ = self.closed.cancelled() => break,
                _ = ticker.tick() => keepalive.clone(),
                frame = self.frames.recv() => match frame {
                    Some(frame) => self.written(frame),
                    None => break,
                },
            };
            if sink.feed(Message::Binary(next)).await.is_err() {
                break;
            }
            // Write whatever else is queued before one flush.
            while let Ok(more) = self.frames.try_recv() {
                let more = self.written(more);
                if sink.feed(Message::Binary(more)).await.is_err() {
                    self.closed.cancel();
                    return;
                }
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
        self.closed.cancel();
        let _ = sink.close().await;
    }

    /// Takes a frame off the count; its permit (if a request) frees room.
    fn written(&self, queued: Queued) -> Bytes {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        queued.bytes
    }
}

impl TunnelSocket {
    /// Sends a request whose answer nobody waits for (`connected`,
    /// `disconnected`): the response is dropped on arrival.
    pub fn notify(&self, build: impl FnOnce(u64) -> HttpRequest) {
        self.send(&TunnelMessage::HttpRequest(build(self.pending.next_id())));
    }
}

//! Acknowledgements both ways: answering the client's (`AckSender`) and
//! awaiting the clients' answers to our emits (`AckFuture`, `AckStream`).

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, FuturesUnordered, Stream, StreamExt as _};
use portcullis_protocol::socket::PacketKind;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::errors::{AckError, SendError};
use crate::packet;
pub(crate) use crate::packet::AckResponse;
use crate::socket::{Sid, SocketRef};

/// What an acknowledgement deserializes into: any `DeserializeOwned` type
/// (one argument as itself, several as a tuple), or [`WithBinary<T>`] to
/// keep the binary attachments too.
pub trait FromAck: Sized + Send + 'static {
    /// Builds the value from the answer's arguments and attachments.
    fn from_ack(data: Value, binary: Vec<Bytes>) -> Result<Self, serde_json::Error>;
}

impl<T: DeserializeOwned + Send + 'static> FromAck for T {
    fn from_ack(data: Value, _binary: Vec<Bytes>) -> Result<Self, serde_json::Error> {
        serde_json::from_value(data)
    }
}

/// An acknowledgement's data with its binary attachments.
///
/// ```no_run
/// # use portcullis_server::{SocketRef, WithBinary};
/// # async fn f(socket: SocketRef) -> Result<(), portcullis_server::AckError> {
/// let answer = socket.emit_with_ack::<WithBinary<String>>("thumbnail", &"cat.png").await?;
/// println!("{}: {} attachment(s)", answer.data, answer.binary.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WithBinary<T> {
    /// The arguments, placeholders removed.
    pub data: T,
    /// The attachments, in order.
    pub binary: Vec<Bytes>,
}

impl<T: DeserializeOwned + Send + 'static> FromAck for WithBinary<T> {
    fn from_ack(data: Value, binary: Vec<Bytes>) -> Result<Self, serde_json::Error> {
        Ok(WithBinary {
            data: serde_json::from_value(data)?,
            binary,
        })
    }
}

/// One pending acknowledgement of one socket.
pub(crate) struct Pending {
    pub socket: SocketRef,
    pub id: u64,
    pub rx: oneshot::Receiver<AckResponse>,
    pub sent_at: Instant,
}

impl Pending {
    async fn wait<T: FromAck>(self, timeout: Duration) -> Result<T, AckError> {
        let Pending {
            socket,
            id,
            rx,
            sent_at,
        } = self;
        match tokio::time::timeout_at(sent_at + timeout, rx).await {
            Ok(Ok(response)) => {
                T::from_ack(response.data, response.binary).map_err(AckError::Decode)
            }
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                socket.forget_ack(id);
                Err(AckError::Timeout)
            }
        }
    }
}

/// The acknowledgement of an emit to one socket. Await it (the event is
/// already sent); set its timeout with [`timeout`](Self::timeout).
#[must_use = "the acknowledgement is only received if awaited"]
pub struct AckFuture<T> {
    pending: Result<Pending, SendError>,
    timeout: Duration,
    _answer: PhantomData<fn() -> T>,
}

impl<T> AckFuture<T> {
    pub(crate) fn new(pending: Result<Pending, SendError>, timeout: Duration) -> Self {
        AckFuture {
            pending,
            timeout,
            _answer: PhantomData,
        }
    }

    /// How long to wait for the answer, counted from the emit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<T> std::fmt::Debug for AckFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckFuture")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<T: FromAck> IntoFuture for AckFuture<T> {
    type Output = Result<T, AckError>;
    type IntoFuture = BoxFuture<'static, Result<T, AckError>>;

    fn into_future(self) -> Self::IntoFuture {
        let timeout = self.timeout;
        Box::pin(async move { self.pending?.wait(timeout).await })
    }
}

/// The acknowledgements of a broadcast: one result per recipient, each
/// recipient with its own ack id and its own deadline.
///
/// Use it as a [`Stream`] of `(socket id, result)` in arrival order, or
/// await it for all of them as a `Vec`.
///
/// Over the tunnel, when several application processes share the hub, the
/// sockets of the *other* processes are reached with one `:invoke` through
/// the gateway, which answers with their acknowledgements but not their
/// socket ids: those items carry an empty [`Sid`], and such a socket that
/// does not answer in time yields no item (the official SDK cannot tell
/// either). Sockets of this process are reported exactly, timeouts included.
///
/// ```no_run
/// # use portcullis_server::SocketIo;
/// # use std::time::Duration;
/// # async fn f(io: SocketIo) {
/// let answers = io.of("/").emit_with_ack::<String>("vote", &"lunch?")
///     .timeout(Duration::from_secs(3))
///     .await;
/// for (sid, answer) in answers {
///     println!("{sid}: {answer:?}");
/// }
/// # }
/// ```
#[must_use = "the acknowledgements are only received if polled"]
pub struct AckStream<T> {
    state: StreamState<T>,
    timeout: Duration,
    sent_at: Instant,
}

type AckItem<T> = (Sid, Result<T, AckError>);

/// Acknowledgements from other processes' sockets (tunnel mode).
pub(crate) type RemoteAcks = mpsc::UnboundedReceiver<AckResponse>;

enum StreamState<T> {
    Ready(Vec<Result<Pending, (Sid, SendError)>>, Option<RemoteAcks>),
    Running {
        local: FuturesUnordered<BoxFuture<'static, AckItem<T>>>,
        local_done: bool,
        remote: Option<BoxStream<'static, AckItem<T>>>,
    },
}

impl<T: FromAck> AckStream<T> {
    pub(crate) fn new(
        pending: Vec<Result<Pending, (Sid, SendError)>>,
        remote: Option<RemoteAcks>,
        timeout: Duration,
    ) -> Self {
        AckStream {
            state: StreamState::Ready(pending, remote),
            timeout,
            sent_at: Instant::now(),
        }
    }

    /// How long to wait for each recipient, counted from the emit. Only
    /// effective before the stream is first polled.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many sockets of this process the event was sent to (sockets of
    /// other processes sharing the hub over the tunnel are not counted).
    pub fn len(&self) -> usize {
        match &self.state {
            StreamState::Ready(v, _) => v.len(),
            StreamState::Running { local, .. } => local.len(),
        }
    }

    /// Whether no socket of this process was targeted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn start(&mut self) {
        let StreamState::Ready(pending, remote) = &mut self.state else {
            return;
        };
        let timeout = self.timeout;
        let local: FuturesUnordered<_> = std::mem::take(pending)
            .into_iter()
            .map(|p| -> BoxFuture<'static, AckItem<T>> {
                match p {
                    Ok(p) => Box::pin(async move {
                        let sid = p.socket.id().clone();
                        (sid, p.wait(timeout).await)
                    }),
                    Err((sid, e)) => Box::pin(async move { (sid, Err(AckError::Send(e))) }),
                }
            })
            .collect();
        let remote = remote.take().map(|rx| {
            let deadline = tokio::time::sleep_until(self.sent_at + timeout);
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            )
            .take_until(deadline)
            .map(|r: AckResponse| {
                let answer = T::from_ack(r.data, r.binary).map_err(AckError::Decode);
                (Sid::unknown(), answer)
            })
            .boxed()
        });
        self.state = StreamState::Running {
            local,
            local_done: false,
            remote,
        };
    }
}

impl<T: FromAck> Stream for AckStream<T> {
    type Item = AckItem<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is Unpin (boxed futures and streams), so the stream is too.
        let this = self.get_mut();
        this.start();
        let StreamState::Running {
            local,
            local_done,
            remote,
        } = &mut this.state
        else {
            unreachable!("started above");
        };
        if !*local_done {
            match local.poll_next_unpin(cx) {
                Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
                Poll::Ready(None) => *local_done = true,
                Poll::Pending => {}
            }
        }
        if let Some(stream) = remote {
            match stream.poll_next_unpin(cx) {
                Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
                Poll::Ready(None) => *remote = None,
                Poll::Pending => {}
            }
        }
        if *local_done && remote.is_none() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

impl<T: FromAck> IntoFuture for AckStream<T> {
    type Output = Vec<AckItem<T>>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.collect())
    }
}

impl<T> std::fmt::Debug for AckStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckStream")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Answers a client's emit that asked for an acknowledgement (the client
/// passed a callback, or used `emitWithAck`). An extractor.
///
/// Extract `Option<AckSender>` to know whether an answer was asked for; a
/// plain `AckSender` is always extracted and its `send` does nothing when
/// the client asked for none.
///
/// ```no_run
/// use portcullis_server::{SocketIo, SocketRef, extract::{AckSender, Data}};
///
/// let io = SocketIo::new();
/// io.ns("/", |socket: SocketRef| async move {
///     socket.on("add", |Data((a, b)): Data<(i64, i64)>, ack: AckSender| async move {
///         ack.send(&(a + b)).ok();
///     });
/// });
/// ```
#[derive(Debug)]
pub struct AckSender {
    socket: SocketRef,
    id: Option<u64>,
    binary: Vec<Bytes>,
}

impl AckSender {
    pub(crate) fn new(socket: SocketRef, id: Option<u64>) -> Self {
        AckSender {
            socket,
            id,
            binary: Vec::new(),
        }
    }

    /// Whether the client asked for an acknowledgement.
    pub fn requested(&self) -> bool {
        self.id.is_some()
    }

    /// Adds binary attachments to the answer.
    pub fn bin(mut self, binary: impl IntoIterator<Item = impl Into<Bytes>>) -> Self {
        self.binary.extend(binary.into_iter().map(Into::into));
        self
    }

    /// Sends the answer (spread like [`SocketRef::emit`]'s data).
    pub fn send<T: Serialize + ?Sized>(self, data: &T) -> Result<(), SendError> {
        let Some(id) = self.id else {
            return Ok(());
        };
        let args = packet::to_args(data)?;
        let data = packet::ack_data(args, self.binary.len());
        self.socket
            .send_packet(PacketKind::Ack, Some(id), &data, &self.binary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_ack_reads_data_and_binary() {
        let v: (i32, String) = FromAck::from_ack(serde_json::json!([1, "a"]), vec![]).unwrap();
        assert_eq!(v, (1, "a".to_owned()));
        let w: WithBinary<String> =
            FromAck::from_ack(serde_json::json!("x"), vec![Bytes::from_static(b"1")]).unwrap();
        assert_eq!(w.binary.len(), 1);
    }

    #[test]
    fn future_resolves_immediately_on_send_errors() {
        let f = AckFuture::<String>::new(Err(SendError::Disconnected), Duration::from_secs(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert!(matches!(
            rt.block_on(f.into_future()),
            Err(AckError::Send(SendError::Disconnected))
        ));
    }

    #[allow(dead_code)]
    fn assert_send<T: Send>(_: T) {}

    #[allow(dead_code)]
    fn futures_are_send(f: AckFuture<String>, s: AckStream<String>) {
        assert_send(f.into_future());
        assert_send(s);
    }
}

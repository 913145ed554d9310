//! Reading what a refused request still sends, so its client sees the answer.
//!
//! hyper closes a connection whose request body was not read to its end. If
//! the client is still sending that body, the kernel answers the bytes that
//! arrive after the close with a reset, and the client often loses the
//! response it was sent: reqwest reports `IncompleteMessage`, a browser a
//! network error, instead of the `400` of an ended session or the `413` of a
//! payload over `maxPayload` that says what to do. (nginx's cure is its
//! "lingering close".)
//!
//! Here the client and REST endpoints watch their requests' bodies (the
//! other routes take none, or small forms their extractors read whole).
//! When the answer is ready and the handler left part of the body unread,
//! the rest is read and thrown away before the answer goes, up to a bound of
//! bytes and of time; past either, the connection is cut as before. Reading
//! costs no memory (nothing is kept), and the bytes bound is the one a
//! session's own POST may use.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use futures_util::StreamExt;
use http_body::{Frame, SizeHint};
use tokio::sync::oneshot;

use crate::server::GatewayState;

/// How much of an unread body is read and thrown away, and for how long.
#[derive(Debug, Clone, Copy)]
struct LingerLimits {
    bytes: usize,
    time: Duration,
}

impl LingerLimits {
    /// The gateway's largest accepted payload, within its write timeout.
    fn of(state: &GatewayState) -> Self {
        LingerLimits {
            bytes: usize::try_from(state.config.max_payload).unwrap_or(usize::MAX),
            time: state.config.write_timeout,
        }
    }
}

/// A request's body, watched: see [`watch`].
pub(crate) struct Unread(Option<oneshot::Receiver<Body>>);

/// Watches `request`'s body (requests without one, such as polls and
/// upgrades, go as they are). Give the result to [`Unread::read_rest`] once
/// the answer is ready.
///
/// Called by the endpoints that take bodies rather than as a router layer:
/// axum's `from_fn` layer clones the route's service for every request,
/// which cost the polling path about 4,000 instructions a request.
pub(crate) fn watch(request: Request) -> (Request, Unread) {
    if http_body::Body::is_end_stream(request.body()) {
        return (request, Unread(None));
    }
    let (parts, body) = request.into_parts();
    let (body, unread) = Watched::wrap(body);
    (Request::from_parts(parts, body), Unread(Some(unread)))
}

impl Unread {
    /// Reads and throws away what the handler left of the body, within the
    /// gateway's limits. Nothing when it was read to its end, or is still
    /// held (a forward to another node streams it on).
    pub(crate) async fn read_rest(self, state: &GatewayState) {
        if let Some(rest) = self.0.and_then(|mut unread| unread.try_recv().ok()) {
            discard(rest, LingerLimits::of(state)).await;
        }
    }
}

/// Reads a body to its end and throws it away, within `limits`.
async fn discard(body: Body, limits: LingerLimits) {
    let read = async {
        let mut seen = 0usize;
        let mut stream = body.into_data_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            seen = seen.saturating_add(chunk.len());
            if seen > limits.bytes {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(limits.time, read).await;
}

/// A request body that, dropped before its end, hands itself back.
struct Watched {
    /// `None` once the body has ended.
    inner: Option<Body>,
    unread: Option<oneshot::Sender<Body>>,
}

impl Watched {
    fn wrap(body: Body) -> (Body, oneshot::Receiver<Body>) {
        let (unread, receiver) = oneshot::channel();
        let watched = Watched {
            inner: Some(body),
            unread: Some(unread),
        };
        (Body::new(watched), receiver)
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            // A streamed body may learn it has ended only here.
            self.inner = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |inner| inner.size_hint())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let (Some(inner), Some(unread)) = (self.inner.take(), self.unread.take()) else {
            return;
        };
        if !http_body::Body::is_end_stream(&inner) {
            // The endpoint may be gone (the client hung up): then the body
            // is simply dropped.
            let _ = unread.send(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    fn streamed(chunks: usize, size: usize) -> Body {
        let stream = futures_util::stream::iter(
            (0..chunks).map(move |_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; size]))),
        );
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_is_not_handed_back() {
        let (body, mut unread) = Watched::wrap(streamed(3, 10));
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(bytes.len(), 30);
        assert!(unread.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_body_dropped_part_way_comes_back_with_the_rest() {
        let (mut body, mut unread) = Watched::wrap(streamed(3, 10));
        let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(first.len(), 10);
        drop(body);
        let rest = unread.try_recv().expect("the unread body comes back");
        assert_eq!(
            axum::body::to_bytes(rest, usize::MAX).await.unwrap().len(),
            20
        );
    }

    #[tokio::test]
    async fn discarding_stops_at_the_byte_bound() {
        // An endless body: discard must return, not read forever.
        let endless = Body::from_stream(futures_util::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(Bytes::from_static(&[0; 1024]))
        }));
        let limits = LingerLimits {
            bytes: 64 * 1024,
            time: Duration::from_secs(60),
        };
        tokio::time::timeout(Duration::from_secs(10), discard(endless, limits))
            .await
            .expect("discard stops after its byte bound");
    }

    #[tokio::test]
    async fn discarding_stops_at_the_time_bound() {
        let stalled =
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
        let limits = LingerLimits {
            bytes: usize::MAX,
            time: Duration::from_millis(50),
        };
        tokio::time::timeout(Duration::from_secs(10), discard(stalled, limits))
            .await
            .expect("discard stops after its time bound");
    }
}

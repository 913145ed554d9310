//! Running handler futures on the Tokio runtime.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Waker};

use futures_util::FutureExt as _;

/// Runs a handler's future: its synchronous start happens now, in order with
/// the packets of its connection (so `socket.on(...)` calls made before the
/// first `.await` are in place for the next packet); the rest on a task. A
/// panic is logged, not propagated.
pub(crate) fn run_handler<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let guarded = AssertUnwindSafe(future).catch_unwind().map(|result| {
        if result.is_err() {
            tracing::error!("a Socket.IO handler panicked");
        }
    });
    let mut guarded = Box::pin(guarded);
    if guarded
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
    {
        spawn(guarded);
    }
}

/// Spawns `future` on the current Tokio runtime; without one it is dropped
/// and logged (a handler called from outside a runtime must not panic).
fn spawn<F>(future: F)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(future);
        }
        Err(_) => tracing::error!("a Socket.IO operation needs a Tokio runtime; it was dropped"),
    }
}

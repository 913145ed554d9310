//! The operations the Socket.IO layer asks of the gateway, and the helpers
//! that run handler futures.
//!
//! Embedded, they go straight to the gateway's [`Hub`]; its operations
//! complete without waiting, so they are driven to completion in place.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll, Waker};

use futures_util::FutureExt as _;
use portcullis_gateway::hub::{ConnectionId, Filter, Hub, Payload};
use portcullis_tunnel::group_name::namespace_group_prefix;

/// Where sends and group changes go.
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    hub: Hub,
}

impl Backend {
    pub fn embedded(hub: Hub) -> Self {
        Backend { hub }
    }

    pub fn hub_name(&self) -> &str {
        self.hub.name()
    }

    pub fn send_to(&self, connection: &ConnectionId, payload: Payload) -> bool {
        let hub = self.hub.clone();
        let id = connection.clone();
        run_now(async move { hub.send_to_connection(id.as_str(), payload).await }).unwrap_or(true)
    }

    pub fn broadcast(&self, filter: Filter, payload: Payload) -> usize {
        let hub = self.hub.clone();
        run_now(async move { hub.send_to_all(&filter, payload).await }).unwrap_or(0)
    }

    pub fn join(&self, connection: &ConnectionId, groups: Vec<String>) {
        let hub = self.hub.clone();
        let filter = Filter::ConnectionId(connection.to_string());
        run_now(async move { hub.add_to_groups(&groups, &filter).await });
    }

    pub fn leave(&self, connection: &ConnectionId, groups: Vec<String>) {
        let hub = self.hub.clone();
        let filter = Filter::ConnectionId(connection.to_string());
        run_now(async move { hub.remove_from_groups(&groups, &filter).await });
    }

    /// Leaves the namespace group and every room group of `namespace`.
    pub fn leave_namespace(&self, connection: &ConnectionId, namespace: &str) {
        let hub = self.hub.clone();
        let id = connection.clone();
        let prefix = namespace_group_prefix(namespace);
        run_now(async move {
            hub.leave_groups_where(id.as_str(), |g| g.starts_with(&prefix))
                .await
        });
    }

    pub fn close(&self, connection: &ConnectionId, reason: &str) {
        let hub = self.hub.clone();
        let id = connection.clone();
        let reason = reason.to_owned();
        run_now(async move { hub.close_connection(id.as_str(), &reason).await });
    }
}

/// Polls `future` once; if it is not done, finishes it on a task. Returns
/// its output when it completed in place.
pub(crate) fn run_now<F>(future: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut future = Box::pin(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => {
            spawn(future);
            None
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_now_completes_ready_futures_in_place() {
        assert_eq!(run_now(async { 7 }), Some(7));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        assert_eq!(
            run_now(async move {
                rx.await.ok();
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }),
            None
        );
        tx.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the pending part finishes on a task");
    }
}

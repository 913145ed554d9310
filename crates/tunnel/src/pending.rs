//! Request/response correlation by `AckId`, for either end of a tunnel.
//!
//! Each side numbers the requests it sends (1, 2, 3, …) and matches the
//! responses that come back by their `AckId`. [`Pending`] allocates the ids
//! and keeps whatever waits for each answer: a oneshot sender for a plain
//! request ([`Pending::wait`], [`Pending::resolve`]), or any state of the
//! caller's for a streamed one ([`Pending::insert`], [`Pending::answer`]).
//! Closing the tunnel drops the waiters ([`Pending::clear`],
//! [`Pending::retain`]), which fails every receiver still waiting.
//!
//! Timeouts and bounds stay with the caller; this type does no I/O and
//! needs no runtime.
//!
//! ```
//! use portcullis_tunnel::pending::Requests;
//!
//! let pending = Requests::<&str>::default();
//! let (first, mut answer) = pending.wait();
//! assert_eq!(first, 1);
//! assert!(pending.resolve(first, "200 OK"));
//! assert!(!pending.resolve(first, "again"), "answered once");
//! assert_eq!(answer.try_recv().unwrap(), Some("200 OK"));
//!
//! let (second, mut lost) = pending.wait();
//! assert_eq!(second, 2);
//! pending.clear(); // the tunnel closed
//! assert!(lost.try_recv().is_err(), "canceled");
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The channel [`Pending::wait`] answers through, re-exported so that
/// callers need no dependency of their own to name it.
pub use futures_channel::oneshot;

/// Plain requests, each waiting for its first answer.
pub type Requests<T> = Pending<oneshot::Sender<T>>;

/// The requests one end of a tunnel has sent and not yet seen answered,
/// each with its waiter `W`.
#[derive(Debug)]
pub struct Pending<W> {
    /// The next ack id; ids start at 1, as the SDK's do.
    next: AtomicU64,
    waiters: Mutex<HashMap<u64, W>>,
}

impl<W> Default for Pending<W> {
    fn default() -> Self {
        Self {
            next: AtomicU64::new(1),
            waiters: Mutex::new(HashMap::new()),
        }
    }
}

impl<W> Pending<W> {
    /// A fresh ack id that nobody waits on (a request whose answer is
    /// dropped on arrival).
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Allocates an ack id and registers `waiter` for its answer.
    pub fn insert(&self, waiter: W) -> u64 {
        let ack_id = self.next_id();
        self.lock().insert(ack_id, waiter);
        ack_id
    }

    /// Stops waiting for `ack_id` (answered elsewhere, timed out, or never
    /// sent), returning its waiter.
    pub fn remove(&self, ack_id: u64) -> Option<W> {
        self.lock().remove(&ack_id)
    }

    /// Hands one response to the waiter of `ack_id` through `f`; the `last`
    /// response of the exchange also removes the waiter. `None` when nobody
    /// waits for `ack_id` (the response is to be dropped).
    pub fn answer<R>(&self, ack_id: u64, last: bool, f: impl FnOnce(&mut W) -> R) -> Option<R> {
        let mut waiters = self.lock();
        let result = f(waiters.get_mut(&ack_id)?);
        if last {
            waiters.remove(&ack_id);
        }
        Some(result)
    }

    /// Keeps the waiters for which `keep` is true and drops the others (for
    /// example those of a lost WebSocket); returns how many were dropped.
    pub fn retain(&self, mut keep: impl FnMut(&W) -> bool) -> usize {
        let mut waiters = self.lock();
        let before = waiters.len();
        waiters.retain(|_, waiter| keep(waiter));
        before - waiters.len()
    }

    /// Drops every waiter: the tunnel closed and no answer will come.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many requests wait for an answer.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no request waits for an answer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, W>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T> Pending<oneshot::Sender<T>> {
    /// Allocates an ack id and the receiver of its first answer. The
    /// receiver fails (`Canceled`) when the waiter is dropped: by
    /// [`Pending::clear`], [`Pending::retain`] or [`Pending::remove`].
    pub fn wait(&self) -> (u64, oneshot::Receiver<T>) {
        let (reply, answer) = oneshot::channel();
        (self.insert(reply), answer)
    }

    /// Gives `value` to whoever waits for `ack_id`; false when nobody does
    /// (unknown id, already answered, or the waiter gave up).
    pub fn resolve(&self, ack_id: u64, value: T) -> bool {
        self.remove(ack_id)
            .is_some_and(|reply| reply.send(value).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_from_one_whether_waited_on_or_not() {
        let pending = Pending::<()>::default();
        assert_eq!(pending.next_id(), 1);
        assert_eq!(pending.insert(()), 2);
        assert_eq!(pending.next_id(), 3);
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn streamed_answers_reach_the_waiter_until_the_last() {
        let pending = Pending::<Vec<&str>>::default();
        let id = pending.insert(Vec::new());
        assert_eq!(pending.answer(id, false, |got| got.push("a")), Some(()));
        assert_eq!(pending.answer(id, true, |got| got.push("b")), Some(()));
        assert_eq!(pending.answer(id, true, |got| got.push("c")), None);
        assert!(pending.is_empty());
        assert_eq!(pending.answer(99, true, |_| ()), None);
    }

    #[test]
    fn closing_fails_every_waiter() {
        let pending = Requests::<u16>::default();
        let (a, mut rx_a) = pending.wait();
        let (_b, mut rx_b) = pending.wait();
        pending.clear();
        assert!(rx_a.try_recv().is_err(), "canceled");
        assert!(rx_b.try_recv().is_err(), "canceled");
        assert!(!pending.resolve(a, 200));
    }

    #[test]
    fn retain_drops_only_the_others() {
        let pending = Pending::<u64>::default();
        pending.insert(1);
        pending.insert(2);
        pending.insert(1);
        assert_eq!(pending.retain(|socket| *socket != 1), 2);
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn a_waiter_that_gave_up_is_not_resolved() {
        let pending = Requests::<u16>::default();
        let (id, rx) = pending.wait();
        drop(rx);
        assert!(!pending.resolve(id, 200));
        assert!(pending.is_empty());
    }
}

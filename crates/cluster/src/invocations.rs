//! Acknowledgements streamed back from other nodes.
//!
//! An invocation (an event every matching connection must acknowledge) is
//! published once; each node that received it sends the acknowledgements
//! of its own connections as they come, then an end. The stream closes when
//! every receiver has ended, or at the invocation's deadline.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

struct Open {
    answers: mpsc::UnboundedSender<String>,
    /// How many nodes received it, once Redis has said.
    expected: Option<usize>,
    ended: usize,
    /// Acknowledgements still allowed (bounds what one invocation keeps).
    budget: usize,
}

/// Invocations waiting for acknowledgements, at most `capacity` at once.
pub(crate) struct Invocations {
    capacity: usize,
    max_answers: usize,
    open: Mutex<(u64, HashMap<u64, Open>)>,
}

impl Invocations {
    pub(crate) fn new(capacity: usize, max_answers: usize) -> Self {
        Invocations {
            capacity,
            max_answers,
            open: Mutex::new((1, HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, Open>)> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens an invocation: its id and its acknowledgements. `None` when
    /// `capacity` are open already.
    pub(crate) fn open(&self) -> Option<(u64, mpsc::UnboundedReceiver<String>)> {
        let mut guard = self.lock();
        let (next, open) = &mut *guard;
        if open.len() >= self.capacity {
            return None;
        }
        let id = *next;
        *next += 1;
        let (answers, receiver) = mpsc::unbounded_channel();
        open.insert(
            id,
            Open {
                answers,
                expected: None,
                ended: 0,
                budget: self.max_answers,
            },
        );
        Some((id, receiver))
    }

    pub(crate) fn expect(&self, id: u64, nodes: usize) {
        let mut guard = self.lock();
        if let Some(open) = guard.1.get_mut(&id) {
            open.expected = Some(nodes);
        }
        Self::close_if_done(&mut guard.1, id);
    }

    pub(crate) fn answer(&self, id: u64, answer: String) {
        let mut guard = self.lock();
        if let Some(open) = guard.1.get_mut(&id)
            && open.budget > 0
        {
            open.budget -= 1;
            let _ = open.answers.send(answer);
        }
    }

    pub(crate) fn end(&self, id: u64) {
        let mut guard = self.lock();
        if let Some(open) = guard.1.get_mut(&id) {
            open.ended += 1;
        }
        Self::close_if_done(&mut guard.1, id);
    }

    /// Closes the stream whatever is missing (deadline, or never published).
    pub(crate) fn close(&self, id: u64) {
        self.lock().1.remove(&id);
    }

    fn close_if_done(open: &mut HashMap<u64, Open>, id: u64) {
        if open
            .get(&id)
            .is_some_and(|o| o.expected.is_some_and(|e| o.ended >= e))
        {
            open.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stream_ends_when_every_node_has() {
        let invocations = Invocations::new(4, 100);
        let (id, mut answers) = invocations.open().unwrap();
        invocations.answer(id, "a".into());
        invocations.end(id);
        invocations.expect(id, 2);
        invocations.answer(id, "b".into());
        invocations.end(id);
        assert_eq!(answers.recv().await.as_deref(), Some("a"));
        assert_eq!(answers.recv().await.as_deref(), Some("b"));
        assert_eq!(answers.recv().await, None);
    }

    #[tokio::test]
    async fn bounded_in_count_and_answers() {
        let invocations = Invocations::new(1, 1);
        let (id, mut answers) = invocations.open().unwrap();
        assert!(invocations.open().is_none());
        invocations.answer(id, "a".into());
        invocations.answer(id, "b".into());
        invocations.close(id);
        assert_eq!(answers.recv().await.as_deref(), Some("a"));
        assert_eq!(answers.recv().await, None);
    }
}

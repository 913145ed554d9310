//! Answers gathered from other nodes.
//!
//! A request is published once; Redis tells how many subscribers received
//! it, and exactly those answer. The request completes when that many
//! answers are in, or at its deadline with what came (a node that died
//! meanwhile never answers).

use std::collections::HashMap;
use std::sync::Mutex;

use portcullis_hub::Outcome;
use tokio::sync::oneshot;

/// One request waiting for answers.
struct Waiting {
    /// How many answers to wait for, once Redis has said.
    expected: Option<usize>,
    received: usize,
    merged: Option<Outcome>,
    done: oneshot::Sender<Option<Outcome>>,
}

impl Waiting {
    fn complete(&self) -> bool {
        self.expected
            .is_some_and(|expected| self.received >= expected)
    }
}

/// Requests waiting for answers, at most `capacity` at once.
pub(crate) struct Gathering {
    capacity: usize,
    next: Mutex<(u64, HashMap<u64, Waiting>)>,
}

impl Gathering {
    pub(crate) fn new(capacity: usize) -> Self {
        Gathering {
            capacity,
            next: Mutex::new((1, HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, Waiting>)> {
        self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a request: its id and where its merged answers arrive (`None`
    /// when no node answered). `None` when `capacity` requests wait already.
    pub(crate) fn open(&self) -> Option<(u64, oneshot::Receiver<Option<Outcome>>)> {
        let mut guard = self.lock();
        let (next, waiting) = &mut *guard;
        if waiting.len() >= self.capacity {
            return None;
        }
        let id = *next;
        *next += 1;
        let (done, receiver) = oneshot::channel();
        waiting.insert(
            id,
            Waiting {
                expected: None,
                received: 0,
                merged: None,
                done,
            },
        );
        Some((id, receiver))
    }

    /// Redis says how many nodes received request `id`.
    pub(crate) fn expect(&self, id: u64, answers: usize) {
        let mut guard = self.lock();
        if let Some(waiting) = guard.1.get_mut(&id) {
            waiting.expected = Some(answers);
        }
        self.finish_if_complete(&mut guard.1, id);
    }

    /// An answer to request `id`.
    pub(crate) fn answer(&self, id: u64, outcome: Outcome) {
        let mut guard = self.lock();
        if let Some(waiting) = guard.1.get_mut(&id) {
            waiting.received += 1;
            waiting.merged = Some(match waiting.merged.take() {
                Some(merged) => merged.merge(outcome),
                None => outcome,
            });
        }
        self.finish_if_complete(&mut guard.1, id);
    }

    /// Gives up on request `id` (its deadline passed, or it was never
    /// published): completes it with the answers so far. Returns how many
    /// answers were missing, if it was still open.
    pub(crate) fn abandon(&self, id: u64) -> Option<usize> {
        let waiting = self.lock().1.remove(&id)?;
        let missing = waiting
            .expected
            .map_or(1, |expected| expected.saturating_sub(waiting.received));
        let _ = waiting.done.send(waiting.merged);
        Some(missing)
    }

    fn finish_if_complete(&self, waiting: &mut HashMap<u64, Waiting>, id: u64) {
        if waiting.get(&id).is_some_and(Waiting::complete)
            && let Some(finished) = waiting.remove(&id)
        {
            let _ = finished.done.send(finished.merged);
        }
    }

    /// Requests still waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().1.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_before_or_after_the_count() {
        let gathering = Gathering::new(8);
        let (id, done) = gathering.open().unwrap();
        gathering.answer(id, Outcome::Count(2));
        gathering.expect(id, 2);
        gathering.answer(id, Outcome::Count(3));
        assert_eq!(done.await.unwrap(), Some(Outcome::Count(5)));
        assert_eq!(gathering.len(), 0);
    }

    #[tokio::test]
    async fn nobody_to_answer() {
        let gathering = Gathering::new(8);
        let (id, done) = gathering.open().unwrap();
        gathering.expect(id, 0);
        assert_eq!(done.await.unwrap(), None);
    }

    #[tokio::test]
    async fn abandoned_requests_keep_what_came() {
        let gathering = Gathering::new(8);
        let (id, done) = gathering.open().unwrap();
        gathering.expect(id, 3);
        gathering.answer(id, Outcome::Exists(true));
        assert_eq!(gathering.abandon(id), Some(2));
        assert_eq!(done.await.unwrap(), Some(Outcome::Exists(true)));
        assert_eq!(gathering.abandon(id), None);
        gathering.answer(id, Outcome::Exists(false));
    }

    #[test]
    fn bounded() {
        let gathering = Gathering::new(2);
        let _a = gathering.open().unwrap();
        let _b = gathering.open().unwrap();
        assert!(gathering.open().is_none());
    }
}

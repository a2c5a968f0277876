//! Requests that wait together so one transaction serves them all (group commit). Each caller
//! `submit`s and waits for its answer; one worker takes what is waiting (`next`), writes it in
//! one transaction and `answer`s each. One fsync then acknowledges many requests.

use parking_lot::Mutex;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

pub struct Batch<T, R> {
    queue: Mutex<Vec<Waiting<T, R>>>,
    ready: Notify,
}

/// A request waiting for the worker, and who waits for its answer.
pub struct Waiting<T, R> {
    pub item: T,
    done: oneshot::Sender<R>,
}

impl<T, R> Waiting<T, R> {
    pub fn answer(self, answer: R) {
        let _ = self.done.send(answer);
    }
}

impl<T, R> Default for Batch<T, R> {
    fn default() -> Self {
        Batch {
            queue: Mutex::new(Vec::new()),
            ready: Notify::new(),
        }
    }
}

impl<T, R> Batch<T, R> {
    /// Queues `item` for the worker; its answer, or `None` when the worker dropped it unanswered
    /// (it stopped).
    pub async fn submit(&self, item: T) -> Option<R> {
        let (done, answer) = oneshot::channel();
        self.queue.lock().push(Waiting { item, done });
        self.ready.notify_one();
        answer.await.ok()
    }

    /// Up to `max` waiting requests, oldest first; waits up to `idle` for one (then none).
    pub async fn next(&self, max: usize, idle: Duration) -> Vec<Waiting<T, R>> {
        let ready = self.ready.notified();
        if let Some(batch) = self.take(max) {
            return batch;
        }
        let _ = tokio::time::timeout(idle, ready).await;
        self.take(max).unwrap_or_default()
    }

    fn take(&self, max: usize) -> Option<Vec<Waiting<T, R>>> {
        let mut q = self.queue.lock();
        if q.is_empty() {
            return None;
        }
        let n = q.len().min(max);
        Some(q.drain(..n).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn one_worker_answers_each_of_many_waiting_requests() {
        let batch: Arc<Batch<u32, u32>> = Arc::default();
        let callers: Vec<_> = (0..10)
            .map(|i| {
                let batch = batch.clone();
                tokio::spawn(async move { batch.submit(i).await })
            })
            .collect();
        let mut served = 0;
        let mut rounds = 0;
        while served < 10 {
            let waiting = batch.next(4, Duration::from_secs(5)).await;
            assert!(waiting.len() <= 4, "at most max at once");
            rounds += 1;
            served += waiting.len();
            for w in waiting {
                let answer = w.item * 10;
                w.answer(answer);
            }
        }
        assert!(rounds >= 3);
        for (i, caller) in callers.into_iter().enumerate() {
            assert_eq!(
                caller.await.unwrap(),
                Some(i as u32 * 10),
                "each gets its own answer"
            );
        }
        // Nothing waiting: `next` gives up after `idle`.
        assert!(batch.next(4, Duration::from_millis(10)).await.is_empty());
    }

    #[tokio::test]
    async fn a_request_dropped_unanswered_is_told() {
        let batch: Arc<Batch<u32, u32>> = Arc::default();
        let caller = {
            let batch = batch.clone();
            tokio::spawn(async move { batch.submit(1).await })
        };
        drop(batch.next(1, Duration::from_secs(5)).await);
        assert_eq!(caller.await.unwrap(), None);
    }
}

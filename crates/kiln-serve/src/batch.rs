//! Adaptive micro-batching: concurrent small requests to one model version are coalesced into
//! one [`Scorer::predict`](crate::Scorer::predict) call.
//!
//! A [`BatchQueue`] belongs to one loaded model. A request decodes its body, queues its rows
//! and, when no batch is running, leads one itself: it takes the queued requests (up to
//! `batch_max_rows` rows), predicts them in one call and hands each its predictions. While a
//! batch runs, new requests queue; when it ends, one of them leads the next batch. So an idle
//! server predicts a request at once (no added latency at concurrency 1), and under load the
//! batch size follows the arrival rate. A leader waits (yielding, at most `batch_wait`) for
//! more rows only while other requests to the same model are still being decoded.
//!
//! No lock is held across a prediction; the queue lock guards a `VecDeque` push or drain.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kiln_train::artifact::Predictions;
use tokio::sync::{oneshot, Notify};

use crate::encode::Batch;
use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::scorer::Scorer;

type Answer = (Batch, Result<Predictions, ServeError>);

struct Pending {
    batch: Batch,
    tx: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Inner {
    pending: VecDeque<Pending>,
    rows: usize,
    /// A leader is forming or predicting a batch.
    busy: bool,
}

/// The micro-batch queue of one loaded model.
pub(crate) struct BatchQueue {
    inner: Mutex<Inner>,
    wake: Notify,
    /// Requests to this model being decoded (about to queue).
    arriving: AtomicUsize,
    max_rows: usize,
    wait: Duration,
    metrics: Arc<Metrics>,
}

/// Counts a request as arriving until it has queued (or failed to decode).
pub(crate) struct Arrival<'a>(&'a AtomicUsize);

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Clears `busy` if a leader is cancelled before it took its batch, and wakes a waiter.
struct Leading<'a>(&'a BatchQueue);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let more = {
            let mut g = self.0.lock();
            g.busy = false;
            !g.pending.is_empty()
        };
        if more {
            self.0.wake.notify_one();
        }
    }
}

impl BatchQueue {
    pub(crate) fn new(max_rows: usize, wait: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            arriving: AtomicUsize::new(0),
            max_rows,
            wait,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Call before decoding a request for this model.
    pub(crate) fn arrive(&self) -> Arrival<'_> {
        self.arriving.fetch_add(1, Ordering::Relaxed);
        Arrival(&self.arriving)
    }

    /// Predict `batch`, possibly together with other requests; gives the batch back.
    pub(crate) async fn predict(
        &self,
        scorer: &dyn Scorer,
        batch: Batch,
        arrival: Arrival<'_>,
    ) -> Answer {
        let (tx, mut rx) = oneshot::channel();
        let mut lead = {
            let mut g = self.lock();
            g.rows += batch.n_rows;
            g.pending.push_back(Pending { batch, tx });
            !std::mem::replace(&mut g.busy, true)
        };
        drop(arrival);
        loop {
            if lead {
                self.run(scorer).await;
            }
            tokio::select! {
                biased;
                answer = &mut rx => {
                    return answer.unwrap_or_else(|_| {
                        (
                            Batch { n_rows: 0, n_features: 0, values: Vec::new(), texts: Vec::new() },
                            Err(ServeError::Internal("the micro-batch was abandoned".into())),
                        )
                    });
                }
                () = self.wake.notified() => {
                    let mut g = self.lock();
                    lead = !g.busy && !g.pending.is_empty();
                    if lead {
                        g.busy = true;
                    }
                }
            }
        }
    }

    /// Lead one batch: wait briefly for arriving requests, take up to `max_rows` rows, predict,
    /// answer.
    async fn run(&self, scorer: &dyn Scorer) {
        let guard = Leading(self);
        let deadline = Instant::now() + self.wait;
        loop {
            let rows = self.lock().rows;
            if rows >= self.max_rows
                || self.arriving.load(Ordering::Relaxed) == 0
                || Instant::now() >= deadline
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        // From here on no await: a cancelled leader cannot strand the taken requests.
        let group = {
            let mut g = self.lock();
            let mut group = Vec::new();
            let mut rows = 0;
            while let Some(p) = g.pending.front() {
                if !group.is_empty() && rows + p.batch.n_rows > self.max_rows {
                    break;
                }
                rows += p.batch.n_rows;
                if let Some(p) = g.pending.pop_front() {
                    group.push(p);
                }
            }
            g.rows -= rows.min(g.rows);
            group
        };
        answer(scorer, group, &self.metrics);
        drop(guard);
    }
}

/// Predict a group in one call when the rows can be concatenated, else one by one.
fn answer(scorer: &dyn Scorer, group: Vec<Pending>, metrics: &Metrics) {
    let predict = |b: &Batch| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scorer.predict(b)))
            .unwrap_or_else(|_| Err(ServeError::Internal("prediction panicked".into())))
    };
    let mergeable = group.len() > 1
        && group
            .iter()
            .all(|p| p.batch.texts.is_empty() && p.batch.n_features == group[0].batch.n_features);
    if !mergeable {
        for p in group {
            let r = predict(&p.batch);
            let _ = p.tx.send((p.batch, r));
        }
        return;
    }
    metrics.batches.fetch_add(1, Ordering::Relaxed);
    metrics
        .batched_requests
        .fetch_add(group.len() as u64, Ordering::Relaxed);
    let n_features = group[0].batch.n_features;
    let n_rows: usize = group.iter().map(|p| p.batch.n_rows).sum();
    let mut values = Vec::with_capacity(n_rows * n_features);
    for p in &group {
        values.extend_from_slice(&p.batch.values);
    }
    let merged = Batch {
        n_rows,
        n_features,
        values,
        texts: Vec::new(),
    };
    match predict(&merged) {
        Ok(Predictions::Proba(rows)) if rows.len() == n_rows => {
            let mut rows = rows.into_iter();
            for p in group {
                let mine: Vec<Vec<f64>> = rows.by_ref().take(p.batch.n_rows).collect();
                let _ = p.tx.send((p.batch, Ok(Predictions::Proba(mine))));
            }
        }
        Ok(Predictions::Values(values)) if values.len() == n_rows => {
            let mut values = values.into_iter();
            for p in group {
                let mine: Vec<f64> = values.by_ref().take(p.batch.n_rows).collect();
                let _ = p.tx.send((p.batch, Ok(Predictions::Values(mine))));
            }
        }
        // A failed or malformed batch answer: answer each request on its own, so that an
        // error is reported to the request that caused it.
        _ => {
            for p in group {
                let r = predict(&p.batch);
                let _ = p.tx.send((p.batch, r));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use kiln_train::artifact::Predictions;
    use kiln_train::frame::{Signature, TargetField, Task};

    use super::BatchQueue;
    use crate::encode::Batch;
    use crate::error::ServeError;
    use crate::metrics::Metrics;
    use crate::scorer::Scorer;

    /// Answers each row with its own first value; the first call is slow, and every call's
    /// row count is recorded.
    struct Echo {
        signature: Signature,
        calls: Mutex<Vec<usize>>,
    }

    impl Scorer for Echo {
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn flavor(&self) -> &str {
            "test/echo"
        }
        fn predict(&self, batch: &Batch) -> Result<Predictions, ServeError> {
            let first = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(batch.n_rows);
                calls.len() == 1
            };
            if first {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(Predictions::Values(
                (0..batch.n_rows).map(|r| batch.row(r)[0]).collect(),
            ))
        }
    }

    fn one_row(v: f64) -> Batch {
        Batch {
            n_rows: 1,
            n_features: 2,
            values: vec![v, -v],
            texts: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn requests_queued_behind_a_running_batch_are_predicted_together() {
        let metrics = Arc::new(Metrics::default());
        let queue = Arc::new(BatchQueue::new(
            8,
            Duration::from_micros(200),
            Arc::clone(&metrics),
        ));
        let scorer = Arc::new(Echo {
            signature: Signature {
                inputs: Vec::new(),
                target: TargetField {
                    name: "y".into(),
                    task: Task::Regression,
                    classes: Vec::new(),
                },
            },
            calls: Mutex::new(Vec::new()),
        });
        let run = |v: f64| {
            let (q, s) = (Arc::clone(&queue), Arc::clone(&scorer));
            tokio::spawn(async move {
                let arrival = q.arrive();
                let (batch, p) = q.predict(&*s, one_row(v), arrival).await;
                (batch.values[0], p.unwrap())
            })
        };
        // The first request leads alone and at once; three more arrive while it predicts.
        let first = run(1.0);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let rest: Vec<_> = [2.0, 3.0, 4.0].into_iter().map(run).collect();
        let (v, p) = first.await.unwrap();
        assert_eq!((v, p), (1.0, Predictions::Values(vec![1.0])));
        for (t, want) in rest.into_iter().zip([2.0, 3.0, 4.0]) {
            let (v, p) = t.await.unwrap();
            assert_eq!((v, p), (want, Predictions::Values(vec![want])));
        }
        assert_eq!(*scorer.calls.lock().unwrap(), [1, 3]);
        assert_eq!(metrics.batches.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.batched_requests.load(Ordering::Relaxed), 3);
    }
}

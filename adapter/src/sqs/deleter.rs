//! Deletes for many batches at once: each settled batch asks, the deleter coalesces the asks of
//! concurrent batches into `DeleteMessageBatch` calls of up to 10 entries.
//!
//! With small batches (Lambda's batch size 1, say) one delete call per batch made the queue's
//! request rate the limit of a drain: 1,000 one-message batches finishing together took 1,000 calls.
//! Coalescing needs no timer: at most [`CALLS_IN_FLIGHT`] calls run at once, and asks that arrive
//! while they run wait and go together in the next one. An ask that finds a call free goes at once,
//! so a lone batch is deleted with no added latency. An ask of 10 or more messages (a full batch)
//! has nothing to gain and goes straight to its own call, as before: a few slow calls cannot hold
//! up large batches.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::queue::{BatchReport, Queue, Receipt};

/// Most delete calls in flight at once.
pub(crate) const CALLS_IN_FLIGHT: usize = 4;

/// Most entries one `DeleteMessageBatch` call takes.
const MAX_ENTRIES: usize = 10;

struct Ask {
    receipts: Vec<Receipt>,
    reply: oneshot::Sender<BatchReport>,
}

/// What makes the delete calls for a list of receipts (in chunks of 10, with retries).
type DeleteFn = dyn Fn(Vec<Receipt>) -> BoxFuture<'static, BatchReport> + Send + Sync;

/// A handle to the deleter task. Cheap to clone; the task ends when every handle is dropped and the
/// calls in flight are done.
#[derive(Clone)]
pub(crate) struct Deleter {
    asks: mpsc::UnboundedSender<Ask>,
    delete: Arc<DeleteFn>,
}

impl fmt::Debug for Deleter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deleter").finish_non_exhaustive()
    }
}

impl Deleter {
    /// Starts the deleter task for `queue`, and returns a handle to ask it and the task's own
    /// handle. The task ends once every `Deleter` is dropped and its calls are done; aborting it
    /// drops the calls in flight (their messages are still tracked, and come back or are
    /// released).
    pub(crate) fn start(queue: Queue) -> (Self, tokio::task::JoinHandle<()>) {
        Self::start_with(move |receipts: Vec<Receipt>| {
            let queue = queue.clone();
            async move { queue.delete(&receipts).await }
        })
    }

    /// As [`Deleter::start`], with `delete` making the calls (chunks of 10 and retries are its
    /// job): the seam the tests use.
    pub(crate) fn start_with<F, Fut>(delete: F) -> (Self, tokio::task::JoinHandle<()>)
    where
        F: Fn(Vec<Receipt>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = BatchReport> + Send + 'static,
    {
        let delete: Arc<DeleteFn> =
            Arc::new(move |receipts| Box::pin(delete(receipts)) as BoxFuture<'static, _>);
        let (asks, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(delete.clone(), receiver));
        (Self { asks, delete }, task)
    }

    /// Deletes `receipts` (retrying as [`Queue::delete`] does) and reports what was deleted.
    pub(crate) async fn delete(&self, receipts: Vec<Receipt>) -> BatchReport {
        if receipts.len() >= MAX_ENTRIES {
            // A full call on its own: nothing to share, so no waiting for a free call.
            return (self.delete)(receipts).await;
        }
        let (reply, report) = oneshot::channel();
        let receipts_again = receipts.clone();
        if let Err(mpsc::error::SendError(ask)) = self.asks.send(Ask { receipts, reply }) {
            // The task is gone (it failed; the source is stopping): delete on our own rather
            // than leave processed messages to run again.
            return (self.delete)(ask.receipts).await;
        }
        match report.await {
            Ok(report) => report,
            // Taken but never answered: the task died with our ask. Deleting is idempotent, so
            // asking again on our own is safe.
            Err(_) => (self.delete)(receipts_again).await,
        }
    }
}

async fn run(delete: Arc<DeleteFn>, mut asks: mpsc::UnboundedReceiver<Ask>) {
    let mut calls = JoinSet::new();
    // An ask taken that would have made its group exceed 10 entries: it leads the next group.
    let mut carried: Option<Ask> = None;
    loop {
        if calls.len() >= CALLS_IN_FLIGHT {
            // All calls busy: asks pile up meanwhile, and go together when one ends.
            calls.join_next().await;
            continue;
        }
        let first = match carried.take() {
            Some(ask) => ask,
            None => tokio::select! {
                biased;
                Some(_) = calls.join_next(), if !calls.is_empty() => continue,
                ask = asks.recv() => match ask {
                    Some(ask) => ask,
                    None => break,
                },
            },
        };
        let mut entries = first.receipts.len();
        let mut group = vec![first];
        while entries < MAX_ENTRIES {
            match asks.try_recv() {
                Ok(ask) if entries + ask.receipts.len() > MAX_ENTRIES => {
                    carried = Some(ask);
                    break;
                }
                Ok(ask) => {
                    entries += ask.receipts.len();
                    group.push(ask);
                }
                Err(_) => break,
            }
        }
        let delete = delete.clone();
        calls.spawn(async move { delete_group(delete.as_ref(), group).await });
    }
    while calls.join_next().await.is_some() {}
}

/// One delete (in chunks of 10, with retries) for a group of asks, each answered with its part.
async fn delete_group(delete: &DeleteFn, group: Vec<Ask>) {
    let all: Vec<Receipt> = group
        .iter()
        .flat_map(|ask| ask.receipts.iter().cloned())
        .collect();
    let mut report = Outcomes::from(delete(all).await);
    for ask in group {
        let part = report.take(&ask.receipts);
        let _ = ask.reply.send(part);
    }
}

/// A group's report, handed out to its asks one outcome per receipt.
///
/// By count, not by id alone: a standard queue may deliver one message twice, and two batches
/// holding it may share a call. Each receipt then takes one of the two outcomes, so every batch
/// hears about each of its messages exactly once and the metrics count each delete once.
#[derive(Debug, Default)]
struct Outcomes {
    done: HashMap<String, usize>,
    failed: HashMap<String, Vec<String>>,
}

impl From<BatchReport> for Outcomes {
    fn from(report: BatchReport) -> Self {
        let mut outcomes = Self::default();
        for id in report.done {
            *outcomes.done.entry(id).or_default() += 1;
        }
        for (id, reason) in report.failed {
            outcomes.failed.entry(id).or_default().push(reason);
        }
        outcomes
    }
}

impl Outcomes {
    /// Takes one outcome for each of `receipts`; a receipt the report does not mention (it should
    /// not happen) is reported failed: it is not known deleted, so it comes back.
    fn take(&mut self, receipts: &[Receipt]) -> BatchReport {
        let mut part = BatchReport::default();
        for receipt in receipts {
            let id = &receipt.message_id;
            if let Some(count) = self.done.get_mut(id).filter(|count| **count > 0) {
                *count -= 1;
                part.done.push(id.clone());
            } else {
                let reason = self
                    .failed
                    .get_mut(id)
                    .and_then(Vec::pop)
                    .unwrap_or_else(|| "no outcome reported for this message".to_owned());
                part.failed.push((id.clone(), reason));
            }
        }
        part
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;

    /// Asks that arrive while every call is busy go together in the next call (never above 10
    /// entries); a lone ask, or a full one, goes at once; every ask gets exactly its own messages
    /// back.
    #[tokio::test]
    async fn asks_made_while_calls_are_busy_share_the_next_call() {
        let calls: Arc<Mutex<Vec<usize>>> = Arc::default();
        let gate = Arc::new(Semaphore::new(0));
        let (deleter, task) = Deleter::start_with({
            let calls = calls.clone();
            let gate = gate.clone();
            move |receipts: Vec<Receipt>| {
                calls.lock().expect("lock").push(receipts.len());
                let gate = gate.clone();
                async move {
                    // Each call waits to be let through, so the test decides when calls end.
                    gate.acquire().await.expect("open").forget();
                    BatchReport {
                        done: receipts.iter().map(|r| r.message_id.clone()).collect(),
                        failed: Vec::new(),
                        rejected: Vec::new(),
                    }
                }
            }
        });
        let ask = |ids: Vec<String>| {
            let deleter = deleter.clone();
            tokio::spawn(async move {
                deleter
                    .delete(ids.iter().map(|id| receipt(id)).collect())
                    .await
            })
        };
        let made = |n: usize| {
            let calls = calls.clone();
            async move {
                while calls.lock().expect("lock").len() < n {
                    tokio::task::yield_now().await;
                }
            }
        };
        // The first CALLS_IN_FLIGHT asks each find a free call.
        let mut first = Vec::new();
        for i in 0..CALLS_IN_FLIGHT {
            first.push(ask(vec![format!("a{i}")]));
            tokio::time::timeout(Duration::from_secs(5), made(i + 1))
                .await
                .expect("a call for each of the first asks");
        }
        // While all calls are busy: six one-message asks and one of five wait; a full ask of ten
        // does not wait, it gets its own call at once.
        let waiting: Vec<_> = (0..6).map(|i| ask(vec![format!("b{i}")])).collect();
        let five = ask((0..5).map(|i| format!("c{i}")).collect());
        let full = ask((0..10).map(|i| format!("d{i}")).collect());
        tokio::time::timeout(Duration::from_secs(5), made(CALLS_IN_FLIGHT + 1))
            .await
            .expect("the full ask went at once");
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(calls.lock().expect("lock").len(), CALLS_IN_FLIGHT + 1);
        // One call ends: the six go together; the five would make it 11, so they go next.
        gate.add_permits(1);
        tokio::time::timeout(Duration::from_secs(5), made(CALLS_IN_FLIGHT + 2))
            .await
            .expect("the waiting asks were sent");
        gate.add_permits(100);
        tokio::time::timeout(Duration::from_secs(5), made(CALLS_IN_FLIGHT + 3))
            .await
            .expect("the carried ask was sent");
        for (i, handle) in waiting.into_iter().enumerate() {
            let report = handle.await.expect("task");
            assert_eq!(report.done, vec![format!("b{i}")]);
        }
        assert_eq!(five.await.expect("task").done.len(), 5);
        assert_eq!(full.await.expect("task").done.len(), 10);
        for (i, handle) in first.into_iter().enumerate() {
            assert_eq!(handle.await.expect("task").done, vec![format!("a{i}")]);
        }
        let sizes = calls.lock().expect("lock").clone();
        assert_eq!(sizes[..CALLS_IN_FLIGHT], [1; CALLS_IN_FLIGHT]);
        assert_eq!(sizes[CALLS_IN_FLIGHT..], [10, 6, 5]);
        drop(deleter);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends with its last handle")
            .expect("no panic");
    }

    /// The task gone (it failed): asks are deleted directly rather than left to run again.
    #[tokio::test]
    async fn a_stopped_deleter_still_deletes_directly() {
        let (deleter, task) = Deleter::start_with(|receipts: Vec<Receipt>| async move {
            BatchReport {
                done: receipts.into_iter().map(|r| r.message_id).collect(),
                ..BatchReport::default()
            }
        });
        task.abort();
        let _ = task.await;
        let report = deleter.delete(vec![receipt("a")]).await;
        assert_eq!(report.done, ["a"]);
        assert!(report.failed.is_empty());
    }

    fn receipt(id: &str) -> Receipt {
        Receipt {
            message_id: id.to_owned(),
            receipt_handle: format!("handle-{id}"),
        }
    }

    #[test]
    fn each_ask_gets_its_own_part_of_the_report() {
        let mut report = Outcomes::from(BatchReport {
            done: vec!["a".into(), "c".into()],
            failed: vec![("b".into(), "ReceiptHandleIsInvalid".into())],
            rejected: Vec::new(),
        });
        let first = report.take(&[receipt("a"), receipt("b")]);
        assert_eq!(first.done, vec!["a".to_owned()]);
        assert_eq!(
            first.failed,
            vec![("b".to_owned(), "ReceiptHandleIsInvalid".to_owned())]
        );
        let second = report.take(&[receipt("c")]);
        assert_eq!(second.done, vec!["c".to_owned()]);
        assert!(second.failed.is_empty());
        let unknown = report.take(&[receipt("z")]);
        assert!(unknown.done.is_empty());
        assert_eq!(unknown.failed.len(), 1, "a receipt always gets an outcome");
    }

    /// One message delivered twice, held by two batches whose deletes share a call: each batch
    /// hears of it once, so it is counted deleted twice (two receipts), not four times.
    #[test]
    fn a_message_held_twice_gets_one_outcome_per_receipt() {
        let mut report = Outcomes::from(BatchReport {
            done: vec!["m".into(), "m".into(), "x".into()],
            failed: Vec::new(),
            rejected: Vec::new(),
        });
        let first = report.take(&[receipt("m")]);
        let second = report.take(&[receipt("m"), receipt("x")]);
        assert_eq!(first.done, vec!["m".to_owned()]);
        assert_eq!(second.done, vec!["m".to_owned(), "x".to_owned()]);
        assert!(first.failed.is_empty() && second.failed.is_empty());
    }
}

//! The deleter coalesces the deletes of concurrent batches into `DeleteMessageBatch` calls of up
//! to 10 entries (one call per small batch made the request rate a drain's limit). No timer: an
//! ask waits for a free call slot, and asks that arrive meanwhile go with it.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use super::MAX_PER_RECEIVE;
use super::client::{BatchReport, QueueClient, Receipt};

struct Ask {
    receipts: Vec<Receipt>,
    reply: oneshot::Sender<BatchReport>,
}

/// Deletes a list of receipts (chunks of 10, retries), the first call in the slot given.
type DeleteFn = dyn Fn(Vec<Receipt>, Option<OwnedSemaphorePermit>) -> BoxFuture<'static, BatchReport>
    + Send
    + Sync;

/// A handle to the deleter task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Deleter {
    asks: mpsc::UnboundedSender<Ask>,
    delete: Arc<DeleteFn>,
}

impl Deleter {
    /// A deleter for `client`, and its task, which ends once every handle is dropped and its
    /// calls are done.
    pub(crate) fn start(client: QueueClient) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let slots = client.calls.clone();
        Self::start_with(slots, move |receipts: Vec<Receipt>, slot| {
            let client = client.clone();
            Box::pin(async move { client.delete(&receipts, slot).await })
        })
    }

    /// As [`Deleter::start`], with `delete` making the calls in `slots` (the tests' seam).
    pub(crate) fn start_with(
        slots: Arc<Semaphore>,
        delete: impl Fn(Vec<Receipt>, Option<OwnedSemaphorePermit>) -> BoxFuture<'static, BatchReport>
        + Send
        + Sync
        + 'static,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let delete: Arc<DeleteFn> = Arc::new(delete);
        let (asks, receiver) = mpsc::unbounded_channel();
        let task = run(delete.clone(), slots, receiver);
        (Self { asks, delete }, task)
    }

    /// Deletes `receipts` as [`QueueClient::delete`] does; with the task gone, nothing.
    pub(crate) async fn delete(&self, receipts: Vec<Receipt>) -> BatchReport {
        if receipts.len() >= MAX_PER_RECEIVE {
            return (self.delete)(receipts, None).await;
        }
        let (reply, report) = oneshot::channel();
        let ids: Vec<String> = receipts.iter().map(|r| r.message_id.clone()).collect();
        // Not sent: the reply's sender is dropped with the ask.
        let _ = self.asks.send(Ask { receipts, reply });
        report.await.unwrap_or_else(|_| {
            let mut stopped = BatchReport::default();
            let reason = "the deleter stopped";
            stopped.failed = ids.into_iter().map(|id| (id, reason.into())).collect();
            stopped
        })
    }
}

async fn run(delete: Arc<DeleteFn>, slots: Arc<Semaphore>, mut asks: mpsc::UnboundedReceiver<Ask>) {
    let mut calls = JoinSet::new();
    // An ask taken that would have made its group exceed 10 entries: it leads the next group.
    let mut carried: Option<Ask> = None;
    loop {
        let first = match carried.take() {
            Some(ask) => ask,
            None => tokio::select! {
                biased;
                Some(_) = calls.join_next(), if !calls.is_empty() => continue,
                Some(ask) = asks.recv() => ask,
                else => break, // every handle dropped, every call done
            },
        };
        // Every call slot busy: asks pile up meanwhile, and go together in this call.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break; // never closed
        };
        let mut entries = first.receipts.len();
        let mut group = vec![first];
        while entries < MAX_PER_RECEIVE {
            let Ok(ask) = asks.try_recv() else { break };
            if entries + ask.receipts.len() > MAX_PER_RECEIVE {
                carried = Some(ask);
                break;
            }
            entries += ask.receipts.len();
            group.push(ask);
        }
        // One delete for the group, each ask answered with its part.
        let all = group.iter().flat_map(|ask| ask.receipts.iter().cloned());
        let call = delete(all.collect(), Some(slot));
        calls.spawn(async move {
            let mut report = call.await;
            for ask in group {
                let _ = ask.reply.send(report.take(&ask.receipts));
            }
        });
    }
    while calls.join_next().await.is_some() {}
}

impl BatchReport {
    /// Takes one outcome for each of `receipts` out of a group's report, by count: two batches
    /// sharing a call may hold a message delivered twice. One not mentioned is reported failed.
    fn take(&mut self, receipts: &[Receipt]) -> BatchReport {
        let mut part = BatchReport::default();
        for Receipt { message_id: id, .. } in receipts {
            if let Some(i) = self.done.iter().position(|done| done == id) {
                part.done.push(self.done.swap_remove(i));
            } else {
                let reason = match self.failed.iter().position(|(failed, _)| failed == id) {
                    Some(i) => self.failed.swap_remove(i).1,
                    None => "no outcome reported for this message".to_owned(),
                };
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
    use crate::sqs::client::CALLS_IN_FLIGHT;

    /// Asks that arrive while every call is busy go together in the next call (never above 10
    /// entries); a lone ask, or a full one, goes at once; every ask gets exactly its own messages
    /// back.
    #[tokio::test]
    async fn asks_made_while_calls_are_busy_share_the_next_call() {
        let calls: Arc<Mutex<Vec<usize>>> = Arc::default();
        let gate = Arc::new(Semaphore::new(0));
        let slots = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
        let (deleter, task) = Deleter::start_with(slots, {
            let calls = calls.clone();
            let gate = gate.clone();
            move |receipts: Vec<Receipt>, slot| {
                calls.lock().expect("lock").push(receipts.len());
                let gate = gate.clone();
                Box::pin(async move {
                    let _slot = slot;
                    // Each call waits to be let through, so the test decides when calls end.
                    gate.acquire().await.expect("open").forget();
                    BatchReport {
                        done: receipts.iter().map(|r| r.message_id.clone()).collect(),
                        failed: Vec::new(),
                        rejected: Vec::new(),
                    }
                })
            }
        });
        let task = tokio::spawn(task);
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

    /// The task gone (it failed; the source is stopping): no fallback delete, the asks are
    /// reported failed, so their messages come back rather than count as deleted.
    #[tokio::test]
    async fn a_stopped_deleter_reports_its_asks_failed() {
        let slots = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
        let (deleter, task) = Deleter::start_with(slots, |receipts: Vec<Receipt>, _| {
            Box::pin(async move {
                BatchReport {
                    done: receipts.into_iter().map(|r| r.message_id).collect(),
                    ..BatchReport::default()
                }
            })
        });
        let task = tokio::spawn(task);
        task.abort();
        let _ = task.await;
        let report = deleter.delete(vec![receipt("a")]).await;
        assert!(report.done.is_empty());
        assert_eq!(report.failed.len(), 1);
    }

    fn receipt(id: &str) -> Receipt {
        Receipt {
            message_id: id.to_owned(),
            receipt_handle: format!("handle-{id}"),
        }
    }

    #[test]
    fn each_ask_gets_its_own_part_of_the_report() {
        let mut report = BatchReport {
            done: vec!["a".into(), "c".into()],
            failed: vec![("b".into(), "ReceiptHandleIsInvalid".into())],
            rejected: Vec::new(),
        };
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
        let mut report = BatchReport {
            done: vec!["m".into(), "m".into(), "x".into()],
            failed: Vec::new(),
            rejected: Vec::new(),
        };
        let first = report.take(&[receipt("m")]);
        let second = report.take(&[receipt("m"), receipt("x")]);
        assert_eq!(first.done, vec!["m".to_owned()]);
        assert_eq!(second.done, vec!["m".to_owned(), "x".to_owned()]);
        assert!(first.failed.is_empty() && second.failed.is_empty());
    }
}

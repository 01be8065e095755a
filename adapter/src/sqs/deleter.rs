//! Deletes for many batches at once: each settled batch asks, the deleter coalesces the asks of
//! concurrent batches into `DeleteMessageBatch` calls of up to 10 entries.
//!
//! With small batches (Lambda's batch size 1, say) one delete call per batch made the queue's
//! request rate the limit of a drain: 1,000 one-message batches finishing together took 1,000 calls.
//! Coalescing needs no timer: at most [`CALLS_IN_FLIGHT`] calls run at once, and asks that arrive
//! while they run wait and go together in the next one. An ask that finds a call free goes at once,
//! so a lone batch is deleted with no added latency.

use std::collections::HashSet;

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

/// A handle to the deleter task. Cheap to clone; the task ends when every handle is dropped and the
/// calls in flight are done.
#[derive(Debug, Clone)]
pub(crate) struct Deleter {
    asks: mpsc::UnboundedSender<Ask>,
    queue: Queue,
}

impl Deleter {
    /// Starts the deleter task for `queue`; the handle returned ends it when it is awaited or
    /// aborted (aborting drops the calls in flight: their messages are still tracked, and come
    /// back or are released).
    pub(crate) fn start(queue: Queue) -> (Self, tokio::task::JoinHandle<()>) {
        let (asks, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(queue.clone(), receiver));
        (Self { asks, queue }, task)
    }

    /// Deletes `receipts` (retrying as [`Queue::delete`] does) and reports what was deleted.
    pub(crate) async fn delete(&self, receipts: Vec<Receipt>) -> BatchReport {
        let (reply, report) = oneshot::channel();
        if let Err(mpsc::error::SendError(ask)) = self.asks.send(Ask { receipts, reply }) {
            // The task has stopped (only at the very end of a shutdown): delete directly.
            return self.queue.delete(&ask.receipts).await;
        }
        // The task dropping the ask unanswered means it was aborted at shutdown: nothing was
        // deleted that we know of, so nothing is reported done (the messages come back).
        report.await.unwrap_or_default()
    }
}

async fn run(queue: Queue, mut asks: mpsc::UnboundedReceiver<Ask>) {
    let mut calls = JoinSet::new();
    loop {
        if calls.len() >= CALLS_IN_FLIGHT {
            // All calls busy: asks pile up meanwhile, and go together when one ends.
            calls.join_next().await;
            continue;
        }
        tokio::select! {
            biased;
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
            ask = asks.recv() => {
                let Some(first) = ask else { break };
                let mut group = vec![first];
                let mut entries = group[0].receipts.len();
                while entries < MAX_ENTRIES {
                    match asks.try_recv() {
                        Ok(ask) => {
                            entries += ask.receipts.len();
                            group.push(ask);
                        }
                        Err(_) => break,
                    }
                }
                let queue = queue.clone();
                calls.spawn(async move { delete_group(&queue, group).await });
            }
        }
    }
    while calls.join_next().await.is_some() {}
}

/// One delete (in chunks of 10, with retries) for a group of asks, each answered with its part.
async fn delete_group(queue: &Queue, group: Vec<Ask>) {
    let all: Vec<Receipt> = group
        .iter()
        .flat_map(|ask| ask.receipts.iter().cloned())
        .collect();
    let report = queue.delete(&all).await;
    for ask in group {
        let _ = ask.reply.send(part_of(&report, &ask.receipts));
    }
}

/// The entries of `report` that concern `receipts`.
fn part_of(report: &BatchReport, receipts: &[Receipt]) -> BatchReport {
    let ids: HashSet<&str> = receipts.iter().map(|r| r.message_id.as_str()).collect();
    BatchReport {
        done: report
            .done
            .iter()
            .filter(|id| ids.contains(id.as_str()))
            .cloned()
            .collect(),
        failed: report
            .failed
            .iter()
            .filter(|(id, _)| ids.contains(id.as_str()))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(id: &str) -> Receipt {
        Receipt {
            message_id: id.to_owned(),
            receipt_handle: format!("handle-{id}"),
        }
    }

    #[test]
    fn each_ask_gets_its_own_part_of_the_report() {
        let report = BatchReport {
            done: vec!["a".into(), "c".into()],
            failed: vec![("b".into(), "ReceiptHandleIsInvalid".into())],
        };
        let first = part_of(&report, &[receipt("a"), receipt("b")]);
        assert_eq!(first.done, vec!["a".to_owned()]);
        assert_eq!(
            first.failed,
            vec![("b".to_owned(), "ReceiptHandleIsInvalid".to_owned())]
        );
        let second = part_of(&report, &[receipt("c")]);
        assert_eq!(second.done, vec!["c".to_owned()]);
        assert!(second.failed.is_empty());
        assert!(part_of(&report, &[receipt("z")]).done.is_empty());
    }
}

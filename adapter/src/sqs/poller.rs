//! Receives messages and gathers them into batches, as Lambda's pollers do: [`Poller`] gathers
//! one batch, [`poll_loop`] runs one receive loop over the free concurrency slots.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::MAX_PER_RECEIVE;
use super::client::{CallError, QueueClient};
use super::deleter::Deleter;
use crate::event_filter::FilterCriteria;
use super::health::PollerHealth;
use super::in_flight::InFlightMessages;
use super::metrics::SqsMetrics;
use super::record::{self, QueueIdentity, Record};
use crate::backoff::Backoff;

/// What gathering ended with.
#[derive(Debug)]
pub(crate) enum Gathered {
    /// A batch to invoke with (never empty).
    Batch(Vec<Record>),
    /// Shutdown: these messages were received but will not be invoked with; they are still
    /// registered in flight, to be released.
    Cancelled(Vec<Record>),
}

/// Gathers batches from one queue.
#[derive(Debug)]
pub(crate) struct Poller {
    pub(crate) client: QueueClient,
    pub(crate) queue: QueueIdentity,
    pub(crate) in_flight: InFlightMessages,
    pub(crate) metrics: SqsMetrics,
    pub(crate) health: PollerHealth,
    /// `--filter-criteria`, when it filters anything.
    pub(crate) filter: Option<Arc<FilterCriteria>>,
    /// Deletes what the filter leaves out.
    pub(crate) deleter: Deleter,
    pub(crate) window: Duration,
    /// Longest long poll: short enough that shutdown can wait for the one in progress.
    pub(crate) max_wait: Duration,
    pub(crate) backoff: Backoff,
}

impl Poller {
    /// Receives until the batch is full, or the batching window (started by the first message)
    /// closes, or, without a window, as soon as one receive call returned messages. Receive errors
    /// are logged and retried with backoff for ever.
    ///
    /// `cancel` stops gathering at once, except that a receive in progress is awaited (it ends
    /// within `max_wait`), not dropped: SQS does not notice an abandoned long poll, which then
    /// takes the next messages to become visible (ours, released at shutdown, included) and
    /// hides them for a whole visibility timeout. What it returns is handed back for release.
    ///
    /// `capacity` is how many messages to gather at most: the batch size, or (without a window)
    /// several small batches' worth from one receive call, for the caller to split.
    pub(crate) async fn gather(&mut self, capacity: usize, cancel: &CancellationToken) -> Gathered {
        let capacity = capacity.max(1);
        let mut records: Vec<Record> = Vec::new();
        let mut window_closes: Option<Instant> = None;
        while records.len() < capacity {
            let wait = match window_closes {
                None => self.max_wait,
                Some(closes) => {
                    let left = closes.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    // Whole seconds only; rounding up overshoots the window by under a second,
                    // rounding down would busy-poll its last second.
                    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                    Duration::from_secs(seconds).min(self.max_wait)
                }
            };
            let max = (capacity - records.len()).min(MAX_PER_RECEIVE);
            let (received, cancelled) = self.receive(max, wait, cancel).await;
            match received {
                Ok(messages) => {
                    self.health.set(true);
                    self.backoff.reset();
                    let received_at = Instant::now();
                    let new = self.records(&messages);
                    self.metrics.received.inc_by(new.len() as u64);
                    let new = self.filtered(new).await;
                    self.in_flight
                        .track(new.iter().map(|r| &r.receipt), received_at);
                    records.extend(new);
                    if cancelled {
                        return Gathered::Cancelled(records);
                    }
                    if !records.is_empty() && window_closes.is_none() {
                        if self.window.is_zero() {
                            break;
                        }
                        window_closes = Some(received_at + self.window);
                    }
                }
                Err(error) => {
                    self.health.set(false);
                    self.metrics.receive_errors.inc();
                    let delay = self.backoff.next_delay();
                    tracing::error!(error = %error, retry_in_ms = delay.as_millis() as u64, "ReceiveMessage failed");
                    if cancelled {
                        return Gathered::Cancelled(records);
                    }
                    if !records.is_empty() {
                        // Invoke with what we have rather than hold it through an outage.
                        break;
                    }
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => return Gathered::Cancelled(records),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        Gathered::Batch(records)
    }

    /// One receive call, seen through even if `cancel` fires meanwhile (then says so).
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        cancel: &CancellationToken,
    ) -> (Result<Vec<Message>, CallError>, bool) {
        if cancel.is_cancelled() {
            return (Ok(Vec::new()), true);
        }
        let receive = self.client.receive(max, wait);
        tokio::pin!(receive);
        tokio::select! {
            biased;
            received = &mut receive => (received, false),
            () = cancel.cancelled() => {
                // The long poll ends by `wait`; the bound only guards against a hung call.
                let received = tokio::time::timeout(wait + Duration::from_secs(1), &mut receive)
                    .await
                    .unwrap_or_else(|_| Ok(Vec::new()));
                (received, true)
            }
        }
    }

    /// The records the filter criteria let through; the others are deleted at once, without an
    /// invocation, as Lambda does. One whose delete fails comes back after its visibility timeout
    /// and is filtered out again.
    async fn filtered(&self, records: Vec<Record>) -> Vec<Record> {
        let Some(filter) = &self.filter else {
            return records;
        };
        let (kept, dropped): (Vec<Record>, Vec<Record>) =
            records.into_iter().partition(|r| filter.matches(&r.json));
        if !dropped.is_empty() {
            self.metrics.filtered.inc_by(dropped.len() as u64);
            let ids: Vec<&str> = dropped
                .iter()
                .map(|r| r.receipt.message_id.as_str())
                .collect();
            tracing::debug!(message_ids = ?ids, "messages matched no filter; deleting them");
            let report = self
                .deleter
                .delete(dropped.into_iter().map(|r| r.receipt).collect())
                .await;
            if !report.failed.is_empty() {
                tracing::warn!(
                    messages = report.failed.len(),
                    "could not delete filtered-out messages; they will come back and be filtered again"
                );
            }
        }
        kept
    }

    /// Message to record: the one step between SQS and the event (filters and per-record
    /// enrichment belong here).
    fn records(&self, messages: &[Message]) -> Vec<Record> {
        messages
            .iter()
            .filter_map(|m| {
                let record = record::record(m, &self.queue);
                if record.is_none() {
                    tracing::warn!(message_id = ?m.message_id(), "ignoring a message without id or receipt handle");
                }
                record
            })
            .collect()
    }
}

/// How a poller cuts what it receives into batches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    /// Most messages a batch holds.
    pub(crate) size: usize,
    /// Whether one receive call may fill several free slots, one batch each.
    pub(crate) fill_slots: bool,
}

/// A batch gathered by a poller, with the concurrency slot it runs in.
pub(crate) struct ReadyBatch {
    pub(crate) permit: OwnedSemaphorePermit,
    pub(crate) records: Vec<Record>,
}

/// One receive loop: takes free slots, gathers messages for them, hands each batch (with its slot)
/// to `ready`. Returns when `shutdown` fires; messages received but not handed over stay
/// registered in flight, to be released.
pub(crate) async fn poll_loop(
    mut poller: Poller,
    slots: Arc<Semaphore>,
    batching: Batching,
    ready: mpsc::UnboundedSender<ReadyBatch>,
    shutdown: CancellationToken,
) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        // A slot is taken before receiving, so no message waits invisible for a free slot.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                poller.health.waiting();
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_closed) => return, // never closed; closed means stop
                    },
                }
            }
        };
        // Small batches without a window: one receive call may fill several free slots (up to 10
        // messages), as Lambda's pollers do, instead of one call per batch, which would cap the
        // drain at one receive round trip per batch.
        let batch_size = batching.size;
        let mut permits = vec![permit];
        if batching.fill_slots {
            while (permits.len() + 1) * batch_size <= MAX_PER_RECEIVE {
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
        }
        match poller.gather(permits.len() * batch_size, &shutdown).await {
            Gathered::Batch(mut records) => {
                // Each batch holds its own slot; slots left over (fewer messages came) are
                // dropped here and free again.
                for permit in permits {
                    if records.is_empty() {
                        break;
                    }
                    let rest = records.split_off(batch_size.min(records.len()));
                    let batch = std::mem::replace(&mut records, rest);
                    if ready
                        .send(ReadyBatch {
                            permit,
                            records: batch,
                        })
                        .is_err()
                    {
                        // The source is gone (it only goes after every poller): nothing to do
                        // but leave the messages tracked, to be released or to time out.
                        return;
                    }
                }
            }
            Gathered::Cancelled(records) => {
                // Received but never invoked: still registered, released with the rest.
                tracing::debug!(messages = records.len(), "receiving stopped by shutdown");
                return;
            }
        }
    }
}

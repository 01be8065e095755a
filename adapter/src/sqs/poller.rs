//! One receive loop ([`Poller::run`]): takes free concurrency slots and gathers batches for them.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::MAX_PER_RECEIVE;
use super::client::{CallError, QueueClient};
use super::deleter::Deleter;
use super::health::{PollerHealth, SqsMetrics};
use super::in_flight::InFlightMessages;
use super::record::{self, QueueIdentity, Record};
use crate::backoff::Backoff;
use crate::event_filter::FilterCriteria;

/// Gathers batches from one queue.
pub(crate) struct Poller {
    pub(crate) client: QueueClient,
    pub(crate) queue: QueueIdentity,
    pub(crate) in_flight: InFlightMessages,
    pub(crate) metrics: SqsMetrics,
    pub(crate) health: PollerHealth,
    /// `--filter-criteria`, when it filters anything; the deleter deletes what it leaves out.
    pub(crate) filter: Option<Arc<FilterCriteria>>,
    pub(crate) deleter: Deleter,
    pub(crate) batch_size: usize,
    pub(crate) window: Duration,
    /// Whether one receive call may fill several free slots, one batch each.
    pub(crate) fill_slots: bool,
    /// Longest long poll: short enough that shutdown can wait for the one in progress.
    pub(crate) max_wait: Duration,
}

impl Poller {
    /// Takes free slots and hands a batch for each to `ready`, until `shutdown` fires.
    pub(crate) async fn run(
        mut self,
        slots: Arc<Semaphore>,
        ready: mpsc::UnboundedSender<(OwnedSemaphorePermit, Vec<Record>)>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        while !shutdown.is_cancelled() {
            // A slot is taken before receiving, so no message waits invisible for a free slot.
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    self.health.set(None);
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return,
                        Ok(permit) = slots.clone().acquire_owned() => permit,
                        else => return, // the slots are never closed
                    }
                }
            };
            // Small batches without a window: one receive may fill several free slots (as Lambda).
            let extra = (MAX_PER_RECEIVE / self.batch_size).saturating_sub(1);
            let free = std::iter::from_fn(|| slots.clone().try_acquire_owned().ok());
            let mut permits = vec![permit];
            permits.extend(free.take(if self.fill_slots { extra } else { 0 }));
            let capacity = permits.len() * self.batch_size;
            let Some(mut records) = self.gather(capacity, &mut backoff, &shutdown).await else {
                return;
            };
            // Each batch holds its own slot; slots left over (fewer messages came) free again.
            for permit in permits {
                if records.is_empty() {
                    break;
                }
                let rest = records.split_off(self.batch_size.min(records.len()));
                let batch = std::mem::replace(&mut records, rest);
                if ready.send((permit, batch)).is_err() {
                    return; // never: the source goes after every poller
                }
            }
        }
    }

    /// Receives until `capacity` messages came, or the batching window (from the first message)
    /// closes, or without a window until a receive returns messages; errors are retried with
    /// backoff. `None` once `cancel` fires (a receive in progress is seen through).
    async fn gather(
        &mut self,
        capacity: usize,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
    ) -> Option<Vec<Record>> {
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
            let received = self.receive(max, wait, cancel).await;
            let cancelled = cancel.is_cancelled();
            let received_at = Instant::now();
            let retry_in = match received {
                Ok(messages) => {
                    self.health.set(Some(true));
                    backoff.reset();
                    let new = messages.iter().map(|m| record::record(m, &self.queue));
                    let new: Vec<Record> = new.flatten().collect();
                    self.metrics.received.inc_by(new.len() as u64);
                    let new = self.filtered(new).await;
                    self.in_flight
                        .track(new.iter().map(|r| &r.receipt), received_at);
                    records.extend(new);
                    None
                }
                Err(error) => {
                    self.health.set(Some(false));
                    self.metrics.receive_errors.inc();
                    let delay = backoff.next_delay();
                    tracing::error!(error = %error, retry_in_ms = delay.as_millis() as u64, "ReceiveMessage failed");
                    Some(delay)
                }
            };
            if cancelled {
                return stopped(&records);
            }
            match retry_in {
                None if records.is_empty() || window_closes.is_some() => {}
                None if self.window.is_zero() => break,
                None => window_closes = Some(received_at + self.window),
                // Invoke with what we have rather than hold it through an outage.
                Some(_) if !records.is_empty() => break,
                Some(delay) => tokio::select! {
                    biased;
                    () = cancel.cancelled() => return stopped(&records),
                    () = tokio::time::sleep(delay) => {}
                },
            }
        }
        Some(records)
    }

    /// One receive call, seen through even if `cancel` fires meanwhile.
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        cancel: &CancellationToken,
    ) -> Result<Vec<Message>, CallError> {
        if cancel.is_cancelled() {
            return Ok(Vec::new());
        }
        let receive = self.client.receive(max, wait);
        tokio::pin!(receive);
        tokio::select! {
            biased;
            received = &mut receive => received,
            () = cancel.cancelled() => {
                // The long poll ends by `wait`; the bound only guards against a hung call.
                let bound = wait + Duration::from_secs(1);
                tokio::time::timeout(bound, receive).await.unwrap_or_else(|_| Ok(Vec::new()))
            }
        }
    }

    /// The records the filter criteria let through; the others are deleted unrun, as Lambda does.
    async fn filtered(&self, records: Vec<Record>) -> Vec<Record> {
        let Some(filter) = &self.filter else {
            return records;
        };
        let (kept, dropped): (Vec<Record>, Vec<Record>) =
            records.into_iter().partition(|r| filter.matches(&r.json));
        if !dropped.is_empty() {
            self.metrics.filtered.inc_by(dropped.len() as u64);
            let receipts: Vec<_> = dropped.into_iter().map(|r| r.receipt).collect();
            let ids: Vec<&str> = receipts.iter().map(|r| r.message_id.as_str()).collect();
            tracing::debug!(message_ids = ?ids, "messages matched no filter; deleting them");
            let report = self.deleter.delete(receipts).await;
            if !report.failed.is_empty() {
                tracing::warn!(
                    messages = report.failed.len(),
                    "could not delete filtered-out messages; they will come back and be filtered again"
                );
            }
        }
        kept
    }
}

/// Gathering stopped by shutdown: what was received stays registered, to be released.
fn stopped(records: &[Record]) -> Option<Vec<Record>> {
    tracing::debug!(messages = records.len(), "receiving stopped by shutdown");
    None
}

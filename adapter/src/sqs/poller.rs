//! Receives messages and gathers them into batches, as Lambda's pollers do.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::event::{self, EventSource, Record};
use super::metrics::SqsMetrics;
use super::queue::Queue;
use super::visibility::InFlight;
use super::{MAX_WAIT_TIME, SqsHealth};

/// Most messages one `ReceiveMessage` call returns.
const MAX_PER_RECEIVE: usize = 10;

/// What gathering ended with.
#[derive(Debug)]
pub(crate) enum Gathered {
    /// A batch to invoke with (never empty).
    Batch(Vec<Record>),
    /// Shutdown: these messages were received but will not be invoked with.
    Cancelled(Vec<Record>),
}

/// Gathers batches from one queue.
#[derive(Debug)]
pub(crate) struct Poller {
    pub(crate) queue: Queue,
    pub(crate) source: EventSource,
    pub(crate) in_flight: InFlight,
    pub(crate) metrics: SqsMetrics,
    pub(crate) health: SqsHealth,
    pub(crate) batch_size: usize,
    pub(crate) window: Duration,
    pub(crate) backoff: Backoff,
}

impl Poller {
    /// Receives until the batch is full, or the batching window (started by the first message)
    /// closes, or, without a window, as soon as one receive call returned messages. Receive errors
    /// are logged and retried with backoff for ever; `cancel` stops at once.
    pub(crate) async fn gather(&mut self, cancel: &CancellationToken) -> Gathered {
        let mut records: Vec<Record> = Vec::new();
        let mut window_closes: Option<Instant> = None;
        while records.len() < self.batch_size {
            let wait = match window_closes {
                None => MAX_WAIT_TIME,
                Some(closes) => {
                    let left = closes.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    // Whole seconds only; rounding up overshoots the window by under a second,
                    // rounding down would busy-poll its last second.
                    Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0)).min(MAX_WAIT_TIME)
                }
            };
            let max = (self.batch_size - records.len()).min(MAX_PER_RECEIVE);
            // Dropping an in-progress receive on shutdown may lose the messages SQS was sending
            // back: they stay invisible for one visibility timeout and are then delivered again.
            let received = tokio::select! {
                biased;
                () = cancel.cancelled() => return Gathered::Cancelled(records),
                received = self.queue.receive(max, wait) => received,
            };
            match received {
                Ok(messages) => {
                    self.health.set(true);
                    self.backoff.reset();
                    let received_at = Instant::now();
                    let new: Vec<Record> = messages
                        .iter()
                        .filter_map(|m| {
                            let record = event::record(m, &self.source);
                            if record.is_none() {
                                tracing::warn!(message_id = ?m.message_id(), "ignoring a message without id or receipt handle");
                            }
                            record
                        })
                        .collect();
                    self.metrics.received.inc_by(new.len() as u64);
                    self.in_flight.track(new.iter().map(|r| &r.receipt), received_at);
                    records.extend(new);
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
}

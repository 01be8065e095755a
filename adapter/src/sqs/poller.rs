//! Receives messages and gathers them into batches, as Lambda's pollers do.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::PollerHealth;
use super::backoff::Backoff;
use super::event::{self, EventSource, Record};
use super::metrics::SqsMetrics;
use super::queue::Queue;
use super::visibility::InFlight;

/// Most messages one `ReceiveMessage` call returns.
pub(crate) const MAX_PER_RECEIVE: usize = 10;

/// What gathering ended with.
#[derive(Debug)]
pub(crate) enum Gathered {
    /// A batch to invoke with (never empty).
    Batch(Vec<Record>),
    /// Shutdown: these messages were received but will not be invoked with.
    Cancelled {
        /// To be released (they are still tracked in flight).
        records: Vec<Record>,
        /// When shutdown was seen: the grace period counts from here.
        at: Instant,
    },
}

/// Gathers batches from one queue.
#[derive(Debug)]
pub(crate) struct Poller {
    pub(crate) queue: Queue,
    pub(crate) source: EventSource,
    pub(crate) in_flight: InFlight,
    pub(crate) metrics: SqsMetrics,
    pub(crate) health: PollerHealth,
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
            let (received, cancelled_at) = self.receive(max, wait, cancel).await;
            match received {
                Ok(messages) => {
                    self.health.set(true);
                    self.backoff.reset();
                    let received_at = Instant::now();
                    let new = self.records(&messages);
                    self.metrics.received.inc_by(new.len() as u64);
                    self.in_flight
                        .track(new.iter().map(|r| &r.receipt), received_at);
                    records.extend(new);
                    if let Some(at) = cancelled_at {
                        return Gathered::Cancelled { records, at };
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
                    if let Some(at) = cancelled_at {
                        return Gathered::Cancelled { records, at };
                    }
                    if !records.is_empty() {
                        // Invoke with what we have rather than hold it through an outage.
                        break;
                    }
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => {
                            return Gathered::Cancelled { records, at: Instant::now() };
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        Gathered::Batch(records)
    }

    /// One receive call, seen through even if `cancel` fires meanwhile (then the instant it
    /// fired comes back too).
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        cancel: &CancellationToken,
    ) -> (
        Result<Vec<aws_sdk_sqs::types::Message>, super::queue::CallError>,
        Option<Instant>,
    ) {
        if cancel.is_cancelled() {
            return (Ok(Vec::new()), Some(Instant::now()));
        }
        let receive = self.queue.receive(max, wait);
        tokio::pin!(receive);
        tokio::select! {
            biased;
            received = &mut receive => (received, None),
            () = cancel.cancelled() => {
                let at = Instant::now();
                // The long poll ends by `wait`; the bound only guards against a hung call.
                let received = tokio::time::timeout(wait + Duration::from_secs(1), &mut receive)
                    .await
                    .unwrap_or_else(|_| Ok(Vec::new()));
                (received, Some(at))
            }
        }
    }

    fn records(&self, messages: &[aws_sdk_sqs::types::Message]) -> Vec<Record> {
        messages
            .iter()
            .filter_map(|m| {
                let record = event::record(m, &self.source);
                if record.is_none() {
                    tracing::warn!(message_id = ?m.message_id(), "ignoring a message without id or receipt handle");
                }
                record
            })
            .collect()
    }
}

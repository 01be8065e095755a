//! `adapter sqs`: Lambda's SQS event source mapping, reproduced.
//!
//! The source long-polls one queue, gathers messages into batches (batch size, batching window),
//! invokes the hosted function with an [`SqsEvent`](aws_lambda_events::sqs::SqsEvent) and then does
//! what Lambda does with the reply: deletes what succeeded, leaves what failed to become visible
//! again (the queue's redrive policy moves it to the dead-letter queue after `maxReceiveCount`), and
//! reads `batchItemFailures` strictly. While a batch runs, message visibility is extended so that a
//! long task is never delivered twice; on shutdown, what cannot finish in the grace period is made
//! visible again at once so another worker takes it.
//!
//! Where this differs from Lambda, on purpose:
//! - While no function process is up (one restarting after a crash), a batch waits for one (up to
//!   30 s, its messages kept invisible) instead of failing at once: the function never saw it, and
//!   failing would spend receives and push good messages towards the DLQ.
//! - At shutdown the long poll in progress is seen through, not dropped: SQS does not notice an
//!   abandoned long poll, which would then take the messages we release and hide them for a whole
//!   visibility timeout. Long polls are therefore capped to the drain part of the grace period.
//!
//! FIFO queues keep Lambda's rules: batch size at most 10, no batching window, and a receive's
//! messages stay one batch, in order (SQS hands out a group's next messages only once the last
//! ones are settled, so a group never runs twice at once). With partial batch responses the
//! function must stop at a group's first failure and list the rest as failed, as Lambda asks of
//! it; the adapter deletes exactly what the reply does not list.
//!
//! Module map: `event` builds the event, `batch_response` reads the reply, `visibility` keeps
//! in-flight messages invisible, `poller` receives and gathers, `queue` wraps the SQS calls,
//! `deleter` coalesces the deletes of concurrent batches,
//! `source` runs it all, `settler` sees each batch through, `metrics` counts, `backoff` spaces retries.

mod backoff;
mod batch_response;
mod deleter;
mod event;
pub mod filter;
mod metrics;
mod poller;
mod queue;
mod settler;
mod source;
mod visibility;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use source::SqsSource;

use poller::MAX_PER_RECEIVE;

/// Flags of `adapter sqs`. Each has an `ADAPTER_*` environment equivalent for ECS task definitions.
#[derive(clap::Args, Debug, Clone)]
pub struct SqsArgs {
    /// URL of the queue to consume (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
    #[arg(long, env = "ADAPTER_QUEUE_URL")]
    pub queue_url: String,

    /// Most messages per invocation (Lambda's `BatchSize`). Above 10 needs a batching window of at
    /// least 1 second, as in Lambda.
    #[arg(long, env = "ADAPTER_BATCH_SIZE", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub batch_size: u16,

    /// Seconds to keep gathering messages before invoking (Lambda's
    /// `MaximumBatchingWindowInSeconds`); 0 invokes with what one receive call returns.
    #[arg(long, env = "ADAPTER_BATCHING_WINDOW", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=300))]
    pub batching_window: u16,

    /// Read `batchItemFailures` from the function's reply (Lambda's `ReportBatchItemFailures`).
    /// When false, any successful invocation deletes the whole batch.
    #[arg(long, env = "ADAPTER_REPORT_BATCH_ITEM_FAILURES", default_value_t = true,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub report_batch_item_failures: bool,

    /// Extend a running batch's visibility when less than this fraction of the queue's visibility
    /// timeout is left since the last extension (0.5: extend at half-time).
    #[arg(long, env = "ADAPTER_VISIBILITY_EXTENSION_MARGIN", default_value_t = 0.5,
          value_parser = parse_fraction)]
    pub visibility_extension_margin: f64,

    /// Receive loops polling the queue at once (Lambda scales its pollers the same way; its
    /// provisioned mode calls them `MinimumPollers`). Unset: enough to fill the free concurrency
    /// 10 messages per call, at most 5 and at least 1. More pollers drain a backlog faster; each
    /// idle one costs a long poll every 20 s.
    #[arg(long, env = "ADAPTER_POLLERS",
          value_parser = clap::value_parser!(u16).range(1..=100))]
    pub pollers: Option<u16>,
}

impl SqsArgs {
    /// How many receive loops run for `max_concurrency` batches at once: `--pollers`, or enough
    /// that one round of receive calls (10 messages each) can fill every slot, capped at
    /// [`AUTO_POLLERS_MAX`]. Never more than there are slots: a poller holds one while it polls.
    pub fn poller_count(&self, max_concurrency: usize) -> usize {
        let slots = max_concurrency.max(1);
        let wanted = match self.pollers {
            Some(pollers) => usize::from(pollers),
            None => (slots * usize::from(self.batch_size))
                .div_ceil(MAX_PER_RECEIVE)
                .clamp(1, AUTO_POLLERS_MAX),
        };
        wanted.min(slots)
    }
}

/// Most receive loops started without `--pollers`.
pub const AUTO_POLLERS_MAX: usize = 5;

fn parse_fraction(s: &str) -> Result<f64, String> {
    let value: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(format!("{value} is not strictly between 0 and 1"))
    }
}

/// Why the SQS source could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    /// The flags contradict each other.
    #[error("invalid SQS source configuration: {0}")]
    Config(String),
    /// `GetQueueAttributes` failed at start (queue missing, no access, SQS unreachable).
    #[error("could not read the attributes of {queue_url}: {message}")]
    QueueAttributes {
        /// The queue asked about.
        queue_url: String,
        /// The SDK error, with its whole context.
        message: String,
        /// Whether SQS may answer later (unreachable, 5xx), as opposed to a definite "no".
        retryable: bool,
    },
    /// The queue answered without an attribute the source needs.
    #[error("queue {queue_url} has no usable {attribute} attribute")]
    MissingAttribute {
        /// The queue asked about.
        queue_url: String,
        /// The attribute that was missing or unparsable.
        attribute: &'static str,
    },
    /// One of the source's tasks (a receive loop, the deleter, the visibility keeper) failed, a
    /// bug; the source drained, released what it held, and stopped.
    #[error("the SQS source stopped: {0}")]
    Stopped(String),
}

/// Readiness of the SQS source: "event source connected".
///
/// Connected unless some receiving poller's last `ReceiveMessage` call failed and none's
/// succeeded. With several pollers, one call failing while the others get through is a blip, not
/// an outage, and readiness should not flap with it. A poller waiting for a free slot makes no
/// calls, so its last result says nothing about now: it stops counting either way until its next
/// call. (With every slot busy no poller receives, and readiness stays green: failing it would
/// get a worker busy with long tasks replaced over an old error.) Cheap to clone; the admin
/// endpoint holds one and asks [`SqsHealth::connected`] per probe.
#[derive(Debug, Clone)]
pub struct SqsHealth(Arc<HealthCounts>);

/// How many pollers are in each state (the idle ones are not counted).
#[derive(Debug, Default)]
struct HealthCounts {
    succeeding: AtomicUsize,
    failing: AtomicUsize,
}

impl SqsHealth {
    /// Connected until proven otherwise: [`SqsSource::new`] has just talked to the queue.
    fn new_connected() -> Self {
        Self(Arc::default())
    }

    /// Whether SQS answers, as far as the pollers know.
    pub fn connected(&self) -> bool {
        self.0.failing.load(Ordering::Relaxed) == 0 || self.0.succeeding.load(Ordering::Relaxed) > 0
    }

    /// A new poller's part, idle until its first call.
    fn poller(&self) -> PollerHealth {
        PollerHealth {
            shared: self.clone(),
            state: PollerState::Idle,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PollerState {
    /// No call yet, or waiting for a slot.
    Idle,
    Succeeding,
    Failing,
}

/// One poller's part of [`SqsHealth`].
#[derive(Debug)]
pub(crate) struct PollerHealth {
    shared: SqsHealth,
    state: PollerState,
}

impl PollerHealth {
    /// Records how this poller's last `ReceiveMessage` call went.
    pub(crate) fn set(&mut self, connected: bool) {
        self.enter(if connected {
            PollerState::Succeeding
        } else {
            PollerState::Failing
        });
    }

    /// The poller waits for a free slot: its last result no longer counts.
    pub(crate) fn waiting(&mut self) {
        self.enter(PollerState::Idle);
    }

    fn enter(&mut self, state: PollerState) {
        let counts = &self.shared.0;
        let counter = |state| match state {
            PollerState::Idle => None,
            PollerState::Succeeding => Some(&counts.succeeding),
            PollerState::Failing => Some(&counts.failing),
        };
        let before = std::mem::replace(&mut self.state, state);
        if before != state {
            if let Some(count) = counter(before) {
                count.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(count) = counter(state) {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for PollerHealth {
    /// A poller that stops no longer counts, either way.
    fn drop(&mut self) {
        self.enter(PollerState::Idle);
    }
}

/// How long Lambda lets one invocation payload be: larger gathered batches are split.
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Longest long poll SQS allows.
const MAX_WAIT_TIME: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        sqs: SqsArgs,
    }

    fn parse(args: &[&str]) -> Result<SqsArgs, clap::Error> {
        let argv = ["adapter", "--queue-url", "http://q"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| cli.sqs)
    }

    #[test]
    fn defaults_are_lambdas() {
        let args = parse(&[]).expect("parses");
        assert_eq!(args.batch_size, 10);
        assert_eq!(args.batching_window, 0);
        assert!(args.report_batch_item_failures);
        assert!((args.visibility_extension_margin - 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn report_batch_item_failures_takes_an_optional_value() {
        let flag = |v: &[&str]| parse(v).expect("parses").report_batch_item_failures;
        assert!(!flag(&["--report-batch-item-failures=false"]));
        assert!(flag(&["--report-batch-item-failures=true"]));
        assert!(flag(&["--report-batch-item-failures"]));
        assert!(parse(&["--report-batch-item-failures=maybe"]).is_err());
    }

    #[test]
    fn ranges_are_lambdas() {
        assert!(parse(&["--batch-size", "10000"]).is_ok());
        assert!(parse(&["--batch-size", "0"]).is_err());
        assert!(parse(&["--batch-size", "10001"]).is_err());
        assert!(parse(&["--batching-window", "300"]).is_ok());
        assert!(parse(&["--batching-window", "301"]).is_err());
        assert!(parse(&["--visibility-extension-margin", "1"]).is_err());
        assert!(parse(&["--visibility-extension-margin", "0.25"]).is_ok());
    }

    #[test]
    fn pollers_fill_the_free_slots_up_to_five() {
        let count =
            |flags: &[&str], concurrency| parse(flags).expect("parses").poller_count(concurrency);
        assert_eq!(count(&["--batch-size", "1"], 10), 1);
        assert_eq!(count(&["--batch-size", "1"], 11), 2);
        assert_eq!(count(&["--batch-size", "1"], 1000), AUTO_POLLERS_MAX);
        assert_eq!(count(&["--batch-size", "10"], 3), 3);
        // A poller holds a slot while it polls: never more pollers than slots.
        assert_eq!(count(&["--pollers", "8"], 2), 2);
        assert_eq!(count(&["--pollers", "8"], 100), 8);
        assert!(parse(&["--pollers", "0"]).is_err());
    }

    #[test]
    fn queue_url_is_required() {
        assert!(Cli::try_parse_from(["adapter"]).is_err());
    }

    #[test]
    fn connected_while_any_receiving_poller_gets_through() {
        let health = SqsHealth::new_connected();
        assert!(health.connected(), "connected before the pollers start");
        let mut first = health.poller();
        let mut second = health.poller();
        first.set(false);
        second.set(true);
        assert!(health.connected(), "one poller failing is a blip");
        second.set(false);
        assert!(!health.connected(), "every poller failing is an outage");
        second.set(true);
        assert!(health.connected());
        // The one that got through now waits for a slot: its success is old news.
        second.waiting();
        assert!(
            !health.connected(),
            "only a failing poller is still receiving"
        );
        // Waiting too: its failure is old news as well, and nobody knows better.
        first.waiting();
        assert!(
            health.connected(),
            "no receiving poller: no evidence of an outage"
        );
        first.set(true);
        assert!(health.connected());
        first.set(false);
        drop(first);
        assert!(health.connected(), "a stopped poller no longer counts");
        second.set(false);
        assert!(!health.connected());
    }
}

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
//! # Module map: one message, receive to delete
//!
//! - [`source`] ([`SqsSource`]): connects (reads the queue's ARN and visibility timeout), then
//!   [`SqsSource::run`] starts the named tasks below under one tracker and owns their shutdown.
//! - [`poller`]: a receive loop takes a free concurrency slot, long-polls (`client`), turns each
//!   message into a [`record::Record`] (`record`: the `SqsEvent` JSON) and registers it in
//!   [`in_flight::InFlightMessages`], then hands the batch, with its slot, to `source`.
//! - [`batch`]: one task per batch: invokes the function (`crate::invocation`; the host waits for
//!   a restarting process), reads the reply (`reply`: `batchItemFailures`, strictly), asks the
//!   [`deleter`] to delete what succeeded, leaves what failed to come back, unregisters both.
//! - Visibility: while registered, a message is extended by the keeper in [`in_flight`] (one
//!   `ChangeMessageVisibilityBatch` for all due messages per tick), never past its hold
//!   ([`in_flight::VisibilityPolicy::hold`], the one formula for how long a message may be held).
//! - Shutdown ([`crate::shutdown::ShutdownBudget`] sets every deadline): pollers stop (the long poll
//!   in progress is seen through), batches drain, the deleter and keeper stop, and what is still
//!   registered is released (visibility 0) by `source`.
//! - Around them: [`client`] makes every SQS call and is the one retry layer (the SDK's retries are
//!   off); [`args`] the flags, [`health`] readiness, [`metrics`], [`error`].

mod args;
mod batch;
mod client;
mod deleter;
mod error;
mod health;
mod in_flight;
mod metrics;
mod poller;
mod record;
mod reply;
mod source;

use std::time::Duration;

pub use args::{AUTO_POLLERS_MAX, SqsArgs};
pub use error::{SqsError, TaskFailure};
pub use health::SqsHealth;
pub use source::{RunConfig, SqsSource};

/// Most messages one `ReceiveMessage` call returns, and most entries of one batch call.
const MAX_PER_RECEIVE: usize = 10;

/// How long Lambda lets one invocation payload be: larger gathered batches are split.
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Longest long poll SQS allows.
const MAX_WAIT_TIME: Duration = Duration::from_secs(20);

//! `adapter sqs`: Lambda's SQS event source mapping, reproduced.
//!
//! The source long-polls one queue, gathers messages into batches (batch size, batching window),
//! invokes the function with an [`SqsEvent`](aws_lambda_events::sqs::SqsEvent), then does what
//! Lambda does with the reply: deletes what succeeded, leaves what failed to become visible again
//! (the queue's redrive policy moves it to the DLQ after `maxReceiveCount`), reads
//! `batchItemFailures` strictly. A running batch's visibility is extended, so a long task is never
//! delivered twice; at shutdown, what cannot finish in the grace period is made visible at once.
//!
//! Where this differs from Lambda, on purpose:
//! - While no function process is up (one restarting after a crash), a batch waits for one (up to
//!   30 s or the function timeout, its messages kept invisible) instead of failing: the function
//!   never saw it, and failing would spend receives and push good messages towards the DLQ.
//! - At shutdown the long poll in progress is seen through, not dropped (SQS does not notice an
//!   abandoned one, which would take the messages we release and hide them for a visibility
//!   timeout), so long polls are capped to the drain part of the grace period.
//!
//! FIFO queues keep Lambda's rules: batch size at most 10, no batching window, a receive's messages
//! stay one batch, in order (SQS hands out a group's next messages only once the last ones are
//! settled). With partial batch responses the function must stop at a group's first failure and
//! list the rest as failed, as Lambda asks; the adapter deletes exactly what the reply leaves out.
//!
//! # Module map: one message, receive to delete
//!
//! - [`source`] ([`SqsSource`]): connects, then [`SqsSource::run`] starts the tasks below and owns
//!   their shutdown.
//! - [`poller`]: a receive loop takes a free concurrency slot, long-polls, turns each message into
//!   a [`record::Record`] (the `SqsEvent` JSON), deletes those [`crate::event_filter`] rejects,
//!   registers the rest in [`in_flight::InFlightMessages`] and hands the batch to `source`.
//! - [`batch`]: one task per batch: invokes the function, reads the reply (`reply`), has the
//!   [`deleter`] delete what succeeded, unregisters all.
//! - Visibility: the keeper in [`in_flight`] extends registered messages, never past their hold
//!   ([`in_flight::VisibilityPolicy::hold`]).
//! - Shutdown ([`crate::shutdown::ShutdownBudget`] sets every deadline): pollers stop, batches
//!   drain, and `source` releases (visibility 0) what is still registered.
//! - Around them: [`client`] makes every SQS call and is the one retry layer; [`args`] the flags;
//!   [`health`] readiness and metrics.

mod args;
mod batch;
mod client;
mod deleter;
mod health;
mod in_flight;
mod poller;
mod record;
mod reply;
mod source;

use std::time::Duration;

pub use args::{AUTO_POLLERS_MAX, SqsArgs};
pub use health::SqsHealth;
pub use source::{RunConfig, SqsSource};

use client::CallError;

/// Most messages one `ReceiveMessage` call returns, and most entries of one batch call.
const MAX_PER_RECEIVE: usize = 10;

/// How long Lambda lets one invocation payload be: larger gathered batches are split.
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Longest long poll SQS allows.
const MAX_WAIT_TIME: Duration = Duration::from_secs(20);

/// Why the SQS source could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    /// The flags contradict each other.
    #[error("invalid SQS source configuration: {0}")]
    Config(String),
    /// `GetQueueAttributes` on this queue failed at start (the error says whether it may pass).
    #[error("could not read the attributes of {0}")]
    QueueAttributes(String, #[source] CallError),
    /// The queue answered without this attribute, or with one that does not parse.
    #[error("queue {0} has no usable {1} attribute")]
    MissingAttribute(String, &'static str),
    /// One of the source's tasks failed (a bug); the source drained, released and stopped.
    #[error("the SQS source stopped")]
    Stopped(#[source] TaskFailure),
}

/// A task of the source that ended before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum TaskFailure {
    /// It returned early.
    #[error("the {0} returned on its own")]
    Returned(&'static str),
    /// It panicked (or was cancelled).
    #[error("the {0} failed")]
    Panicked(&'static str, #[source] tokio::task::JoinError),
}

//! Why the SQS source could not start, or stopped.

use super::client::CallError;

/// Why the SQS source could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    /// The flags contradict each other.
    #[error("invalid SQS source configuration: {0}")]
    Config(String),
    /// `GetQueueAttributes` failed at start (queue missing, no access, SQS unreachable).
    #[error("could not read the attributes of {queue_url}")]
    QueueAttributes {
        /// The queue asked about.
        queue_url: String,
        /// The failed call; says whether SQS may answer later.
        #[source]
        source: CallError,
    },
    /// The queue answered without an attribute the source needs.
    #[error("queue {queue_url} has no usable {attribute} attribute")]
    MissingAttribute {
        /// The queue asked about.
        queue_url: String,
        /// The attribute that was missing or unparsable.
        attribute: &'static str,
    },
    /// One of the source's tasks failed, a bug; the source drained, released what it held, and
    /// stopped.
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
    #[error("the {task} failed")]
    Panicked {
        /// Which task.
        task: &'static str,
        /// How it ended.
        #[source]
        source: tokio::task::JoinError,
    },
}

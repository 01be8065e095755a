//! What the `enqueue` and `sleep` functions share.
//!
//! - [`message`]: the task message that travels on the queue, versioned, and its validation;
//! - [`config`]: configuration from the environment, with an error that names what is wrong;
//! - [`logging`]: JSON-lines logging for Lambda and for the adapter alike;
//! - [`sqs`]: building the SQS client once, honouring `AWS_ENDPOINT_URL`.
//!
//! Nothing here holds global mutable state: each function builds what it needs at init and passes
//! it to its handler.

pub mod config;
pub mod logging;
pub mod message;
pub mod sqs;

pub use config::{ConfigError, QueueConfig};
pub use message::{MessageError, TaskDuration, TaskKind, TaskMessage};

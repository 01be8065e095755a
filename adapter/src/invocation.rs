//! The seam between event sources and the function host.
//!
//! An event source (`http`, `sqs`, the Invoke API) turns what it receives into an [`Invocation`] and
//! calls a [`tower::Service`] with it; the function host behind that service hands the invocation to
//! a function process over the Lambda Runtime API and resolves with what the function replied.
//! Event sources are generic over the service ([`Invoke`] names what they need of it), so they are
//! tested with a fake and run with the real host.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::response_stream::StreamHandoff;

/// One invocation of the hosted function, as Lambda would make it.
#[derive(Debug)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`: unique per invocation.
    pub request_id: String,
    /// The event, as JSON bytes, passed to the function unchanged.
    pub payload: Bytes,
    /// How long the function may run (`--timeout`); the host sends `Lambda-Runtime-Deadline-Ms`
    /// from it and fails the invocation with [`InvokeError::Timeout`] past it.
    pub timeout: Duration,
    /// `Lambda-Runtime-Trace-Id`, when the source has one.
    pub trace_id: Option<String>,
    /// How long the host may hold the invocation before a process takes it (waiting for a slot,
    /// in its queue, for a restarting process); `None`: its `timeout`. Past it the invocation
    /// fails with [`InvokeError::NotReady`], never having run.
    pub max_wait_for_process: Option<Duration>,
    /// Where the reply goes if the function streams it, for a source that can pass a stream on
    /// (see [`crate::response_stream`]); `None`: a streamed reply is buffered.
    pub response_stream: Option<StreamHandoff>,
}

impl Invocation {
    /// A new invocation with a fresh request id.
    pub fn new(payload: impl Into<Bytes>, timeout: Duration) -> Self {
        Self::with_request_id(uuid::Uuid::new_v4().to_string(), payload, timeout)
    }

    /// A new invocation with the request id the event source already gave it (the HTTP source
    /// puts the same id in the event and in the `apigw-requestid` header).
    pub fn with_request_id(
        request_id: String,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Self {
        Self {
            request_id,
            payload: payload.into(),
            timeout,
            trace_id: None,
            max_wait_for_process: None,
            response_stream: None,
        }
    }

    /// This invocation, allowed to wait `wait` for a process to take it (see
    /// [`Invocation::max_wait_for_process`]).
    pub fn waiting_for_process(mut self, wait: Duration) -> Self {
        self.max_wait_for_process = Some(wait);
        self
    }

    /// The wall-clock deadline of this invocation if it started at `start`.
    pub fn deadline_from(&self, start: SystemTime) -> SystemTime {
        start + self.timeout
    }
}

/// What the function replied to an invocation it ran to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationResponse {
    /// The function posted to `/invocation/{id}/response`: the body, unchanged.
    Success(Bytes),
    /// The function posted to `/invocation/{id}/error` (a handler error or a panic it caught).
    FunctionError {
        /// `Lambda-Runtime-Function-Error-Type` or the `errorType` of the body.
        error_type: String,
        /// The error body as the function sent it (`{"errorType": ..., "errorMessage": ...}`).
        payload: Bytes,
    },
}

/// What an event source needs of the function host: a [`tower::Service`] that takes an
/// [`Invocation`], cheap to clone (a clone per request or batch) and usable from spawned tasks.
///
/// Implemented for every such service: the real host ([`crate::host::Invoker`]) and the fakes
/// that test each event source alone. A name for the bounds, so each source states them once.
pub trait Invoke:
    tower::Service<Invocation, Response = InvocationResponse, Error = InvokeError, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S> Invoke for S where
    S: tower::Service<Invocation, Response = InvocationResponse, Error = InvokeError, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// Why an invocation produced no reply from the function.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvokeError {
    /// The function did not reply before its deadline; its process was replaced.
    #[error("Task timed out after {seconds:.2} seconds")]
    Timeout {
        /// The configured timeout, in seconds.
        seconds: f64,
    },
    /// The function process exited or crashed while running the invocation (`Runtime.ExitError`).
    #[error("Runtime exited with error: {detail}")]
    ExitError {
        /// The exit status or signal, as text.
        detail: String,
    },
    /// No function process is ready to take work (still initialising, or restarting).
    #[error("no function process is ready")]
    NotReady,
    /// The host is shutting down and takes no new work.
    #[error("the adapter is shutting down")]
    ShuttingDown,
}

impl InvokeError {
    /// The Lambda error type for this failure, as Lambda reports it to callers.
    pub fn error_type(&self) -> &'static str {
        match self {
            InvokeError::Timeout { .. } => "Sandbox.Timedout",
            InvokeError::ExitError { .. } => "Runtime.ExitError",
            InvokeError::NotReady => "Runtime.Unavailable",
            InvokeError::ShuttingDown => "Runtime.ShuttingDown",
        }
    }
}

//! Helpers for integration tests that run against a real LocalStack.
//!
//! Every test makes its own queue (and DLQ) with a unique name, so tests run in parallel and
//! never see each other's messages. LocalStack must be answering at `AWS_ENDPOINT_URL` (default
//! `http://127.0.0.1:4566`); `scripts/test` starts it.

mod http;
mod process;
mod proxy;
mod sqs;

use std::future::Future;
use std::time::Duration;

pub use http::{HttpResponse, free_port, http, http_response};
pub use process::{Service, children_of, is_alive, log_events, process_name, workspace_binary};
pub use proxy::Proxy;
pub use sqs::{TestQueue, aws_env, endpoint, sdk_config, sqs_client};

/// Polls `check` until it returns `Some`, for at most `timeout`; panics with `what` past it.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! `enqueue`: the task API as a Lambda function. See the library crate for what it serves.

use enqueue::{App, TaskQueue};
use lambda_http::{Error, Request, service_fn};
use shared::QueueConfig;

// One thread: the work is waiting on SQS or on timers, so more threads only add hand-offs between
// them. Measured under the adapter at 1 connection: ~15% more requests per second for `enqueue`.
// Under the adapter, more cores are used with more processes (a lower --per-process-concurrency);
// classic Lambda runs one invocation per sandbox anyway.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    // Configuration errors end init with a message naming the variable: under Lambda that is an
    // init error in the function's log, under the adapter a clear startup failure.
    let config = QueueConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    // One client for the life of the process, shared by every invocation.
    let queue = TaskQueue::new(shared::sqs::client().await, config);
    let app = App::new(queue);
    // Concurrent when AWS_LAMBDA_MAX_CONCURRENCY > 1 (the adapter's --per-process-concurrency,
    // Lambda Managed Instances); one at a time otherwise, as classic Lambda runs it.
    lambda_http::run_concurrent(service_fn(move |request: Request| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(app.handle(request).await) }
    }))
    .await
}

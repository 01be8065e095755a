//! `sleep`: the task worker as a Lambda function. See the library crate for what it does.

use lambda_runtime::{Error, service_fn};

// One thread: the work is waiting on SQS or on timers, so more threads only add hand-offs between
// them. Measured under the adapter at 1 connection: ~15% more requests per second for `enqueue`.
// Under the adapter, more cores are used with more processes (a lower --per-process-concurrency);
// classic Lambda runs one invocation per sandbox anyway.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    // Concurrent when AWS_LAMBDA_MAX_CONCURRENCY > 1; one batch at a time otherwise.
    lambda_runtime::run_concurrent(service_fn(sleep::handle)).await
}

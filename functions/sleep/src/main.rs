//! `sleep`: the task worker as a Lambda function. See the library crate for what it does.

use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    // Concurrent when AWS_LAMBDA_MAX_CONCURRENCY > 1; one batch at a time otherwise.
    lambda_runtime::run_concurrent(service_fn(sleep::handle)).await
}

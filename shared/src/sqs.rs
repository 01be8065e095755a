//! The SQS client, built once per process at init.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

/// Builds an SQS client from the standard AWS configuration chain: region, credentials and
/// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_SQS`) from the environment, so the same binary talks
/// to LocalStack locally and to SQS in AWS.
///
/// Calls are bounded in time: an API request must not hang on a queue that stopped answering, it
/// must answer 503 so the client retries. The SDK's default retries stay on.
pub async fn client() -> aws_sdk_sqs::Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(12))
        .build();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

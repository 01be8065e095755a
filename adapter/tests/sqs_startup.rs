//! Starting `adapter sqs` when its queue cannot be read: an SQS that does not answer yet is waited
//! for (the adapter stays up and stops cleanly on SIGTERM); a queue that does not exist is a
//! configuration error that ends the adapter at once, non-zero, naming the queue.

#[path = "common/sqs.rs"]
mod harness;

use std::time::Duration;

use harness::{Adapter, WAIT};
use test_support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_sqs_at_start_is_waited_for_and_sigterm_stops_it_cleanly() {
    // Nothing listens on this port: every call is refused, as when LocalStack is not up yet.
    let closed = format!("http://{}", harness::free_address());
    let queue_url = format!("{closed}/queue/us-east-1/000000000000/not-yet");
    let mut adapter = Adapter::start_via(&closed, &queue_url, &[]).await;

    wait_for("two retries at start", WAIT, || {
        let retries = adapter
            .output_text()
            .matches("SQS unreachable at start; retrying")
            .count();
        async move { (retries >= 2).then_some(()) }
    })
    .await;
    assert!(
        adapter.child.try_wait().unwrap().is_none(),
        "still running while SQS is away"
    );

    adapter.sigterm();
    let status = adapter.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "SIGTERM while waiting is a clean stop: {status:?}\n{}",
        adapter.output_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_does_not_exist_fails_start_with_its_name() {
    let queue_url = format!(
        "{}/queue/us-east-1/000000000000/no-such-queue-{}",
        test_support::endpoint(),
        uuid::Uuid::new_v4().simple()
    );
    let mut adapter = Adapter::start(&queue_url, &[]).await;
    let status = adapter.wait_exit(WAIT).await;
    assert!(!status.success(), "a missing queue is not waited for");
    let output = adapter.output_text();
    assert!(
        output.contains(&queue_url),
        "the error names the queue: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_filter_criteria_stop_start_naming_what_is_wrong() {
    let queue_url = format!(
        "{}/queue/us-east-1/000000000000/unused",
        test_support::endpoint()
    );
    let bad = r#"{"Filters": [{"Pattern": "{\"body\": {\"kind\": \"keep\"}}"}]}"#;
    let mut adapter = Adapter::start(&queue_url, &["--filter-criteria", bad]).await;
    let status = adapter.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(2), "a usage error");
    let output = adapter.output_text();
    assert!(
        output.contains("--filter-criteria")
            && output.contains("filter 0: `kind` must be an array"),
        "the error names the filter and the field: {output}"
    );
}

//! The local development loop a user runs: `cargo lambda watch` serving both functions against
//! LocalStack. A task posted to the function URL lands on the queue; the sleep function, invoked
//! with that message as an SQS event, runs it to `task finished`.
//!
//! Needs `cargo-lambda` on PATH; `scripts/test` installs it (from PyPI) and puts it there.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use shared::TaskMessage;
use test_support::{Service, TestQueue, free_port, http, wait_for};

/// The first request makes `cargo lambda watch` compile the function: allow for a cold build.
const FIRST_BUILD: Duration = Duration::from_secs(600);

#[tokio::test]
async fn a_posted_task_is_queued_and_run_under_cargo_lambda_watch() {
    let has_cargo_lambda = Command::new("cargo")
        .args(["lambda", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_cargo_lambda,
        "cargo-lambda is not installed; run `scripts/test`, which installs it, or `pip install cargo-lambda`"
    );

    let queue = TestQueue::create("e2e-watch", 60, 3).await;
    let port = free_port();
    let mut command = Command::new("cargo");
    command
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "lambda",
            "watch",
            "--ignore-changes",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        // From the environment: cargo-lambda lets package metadata override `--env-var`.
        .env("QUEUE_URL", &queue.url)
        .envs(test_support::aws_env());
    let watch = Service::start("cargo-lambda-watch", command);
    let base = format!("http://127.0.0.1:{port}");

    // 1. POST /tasks through the function URL.
    let body = r#"{"duration_seconds": 1}"#;
    let accepted = wait_for(
        "cargo lambda watch to serve POST /tasks",
        FIRST_BUILD,
        || async {
            match http(
                "POST",
                &format!("{base}/lambda-url/enqueue/tasks"),
                &[("content-type", "application/json")],
                body,
            )
            .await
            {
                Ok((202, body)) => Some(body),
                Ok((status, body)) => {
                    panic!("POST /tasks answered {status}: {body}\n{}", watch.output())
                }
                Err(_) => None, // not listening yet
            }
        },
    )
    .await;
    let accepted: Value = serde_json::from_str(&accepted).unwrap();
    let task_id = accepted["task_id"].as_str().unwrap().to_string();

    // 2. The message is on LocalStack.
    let messages = queue.receive(&queue.url, 10, 5).await;
    assert_eq!(messages.len(), 1, "exactly one message for one task");
    let message = &messages[0];
    let task = TaskMessage::parse(message.body().unwrap()).expect("a valid task message");
    assert_eq!(task.task_id.to_string(), task_id);

    // 3. Invoke the sleep function with it, as Lambda's SQS mapping would.
    let event = json!({"Records": [{
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
        "messageAttributes": {},
        "md5OfBody": message.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:e2e",
        "awsRegion": "us-east-1"
    }]});
    let invoke = format!("{base}/2015-03-31/functions/sleep/invocations");
    let (status, reply) =
        tokio::time::timeout(FIRST_BUILD, http("POST", &invoke, &[], event.to_string()))
            .await
            .expect("the sleep invocation returns")
            .expect("the invoke API answers");
    assert_eq!(status, 200, "{reply}\n{}", watch.output());
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(
        reply,
        json!({"batchItemFailures": []}),
        "the task succeeded"
    );

    // 4. The worker logged the task's start and finish.
    wait_for(
        "`task finished` in the function's log",
        Duration::from_secs(30),
        || async {
            let log = watch.output();
            log.lines()
                .any(|l| l.contains("task finished") && l.contains(&task_id))
                .then_some(())
        },
    )
    .await;
    assert!(
        watch
            .output()
            .lines()
            .any(|l| l.contains("task started") && l.contains(&task_id))
    );
    drop(watch);
    queue.delete().await;
}

//! The sleep handler on batches read off a real LocalStack queue: it fails exactly the records it
//! cannot use, runs the good ones concurrently, and fails fast what cannot beat the deadline.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::Message;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use shared::{TaskDuration, TaskMessage};
use test_support::TestQueue;

/// The SQS event Lambda would build from these messages.
fn sqs_event(messages: &[Message]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:test",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a valid SqsEvent")
}

fn context(deadline_in: Duration) -> Context {
    let mut context = Context::default();
    context.deadline = (SystemTime::now() + deadline_in)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    context
}

/// Runs the handler on a runtime with a paused clock: sleeps take no real time, and the virtual
/// time that passes tells whether the tasks ran one after another or together.
fn run_paused(event: SqsEvent, deadline_in: Duration) -> (SqsBatchResponse, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let start = tokio::time::Instant::now();
        let response = sleep::handle(LambdaEvent::new(event, context(deadline_in)))
            .await
            .expect("handler result");
        (response, start.elapsed())
    })
}

fn task(seconds: f64) -> String {
    TaskMessage::sleep(TaskDuration::new(seconds).unwrap()).to_body()
}

async fn receive_all(queue: &TestQueue, expected: usize) -> Vec<Message> {
    let mut messages = Vec::new();
    while messages.len() < expected {
        let batch = queue.receive(&queue.url, 10, 2).await;
        assert!(
            !batch.is_empty(),
            "only {} of {expected} messages came back",
            messages.len()
        );
        messages.extend(batch);
    }
    messages
}

#[tokio::test(flavor = "multi_thread")]
async fn fails_exactly_the_poison_records_and_runs_the_rest_together() {
    let queue = TestQueue::create("sleep-mixed", 60, 3).await;
    let mut good = Vec::new();
    for seconds in [3.0, 2.0, 1.5] {
        good.push(queue.send(&task(seconds)).await);
    }
    let valid = task(1.0);
    let poison = [
        "not json".to_string(),
        valid.replace("\"version\":1", "\"version\":9"),
        valid.replace("\"sleep\"", "\"dance\""),
        valid.replace("\"duration_seconds\":1.0", "\"duration_seconds\":0.5"),
        valid.replace("\"duration_seconds\":1.0", "\"duration_seconds\":301"),
        "{}".to_string(),
    ];
    let mut bad = Vec::new();
    for body in &poison {
        bad.push(queue.send(body).await);
    }
    let messages = receive_all(&queue, good.len() + bad.len()).await;
    let event = sqs_event(&messages);

    let (response, elapsed) =
        tokio::task::spawn_blocking(move || run_paused(event, Duration::from_secs(60)))
            .await
            .unwrap();

    let mut failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    failed.sort();
    bad.sort();
    assert_eq!(failed, bad, "exactly the poison records fail");
    // 3 + 2 + 1.5 s of tasks in 3 s of (virtual) time: they ran at once.
    assert!(
        elapsed >= Duration::from_secs(3),
        "the longest task ran to its end: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(3500),
        "tasks overlapped: {elapsed:?}"
    );
    queue.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_cannot_beat_the_deadline_fails_fast() {
    let queue = TestQueue::create("sleep-deadline", 60, 3).await;
    let short = queue.send(&task(1.0)).await;
    let long = queue.send(&task(30.0)).await;
    let messages = receive_all(&queue, 2).await;
    let event = sqs_event(&messages);

    let (response, elapsed) =
        tokio::task::spawn_blocking(move || run_paused(event, Duration::from_secs(10)))
            .await
            .unwrap();

    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        [long.as_str()],
        "only the 30 s task fails (short one: {short})"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "the long task was not started: {elapsed:?}"
    );
    queue.delete().await;
}

#[tokio::test]
async fn a_record_without_a_message_id_fails_the_whole_batch() {
    let event: SqsEvent =
        serde_json::from_value(json!({"Records": [{"body": task(1.0)}]})).unwrap();
    let result = sleep::handle(LambdaEvent::new(event, context(Duration::from_secs(60)))).await;
    assert!(
        result.is_err(),
        "no id to report: the invocation fails and the batch comes back"
    );
}

#[test]
fn the_event_file_in_the_repo_is_a_valid_batch() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/events/batch.json")).unwrap();
    let event: SqsEvent = serde_json::from_str(&text).unwrap();
    let (response, _) = run_paused(event, Duration::from_secs(60));
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    // The second record asks for 0.5 s, below the minimum: the file shows a partial failure.
    assert_eq!(failed, ["2e1424d4-f796-459a-8184-9c92662be6da"]);
}

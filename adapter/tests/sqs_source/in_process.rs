//! In process: the real SQS source and a real queue, with a fake function host (the seam's
//! `tower::Service`), to observe what the source itself does.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use adapter::invocation::{Invocation, InvocationResponse, InvokeError};
use adapter::shutdown::ShutdownBudget;
use adapter::sqs::{RunConfig, SqsArgs, SqsSource};
use bytes::Bytes;
use clap::Parser;
use serde_json::json;
use test_support::{sdk_config, wait_for};
use tokio_util::sync::CancellationToken;

use super::harness::{Queues, WAIT};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sqs: SqsArgs,
}

async fn source(queue_url: &str, flags: &[&str]) -> SqsSource {
    let argv = ["adapter", "--queue-url", queue_url]
        .into_iter()
        .chain(flags.iter().copied());
    let args = Cli::try_parse_from(argv).expect("flags parse").sqs;
    let mut registry = prometheus_client::registry::Registry::default();
    SqsSource::with_config(args, &sdk_config().await, &mut registry)
        .await
        .expect("source starts")
}

/// `max_concurrency` batches at once, each allowed `timeout_s`, within a grace of `grace_s`.
fn run_config(max_concurrency: usize, timeout_s: u64, grace_s: u64) -> RunConfig {
    RunConfig {
        max_concurrency,
        invocation_timeout: Duration::from_secs(timeout_s),
        budget: ShutdownBudget::new(Duration::from_secs(grace_s)),
    }
}

#[derive(Default)]
struct Observed {
    calls: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_never_has_more_than_max_concurrency_batches_in_flight() {
    let queues = Queues::new("inproc-concurrency", 30, 5).await;
    let ids = queues.send(&vec![json!({}); 12]).await;
    let observed = Arc::new(Observed::default());
    let seen = observed.clone();
    // A host with no limit of its own: the source's cap is all that holds. Each call waits
    // (bounded) for three to run at once, so the cap is also reached.
    let invoker = tower::service_fn(move |_: Invocation| {
        let seen = seen.clone();
        async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
            seen.max_running.fetch_max(now, Ordering::SeqCst);
            let until = tokio::time::Instant::now() + Duration::from_secs(3);
            while seen.running.load(Ordering::SeqCst) < 3 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            seen.running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, InvokeError>(InvocationResponse::Success(Bytes::new()))
        }
    });
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(source(&queues.url, &["--batch-size", "1"]).await.run(
        invoker,
        run_config(3, 30, 5),
        shutdown.clone(),
    ));
    wait_for("every message invoked and deleted", WAIT, || async {
        let all = observed.calls.load(Ordering::SeqCst) >= ids.len();
        (all && queues.depth().await == (0, 0)).then_some(())
    })
    .await;
    shutdown.cancel();
    run.await.expect("run task").expect("run returns Ok");
    assert_eq!(observed.max_running.load(Ordering::SeqCst), 3);
    assert_eq!(
        observed.calls.load(Ordering::SeqCst),
        ids.len(),
        "each message once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_batch_response_fails_the_whole_batch() {
    let queues = Queues::new("inproc-reply", 30, 5).await;
    let ids = queues
        .send(&[json!({"n": 1}), json!({"n": 2}), json!({"n": 3})])
        .await;
    let replies = Arc::new(std::sync::Mutex::new(Vec::<Vec<String>>::new()));
    let record = replies.clone();
    // The first invocation names a message that is not in its batch: the whole batch fails
    // and stays. Nothing else is invoked before the visibility timeout (30 s) ends.
    let invoker = tower::service_fn(move |invocation: Invocation| {
        let record = record.clone();
        async move {
            let event: serde_json::Value =
                serde_json::from_slice(&invocation.payload).expect("event is JSON");
            let batch: Vec<String> = event["Records"]
                .as_array()
                .expect("Records")
                .iter()
                .map(|r| r["messageId"].as_str().expect("messageId").to_owned())
                .collect();
            record.lock().expect("lock").push(batch);
            let reply = json!({"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]});
            Ok::<_, InvokeError>(InvocationResponse::Success(Bytes::from(reply.to_string())))
        }
    });
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(
        source(
            &queues.url,
            &["--batch-size", "10", "--batching-window", "1"],
        )
        .await
        .run(invoker, run_config(1, 30, 5), shutdown.clone()),
    );
    wait_for("all three invoked", WAIT, || async {
        let seen: usize = replies.lock().expect("lock").iter().map(Vec::len).sum();
        (seen == ids.len()).then_some(())
    })
    .await;
    // Settled: all three still on the queue, in flight (the source no longer extends them).
    wait_for("the batch settled", WAIT, || async {
        (queues.depth().await == (0, 3)).then_some(())
    })
    .await;
    shutdown.cancel();
    run.await.expect("run task").expect("run returns Ok");
    // Failed messages are not released at shutdown: they wait out their visibility timeout.
    assert_eq!(queues.depth().await, (0, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batching_window_gathers_over_receive_calls_into_one_lambda_shaped_event() {
    let queues = Queues::new("inproc-window", 30, 5).await;
    let ids = queues.send(&vec![json!({"n": 1}); 14]).await;
    let with_attribute = queues
        .client
        .send_message()
        .queue_url(&queues.url)
        .message_body("plain text")
        .message_attributes(
            "kind",
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("sleep")
                .build()
                .expect("attribute"),
        )
        .send()
        .await
        .expect("send")
        .message_id
        .expect("id");
    let events = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let record = events.clone();
    let invoker = tower::service_fn(move |invocation: Invocation| {
        let record = record.clone();
        async move {
            let event = serde_json::from_slice(&invocation.payload).expect("event is JSON");
            record.lock().expect("lock").push(event);
            Ok::<_, InvokeError>(InvocationResponse::Success(Bytes::new()))
        }
    });
    let shutdown = CancellationToken::new();
    // At most 10 messages per receive call: 15 in one batch needs the window.
    let source = source(
        &queues.url,
        &["--batch-size", "20", "--batching-window", "5"],
    )
    .await;
    let run = tokio::spawn(source.run(invoker, run_config(1, 30, 5), shutdown.clone()));
    wait_for("all deleted", WAIT, || async {
        (queues.depth().await == (0, 0)).then_some(())
    })
    .await;
    shutdown.cancel();
    run.await.expect("run task").expect("run returns Ok");

    let events = events.lock().expect("lock").clone();
    assert_eq!(events.len(), 1, "one invocation: {events:?}");
    let records = events[0]["Records"].as_array().expect("Records");
    let got: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["messageId"].as_str())
        .collect();
    let sent: BTreeSet<&str> = ids
        .iter()
        .chain([&with_attribute])
        .map(String::as_str)
        .collect();
    assert_eq!(got, sent);
    let arn = format!(
        "arn:aws:sqs:us-east-1:000000000000:{}",
        queues.url.rsplit('/').next().expect("queue name")
    );
    for record in records {
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], arn.as_str());
        assert_eq!(record["awsRegion"], "us-east-1");
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
        for attribute in [
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
        ] {
            assert!(
                record["attributes"][attribute].is_string(),
                "{attribute} in {record}"
            );
        }
        assert!(record["receiptHandle"].is_string() && record["md5OfBody"].is_string());
    }
    let attributed = records
        .iter()
        .find(|r| r["messageId"] == with_attribute.as_str())
        .expect("the message with an attribute");
    assert_eq!(attributed["body"], "plain text");
    assert_eq!(
        attributed["messageAttributes"]["kind"],
        json!({"stringValue": "sleep", "stringListValues": [], "binaryListValues": [], "dataType": "String"})
    );
    assert!(attributed["md5OfMessageAttributes"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_in_flight_at_shutdown_is_released_at_once() {
    // More than one batch call's worth (10), and a visibility timeout far past the wait below:
    // only the release can make them visible in time.
    let queues = Queues::new("inproc-release", 300, 5).await;
    let ids = queues.send(&vec![json!({}); 25]).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    // A function that never answers: every message stays in flight until shutdown.
    let invoker = tower::service_fn(move |_: Invocation| {
        seen.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<Result<InvocationResponse, InvokeError>>()
    });
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(source(&queues.url, &["--batch-size", "1"]).await.run(
        invoker,
        run_config(ids.len(), 300, 2),
        shutdown.clone(),
    ));
    wait_for("every message invoked", WAIT, || async {
        (calls.load(Ordering::SeqCst) >= ids.len()).then_some(())
    })
    .await;
    assert_eq!(queues.depth().await, (0, ids.len() as u64), "all in flight");
    shutdown.cancel();
    run.await.expect("run task").expect("run returns Ok");
    wait_for("every message visible again", WAIT, || async {
        (queues.depth().await == (ids.len() as u64, 0)).then_some(())
    })
    .await;
}

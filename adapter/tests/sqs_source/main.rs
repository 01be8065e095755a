//! The SQS source against a real SQS (LocalStack at `AWS_ENDPOINT_URL`, default
//! `http://127.0.0.1:4566`; `scripts/localstack up` starts it), hosting the `sqs_fixture` test
//! function. Each test makes its own queue and dead-letter queue, so tests run in parallel.
//!
//! Nothing here waits on a guess: every wait is for a condition, with a bound, and failures say
//! what was awaited. No assertion is about wall-clock time.

#[path = "../common/sqs.rs"]
mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use harness::{Adapter, Queues, WAIT, max_overlap};
use serde_json::json;
use test_support::{Proxy, wait_for};
// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_batch_leaves_exactly_the_failed_messages() {
    // Long enough that the failed messages stay hidden until the adapter has stopped (so it
    // does not take them again), short enough not to slow the test down much.
    let queues = Queues::new("mixed", 20, 10).await;
    let bodies: Vec<_> = (0..6)
        .map(|i| json!({"n": i, "fail": i % 2 == 1}))
        .collect();
    let ids = queues.send(&bodies).await;
    let failed: BTreeSet<String> = ids.iter().skip(1).step_by(2).cloned().collect();

    let mut adapter = Adapter::start(
        &queues.url,
        &["--batch-size", "10", "--batching-window", "1"],
    )
    .await;
    wait_for("every message processed", WAIT, || async {
        (adapter.records().len() == ids.len()).then_some(())
    })
    .await;
    // The three good messages are deleted; the three failed ones stay, in flight.
    wait_for("only the failed messages left", WAIT, || async {
        (queues.depth().await == (0, 3)).then_some(())
    })
    .await;
    adapter.sigterm();
    assert!(
        adapter.wait_exit(WAIT).await.success(),
        "{}",
        adapter.output_text()
    );

    // Once their visibility timeout ends, exactly the failed messages come back.
    let mut back = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while back.len() < failed.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the failed messages: {back:?}"
        );
        for (id, _) in queues.receive(&queues.url, 1, 60).await {
            back.insert(id);
        }
    }
    assert_eq!(back, failed);
    assert_eq!(queues.depth().await.0, 0, "nothing else is visible");
    for id in &ids {
        assert_eq!(
            adapter.records()[id].len(),
            1,
            "{id} processed once: {:?}",
            adapter.records()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_reaches_the_dlq_after_max_receive_count() {
    // 3 s: the adapter extends visibility at half-time, which a 1 s queue leaves no room for.
    let queues = Queues::new("poison", 3, 2).await;
    let ids = queues
        .send(&[json!({"fail": true}), json!({"ok": true})])
        .await;
    let (poison, good) = (&ids[0], &ids[1]);

    let adapter = Adapter::start(&queues.url, &["--batch-size", "1"]).await;
    let in_dlq = wait_for("the poison message in the DLQ", WAIT, || async {
        let got = queues.receive(&queues.dlq_url, 1, 30).await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(
        in_dlq.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        [poison]
    );
    wait_for("the main queue empty", WAIT, || async {
        (queues.depth().await == (0, 0)).then_some(())
    })
    .await;

    let records = adapter.records();
    assert_eq!(
        records[poison],
        [1, 2],
        "run once per receive, maxReceiveCount times"
    );
    assert_eq!(
        records[good],
        [1],
        "the good message runs once and is deleted"
    );
    assert_eq!(
        adapter.metric("adapter_sqs_messages_failed_total").await,
        Some(2.0)
    );
    assert_eq!(
        adapter.metric("adapter_sqs_messages_deleted_total").await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_longer_than_the_visibility_timeout_runs_once() {
    // 6 s visibility, a 10 s task, two slots: without extension the message would be received
    // again by the free slot while the first run is still going. Each extension has 3 s to
    // reach LocalStack (2 s was too little for a LocalStack just started under a full test run).
    let queues = Queues::new("extend", 6, 5).await;
    let ids = queues.send(&[json!({"sleep_ms": 10_000})]).await;

    let mut adapter = Adapter::start(
        &queues.url,
        &["--batch-size", "1", "--max-concurrency", "2"],
    )
    .await;
    wait_for("the message deleted", WAIT, || async {
        let finished = adapter.lines().iter().any(|l| l.starts_with("end "));
        (finished && queues.depth().await == (0, 0)).then_some(())
    })
    .await;
    assert_eq!(
        adapter.records()[&ids[0]],
        [1],
        "processed once, on its first receive; the adapter's output:\n{}",
        adapter.output_text()
    );
    let extensions = adapter
        .metric("adapter_sqs_visibility_extensions_total")
        .await
        .unwrap_or(0.0);
    assert!(extensions >= 1.0, "visibility was extended ({extensions})");
    adapter.sigterm();
    assert!(adapter.wait_exit(WAIT).await.success());
    assert_eq!(adapter.records().len(), 1);
}

/// A FIFO group runs one message at a time, in order, though slots are free: one receive may
/// return several messages of the group, and they must not be split over concurrent batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_group_runs_in_order_one_batch_at_a_time() {
    let queues = Queues::fifo("fifo", 30, 5).await;
    let bodies: Vec<_> = (0..6).map(|n| json!({"n": n, "sleep_ms": 200})).collect();
    let ids = queues.send_in_group(&bodies, "one-group").await;

    let adapter = Adapter::start(
        &queues.url,
        &["--batch-size", "1", "--max-concurrency", "6"],
    )
    .await;
    wait_for("every message processed and deleted", WAIT, || async {
        (adapter.records().len() == ids.len() && queues.depth().await == (0, 0)).then_some(())
    })
    .await;
    let lines = adapter.lines();
    let order: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("record "))
        .filter_map(|r| r.split(' ').next())
        .collect();
    assert_eq!(order, ids, "processed in the order sent, each once");
    let mut running = 0_i32;
    for line in &lines {
        if line.starts_with("start ") {
            running += 1;
            assert_eq!(running, 1, "two batches of one group at once: {lines:?}");
        } else if line.starts_with("end ") {
            running -= 1;
        }
    }
}

/// Lambda's FIFO rules are refused at start, naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_queue_refuses_a_batching_window() {
    let queues = Queues::fifo("fifo-window", 30, 5).await;
    let mut adapter = Adapter::start(&queues.url, &["--batching-window", "1"]).await;
    let status = adapter.wait_exit(WAIT).await;
    assert!(!status.success());
    let output = adapter.output_text();
    assert!(
        output.contains("--batching-window is not supported for FIFO queues"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_is_reached_and_never_exceeded() {
    let queues = Queues::new("concurrency", 30, 5).await;
    // Each invocation waits (up to 5 s) until three run at once, so three are reached whenever
    // the adapter allows three; a fourth would show as an overlap of four.
    let bodies: Vec<_> = (0..9)
        .map(|_| json!({"await_concurrency": 3, "timeout_ms": 5000, "sleep_ms": 100}))
        .collect();
    let ids = queues.send(&bodies).await;

    let adapter = Adapter::start(
        &queues.url,
        &["--batch-size", "1", "--max-concurrency", "3"],
    )
    .await;
    wait_for(
        "every message processed and deleted",
        Duration::from_secs(90),
        || async {
            (adapter.records().len() == ids.len() && queues.depth().await == (0, 0)).then_some(())
        },
    )
    .await;
    assert_eq!(max_overlap(&adapter.lines()), 3, "{:?}", adapter.lines());
    assert!(adapter.records().values().all(|runs| runs.len() == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_batch_releases_the_message_at_once() {
    stop_mid_batch_and_expect_the_message_back("sigterm", |adapter| adapter.sigterm()).await;
}

/// Ctrl-C in a terminal: SIGINT reaches the functions too, and their batch dies with them; it is
/// still the shutdown's doing, so the message is released, not left to time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_to_the_process_group_mid_batch_releases_the_message_at_once() {
    stop_mid_batch_and_expect_the_message_back("sigint", |adapter| adapter.signal_group("-INT"))
        .await;
}

async fn stop_mid_batch_and_expect_the_message_back(name: &str, stop: impl Fn(&Adapter)) {
    // A 120 s visibility timeout: the message coming back within the test's bounds can only be
    // the adapter's release, not the timeout running out.
    let queues = Queues::new(name, 120, 5).await;
    let ids = queues.send(&[json!({"sleep_ms": 600_000})]).await;

    let mut adapter = Adapter::start(&queues.url, &["--batch-size", "1"]).await;
    wait_for("the batch running", WAIT, || async {
        adapter.records().contains_key(&ids[0]).then_some(())
    })
    .await;
    stop(&adapter);
    let status = adapter.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "clean exit: {status:?}; {}",
        adapter.output_text()
    );

    let back = wait_for(
        "the message visible again",
        Duration::from_secs(20),
        || async {
            let got = queues.receive(&queues.url, 1, 120).await;
            (!got.is_empty()).then_some(got)
        },
    )
    .await;
    assert_eq!(
        back,
        [(ids[0].clone(), 2)],
        "released, then received a second time"
    );
    assert!(
        adapter
            .output_text()
            .contains("released in-flight messages at shutdown"),
        "{}",
        adapter.output_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_outage_is_retried_reported_by_readiness_and_survived() {
    // A short visibility timeout: the long poll the cut abandons stays open on the SQS side and
    // may take the message sent during the outage, hiding it for one visibility timeout.
    let queues = Queues::new("outage", 3, 5).await;
    let proxy = Proxy::to_localstack().await;
    let mut adapter = Adapter::start_via(&proxy.url(), &queues.url, &["--batch-size", "1"]).await;
    wait_for("ready", WAIT, || async {
        (adapter.readiness().await == Some(200)).then_some(())
    })
    .await;

    proxy.cut();
    wait_for("not ready while SQS is unreachable", WAIT, || async {
        (adapter.readiness().await == Some(503)).then_some(())
    })
    .await;
    let errors = adapter
        .metric("adapter_sqs_receive_errors_total")
        .await
        .unwrap_or(0.0);
    assert!(errors >= 1.0, "receive errors counted ({errors})");
    // Sent during the outage, straight to SQS: it must be processed once SQS is back.
    let ids = queues.send(&[json!({"ok": true})]).await;
    assert!(
        adapter.child.try_wait().expect("status").is_none(),
        "the adapter keeps running"
    );

    proxy.restore();
    wait_for(
        "the message processed and deleted after the outage",
        WAIT,
        || async {
            let done = adapter.records().contains_key(&ids[0]);
            (done && queues.depth().await == (0, 0)).then_some(())
        },
    )
    .await;
    wait_for("ready again", WAIT, || async {
        (adapter.readiness().await == Some(200)).then_some(())
    })
    .await;
    adapter.sigterm();
    assert!(
        adapter.wait_exit(WAIT).await.success(),
        "{}",
        adapter.output_text()
    );
}

mod in_process;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_criteria_invoke_with_matches_and_delete_the_rest_unrun() {
    let queues = Queues::new("filter", 30, 10).await;
    let ids = queues
        .send(&[
            json!({"kind": "keep", "n": 1}),
            json!({"kind": "drop", "n": 2}),
            json!({"kind": "KEEP", "n": 3}),
            json!({"n": 4}),
        ])
        .await;
    // AWS's own shape: a JSON pattern for the body, one filter per alternative.
    let criteria = json!({"Filters": [
        {"Pattern": json!({"body": {"kind": ["keep"]}}).to_string()},
        {"Pattern": json!({"body": {"n": [{"numeric": [">", 3]}]}}).to_string()},
    ]})
    .to_string();
    let mut adapter = Adapter::start(&queues.url, &["--filter-criteria", &criteria]).await;
    wait_for(
        "the queue emptied: matches run and deleted, the rest deleted",
        WAIT,
        || async { (queues.depth().await == (0, 0)).then_some(()) },
    )
    .await;
    let run: BTreeSet<String> = adapter.records().into_keys().collect();
    assert_eq!(
        run,
        BTreeSet::from([ids[0].clone(), ids[3].clone()]),
        "only the matching messages reach the function"
    );
    assert_eq!(
        adapter.metric("adapter_sqs_messages_filtered_total").await,
        Some(2.0)
    );
    adapter.sigterm();
    assert!(
        adapter.wait_exit(WAIT).await.success(),
        "{}",
        adapter.output_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messages_aws_trace_header_is_its_invocations_trace_id() {
    let queues = Queues::new("trace", 30, 10).await;
    let root = "Root=1-5759e988-bd862e3fe1be46a994272793";
    queues
        .send_traced(
            &json!({"n": 1}),
            &format!("{root};Parent=53995c3f42cd8ad8;Sampled=1"),
        )
        .await;
    let mut adapter = Adapter::start(&queues.url, &["--batch-size", "1"]).await;
    wait_for("the traced message run", WAIT, || async {
        (!adapter.traces().is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        adapter.traces()[0],
        format!("{root};Parent=53995c3f42cd8ad8;Sampled=1")
    );
    // A message without one gets a fresh root, as every Lambda invocation has a trace.
    queues.send(&[json!({"n": 2})]).await;
    wait_for("the untraced message run", WAIT, || async {
        (adapter.traces().len() == 2).then_some(())
    })
    .await;
    let fresh = &adapter.traces()[1];
    assert!(
        fresh.starts_with("Root=1-") && !fresh.starts_with(root),
        "{fresh}"
    );
    adapter.sigterm();
    assert!(
        adapter.wait_exit(WAIT).await.success(),
        "{}",
        adapter.output_text()
    );
}

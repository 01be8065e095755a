//! Concurrency: `--max-concurrency` invocations really run at once, spread over
//! `ceil(N / K)` processes; beyond that, callers wait (backpressure) rather than fail.
//! Overlap is proven from the function's own start/finish timestamps, never from wall-clock
//! durations measured by the test.

mod common;

use std::collections::HashSet;

use common::{Adapter, Spawn};
use serde_json::{Value, json};

async fn run_at_once(adapter: &Adapter, count: usize, sleep_ms: u64) -> Vec<Value> {
    let payload = json!({ "sleep_ms": sleep_ms });
    let calls = (0..count).map(|_| adapter.invoke("fixture", &payload));
    let replies = futures::future::join_all(calls).await;
    replies
        .into_iter()
        .map(|reply| {
            assert_eq!(reply.status, 200, "{reply:?}");
            assert_eq!(reply.header("x-amz-function-error"), None, "{reply:?}");
            reply.json()
        })
        .collect()
}

fn field(reply: &Value, name: &str) -> u64 {
    reply[name].as_u64().unwrap_or_default()
}

/// All intervals share a moment: the last start precedes the first finish.
fn all_overlap(replies: &[Value]) -> bool {
    let last_start = replies.iter().map(|r| field(r, "started_ms")).max();
    let first_finish = replies.iter().map(|r| field(r, "finished_ms")).min();
    last_start < first_finish
}

#[tokio::test]
async fn n_invocations_run_at_once_in_n_processes() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "4"])
        .start();
    adapter.wait_ready().await;
    // Ready means one process is; a process still starting would let another take two.
    adapter
        .wait_metric("adapter_function_processes_ready", |v| v >= 4.0)
        .await;
    let (replies, ()) = tokio::join!(run_at_once(&adapter, 4, 3_000), async {
        adapter
            .wait_metric("adapter_invocations_in_flight", |v| v >= 4.0)
            .await;
    });
    let pids: HashSet<u64> = replies.iter().map(|r| field(r, "pid")).collect();
    assert_eq!(pids.len(), 4, "one invocation per process: {replies:?}");
    assert!(all_overlap(&replies), "{replies:?}");
}

#[tokio::test]
async fn per_process_concurrency_shares_processes() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "4", "--per-process-concurrency", "2"])
        .start();
    adapter.wait_ready().await;
    adapter
        .wait_metric("adapter_function_processes_ready", |v| v >= 2.0)
        .await;
    let replies = run_at_once(&adapter, 4, 3_000).await;
    let pids: HashSet<u64> = replies.iter().map(|r| field(r, "pid")).collect();
    assert_eq!(pids.len(), 2, "ceil(4 / 2) processes: {replies:?}");
    assert!(all_overlap(&replies), "{replies:?}");
    assert!(
        replies
            .iter()
            .all(|r| r["env"]["AWS_LAMBDA_MAX_CONCURRENCY"] == "2")
    );
}

#[tokio::test]
async fn beyond_max_concurrency_callers_wait_their_turn() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "1"])
        .start();
    adapter.wait_ready().await;
    let mut replies = run_at_once(&adapter, 3, 200).await;
    replies.sort_by_key(|r| field(r, "started_ms"));
    for pair in replies.windows(2) {
        assert!(
            field(&pair[0], "finished_ms") <= field(&pair[1], "started_ms"),
            "one at a time: {replies:?}"
        );
    }
}

#[tokio::test]
async fn flags_can_come_from_the_environment() {
    let mut adapter = Spawn::http("fixture")
        .env("ADAPTER_MAX_CONCURRENCY", "3")
        .env("ADAPTER_PER_PROCESS_CONCURRENCY", "3")
        .env("ADAPTER_FUNCTION_NAME", "from-env")
        .start();
    adapter.wait_ready().await;
    let reply = adapter.invoke("from-env", &json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["env"]["AWS_LAMBDA_MAX_CONCURRENCY"], "3");
    // ceil(3 / 3): one process.
    assert_eq!(
        adapter
            .metrics()
            .await
            .get("adapter_function_processes_ready"),
        Some(&1.0)
    );
}

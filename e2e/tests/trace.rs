//! One X-Ray trace from `POST /tasks` to the worker's log line, as on Lambda: the API's adapter
//! takes the caller's `X-Amzn-Trace-Id` (or makes a root), `enqueue` sends it as the message's
//! `AWSTraceHeader`, and `sleep` logs it beside the task id.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod common;

use test_support::{TestQueue, endpoint};

use common::{Api, Worker};

/// X-Ray's example root.
const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

/// Posts a task with `headers`; returns its id.
async fn post(api: &Api, headers: &[(&str, &str)]) -> String {
    let response = api.post_task_with(1.0, headers).await.unwrap();
    assert_eq!(response.status, 202, "{}", response.body);
    response.json()["task_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_trace_root_follows_a_task_from_the_request_to_the_worker() {
    let queue = TestQueue::create("e2e-trace", 30, 5).await;
    let api = Api::start(&queue.url, &endpoint(), &[]).await;
    let worker = Worker::start("e2e-trace-worker", &queue.url, &endpoint(), &[]).await;

    let given = format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1");
    let traced = post(&api, &[("x-amzn-trace-id", &given)]).await;
    let finished = worker.wait_task_event("task finished", &traced).await;
    let trace = finished["trace_id"].as_str().unwrap_or_default();
    assert!(
        trace.starts_with(&format!("Root={ROOT}")),
        "the caller's root reaches the worker: {finished}"
    );
    let started = worker.wait_task_event("task started", &traced).await;
    assert_eq!(started["trace_id"], finished["trace_id"], "{started}");

    // Without a header, and with one that is not X-Ray's, the API makes a root of its own.
    for headers in [vec![], vec![("x-amzn-trace-id", "Root=not-a-trace")]] {
        let untraced = post(&api, &headers).await;
        let finished = worker.wait_task_event("task finished", &untraced).await;
        let trace = finished["trace_id"].as_str().unwrap_or_default();
        assert!(
            trace.starts_with("Root=1-") && !trace.contains(ROOT),
            "a fresh root for {headers:?}: {finished}"
        );
    }
    drop(worker);
    drop(api);
    queue.delete().await;
}

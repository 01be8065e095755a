//! Runtime API conformance with a real `lambda_runtime` function (`fixture`): replies, errors,
//! panics, crashes, timeouts and init failures.

mod common;

use common::{Spawn, WAIT};
use serde_json::{Value, json};

#[tokio::test]
async fn ok_reply_carries_lambda_context_and_environment() {
    let mut adapter = Spawn::http("fixture")
        .args(&[
            "--function-name",
            "my-fn",
            "--memory-size",
            "256",
            "--timeout",
            "7",
        ])
        .start();
    adapter.wait_ready().await;
    let reply = adapter
        .invoke("my-fn", &json!({"action": "ok", "n": 1}))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-amz-function-error"), None);
    let body = reply.json();
    assert_eq!(body["event"], json!({"action": "ok", "n": 1}));
    assert_eq!(
        Some(body["request_id"].as_str().unwrap_or_default()),
        reply.header("x-amzn-requestid")
    );
    assert_eq!(
        body["function_arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:my-fn"
    );
    // The deadline is the start plus the 7 s timeout (the function saw it in epoch millis).
    let started = body["started_ms"].as_u64().unwrap_or_default();
    let deadline = body["deadline_ms"].as_u64().unwrap_or_default();
    assert!(deadline > started && deadline <= started + 7_000, "{body}");
    let env = &body["env"];
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "my-fn");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/my-fn");
    assert!(
        env["AWS_LAMBDA_LOG_STREAM_NAME"]
            .as_str()
            .is_some_and(|s| s.contains("[$LATEST]"))
    );
    assert!(
        env["AWS_LAMBDA_RUNTIME_API"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:"))
    );
    assert!(env.get("AWS_LAMBDA_MAX_CONCURRENCY").is_none());
}

#[tokio::test]
async fn handler_error_and_panic_are_unhandled_function_errors() {
    let mut adapter = Spawn::http("fixture").start();
    adapter.wait_ready().await;
    let reply = adapter.invoke("fixture", &json!({"action": "error"})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-amz-function-error"), Some("Unhandled"));
    assert_eq!(reply.json()["errorMessage"], "fixture error on purpose");

    let reply = adapter.invoke("fixture", &json!({"action": "panic"})).await;
    assert_eq!(reply.header("x-amz-function-error"), Some("Unhandled"));
    let message = reply.json()["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("fixture panic on purpose"), "{message}");

    // The same process goes on serving: a panic is caught by the runtime.
    let reply = adapter.invoke("fixture", &json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-amz-function-error"), None);
}

#[tokio::test]
async fn crash_fails_the_invocation_and_the_process_restarts() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "1"])
        .start();
    adapter.wait_ready().await;
    let before = adapter.invoke("fixture", &json!({})).await.json()["pid"].clone();

    let reply = adapter.invoke("fixture", &json!({"action": "exit"})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-amz-function-error"), Some("Unhandled"));
    let error = reply.json();
    assert_eq!(error["errorType"], "Runtime.ExitError");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("exit status 3"),
        "{error}"
    );

    // A later invocation succeeds, in a new process.
    adapter
        .wait_metric("adapter_function_restarts_total", |v| v >= 1.0)
        .await;
    adapter.wait_ready().await;
    let after = invoke_until_success(&adapter, &json!({})).await;
    assert_ne!(after["pid"], before);
}

#[tokio::test]
async fn timeout_fails_the_invocation_and_replaces_the_process() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "1", "--timeout", "2"])
        .start();
    adapter.wait_ready().await;
    let before = adapter.invoke("fixture", &json!({})).await.json()["pid"].clone();

    let reply = adapter.invoke("fixture", &json!({"action": "hang"})).await;
    assert_eq!(reply.header("x-amz-function-error"), Some("Unhandled"));
    let error = reply.json();
    assert_eq!(error["errorType"], "Sandbox.Timedout");
    assert_eq!(error["errorMessage"], "Task timed out after 2.00 seconds");

    let after = invoke_until_success(&adapter, &json!({})).await;
    assert_ne!(
        after["pid"], before,
        "the hung process must have been replaced"
    );
    let metrics = adapter.metrics().await;
    assert_eq!(
        metrics.get("adapter_invocations_total{outcome=\"timeout\"}"),
        Some(&1.0)
    );
}

#[tokio::test]
async fn a_process_that_stops_polling_after_replying_is_replaced() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "1", "--timeout", "2"])
        .start();
    adapter.wait_ready().await;
    let reply = adapter.invoke("fixture", &json!({"action": "wedge"})).await;
    assert_eq!(reply.json(), json!({"wedged": true}));

    // The only process never asks for work again. The next invocation is served once the adapter
    // has noticed (within the invocation's 2 s deadline) and replaced it; before, it waited for
    // ever, with /readyz still green.
    let next = tokio::time::timeout(WAIT, adapter.invoke("fixture", &json!({})))
        .await
        .expect("an invocation behind a wedged process must not wait for ever");
    let next = if next.status == 200 && next.header("x-amz-function-error").is_none() {
        next.json()
    } else {
        invoke_until_success(&adapter, &json!({})).await
    };
    assert!(next["pid"].is_u64(), "{next}");
    common::wait_log(&adapter, "did not ask for its next invocation").await;
    let metrics = adapter.metrics().await;
    assert!(
        metrics
            .get("adapter_function_restarts_total")
            .is_some_and(|n| *n >= 1.0),
        "{metrics:?}"
    );
}

#[tokio::test]
async fn a_timeout_also_fails_the_other_invocations_of_the_killed_process() {
    let mut adapter = Spawn::http("fixture")
        .args(&[
            "--max-concurrency",
            "2",
            "--per-process-concurrency",
            "2",
            "--timeout",
            "5",
        ])
        .start();
    adapter.wait_ready().await;
    let hang = json!({"action": "hang"});
    let (first, second) = tokio::join!(adapter.invoke("fixture", &hang), async {
        adapter
            .wait_metric("adapter_invocations_in_flight", |v| v >= 1.0)
            .await;
        // Space the two deadlines apart, so the first one's timeout (and the kill of the
        // process) comes clearly before the second one's own deadline, even on a busy machine.
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        adapter.invoke("fixture", &hang).await
    });
    assert_eq!(first.json()["errorType"], "Sandbox.Timedout");
    // The process was killed for the first one's timeout, before the second's came.
    let second = second.json();
    assert_eq!(second["errorType"], "Runtime.ExitError", "{second}");
    assert!(
        second["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{second}"
    );
}

#[tokio::test]
async fn init_error_makes_the_adapter_exit_with_the_reason() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--init-timeout", "5"])
        .env("FIXTURE_INIT", "fail")
        .start();
    let status = adapter.wait_exit(WAIT).await;
    assert!(!status.success());
    let log = adapter.log();
    assert!(
        log.contains("no function process initialised within 5 s"),
        "{log}"
    );
    assert!(log.contains("fixture init failed on purpose"), "{log}");
}

#[tokio::test]
async fn exit_before_next_makes_the_adapter_exit_with_the_reason() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--init-timeout", "5"])
        .env("FIXTURE_INIT", "exit")
        .start();
    let status = adapter.wait_exit(WAIT).await;
    assert!(!status.success());
    let log = adapter.log();
    assert!(
        log.contains("function process failed to initialise: exit status 3"),
        "{log}"
    );
}

/// Invokes until the function succeeds (while a process restarts, the host answers "not ready").
async fn invoke_until_success(adapter: &common::Adapter, payload: &Value) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let reply = adapter.invoke("fixture", payload).await;
        if reply.status == 200 && reply.header("x-amz-function-error").is_none() {
            return reply.json();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never succeeded: {reply:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

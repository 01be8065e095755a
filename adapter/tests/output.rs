//! Function output goes through pipes the adapter reads: a function that logs a lot cannot freeze
//! the adapter when nobody reads its standard output, and no line is lost or cut when they do.

mod common;

use common::{Spawn, WAIT, get};
use serde_json::json;

#[tokio::test]
async fn a_stalled_stdout_stalls_only_the_function_that_writes() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "2", "--timeout", "3"])
        .stall_stdout()
        .start();
    adapter.wait_ready().await;
    // 10 MB of output into a pipe nobody reads: the function blocks in `write` and times out.
    // Before, the adapter then blocked too, on its own "timed out" log line, and never answered.
    let flood = tokio::time::timeout(
        WAIT,
        adapter.invoke("fixture", &json!({"action": "ok", "log_lines": 100_000})),
    )
    .await
    .expect("the adapter froze behind its stalled output");
    assert_eq!(flood.json()["errorType"], "Sandbox.Timedout", "{flood:?}");
    // Health checks and the other process keep answering.
    for _ in 0..5 {
        let health = get(&format!("http://{}/healthz", adapter.admin)).await;
        assert!(health.is_ok_and(|reply| reply.status == 200));
        let reply = tokio::time::timeout(WAIT, adapter.invoke("fixture", &json!({})))
            .await
            .expect("an invocation that writes nothing must not wait on the output");
        assert_eq!(reply.status, 200);
    }
}

#[tokio::test]
async fn concurrent_functions_lines_arrive_whole_and_complete() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "4"])
        .start();
    adapter.wait_ready().await;
    let lines = 20_000;
    let event = json!({"log_lines": lines});
    let calls = (0..4).map(|_| adapter.invoke("fixture", &event));
    for reply in futures::future::join_all(calls).await {
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    // Every line whole (98 bytes and its newline), from every invocation.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let log = adapter.log();
        let ours: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("fixture line"))
            .collect();
        if ours.len() == 4 * lines as usize {
            for line in ours {
                assert!(
                    line.starts_with("fixture line") && line.len() == 98,
                    "cut: {line}"
                );
            }
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} lines of {}",
            ours.len(),
            4 * lines
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

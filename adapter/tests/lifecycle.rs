//! SIGTERM: stop taking work, let what is in flight finish within the grace period, stop the
//! function, exit 0.

mod common;

use common::{Spawn, WAIT, get, post_json};
use serde_json::json;

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_zero() {
    let mut adapter = Spawn::http("fixture").start();
    adapter.wait_ready().await;
    let url = adapter.http_url("/");
    let request = tokio::spawn(async move { post_json(&url, &json!({"sleep_ms": 4_000})).await });
    adapter
        .wait_metric("adapter_invocations_in_flight", |v| v >= 1.0)
        .await;

    adapter.sigterm();
    // Not ready any more while draining (the 4 s request leaves ample time to see it).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = get(&format!("http://{}/readyz", adapter.admin))
            .await
            .map(|r| r.status);
        if status == Ok(503) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz stayed {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let reply = request.await.expect("request task");
    assert_eq!(reply.status, 200, "{}", adapter.log());
    assert_eq!(
        reply.json()["event"]["requestContext"]["http"]["method"],
        "POST"
    );
    let status = adapter.wait_exit(WAIT).await;
    assert!(status.success(), "{status}: {}", adapter.log());
    assert!(adapter.log().contains("adapter stopped cleanly"));
}

#[tokio::test]
async fn work_past_the_grace_period_is_cut_and_the_adapter_still_exits_zero() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--shutdown-grace", "1"])
        .start();
    adapter.wait_ready().await;
    let url = adapter.http_url("/");
    let request = tokio::spawn(async move { post_json(&url, &json!({"action": "hang"})).await });
    adapter
        .wait_metric("adapter_invocations_in_flight", |v| v >= 1.0)
        .await;

    adapter.sigterm();
    let reply = request.await.expect("request task");
    // Cut off when the function is stopped, and told so rather than left hanging.
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.json(), json!({"message": "Service Unavailable"}));
    let status = adapter.wait_exit(WAIT).await;
    assert!(status.success(), "{status}: {}", adapter.log());
    assert!(adapter.log().contains("shutdown grace period over"));
}

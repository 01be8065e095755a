//! The admin listener and `adapter healthcheck`.

mod common;

use std::process::Command;

use common::{Adapter, Spawn, WAIT, get};
use serde_json::json;

fn healthcheck(adapter: &Adapter) -> bool {
    Command::new(env!("CARGO_BIN_EXE_adapter"))
        .args([
            "healthcheck",
            "--admin-url",
            &format!("http://{}", adapter.admin),
        ])
        .status()
        .expect("healthcheck runs")
        .success()
}

#[tokio::test]
async fn readiness_follows_the_function_and_metrics_count() {
    let gate = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ready-gate-{}", std::process::id()));
    let _ = std::fs::remove_file(&gate);
    let mut adapter = Spawn::http("fixture")
        .args(&["--init-timeout", "60"])
        .env("FIXTURE_INIT_WAIT_FILE", &gate.to_string_lossy())
        .start();

    // Alive but not ready while the function has not called /next.
    let deadline = std::time::Instant::now() + WAIT;
    while get(&format!("http://{}/healthz", adapter.admin))
        .await
        .map(|r| r.status)
        != Ok(200)
    {
        assert!(std::time::Instant::now() < deadline, "{}", adapter.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reply = get(&format!("http://{}/readyz", adapter.admin))
        .await
        .expect("answer");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["ready"], false);
    assert!(
        reply.json()["reason"]
            .as_str()
            .is_some_and(|r| r.contains("/next"))
    );
    assert!(!healthcheck(&adapter));

    std::fs::write(&gate, b"go").expect("gate file");
    adapter.wait_ready().await;
    assert!(healthcheck(&adapter));
    // As in a container: no URL, only the adapter's own ADAPTER_ADMIN_LISTEN, inherited.
    let by_listen = Command::new(env!("CARGO_BIN_EXE_adapter"))
        .arg("healthcheck")
        .env_remove("ADAPTER_ADMIN_URL")
        .env("ADAPTER_ADMIN_LISTEN", adapter.admin.to_string())
        .status()
        .expect("healthcheck runs");
    assert!(by_listen.success());
    let _ = std::fs::remove_file(&gate);

    let reply = adapter.invoke("fixture", &json!({})).await;
    assert_eq!(reply.status, 200);
    let metrics = adapter.metrics().await;
    assert_eq!(
        metrics.get("adapter_invocations_total{outcome=\"success\"}"),
        Some(&1.0)
    );
    assert_eq!(
        metrics.get("adapter_invocation_duration_seconds_count"),
        Some(&1.0)
    );
    assert_eq!(metrics.get("adapter_invocations_in_flight"), Some(&0.0));
    assert_eq!(metrics.get("adapter_function_restarts_total"), Some(&0.0));
    assert!(
        metrics
            .get("adapter_function_processes_ready")
            .is_some_and(|v| *v >= 1.0)
    );
}

#[tokio::test]
async fn healthcheck_fails_without_an_adapter() {
    // Nothing listens there.
    let port = test_support::free_port();
    let status = Command::new(env!("CARGO_BIN_EXE_adapter"))
        .args([
            "healthcheck",
            "--admin-url",
            &format!("http://127.0.0.1:{port}"),
        ])
        .status()
        .expect("healthcheck runs");
    assert!(!status.success());
}

//! Lambda's platform lines from a real adapter and function process (`--platform-logs`): text
//! lines by default, Lambda's `platform.*` records with `AWS_LAMBDA_LOG_FORMAT=JSON`; `Max Memory
//! Used` on every report, `Init Duration` on a process's first only.

mod common;

use common::{Spawn, WAIT};
use serde_json::{Value, json};
use test_support::wait_for;

/// The lines of `log` that contain `part`, once there are `count` of them.
async fn lines_once(adapter: &common::Adapter, part: &str, count: usize) -> Vec<String> {
    wait_for(&format!("{count} `{part}` lines"), WAIT, || async {
        let lines: Vec<String> = adapter
            .log()
            .lines()
            .filter(|line| line.contains(part))
            .map(str::to_owned)
            .collect();
        (lines.len() >= count).then_some(lines)
    })
    .await
}

#[tokio::test]
async fn text_reports_carry_memory_used_and_the_first_init_duration() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "1", "--platform-logs"])
        .start();
    adapter.wait_ready().await;
    for _ in 0..2 {
        assert_eq!(adapter.invoke("fixture", &json!({})).await.status, 200);
    }
    let reports = lines_once(&adapter, "REPORT RequestId: ", 2).await;
    let megabytes = |report: &str| -> u64 {
        let used = report
            .split('\t')
            .find_map(|field| field.strip_prefix("Max Memory Used: "))
            .unwrap_or_else(|| panic!("no Max Memory Used in {report}"));
        used.trim_end_matches(" MB")
            .parse()
            .expect("a number of MB")
    };
    assert!(megabytes(&reports[0]) > 0, "{reports:?}");
    assert!(reports[0].contains("\tInit Duration: "), "{reports:?}");
    assert!(
        !reports[1].contains("Init Duration"),
        "only the process's first invocation: {reports:?}"
    );
    assert_eq!(lines_once(&adapter, "START RequestId: ", 2).await.len(), 2);
}

#[tokio::test]
async fn json_format_gives_lambdas_platform_records_and_one_line_schema() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "1", "--platform-logs"])
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .start();
    adapter.wait_ready().await;
    assert_eq!(adapter.invoke("fixture", &json!({})).await.status, 200);
    let report = lines_once(&adapter, r#""type":"platform."#, 2)
        .await
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| record["type"] == "platform.report")
        .expect("a platform.report record");
    let record = &report["record"];
    assert_eq!(record["status"], "success", "{report}");
    assert!(
        record["metrics"]["durationMs"].as_f64().is_some(),
        "{report}"
    );
    assert!(
        record["metrics"]["maxMemoryUsedMB"].as_u64() > Some(0),
        "{report}"
    );
    assert!(
        record["metrics"]["initDurationMs"].as_f64().is_some(),
        "{report}"
    );
    let request_id = record["requestId"].as_str().expect("a request id");
    assert!(
        adapter
            .log()
            .lines()
            .any(|line| line.contains("platform.start") && line.contains(request_id)),
        "a platform.start for {request_id}"
    );
    // The adapter's own lines: flat JSON, as the functions' (`shared::logging`).
    let ready = adapter
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "function ready; starting the event source")
        .expect("the adapter's own line, flat");
    assert!(
        ready["timestamp"].is_string() && ready["level"] == "INFO",
        "{ready}"
    );
}

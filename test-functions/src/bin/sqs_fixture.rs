//! `sqs_fixture`: an SQS-event function for the adapter's SQS source tests, whose behaviour each
//! record's body chooses. It replies with `batchItemFailures` like a real partial-batch handler.
//!
//! Body fields (a body that is not a JSON object is processed as `{}`):
//! - `"fail": true`: the record is listed in `batchItemFailures`;
//! - `"sleep_ms": N`: sleep N ms while processing the record;
//! - `"await_concurrency": N` (with optional `"timeout_ms"`, default 10000): wait until N
//!   invocations are running at once, per the log file, or the timeout passes;
//! - `"action"`: `error` (the handler returns `Err`), `panic`, `exit` (`exit(3)`), `hang`;
//! - `"reply"`: returned verbatim instead of the batch response (the first one found).
//!
//! With `SQS_FIXTURE_LOG` set, lines are appended to that file (one `write` each, `O_APPEND`, so
//! lines of concurrent processes never interleave): `start <request id>` and `end <request id>`
//! around each invocation, `trace <request id> <Lambda-Runtime-Trace-Id>` after `start`, and
//! `record <message id> <ApproximateReceiveCount>` per record.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run_concurrent(service_fn(handle)).await
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (event, context) = event.into_parts();
    let request_id = context.request_id;
    log(&format!("start {request_id}"));
    log(&format!(
        "trace {request_id} {}",
        context.xray_trace_id.unwrap_or_default()
    ));
    let result = process(&event).await;
    log(&format!("end {request_id}"));
    result
}

async fn process(event: &Value) -> Result<Value, Error> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut failures = Vec::new();
    let mut reply = None;
    for record in &records {
        let id = record
            .get("messageId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let receives = record
            .pointer("/attributes/ApproximateReceiveCount")
            .and_then(Value::as_str)
            .unwrap_or("?");
        log(&format!("record {id} {receives}"));
        let body: Value = record
            .get("body")
            .and_then(Value::as_str)
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_else(|| json!({}));
        if let Some(n) = body.get("await_concurrency").and_then(Value::as_u64) {
            let timeout = body
                .get("timeout_ms")
                .and_then(Value::as_u64)
                .unwrap_or(10_000);
            await_concurrency(n, Duration::from_millis(timeout)).await;
        }
        if let Some(ms) = body.get("sleep_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        match body.get("action").and_then(Value::as_str) {
            Some("error") => return Err(format!("sqs_fixture error on purpose ({id})").into()),
            Some("panic") => panic!("sqs_fixture panic on purpose ({id})"),
            Some("exit") => std::process::exit(3),
            Some("hang") => std::future::pending::<()>().await,
            _ => {}
        }
        if body.get("fail").and_then(Value::as_bool) == Some(true) {
            failures.push(json!({ "itemIdentifier": id }));
        }
        if reply.is_none() {
            reply = body.get("reply").cloned();
        }
    }
    Ok(reply.unwrap_or_else(|| json!({ "batchItemFailures": failures })))
}

/// Invocations running now, per the log: starts minus ends.
fn running() -> i64 {
    let Ok(path) = std::env::var("SQS_FIXTURE_LOG") else {
        return 0;
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            if l.starts_with("start ") {
                1
            } else if l.starts_with("end ") {
                -1
            } else {
                0
            }
        })
        .sum()
}

async fn await_concurrency(n: u64, timeout: Duration) {
    let until = Instant::now() + timeout;
    while running() < i64::try_from(n).unwrap_or(i64::MAX) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn log(line: &str) {
    let Ok(path) = std::env::var("SQS_FIXTURE_LOG") else {
        return;
    };
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}

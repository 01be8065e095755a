//! `fixture`: a plain `lambda_runtime` function whose behaviour the event chooses, for the adapter's
//! Runtime API conformance tests.
//!
//! Event fields: `"action"` is one of `ok` (the default), `error` (the handler returns `Err`),
//! `panic`, `exit` (`std::process::exit(3)`), `hang` (never replies) and `wedge` (replies, then
//! never asks for another invocation: a process that stopped polling); `"sleep_ms"` sleeps first;
//! `"log_lines"` first writes that many numbered 99-byte lines to stdout (`fixture line N ...`);
//! `"reply"` is returned verbatim instead of the usual description. The description carries the
//! process id, the request id, the deadline, start and end times (ms since the epoch) and the
//! `AWS_LAMBDA_*` environment, so tests can tell processes and overlapping invocations apart.
//!
//! Hosted behind `adapter http`, the instructions come from the request body (an API Gateway event
//! whose `body` is the JSON above).
//!
//! `FIXTURE_INIT=fail` reports an init error to `/runtime/init/error` and exits 1;
//! `FIXTURE_INIT=exit` exits 3 before ever calling `/next`; `FIXTURE_INIT_WAIT_FILE=path` waits
//! for that file to exist before starting the runtime (so tests control when it is ready).

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    match std::env::var("FIXTURE_INIT").as_deref() {
        Ok("fail") => {
            report_init_error("fixture init failed on purpose")?;
            std::process::exit(1);
        }
        Ok("exit") => std::process::exit(3),
        _ => {}
    }
    if let Ok(path) = std::env::var("FIXTURE_INIT_WAIT_FILE") {
        while !std::path::Path::new(&path).exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    lambda_runtime::run_concurrent(service_fn(handle)).await
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (event, context) = event.into_parts();
    let payload = instructions(&event);
    let started_ms = now_ms();
    if let Some(lines) = payload.get("log_lines").and_then(Value::as_u64) {
        // Blocking writes on purpose: a function that logs a lot waits on its pipe.
        let mut out = std::io::stdout().lock();
        for n in 0..lines {
            writeln!(out, "fixture line {n:>10} {}", "x".repeat(74))?;
        }
        out.flush()?;
    }
    if let Some(ms) = payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match payload
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("ok")
    {
        "error" => return Err("fixture error on purpose".into()),
        "panic" => panic!("fixture panic on purpose"),
        "exit" => std::process::exit(3),
        "hang" => std::future::pending::<()>().await,
        "wedge" => {
            // The reply goes out by hand, and the handler never returns to the runtime's loop.
            let path = format!("invocation/{}/response", context.request_id);
            post_to_runtime_api(&path, &[], &json!({"wedged": true}).to_string())?;
            std::future::pending::<()>().await
        }
        _ => {}
    }
    if let Some(reply) = payload.get("reply") {
        return Ok(reply.clone());
    }
    let env: serde_json::Map<String, Value> = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_LAMBDA_"))
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Ok(json!({
        "pid": std::process::id(),
        "request_id": context.request_id,
        "deadline_ms": context.deadline,
        "function_arn": context.invoked_function_arn,
        "trace_id": context.xray_trace_id,
        "started_ms": started_ms,
        "finished_ms": now_ms(),
        "env": env,
        "event": event,
    }))
}

/// The event itself, or for an HTTP event the JSON in its body.
fn instructions(event: &Value) -> Value {
    event
        .get("body")
        .and_then(Value::as_str)
        .and_then(|body| serde_json::from_str(body).ok())
        .unwrap_or_else(|| event.clone())
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// Posts to `/runtime/init/error` by hand: `lambda_runtime` has no public call for it.
fn report_init_error(message: &str) -> Result<(), Error> {
    let body = json!({"errorType": "Fixture.InitError", "errorMessage": message}).to_string();
    let headers = [("Lambda-Runtime-Function-Error-Type", "Fixture.InitError")];
    post_to_runtime_api("init/error", &headers, &body)
}

/// Posts `body` to `/2018-06-01/runtime/{path}` on a connection of its own.
fn post_to_runtime_api(path: &str, headers: &[(&str, &str)], body: &str) -> Result<(), Error> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")?;
    let mut stream = std::net::TcpStream::connect(&api)?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "POST /2018-06-01/runtime/{path} HTTP/1.1\r\nHost: {api}\r\n{extra}\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(())
}

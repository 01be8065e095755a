//! Response streaming through `adapter http`, with a real `lambda_http` streaming function
//! (`streamer`): bytes reach the client while the function still runs, the prelude sets status,
//! headers and cookies, and a stream that fails (error trailers, timeout, size limit) breaks the
//! transfer off instead of ending it cleanly.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::{Spawn, WAIT, post_json, wait_log};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Sends `plan` to the streamer and returns the response as soon as its head arrives.
async fn open(url: &str, plan: &Value) -> http::Response<Incoming> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(plan.to_string())))
        .expect("request");
    tokio::time::timeout(WAIT, client.request(request))
        .await
        .expect("head in time")
        .expect("head")
}

/// Reads the body until it holds at least `want` bytes.
async fn read_at_least(body: &mut Incoming, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < want {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("a frame in time")
            .expect("the body goes on")
            .expect("a good frame");
        if let Ok(data) = frame.into_data() {
            got.extend_from_slice(&data);
        }
    }
    got
}

/// Reads the body to its end: `Ok(rest)` if it ended cleanly, `Err` if the transfer broke off.
async fn read_rest(body: Incoming) -> Result<Bytes, String> {
    tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("the body ends in time")
        .map(|collected| collected.to_bytes())
        .map_err(|error| error.to_string())
}

/// A path, not yet existing, that the function waits for.
fn gate() -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "stream-gate-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn open_gate(path: &PathBuf) {
    std::fs::write(path, b"go").expect("gate file");
}

#[tokio::test]
async fn first_bytes_arrive_while_the_function_still_runs() {
    let mut adapter = Spawn::http("streamer").start();
    adapter.wait_ready().await;
    let gate = gate();
    let plan = json!({
        "status": 201,
        "headers": {"x-streamed": "yes", "content-type": "text/plain"},
        "cookies": ["a=1; Path=/", "b=2"],
        "chunks": ["first ", "second"],
        "wait_file": gate,
    });
    let response = open(&adapter.http_url("/stream"), &plan).await;
    assert_eq!(response.status(), 201);
    let headers = response.headers();
    assert_eq!(headers["x-streamed"], "yes");
    assert_eq!(headers["content-type"], "text/plain");
    let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2"]);

    let mut body = response.into_body();
    let first = read_at_least(&mut body, 6).await;
    assert_eq!(first, b"first ");
    // The function cannot have finished: it waits for the gate, which only opens now.
    open_gate(&gate);
    let rest = read_rest(body).await.expect("a clean end");
    assert_eq!(rest, "second");
}

#[tokio::test]
async fn an_error_mid_stream_breaks_the_transfer_off() {
    let mut adapter = Spawn::http("streamer").start();
    adapter.wait_ready().await;
    let gate = gate();
    let plan = json!({"chunks": ["first ", "second"], "wait_file": gate, "end": "error"});
    let response = open(&adapter.http_url("/"), &plan).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    assert_eq!(read_at_least(&mut body, 6).await, b"first ");
    open_gate(&gate);
    let rest = read_rest(body).await;
    assert!(
        rest.is_err(),
        "a failed stream must not end cleanly: {rest:?}"
    );
    wait_log(&adapter, "Streamer.Failed").await;
}

#[tokio::test]
async fn a_timeout_mid_stream_breaks_the_transfer_off() {
    let mut adapter = Spawn::http("streamer").args(&["--timeout", "2"]).start();
    adapter.wait_ready().await;
    let plan = json!({"chunks": ["first "], "end": "hang"});
    let response = open(&adapter.http_url("/"), &plan).await;
    let mut body = response.into_body();
    assert_eq!(read_at_least(&mut body, 6).await, b"first ");
    let rest = read_rest(body).await;
    assert!(
        rest.is_err(),
        "a timed-out stream must not end cleanly: {rest:?}"
    );
    wait_log(&adapter, "Sandbox.Timedout").await;

    // The next request is served: the timed-out process was replaced.
    let reply = post_json(&adapter.http_url("/"), &json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "hello world");
}

#[tokio::test]
async fn a_timeout_before_the_prelude_is_a_504() {
    let mut adapter = Spawn::http("streamer").args(&["--timeout", "1"]).start();
    adapter.wait_ready().await;
    let reply = post_json(&adapter.http_url("/"), &json!({"sleep_ms": 5_000})).await;
    assert_eq!(reply.status, 504, "{reply:?}");
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_leaves_the_function_to_finish() {
    let mut adapter = Spawn::http("streamer")
        .args(&["--max-concurrency", "1"])
        .start();
    adapter.wait_ready().await;
    let gate = gate();
    // 8 MiB after the gate: far more than the chunks in flight and the sockets' buffers hold,
    // so a function nobody drained would block and hold the one process.
    let plan = json!({"chunks": ["first "], "fill_bytes": 8 << 20, "wait_file": gate});
    let response = open(&adapter.http_url("/"), &plan).await;
    let mut body = response.into_body();
    assert_eq!(read_at_least(&mut body, 6).await, b"first ");
    drop(body);
    open_gate(&gate);
    // The one process finishes the abandoned stream (read and dropped), then serves the next.
    let reply = post_json(&adapter.http_url("/"), &json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "hello world");
    assert!(
        !adapter.log().contains("streamed invocation failed"),
        "{}",
        adapter.log()
    );
}

#[tokio::test]
async fn a_stream_that_keeps_writing_outlives_the_idle_timeout() {
    let mut adapter = Spawn::http("streamer")
        .args(&["--idle-timeout", "1"])
        .start();
    adapter.wait_ready().await;
    // 25 chunks 100 ms apart: 2.5 s of streaming, never 1 s without a write.
    let plan = json!({"chunks": vec!["x"; 25], "interval_ms": 100});
    let response = open(&adapter.http_url("/"), &plan).await;
    let body = read_rest(response.into_body()).await.expect("a clean end");
    assert_eq!(body, "x".repeat(25));
}

#[tokio::test]
async fn a_stream_past_lambdas_limit_is_cut_off() {
    let mut adapter = Spawn::http("streamer").start();
    adapter.wait_ready().await;
    // Lambda streams at most 200 MiB; one byte more fails the invocation.
    let plan = json!({"chunks": [], "fill_bytes": 200 * 1024 * 1024 + 1});
    let response = open(&adapter.http_url("/"), &plan).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0_usize;
    let broke = loop {
        match tokio::time::timeout(WAIT, body.frame()).await {
            Ok(Some(Ok(frame))) => received += frame.into_data().map_or(0, |d| d.len()),
            Ok(Some(Err(_))) => break true,
            Ok(None) => break false,
            Err(_) => panic!("the stream stalled after {received} bytes"),
        }
    };
    assert!(broke, "the stream ended cleanly after {received} bytes");
    assert!(
        received <= 200 * 1024 * 1024,
        "{received} bytes passed the limit"
    );
    wait_log(&adapter, "Function.ResponseSizeTooLarge").await;
}

#[tokio::test]
async fn buffered_mode_sends_the_whole_reply_at_once() {
    let mut adapter = Spawn::http("streamer")
        .args(&["--invoke-mode", "BUFFERED"])
        .start();
    adapter.wait_ready().await;
    let plan = json!({
        "status": 202,
        "headers": {"x-streamed": "no"},
        "chunks": ["one ", "two"],
    });
    let reply = post_json(&adapter.http_url("/"), &plan).await;
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.header("x-streamed"), Some("no"));
    assert_eq!(reply.header("content-length"), Some("7"));
    assert_eq!(reply.body, "one two");

    // Buffered, an error in the trailers still fails the invocation.
    let failing = json!({"chunks": ["one "], "end": "error"});
    let reply = post_json(&adapter.http_url("/"), &failing).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    wait_log(&adapter, "Streamer.Failed").await;
}

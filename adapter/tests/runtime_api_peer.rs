//! The Runtime API serves its function process only: any other local process (here, the test) is
//! refused before any HTTP, and counted; `--runtime-api-open` turns the check off.

mod common;

use std::time::Duration;

use common::{Adapter, Spawn, wait_log};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a refused connection may take to be closed.
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

const REFUSED: &str = "adapter_runtime_api_refused_connections_total";

/// The function's `AWS_LAMBDA_RUNTIME_API`, which the fixture reports in its reply.
async fn runtime_api_of(adapter: &Adapter) -> String {
    let reply = adapter.invoke("fixture", &json!({"action": "ok"})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()["env"]["AWS_LAMBDA_RUNTIME_API"]
        .as_str()
        .expect("the fixture reports AWS_LAMBDA_RUNTIME_API")
        .to_owned()
}

/// Sends `request` on `stream` and reads until the server closes it (or resets it). `None` if it
/// is still open after `within`.
async fn exchange(mut stream: TcpStream, request: &str, within: Duration) -> Option<Vec<u8>> {
    // The kernel accepts before the adapter looks: the write may succeed or find it closed.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut read = Vec::new();
    let until_closed = async {
        let mut buf = [0; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            read.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(within, until_closed).await.ok()?;
    Some(read)
}

#[tokio::test]
async fn another_process_cannot_poll_next() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "1"])
        .start();
    adapter.wait_ready().await;
    let api = runtime_api_of(&adapter).await;

    // Without the check this long-polls for the next client request (a stolen invocation).
    let next = format!("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {api}\r\n\r\n");
    let stream = TcpStream::connect(&api).await.expect("connects");
    let ours = stream.local_addr().expect("local address");
    let read = exchange(stream, &next, CLOSED_WITHIN).await;
    assert_eq!(
        read.as_deref().map(String::from_utf8_lossy),
        Some("".into()),
        "the Runtime API must close a stranger's connection without a word (None: still open)"
    );

    // The function itself is still served.
    let reply = adapter.invoke("fixture", &json!({"action": "ok"})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-amz-function-error"), None);

    adapter.wait_metric(REFUSED, |n| n >= 1.0).await;
    wait_log(&adapter, "refused a Runtime API connection").await;
    // The warning names the peer.
    assert!(
        adapter.log().contains(&format!("\"peer\":\"{ours}\"")),
        "{}",
        adapter.log()
    );
}

#[tokio::test]
async fn runtime_api_open_serves_anyone() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "1", "--runtime-api-open"])
        .start();
    adapter.wait_ready().await;
    let api = runtime_api_of(&adapter).await;

    // A reply for an invocation nobody holds: answered at once when the API is open.
    let forged = format!(
        "POST /2018-06-01/runtime/invocation/forged/response HTTP/1.1\r\nHost: {api}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let stream = TcpStream::connect(&api).await.expect("connects");
    let read = exchange(stream, &forged, CLOSED_WITHIN)
        .await
        .expect("the open Runtime API answers and closes");
    let read = String::from_utf8_lossy(&read);
    assert!(read.starts_with("HTTP/1.1 "), "{read}");
    assert_eq!(adapter.metrics().await.get(REFUSED), Some(&0.0));
}

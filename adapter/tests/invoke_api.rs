//! The Lambda Invoke API: invocation types, versions and errors as Lambda answers them.

mod common;

use bytes::Bytes;
use common::{Spawn, send};
use http_body_util::Full;
use serde_json::json;

fn invoke_request(url: &str, invocation_type: &str, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .header("x-amz-invocation-type", invocation_type)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

#[tokio::test]
async fn invocation_types_and_errors() {
    let mut adapter = Spawn::http("fixture").start();
    adapter.wait_ready().await;
    let url = adapter.invoke_url("fixture");

    let reply = send(invoke_request(&url, "RequestResponse", r#"{"n":1}"#))
        .await
        .expect("answer");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-amz-executed-version"), Some("$LATEST"));
    assert_eq!(reply.json()["event"], json!({"n": 1}));

    // By ARN and with the $LATEST qualifier too.
    let arn_url = adapter.invoke_url("arn:aws:lambda:us-east-1:000000000000:function:fixture");
    let reply = send(invoke_request(
        &format!("{arn_url}?Qualifier=$LATEST"),
        "RequestResponse",
        "{}",
    ))
    .await
    .expect("answer");
    assert_eq!(reply.status, 200);

    let reply = send(invoke_request(&url, "DryRun", "{}"))
        .await
        .expect("answer");
    assert_eq!(reply.status, 204);

    let reply = send(invoke_request(&url, "Event", r#"{"sleep_ms": 10}"#))
        .await
        .expect("answer");
    assert_eq!(reply.status, 202);
    assert!(reply.body.is_empty());
    // The asynchronous invocation runs in the background: three successes in all.
    adapter
        .wait_metric("adapter_invocations_total{outcome=\"success\"}", |v| {
            v >= 3.0
        })
        .await;

    let reply = send(invoke_request(
        &adapter.invoke_url("nope"),
        "RequestResponse",
        "{}",
    ))
    .await
    .expect("answer");
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.header("x-amzn-errortype"),
        Some("ResourceNotFoundException")
    );
    assert_eq!(reply.json()["Type"], "User");

    let reply = send(invoke_request(&url, "RequestResponse", "not json"))
        .await
        .expect("answer");
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.header("x-amzn-errortype"),
        Some("InvalidRequestContentException")
    );

    let reply = send(invoke_request(&url, "Sometimes", "{}"))
        .await
        .expect("answer");
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn event_invocations_are_bounded_in_size_and_number() {
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-queued-events", "2", "--timeout", "5"])
        .start();
    adapter.wait_ready().await;
    let url = adapter.invoke_url("fixture");

    let over = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1024 * 1024));
    let reply = send(invoke_request(&url, "Event", &over))
        .await
        .expect("answer");
    assert_eq!(reply.status, 413);
    assert_eq!(
        reply.header("x-amzn-errortype"),
        Some("RequestTooLargeException")
    );
    // The same payload is fine synchronously (6 MB).
    let reply = send(invoke_request(&url, "RequestResponse", &over))
        .await
        .expect("answer");
    assert_eq!(reply.status, 200);

    // Two hanging events fill the queue; a third is refused at once, as Lambda throttles.
    for _ in 0..2 {
        let reply = send(invoke_request(&url, "Event", r#"{"action":"hang"}"#))
            .await
            .expect("answer");
        assert_eq!(reply.status, 202);
    }
    let reply = send(invoke_request(&url, "Event", "{}"))
        .await
        .expect("answer");
    assert_eq!(reply.status, 429);
    assert_eq!(
        reply.header("x-amzn-errortype"),
        Some("TooManyRequestsException")
    );
}

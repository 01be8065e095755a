//! `adapter http` round trips through real `lambda_http` (`echo`) and `lambda_runtime` (`fixture`)
//! functions.

mod common;

use bytes::Bytes;
use common::{Reply, Spawn, post_json, send};
use http_body_util::Full;
use serde_json::json;

fn request(method: &str, url: &str) -> http::request::Builder {
    http::Request::builder().method(method).uri(url)
}

async fn call(builder: http::request::Builder, body: impl Into<Bytes>) -> Reply {
    send(builder.body(Full::new(body.into())).expect("request"))
        .await
        .expect("answer")
}

#[tokio::test]
async fn request_and_response_round_trip() {
    let mut adapter = Spawn::http("echo").start();
    adapter.wait_ready().await;
    let builder = request(
        "POST",
        &adapter.http_url("/a/b%20c?x=1&x=2&y=hello%20world"),
    )
    .header("content-type", "text/plain")
    .header("x-custom", "one")
    .header("x-custom", "two")
    .header("cookie", "a=1; b=2")
    .header("x-echo-status", "201")
    .header("x-echo-header", "x-reply=yes")
    .header("x-echo-set-cookie", "s=1; Path=/")
    .header("x-echo-set-cookie", "t=2");
    let reply = call(builder, "hello").await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.header("x-reply"), Some("yes"));
    let cookies: Vec<_> = reply.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["s=1; Path=/", "t=2"]);
    assert!(reply.header("apigw-requestid").is_some());

    let seen = reply.json();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/a/b%20c");
    assert_eq!(seen["raw_query"], "x=1&x=2&y=hello%20world");
    assert_eq!(seen["query"]["x"], json!(["1", "2"]));
    assert_eq!(seen["query"]["y"], json!(["hello world"]));
    assert_eq!(seen["cookies"], json!(["a=1", "b=2"]));
    assert_eq!(seen["headers"]["x-custom"], json!(["one,two"]));
    assert_eq!(seen["body"], "hello");
    assert_eq!(seen["binary"], false);
    assert_eq!(seen["request_id"].as_str(), reply.header("apigw-requestid"));
}

#[tokio::test]
async fn binary_bodies_round_trip_byte_for_byte() {
    let mut adapter = Spawn::http("echo").start();
    adapter.wait_ready().await;
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let builder = request("PUT", &adapter.http_url("/blob"))
        .header("content-type", "application/octet-stream")
        .header("x-echo-raw", "1");
    let reply = call(builder, body.clone()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(reply.body.as_ref(), body.as_slice());
}

#[tokio::test]
async fn five_mib_passes_and_over_the_limit_is_413() {
    let mut adapter = Spawn::http("echo").start();
    adapter.wait_ready().await;
    let big = vec![b'a'; 5 * 1024 * 1024];
    let builder = request("POST", &adapter.http_url("/big"))
        .header("content-type", "text/plain")
        .header("x-echo-raw", "1");
    let reply = call(builder, big.clone()).await;
    assert_eq!(reply.status, 200, "{}", adapter.log());
    assert_eq!(reply.body.len(), big.len());
    assert!(reply.body.iter().all(|b| *b == b'a'));

    let too_big = vec![b'a'; 6 * 1024 * 1024 + 1];
    let builder = request("POST", &adapter.http_url("/big")).header("content-type", "text/plain");
    let reply = call(builder, too_big).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json(), json!({"message": "Request Entity Too Large"}));
}

#[tokio::test]
async fn function_url_replies_errors_and_timeouts() {
    let mut adapter = Spawn::http("fixture").args(&["--timeout", "2"]).start();
    adapter.wait_ready().await;
    let url = adapter.http_url("/");

    // A reply without statusCode is a 200 JSON body, as with function URLs.
    let reply = post_json(&url, &json!({"reply": {"hello": "world"}})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"hello": "world"}));

    // A structured reply with multiValueHeaders and a base64 body.
    let structured = json!({"statusCode": 202, "multiValueHeaders": {"x-m": ["1", "2"]},
        "body": "AAEC", "isBase64Encoded": true});
    let reply = post_json(&url, &json!({ "reply": structured })).await;
    assert_eq!(reply.status, 202);
    assert_eq!(reply.headers.get_all("x-m").iter().count(), 2);
    assert_eq!(reply.body.as_ref(), [0u8, 1, 2]);

    let reply = post_json(&url, &json!({"reply": {"statusCode": "nope"}})).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json(), json!({"message": "Internal Server Error"}));

    let reply = post_json(&url, &json!({"action": "error"})).await;
    assert_eq!(reply.status, 502);

    let reply = post_json(&url, &json!({"action": "hang"})).await;
    assert_eq!(reply.status, 504);
    assert_eq!(
        reply.json(),
        json!({"message": "Endpoint request timed out"})
    );
}

#[tokio::test]
async fn a_host_no_url_can_hold_is_400_and_never_reaches_the_function() {
    // lambda_http unwraps its parse of `{proto}://{host}{path}`: `x.1` would panic the function.
    let mut adapter = Spawn::http("echo").start();
    adapter.wait_ready().await;
    for (host, proto) in [("x.1", "https"), ("api.example.com", "ht tp")] {
        let builder = request("GET", &adapter.http_url("/echo"))
            .header("host", host)
            .header("x-forwarded-proto", proto);
        let reply = call(builder, "").await;
        assert_eq!(reply.status, 400, "{host} {proto}: {reply:?}");
        assert_eq!(reply.json(), json!({"message": "Bad Request"}));
    }
    let reply = call(request("GET", &adapter.http_url("/echo")), "").await;
    assert_eq!(reply.status, 200, "{}", adapter.log());
    assert!(!adapter.log().contains("panicked"), "{}", adapter.log());
}

#[tokio::test]
async fn source_ip_comes_from_x_forwarded_for_only_when_trusted() {
    for (trusted, expected) in [(false, "127.0.0.1"), (true, "203.0.113.9")] {
        let flags: &[&str] = if trusted {
            &["--trust-forwarded-for"]
        } else {
            &[]
        };
        let mut adapter = Spawn::http("echo").args(flags).start();
        adapter.wait_ready().await;
        let builder = request("GET", &adapter.http_url("/echo"))
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
            .header("x-echo-source-ip", "1");
        let reply = call(builder, "").await;
        assert_eq!(reply.status, 200, "{}", adapter.log());
        assert_eq!(reply.json()["source_ip"], expected, "trusted: {trusted}");
    }
}

#[tokio::test]
async fn requests_wait_for_a_process_that_restarts_instead_of_failing() {
    // One process: while it restarts after a crash, no process is up at all.
    let mut adapter = Spawn::http("fixture")
        .args(&["--max-concurrency", "1", "--timeout", "20"])
        .start();
    adapter.wait_ready().await;
    let url = adapter.http_url("/");
    for _ in 0..3 {
        let crashed = post_json(&url, &json!({"action": "exit"})).await;
        assert_eq!(crashed.status, 502);
        let healthy = post_json(&url, &json!({"reply": {"ok": true}})).await;
        assert_eq!(healthy.status, 200, "{}", adapter.log());
        assert_eq!(healthy.json(), json!({"ok": true}));
    }
}

//! The enqueue handler against a real LocalStack queue: what it accepts lands on the queue exactly
//! once, what it rejects leaves the queue untouched, and a queue it cannot reach is a 503.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::collections::HashSet;

use aws_sdk_sqs::config::{Credentials, Region};
use enqueue::{App, TaskQueue};
use lambda_http::{Body, Response};
use serde_json::{Value, json};
use shared::{QueueConfig, TaskMessage};
use test_support::TestQueue;

const EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/events");

fn event(file: &str) -> Value {
    let text = std::fs::read_to_string(format!("{EVENTS}/{file}")).expect("event file");
    serde_json::from_str(&text).expect("event JSON")
}

/// An HTTP API (payload 2.0) event for `method path` with these headers and body.
fn http_api(method: &str, path: &str, content_type: Option<&str>, body: Option<&str>) -> Value {
    let mut e = event("post-task.http-api.json");
    e["rawPath"] = json!(path);
    e["requestContext"]["http"]["method"] = json!(method);
    e["requestContext"]["http"]["path"] = json!(path);
    match content_type {
        Some(ct) => e["headers"]["content-type"] = json!(ct),
        None => {
            e["headers"].as_object_mut().unwrap().remove("content-type");
        }
    }
    e["body"] = body.map_or(Value::Null, |b| json!(b));
    e
}

async fn call(app: &App, event: &Value) -> (u16, Value, Response<Body>) {
    let request = lambda_http::request::from_str(&event.to_string()).expect("a valid event");
    let response = app.handle(request).await;
    let body: Value = serde_json::from_slice(response.body().as_ref()).expect("a JSON body");
    (response.status().as_u16(), body, response)
}

async fn app_for(queue: &TestQueue) -> App {
    let config = QueueConfig {
        queue_url: queue.url.clone(),
    };
    App::new(TaskQueue::new(queue.client.clone(), config))
}

#[tokio::test]
async fn each_accepted_request_puts_one_well_formed_message() {
    let queue = TestQueue::create("enqueue-accept", 30, 3).await;
    let app = app_for(&queue).await;
    let mut accepted = HashSet::new();
    // The same handler under a function URL / HTTP API, a REST API with a stage, and an ALB.
    for file in [
        "post-task.http-api.json",
        "post-task.rest-api.json",
        "post-task.alb.json",
    ] {
        let (status, body, response) = call(&app, &event(file)).await;
        assert_eq!(status, 202, "{file}: {body}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(body["status"], "queued", "{file}");
        assert_eq!(body["duration_seconds"], 2.0, "{file}");
        assert!(body["message_id"].as_str().is_some_and(|id| !id.is_empty()));
        let task_id = body["task_id"].as_str().expect("task_id").to_string();
        assert!(accepted.insert(task_id), "task ids are unique");
    }
    let fractional = http_api(
        "POST",
        "/tasks",
        Some("application/json"),
        Some(r#"{"duration_seconds": 1.5, "delay_seconds": 0}"#),
    );
    let (status, body, _) = call(&app, &fractional).await;
    assert_eq!(status, 202, "{body}");
    accepted.insert(body["task_id"].as_str().unwrap().to_string());

    let mut seen = HashSet::new();
    while seen.len() < accepted.len() {
        let messages = queue.receive(&queue.url, 10, 2).await;
        assert!(
            !messages.is_empty(),
            "only {} of {} messages arrived",
            seen.len(),
            accepted.len()
        );
        for m in messages {
            let task = TaskMessage::parse(m.body().unwrap()).expect("a valid task message");
            assert!(
                seen.insert(task.task_id.to_string()),
                "duplicate message for {}",
                task.task_id
            );
        }
    }
    assert_eq!(seen, accepted);
    assert!(
        queue.receive(&queue.url, 10, 1).await.is_empty(),
        "no extra message"
    );
    queue.delete().await;
}

#[tokio::test]
async fn rejected_requests_enqueue_nothing() {
    let queue = TestQueue::create("enqueue-reject", 30, 3).await;
    let app = app_for(&queue).await;
    let big = format!(
        r#"{{"duration_seconds": 1, "pad": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let json = Some("application/json");
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            http_api("POST", "/nope", json, Some("{}")),
            404,
            "not_found",
        ),
        (
            http_api("GET", "/tasks", None, None),
            405,
            "method_not_allowed",
        ),
        (
            http_api("DELETE", "/health", None, None),
            405,
            "method_not_allowed",
        ),
        (
            http_api(
                "POST",
                "/tasks",
                Some("text/plain"),
                Some(r#"{"duration_seconds": 1}"#),
            ),
            415,
            "unsupported_media_type",
        ),
        (
            http_api("POST", "/tasks", json, Some(&big)),
            413,
            "payload_too_large",
        ),
        (
            http_api("POST", "/tasks", json, Some("{nope")),
            400,
            "malformed_json",
        ),
        (
            http_api("POST", "/tasks", json, None),
            400,
            "malformed_json",
        ),
        (
            http_api("POST", "/tasks", json, Some("{}")),
            422,
            "missing_field",
        ),
        (
            http_api("POST", "/tasks", json, Some(r#"{"duration_seconds": 0.5}"#)),
            422,
            "out_of_range",
        ),
        (
            http_api("POST", "/tasks", json, Some(r#"{"duration_seconds": "5"}"#)),
            422,
            "invalid_type",
        ),
        (
            http_api(
                "POST",
                "/tasks",
                json,
                Some(r#"{"duration_seconds": 5, "x": 1}"#),
            ),
            422,
            "unknown_field",
        ),
        (
            http_api(
                "POST",
                "/tasks",
                json,
                Some(r#"{"duration_seconds": 5, "delay_seconds": 901}"#),
            ),
            422,
            "out_of_range",
        ),
    ];
    for (event, status, code) in &cases {
        let (got, body, response) = call(&app, event).await;
        assert_eq!(got, *status, "{body}");
        assert_eq!(body["error"]["code"], *code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        if *status == 405 {
            assert!(
                response.headers().contains_key("allow"),
                "405 carries Allow"
            );
        }
    }
    assert_eq!(
        queue.count(&queue.url).await,
        0,
        "a rejected request enqueues nothing"
    );
    assert!(queue.receive(&queue.url, 10, 1).await.is_empty());
    queue.delete().await;
}

#[tokio::test]
async fn health_reports_queue_name_and_depth() {
    let queue = TestQueue::create("enqueue-health", 30, 3).await;
    let app = app_for(&queue).await;
    for _ in 0..2 {
        queue.send("{}").await;
    }
    let (status, body, _) = call(&app, &event("health.http-api.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["queue"], queue.url.rsplit('/').next().unwrap());
    assert_eq!(body["approximate_depth"], 2);
    queue.delete().await;
}

#[tokio::test]
async fn unreachable_queue_is_503_with_retry_after() {
    // A real client pointed at a port nothing listens on: the connection is refused.
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version_latest()
        .endpoint_url("http://127.0.0.1:9")
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    let queue = QueueConfig {
        queue_url: "http://127.0.0.1:9/queue/us-east-1/000000000000/tasks".into(),
    };
    let app = App::new(TaskQueue::new(
        aws_sdk_sqs::Client::from_conf(config),
        queue,
    ));
    let post = http_api(
        "POST",
        "/tasks",
        Some("application/json"),
        Some(r#"{"duration_seconds": 1}"#),
    );
    for event in [post, event("health.http-api.json")] {
        let (status, body, response) = call(&app, &event).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "queue_unavailable");
        assert!(response.headers().contains_key("retry-after"));
        // A short reason for the client; the full SDK error chain is in the function's log.
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("failed"), "{message}");
    }
}

//! The `enqueue` function: the task service's HTTP API, as a `lambda_http` handler.
//!
//! - `POST /tasks` with `{"duration_seconds": N, "delay_seconds": D?}` queues a sleep task and
//!   answers `202` with its id;
//! - `GET /health` answers `200` with the queue's name and approximate depth, `503` when SQS
//!   cannot be reached.
//!
//! Routing comes first (404, then 405 with `Allow`), then the body checks of [`validate`]. Every
//! error is `{"error": {"code", "message"}}`; no input makes the handler panic or answer 500.
//! The same handler serves API Gateway HTTP API / function URL (payload 2.0), REST API (v1) and
//! ALB events: `lambda_http` turns each into one `http::Request`.

pub mod error;
pub mod queue;
pub mod validate;

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use shared::TaskMessage;

pub use error::ApiError;
pub use queue::TaskQueue;

/// The API: routing and handlers over a [`TaskQueue`] built once at init.
#[derive(Debug, Clone)]
pub struct App {
    queue: TaskQueue,
}

impl App {
    /// An app that sends to `queue`.
    pub fn new(queue: TaskQueue) -> Self {
        Self { queue }
    }

    /// Handles one request. Never fails: every error is a response.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        match self.route(&request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::info!(status = error.status().as_u16(), code = error.code(), error = %error, "request rejected");
                error.into_response()
            }
        }
    }

    async fn route(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let path = request_path(request);
        let method = request.method();
        match path.trim_end_matches('/') {
            "/tasks" if method == Method::POST => self.create_task(request).await,
            "/tasks" => Err(not_allowed(method, &path, "POST")),
            "/health" if method == Method::GET || method == Method::HEAD => self.health().await,
            "/health" => Err(not_allowed(method, &path, "GET, HEAD")),
            _ => Err(ApiError::NotFound { path }),
        }
    }

    async fn create_task(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let task = validate::task_request(request.headers(), request.body().as_ref())?;
        let message = TaskMessage::sleep(task.duration);
        let trace_id = request
            .lambda_context_ref()
            .and_then(|context| context.xray_trace_id.as_deref());
        let message_id = self
            .queue
            .send(&message, task.delay_seconds, trace_id)
            .await?;
        tracing::info!(
            task_id = %message.task_id,
            trace_id,
            message_id,
            duration_seconds = task.duration.seconds(),
            delay_seconds = task.delay_seconds,
            "task queued"
        );
        Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({
                "task_id": message.task_id,
                "status": "queued",
                "duration_seconds": task.duration.seconds(),
                "message_id": message_id,
            }),
        ))
    }

    async fn health(&self) -> Result<Response<Body>, ApiError> {
        let depth = self.queue.depth().await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({"status": "ok", "queue": self.queue.name(), "approximate_depth": depth}),
        ))
    }
}

/// The path without an API Gateway stage prefix: `lambda_http` keeps the raw path for that.
fn request_path(request: &Request) -> String {
    let raw = request.raw_http_path();
    if raw.is_empty() {
        request.uri().path().to_string()
    } else {
        raw.to_string()
    }
}

fn not_allowed(method: &Method, path: &str, allow: &'static str) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: path.to_string(),
        allow,
    }
}

/// A JSON response with the given status.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

//! The Lambda Runtime API (`2018-06-01`), served on loopback to one function process.
//!
//! Matches what `lambda_runtime` sends and expects: `/next` long-polls and answers the event with
//! the `Lambda-Runtime-*` headers; replies and errors are acknowledged with 202, as Lambda does.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::json;

use crate::host::process::{KillReason, Slot};
use crate::host::queue::WorkQueue;
use crate::invocation::{InvocationResponse, InvokeError};

/// Largest reply accepted from a function (Lambda's own limit is 6 MB buffered, 20 MB streamed).
pub(crate) const MAX_REPLY_BYTES: usize = 20 * 1024 * 1024;

const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
const DEADLINE_MS: &str = "lambda-runtime-deadline-ms";
const FUNCTION_ARN: &str = "lambda-runtime-invoked-function-arn";
const TRACE_ID: &str = "lambda-runtime-trace-id";
const FUNCTION_ERROR_TYPE: &str = "lambda-runtime-function-error-type";

/// What the handlers of one slot's Runtime API share.
#[derive(Clone)]
pub(crate) struct RuntimeApi {
    pub(crate) slot: Arc<Slot>,
    pub(crate) queue: Arc<WorkQueue>,
    pub(crate) function_arn: Arc<str>,
}

/// The routes of the Runtime API.
pub(crate) fn router(api: RuntimeApi) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api)
}

async fn next_invocation(State(api): State<RuntimeApi>) -> Response {
    let Some(incarnation) = api.slot.current() else {
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "NoProcess", "no live process");
    };
    if incarnation.mark_initialised() {
        tracing::info!(process = api.slot.index, "function process initialised");
        api.queue.process_up();
    }
    let job = tokio::select! {
        job = api.queue.next() => job,
        () = incarnation.retired().cancelled() => {
            return api_error(StatusCode::GONE, "ProcessRetired", "this process takes no more work");
        }
    };
    let invocation = &job.invocation;
    let deadline_ms = deadline_ms(SystemTime::now(), invocation.timeout);
    let mut headers = HeaderMap::new();
    let Ok(request_id) = HeaderValue::from_str(&invocation.request_id) else {
        tracing::error!(request_id = %invocation.request_id, "request id is not a valid header value");
        job.complete(Err(InvokeError::ExitError {
            detail: "the request id is not a valid header value".to_owned(),
        }));
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "InvalidRequestId", "retry");
    };
    headers.insert(REQUEST_ID, request_id);
    headers.insert(DEADLINE_MS, HeaderValue::from(deadline_ms));
    if let Ok(arn) = HeaderValue::from_str(&api.function_arn) {
        headers.insert(FUNCTION_ARN, arn);
    }
    if let Some(trace) = invocation.trace_id.as_deref() {
        if let Ok(trace) = HeaderValue::from_str(trace) {
            headers.insert(TRACE_ID, trace);
        }
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let payload = invocation.payload.clone();
    let request_id = invocation.request_id.clone();
    if let Err(job) = incarnation.start(job) {
        // The process started dying after it asked: someone else gets the job.
        api.queue.requeue(job);
        return api_error(StatusCode::GONE, "ProcessRetired", "this process takes no more work");
    }
    tracing::debug!(process = api.slot.index, %request_id, "invocation handed to function");
    (StatusCode::OK, headers, payload).into_response()
}

async fn invocation_response(
    State(api): State<RuntimeApi>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(status) => {
            fail_invocation(
                &api,
                &request_id,
                "Function.ResponseSizeTooLarge",
                "Response payload size exceeded maximum allowed payload size",
            );
            return api_error(status, "RequestEntityTooLarge", "reply too large");
        }
    };
    let reply = if is_streaming(&headers) {
        crate::streaming_reply::to_buffered(&headers, &body)
    } else {
        Ok(body)
    };
    let result = match reply {
        Ok(body) => InvocationResponse::Success(body),
        Err(message) => InvocationResponse::FunctionError {
            error_type: "Runtime.InvalidStreamingResponse".to_owned(),
            payload: error_payload("Runtime.InvalidStreamingResponse", &message),
        },
    };
    complete(&api, &request_id, result)
}

async fn invocation_error(
    State(api): State<RuntimeApi>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let payload = read_body(body).await.unwrap_or_else(|_| {
        error_payload("Function.ErrorTooLarge", "the error body was too large")
    });
    let error_type = error_type_of(&payload, &headers);
    complete(
        &api,
        &request_id,
        InvocationResponse::FunctionError {
            error_type,
            payload,
        },
    )
}

async fn init_error(State(api): State<RuntimeApi>, headers: HeaderMap, body: Body) -> Response {
    let payload = read_body(body).await.unwrap_or_default();
    let error_type = error_type_of(&payload, &headers);
    let message = serde_json::from_slice::<serde_json::Value>(&payload)
        .ok()
        .and_then(|v| v.get("errorMessage").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&payload).into_owned());
    let failure = format!("function reported an init error: {error_type}: {message}");
    tracing::error!(process = api.slot.index, "{failure}");
    api.slot.record_failure(failure);
    if let Some(incarnation) = api.slot.current() {
        // Lambda ends a sandbox whose init failed; so does the adapter (and then starts another).
        incarnation.request_kill(KillReason::InitError);
    }
    accepted()
}

fn complete(api: &RuntimeApi, request_id: &str, result: InvocationResponse) -> Response {
    let job = api
        .slot
        .current()
        .and_then(|incarnation| incarnation.finish(request_id));
    match job {
        Some(job) => {
            job.complete(Ok(result));
            accepted()
        }
        // Timed out already, or never handed to this process: Lambda answers such replies so too.
        None => api_error(
            StatusCode::GONE,
            "InvalidRequestID",
            "the invocation is not in flight on this process (timed out or unknown)",
        ),
    }
}

fn fail_invocation(api: &RuntimeApi, request_id: &str, error_type: &str, message: &str) {
    if let Some(job) = api.slot.current().and_then(|i| i.finish(request_id)) {
        job.complete(Ok(InvocationResponse::FunctionError {
            error_type: error_type.to_owned(),
            payload: error_payload(error_type, message),
        }));
    }
}

async fn read_body(body: Body) -> Result<Bytes, StatusCode> {
    match Limited::new(body, MAX_REPLY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(StatusCode::PAYLOAD_TOO_LARGE),
    }
}

fn is_streaming(headers: &HeaderMap) -> bool {
    headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"streaming"))
}

/// The error type: the body's `errorType` (what callers see in Lambda), else the header.
fn error_type_of(payload: &[u8], headers: &HeaderMap) -> String {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("errorType").and_then(|t| t.as_str()).map(str::to_owned))
        .or_else(|| {
            headers
                .get(FUNCTION_ERROR_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "Unhandled".to_owned())
}

/// A Lambda-style error body.
pub(crate) fn error_payload(error_type: &str, message: &str) -> Bytes {
    Bytes::from(json!({"errorType": error_type, "errorMessage": message}).to_string())
}

fn deadline_ms(now: SystemTime, timeout: Duration) -> u64 {
    let deadline = (now + timeout).duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"errorType": error_type, "errorMessage": message})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_now_plus_timeout_in_epoch_millis() {
        let now = UNIX_EPOCH + Duration::from_millis(1_000);
        assert_eq!(deadline_ms(now, Duration::from_secs(3)), 4_000);
    }

    #[test]
    fn error_type_prefers_the_body() {
        let mut headers = HeaderMap::new();
        headers.insert(FUNCTION_ERROR_TYPE, HeaderValue::from_static("unhandled"));
        let body = br#"{"errorType":"MyError","errorMessage":"boom"}"#;
        assert_eq!(error_type_of(body, &headers), "MyError");
        assert_eq!(error_type_of(b"not json", &headers), "unhandled");
        assert_eq!(error_type_of(b"", &HeaderMap::new()), "Unhandled");
    }
}

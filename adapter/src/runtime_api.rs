//! The Lambda Runtime API (`2018-06-01`), served on loopback to one function process.
//!
//! Matches what `lambda_runtime` sends and expects: `/next` long-polls and answers the event with
//! the `Lambda-Runtime-*` headers; replies and errors are acknowledged with 202, as Lambda does.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use crate::host::process::{KillReason, Slot};
use crate::host::queue::WorkQueue;
use crate::host::quick_ack::QuickAckSwitch;
use crate::invocation::{InvocationResponse, InvokeError};
use crate::response_stream::StreamWriter;

/// Largest reply accepted from a function to buffer (Lambda's own limit is 6 MB buffered).
pub(crate) const MAX_REPLY_BYTES: usize = 20 * 1024 * 1024;

/// Largest reply streamed through to a source: Lambda's limit for a streamed response (200 MB).
/// Lambda also caps the rate past the first 6 MB (2 MB/s); the adapter does not: on ECS there is
/// no such cap to prepare for, and a slower stream would only slow users down.
pub(crate) const MAX_STREAMED_BYTES: usize = 200 * 1024 * 1024;

const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
const DEADLINE_MS: &str = "lambda-runtime-deadline-ms";
const FUNCTION_ARN: &str = "lambda-runtime-invoked-function-arn";
const TRACE_ID: &str = "lambda-runtime-trace-id";
const FUNCTION_ERROR_TYPE: &str = "lambda-runtime-function-error-type";
const FUNCTION_ERROR_BODY: &str = "lambda-runtime-function-error-body";

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
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "NoProcess",
            "no live process",
        );
    };
    if incarnation.mark_initialised(|| api.queue.process_up()) {
        crate::platform_log::record_init(incarnation.age());
        tracing::info!(process = api.slot.index, "function process initialised");
    }
    incarnation.asked_next();
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
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InvalidRequestId",
            "retry",
        );
    };
    headers.insert(REQUEST_ID, request_id);
    headers.insert(DEADLINE_MS, HeaderValue::from(deadline_ms));
    if let Ok(arn) = HeaderValue::from_str(&api.function_arn) {
        headers.insert(FUNCTION_ARN, arn);
    }
    if let Some(Ok(trace)) = invocation.trace_id.as_deref().map(HeaderValue::from_str) {
        headers.insert(TRACE_ID, trace);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let payload = invocation.payload.clone();
    let request_id = invocation.request_id.clone();
    if let Err(job) = incarnation.start(job) {
        // The process started dying after it asked: someone else gets the job.
        api.queue.requeue(*job);
        return api_error(
            StatusCode::GONE,
            "ProcessRetired",
            "this process takes no more work",
        );
    }
    tracing::debug!(process = api.slot.index, %request_id, "invocation handed to function");
    (StatusCode::OK, headers, payload).into_response()
}

async fn invocation_response(
    State(api): State<RuntimeApi>,
    Path(request_id): Path<String>,
    request: Request,
) -> Response {
    // Whole, not as `HeaderMap` and `Extensions` extractors: those clone, on every reply.
    let (parts, body) = request.into_parts();
    let (headers, extensions) = (parts.headers, parts.extensions);
    let streaming = is_streaming(&headers);
    let content_type = headers.get(header::CONTENT_TYPE);
    if streaming {
        let writer = api
            .slot
            .current()
            .and_then(|incarnation| incarnation.open_stream(&request_id, content_type.cloned()));
        if let Some(writer) = writer {
            let _quick_ack = extensions
                .get::<ConnectInfo<QuickAckSwitch>>()
                .map(|ConnectInfo(switch)| switch.on());
            return forward_stream(&api, &request_id, body, writer).await;
        }
    }
    let (body, trailers) = match read_reply(body).await {
        Ok(reply) => reply,
        Err(StatusCode::PAYLOAD_TOO_LARGE) => {
            fail_invocation(
                &api,
                &request_id,
                false,
                "Function.ResponseSizeTooLarge",
                "Response payload size exceeded maximum allowed payload size",
            );
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "reply too large",
            );
        }
        Err(status) => {
            fail_invocation(
                &api,
                &request_id,
                false,
                "Runtime.StreamError",
                "the function's reply broke off",
            );
            return api_error(status, "StreamError", "the reply broke off");
        }
    };
    // A streamed reply buffered (no source streams it) still fails by its trailers.
    if let Some((error_type, payload)) = trailers.as_ref().and_then(trailer_error) {
        let result = InvocationResponse::FunctionError {
            error_type,
            payload,
        };
        return complete(&api, &request_id, false, result);
    }
    let reply = if streaming {
        crate::response_stream::to_buffered(content_type, &body)
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
    complete(&api, &request_id, false, result)
}

/// Passes a streamed reply on chunk by chunk as the function writes it, then completes the
/// invocation: with the function's error if its trailers name one. A consumer that goes away (the
/// client hung up) does not stop the function, as on Lambda: the rest is read and dropped.
async fn forward_stream(
    api: &RuntimeApi,
    request_id: &str,
    mut body: Body,
    writer: StreamWriter,
) -> Response {
    let mut sent = 0_usize;
    let mut consumer = Some(writer);
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // The function's connection broke mid-reply: it aborted, or its process died (then
            // the host fails the invocation too, whichever comes first).
            fail_invocation(
                api,
                request_id,
                true,
                "Runtime.StreamError",
                "the function's response stream broke off",
            );
            return api_error(
                StatusCode::BAD_REQUEST,
                "StreamError",
                "the stream broke off",
            );
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        sent += data.len();
        if sent > MAX_STREAMED_BYTES {
            fail_invocation(
                api,
                request_id,
                true,
                "Function.ResponseSizeTooLarge",
                "Response payload size exceeded maximum allowed payload size",
            );
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "reply too large",
            );
        }
        if let Some(writer) = &consumer
            && !writer.send(data).await
        {
            consumer = None;
        }
    }
    drop(consumer);
    let result = match trailers.as_ref().and_then(trailer_error) {
        Some((error_type, payload)) => InvocationResponse::FunctionError {
            error_type,
            payload,
        },
        None => InvocationResponse::Success(Bytes::new()),
    };
    complete(api, request_id, true, result)
}

/// The error a streamed reply's trailers report: `Lambda-Runtime-Function-Error-Type` and the
/// base64 `Lambda-Runtime-Function-Error-Body`.
fn trailer_error(trailers: &HeaderMap) -> Option<(String, Bytes)> {
    let error_type = match trailers.get(FUNCTION_ERROR_TYPE) {
        Some(error_type) => String::from_utf8_lossy(error_type.as_bytes()).into_owned(),
        // An error body without its type is still an error.
        None if trailers.contains_key(FUNCTION_ERROR_BODY) => "Runtime.StreamError".to_owned(),
        None => return None,
    };
    let payload = trailers
        .get(FUNCTION_ERROR_BODY)
        .and_then(|body| STANDARD.decode(body.as_bytes()).ok())
        .map_or_else(
            || error_payload(&error_type, "error reported mid-stream"),
            Bytes::from,
        );
    Some((error_type, payload))
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
        false,
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
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&payload).into_owned());
    let failure = format!("function reported an init error: {error_type}: {message}");
    tracing::error!(process = api.slot.index, "{failure}");
    api.slot.record_failure(failure.clone());
    if let Some(incarnation) = api.slot.current() {
        incarnation.set_init_error(failure);
        // Lambda ends a sandbox whose init failed; so does the adapter (and then starts another).
        incarnation.request_kill(KillReason::InitError);
    }
    accepted()
}

/// Completes the job with `result`; `streamed`: the result ends the job's reply stream.
fn complete(
    api: &RuntimeApi,
    request_id: &str,
    streamed: bool,
    result: InvocationResponse,
) -> Response {
    let job = api
        .slot
        .current()
        .and_then(|incarnation| incarnation.replied(request_id, streamed));
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

fn fail_invocation(
    api: &RuntimeApi,
    request_id: &str,
    streamed: bool,
    error_type: &str,
    message: &str,
) {
    if let Some(job) = api
        .slot
        .current()
        .and_then(|i| i.replied(request_id, streamed))
    {
        job.complete(Ok(InvocationResponse::FunctionError {
            error_type: error_type.to_owned(),
            payload: error_payload(error_type, message),
        }));
    }
}

async fn read_body(body: Body) -> Result<Bytes, StatusCode> {
    read_reply(body).await.map(|(body, _)| body)
}

/// A whole reply and its trailers; 413 past [`MAX_REPLY_BYTES`], 400 if the connection broke.
async fn read_reply(body: Body) -> Result<(Bytes, Option<HeaderMap>), StatusCode> {
    match Limited::new(body, MAX_REPLY_BYTES).collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            Ok((collected.to_bytes(), trailers))
        }
        Err(error) if error.is::<LengthLimitError>() => Err(StatusCode::PAYLOAD_TOO_LARGE),
        Err(_) => Err(StatusCode::BAD_REQUEST),
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
        .and_then(|v| {
            v.get("errorType")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
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
    let deadline = (now + timeout)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)
}

fn accepted() -> Response {
    // Built per reply from a static body: no JSON value to build and serialize each time.
    (
        StatusCode::ACCEPTED,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"OK"}"#,
    )
        .into_response()
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
    use crate::host::metrics::HostMetrics;
    use crate::host::process::Incarnation;
    use crate::host::queue::{Job, Reply};
    use crate::invocation::Invocation;
    use tokio::sync::{Semaphore, oneshot};
    use tower::ServiceExt as _;

    struct Fixture {
        router: Router,
        queue: Arc<WorkQueue>,
        metrics: Arc<HostMetrics>,
        permits: Arc<Semaphore>,
    }

    fn fixture() -> Fixture {
        let metrics = Arc::new(HostMetrics::new(&mut Default::default()));
        let queue = Arc::new(WorkQueue::new(metrics.clone()));
        let slot = Arc::new(Slot::new(0, ([127, 0, 0, 1], 1).into()));
        slot.set_current(Some(Incarnation::new()));
        let router = router(RuntimeApi {
            slot,
            queue: queue.clone(),
            function_arn: "arn:aws:lambda:us-east-1:0:function:f".into(),
        });
        Fixture {
            router,
            queue,
            metrics,
            permits: Arc::new(Semaphore::new(8)),
        }
    }

    impl Fixture {
        async fn submit(&self, payload: &'static str) -> (String, oneshot::Receiver<Reply>) {
            let permit = self.permits.clone().acquire_owned().await.expect("permit");
            let invocation = Invocation::new(payload, Duration::from_secs(30));
            let id = invocation.request_id.clone();
            let (job, reply) = Job::new(invocation, permit, self.metrics.clone());
            self.queue.submit(job);
            (id, reply)
        }

        async fn call(&self, method: &str, uri: &str, body: &'static str) -> Response {
            let request = http::Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::from(body))
                .expect("request");
            self.router
                .clone()
                .oneshot(request)
                .await
                .expect("infallible")
        }
    }

    async fn body_text(response: Response) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn next_response_and_error_round_trip() {
        let f = fixture();
        // Nobody has called /next yet: no process would take work, so it comes back untaken.
        let (_, refused) = f.submit("{}").await;
        assert!(matches!(refused.await, Ok(Reply::NotTaken(_))));

        // The first /next marks the process up; it long-polls until a job arrives.
        let next = tokio::spawn({
            let router = f.router.clone();
            async move {
                let request = http::Request::get("/2018-06-01/runtime/invocation/next")
                    .body(Body::empty())
                    .expect("request");
                router.oneshot(request).await.expect("infallible")
            }
        });
        let mut ready = f.queue.ready_processes();
        ready.wait_for(|n| *n == 1).await.expect("process up");
        let (id, reply) = f.submit(r#"{"k":1}"#).await;
        let event = next.await.expect("task");
        assert_eq!(event.status(), StatusCode::OK);
        assert_eq!(event.headers()[REQUEST_ID], id.as_str());
        assert_eq!(
            event.headers()[FUNCTION_ARN],
            "arn:aws:lambda:us-east-1:0:function:f"
        );
        assert!(
            event.headers()[DEADLINE_MS]
                .to_str()
                .is_ok_and(|d| d.parse::<u64>().is_ok())
        );
        assert_eq!(body_text(event).await, r#"{"k":1}"#);

        let uri = format!("/2018-06-01/runtime/invocation/{id}/response");
        let ack = f.call("POST", &uri, r#""done""#).await;
        assert_eq!(ack.status(), StatusCode::ACCEPTED);
        match reply.await {
            Ok(Reply::Done(Ok(InvocationResponse::Success(body)))) => {
                assert_eq!(body, Bytes::from_static(b"\"done\""));
            }
            other => panic!("unexpected {other:?}"),
        }
        // A second reply for the same invocation is refused.
        assert_eq!(f.call("POST", &uri, "{}").await.status(), StatusCode::GONE);

        // An error reply.
        let (id, reply) = f.submit("{}").await;
        let event = f
            .call("GET", "/2018-06-01/runtime/invocation/next", "")
            .await;
        assert_eq!(event.headers()[REQUEST_ID], id.as_str());
        let uri = format!("/2018-06-01/runtime/invocation/{id}/error");
        let body = r#"{"errorType":"Boom","errorMessage":"bad"}"#;
        assert_eq!(
            f.call("POST", &uri, body).await.status(),
            StatusCode::ACCEPTED
        );
        match reply.await {
            Ok(Reply::Done(Ok(InvocationResponse::FunctionError {
                error_type,
                payload,
            }))) => {
                assert_eq!(error_type, "Boom");
                assert_eq!(payload, Bytes::from_static(body.as_bytes()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

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

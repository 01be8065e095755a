//! A Lambda-compatible Invoke API (`POST /2015-03-31/functions/{name}/invocations`), so tests,
//! `aws lambda invoke --endpoint-url` and the AWS SDK can call the hosted function directly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::invocation::{Invocation, InvocationResponse, Invoke, InvokeError};
use crate::trace_header;

/// Lambda's limit on a synchronous request payload.
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Lambda's limit on an asynchronous (`Event`) payload: 1 MB since AWS raised it from 256 KB.
const MAX_EVENT_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Settings of the Invoke API.
#[derive(Debug, Clone)]
pub struct InvokeApiConfig {
    /// The only function this API knows.
    pub function_name: String,
    /// Its ARN, for error messages.
    pub function_arn: String,
    /// The function timeout given to each invocation.
    pub timeout: Duration,
    /// `Event` invocations accepted and not yet finished, at most; more get 429. Each holds its
    /// payload (up to 1 MB) in memory until it runs, so this bounds the memory they take.
    pub max_queued_events: usize,
    /// Whether a caller may choose the request id (`Lambda-Runtime-Aws-Request-Id`): only in
    /// `emulate`, whose one caller runs one invocation at a time. Where sources share the host, a
    /// repeated id would collide with another source's invocation.
    pub caller_request_ids: bool,
}

struct InvokeApi<S> {
    invoker: S,
    config: InvokeApiConfig,
    background: TaskTracker,
    queued_events: Arc<Semaphore>,
}

/// Serves the Invoke API until `shutdown` fires. `background` tracks `Event` (asynchronous)
/// invocations, so shutdown can wait for them.
pub async fn serve<S>(
    listener: TcpListener,
    invoker: S,
    config: InvokeApiConfig,
    background: TaskTracker,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    S: Invoke + Sync,
{
    let api = Arc::new(InvokeApi {
        invoker,
        queued_events: Arc::new(Semaphore::new(config.max_queued_events)),
        config,
        background,
    });
    let router = Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(invoke::<S>),
        )
        .with_state(api);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn invoke<S>(
    State(api): State<Arc<InvokeApi<S>>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response
where
    S: Invoke + Sync,
{
    let qualifier = query.get("Qualifier").map(String::as_str);
    if !names_function(&name, qualifier, &api.config.function_name) {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
        );
    }
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    let payload = match Limited::new(body, MAX_PAYLOAD_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return aws_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
            );
        }
    };
    // Lambda passes an empty payload as `{}` and refuses what is not JSON.
    let payload = if payload.is_empty() {
        Bytes::from_static(b"{}")
    } else if serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        );
    } else {
        payload
    };
    let chosen = if api.config.caller_request_ids {
        caller_request_id(&headers)
    } else {
        Ok(None)
    };
    let caller_chose_id = matches!(chosen, Ok(Some(_)));
    let mut invocation = match chosen {
        Ok(Some(id)) => Invocation::with_request_id(id, payload, api.config.timeout),
        Ok(None) => Invocation::new(payload, api.config.timeout),
        Err(message) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                message,
            );
        }
    };
    // A new root, if one is needed, from the request id's random bits when it is our own v4 UUID
    // (no second `getrandom`), else fresh ones: a caller who chose the id would choose the root.
    let random = match uuid::Uuid::parse_str(&invocation.request_id) {
        Ok(id) if !caller_chose_id => id.as_u128(),
        _ => uuid::Uuid::new_v4().as_u128(),
    };
    invocation.trace_id = Some(trace_header::for_request(
        headers.get("x-amzn-trace-id").and_then(|v| v.to_str().ok()),
        random,
    ));
    let request_id = invocation.request_id.clone();
    let mut response = match invocation_type {
        "RequestResponse" => request_response(&api.invoker, invocation).await,
        "Event" if invocation.payload.len() > MAX_EVENT_PAYLOAD_BYTES => aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            "Request must be smaller than 1048576 bytes for an asynchronous (Event) invocation",
        ),
        "Event" => {
            let Ok(permit) = api.queued_events.clone().try_acquire_owned() else {
                return aws_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    &format!(
                        "Rate Exceeded: {} asynchronous invocations are already waiting or running",
                        api.config.max_queued_events
                    ),
                );
            };
            let invoker = api.invoker.clone();
            api.background.spawn(async move {
                let _permit = permit;
                let request_id = invocation.request_id.clone();
                match invoker.oneshot(invocation).await {
                    Ok(InvocationResponse::Success(_)) => {
                        tracing::debug!(%request_id, "asynchronous invocation succeeded");
                    }
                    Ok(InvocationResponse::FunctionError { error_type, .. }) => {
                        tracing::warn!(%request_id, %error_type, "asynchronous invocation failed");
                    }
                    Err(error) => {
                        tracing::warn!(%request_id, %error, "asynchronous invocation failed");
                    }
                }
            });
            StatusCode::ACCEPTED.into_response()
        }
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        other => aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("Unsupported invocation type {other:?}: use RequestResponse, Event or DryRun"),
        ),
    };
    let success = response.status().is_success();
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    if success {
        headers.insert(
            "x-amz-executed-version",
            HeaderValue::from_static("$LATEST"),
        );
    }
    response
}

async fn request_response<S>(invoker: &S, invocation: Invocation) -> Response
where
    S: Invoke,
{
    match invoker.clone().oneshot(invocation).await {
        Ok(InvocationResponse::Success(body)) => json_body(StatusCode::OK, body),
        Ok(InvocationResponse::FunctionError { payload, .. }) => unhandled(payload),
        // Lambda reports a timeout or a crashed runtime as an unhandled function error.
        Err(error @ (InvokeError::Timeout { .. } | InvokeError::ExitError { .. })) => {
            let payload =
                json!({"errorType": error.error_type(), "errorMessage": error.to_string()});
            unhandled(Bytes::from(payload.to_string()))
        }
        Err(error @ (InvokeError::NotReady | InvokeError::ShuttingDown)) => aws_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceException",
            &error.to_string(),
        ),
    }
}

fn unhandled(payload: Bytes) -> Response {
    let mut response = json_body(StatusCode::OK, payload);
    response.headers_mut().insert(
        "x-amz-function-error",
        HeaderValue::from_static("Unhandled"),
    );
    response
}

fn json_body(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

/// An error as Lambda's REST-JSON protocol sends it; the SDKs read the type from the header.
fn aws_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let kind = if status.is_client_error() {
        "User"
    } else {
        "Service"
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::HeaderName::from_static("x-amzn-errortype"),
                error_type,
            ),
        ],
        json!({"Type": kind, "message": message, "__type": error_type}).to_string(),
    )
        .into_response()
}

/// The request id a caller chose with `Lambda-Runtime-Aws-Request-Id` (the LocalStack executor
/// passes LocalStack's, so the function, its logs and LocalStack agree on one id). AWS's Invoke API
/// has no such header: this is a local tool's extension, checked so it cannot break a log line.
fn caller_request_id(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let Some(value) = headers.get("lambda-runtime-aws-request-id") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(id)
            if !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(Some(id.to_owned()))
        }
        _ => Err("Lambda-Runtime-Aws-Request-Id must be 1 to 128 letters, digits, '-' or '_'"),
    }
}

/// Whether `name` (a name, a partial ARN or a full ARN, optionally qualified) names the hosted
/// function at `$LATEST`.
fn names_function(name: &str, qualifier: Option<&str>, function_name: &str) -> bool {
    let parts: Vec<&str> = name.split(':').collect();
    let (found, name_qualifier) = match parts.iter().position(|p| *p == "function") {
        // arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] or ACCOUNT:function:NAME[:Q]
        Some(i) => (parts.get(i + 1).copied(), parts.get(i + 2).copied()),
        // NAME or NAME:QUALIFIER
        None => (parts.first().copied(), parts.get(1).copied()),
    };
    let latest = |q: Option<&str>| q.is_none_or(|q| q == "$LATEST");
    found == Some(function_name) && latest(name_qualifier) && latest(qualifier)
}

#[cfg(test)]
mod tests {
    use super::names_function;

    #[test]
    fn function_names_arns_and_qualifiers() {
        let f = "enqueue";
        assert!(names_function("enqueue", None, f));
        assert!(names_function("enqueue:$LATEST", None, f));
        assert!(names_function("enqueue", Some("$LATEST"), f));
        assert!(names_function(
            "arn:aws:lambda:us-east-1:000000000000:function:enqueue",
            None,
            f
        ));
        assert!(names_function("000000000000:function:enqueue", None, f));
        assert!(!names_function("other", None, f));
        assert!(!names_function("enqueue", Some("7"), f));
        assert!(!names_function("enqueue:prod", None, f));
        assert!(!names_function(
            "arn:aws:lambda:us-east-1:1:function:sleep",
            None,
            f
        ));
    }
}

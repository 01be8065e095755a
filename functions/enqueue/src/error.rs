//! The API's errors: one type, one JSON shape, one status each.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::json;

/// Seconds a client should wait before retrying when the queue is unavailable.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// Why a request was not accepted. Every variant maps to one status and one `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No route has this path.
    #[error("no route for {path}; this API serves POST /tasks and GET /health")]
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// The path exists but not with this method.
    #[error("{method} is not allowed on {path}; allowed: {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path asked for.
        path: String,
        /// The methods the path takes, for the `Allow` header.
        allow: &'static str,
    },
    /// The body is not declared as JSON.
    #[error("Content-Type must be application/json, got {found}")]
    UnsupportedMediaType {
        /// The content type sent, or `nothing`.
        found: String,
    },
    /// The body is over the limit.
    #[error("the body is {size} bytes; the limit is {limit} bytes")]
    PayloadTooLarge {
        /// The body's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is not JSON at all.
    #[error("the body is not valid JSON: {detail}")]
    MalformedJson {
        /// The parser's words, with line and column.
        detail: String,
    },
    /// The JSON is well formed but its fields are not what the API takes.
    #[error("{message}")]
    InvalidField {
        /// `missing_field`, `unknown_field`, `invalid_type`, `out_of_range` or `invalid_body`.
        code: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// SQS could not be reached, or refused the message.
    #[error("the task queue is unavailable: {detail}; retry after {RETRY_AFTER_SECONDS} seconds")]
    QueueUnavailable {
        /// What the SDK said.
        detail: String,
    },
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MalformedJson { .. } => StatusCode::BAD_REQUEST,
            ApiError::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::QueueUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The machine-readable `code` in the error body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::MalformedJson { .. } => "malformed_json",
            ApiError::InvalidField { code, .. } => code,
            ApiError::QueueUnavailable { .. } => "queue_unavailable",
        }
    }

    /// The response: `{"error": {"code": ..., "message": ...}}` with the status and the headers
    /// the status calls for (`Allow` on 405, `Retry-After` on 503).
    pub fn into_response(self) -> Response<Body> {
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = crate::json_response(self.status(), &body);
        let headers = response.headers_mut();
        match &self {
            ApiError::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::QueueUnavailable { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
        response
    }
}

//! The HTTP server of `adapter http`: one invocation per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::connections::{GuardedListener, Peer};
use super::event::{RequestMeta, client_ip, domain_name, to_event};
use super::response::to_http_response;
use super::streamed::{StreamedReplyError, streamed_response};
use crate::cli::InvokeMode;
use crate::invocation::{Invocation, InvocationResponse, Invoke, InvokeError};
use crate::{response_stream, trace_header};

/// Settings of the HTTP source.
#[derive(Debug, Clone)]
pub struct HttpSourceConfig {
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// The function timeout given to each invocation.
    pub timeout: Duration,
    /// `requestContext.accountId`.
    pub account_id: String,
    /// `requestContext.apiId`.
    pub api_id: String,
    /// Whether `sourceIp` comes from `X-Forwarded-For` (behind a trusted proxy) or the peer.
    pub trust_forwarded_for: bool,
    /// How long a client has to send a request's body, once its head has come (then 408).
    pub body_read_timeout: Duration,
    /// Whether a streamed reply is streamed to the client or buffered.
    pub invoke_mode: InvokeMode,
}

struct HttpSource<S> {
    invoker: S,
    config: HttpSourceConfig,
}

/// Serves HTTP on `listener` until `shutdown` fires, then stops accepting and returns once the
/// requests in flight are answered.
pub async fn serve<S>(
    listener: GuardedListener,
    invoker: S,
    config: HttpSourceConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    S: Invoke + Sync,
{
    let source = Arc::new(HttpSource { invoker, config });
    let router = Router::new().fallback(handle::<S>).with_state(source);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

async fn handle<S>(
    State(source): State<Arc<HttpSource<S>>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
) -> Response
where
    S: Invoke + Sync,
{
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut response = invoke(&source, peer, request, &request_id).await;
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("apigw-requestid", id);
    }
    response
}

async fn invoke<S>(
    source: &HttpSource<S>,
    peer: SocketAddr,
    request: Request,
    request_id: &str,
) -> Response
where
    S: Invoke + Sync,
{
    let (parts, body) = request.into_parts();
    if !has_url(&parts) {
        tracing::info!(%request_id, "refused a request whose Host makes no URL");
        return error_response(StatusCode::BAD_REQUEST, "Bad Request");
    }
    let limit = source.config.max_body_bytes;
    let collected = tokio::time::timeout(
        source.config.body_read_timeout,
        Limited::new(body, limit).collect(),
    );
    let Ok(collected) = collected.await else {
        tracing::info!(%request_id, "request body not received in time");
        return error_response(StatusCode::REQUEST_TIMEOUT, "Request Timeout");
    };
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return error_response(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        }
        Err(error) => {
            tracing::info!(%error, "could not read request body");
            return error_response(StatusCode::BAD_REQUEST, "Bad Request");
        }
    };
    let meta = RequestMeta {
        request_id: request_id.to_owned(),
        source_ip: if source.config.trust_forwarded_for {
            client_ip(&parts.headers, peer.ip())
        } else {
            peer.ip()
        },
        received: chrono::Utc::now(),
        account_id: source.config.account_id.clone(),
        api_id: source.config.api_id.clone(),
    };
    let event = to_event(&parts, &body, &meta);
    let payload = match serde_json::to_vec(&event) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(%error, "could not serialize the request event");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let mut invocation =
        Invocation::with_request_id(request_id.to_owned(), payload, source.config.timeout);
    // The request id is a v4 UUID made above: its random bits make a new root, if one is needed.
    let random = uuid::Uuid::parse_str(request_id).map_or(0, |id| id.as_u128());
    invocation.trace_id = Some(trace_header::for_request(
        parts
            .headers
            .get("x-amzn-trace-id")
            .and_then(|v| v.to_str().ok()),
        random,
    ));
    let mut streamed = None;
    if source.config.invoke_mode == InvokeMode::ResponseStream {
        let (handoff, opened) = response_stream::channel();
        invocation.response_stream = Some(handoff);
        streamed = Some(opened);
    }

    let mut call = Box::pin(source.invoker.clone().oneshot(invocation));
    let result = match streamed {
        None => call.await,
        Some(opened) => tokio::select! {
            // First: a function that streamed and finished at once has both ready.
            biased;
            Ok(stream) = opened => {
                // The head goes out now; the invocation runs on until the stream ends.
                let id = request_id.to_owned();
                tokio::spawn(async move { log_stream_end(&id, call.await) });
                return match streamed_response(stream).await {
                    Ok(response) => response,
                    Err(StreamedReplyError::Failed(error)) => {
                        error_for_type(&error.error_type)
                    }
                    Err(error) => {
                        tracing::warn!(%request_id, %error, "function stream is not a valid HTTP response");
                        error_response(StatusCode::BAD_GATEWAY, "Internal Server Error")
                    }
                };
            }
            result = &mut call => result,
        },
    };
    match result {
        Ok(InvocationResponse::Success(reply)) => match to_http_response(&reply) {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%request_id, %error, "function reply is not a valid HTTP response");
                error_response(StatusCode::BAD_GATEWAY, "Internal Server Error")
            }
        },
        Ok(InvocationResponse::FunctionError { error_type, .. }) => {
            tracing::info!(%request_id, %error_type, "function returned an error");
            error_response(StatusCode::BAD_GATEWAY, "Internal Server Error")
        }
        Err(error) => {
            tracing::warn!(%request_id, %error, "invocation failed");
            error_for_type(error.error_type())
        }
    }
}

/// How a streamed invocation ended, once its stream has: a failure is logged, as the client
/// only sees its response break off.
fn log_stream_end(request_id: &str, result: Result<InvocationResponse, InvokeError>) {
    match result {
        Ok(InvocationResponse::Success(_)) => {}
        Ok(InvocationResponse::FunctionError { error_type, .. }) => {
            tracing::info!(%request_id, %error_type, "function reported an error mid-stream");
        }
        Err(error) => {
            let error_type = error.error_type();
            tracing::warn!(%request_id, %error_type, %error, "streamed invocation failed");
        }
    }
}

/// The response API Gateway gives for an invocation that failed with this Lambda error type.
fn error_for_type(error_type: &str) -> Response {
    match error_type {
        "Sandbox.Timedout" => {
            error_response(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out")
        }
        "Runtime.Unavailable" | "Runtime.ShuttingDown" => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        _ => error_response(StatusCode::BAD_GATEWAY, "Internal Server Error"),
    }
}

/// Whether the request's URL can be built the way `lambda_http` builds it from the event
/// (`{X-Forwarded-Proto or https}://{Host, else requestContext.domainName}{path}`). It unwraps
/// that parse, so a Host no URL can hold (`x.1` reads as a broken IPv4 address) would panic every
/// `lambda_http` function. Lambda's fronts never pass such a Host on; behind an ALB, or reached
/// directly, a client can send one, so the adapter answers 400 instead, before the function sees it.
fn has_url(parts: &http::request::Parts) -> bool {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let mut protos = parts.headers.get_all("x-forwarded-proto").iter();
    let (host, proto) = (hosts.next(), protos.next());
    // Repeated, the event carries them joined with commas: never part of a URL.
    if hosts.next().is_some() || protos.next().is_some() {
        return false;
    }
    let Some(host) = host else {
        // lambda_http then takes the event's domainName.
        return url_parses(proto, domain_name(parts));
    };
    // A keep-alive connection, or an ALB, sends the same pair request after request: parse each
    // new pair once per thread, not every request (the parse costs more than the rest of the check).
    let known = LAST_GOOD.with_borrow(|(p, h)| p.as_ref() == proto && h.as_ref() == Some(host));
    if known {
        return true;
    }
    let good = host.to_str().is_ok_and(|h| url_parses(proto, h));
    if good {
        LAST_GOOD.set((proto.cloned(), Some(host.clone())));
    }
    good
}

/// Whether `{proto or https}://{host}/` parses. The path cannot break the parse: hyper only passes
/// on a valid request target.
fn url_parses(proto: Option<&HeaderValue>, host: &str) -> bool {
    let scheme = match proto {
        Some(proto) => proto.to_str().ok(),
        None => Some("https"),
    };
    scheme.is_some_and(|scheme| url::Url::parse(&format!("{scheme}://{host}/")).is_ok())
}

thread_local! {
    /// The last `(X-Forwarded-Proto, Host)` this thread found good.
    static LAST_GOOD: std::cell::RefCell<(Option<HeaderValue>, Option<HeaderValue>)> =
        const { std::cell::RefCell::new((None, None)) };
}

/// An error the way API Gateway words it: `{"message": ...}`.
fn error_response(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        Body::from(json!({ "message": message }).to_string()),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::has_url;

    fn parts(host: Option<&str>, proto: Option<&str>) -> http::request::Parts {
        let mut builder = http::Request::builder().uri("/tasks");
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        if let Some(proto) = proto {
            builder = builder.header("x-forwarded-proto", proto);
        }
        builder.body(()).expect("request").into_parts().0
    }

    #[test]
    fn repeated_hosts_or_protocols_are_refused() {
        let twice = |name: &str, a: &str, b: &str| {
            let request = http::Request::builder()
                .uri("/tasks")
                .header("host", "api.example.com")
                .header(name, a)
                .header(name, b);
            has_url(&request.body(()).expect("request").into_parts().0)
        };
        assert!(!twice("host", "a.example.com", "b.example.com"));
        assert!(!twice("x-forwarded-proto", "https", "http"));
        // No Host: the request target's host stands in, as in the event's domainName.
        let absolute = http::Request::builder().uri("http://x.1/tasks");
        assert!(!has_url(
            &absolute.body(()).expect("request").into_parts().0
        ));
    }

    #[test]
    fn hosts_no_url_can_hold_are_refused() {
        assert!(has_url(&parts(None, None)));
        assert!(has_url(&parts(Some("api.example.com"), None)));
        assert!(has_url(&parts(Some("127.0.0.1:8080"), Some("http"))));
        assert!(has_url(&parts(Some("[::1]:8080"), None)));
        assert!(!has_url(&parts(Some("x.1"), None)));
        assert!(!has_url(&parts(
            Some("a.lambda-url.us-east-1.127.0.0.1:4566"),
            None
        )));
        assert!(!has_url(&parts(Some("api.example.com"), Some("ht tp"))));
        assert!(!has_url(&parts(Some("host:99999"), None)));
    }
}

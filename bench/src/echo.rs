//! The echo handler the benchmarks serve, and how to feed it without Lambda in between.
//!
//! The handler itself is `test_functions::echo::echo`, the very code the `echo` binary runs under
//! the adapter and `cargo lambda watch`: the plain-server floor (`plain-echo`), the in-process
//! baseline (`invoke-rtt --in-process`, the Criterion bench) and the hosted function all measure
//! one function.

use std::collections::HashMap;

use bytes::Bytes;
use lambda_http::{Body, Context, Request, RequestExt, Response};

pub use test_functions::echo::echo;

/// Turns a plain HTTP request into what `lambda_http` hands the handler: the body as text (UTF-8)
/// or binary, the query string parsed, and a Lambda context carrying `request_id`.
pub fn lambda_request(parts: http::request::Parts, body: Bytes, request_id: String) -> Request {
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let body = if body.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(_) => Body::Binary(body.to_vec()),
        }
    };
    let mut context = Context::default();
    context.request_id = request_id;
    Request::from_parts(parts, body)
        .with_query_string_parameters(query)
        .with_lambda_context(context)
}

/// `a=1&a=2&b` as a multi-map (no percent-decoding: the benchmarks send plain ASCII).
fn parse_query(query: &str) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(key.to_owned())
            .or_default()
            .push(value.to_owned());
    }
    map
}

/// Turns the handler's reply into plain HTTP parts and body bytes.
pub fn http_response(response: Response<Body>) -> (http::response::Parts, Bytes) {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    (parts, bytes)
}

/// The request the in-process baselines call the handler with: `GET /echo`, as the load tools send.
pub fn sample_request() -> Result<Request, http::Error> {
    let request = http::Request::builder()
        .method("GET")
        .uri("/echo")
        .header("host", "127.0.0.1")
        .header("user-agent", "bench")
        .body(())?;
    let (parts, ()) = request.into_parts();
    Ok(lambda_request(
        parts,
        Bytes::new(),
        "bench-request".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[tokio::test]
    async fn echoes_method_path_and_query() {
        let request = http::Request::builder()
            .method("POST")
            .uri("/a/b?x=1&x=2&y")
            .header("content-type", "text/plain")
            .body(())
            .expect("request");
        let (parts, ()) = request.into_parts();
        let request = lambda_request(parts, Bytes::from_static(b"hi"), "id-1".to_owned());
        let (parts, body) = http_response(echo(request).await.expect("echo"));
        assert_eq!(parts.status, 200);
        let value: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value["method"], "POST");
        assert_eq!(value["path"], "/a/b");
        assert_eq!(value["query"]["x"], json!(["1", "2"]));
        assert_eq!(value["body"], "hi");
        assert_eq!(value["request_id"], "id-1");
    }
}

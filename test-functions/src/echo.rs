//! The `echo` handler: a `lambda_http` function that describes the request it got, for the adapter's round-trip
//! tests.
//!
//! By default it answers 200 with JSON: method, path, raw query, parsed query, headers, cookies and
//! the body (as text when it is UTF-8, with its length either way). Request headers steer the reply:
//! - `x-echo-status: 418` sets the status;
//! - `x-echo-header: name=value` adds a response header;
//! - `x-echo-set-cookie: a=b` adds a `Set-Cookie`;
//!
//! (API Gateway joins repeated request headers with commas, so both split their value on commas.)
//! - `x-echo-source-ip: 1` adds `source_ip`, the event's `requestContext.http.sourceIp`;
//! - `x-echo-raw: 1` answers the request body byte for byte, with the request's content type
//!   (binary bodies travel base64-encoded both ways).

use std::collections::BTreeMap;

use lambda_http::{Body, Error, Request, RequestExt, Response};
use serde_json::{Value, json};

/// Describes the request as JSON (method, path, query, headers, cookies, body); request headers
/// steer the reply (see the module docs).
pub async fn echo(request: Request) -> Result<Response<Body>, Error> {
    let headers = request.headers();
    let status = header_text(&request, "x-echo-status")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(200);
    let mut response = Response::builder().status(status);
    for spec in header_list(&request, "x-echo-header") {
        if let Some((name, value)) = spec.split_once('=') {
            response = response.header(name.trim(), value.trim());
        }
    }
    for cookie in header_list(&request, "x-echo-set-cookie") {
        response = response.header("set-cookie", cookie.trim());
    }

    let body_bytes: &[u8] = request.body().as_ref();
    if header_text(&request, "x-echo-raw").is_some() {
        if let Some(content_type) = headers.get("content-type") {
            response = response.header("content-type", content_type.clone());
        }
        let body = match request.body() {
            Body::Text(text) => Body::Text(text.clone()),
            Body::Binary(bytes) => Body::Binary(bytes.clone()),
            _ => Body::Empty,
        };
        return Ok(response.body(body)?);
    }

    let mut header_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        header_map
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let cookies: Vec<&str> = headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let query: BTreeMap<String, Vec<String>> = request
        .query_string_parameters()
        .iter()
        .map(|(k, _)| {
            let all = request.query_string_parameters();
            let values = all
                .all(k)
                .map(|v| v.iter().map(|s| (*s).to_owned()).collect())
                .unwrap_or_default();
            (k.to_owned(), values)
        })
        .collect();
    let mut description = json!({
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "raw_query": request.uri().query(),
        "query": query,
        "headers": header_map,
        "cookies": cookies,
        "body": std::str::from_utf8(body_bytes).ok(),
        "body_length": body_bytes.len(),
        "binary": matches!(request.body(), Body::Binary(_)),
        "request_id": request.lambda_context().request_id,
    });
    // Only when asked: the benchmarks' per-request profile runs this function as it is.
    if header_text(&request, "x-echo-source-ip").is_some() {
        description["source_ip"] = source_ip(&request).into();
    }
    Ok(response
        .header("content-type", "application/json")
        .body(Body::Text(Value::to_string(&description)))?)
}

/// `requestContext.http.sourceIp` of a function URL / HTTP API event.
fn source_ip(request: &Request) -> Option<String> {
    match request.request_context_ref()? {
        lambda_http::request::RequestContext::ApiGatewayV2(context) => {
            context.http.source_ip.clone()
        }
        _ => None,
    }
}

fn header_list<'a>(request: &'a Request, name: &str) -> Vec<&'a str> {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect()
}

fn header_text<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

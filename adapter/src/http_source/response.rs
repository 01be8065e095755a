//! A function's reply as the HTTP response API Gateway (payload 2.0) or a function URL would send.
//!
//! A JSON object with `statusCode` is a structured reply: status, `headers`, `multiValueHeaders`,
//! `cookies` (each one a `Set-Cookie`), and a `body` that is base64 when `isBase64Encoded`. Any
//! other JSON is the body of a 200 `application/json` response, as function URLs do.

use std::collections::BTreeMap;

use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{CONTENT_TYPE, SET_COOKIE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;

/// Why a reply could not become an HTTP response (the caller gets 502, as from API Gateway).
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// The reply is not JSON.
    #[error("the function's reply is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The reply has a `statusCode` but the rest does not fit the format.
    #[error("the function's reply does not fit the response format: {0}")]
    Malformed(String),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct StructuredReply {
    status_code: Value,
    headers: Option<BTreeMap<String, Value>>,
    multi_value_headers: Option<BTreeMap<String, Option<Vec<Value>>>>,
    cookies: Option<Vec<String>>,
    body: Value,
    is_base64_encoded: Option<bool>,
}

/// The HTTP response for a successful invocation's reply.
pub fn to_http_response(reply: &[u8]) -> Result<Response<Body>, ReplyError> {
    let value: Value = serde_json::from_slice(reply).map_err(ReplyError::NotJson)?;
    let is_structured = value
        .as_object()
        .is_some_and(|object| object.contains_key("statusCode"));
    if !is_structured {
        let mut response = Response::new(Body::from(reply.to_vec()));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(response);
    }
    let reply: StructuredReply =
        serde_json::from_value(value).map_err(|e| ReplyError::Malformed(e.to_string()))?;
    let status = status_of(&reply.status_code)?;
    let body = match (&reply.body, reply.is_base64_encoded.unwrap_or(false)) {
        (Value::Null, _) => Vec::new(),
        (Value::String(text), true) => STANDARD
            .decode(text)
            .map_err(|e| ReplyError::Malformed(format!("body is not valid base64: {e}")))?,
        (Value::String(text), false) => text.clone().into_bytes(),
        (other, _) => other.to_string().into_bytes(),
    };

    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in reply.headers.unwrap_or_default() {
        if let Some(value) = header_text(&value) {
            headers.insert(header_name(&name)?, header_value(&name, &value)?);
        }
    }
    // `headers` wins over `multiValueHeaders` for the same name, so nothing is sent twice.
    for (name, values) in reply.multi_value_headers.unwrap_or_default() {
        let header = header_name(&name)?;
        if headers.contains_key(&header) {
            continue;
        }
        for value in values.unwrap_or_default().iter().filter_map(header_text) {
            headers.append(header.clone(), header_value(&name, &value)?);
        }
    }
    for cookie in reply.cookies.unwrap_or_default() {
        headers.append(SET_COOKIE, header_value("set-cookie", &cookie)?);
    }
    Ok(response)
}

fn status_of(value: &Value) -> Result<StatusCode, ReplyError> {
    let code = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    code.and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| ReplyError::Malformed(format!("statusCode {value} is not an HTTP status")))
}

/// Header values may be any JSON scalar; `null` means absent.
fn header_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn header_name(name: &str) -> Result<HeaderName, ReplyError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ReplyError::Malformed(format!("{name:?} is not a valid header name")))
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, ReplyError> {
    HeaderValue::from_str(value)
        .map_err(|_| ReplyError::Malformed(format!("header {name} has an invalid value")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(response: Response<Body>) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn structured_reply() {
        let reply =
            br#"{"statusCode":201,"headers":{"x-a":"1","content-type":"text/plain","x-n":5},
            "multiValueHeaders":{"x-m":["a","b"],"x-a":["ignored"]},
            "cookies":["s=1; Path=/","t=2"],"body":"created","isBase64Encoded":false}"#;
        let response = to_http_response(reply).expect("valid reply");
        assert_eq!(response.status(), StatusCode::CREATED);
        let headers = response.headers();
        assert_eq!(headers["x-a"], "1");
        assert_eq!(headers["x-n"], "5");
        assert_eq!(headers.get_all("x-a").iter().count(), 1);
        assert_eq!(
            headers.get_all("x-m").iter().collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            headers.get_all(SET_COOKIE).iter().collect::<Vec<_>>(),
            ["s=1; Path=/", "t=2"]
        );
        assert_eq!(body_of(response).await, b"created");
    }

    #[tokio::test]
    async fn base64_body_is_decoded() {
        let reply = format!(
            r#"{{"statusCode":200,"body":"{}","isBase64Encoded":true}}"#,
            STANDARD.encode([0u8, 1, 255])
        );
        let response = to_http_response(reply.as_bytes()).expect("valid reply");
        assert_eq!(body_of(response).await, [0u8, 1, 255]);
    }

    #[tokio::test]
    async fn plain_json_is_a_200_json_body() {
        let response = to_http_response(br#"{"hello":"world"}"#).expect("valid reply");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(body_of(response).await, br#"{"hello":"world"}"#);
        let response = to_http_response(b"\"just a string\"").expect("valid reply");
        assert_eq!(body_of(response).await, b"\"just a string\"");
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert!(matches!(
            to_http_response(b"not json"),
            Err(ReplyError::NotJson(_))
        ));
        for reply in [
            &br#"{"statusCode":"abc"}"#[..],
            br#"{"statusCode":99999}"#,
            br#"{"statusCode":200,"body":"***","isBase64Encoded":true}"#,
            br#"{"statusCode":200,"headers":{"bad name":"x"}}"#,
            br#"{"statusCode":200,"cookies":"not a list"}"#,
        ] {
            assert!(
                matches!(to_http_response(reply), Err(ReplyError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[tokio::test]
    async fn null_fields_are_tolerated() {
        let reply = br#"{"statusCode":204,"headers":null,"multiValueHeaders":{"x":null},"cookies":null,"body":null,"isBase64Encoded":null}"#;
        let response = to_http_response(reply).expect("valid reply");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(body_of(response).await.is_empty());
    }
}

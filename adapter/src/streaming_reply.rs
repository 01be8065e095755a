//! Streamed function replies, buffered.
//!
//! A function that streams (`Lambda-Runtime-Function-Response-Mode: streaming`) and answers an HTTP
//! integration sends a JSON prelude (status, headers, cookies), eight NUL bytes, then the body. The
//! adapter's sources work on whole replies, so the stream is turned into the buffered API Gateway v2
//! reply it stands for: the same status, headers and cookies, and the body base64-encoded.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};

const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
const DELIMITER: [u8; 8] = [0; 8];

/// The buffered equivalent of a streamed reply; other content types pass through unchanged.
pub(crate) fn to_buffered(headers: &HeaderMap, body: &Bytes) -> Result<Bytes, String> {
    let is_http = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(HTTP_INTEGRATION));
    if !is_http {
        return Ok(body.clone());
    }
    let split = body
        .windows(DELIMITER.len())
        .position(|w| w == DELIMITER)
        .ok_or("streamed HTTP reply without the prelude delimiter")?;
    let prelude: Value = serde_json::from_slice(&body[..split])
        .map_err(|e| format!("streamed HTTP reply with an unreadable prelude: {e}"))?;
    let payload = &body[split + DELIMITER.len()..];
    let reply = json!({
        "statusCode": prelude.get("statusCode").cloned().unwrap_or(json!(200)),
        "headers": prelude.get("headers").cloned().unwrap_or(json!({})),
        "cookies": prelude.get("cookies").cloned().unwrap_or(json!([])),
        "body": STANDARD.encode(payload),
        "isBase64Encoded": true,
    });
    Ok(Bytes::from(reply.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn http_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(HTTP_INTEGRATION),
        );
        headers
    }

    #[test]
    fn prelude_and_body_become_a_buffered_reply() {
        let mut body = br#"{"statusCode":201,"headers":{"x-a":"1"},"cookies":["c=1"]}"#.to_vec();
        body.extend_from_slice(&DELIMITER);
        body.extend_from_slice(b"hello");
        let reply = to_buffered(&http_headers(), &Bytes::from(body)).expect("valid stream");
        let reply: Value = serde_json::from_slice(&reply).expect("json");
        assert_eq!(reply["statusCode"], 201);
        assert_eq!(reply["headers"]["x-a"], "1");
        assert_eq!(reply["cookies"][0], "c=1");
        assert_eq!(reply["body"], STANDARD.encode("hello"));
        assert_eq!(reply["isBase64Encoded"], true);
    }

    #[test]
    fn missing_delimiter_is_an_error() {
        assert!(to_buffered(&http_headers(), &Bytes::from_static(b"{}")).is_err());
    }

    #[test]
    fn other_streams_pass_through() {
        let body = Bytes::from_static(b"raw");
        assert_eq!(to_buffered(&HeaderMap::new(), &body), Ok(body));
    }
}

//! Checks a `POST /tasks` request, in the contract's order: content type, size, JSON syntax,
//! fields. Pure functions of the request, so every rule is unit-tested without a queue.

use lambda_http::http::{HeaderMap, header};
use serde_json::{Map, Value};
use shared::TaskDuration;

use crate::error::ApiError;

/// The largest body `POST /tasks` takes, enforced here so the limit holds wherever the function
/// runs (Lambda allows 6 MB, the adapter its own `--max-body-bytes`).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest SQS `DelaySeconds`.
pub const MAX_DELAY_SECONDS: u32 = 900;

/// A valid request to run a task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    /// How long the task sleeps.
    pub duration: TaskDuration,
    /// How long SQS holds the message before a worker may see it.
    pub delay_seconds: u32,
}

/// Validates the headers and body of `POST /tasks`.
pub fn task_request(headers: &HeaderMap, body: &[u8]) -> Result<TaskRequest, ApiError> {
    check_content_type(headers)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            size: body.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson {
        detail: if body.iter().all(u8::is_ascii_whitespace) {
            "the body is empty; send {\"duration_seconds\": N}".to_string()
        } else {
            e.to_string()
        },
    })?;
    fields(value)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let found = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let is_json = found.as_deref().is_some_and(|ct| {
        // `application/json; charset=utf-8` is JSON too; the media type is case-insensitive.
        let media_type = ct.split(';').next().unwrap_or_default().trim();
        media_type.eq_ignore_ascii_case("application/json")
    });
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            found: found.unwrap_or_else(|| "no Content-Type header".to_string()),
        })
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        code,
        message: message.into(),
    }
}

fn fields(value: Value) -> Result<TaskRequest, ApiError> {
    let Value::Object(mut object) = value else {
        return Err(invalid(
            "invalid_body",
            format!(
                "the body must be a JSON object like {{\"duration_seconds\": 5}}, got {}",
                kind(&value)
            ),
        ));
    };
    let duration = duration(object.remove("duration_seconds"))?;
    let delay_seconds = delay(object.remove("delay_seconds"))?;
    reject_unknown(&object)?;
    Ok(TaskRequest {
        duration,
        delay_seconds,
    })
}

fn duration(value: Option<Value>) -> Result<TaskDuration, ApiError> {
    let value = value.ok_or_else(|| {
        invalid(
            "missing_field",
            "duration_seconds is required: a number of seconds from 1 to 300",
        )
    })?;
    let seconds = match &value {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
    .ok_or_else(|| {
        invalid(
            "invalid_type",
            format!(
                "duration_seconds must be a JSON number from 1 to 300, got {}",
                kind(&value)
            ),
        )
    })?;
    TaskDuration::new(seconds).map_err(|e| invalid("out_of_range", e.to_string()))
}

fn delay(value: Option<Value>) -> Result<u32, ApiError> {
    let Some(value) = value else { return Ok(0) };
    let Value::Number(n) = &value else {
        return Err(invalid(
            "invalid_type",
            format!(
                "delay_seconds must be an integer from 0 to {MAX_DELAY_SECONDS}, got {}",
                kind(&value)
            ),
        ));
    };
    // Any JSON number that is a whole number of seconds counts: `5` and `5.0` are the same delay.
    let Some(seconds) = n.as_f64() else {
        return Err(invalid(
            "out_of_range",
            format!("delay_seconds must be from 0 to {MAX_DELAY_SECONDS}, got {n}"),
        ));
    };
    if seconds.fract() != 0.0 {
        return Err(invalid(
            "invalid_type",
            format!("delay_seconds must be a whole number of seconds, got {n}"),
        ));
    }
    if (0.0..=f64::from(MAX_DELAY_SECONDS)).contains(&seconds) {
        Ok(seconds as u32)
    } else {
        Err(invalid(
            "out_of_range",
            format!("delay_seconds must be from 0 to {MAX_DELAY_SECONDS}, got {n}"),
        ))
    }
}

fn reject_unknown(rest: &Map<String, Value>) -> Result<(), ApiError> {
    match rest.keys().next() {
        None => Ok(()),
        Some(name) => Err(invalid(
            "unknown_field",
            format!(
                "unknown field {name:?}; allowed fields are duration_seconds and delay_seconds"
            ),
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;

    fn json_headers(content_type: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        headers
    }

    fn check(content_type: Option<&str>, body: &str) -> Result<TaskRequest, ApiError> {
        task_request(&json_headers(content_type), body.as_bytes())
    }

    #[test]
    fn accepts_valid_requests() {
        let ok = |ct, body: &str| check(Some(ct), body).unwrap();
        assert_eq!(
            ok("application/json", r#"{"duration_seconds": 1}"#)
                .duration
                .seconds(),
            1.0
        );
        assert_eq!(
            ok("application/json", r#"{"duration_seconds": 1.5}"#)
                .duration
                .seconds(),
            1.5
        );
        assert_eq!(
            ok(
                "Application/JSON; charset=utf-8",
                r#"{"duration_seconds": 300}"#
            )
            .delay_seconds,
            0
        );
        let delayed = ok(
            "application/json",
            r#"{"duration_seconds": 2, "delay_seconds": 900}"#,
        );
        assert_eq!(delayed.delay_seconds, 900);
        let whole_float = ok(
            "application/json",
            r#"{"duration_seconds": 2, "delay_seconds": 5.0}"#,
        );
        assert_eq!(
            whole_float.delay_seconds, 5,
            "5.0 is a whole number of seconds"
        );
        assert_eq!(
            ok(
                "application/json",
                r#"{"duration_seconds": 2, "delay_seconds": 0}"#
            )
            .delay_seconds,
            0
        );
    }

    /// Every bad input, its status and code. The closing note of the foundation issue lists these.
    #[test]
    fn rejects_bad_input_with_status_and_code() {
        let big = format!(
            r#"{{"duration_seconds": 1, "pad": "{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        let cases: &[(Option<&str>, &str, u16, &str)] = &[
            (
                None,
                r#"{"duration_seconds": 1}"#,
                415,
                "unsupported_media_type",
            ),
            (
                Some("text/plain"),
                r#"{"duration_seconds": 1}"#,
                415,
                "unsupported_media_type",
            ),
            (
                Some("application/jsonx"),
                r#"{"duration_seconds": 1}"#,
                415,
                "unsupported_media_type",
            ),
            (Some("application/json"), &big, 413, "payload_too_large"),
            (Some("application/json"), "", 400, "malformed_json"),
            (Some("application/json"), "{", 400, "malformed_json"),
            (
                Some("application/json"),
                r#"{"duration_seconds": 1,}"#,
                400,
                "malformed_json",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": 1e999}"#,
                400,
                "malformed_json",
            ),
            (
                Some("application/json"),
                "\u{feff}{}",
                400,
                "malformed_json",
            ),
            (Some("application/json"), "[]", 422, "invalid_body"),
            (Some("application/json"), "null", 422, "invalid_body"),
            (Some("application/json"), "5", 422, "invalid_body"),
            (Some("application/json"), "{}", 422, "missing_field"),
            (
                Some("application/json"),
                r#"{"delay_seconds": 1}"#,
                422,
                "missing_field",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": "5"}"#,
                422,
                "invalid_type",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": true}"#,
                422,
                "invalid_type",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": null}"#,
                422,
                "invalid_type",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": [5]}"#,
                422,
                "invalid_type",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": 0}"#,
                422,
                "out_of_range",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": 0.5}"#,
                422,
                "out_of_range",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": -1}"#,
                422,
                "out_of_range",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": 300.5}"#,
                422,
                "out_of_range",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": 1e300}"#,
                422,
                "out_of_range",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": 5, "x": 1}"#,
                422,
                "unknown_field",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": 5, "delay_seconds": -1}"#,
                422,
                "out_of_range",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": 5, "delay_seconds": 901}"#,
                422,
                "out_of_range",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": 5, "delay_seconds": 1.5}"#,
                422,
                "invalid_type",
            ),
            (
                Some("application/json"),
                r#"{"duration_seconds": 5, "delay_seconds": "1"}"#,
                422,
                "invalid_type",
            ),
        ];
        for (content_type, body, status, code) in cases {
            let err = check(*content_type, body).expect_err(body);
            let shown: String = body.chars().take(60).collect();
            assert_eq!(
                err.status().as_u16(),
                *status,
                "{content_type:?} {shown}: {err}"
            );
            assert_eq!(err.code(), *code, "{content_type:?} {shown}: {err}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn messages_say_what_is_allowed() {
        let err = check(Some("application/json"), r#"{"duration_seconds": 0.5}"#).unwrap_err();
        assert!(err.to_string().contains("from 1 to 300"), "{err}");
        let err = check(
            Some("application/json"),
            r#"{"duration_seconds": 5, "colour": 1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"colour\""), "{err}");
        assert!(
            err.to_string()
                .contains("duration_seconds and delay_seconds"),
            "{err}"
        );
    }

    #[test]
    fn size_is_checked_before_syntax() {
        let junk = "{".repeat(MAX_BODY_BYTES + 1);
        assert_eq!(
            check(Some("application/json"), &junk).unwrap_err().code(),
            "payload_too_large"
        );
    }
}

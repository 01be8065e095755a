//! What a function's reply means for each message of its batch.
//!
//! With `ReportBatchItemFailures`, Lambda reads the reply as an `SQSBatchResponse`:
//! `{"batchItemFailures": [{"itemIdentifier": "<messageId>"}]}`. Per the Lambda developer guide,
//! the batch is a complete success when the reply is empty or `null`, or `batchItemFailures` is
//! missing, `null` or empty; a complete failure when the reply is not JSON, or an item has an
//! empty, `null` or missing `itemIdentifier`, or one not in the batch. Where the guide is silent we
//! are strict (a buggy function must not delete what it did not process): any other shape fails
//! the whole batch. Unknown fields are ignored, as by Lambda; an id listed twice is one failure.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use crate::invocation::{InvocationResponse, InvokeError};

/// Why a whole batch failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchFailure {
    /// The function returned an error (`/invocation/{id}/error`).
    #[error("function error {error_type}")]
    FunctionError { error_type: String },
    /// The function produced no reply: timeout, crash, not ready, shutting down.
    #[error("invocation failed: {0} ({ty})", ty = .0.error_type())]
    Invoke(InvokeError),
    #[error("invalid batch response: {0}")]
    InvalidResponse(#[from] InvalidBatchResponse),
}

/// Why a reply is not a valid `SQSBatchResponse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBatchResponse {
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The reply, or a part of it, is JSON of the wrong shape.
    #[error("wrong shape: {0}")]
    Shape(&'static str),
    #[error("empty itemIdentifier")]
    EmptyIdentifier,
    #[error("itemIdentifier {0:?} is not a message of the batch")]
    UnknownIdentifier(String),
}

/// The function's verdict on each message of a batch: what to delete, what to leave.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Messages to delete: the function succeeded with them.
    pub succeeded: Vec<String>,
    /// Messages to leave on the queue, to become visible again and be retried.
    pub failed: Vec<String>,
    /// Why the whole batch failed, if it did (then `succeeded` is empty).
    pub batch_failure: Option<BatchFailure>,
}

impl Verdict {
    /// Settles a batch of `message_ids` given the invocation's result. Without
    /// `report_batch_item_failures` any successful reply, whatever it holds, deletes everything.
    pub fn new(
        result: &Result<InvocationResponse, InvokeError>,
        message_ids: &[&str],
        report_batch_item_failures: bool,
    ) -> Self {
        use InvocationResponse::{FunctionError, Success};
        let failed_ids = match result {
            Err(error) => Err(BatchFailure::Invoke(error.clone())),
            Ok(FunctionError { error_type, .. }) => {
                let error_type = error_type.clone();
                Err(BatchFailure::FunctionError { error_type })
            }
            Ok(Success(_)) if !report_batch_item_failures => Ok(BTreeSet::new()),
            Ok(Success(body)) => parse(body, message_ids).map_err(BatchFailure::from),
        };
        let ids = message_ids.iter().map(|id| (*id).to_owned());
        let (failed, succeeded) = match &failed_ids {
            Ok(failed_ids) => ids.partition(|id| failed_ids.contains(id.as_str())),
            Err(_) => (ids.collect(), Vec::new()),
        };
        Self {
            succeeded,
            failed,
            batch_failure: failed_ids.err(),
        }
    }
}

/// Reads an `SQSBatchResponse` strictly: the ids of the failed messages, all in `ids`.
pub fn parse<'a>(body: &[u8], ids: &[&'a str]) -> Result<BTreeSet<&'a str>, InvalidBatchResponse> {
    use InvalidBatchResponse::Shape;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(BTreeSet::new());
    }
    let reply: Value =
        serde_json::from_slice(body).map_err(|e| InvalidBatchResponse::NotJson(e.to_string()))?;
    let items = match &reply {
        Value::Null => return Ok(BTreeSet::new()),
        Value::Object(fields) => match fields.get("batchItemFailures") {
            None | Some(Value::Null) => return Ok(BTreeSet::new()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(Shape("batchItemFailures is not an array")),
        },
        _ => return Err(Shape("the reply is not a JSON object")),
    };
    let known: HashSet<&'a str> = ids.iter().copied().collect();
    let mut failed = BTreeSet::new();
    for item in items {
        let Value::Object(item) = item else {
            return Err(Shape("a batch item failure is not an object"));
        };
        let id = match item.get("itemIdentifier") {
            Some(Value::String(id)) => id,
            None | Some(Value::Null) => {
                return Err(Shape("a batch item failure has no itemIdentifier"));
            }
            Some(_) => return Err(Shape("an itemIdentifier is not a string")),
        };
        if id.is_empty() {
            return Err(InvalidBatchResponse::EmptyIdentifier);
        }
        let unknown = || InvalidBatchResponse::UnknownIdentifier(id.clone());
        failed.insert(*known.get(id.as_str()).ok_or_else(unknown)?);
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const IDS: &[&str] = &["a", "b", "c"];

    #[test]
    fn batch_response_table() {
        type Expected = Result<&'static [&'static str], ()>;
        let table: &[(&str, Expected)] = &[
            // Complete success, per Lambda.
            ("", Ok(&[])),
            ("  \n", Ok(&[])),
            ("null", Ok(&[])),
            ("{}", Ok(&[])),
            (r#"{"batchItemFailures":null}"#, Ok(&[])),
            (r#"{"batchItemFailures":[]}"#, Ok(&[])),
            // Partial failure.
            (
                r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#,
                Ok(&["b"]),
            ),
            (
                r#"{"batchItemFailures":[{"itemIdentifier":"c"},{"itemIdentifier":"a"}]}"#,
                Ok(&["a", "c"]),
            ),
            (
                r#"{"batchItemFailures":[{"itemIdentifier":"b"},{"itemIdentifier":"b"}]}"#,
                Ok(&["b"]),
            ),
            // Unknown fields are ignored.
            (
                r#"{"batchItemFailures":[{"itemIdentifier":"a","why":"x"}],"extra":1}"#,
                Ok(&["a"]),
            ),
            (r#"{"statusCode":200}"#, Ok(&[])),
            // Complete failure.
            (
                r#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#,
                Err(()),
            ),
            (r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#, Err(())),
            (
                r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
                Err(()),
            ),
            (r#"{"batchItemFailures":[{"itemId":"a"}]}"#, Err(())),
            (r#"{"batchItemFailures":[{"itemIdentifier":1}]}"#, Err(())),
            (r#"{"batchItemFailures":["a"]}"#, Err(())),
            (r#"{"batchItemFailures":{"itemIdentifier":"a"}}"#, Err(())),
            (r#"{"batchItemFailures":"a"}"#, Err(())),
            (r#""ok""#, Err(())),
            ("[]", Err(())),
            ("42", Err(())),
            ("not json", Err(())),
            (r#"{"batchItemFailures":[{"itemIdentifier":"a"}"#, Err(())),
        ];
        for (reply, expected) in table {
            let got = parse(reply.as_bytes(), IDS);
            match expected {
                Ok(ids) => {
                    let got =
                        got.unwrap_or_else(|e| panic!("{reply:?}: expected {ids:?}, got {e}"));
                    assert_eq!(got.into_iter().collect::<Vec<_>>(), *ids, "{reply:?}");
                }
                Err(()) => assert!(
                    got.is_err(),
                    "{reply:?}: expected an invalid response, got {got:?}"
                ),
            }
        }
    }

    fn success(body: &str) -> Result<InvocationResponse, InvokeError> {
        Ok(InvocationResponse::Success(Bytes::from(body.to_owned())))
    }

    #[test]
    fn partial_failure_deletes_only_the_others() {
        let settled = Verdict::new(
            &success(r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#),
            IDS,
            true,
        );
        assert_eq!(settled.succeeded, vec!["a", "c"]);
        assert_eq!(settled.failed, vec!["b"]);
        assert_eq!(settled.batch_failure, None);
    }

    #[test]
    fn invalid_reply_fails_the_whole_batch() {
        let settled = Verdict::new(
            &success(r#"{"batchItemFailures":[{"itemIdentifier":"x"}]}"#),
            IDS,
            true,
        );
        assert!(settled.succeeded.is_empty());
        assert_eq!(settled.failed, vec!["a", "b", "c"]);
        assert!(matches!(
            settled.batch_failure,
            Some(BatchFailure::InvalidResponse(
                InvalidBatchResponse::UnknownIdentifier(_)
            ))
        ));
    }

    #[test]
    fn without_reporting_any_success_deletes_everything() {
        for body in [
            "",
            "not json",
            r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#,
        ] {
            let settled = Verdict::new(&success(body), IDS, false);
            assert_eq!(settled.succeeded, vec!["a", "b", "c"], "{body:?}");
            assert!(settled.failed.is_empty());
        }
    }

    #[test]
    fn errors_delete_nothing() {
        let failures: Vec<Result<InvocationResponse, InvokeError>> = vec![
            Ok(InvocationResponse::FunctionError {
                error_type: "Boom".into(),
                payload: Bytes::new(),
            }),
            Err(InvokeError::Timeout { seconds: 3.0 }),
            Err(InvokeError::ExitError {
                detail: "signal 9".into(),
            }),
            Err(InvokeError::NotReady),
            Err(InvokeError::ShuttingDown),
        ];
        for result in &failures {
            for report in [true, false] {
                let settled = Verdict::new(result, IDS, report);
                assert!(settled.succeeded.is_empty(), "{result:?}");
                assert_eq!(settled.failed, vec!["a", "b", "c"]);
                assert!(settled.batch_failure.is_some());
            }
        }
    }
}

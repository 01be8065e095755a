//! The task message: what `enqueue` puts on the queue and `sleep` takes off it.
//!
//! The body is JSON: `{"version": 1, "task_id": "<uuid>", "kind": "sleep", "duration_seconds": N,
//! "enqueued_at": "<RFC 3339>"}`. The worker re-validates every message with [`TaskMessage::parse`]:
//! a queue is an input like any other, and a message written by an older or newer producer, or by
//! hand, must fail clearly rather than run with a wrong value.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The message format this crate writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// How long a sleep task runs: a finite number of seconds in `1..=300`. Fractions are allowed.
///
/// The bounds keep a task inside what one Lambda invocation can run (15 minutes) with room to
/// spare, and below the queue's visibility timeout the deploy sets.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct TaskDuration(f64);

impl TaskDuration {
    /// The shortest task, in seconds.
    pub const MIN_SECONDS: f64 = 1.0;
    /// The longest task, in seconds.
    pub const MAX_SECONDS: f64 = 300.0;

    /// Checks `seconds` against the allowed range.
    pub fn new(seconds: f64) -> Result<Self, DurationOutOfRange> {
        if seconds.is_finite() && (Self::MIN_SECONDS..=Self::MAX_SECONDS).contains(&seconds) {
            Ok(Self(seconds))
        } else {
            Err(DurationOutOfRange(seconds))
        }
    }

    /// The duration in seconds.
    pub fn seconds(self) -> f64 {
        self.0
    }

    /// The duration as a [`Duration`], for sleeping.
    pub fn as_duration(self) -> Duration {
        // In range by construction, so the conversion cannot fail.
        Duration::from_secs_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for TaskDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        TaskDuration::new(seconds).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TaskDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A duration outside `1..=300` seconds.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("duration_seconds must be a number from 1 to 300 (fractions allowed), got {0}")]
pub struct DurationOutOfRange(pub f64);

/// What a task does. Only `sleep` exists today; the tag is on the wire so that a new kind is an
/// explicit, versioned change and an old worker rejects it instead of guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Sleep for `duration_seconds`.
    Sleep,
}

/// The message body on the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskMessage {
    /// Always [`MESSAGE_VERSION`] for messages this crate writes.
    pub version: u32,
    /// Chosen by `enqueue`, returned to the client, logged by the worker.
    pub task_id: Uuid,
    /// What to do.
    pub kind: TaskKind,
    /// How long to sleep.
    pub duration_seconds: TaskDuration,
    /// When `enqueue` accepted the task.
    #[serde(with = "rfc3339")]
    pub enqueued_at: DateTime<Utc>,
}

/// Why a queue message is not a task this worker can run.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The body is not JSON, or a field is missing, unknown, of the wrong type or out of range.
    #[error("message body is not a valid task: {0}")]
    Invalid(#[from] serde_json::Error),
    /// The body is a task of another format version.
    #[error("unsupported message version {found}; this worker reads version {MESSAGE_VERSION}")]
    UnsupportedVersion {
        /// The version the message carries.
        found: u64,
    },
}

impl TaskMessage {
    /// A new sleep task, stamped now.
    pub fn sleep(duration: TaskDuration) -> Self {
        Self {
            version: MESSAGE_VERSION,
            task_id: Uuid::new_v4(),
            kind: TaskKind::Sleep,
            duration_seconds: duration,
            enqueued_at: Utc::now(),
        }
    }

    /// The JSON body to send.
    pub fn to_body(&self) -> String {
        // A struct of plain fields always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads and validates a message body.
    ///
    /// The version is checked first so that a message from a newer producer is reported as such,
    /// not as a pile of unknown fields.
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: Option<serde_json::Value>,
        }
        if let Ok(Versioned {
            version: Some(version),
        }) = serde_json::from_str::<Versioned>(body)
        {
            match version.as_u64() {
                Some(v) if v == u64::from(MESSAGE_VERSION) => {}
                Some(found) => return Err(MessageError::UnsupportedVersion { found }),
                None => {} // wrong type: let the full parse say so
            }
        }
        Ok(serde_json::from_str(body)?)
    }
}

/// RFC 3339 with millisecond precision and a `Z`, the form SQS consumers in any language read.
mod rfc3339 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("enqueued_at is not RFC 3339 ({e})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(duration: &str) -> String {
        format!(
            r#"{{"version":1,"task_id":"6f1c2a4e-3b5d-4c6e-8f70-112233445566","kind":"sleep","duration_seconds":{duration},"enqueued_at":"2026-11-27T10:00:00.000Z"}}"#
        )
    }

    #[test]
    fn round_trips_through_json() {
        let msg = TaskMessage::sleep(TaskDuration::new(1.5).unwrap());
        let parsed = TaskMessage::parse(&msg.to_body()).unwrap();
        assert_eq!(parsed.task_id, msg.task_id);
        assert_eq!(parsed.duration_seconds.seconds(), 1.5);
        assert_eq!(parsed.kind, TaskKind::Sleep);
        // Millisecond precision on the wire.
        assert_eq!(
            parsed.enqueued_at.timestamp_millis(),
            msg.enqueued_at.timestamp_millis()
        );
    }

    #[test]
    fn wire_format_is_stable() {
        let msg = TaskMessage::parse(&body("2")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&msg.to_body()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "version": 1,
                "task_id": "6f1c2a4e-3b5d-4c6e-8f70-112233445566",
                "kind": "sleep",
                "duration_seconds": 2.0,
                "enqueued_at": "2026-11-27T10:00:00.000Z"
            })
        );
    }

    #[test]
    fn duration_bounds() {
        for ok in [1.0, 1.5, 300.0] {
            assert!(TaskDuration::new(ok).is_ok(), "{ok}");
        }
        for bad in [0.0, 0.5, 0.999, 300.001, -1.0, f64::NAN, f64::INFINITY] {
            assert!(TaskDuration::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_messages() {
        let task = "6f1c2a4e-3b5d-4c6e-8f70-112233445566";
        let cases = [
            ("not json".to_string(), "not a valid task"),
            (body("0.5"), "from 1 to 300"),
            (body("301"), "from 1 to 300"),
            (body("\"5\""), "not a valid task"),
            (
                body("5").replace("\"version\":1", "\"version\":2"),
                "unsupported message version 2",
            ),
            (body("5").replace("sleep", "dance"), "unknown variant"),
            (body("5").replace(task, "nope"), "not a valid task"),
            (
                body("5").replace("2026-11-27T10:00:00.000Z", "yesterday"),
                "RFC 3339",
            ),
            (body("5").replace("}", ",\"extra\":1}"), "unknown field"),
            (r#"{"version":1}"#.to_string(), "missing field"),
        ];
        for (input, expected) in cases {
            let err = TaskMessage::parse(&input).expect_err(&input).to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }
}

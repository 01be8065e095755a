//! The `sleep` function: the task service's worker, as an SQS-event Lambda handler.
//!
//! Each record of a batch is a [`TaskMessage`]; the records run concurrently. The reply is an
//! `SqsBatchResponse` listing exactly the records that failed, so the event source (Lambda's SQS
//! mapping, or the adapter's) deletes the rest and leaves the failures to the queue's redrive
//! policy. A record fails when its body is not a task this worker can run, or when the task could
//! not finish before the invocation's deadline.

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use futures::future::join_all;
use lambda_runtime::{Error, LambdaEvent};
use shared::TaskMessage;

/// Time kept back from the deadline: a task that would end closer than this to the deadline is
/// failed up front, since the invocation would be cut off (and the message redelivered) anyway.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The task ran to the end.
    Finished,
    /// The record must be retried or dead-lettered, for the reason given.
    Failed(String),
}

/// Handles one SQS batch.
///
/// A record without a `messageId` cannot be reported on its own, so it fails the whole invocation:
/// every record in the batch comes back, none is lost.
pub async fn handle(event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let deadline = deadline(event.context.deadline);
    let records = event.payload.records;
    if let Some(index) = records
        .iter()
        .position(|r| r.message_id.as_deref().is_none_or(str::is_empty))
    {
        tracing::error!(index, "record without a messageId; failing the whole batch");
        return Err(format!("record {index} has no messageId").into());
    }
    let invocation_trace = event.context.xray_trace_id.as_deref();
    let outcomes = join_all(
        records
            .iter()
            .map(|record| run_record(record, deadline, invocation_trace)),
    )
    .await;
    Ok(batch_response(records.iter().zip(outcomes).map(
        |(record, outcome)| (record.message_id.as_deref().unwrap_or_default(), outcome),
    )))
}

/// The invocation's deadline from `Lambda-Runtime-Deadline-Ms`.
///
/// Lambda (and the adapter) send milliseconds since the epoch. `cargo lambda watch` 1.9 sends the
/// timeout itself (e.g. `600000`), which read as a date is 1970: every task would fail as out of
/// time. A value before 2001 cannot be a real deadline, so it is taken as milliseconds from now.
pub fn deadline(deadline_ms: u64) -> SystemTime {
    const EPOCH_MS_2001: u64 = 1_000_000_000_000;
    if deadline_ms < EPOCH_MS_2001 {
        SystemTime::now() + Duration::from_millis(deadline_ms)
    } else {
        SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms)
    }
}

/// The reply for a batch: every failed record's id, in batch order, once.
pub fn batch_response<'a>(
    outcomes: impl IntoIterator<Item = (&'a str, Outcome)>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (id, outcome) in outcomes {
        if matches!(outcome, Outcome::Failed(_))
            && !response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == id)
        {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.to_string();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// The trace a record belongs to: its own `AWSTraceHeader` (the producer's trace, whichever
/// invocation carries it), else the invocation's.
fn trace_id<'a>(record: &'a SqsMessage, invocation_trace: Option<&'a str>) -> &'a str {
    record
        .attributes
        .get("AWSTraceHeader")
        .map(String::as_str)
        .or(invocation_trace)
        .unwrap_or_default()
}

async fn run_record(
    record: &SqsMessage,
    deadline: SystemTime,
    invocation_trace: Option<&str>,
) -> Outcome {
    let message_id = record.message_id.as_deref().unwrap_or_default();
    let trace_id = trace_id(record, invocation_trace);
    let receive_count: u32 = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let body = record.body.as_deref().unwrap_or_default();
    let task = match TaskMessage::parse(body) {
        Ok(task) => task,
        Err(error) => {
            let reason = error.to_string();
            tracing::warn!(message_id, receive_count, reason, "message rejected");
            return Outcome::Failed(reason);
        }
    };
    let task_id = task.task_id.to_string();
    let duration = task.duration_seconds.as_duration();
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    if duration + DEADLINE_MARGIN > left {
        let reason = format!(
            "task needs {:.3} s but the invocation has {:.3} s left",
            duration.as_secs_f64(),
            left.as_secs_f64()
        );
        tracing::error!(
            task_id,
            message_id,
            receive_count,
            reason,
            deadline_ms = deadline
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
            "task cannot finish before the deadline"
        );
        return Outcome::Failed(reason);
    }
    let queued_ms = (Utc::now() - task.enqueued_at).num_milliseconds().max(0);
    if receive_count > 1 {
        // At-least-once delivery: a redelivered task runs again; say so, with the count.
        tracing::warn!(task_id, message_id, receive_count, "task delivered again");
    }
    tracing::info!(
        task_id,
        trace_id,
        message_id,
        receive_count,
        queued_ms,
        duration_seconds = task.duration_seconds.seconds(),
        "task started"
    );
    tokio::time::sleep(duration).await;
    tracing::info!(
        task_id,
        trace_id,
        message_id,
        receive_count,
        duration_seconds = task.duration_seconds.seconds(),
        "task finished"
    );
    Outcome::Finished
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_own_trace_header_wins_over_the_invocations() {
        let mut record = SqsMessage::default();
        assert_eq!(trace_id(&record, Some("Root=1-a")), "Root=1-a");
        assert_eq!(trace_id(&record, None), "");
        record
            .attributes
            .insert("AWSTraceHeader".into(), "Root=1-b".into());
        assert_eq!(trace_id(&record, Some("Root=1-a")), "Root=1-b");
    }

    #[test]
    fn lists_exactly_the_failures_once_in_order() {
        let response = batch_response([
            ("a", Outcome::Finished),
            ("b", Outcome::Failed("bad json".into())),
            ("c", Outcome::Finished),
            ("d", Outcome::Failed("too long".into())),
            ("b", Outcome::Failed("duplicate record".into())),
        ]);
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["b", "d"]);
    }

    #[test]
    fn deadline_reads_epoch_millis_and_relative_emulator_values() {
        let epoch = 1_795_773_600_000;
        assert_eq!(
            deadline(epoch),
            SystemTime::UNIX_EPOCH + Duration::from_millis(epoch)
        );
        let relative = deadline(600_000).duration_since(SystemTime::now()).unwrap();
        assert!(relative > Duration::from_secs(590) && relative <= Duration::from_secs(600));
    }

    #[test]
    fn all_finished_is_an_empty_list() {
        let response = batch_response([("a", Outcome::Finished)]);
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            serde_json::json!({"batchItemFailures": []})
        );
    }
}

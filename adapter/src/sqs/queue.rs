//! The SQS calls the source makes, with the batching and retrying SQS needs.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use futures::StreamExt;

use super::backoff::Backoff;

/// Most entries SQS takes in one batch call.
const MAX_BATCH_ENTRIES: usize = 10;

/// Batch calls in flight at once for one operation: releasing a thousand messages at shutdown one
/// call after another would take a hundred round trips of the release's short budget.
const CHUNKS_IN_FLIGHT: usize = 8;

/// How often a delete is tried before the message is left to come back.
const DELETE_ATTEMPTS: u32 = 6;

/// A received message's identity: what deleting it or changing its visibility needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// SQS `MessageId`, the `itemIdentifier` of batch item failures.
    pub message_id: String,
    /// The receipt handle of this receive (a new one each time the message is received).
    pub receipt_handle: String,
}

/// A failed SQS call, its SDK error rendered with all its context.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub(crate) struct CallError {
    message: String,
    /// Whether trying again may help: SQS unreachable, timed out, throttled or failing (5xx).
    /// A 4xx answer (no such queue, access denied) will not change by itself.
    pub(crate) retryable: bool,
}

impl CallError {
    /// A request the SDK refused to build: a bug here, not a state of SQS.
    fn from_build(error: aws_sdk_sqs::error::BuildError) -> Self {
        Self {
            message: DisplayErrorContext(error).to_string(),
            retryable: false,
        }
    }

    fn from_sdk<E>(error: SdkError<E, HttpResponse>) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    {
        let retryable = match &error {
            SdkError::ServiceError(service) => {
                let status = service.raw().status();
                // SQS answers throttling with a 400 (`RequestThrottled`, `ThrottlingException`,
                // `KmsThrottled`): a 4xx that does pass.
                let throttled = service.err().code().is_some_and(|c| c.contains("Throttl"));
                status.is_server_error() || status.as_u16() == 429 || throttled
            }
            _ => true,
        };
        Self {
            message: DisplayErrorContext(error).to_string(),
            retryable,
        }
    }
}

/// The attributes of the queue the source needs.
#[derive(Debug, Clone)]
pub(crate) struct QueueAttributes {
    pub(crate) arn: Option<String>,
    pub(crate) visibility_timeout: Option<Duration>,
}

/// What a batch operation did, per message id.
#[derive(Debug, Default)]
pub(crate) struct BatchReport {
    pub(crate) done: Vec<String>,
    pub(crate) failed: Vec<(String, String)>,
    /// Of the failed, those SQS refused for good (the sender's fault: the receipt handle is no
    /// longer valid, the message is gone or no longer in flight): trying again will not help.
    pub(crate) rejected: Vec<Receipt>,
}

/// One queue and the client that reaches it.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    client: Client,
    url: String,
}

impl Queue {
    pub(crate) fn new(client: Client, url: String) -> Self {
        Self { client, url }
    }

    pub(crate) async fn attributes(&self) -> Result<QueueAttributes, CallError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(CallError::from_sdk)?;
        let attributes = output.attributes();
        let get = |name: &QueueAttributeName| attributes.and_then(|a| a.get(name));
        Ok(QueueAttributes {
            arn: get(&QueueAttributeName::QueueArn).cloned(),
            visibility_timeout: get(&QueueAttributeName::VisibilityTimeout)
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs),
        })
    }

    /// One `ReceiveMessage` call: at most `max` (1..=10) messages, long-polling `wait`, with every
    /// system and message attribute, as Lambda asks for them.
    pub(crate) async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Message>, CallError> {
        let max = max.clamp(1, MAX_BATCH_ENTRIES) as i32;
        let wait = wait.as_secs().min(20) as i32;
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(CallError::from_sdk)?;
        Ok(output.messages.unwrap_or_default())
    }

    /// Deletes `receipts`, retrying what fails for a few seconds. What is still not deleted is
    /// reported failed and will be delivered again: at-least-once, never lost.
    pub(crate) async fn delete(&self, receipts: &[Receipt]) -> BatchReport {
        self.batch(BatchCall::Delete, receipts, DELETE_ATTEMPTS)
            .await
    }

    /// Sets the visibility timeout of `receipts` to `timeout` from now (0: visible at once), trying
    /// what fails up to `attempts` times.
    pub(crate) async fn change_visibility(
        &self,
        receipts: &[Receipt],
        timeout: Duration,
        attempts: u32,
    ) -> BatchReport {
        let seconds = timeout.as_secs().min(43_200) as i32;
        self.batch(BatchCall::ChangeVisibility { seconds }, receipts, attempts)
            .await
    }

    /// Runs `call` over `receipts` in chunks of ten, up to [`CHUNKS_IN_FLIGHT`] at once, each
    /// entry tried up to `attempts` times with a backoff between. Entries SQS refuses for good (the
    /// sender's fault, such as an expired receipt handle) are not tried again.
    async fn batch(&self, call: BatchCall, receipts: &[Receipt], attempts: u32) -> BatchReport {
        // The calls made first, then streamed: a stream that maps with a closure trips the
        // compiler's `Send` check for the spawned tasks that await this.
        let calls: Vec<_> = receipts
            .chunks(MAX_BATCH_ENTRIES)
            .map(|chunk| self.batch_chunk(call, chunk, attempts))
            .collect();
        let reports: Vec<BatchReport> = futures::stream::iter(calls)
            .buffered(CHUNKS_IN_FLIGHT)
            .collect()
            .await;
        let mut report = BatchReport::default();
        for chunk in reports {
            report.done.extend(chunk.done);
            report.failed.extend(chunk.failed);
            report.rejected.extend(chunk.rejected);
        }
        report
    }

    /// [`Queue::batch`] for one chunk of at most ten receipts.
    async fn batch_chunk(&self, call: BatchCall, chunk: &[Receipt], attempts: u32) -> BatchReport {
        let mut report = BatchReport::default();
        let mut pending: Vec<&Receipt> = chunk.iter().collect();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut last_error = String::new();
        for attempt in 1..=attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            match self.batch_once(call, &pending).await {
                Ok(outcome) => {
                    report.done.extend(outcome.done);
                    let (permanent, retry): (Vec<_>, Vec<_>) =
                        outcome.failed.into_iter().partition(|f| f.sender_fault);
                    for failure in permanent {
                        if let Some(receipt) = pending.get(failure.index) {
                            report.rejected.push((*receipt).clone());
                        }
                        report.failed.push((failure.message_id, failure.reason));
                    }
                    if let Some(first) = retry.first() {
                        last_error.clone_from(&first.reason);
                    }
                    // By position, not id: one chunk may hold two deliveries of a message.
                    let again: Vec<usize> = retry.iter().map(|f| f.index).collect();
                    pending = again
                        .into_iter()
                        .filter_map(|i| pending.get(i).copied())
                        .collect();
                }
                Err(error) => {
                    // Deletes say it here; visibility changes are reported per message by their
                    // callers, every tick while SQS is out of reach.
                    if matches!(call, BatchCall::Delete) {
                        tracing::warn!(error = %error, attempt, queue_url = %self.url, "{} failed", call.name());
                    } else {
                        tracing::debug!(error = %error, attempt, queue_url = %self.url, "{} failed", call.name());
                    }
                    last_error = error.to_string();
                    if !error.retryable {
                        break;
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
        }
        report.failed.extend(
            pending
                .into_iter()
                .map(|r| (r.message_id.clone(), last_error.clone())),
        );
        report
    }

    async fn batch_once(
        &self,
        call: BatchCall,
        receipts: &[&Receipt],
    ) -> Result<EntryOutcome, CallError> {
        match call {
            BatchCall::Delete => {
                let entries = receipts
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(&r.receipt_handle)
                            .build()
                            .map_err(CallError::from_build)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let output = self
                    .client
                    .delete_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(CallError::from_sdk)?;
                let successful = output.successful().iter().map(|s| s.id());
                Ok(EntryOutcome::from_ids(
                    receipts,
                    successful,
                    failures(output.failed()),
                ))
            }
            BatchCall::ChangeVisibility { seconds } => {
                let entries = receipts
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(&r.receipt_handle)
                            .visibility_timeout(seconds)
                            .build()
                            .map_err(CallError::from_build)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let output = self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(CallError::from_sdk)?;
                let successful = output.successful().iter().map(|s| s.id());
                Ok(EntryOutcome::from_ids(
                    receipts,
                    successful,
                    failures(output.failed()),
                ))
            }
        }
    }
}

/// A batch call on receipts.
#[derive(Debug, Clone, Copy)]
enum BatchCall {
    Delete,
    ChangeVisibility { seconds: i32 },
}

impl BatchCall {
    fn name(self) -> &'static str {
        match self {
            BatchCall::Delete => "DeleteMessageBatch",
            BatchCall::ChangeVisibility { .. } => "ChangeMessageVisibilityBatch",
        }
    }
}

/// A batch call's failed entries as `(entry id, sender's fault, reason)`.
fn failures(failed: &[BatchResultErrorEntry]) -> impl Iterator<Item = (&str, bool, String)> {
    failed.iter().map(|f| {
        (
            f.id(),
            f.sender_fault(),
            format!("{}: {}", f.code(), f.message().unwrap_or("")),
        )
    })
}

struct EntryFailure {
    /// Where the entry's receipt is in the call's receipts.
    index: usize,
    message_id: String,
    sender_fault: bool,
    reason: String,
}

struct EntryOutcome {
    done: Vec<String>,
    failed: Vec<EntryFailure>,
}

impl EntryOutcome {
    /// Maps batch entry ids (indexes into `receipts`) back to message ids. An entry SQS mentions
    /// neither as successful nor as failed counts as a retryable failure.
    fn from_ids<'a>(
        receipts: &[&Receipt],
        successful: impl Iterator<Item = &'a str>,
        failed: impl Iterator<Item = (&'a str, bool, String)>,
    ) -> Self {
        let index = |id: &str| id.parse::<usize>().ok().filter(|i| *i < receipts.len());
        let mut answered = vec![false; receipts.len()];
        let mut done = Vec::new();
        for i in successful.filter_map(index) {
            if !std::mem::replace(&mut answered[i], true) {
                done.push(receipts[i].message_id.clone());
            }
        }
        let mut failures = Vec::new();
        for (i, sender_fault, reason) in failed.filter_map(|(id, f, r)| Some((index(id)?, f, r))) {
            if !std::mem::replace(&mut answered[i], true) {
                failures.push(EntryFailure {
                    index: i,
                    message_id: receipts[i].message_id.clone(),
                    sender_fault,
                    reason,
                });
            }
        }
        for (i, receipt) in receipts.iter().enumerate() {
            if !answered[i] {
                failures.push(EntryFailure {
                    index: i,
                    message_id: receipt.message_id.clone(),
                    sender_fault: false,
                    reason: "not in the SQS response".to_owned(),
                });
            }
        }
        Self {
            done,
            failed: failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::error::ErrorMetadata;
    use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchError;

    use super::*;

    /// A call SQS answered with `status` and error `code`.
    fn answered(status: u16, code: &str) -> CallError {
        let error = DeleteMessageBatchError::generic(ErrorMetadata::builder().code(code).build());
        let raw = HttpResponse::new(status.try_into().expect("a status code"), "".into());
        CallError::from_sdk(SdkError::service_error(error, raw))
    }

    #[test]
    fn throttling_and_server_errors_are_retried_other_refusals_are_not() {
        assert!(answered(400, "RequestThrottled").retryable);
        assert!(answered(400, "ThrottlingException").retryable);
        assert!(answered(429, "TooManyRequests").retryable);
        assert!(answered(500, "InternalError").retryable);
        assert!(!answered(400, "AWS.SimpleQueueService.NonExistentQueue").retryable);
        assert!(!answered(403, "AccessDenied").retryable);
    }

    #[test]
    fn entry_ids_map_back_to_messages_and_silence_is_a_retryable_failure() {
        let receipts: Vec<Receipt> = ["m0", "m1", "m2", "m3"]
            .iter()
            .map(|id| Receipt {
                message_id: (*id).into(),
                receipt_handle: format!("h-{id}"),
            })
            .collect();
        let refs: Vec<&Receipt> = receipts.iter().collect();
        let outcome = EntryOutcome::from_ids(
            &refs,
            ["0", "2", "99"].into_iter(),
            [("1", true, "ReceiptHandleIsInvalid: gone".to_owned())].into_iter(),
        );
        assert_eq!(outcome.done, ["m0", "m2"]);
        let failed: Vec<_> = outcome
            .failed
            .iter()
            .map(|f| (f.message_id.as_str(), f.sender_fault))
            .collect();
        // m3 was in neither list: retried, not assumed deleted.
        assert_eq!(failed, [("m1", true), ("m3", false)]);
    }

    /// Two deliveries of one message in one call: each entry keeps its own outcome, so only the
    /// one that failed is retried.
    #[test]
    fn two_deliveries_of_a_message_keep_their_own_outcomes() {
        let receipts: Vec<Receipt> = ["h0", "h1"]
            .iter()
            .map(|handle| Receipt {
                message_id: "m".into(),
                receipt_handle: (*handle).into(),
            })
            .collect();
        let refs: Vec<&Receipt> = receipts.iter().collect();
        let outcome = EntryOutcome::from_ids(
            &refs,
            ["0", "0"].into_iter(),
            [("1", false, "InternalError".to_owned())].into_iter(),
        );
        assert_eq!(outcome.done, ["m"], "an entry answered twice counts once");
        let failed: Vec<_> = outcome.failed.iter().map(|f| f.index).collect();
        assert_eq!(failed, [1]);
    }
}

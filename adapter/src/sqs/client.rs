//! [`QueueClient`]: every SQS call the source makes. SDK retries are off ([`sdk_config`]): batch
//! calls are retried here per entry (SQS fails entries one by one), receives by the pollers, the
//! start by `SqsSource::connect`; throttling and 5xx are retried, a definite 4xx is not.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry as VisibilityEntry,
    DeleteMessageBatchRequestEntry as DeleteEntry, Message, MessageSystemAttributeName,
    QueueAttributeName,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{MAX_PER_RECEIVE, MAX_WAIT_TIME};
use crate::backoff::Backoff;

/// Most batch calls in flight at once: enough that releasing a thousand messages at shutdown fits
/// its short budget, few enough that the deleter, waiting for a free call, coalesces deletes.
pub(crate) const CALLS_IN_FLIGHT: usize = 8;

/// How often a delete is tried before the message is left to come back.
const DELETE_ATTEMPTS: u32 = 6;

/// The AWS configuration from the environment, every call bounded in time, no SDK retries. The
/// SDK bounds only the connect: a silent connection would hang a receive or a delete for ever.
pub(crate) async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(MAX_WAIT_TIME + Duration::from_secs(10))
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

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
pub struct CallError {
    message: String,
    /// Whether trying again may help: SQS unreachable, timed out, throttled or failing (5xx).
    pub retryable: bool,
}

/// A request the SDK refused to build: a bug here, not a state of SQS.
impl From<BuildError> for CallError {
    fn from(error: BuildError) -> Self {
        let message = DisplayErrorContext(error).to_string();
        Self {
            message,
            retryable: false,
        }
    }
}

impl<E: Error + ProvideErrorMetadata + 'static> From<SdkError<E, HttpResponse>> for CallError {
    fn from(error: SdkError<E, HttpResponse>) -> Self {
        let retryable = match &error {
            SdkError::ServiceError(service) => {
                let status = service.raw().status();
                // SQS answers throttling with a 400 (`RequestThrottled`, `KmsThrottled`, ...).
                let throttled = service.err().code().is_some_and(|c| c.contains("Throttl"));
                status.is_server_error() || status.as_u16() == 429 || throttled
            }
            _ => true,
        };
        let message = DisplayErrorContext(error).to_string();
        Self { message, retryable }
    }
}

/// What a batch operation did, per message id.
#[derive(Debug, Default)]
pub(crate) struct BatchReport {
    pub(crate) done: Vec<String>,
    pub(crate) failed: Vec<(String, String)>,
    /// Of the failed, those SQS refused for good (receipt handle expired, message gone).
    pub(crate) rejected: Vec<Receipt>,
}

/// The SQS client for one queue, with the batch-call limit. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct QueueClient {
    client: Client,
    url: String,
    /// The batch-call slots; the deleter gathers asks while it waits for one.
    pub(crate) calls: Arc<Semaphore>,
}

impl QueueClient {
    pub(crate) fn new(client: Client, url: String) -> Self {
        let calls = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
        Self { client, url, calls }
    }

    /// The queue's ARN and visibility timeout, when it has them.
    pub(crate) async fn attributes(&self) -> Result<(Option<String>, Option<Duration>), CallError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await?;
        let mut attributes = output.attributes.unwrap_or_default();
        let arn = attributes.remove(&QueueAttributeName::QueueArn);
        let timeout = attributes.remove(&QueueAttributeName::VisibilityTimeout);
        let seconds = timeout.and_then(|v| v.parse().ok());
        Ok((arn, seconds.map(Duration::from_secs)))
    }

    /// One `ReceiveMessage` call: at most `max` (1..=10) messages, long-polling `wait`, with every
    /// system and message attribute, as Lambda asks for them. Not retried here.
    pub(crate) async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Message>, CallError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_PER_RECEIVE) as i32)
            .wait_time_seconds(wait.min(MAX_WAIT_TIME).as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await?;
        Ok(output.messages.unwrap_or_default())
    }

    /// Deletes `receipts`, retrying for a few seconds, the first call in `slot` if given. What is
    /// still not deleted is reported failed and will be delivered again.
    pub(crate) async fn delete(
        &self,
        receipts: &[Receipt],
        slot: Option<OwnedSemaphorePermit>,
    ) -> BatchReport {
        self.batch(None, receipts, DELETE_ATTEMPTS, slot).await
    }

    /// Sets the visibility timeout of `receipts` to `timeout` from now, in up to `attempts` tries.
    pub(crate) async fn change_visibility(
        &self,
        receipts: &[Receipt],
        timeout: Duration,
        attempts: u32,
    ) -> BatchReport {
        let seconds = timeout.as_secs().min(43_200) as i32;
        self.batch(Some(seconds), receipts, attempts, None).await
    }

    /// Deletes (`visibility` `None`) or changes visibility, in chunks of ten run at once.
    async fn batch(
        &self,
        visibility: Option<i32>,
        receipts: &[Receipt],
        attempts: u32,
        mut slot: Option<OwnedSemaphorePermit>,
    ) -> BatchReport {
        let chunks = receipts.chunks(MAX_PER_RECEIVE);
        let chunks = chunks.map(|chunk| self.chunk(visibility, chunk, attempts, slot.take()));
        let mut report = BatchReport::default();
        for chunk in futures::future::join_all(chunks).await {
            report.done.extend(chunk.done);
            report.failed.extend(chunk.failed);
            report.rejected.extend(chunk.rejected);
        }
        report
    }

    /// [`QueueClient::batch`] for at most ten receipts, each entry tried up to `attempts` times
    /// with a backoff between; entries SQS refuses for good are not tried again.
    async fn chunk(
        &self,
        visibility: Option<i32>,
        chunk: &[Receipt],
        attempts: u32,
        mut slot: Option<OwnedSemaphorePermit>,
    ) -> BatchReport {
        let mut report = BatchReport::default();
        let mut pending: Vec<&Receipt> = chunk.iter().collect();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut last_error = String::new();
        for attempt in 1..=attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            // Held for the call only: a chunk backing off leaves the slot to others. Never
            // closed; were it, the call would go unlimited rather than not at all.
            let _slot = match slot.take() {
                Some(slot) => Some(slot),
                None => self.calls.clone().acquire_owned().await.ok(),
            };
            match self.call_once(visibility, &pending).await {
                Ok(results) => {
                    let mut retry = Vec::new();
                    for (receipt, result) in pending.into_iter().zip(results) {
                        match result {
                            Ok(()) => report.done.push(receipt.message_id.clone()),
                            Err((true, reason)) => {
                                report.rejected.push(receipt.clone());
                                report.failed.push((receipt.message_id.clone(), reason));
                            }
                            Err((false, reason)) if retry.is_empty() => {
                                last_error = reason;
                                retry.push(receipt);
                            }
                            Err((false, _)) => retry.push(receipt),
                        }
                    }
                    // By position, not id: one chunk may hold two deliveries of a message.
                    pending = retry;
                }
                Err(error) => {
                    // Visibility changes are reported per message by their callers.
                    if visibility.is_none() {
                        tracing::warn!(%error, attempt, queue_url = %self.url, "DeleteMessageBatch failed");
                    } else {
                        tracing::debug!(%error, attempt, queue_url = %self.url, "ChangeMessageVisibilityBatch failed");
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
        let failed = pending.into_iter().map(|r| r.message_id.clone());
        report
            .failed
            .extend(failed.map(|id| (id, last_error.clone())));
        report
    }

    /// One batch call for `receipts`, entry ids their positions: each entry's result, in order.
    async fn call_once(
        &self,
        visibility: Option<i32>,
        receipts: &[&Receipt],
    ) -> Result<Vec<EntryResult>, CallError> {
        let entries = receipts.iter().enumerate();
        let entries = entries.map(|(i, r)| (i.to_string(), r.receipt_handle.clone()));
        let (successful, failed): (Vec<String>, Vec<BatchResultErrorEntry>) = match visibility {
            None => {
                let entries =
                    entries.map(|(id, h)| DeleteEntry::builder().id(id).receipt_handle(h));
                let entries = entries.map(|e| e.build()).collect::<Result<_, _>>()?;
                let call = self.client.delete_message_batch().queue_url(&self.url);
                let output = call.set_entries(Some(entries)).send().await?;
                let ok = output.successful.into_iter().map(|s| s.id);
                (ok.collect(), output.failed)
            }
            Some(seconds) => {
                let entries =
                    entries.map(|(id, h)| VisibilityEntry::builder().id(id).receipt_handle(h));
                let entries = entries.map(|e| e.visibility_timeout(seconds).build());
                let entries = entries.collect::<Result<_, _>>()?;
                let call = self.client.change_message_visibility_batch();
                let call = call.queue_url(&self.url).set_entries(Some(entries));
                let output = call.send().await?;
                let ok = output.successful.into_iter().map(|s| s.id);
                (ok.collect(), output.failed)
            }
        };
        let failed = failed.iter().map(|f| {
            let reason = format!("{}: {}", f.code(), f.message().unwrap_or(""));
            (f.id(), f.sender_fault(), reason)
        });
        let successful = successful.iter().map(String::as_str);
        Ok(entry_results(receipts.len(), successful, failed))
    }
}

/// One entry's answer: done, or failed with whether SQS blames the sender, and why.
type EntryResult = Result<(), (bool, String)>;

/// Each of `len` entries' result, by position, from the ids SQS lists. An entry listed twice keeps
/// its first answer; one SQS mentions neither as successful nor as failed is a retryable failure.
fn entry_results<'a>(
    len: usize,
    successful: impl Iterator<Item = &'a str>,
    failed: impl Iterator<Item = (&'a str, bool, String)>,
) -> Vec<EntryResult> {
    let mut results: Vec<Option<EntryResult>> = vec![None; len];
    let failed = failed.map(|(id, fault, reason)| (id, Err((fault, reason))));
    for (id, result) in successful.map(|id| (id, Ok(()))).chain(failed) {
        if let Some(slot) = id.parse::<usize>().ok().and_then(|i| results.get_mut(i)) {
            slot.get_or_insert(result);
        }
    }
    let silent = || Err((false, "not in the SQS response".to_owned()));
    let results = results.into_iter().map(|r| r.unwrap_or_else(silent));
    results.collect()
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
        CallError::from(SdkError::service_error(error, raw))
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
    fn entry_ids_map_back_to_positions_and_silence_is_a_retryable_failure() {
        let results = entry_results(
            4,
            ["0", "2", "99"].into_iter(),
            [("1", true, "ReceiptHandleIsInvalid: gone".to_owned())].into_iter(),
        );
        let silent = Err((false, "not in the SQS response".to_owned()));
        // Entry 3 was in neither list: retried, not assumed deleted.
        let gone = Err((true, "ReceiptHandleIsInvalid: gone".to_owned()));
        assert_eq!(results, [Ok(()), gone, Ok(()), silent]);
    }

    /// Two deliveries of one message in one call: each entry keeps its own outcome, so only the
    /// one that failed is retried.
    #[test]
    fn an_entry_answered_twice_keeps_its_first_answer() {
        let results = entry_results(
            2,
            ["0", "0"].into_iter(),
            [
                ("0", false, "late".to_owned()),
                ("1", false, "InternalError".to_owned()),
            ]
            .into_iter(),
        );
        assert_eq!(results, [Ok(()), Err((false, "InternalError".to_owned()))]);
    }
}

//! [`QueueClient`]: every SQS call the source makes. The SDK's retries are off ([`sdk_config`]):
//! batch calls are retried here per entry (SQS fails entries one by one, which the SDK cannot
//! see), receives by the pollers' backoff, the start by `SqsSource::connect`. Throttling and 5xx
//! are retried, a definite 4xx is not. At most [`CALLS_IN_FLIGHT`] batch calls run at once.

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

/// The AWS configuration from the environment, every SQS call bounded in time, no SDK retries.
/// The SDK's defaults bound only the connect: a connection gone silent (a lost NAT entry) would
/// hang a receive for ever with `/readyz` still green, or a delete holding a call slot.
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

impl CallError {
    /// A request the SDK refused to build: a bug here, not a state of SQS.
    fn from_build(error: BuildError) -> Self {
        let message = DisplayErrorContext(error).to_string();
        Self {
            message,
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
    /// Of the failed, those SQS refused for good (the receipt handle is no longer valid, the
    /// message is gone or no longer in flight): trying again will not help.
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
            .await
            .map_err(CallError::from_sdk)?;
        let mut attributes = output.attributes.unwrap_or_default();
        let arn = attributes.remove(&QueueAttributeName::QueueArn);
        let timeout = attributes.remove(&QueueAttributeName::VisibilityTimeout);
        let timeout = timeout
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs);
        Ok((arn, timeout))
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
            .await
            .map_err(CallError::from_sdk)?;
        Ok(output.messages.unwrap_or_default())
    }

    /// Deletes `receipts`, retrying what fails for a few seconds; `slot` is a call slot already
    /// taken for the first call. What is still not deleted is reported failed and will be
    /// delivered again: at-least-once, never lost.
    pub(crate) async fn delete(
        &self,
        receipts: &[Receipt],
        slot: Option<OwnedSemaphorePermit>,
    ) -> BatchReport {
        self.batch(None, receipts, DELETE_ATTEMPTS, slot).await
    }

    /// Sets the visibility timeout of `receipts` to `timeout` from now (0: visible at once),
    /// trying what fails up to `attempts` times.
    pub(crate) async fn change_visibility(
        &self,
        receipts: &[Receipt],
        timeout: Duration,
        attempts: u32,
    ) -> BatchReport {
        let seconds = timeout.as_secs().min(43_200) as i32;
        self.batch(Some(seconds), receipts, attempts, None).await
    }

    /// Deletes `receipts` (`visibility` `None`) or sets their visibility timeout, in chunks of
    /// ten run at once (each waits for a call slot).
    async fn batch(
        &self,
        visibility: Option<i32>,
        receipts: &[Receipt],
        attempts: u32,
        mut slot: Option<OwnedSemaphorePermit>,
    ) -> BatchReport {
        let chunks = receipts
            .chunks(MAX_PER_RECEIVE)
            .map(|chunk| self.chunk(visibility, chunk, attempts, slot.take()));
        let mut report = BatchReport::default();
        for chunk in futures::future::join_all(chunks).await {
            report.done.extend(chunk.done);
            report.failed.extend(chunk.failed);
            report.rejected.extend(chunk.rejected);
        }
        report
    }

    /// [`QueueClient::batch`] for at most ten receipts, each entry tried up to `attempts` times
    /// with a backoff between. Entries SQS refuses for good (the sender's fault, such as an
    /// expired receipt handle) are not tried again.
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
                Ok(outcome) => {
                    report.done.extend(outcome.done);
                    let (permanent, retry): (Vec<_>, Vec<_>) =
                        outcome.failed.into_iter().partition(|f| f.sender_fault);
                    for failure in permanent {
                        report.rejected.push(pending[failure.index].clone());
                        report.failed.push((failure.message_id, failure.reason));
                    }
                    if let Some(first) = retry.first() {
                        last_error.clone_from(&first.reason);
                    }
                    // By position, not id: one chunk may hold two deliveries of a message.
                    pending = retry.iter().map(|f| pending[f.index]).collect();
                }
                Err(error) => {
                    // Visibility changes are reported per message by their callers, every tick
                    // while SQS is out of reach.
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
        let failed = pending.into_iter();
        report
            .failed
            .extend(failed.map(|r| (r.message_id.clone(), last_error.clone())));
        report
    }

    /// One batch call for `receipts`, as [`QueueClient::batch`]; entry ids are their positions.
    async fn call_once(
        &self,
        visibility: Option<i32>,
        receipts: &[&Receipt],
    ) -> Result<EntryOutcome, CallError> {
        let entries = receipts.iter().enumerate();
        let entries = entries.map(|(i, r)| (i.to_string(), r.receipt_handle.clone()));
        let (successful, failed): (Vec<String>, Vec<BatchResultErrorEntry>) = match visibility {
            None => {
                let entries =
                    entries.map(|(id, h)| DeleteEntry::builder().id(id).receipt_handle(h));
                let entries = entries.map(|entry| entry.build()).collect::<Result<_, _>>();
                let call = self.client.delete_message_batch().queue_url(&self.url);
                let call = call.set_entries(Some(entries.map_err(CallError::from_build)?));
                let output = call.send().await.map_err(CallError::from_sdk)?;
                let ok = output.successful.into_iter().map(|s| s.id);
                (ok.collect(), output.failed)
            }
            Some(seconds) => {
                let entries =
                    entries.map(|(id, h)| VisibilityEntry::builder().id(id).receipt_handle(h));
                let entries = entries.map(|entry| entry.visibility_timeout(seconds).build());
                let call = self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(&self.url);
                let entries = entries.collect::<Result<_, _>>();
                let call = call.set_entries(Some(entries.map_err(CallError::from_build)?));
                let output = call.send().await.map_err(CallError::from_sdk)?;
                let ok = output.successful.into_iter().map(|s| s.id);
                (ok.collect(), output.failed)
            }
        };
        let failed = failed.iter().map(|f| {
            let reason = format!("{}: {}", f.code(), f.message().unwrap_or(""));
            (f.id(), f.sender_fault(), reason)
        });
        let successful = successful.iter().map(String::as_str);
        Ok(EntryOutcome::from_ids(receipts, successful, failed))
    }
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
        let failed = failed.filter_map(|(id, fault, reason)| Some((index(id)?, fault, reason)));
        let silent = (0..receipts.len()).map(|i| (i, false, "not in the SQS response".to_owned()));
        // Silent entries last: any entry SQS did answer keeps that answer.
        for (index, sender_fault, reason) in failed.chain(silent) {
            if !std::mem::replace(&mut answered[index], true) {
                let message_id = receipts[index].message_id.clone();
                failures.push(EntryFailure {
                    index,
                    message_id,
                    sender_fault,
                    reason,
                });
            }
        }
        let failed = failures;
        Self { done, failed }
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

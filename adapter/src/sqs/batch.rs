//! One batch's life after it is gathered: invoke, read the verdict, delete what succeeded.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::MAX_PAYLOAD_BYTES;
use super::client::Receipt;
use super::deleter::Deleter;
use super::health::SqsMetrics;
use super::in_flight::{InFlightMessages, VisibilityPolicy, wait_for_process};
use super::record::{self, Record};
use super::reply::Verdict;
use crate::gauge::GaugeGuard;
use crate::invocation::{Invocation, InvocationResponse, Invoke, InvokeError};

/// How long after a process died a shutdown still counts as its cause: a terminal's Ctrl-C
/// reaches the function processes and the adapter together, in no set order.
const SIGNAL_SETTLE: Duration = Duration::from_secs(1);

/// Runs one batch at a time and settles it. Cheap to clone: one per batch task.
#[derive(Clone)]
pub(crate) struct BatchRunner {
    pub(crate) deleter: Deleter,
    pub(crate) in_flight: InFlightMessages,
    pub(crate) metrics: SqsMetrics,
    pub(crate) report_batch_item_failures: bool,
    pub(crate) invocation_timeout: Duration,
    pub(crate) policy: VisibilityPolicy,
    /// The adapter's shutdown: failures it causes are not the batch's.
    pub(crate) shutdown: CancellationToken,
    /// A FIFO queue: a batch's parts stop at the first failure, to keep its groups in order.
    pub(crate) fifo: bool,
}

/// How one invocation's messages were settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartOutcome {
    /// None failed (deletes may still have failed: those come back, in order).
    Clean,
    Failed,
    /// Cut short by shutdown: still registered, to be released.
    Released,
}

impl BatchRunner {
    /// Whether a result is the shutdown's doing, not the function's verdict (then the batch is
    /// released at once): `ShuttingDown`, or no process left with shutdown begun or beginning
    /// within [`SIGNAL_SETTLE`]. A timeout or a function error stays a failure.
    async fn released_at_shutdown(&self, result: &Result<InvocationResponse, InvokeError>) -> bool {
        match result {
            Err(InvokeError::ShuttingDown) => true,
            Err(InvokeError::ExitError { .. } | InvokeError::NotReady) => {
                let shutdown = self.shutdown.cancelled();
                tokio::time::timeout(SIGNAL_SETTLE, shutdown).await.is_ok()
            }
            Err(InvokeError::Timeout { .. }) | Ok(_) => false,
        }
    }

    /// Runs `records` (in parts under Lambda's payload limit) and settles each part.
    pub(crate) async fn process<S: Invoke>(&self, invoker: S, records: Vec<Record>) {
        let _in_flight = GaugeGuard::new(&self.metrics.batches_in_flight);
        // A gathered batch over Lambda's payload limit runs as several invocations, in its slot.
        let parts = record::split_by_size(records, MAX_PAYLOAD_BYTES);
        for (index, part) in parts.iter().enumerate() {
            // Each part may take its full time: the hold set at receive covers one invocation.
            let waiting = parts[index..].iter().flatten().map(|r| &r.receipt);
            let hold = self.policy.hold(self.invocation_timeout);
            self.in_flight.hold_for(waiting, hold);
            let outcome = self.invoke_and_settle(invoker.clone(), part).await;
            if self.fifo && outcome != PartOutcome::Clean {
                // The later parts may hold later messages of a failed group: running them now
                // would put those before the retry. Unrun, they fail with it (or are released).
                let rest = parts[index + 1..].iter().flatten().map(|r| &r.receipt);
                let rest: Vec<&Receipt> = rest.collect();
                if outcome == PartOutcome::Failed && !rest.is_empty() {
                    self.in_flight.untrack(rest.iter().copied());
                    self.metrics.failed.inc_by(rest.len() as u64);
                    let ids: Vec<&str> = rest.iter().map(|r| r.message_id.as_str()).collect();
                    tracing::warn!(message_ids = ?ids, "FIFO batch stopped at a failure; these were not run and will be retried in order");
                }
                return;
            }
        }
    }

    async fn invoke_and_settle<S: Invoke>(&self, invoker: S, records: &[Record]) -> PartOutcome {
        let ids = records.iter().map(|r| r.receipt.message_id.as_str());
        let ids: Vec<&str> = ids.collect();
        let mut invocation = Invocation::new(record::payload(records), self.invocation_timeout)
            .waiting_for_process(wait_for_process(self.invocation_timeout));
        invocation.trace_id = Some(record::trace_header(records));
        let request_id = invocation.request_id.clone();
        tracing::debug!(%request_id, messages = ids.len(), message_ids = ?ids, "invoking with SQS batch");
        let result = invoker.oneshot(invocation).await;
        if self.released_at_shutdown(&result).await {
            // Not the messages' fault: still registered, shutdown releases them at once.
            tracing::debug!(%request_id, message_ids = ?ids, "batch cut short by shutdown; its messages will be released");
            return PartOutcome::Released;
        }
        let verdict = Verdict::new(&result, &ids, self.report_batch_item_failures);
        let receipts = |ids: &[String]| -> Vec<Receipt> {
            let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
            let listed = records.iter().map(|r| &r.receipt);
            let listed = listed.filter(|r| ids.contains(r.message_id.as_str()));
            listed.cloned().collect()
        };
        let outcome = if verdict.failed.is_empty() {
            PartOutcome::Clean
        } else {
            // Left alone: visible again once the last extension ends; redrive may DLQ it.
            self.in_flight.untrack(&receipts(&verdict.failed));
            self.metrics.failed.inc_by(verdict.failed.len() as u64);
            let reason = verdict.batch_failure.as_ref().map(ToString::to_string);
            let reason = reason.unwrap_or_else(|| "reported in batchItemFailures".to_owned());
            tracing::warn!(%request_id, message_ids = ?verdict.failed, %reason, "SQS messages failed; they will be retried");
            PartOutcome::Failed
        };
        if verdict.succeeded.is_empty() {
            return outcome;
        }
        let receipts = receipts(&verdict.succeeded);
        // Still registered (and extended) while the delete is retried, so they do not reappear.
        let report = self.deleter.delete(receipts.clone()).await;
        self.in_flight.untrack(&receipts);
        self.metrics.deleted.inc_by(report.done.len() as u64);
        let failed = report.failed.len();
        self.metrics.delete_errors.inc_by(failed as u64);
        for (message_id, reason) in &report.failed {
            tracing::warn!(%message_id, %reason, "could not delete a processed message; it will be delivered again");
        }
        tracing::debug!(%request_id, deleted = report.done.len(), "SQS batch settled");
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;

    use super::*;

    /// A fake host that answers from a script, one reply per call, and counts the calls.
    fn scripted(
        script: Vec<Result<InvocationResponse, InvokeError>>,
    ) -> (
        impl tower::Service<
            Invocation,
            Response = InvocationResponse,
            Error = InvokeError,
            Future = impl Future<Output = Result<InvocationResponse, InvokeError>> + Send,
        > + Clone
        + Send
        + 'static,
        Arc<AtomicUsize>,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let counter = calls.clone();
        let service = tower::service_fn(move |_: Invocation| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let reply = script
                .get(n)
                .cloned()
                .unwrap_or(Err(InvokeError::ShuttingDown));
            async move { reply }
        });
        (service, calls)
    }

    #[tokio::test]
    async fn only_failures_caused_by_shutdown_are_released() {
        let exit = Err(InvokeError::ExitError {
            detail: "signal: 2".into(),
        });
        let timeout = Err(InvokeError::Timeout { seconds: 3.0 });
        let function_error = Ok(InvocationResponse::FunctionError {
            error_type: "Boom".into(),
            payload: Bytes::new(),
        });
        let (runner, _) = runner(false);
        assert!(
            runner
                .released_at_shutdown(&Err(InvokeError::ShuttingDown))
                .await
        );
        assert!(
            !runner.released_at_shutdown(&exit).await,
            "a crash outside shutdown is a failure"
        );
        runner.shutdown.cancel();
        assert!(runner.released_at_shutdown(&exit).await);
        assert!(
            runner
                .released_at_shutdown(&Err(InvokeError::NotReady))
                .await
        );
        assert!(!runner.released_at_shutdown(&timeout).await);
        assert!(!runner.released_at_shutdown(&function_error).await);
        let success = Ok(InvocationResponse::Success(Bytes::new()));
        assert!(!runner.released_at_shutdown(&success).await);
    }

    /// A runner whose deletes are only counted, over `fifo` or standard queue semantics.
    fn runner(fifo: bool) -> (BatchRunner, Arc<AtomicUsize>) {
        let deleted = Arc::new(AtomicUsize::new(0));
        let counter = deleted.clone();
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let (deleter, task) = Deleter::start_with(slots, move |receipts: Vec<Receipt>, _| {
            counter.fetch_add(receipts.len(), Ordering::SeqCst);
            Box::pin(async move {
                crate::sqs::client::BatchReport {
                    done: receipts.into_iter().map(|r| r.message_id).collect(),
                    ..Default::default()
                }
            })
        });
        tokio::spawn(task);
        let policy = VisibilityPolicy::new(Duration::from_secs(30), 0.5);
        let runner = BatchRunner {
            deleter,
            in_flight: InFlightMessages::new(Duration::from_secs(60), policy),
            metrics: SqsMetrics::register(&mut prometheus_client::registry::Registry::default()),
            report_batch_item_failures: true,
            invocation_timeout: Duration::from_secs(5),
            policy,
            shutdown: CancellationToken::new(),
            fifo,
        };
        (runner, deleted)
    }

    /// Two records too large to share one invocation (Lambda's 6 MB), so the batch runs in two
    /// parts.
    fn two_part_batch() -> Vec<Record> {
        ["first", "second"]
            .into_iter()
            .map(|id| Record {
                receipt: Receipt {
                    message_id: id.into(),
                    receipt_handle: format!("handle-{id}"),
                },
                json: serde_json::json!({ "messageId": id }),
                size: MAX_PAYLOAD_BYTES / 2 + 1,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_fifo_batch_stops_at_its_first_failing_part() {
        let failure = Ok(InvocationResponse::FunctionError {
            error_type: "Boom".into(),
            payload: Bytes::new(),
        });
        let ok = Ok(InvocationResponse::Success(Bytes::from_static(b"{}")));
        for (fifo, invocations, failed, deleted) in [(true, 1, 2, 0), (false, 2, 1, 1)] {
            let (runner, deletes) = runner(fifo);
            let (invoker, calls) = scripted(vec![failure.clone(), ok.clone()]);
            runner.process(invoker, two_part_batch()).await;
            assert_eq!(calls.load(Ordering::SeqCst), invocations, "fifo: {fifo}");
            assert_eq!(runner.metrics.failed.get(), failed, "fifo: {fifo}");
            assert_eq!(deletes.load(Ordering::SeqCst), deleted, "fifo: {fifo}");
        }
    }
}

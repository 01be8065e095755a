//! One batch's life after it is gathered: invoke the function, read its verdict, delete what
//! succeeded, leave what failed, keep for release what shutdown cut short.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::MAX_PAYLOAD_BYTES;
use super::backoff::Backoff;
use super::batch_response::Settlement;
use super::deleter::Deleter;
use super::event::{self, Record};
use super::metrics::{InFlightGuard, SqsMetrics};
use super::queue::Receipt;
use super::visibility::InFlight;
use crate::invocation::{Invocation, InvocationResponse, Invoke, InvokeError};

/// How long after a process died a shutdown still counts as its cause.
const SIGNAL_SETTLE: Duration = Duration::from_secs(1);

/// How long a batch waits for a function process to come back before it counts as failed.
pub(crate) const NOT_READY_PATIENCE: Duration = Duration::from_secs(30);

/// Invokes, retrying while no function process is up (one is restarting after a crash): the
/// function never saw the batch, and failing it at once would spend a receive of every message
/// and, with a low `maxReceiveCount`, send good messages to the DLQ while the function restarts.
/// The batch's slot stays taken meanwhile, so the poller does not churn through the queue.
async fn invoke_when_ready<S>(
    invoker: S,
    invocation: Invocation,
) -> Result<InvocationResponse, InvokeError>
where
    S: Invoke,
{
    let give_up = tokio::time::Instant::now() + NOT_READY_PATIENCE;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let result = invoker.clone().oneshot(invocation.clone()).await;
        if !matches!(result, Err(InvokeError::NotReady)) || tokio::time::Instant::now() >= give_up {
            return result;
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Invokes with one batch and settles it. Cheap to clone: one per batch task.
#[derive(Debug, Clone)]
pub(crate) struct Settler {
    /// Deletes what succeeded, together with other batches' deletes.
    pub(crate) deleter: Deleter,
    pub(crate) in_flight: InFlight,
    pub(crate) metrics: SqsMetrics,
    pub(crate) report_batch_item_failures: bool,
    pub(crate) invocation_timeout: Duration,
    /// How long past its invocation's end a message may stay hidden: one extension.
    pub(crate) hold_margin: Duration,
    /// The adapter's shutdown: failures it causes are not the batch's.
    pub(crate) shutdown: CancellationToken,
    /// A FIFO queue: a batch's parts stop at the first failure, to keep its groups in order.
    pub(crate) fifo: bool,
}

/// How one invocation's messages were settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// None failed (deletes may still have failed: those come back, in order).
    Clean,
    /// Some failed: they come back after their visibility timeout.
    Failed,
    /// Cut short by shutdown: still tracked, to be released.
    Released,
}

/// Whether a batch's result is the shutdown's doing rather than the function's verdict on the
/// messages: the host refused it (`ShuttingDown`), or during shutdown the process went away
/// (a terminal's Ctrl-C reaches the whole process group) or none was left (`NotReady`). Such a
/// batch is released at once, not left to time out. A timeout or a function error stays a
/// failure: the function did run and judge.
fn released_at_shutdown(
    result: &Result<InvocationResponse, InvokeError>,
    shutting_down: bool,
) -> bool {
    match result {
        Err(InvokeError::ShuttingDown) => true,
        Err(InvokeError::ExitError { .. } | InvokeError::NotReady) => shutting_down,
        Err(InvokeError::Timeout { .. }) | Ok(_) => false,
    }
}

impl Settler {
    /// Whether shutdown has begun, or begins within a moment of a process dying: a terminal's
    /// Ctrl-C reaches the function processes and the adapter together, and the processes may
    /// die (and this batch fail) before the adapter has seen its own signal.
    async fn shutting_down_soon(&self, result: &Result<InvocationResponse, InvokeError>) -> bool {
        if self.shutdown.is_cancelled() {
            return true;
        }
        if !matches!(
            result,
            Err(InvokeError::ExitError { .. } | InvokeError::NotReady)
        ) {
            return false;
        }
        tokio::time::timeout(SIGNAL_SETTLE, self.shutdown.cancelled())
            .await
            .is_ok()
    }

    pub(crate) async fn process<S>(&self, invoker: S, records: Vec<Record>)
    where
        S: Invoke,
    {
        let _in_flight = InFlightGuard::new(&self.metrics.batches_in_flight);
        // Lambda's payload limit: a gathered batch too large for one invocation becomes several,
        // run one after the other in this batch's slot.
        let parts = event::split_by_size(records, MAX_PAYLOAD_BYTES);
        for (index, part) in parts.iter().enumerate() {
            // Each part may take its full time: keep this part and those after it invisible for
            // that long (the hold set at receive time only covers one invocation).
            let hold = NOT_READY_PATIENCE + self.invocation_timeout + self.hold_margin;
            let waiting = parts[index..].iter().flatten();
            self.in_flight.hold_for(waiting.map(|r| &r.receipt), hold);
            let settled = self.invoke_and_settle(invoker.clone(), part).await;
            if self.fifo && settled != Settled::Clean {
                // The later parts may hold later messages of a failed group: running them now
                // would put those before the retry. Unrun, they fail with it (or are released).
                let rest: Vec<&Receipt> = parts[index + 1..]
                    .iter()
                    .flatten()
                    .map(|r| &r.receipt)
                    .collect();
                if settled == Settled::Failed && !rest.is_empty() {
                    self.in_flight.untrack(rest.iter().copied());
                    self.metrics.failed.inc_by(rest.len() as u64);
                    let ids: Vec<&str> = rest.iter().map(|r| r.message_id.as_str()).collect();
                    tracing::warn!(message_ids = ?ids, "FIFO batch stopped at a failure; these were not run and will be retried in order");
                }
                return;
            }
        }
    }

    async fn invoke_and_settle<S>(&self, invoker: S, records: &[Record]) -> Settled
    where
        S: Invoke,
    {
        let ids: Vec<&str> = records
            .iter()
            .map(|r| r.receipt.message_id.as_str())
            .collect();
        let invocation = Invocation::new(event::payload(records), self.invocation_timeout);
        tracing::debug!(request_id = %invocation.request_id, messages = ids.len(), message_ids = ?ids, "invoking with SQS batch");
        let request_id = invocation.request_id.clone();
        let result = invoke_when_ready(invoker, invocation).await;
        if released_at_shutdown(&result, self.shutting_down_soon(&result).await) {
            // Not the messages' fault: keep them tracked so shutdown releases them at once
            // instead of leaving them hidden for a visibility timeout.
            tracing::debug!(request_id = %request_id, message_ids = ?ids, "batch cut short by shutdown; its messages will be released");
            return Settled::Released;
        }
        let settlement = Settlement::new(&result, &ids, self.report_batch_item_failures);

        if !settlement.failed.is_empty() {
            // Left alone: visible again when the last extension runs out, as in Lambda; the
            // queue's redrive policy counts the receive and moves poison messages to the DLQ.
            let failed = records
                .iter()
                .filter(|r| settlement.failed.contains(&r.receipt.message_id));
            self.in_flight.untrack(failed.map(|r| &r.receipt));
            self.metrics.failed.inc_by(settlement.failed.len() as u64);
            let reason = settlement.batch_failure.as_ref().map_or_else(
                || "reported in batchItemFailures".to_owned(),
                ToString::to_string,
            );
            tracing::warn!(request_id = %request_id, message_ids = ?settlement.failed, reason = %reason, "SQS messages failed; they will be retried");
        }
        let settled = if settlement.failed.is_empty() {
            Settled::Clean
        } else {
            Settled::Failed
        };
        if settlement.succeeded.is_empty() {
            return settled;
        }
        let receipts: Vec<Receipt> = records
            .iter()
            .filter(|r| settlement.succeeded.contains(&r.receipt.message_id))
            .map(|r| r.receipt.clone())
            .collect();
        // Still tracked (and extended) while the delete is retried, so they do not reappear.
        let report = self.deleter.delete(receipts.clone()).await;
        self.in_flight.untrack(&receipts);
        self.metrics.deleted.inc_by(report.done.len() as u64);
        self.metrics
            .delete_errors
            .inc_by(report.failed.len() as u64);
        for (message_id, reason) in &report.failed {
            tracing::warn!(message_id = %message_id, reason = %reason, "could not delete a processed message; it will be delivered again");
        }
        tracing::debug!(request_id = %request_id, deleted = report.done.len(), "SQS batch settled");
        settled
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

    #[test]
    fn only_failures_caused_by_shutdown_are_released() {
        let exit = Err(InvokeError::ExitError {
            detail: "signal: 2".into(),
        });
        let timeout = Err(InvokeError::Timeout { seconds: 3.0 });
        let function_error = Ok(InvocationResponse::FunctionError {
            error_type: "Boom".into(),
            payload: Bytes::new(),
        });
        assert!(released_at_shutdown(&Err(InvokeError::ShuttingDown), false));
        assert!(released_at_shutdown(&exit, true));
        assert!(released_at_shutdown(&Err(InvokeError::NotReady), true));
        assert!(
            !released_at_shutdown(&exit, false),
            "a crash outside shutdown is a failure"
        );
        assert!(!released_at_shutdown(&timeout, true));
        assert!(!released_at_shutdown(&function_error, true));
        assert!(!released_at_shutdown(
            &Ok(InvocationResponse::Success(Bytes::new())),
            true
        ));
    }

    #[tokio::test]
    async fn not_ready_is_retried_until_a_process_is_back() {
        let ok = Ok(InvocationResponse::Success(Bytes::from_static(b"{}")));
        let (invoker, calls) = scripted(vec![
            Err(InvokeError::NotReady),
            Err(InvokeError::NotReady),
            ok.clone(),
        ]);
        let result =
            invoke_when_ready(invoker, Invocation::new("{}", Duration::from_secs(1))).await;
        assert_eq!(result, ok);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn other_failures_are_not_retried() {
        for failure in [
            Err(InvokeError::Timeout { seconds: 1.0 }),
            Err(InvokeError::ExitError {
                detail: "exit status 3".into(),
            }),
            Ok(InvocationResponse::FunctionError {
                error_type: "Boom".into(),
                payload: Bytes::new(),
            }),
        ] {
            let (invoker, calls) = scripted(vec![failure.clone()]);
            let result =
                invoke_when_ready(invoker, Invocation::new("{}", Duration::from_secs(1))).await;
            assert_eq!(result, failure);
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    /// A settler whose deletes are only counted, over `fifo` or standard queue semantics.
    fn settler(fifo: bool) -> (Settler, Arc<AtomicUsize>) {
        let deleted = Arc::new(AtomicUsize::new(0));
        let counter = deleted.clone();
        let (deleter, _task) = Deleter::start_with(move |receipts: Vec<Receipt>| {
            counter.fetch_add(receipts.len(), Ordering::SeqCst);
            async move {
                crate::sqs::queue::BatchReport {
                    done: receipts.into_iter().map(|r| r.message_id).collect(),
                    ..Default::default()
                }
            }
        });
        let policy = crate::sqs::visibility::VisibilityPolicy::new(Duration::from_secs(30), 0.5);
        let settler = Settler {
            deleter,
            in_flight: InFlight::new(Duration::from_secs(60), policy),
            metrics: SqsMetrics::register(&mut prometheus_client::registry::Registry::default()),
            report_batch_item_failures: true,
            invocation_timeout: Duration::from_secs(5),
            hold_margin: Duration::from_secs(30),
            shutdown: CancellationToken::new(),
            fifo,
        };
        (settler, deleted)
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
            let (settler, deletes) = settler(fifo);
            let (invoker, calls) = scripted(vec![failure.clone(), ok.clone()]);
            settler.process(invoker, two_part_batch()).await;
            assert_eq!(calls.load(Ordering::SeqCst), invocations, "fifo: {fifo}");
            assert_eq!(settler.metrics.failed.get(), failed, "fifo: {fifo}");
            assert_eq!(deletes.load(Ordering::SeqCst), deleted, "fifo: {fifo}");
        }
    }
}

//! [`SqsSource`]: the event source mapping's main loop, its batches and its shutdown.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::backoff::Backoff;
use super::batch_response::Settlement;
use super::event::{self, EventSource, Record};
use super::metrics::{InFlightGuard, SqsMetrics};
use super::poller::{Gathered, Poller};
use super::queue::{Queue, Receipt};
use super::visibility::{self, InFlight, VisibilityPolicy};
use super::{MAX_PAYLOAD_BYTES, MAX_WAIT_TIME, SqsArgs, SqsError, SqsHealth};
use crate::invocation::{Invocation, InvocationResponse, InvokeError};

/// The SQS event source mapping: receives from one queue and invokes the function with batches.
#[derive(Debug)]
pub struct SqsSource {
    args: SqsArgs,
    queue: Queue,
    source: EventSource,
    queue_visibility_timeout: Duration,
    metrics: SqsMetrics,
    health: SqsHealth,
}

impl SqsSource {
    /// Builds the SQS client (aws-config from the environment; honours `AWS_ENDPOINT_URL` and
    /// `AWS_REGION`), reads the queue's ARN (for `eventSourceARN`) and visibility timeout with
    /// `GetQueueAttributes`, and registers the metrics.
    ///
    /// Fails when the flags contradict each other or the queue cannot be read (SQS unreachable
    /// at start included: the adapter exits and its orchestrator restarts it).
    pub async fn new(args: SqsArgs, registry: &mut Registry) -> Result<Self, SqsError> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::with_config(args, &config, registry).await
    }

    /// As [`SqsSource::new`], with the AWS configuration given rather than read from the
    /// environment (tests point it at LocalStack without touching the process environment).
    pub async fn with_config(
        args: SqsArgs,
        config: &aws_config::SdkConfig,
        registry: &mut Registry,
    ) -> Result<Self, SqsError> {
        if args.batch_size > 10 && args.batching_window == 0 {
            // Lambda's rule: without a window a batch is one receive call, at most 10 messages.
            return Err(SqsError::Config(format!(
                "--batch-size {} needs --batching-window of at least 1 second (a batch above 10 messages is gathered over several receive calls)",
                args.batch_size
            )));
        }
        let region = config.region().map(ToString::to_string).unwrap_or_default();
        let queue = Queue::new(aws_sdk_sqs::Client::new(config), args.queue_url.clone());
        let attributes = queue
            .attributes()
            .await
            .map_err(|e| SqsError::QueueAttributes {
                queue_url: args.queue_url.clone(),
                message: e.to_string(),
            })?;
        let missing = |attribute| SqsError::MissingAttribute {
            queue_url: args.queue_url.clone(),
            attribute,
        };
        let arn = attributes.arn.ok_or_else(|| missing("QueueArn"))?;
        let queue_visibility_timeout = attributes
            .visibility_timeout
            .ok_or_else(|| missing("VisibilityTimeout"))?;
        let source = EventSource::new(arn, &region);
        tracing::info!(
            queue_url = %args.queue_url,
            queue_arn = %source.arn,
            visibility_timeout_s = queue_visibility_timeout.as_secs(),
            batch_size = args.batch_size,
            batching_window_s = args.batching_window,
            report_batch_item_failures = args.report_batch_item_failures,
            "SQS event source ready"
        );
        Ok(Self {
            args,
            queue,
            source,
            queue_visibility_timeout,
            metrics: SqsMetrics::register(registry),
            health: SqsHealth::new_connected(),
        })
    }

    /// A cheap handle for readiness: connected while the last `ReceiveMessage` call succeeded.
    pub fn health(&self) -> SqsHealth {
        self.health.clone()
    }

    /// Runs until `shutdown` fires: receives, invokes `invoker` with at most `max_concurrency`
    /// batches at once (each allowed `invocation_timeout`), settles each batch.
    ///
    /// On shutdown it issues no more receives (the long poll in progress is seen through, and
    /// long polls are capped so it ends within the grace period), lets running batches finish
    /// until the last ~2 s of `grace`, then makes every message still in flight visible again
    /// (so another worker takes it at once) and returns. SQS errors are logged and retried for
    /// ever; this only returns `Ok`.
    pub async fn run<S>(
        self,
        invoker: S,
        max_concurrency: usize,
        invocation_timeout: Duration,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Result<(), SqsError>
    where
        S: tower::Service<Invocation, Response = InvocationResponse, Error = InvokeError>
            + Clone
            + Send
            + 'static,
        S::Future: Send,
    {
        let policy = VisibilityPolicy::new(
            self.queue_visibility_timeout,
            self.args.visibility_extension_margin,
        );
        if self.queue_visibility_timeout < invocation_timeout {
            // Fine here (visibility is extended), but Lambda refuses such a mapping.
            tracing::warn!(
                visibility_timeout_s = self.queue_visibility_timeout.as_secs(),
                function_timeout_s = invocation_timeout.as_secs(),
                "the queue's visibility timeout is shorter than the function timeout; Lambda would reject this event source mapping"
            );
        }
        let window = Duration::from_secs(self.args.batching_window.into());
        // The caller bounds this whole function by `grace` too: keep a slice of it for the
        // release call, which is what makes abandoned messages visible at once.
        let drain_for = grace.saturating_sub(RELEASE_BUDGET.min(grace / 5));
        let in_flight =
            InFlight::new(window + NOT_READY_PATIENCE + invocation_timeout + policy.extend_to);
        let keeper_stop = CancellationToken::new();
        let keeper = tokio::spawn(visibility::keep_visible(
            self.queue.clone(),
            in_flight.clone(),
            policy,
            self.metrics.clone(),
            keeper_stop.clone(),
        ));
        let mut poller = Poller {
            queue: self.queue.clone(),
            source: self.source.clone(),
            in_flight: in_flight.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            batch_size: self.args.batch_size.into(),
            window,
            // Shutdown waits for the long poll in progress (see `Poller::gather`), so it must end
            // within the drain period; under a second would be short polling, a busy loop.
            max_wait: Duration::from_secs(drain_for.as_secs().clamp(1, MAX_WAIT_TIME.as_secs())),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
        };
        let settler = Settler {
            queue: self.queue.clone(),
            in_flight: in_flight.clone(),
            metrics: self.metrics.clone(),
            report_batch_item_failures: self.args.report_batch_item_failures,
            invocation_timeout,
            hold_margin: policy.extend_to,
            shutdown: shutdown.clone(),
        };

        // A slot is taken before receiving, so no message waits invisible for a free slot.
        let slots = Arc::new(Semaphore::new(max_concurrency.max(1)));
        let mut batches = JoinSet::new();
        let stopped_at = loop {
            while let Some(done) = batches.try_join_next() {
                log_batch_task_end(done);
            }
            let permit = tokio::select! {
                biased;
                () = shutdown.cancelled() => break Instant::now(),
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => break Instant::now(), // never closed; closed would mean stop
                },
            };
            match poller.gather(&shutdown).await {
                Gathered::Batch(records) => {
                    let settler = settler.clone();
                    let invoker = invoker.clone();
                    batches.spawn(async move {
                        let _permit = permit;
                        settler.process(invoker, records).await;
                    });
                }
                Gathered::Cancelled { records, at } => {
                    // Received but never invoked: still tracked, released with the rest below.
                    tracing::debug!(messages = records.len(), "receiving stopped by shutdown");
                    break at;
                }
            }
        };

        tracing::info!(
            batches = batches.len(),
            drain_s = drain_for.as_secs_f64(),
            "SQS source stopping: draining"
        );
        let drained = tokio::time::timeout_at(stopped_at + drain_for, async {
            while let Some(done) = batches.join_next().await {
                log_batch_task_end(done);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                batches = batches.len(),
                "grace period over: abandoning running batches"
            );
            batches.abort_all();
            while batches.join_next().await.is_some() {}
        }
        keeper_stop.cancel();
        if let Err(error) = keeper.await {
            tracing::error!(error = %error, "visibility keeper task failed");
        }
        let left = in_flight.drain();
        if !left.is_empty() {
            let report = self.queue.change_visibility(&left, Duration::ZERO).await;
            self.metrics.released.inc_by(report.done.len() as u64);
            tracing::warn!(message_ids = ?report.done, "released in-flight messages at shutdown");
            for (message_id, reason) in &report.failed {
                tracing::warn!(
                    message_id = %message_id,
                    reason = %reason,
                    "could not release message; it becomes visible when its visibility timeout ends"
                );
            }
        }
        tracing::info!("SQS source stopped");
        Ok(())
    }
}

/// Most of the shutdown grace period kept for releasing what is still in flight.
const RELEASE_BUDGET: Duration = Duration::from_secs(2);

fn log_batch_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done
        && error.is_panic()
    {
        // Its messages stay tracked and are released at shutdown or time out; never deleted.
        tracing::error!(error = %error, "a batch task panicked");
    }
}

/// How long a batch waits for a function process to come back before it counts as failed.
const NOT_READY_PATIENCE: Duration = Duration::from_secs(30);

/// Invokes, retrying while no function process is up (one is restarting after a crash): the
/// function never saw the batch, and failing it at once would spend a receive of every message
/// and, with a low `maxReceiveCount`, send good messages to the DLQ while the function restarts.
/// The batch's slot stays taken meanwhile, so the poller does not churn through the queue.
async fn invoke_when_ready<S>(
    invoker: S,
    invocation: Invocation,
) -> Result<InvocationResponse, InvokeError>
where
    S: tower::Service<Invocation, Response = InvocationResponse, Error = InvokeError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
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
struct Settler {
    queue: Queue,
    in_flight: InFlight,
    metrics: SqsMetrics,
    report_batch_item_failures: bool,
    invocation_timeout: Duration,
    /// How long past its invocation's end a message may stay hidden: one extension.
    hold_margin: Duration,
    /// The adapter's shutdown: failures it causes are not the batch's.
    shutdown: CancellationToken,
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
    async fn process<S>(&self, invoker: S, records: Vec<Record>)
    where
        S: tower::Service<Invocation, Response = InvocationResponse, Error = InvokeError>
            + Clone
            + Send
            + 'static,
        S::Future: Send,
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
            self.invoke_and_settle(invoker.clone(), part).await;
        }
    }

    async fn invoke_and_settle<S>(&self, invoker: S, records: &[Record])
    where
        S: tower::Service<Invocation, Response = InvocationResponse, Error = InvokeError>
            + Clone
            + Send
            + 'static,
        S::Future: Send,
    {
        let ids: Vec<&str> = records
            .iter()
            .map(|r| r.receipt.message_id.as_str())
            .collect();
        let invocation = Invocation::new(event::payload(records), self.invocation_timeout);
        tracing::debug!(request_id = %invocation.request_id, messages = ids.len(), message_ids = ?ids, "invoking with SQS batch");
        let request_id = invocation.request_id.clone();
        let result = invoke_when_ready(invoker, invocation).await;
        if released_at_shutdown(&result, self.shutdown.is_cancelled()) {
            // Not the messages' fault: keep them tracked so shutdown releases them at once
            // instead of leaving them hidden for a visibility timeout.
            tracing::debug!(request_id = %request_id, message_ids = ?ids, "batch cut short by shutdown; its messages will be released");
            return;
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
        if settlement.succeeded.is_empty() {
            return;
        }
        let receipts: Vec<Receipt> = records
            .iter()
            .filter(|r| settlement.succeeded.contains(&r.receipt.message_id))
            .map(|r| r.receipt.clone())
            .collect();
        // Still tracked (and extended) while the delete is retried, so they do not reappear.
        let report = self.queue.delete(&receipts).await;
        self.in_flight.untrack(&receipts);
        self.metrics.deleted.inc_by(report.done.len() as u64);
        self.metrics
            .delete_errors
            .inc_by(report.failed.len() as u64);
        for (message_id, reason) in &report.failed {
            tracing::warn!(message_id = %message_id, reason = %reason, "could not delete a processed message; it will be delivered again");
        }
        tracing::debug!(request_id = %request_id, deleted = report.done.len(), "SQS batch settled");
    }
}

#[cfg(test)]
mod tests {
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
}

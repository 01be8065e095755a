//! [`SqsSource`]: the event source mapping's main loop, its batches and its shutdown.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::deleter::Deleter;
use super::event::EventSource;
use super::metrics::SqsMetrics;
use super::poller::{Batching, Poller, ReadyBatch, poll_loop};
use super::queue::Queue;
use super::settler::{NOT_READY_PATIENCE, Settler};
use super::visibility::{self, InFlight, VisibilityPolicy};
use super::{MAX_WAIT_TIME, SqsArgs, SqsError, SqsHealth};
use crate::invocation::Invoke;

/// The SQS event source mapping: receives from one queue and invokes the function with batches.
#[derive(Debug)]
pub struct SqsSource {
    args: SqsArgs,
    queue: Queue,
    source: EventSource,
    queue_visibility_timeout: Duration,
    /// A FIFO queue: a receive's messages stay one batch, in order (see `poll_loop`).
    fifo: bool,
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
        let config = sdk_config().await;
        Self::with_config(args, &config, registry).await
    }

    /// As [`SqsSource::new`], but waits out an SQS that cannot be reached yet (the adapter may
    /// start before the network or LocalStack is up): retries with backoff until the queue
    /// answers or `shutdown` fires (then `Ok(None)`). A definite answer (no such queue, access
    /// denied) and contradictory flags still fail at once: waiting would not fix them.
    pub async fn connect(
        args: SqsArgs,
        registry: &mut Registry,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<Option<Self>, SqsError> {
        let config = sdk_config().await;
        let mut backoff =
            super::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            match Self::with_config(args.clone(), &config, registry).await {
                Err(SqsError::QueueAttributes {
                    message,
                    retryable: true,
                    ..
                }) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(queue_url = %args.queue_url, error = %message, retry_in_ms = delay.as_millis() as u64, "SQS unreachable at start; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Ok(None),
                    }
                }
                other => return other.map(Some),
            }
        }
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
                retryable: e.retryable,
            })?;
        let missing = |attribute| SqsError::MissingAttribute {
            queue_url: args.queue_url.clone(),
            attribute,
        };
        let arn = attributes.arn.ok_or_else(|| missing("QueueArn"))?;
        // SQS requires FIFO queue names to end in `.fifo`.
        let fifo = arn.ends_with(".fifo");
        if fifo && args.batch_size > 10 {
            return Err(SqsError::Config(format!(
                "--batch-size {} is too large for a FIFO queue: at most 10 (Lambda's rule)",
                args.batch_size
            )));
        }
        if fifo && args.batching_window > 0 {
            return Err(SqsError::Config(
                "--batching-window is not supported for FIFO queues (Lambda's rule); leave it at 0"
                    .to_owned(),
            ));
        }
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
            fifo,
            metrics: SqsMetrics::register(registry),
            health: SqsHealth::new_connected(),
        })
    }

    /// A cheap handle for readiness: connected while some poller's last `ReceiveMessage` call
    /// succeeded.
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
    /// ever. It returns an error only if one of its tasks fails (a bug): it then drains and
    /// releases as at shutdown.
    pub async fn run<S>(
        self,
        invoker: S,
        max_concurrency: usize,
        invocation_timeout: Duration,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Result<(), SqsError>
    where
        S: Invoke,
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
        let in_flight = InFlight::new(
            window + NOT_READY_PATIENCE + invocation_timeout + policy.extend_to,
            policy,
        );
        let keeper_stop = CancellationToken::new();
        let mut keeper = tokio::spawn(visibility::keep_visible(
            self.queue.clone(),
            in_flight.clone(),
            policy,
            self.metrics.clone(),
            keeper_stop.clone(),
        ));
        // Shutdown waits for the long poll in progress (see `Poller::gather`), so it must end
        // within the drain period; under a second would be short polling, a busy loop.
        let max_wait = Duration::from_secs(drain_for.as_secs().clamp(1, MAX_WAIT_TIME.as_secs()));
        let (deleter, mut deleter_task) = Deleter::start(self.queue.clone());
        let settler = Settler {
            deleter,
            in_flight: in_flight.clone(),
            metrics: self.metrics.clone(),
            report_batch_item_failures: self.args.report_batch_item_failures,
            invocation_timeout,
            hold_margin: policy.extend_to,
            shutdown: shutdown.clone(),
            fifo: self.fifo,
        };

        // Several receive loops, as Lambda runs several pollers: one loop is one receive round
        // trip at a time, which caps the drain far below what the queue serves. They hand their
        // batches here, where batch tasks are spawned and, at shutdown, drained.
        let slots = Arc::new(Semaphore::new(max_concurrency.max(1)));
        // Pollers stop at shutdown, or when a task of the source fails (a poller, the deleter, the
        // visibility keeper): then the source drains and returns the failure, and the adapter
        // exits non-zero for its orchestrator to restart it, rather than run on crippled (fewer
        // pollers, no deletes, no extensions) with /readyz still green.
        let stop = shutdown.child_token();
        let mut failure = Failure {
            reason: None,
            stop: stop.clone(),
        };
        let poller_count = self.args.poller_count(max_concurrency);
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let mut pollers = JoinSet::new();
        for _ in 0..poller_count {
            let poller = Poller {
                queue: self.queue.clone(),
                source: self.source.clone(),
                in_flight: in_flight.clone(),
                metrics: self.metrics.clone(),
                health: self.health.poller(),
                window,
                max_wait,
                backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
            };
            pollers.spawn(poll_loop(
                poller,
                slots.clone(),
                Batching {
                    size: usize::from(self.args.batch_size),
                    // Not for FIFO: the messages of one group, split over concurrent batches,
                    // would run at once and out of order.
                    fill_slots: window.is_zero() && !self.fifo,
                },
                ready_tx.clone(),
                stop.clone(),
            ));
        }
        drop(ready_tx);
        tracing::debug!(pollers = poller_count, "receiving");

        let mut batches = JoinSet::new();
        let mut stopped_at: Option<Instant> = None;
        let mut poller_stopped = |stopped: Result<Instant, tokio::task::JoinError>,
                                  failure: &mut Failure| {
            let at = match stopped {
                Ok(at) if stop.is_cancelled() => at,
                // A poller only returns once `stop` fires: before that, it failed.
                Ok(_) => failure.set("a poller stopped on its own".to_owned()),
                Err(error) => failure.set(format!("a poller task failed: {error}")),
            };
            stopped_at = Some(stopped_at.map_or(at, |first| first.min(at)));
        };
        // Whether the helper tasks still run (a finished `JoinHandle` must not be polled again).
        let (mut keeper_running, mut deleter_running) = (true, true);
        loop {
            tokio::select! {
                ready = ready_rx.recv() => match ready {
                    Some(ReadyBatch { permit, records }) => {
                        let settler = settler.clone();
                        let invoker = invoker.clone();
                        batches.spawn(async move {
                            let _permit = permit;
                            settler.process(invoker, records).await;
                        });
                    }
                    // Every poller has stopped: shutdown.
                    None => break,
                },
                Some(done) = batches.join_next(), if !batches.is_empty() => log_batch_task_end(done),
                Some(stopped) = pollers.join_next() => poller_stopped(stopped, &mut failure),
                // Both only end when told to, after this loop.
                ended = &mut keeper, if keeper_running => {
                    keeper_running = false;
                    failure.set(format!("the visibility keeper ended: {}", task_end(ended)));
                }
                ended = &mut deleter_task, if deleter_running => {
                    deleter_running = false;
                    failure.set(format!("the deleter ended: {}", task_end(ended)));
                }
            }
        }
        while let Some(stopped) = pollers.join_next().await {
            poller_stopped(stopped, &mut failure);
        }
        let stopped_at = stopped_at.unwrap_or_else(Instant::now);

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
        // The deleter ends once its handles are gone and its calls done. Abandoned batches' calls
        // are dropped with it: their messages are still tracked, and released below.
        drop(settler);
        if deleter_running {
            if drained.is_err() {
                deleter_task.abort();
            }
            if let Err(error) = deleter_task.await
                && error.is_panic()
            {
                failure.set(format!("the deleter failed: {error}"));
            }
        }
        keeper_stop.cancel();
        if keeper_running && let Err(error) = keeper.await {
            failure.set(format!("the visibility keeper failed: {error}"));
        }
        let left = in_flight.drain();
        if !left.is_empty() {
            // A few tries: a message not released waits out its visibility timeout (minutes,
            // with the extensions) before another worker may run it. Bounded, though: the caller
            // gives the source a few seconds past the grace period (`app::SOURCE_RELEASE_MARGIN`)
            // and then stops waiting, and nothing would be said of the messages left.
            let release = self
                .queue
                .change_visibility(&left, Duration::ZERO, RELEASE_ATTEMPTS);
            let deadline = stopped_at + grace + RELEASE_BUDGET;
            let Ok(report) = tokio::time::timeout_at(deadline, release).await else {
                tracing::warn!(
                    messages = left.len(),
                    "the release at shutdown ran out of time; messages not released become visible when their visibility timeout ends"
                );
                return match failure.reason {
                    Some(reason) => Err(SqsError::Stopped(reason)),
                    None => Ok(()),
                };
            };
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
        match failure.reason {
            Some(reason) => Err(SqsError::Stopped(reason)),
            None => Ok(()),
        }
    }
}

/// The first failure of one of the source's tasks, which stops the pollers.
struct Failure {
    reason: Option<String>,
    stop: CancellationToken,
}

impl Failure {
    /// Records `reason` (the first one is kept), stops the pollers, and returns when.
    fn set(&mut self, reason: String) -> Instant {
        tracing::error!(reason = %reason, "SQS source stopping: one of its tasks failed");
        self.reason.get_or_insert(reason);
        self.stop.cancel();
        Instant::now()
    }
}

/// How a helper task that should still be running ended.
fn task_end(ended: Result<(), tokio::task::JoinError>) -> String {
    match ended {
        Ok(()) => "returned early".to_owned(),
        Err(error) => error.to_string(),
    }
}

/// Most of the shutdown grace period kept for releasing what is still in flight.
const RELEASE_BUDGET: Duration = Duration::from_secs(2);

/// How often releasing a message at shutdown is tried.
const RELEASE_ATTEMPTS: u32 = 3;

fn log_batch_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done
        && error.is_panic()
    {
        // Its messages stay tracked and are released at shutdown or time out; never deleted.
        tracing::error!(error = %error, "a batch task panicked");
    }
}

/// The AWS configuration from the environment, with every SQS call bounded in time.
///
/// The SDK's defaults bound only the connect. A connection that goes silent without closing (a
/// lost NAT entry, a half-open TCP connection) would then hang a receive for ever, with `/readyz`
/// still green, or hang a delete while it holds a concurrency slot. An attempt may take the
/// longest long poll (20 s) plus room for a slow answer; the SDK retries a timed-out attempt.
async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(90))
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

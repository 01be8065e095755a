//! [`SqsSource`]: connects to the queue, then runs the mapping's tasks and owns their shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::BatchRunner;
use super::client::{QueueClient, Receipt, sdk_config};
use super::deleter::Deleter;
use super::health::SqsMetrics;
use super::in_flight::{InFlightMessages, VisibilityPolicy};
use super::poller::Poller;
use super::record::QueueIdentity;
use super::{MAX_WAIT_TIME, SqsArgs, SqsError, SqsHealth, TaskFailure};
use crate::backoff::Backoff;
use crate::invocation::Invoke;
use crate::shutdown::ShutdownBudget;

/// The SQS event source mapping: receives from one queue and invokes the function with batches.
#[derive(Debug)]
pub struct SqsSource {
    args: SqsArgs,
    client: QueueClient,
    queue: QueueIdentity,
    visibility_timeout: Duration,
    fifo: bool,
    metrics: SqsMetrics,
    health: SqsHealth,
}

/// How [`SqsSource::run`] runs: what the function host allows and the shutdown's deadlines.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    /// Most batches invoked at once (`--max-concurrency`).
    pub max_concurrency: usize,
    /// How long one invocation may run (`--timeout`).
    pub invocation_timeout: Duration,
    /// The shutdown's deadlines.
    pub budget: ShutdownBudget,
}

/// How often releasing a message at shutdown is tried.
const RELEASE_ATTEMPTS: u32 = 3;

const POLLER: &str = "poller";
const KEEPER: &str = "visibility keeper";
const DELETER: &str = "deleter";

impl SqsSource {
    /// [`SqsSource::with_config`] with aws-config from the environment, waiting out an SQS not
    /// reachable yet until `shutdown` (then `Ok(None)`); bad flags or no such queue fail at once.
    pub async fn connect(
        args: SqsArgs,
        registry: &mut Registry,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>, SqsError> {
        let config = sdk_config().await;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            match Self::with_config(args.clone(), &config, registry).await {
                Err(SqsError::QueueAttributes(_, source)) if source.retryable => {
                    let delay = backoff.next_delay();
                    tracing::warn!(queue_url = %args.queue_url, error = %source, retry_in_ms = delay.as_millis() as u64, "SQS unreachable at start; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Ok(None),
                    }
                }
                other => return other.map(Some),
            }
        }
    }

    /// Checks the flags, reads the queue's ARN and visibility timeout, registers the metrics.
    pub async fn with_config(
        args: SqsArgs,
        config: &aws_config::SdkConfig,
        registry: &mut Registry,
    ) -> Result<Self, SqsError> {
        args.check(false)?;
        let region = config.region().map(ToString::to_string).unwrap_or_default();
        let queue_url = args.queue_url.clone();
        let client = QueueClient::new(aws_sdk_sqs::Client::new(config), queue_url.clone());
        let (arn, visibility_timeout) = match client.attributes().await {
            Ok(attributes) => attributes,
            Err(source) => return Err(SqsError::QueueAttributes(queue_url, source)),
        };
        let missing = |attribute| SqsError::MissingAttribute(queue_url.clone(), attribute);
        let arn = arn.ok_or_else(|| missing("QueueArn"))?;
        // SQS requires FIFO queue names to end in `.fifo`.
        let fifo = arn.ends_with(".fifo");
        args.check(fifo)?;
        let visibility_timeout = visibility_timeout.ok_or_else(|| missing("VisibilityTimeout"))?;
        let queue = QueueIdentity::new(arn, &region);
        tracing::info!(
            queue_url = %args.queue_url,
            queue_arn = %queue.arn,
            visibility_timeout_s = visibility_timeout.as_secs(),
            batch_size = args.batch_size,
            batching_window_s = args.batching_window,
            report_batch_item_failures = args.report_batch_item_failures,
            "SQS event source ready"
        );
        Ok(Self {
            args,
            client,
            queue,
            visibility_timeout,
            fifo,
            metrics: SqsMetrics::register(registry),
            // Connected until proven otherwise: it has just talked to the queue.
            health: SqsHealth::default(),
        })
    }

    /// A cheap handle for readiness.
    pub fn health(&self) -> SqsHealth {
        self.health.clone()
    }

    /// Runs until `shutdown` fires, then drains and releases (module map). SQS errors are retried
    /// for ever; it fails only if one of its tasks fails (a bug), after draining and releasing.
    pub async fn run<S: Invoke>(
        self,
        invoker: S,
        config: RunConfig,
        shutdown: CancellationToken,
    ) -> Result<(), SqsError> {
        let margin = self.args.visibility_extension_margin;
        let policy = VisibilityPolicy::new(self.visibility_timeout, margin);
        if self.visibility_timeout < config.invocation_timeout {
            // Fine here (visibility is extended), but Lambda refuses such a mapping.
            tracing::warn!(
                visibility_timeout_s = self.visibility_timeout.as_secs(),
                function_timeout_s = config.invocation_timeout.as_secs(),
                "the queue's visibility timeout is shorter than the function timeout; Lambda would reject this event source mapping"
            );
        }
        let window = Duration::from_secs(self.args.batching_window.into());
        let in_flight =
            InFlightMessages::new(window + policy.hold(config.invocation_timeout), policy);
        // Pollers stop at shutdown, or when a task fails; the keeper only once batches are done.
        let stop = shutdown.child_token();
        let keeper_stop = CancellationToken::new();
        let mut tasks = Tasks::default();
        let (client, metrics) = (self.client.clone(), self.metrics.clone());
        let keeping = in_flight.clone();
        let keeping = keeping.keep_visible(client, metrics, keeper_stop.clone());
        tasks.spawn(KEEPER, keeping);
        let (deleter, deleting) = Deleter::start(self.client.clone());
        let deleter_task = tasks.spawn(DELETER, deleting);
        let runner = BatchRunner {
            deleter: deleter.clone(),
            in_flight: in_flight.clone(),
            metrics: self.metrics.clone(),
            report_batch_item_failures: self.args.report_batch_item_failures,
            invocation_timeout: config.invocation_timeout,
            policy,
            shutdown: shutdown.clone(),
            fifo: self.fifo,
        };

        // Several receive loops, as Lambda runs several pollers: one round trip at a time is slow.
        let slots = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
        // Within the drain, as shutdown waits for it; under a second would be a busy loop.
        let drain = config.budget.drain();
        let max_wait = Duration::from_secs(drain.as_secs().clamp(1, MAX_WAIT_TIME.as_secs()));
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let poller_count = self.args.poller_count(config.max_concurrency);
        for _ in 0..poller_count {
            let poller = Poller {
                client: self.client.clone(),
                queue: self.queue.clone(),
                in_flight: in_flight.clone(),
                metrics: self.metrics.clone(),
                health: self.health.poller(),
                filter: self.args.filter_criteria.clone().filter(|f| !f.is_empty()),
                deleter: deleter.clone(),
                batch_size: usize::from(self.args.batch_size),
                window,
                // Not for FIFO: a group split over concurrent batches would run out of order.
                fill_slots: window.is_zero() && !self.fifo,
                max_wait,
            };
            let receiving = poller.run(slots.clone(), ready_tx.clone(), stop.clone());
            tasks.spawn(POLLER, receiving);
        }
        drop(ready_tx);
        // The deleter task ends when its last handle goes: the runner's and the pollers' only.
        drop(deleter);
        tracing::debug!(pollers = poller_count, "receiving");

        let mut batches = JoinSet::new();
        let mut stopped_at: Option<Instant> = None;
        loop {
            tokio::select! {
                ready = ready_rx.recv() => match ready {
                    Some((permit, records)) => {
                        let (runner, invoker) = (runner.clone(), invoker.clone());
                        batches.spawn(async move {
                            let _permit = permit;
                            runner.process(invoker, records).await;
                        });
                    }
                    // Every poller has stopped.
                    None => break,
                },
                () = stop.cancelled(), if stopped_at.is_none() => stopped_at = Some(Instant::now()),
                Some(done) = batches.join_next(), if !batches.is_empty() => log_batch_end(done),
                Some((task, ended)) = tasks.next() => {
                    // Pollers end once `stop` fires; the others only when told, after this loop.
                    if ended.is_err() || task != POLLER || !stop.is_cancelled() {
                        tasks.failed(task, ended);
                        stop.cancel();
                    }
                }
            }
        }
        let stopped_at = stopped_at.unwrap_or_else(Instant::now);

        tracing::info!(
            batches = batches.len(),
            drain_s = drain.as_secs_f64(),
            "SQS source stopping: draining"
        );
        let drained = tokio::time::timeout_at(stopped_at + drain, async {
            while let Some(done) = batches.join_next().await {
                log_batch_end(done);
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
            // Abandoned batches' deletes go with it: their messages are released below.
            deleter_task.abort();
        }
        // The deleter ends once its handles are gone and its calls done; the keeper when told.
        drop(runner);
        keeper_stop.cancel();
        while let Some((task, ended)) = tasks.next().await {
            if matches!(&ended, Err(error) if error.is_panic()) {
                tasks.failed(task, ended);
            }
        }
        self.release(in_flight.drain(), stopped_at + config.budget.release_by())
            .await;
        tracing::info!("SQS source stopped");
        let failure = tasks.failure.map(SqsError::Stopped);
        failure.map_or(Ok(()), Err)
    }

    /// Makes `left` visible again at once, so another worker takes it, by `deadline`.
    async fn release(&self, left: Vec<Receipt>, deadline: Instant) {
        if left.is_empty() {
            return;
        }
        let client = &self.client;
        let release = client.change_visibility(&left, Duration::ZERO, RELEASE_ATTEMPTS);
        let Ok(report) = tokio::time::timeout_at(deadline, release).await else {
            tracing::warn!(
                messages = left.len(),
                "the release at shutdown ran out of time; messages not released become visible when their visibility timeout ends"
            );
            return;
        };
        self.metrics.released.inc_by(report.done.len() as u64);
        tracing::warn!(message_ids = ?report.done, "released in-flight messages at shutdown");
        for (message_id, reason) in &report.failed {
            tracing::warn!(
                %message_id,
                %reason,
                "could not release message; it becomes visible when its visibility timeout ends"
            );
        }
    }
}

/// The source's long-lived tasks, each known by name, and the first that failed.
#[derive(Default)]
struct Tasks {
    set: JoinSet<()>,
    names: HashMap<tokio::task::Id, &'static str>,
    failure: Option<TaskFailure>,
}

impl Tasks {
    fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> AbortHandle {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
        handle
    }

    /// The next task to end, by name, and how it ended.
    async fn next(&mut self) -> Option<(&'static str, Result<(), JoinError>)> {
        let (id, ended) = match self.set.join_next_with_id().await? {
            Ok((id, ())) => (id, Ok(())),
            Err(error) => (error.id(), Err(error)),
        };
        Some((self.names.remove(&id).unwrap_or("task"), ended))
    }

    /// Keeps the first failure of a task (the later ones follow from it) and logs each.
    fn failed(&mut self, task: &'static str, ended: Result<(), JoinError>) {
        let error = match ended {
            Ok(()) => TaskFailure::Returned(task),
            Err(source) => TaskFailure::Panicked(task, source),
        };
        tracing::error!(error = %error, "SQS source stopping: one of its tasks failed");
        self.failure.get_or_insert(error);
    }
}

fn log_batch_end(done: Result<(), JoinError>) {
    if let Some(error) = done.err().filter(JoinError::is_panic) {
        // Its messages stay registered and are released at shutdown or time out; never deleted.
        tracing::error!(%error, "a batch task panicked");
    }
}

//! The function host: runs the function binary as a pool of processes, serves each one the Lambda
//! Runtime API, and exposes the pool as a [`tower::Service`] ([`Invoker`]) that event sources call.
//!
//! `--max-concurrency N` invocations run at once over `ceil(N / K)` processes, K being
//! `--per-process-concurrency`. Waiting for a free slot is backpressure inside the invoker's
//! future, never an error.

pub(crate) mod metrics;
mod peer_check;
pub(crate) mod process;
pub(crate) mod queue;
pub(crate) mod quick_ack;
mod supervisor;
mod tcp_table;

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::invocation::{Invocation, InvocationResponse, InvokeError};
use crate::runtime_api::{self, RuntimeApi};
use metrics::HostMetrics;
use peer_check::PeerCheckedListener;
use process::Slot;
use queue::{Job, Reply, WorkQueue};
use supervisor::FunctionCommand;

/// How to run the hosted function.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The function binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// `AWS_LAMBDA_FUNCTION_NAME`.
    pub function_name: String,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MB.
    pub memory_size: u32,
    /// `AWS_LAMBDA_LOG_GROUP_NAME`.
    pub log_group: String,
    /// Region and account in the function ARN the function sees.
    pub region: String,
    /// Account id in the function ARN.
    pub account_id: String,
    /// Invocations in flight at most, over all processes.
    pub max_concurrency: usize,
    /// Invocations one process takes at once (`AWS_LAMBDA_MAX_CONCURRENCY` when above 1).
    pub per_process_concurrency: usize,
    /// How long a new process has to call `/next`.
    pub init_timeout: Duration,
    /// Serve each Runtime API to any local process, not only to its function process and the
    /// function's descendants (see `peer_check`).
    pub runtime_api_open: bool,
}

impl HostConfig {
    /// How many processes run: enough for `max_concurrency` at `per_process_concurrency` each.
    pub fn process_count(&self) -> usize {
        self.max_concurrency
            .div_ceil(self.per_process_concurrency.max(1))
            .max(1)
    }

    /// The ARN the function is told it was invoked as.
    pub fn function_arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, self.function_name
        )
    }

    /// The environment Lambda gives a function, less the per-process variables.
    fn lambda_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "AWS_LAMBDA_FUNCTION_NAME".into(),
                self.function_name.clone(),
            ),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
                self.memory_size.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME".into(), self.log_group.clone()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
        ];
        if self.per_process_concurrency > 1 {
            env.push((
                "AWS_LAMBDA_MAX_CONCURRENCY".into(),
                self.per_process_concurrency.to_string(),
            ));
        }
        env
    }
}

/// Why the host could not start or never became ready.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A loopback listener for the Runtime API could not be bound.
    #[error("could not bind the Runtime API listener on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    /// No process called `/next` in time.
    #[error("no function process initialised within {seconds} s: {reason}")]
    InitTimeout {
        /// The init timeout.
        seconds: f64,
        /// The last failure seen, or why none was.
        reason: String,
    },
    /// A process failed to initialise, and the host was told to give up at the first failure.
    #[error("the function failed to initialise: {reason}")]
    InitFailed {
        /// What went wrong.
        reason: String,
    },
}

/// What [`FunctionHost::wait_until_ready`] does when a process fails to initialise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitFailures {
    /// Restart it with backoff until the init timeout (a service: the next try may work).
    Retry,
    /// Fail at once, as Lambda fails the invocation that met a failed init (`adapter emulate`).
    FailFast,
}

struct Shared {
    queue: Arc<WorkQueue>,
    permits: Arc<Semaphore>,
    metrics: Arc<HostMetrics>,
    /// Fired when the host shuts down: ends waits for a restarting process.
    closing: CancellationToken,
}

/// The running pool of function processes.
pub struct FunctionHost {
    shared: Arc<Shared>,
    slots: Vec<Arc<Slot>>,
    tasks: JoinSet<()>,
    servers: JoinSet<()>,
    stop: CancellationToken,
}

impl FunctionHost {
    /// Binds one loopback Runtime API per process, starts the processes, and registers the host's
    /// metrics in `registry`. Returns at once: see [`FunctionHost::wait_until_ready`].
    pub async fn start(config: HostConfig, registry: &mut Registry) -> Result<Self, HostError> {
        let metrics = Arc::new(HostMetrics::new(registry));
        let queue = Arc::new(WorkQueue::new(metrics.clone()));
        let shared = Arc::new(Shared {
            queue: queue.clone(),
            permits: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            metrics: metrics.clone(),
            closing: CancellationToken::new(),
        });
        let command = Arc::new(FunctionCommand {
            program: config.program.clone(),
            args: config.args.clone(),
            env: config.lambda_env(),
            init_timeout: config.init_timeout,
        });
        let function_arn: Arc<str> = config.function_arn().into();
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut servers = JoinSet::new();
        let mut slots = Vec::new();
        for index in 0..config.process_count() {
            let listener = TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(HostError::Bind)?;
            let addr = listener.local_addr().map_err(HostError::Bind)?;
            let slot = Arc::new(Slot::new(index, addr));
            let router = runtime_api::router(RuntimeApi {
                slot: slot.clone(),
                queue: queue.clone(),
                function_arn: function_arn.clone(),
            });
            if config.runtime_api_open {
                servers.spawn(serve_runtime_api(listener, router));
            } else {
                let listener = PeerCheckedListener::new(
                    listener,
                    addr,
                    slot.clone(),
                    metrics.runtime_api_refused(),
                );
                servers.spawn(serve_runtime_api(listener, router));
            }
            tasks.spawn(supervisor::supervise(
                slot.clone(),
                command.clone(),
                queue.clone(),
                metrics.clone(),
                stop.clone(),
            ));
            slots.push(slot);
        }
        tracing::info!(
            function = %config.program.display(),
            processes = slots.len(),
            max_concurrency = config.max_concurrency,
            per_process_concurrency = config.per_process_concurrency,
            runtime_api_open = config.runtime_api_open,
            "function host started"
        );
        Ok(Self {
            shared,
            slots,
            tasks,
            servers,
            stop,
        })
    }

    /// The service event sources invoke the function through.
    pub fn invoker(&self) -> Invoker {
        Invoker {
            shared: self.shared.clone(),
        }
    }

    /// How many processes are ready (have called `/next`), as it changes.
    pub fn ready_processes(&self) -> watch::Receiver<usize> {
        self.shared.queue.ready_processes()
    }

    /// Waits until at least one process has called `/next`.
    pub async fn wait_until_ready(
        &self,
        timeout: Duration,
        failures: InitFailures,
    ) -> Result<(), HostError> {
        let mut ready = self.ready_processes();
        let first_failure = async {
            if failures == InitFailures::Retry {
                return std::future::pending().await;
            }
            let waits = self.slots.iter().map(|slot| {
                let mut failures = slot.failures();
                Box::pin(async move { failures.wait_for(|n| *n > 0).await.map(|_| ()) })
            });
            let _ = futures::future::select_all(waits).await;
        };
        let ready_or_failed = async {
            tokio::select! {
                ready = ready.wait_for(|n| *n > 0) => ready.is_ok(),
                () = first_failure => false,
            }
        };
        match tokio::time::timeout(timeout, ready_or_failed).await {
            Ok(true) => Ok(()),
            Ok(false) if failures == InitFailures::FailFast => Err(HostError::InitFailed {
                reason: self
                    .slots
                    .iter()
                    .find_map(|slot| slot.last_failure())
                    .unwrap_or_else(|| "the function process stopped".to_owned()),
            }),
            _ => Err(HostError::InitTimeout {
                seconds: timeout.as_secs_f64(),
                reason: self
                    .slots
                    .iter()
                    .find_map(|slot| slot.last_failure())
                    .unwrap_or_else(|| "the function never called /next".to_owned()),
            }),
        }
    }

    /// Refuses new invocations, fails those still queued, then stops the processes: SIGTERM, and
    /// SIGKILL for any still there two seconds later.
    pub async fn shutdown(mut self) {
        self.shared.permits.close();
        self.shared.closing.cancel();
        self.shared.queue.close();
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.servers.shutdown().await;
        tracing::info!("function host stopped");
    }
}

/// Serves one slot's Runtime API until the host stops it.
async fn serve_runtime_api<L>(listener: L, router: axum::Router)
where
    L: axum::serve::Listener<Io = tokio::net::TcpStream>,
    L::Addr: std::fmt::Debug,
{
    let listener = quick_ack::QuickAckListener(listener);
    let service = router.into_make_service_with_connect_info::<quick_ack::QuickAckSwitch>();
    if let Err(error) = axum::serve(listener, service).await {
        tracing::error!(%error, "Runtime API server failed");
    }
}

/// The function host as a [`tower::Service`]: resolves with the function's reply.
///
/// Cheap to clone. `poll_ready` is always ready; a call waits for a free slot inside its future
/// (backpressure), and fails only with the reasons in [`InvokeError`].
#[derive(Clone)]
pub struct Invoker {
    shared: Arc<Shared>,
}

impl tower::Service<Invocation> for Invoker {
    type Response = InvocationResponse;
    type Error = InvokeError;
    type Future = Pin<Box<dyn Future<Output = Result<InvocationResponse, InvokeError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), InvokeError>> {
        if self.shared.permits.is_closed() {
            return Poll::Ready(Err(InvokeError::ShuttingDown));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, invocation: Invocation) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let accepted = tokio::time::Instant::now();
            // Every invocation is bounded from the moment it is accepted: waiting for a slot, in
            // the queue and for a restarting process all count against its timeout (or the wait
            // its source allows), so no caller waits for ever on processes that never take work.
            // Once a process has taken it, the process's own timer bounds the run.
            let deadline = accepted
                + invocation
                    .max_wait_for_process
                    .unwrap_or(invocation.timeout);
            let not_ready = |shared: &Shared| {
                let result = Err(InvokeError::NotReady);
                shared.metrics.record(&result, accepted.elapsed());
                result
            };
            let mut invocation = invocation;
            loop {
                let permit = tokio::select! {
                    permit = shared.permits.clone().acquire_owned() => {
                        permit.map_err(|_| InvokeError::ShuttingDown)?
                    }
                    () = tokio::time::sleep_until(deadline) => return not_ready(&shared),
                };
                let (job, reply) = Job::new(invocation, permit, shared.metrics.clone());
                let id = WorkQueue::id_of(&job);
                shared.queue.submit(job);
                tokio::pin!(reply);
                let reply = tokio::select! {
                    reply = &mut reply => reply,
                    () = tokio::time::sleep_until(deadline) => {
                        // Still queued: no process took it in time. Taken: its run is bounded
                        // by the process's timer, and the caller hears how it ends.
                        if let Some(job) = shared.queue.withdraw(id) {
                            tracing::warn!(
                                request_id = %job.invocation.request_id,
                                "no function process took the invocation within its timeout"
                            );
                            job.complete(Err(InvokeError::NotReady));
                        }
                        reply.await
                    }
                };
                // The sender only drops without a reply if the host itself is torn down.
                invocation = match reply {
                    Ok(Reply::Done(result)) => return result,
                    Ok(Reply::NotTaken(untaken)) => untaken,
                    Err(_) => return Err(InvokeError::ShuttingDown),
                };
                // No process is up: one is restarting after a crash or a timeout. No process took
                // the invocation, so it waits for one, within its own timeout counted from when
                // it was accepted, as Lambda's front holds an invoke while a sandbox starts;
                // failing it at once would fail healthy requests for a neighbour's crash.
                let mut ready = shared.queue.ready_processes();
                let waited = tokio::select! {
                    waited = tokio::time::timeout_at(deadline, ready.wait_for(|n| *n > 0)) => {
                        matches!(waited, Ok(Ok(_)))
                    }
                    () = shared.closing.cancelled() => {
                        let result = Err(InvokeError::ShuttingDown);
                        shared.metrics.record(&result, accepted.elapsed());
                        return result;
                    }
                };
                if !waited {
                    return not_ready(&shared);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: usize, per_process: usize) -> HostConfig {
        HostConfig {
            program: PathBuf::from("/bin/true"),
            args: Vec::new(),
            function_name: "f".into(),
            memory_size: 128,
            log_group: "/aws/lambda/f".into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            max_concurrency: max,
            per_process_concurrency: per_process,
            init_timeout: Duration::from_secs(1),
            runtime_api_open: false,
        }
    }

    #[tokio::test]
    async fn an_invocation_no_process_takes_fails_at_its_timeout_and_leaves_the_queue() {
        let metrics = Arc::new(HostMetrics::new(&mut Registry::default()));
        let queue = Arc::new(WorkQueue::new(metrics.clone()));
        // A process counts as up but never asks for work (wedged).
        queue.process_up();
        let mut invoker = Invoker {
            shared: Arc::new(Shared {
                queue: queue.clone(),
                permits: Arc::new(Semaphore::new(1)),
                metrics,
                closing: CancellationToken::new(),
            }),
        };
        let invocation = Invocation::new("{}", Duration::from_millis(200));
        let result = tower::Service::call(&mut invoker, invocation).await;
        assert_eq!(result, Err(InvokeError::NotReady));
        // Withdrawn: a process asking now finds nothing, and the slot is free again.
        let next = tokio::time::timeout(Duration::from_millis(100), queue.next()).await;
        assert!(next.is_err(), "the queue still held the invocation");
        let again = Invocation::new("{}", Duration::from_millis(100));
        let again = tower::Service::call(&mut invoker, again).await;
        assert_eq!(again, Err(InvokeError::NotReady));
    }

    /// A source may let an invocation wait for a process longer than it may run (the SQS
    /// source: a batch waits out a restart rather than fail messages the function never saw).
    #[tokio::test]
    async fn an_invocation_waits_for_a_process_as_long_as_its_source_allows() {
        let metrics = Arc::new(HostMetrics::new(&mut Registry::default()));
        let queue = Arc::new(WorkQueue::new(metrics.clone()));
        let mut invoker = Invoker {
            shared: Arc::new(Shared {
                queue: queue.clone(),
                permits: Arc::new(Semaphore::new(1)),
                metrics,
                closing: CancellationToken::new(),
            }),
        };
        // No process is up: the invocation comes back untaken and waits for one.
        let invocation = Invocation::new("{}", Duration::from_millis(50))
            .waiting_for_process(Duration::from_secs(30));
        let call = tokio::spawn(tower::Service::call(&mut invoker, invocation));
        // Past the invocation's own timeout (a lower bound, whatever the scheduler does).
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!call.is_finished(), "gave up at the run timeout");
        queue.process_up();
        let job = tokio::time::timeout(Duration::from_secs(10), queue.next())
            .await
            .expect("the waiting invocation reaches the process");
        job.complete(Ok(InvocationResponse::Success(bytes::Bytes::new())));
        let result = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the call ends")
            .expect("no panic");
        assert_eq!(result, Ok(InvocationResponse::Success(bytes::Bytes::new())));
    }

    #[test]
    fn process_count_is_ceil_of_n_over_k() {
        assert_eq!(config(1, 1).process_count(), 1);
        assert_eq!(config(4, 1).process_count(), 4);
        assert_eq!(config(4, 3).process_count(), 2);
        assert_eq!(config(4, 4).process_count(), 1);
        assert_eq!(config(2, 8).process_count(), 1);
    }

    #[test]
    fn max_concurrency_env_only_above_one() {
        let has = |c: &HostConfig| {
            c.lambda_env()
                .iter()
                .any(|(k, _)| k == "AWS_LAMBDA_MAX_CONCURRENCY")
        };
        assert!(!has(&config(4, 1)));
        assert!(has(&config(4, 2)));
    }

    #[test]
    fn arn_names_the_function() {
        assert_eq!(
            config(1, 1).function_arn(),
            "arn:aws:lambda:us-east-1:000000000000:function:f"
        );
    }
}

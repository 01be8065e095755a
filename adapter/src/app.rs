//! Wires a subcommand together: function host, event source, Invoke API, admin, and the shutdown
//! sequence (stop taking work, drain for the grace period, stop the function, exit 0).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, Readiness, SourceCheck};
use crate::cli::{Cli, Command, EMULATE_INVOKE_LISTEN, HttpArgs, ServiceArgs};
use crate::host::{FunctionHost, HostConfig, HostError, InitFailures};
use crate::http_source::connections::{ConnectionLimits, ConnectionMetrics, GuardedListener};
use crate::http_source::{self, HttpSourceConfig};
use crate::invoke_api::{self, InvokeApiConfig};
use crate::platform_log::{LogFormat, PlatformLogLayer};
use crate::shutdown::ShutdownBudget;
use crate::sqs::{RunConfig, SqsArgs, SqsError, SqsSource};
use crate::{healthcheck, memory, open_files, output, shutdown};

/// The rest of a drain, once the grace period is over.
type Drain = Pin<Box<dyn Future<Output = Result<(), AppError>> + Send>>;

/// How draining the sources ended.
enum Drained {
    /// Everything finished (or failed) in time.
    Done(Result<(), AppError>),
    /// The grace period ran out; what is left to await once the host has stopped.
    Cut(Drain),
}

/// Why the adapter stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The function host failed (most often: the function never initialised).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The SQS source could not start or failed.
    #[error(transparent)]
    Sqs(#[from] SqsError),
    /// A listener could not be bound.
    #[error("could not listen on {addr} ({what})")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The signal handlers could not be installed.
    #[error("could not install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
    /// The event source's task panicked (a bug): the exit code says so, for a restart.
    #[error("the event source task failed")]
    SourceTask(#[source] tokio::task::JoinError),
}

/// Runs the command line; the exit code is 0 on a clean stop.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Http(command) => run_service(command.service, Source::Http(command.http)).await,
        Command::Sqs(command) => run_service(command.service, Source::Sqs(command.sqs)).await,
        Command::Emulate(command) => {
            let mut service = command.service;
            service.platform_logs = true;
            if service.invoke_listen.is_none() {
                service.invoke_listen = EMULATE_INVOKE_LISTEN.parse().ok();
            }
            run_service(service, Source::InvokeApiOnly).await
        }
        Command::Healthcheck(args) => {
            return match healthcheck::check(&args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("adapter healthcheck: {error}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let error = with_causes(&error);
            tracing::error!(%error, "adapter failed");
            eprintln!("adapter: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `error` and each of its sources, joined with `: `, as one line for the log and stderr.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line = format!("{line}: {cause}");
        source = cause.source();
    }
    line
}

enum Source {
    Http(HttpArgs),
    Sqs(SqsArgs),
    /// `emulate`: the Invoke API is the only way in.
    InvokeApiOnly,
}

enum PreparedSource {
    Http(GuardedListener, HttpArgs),
    Sqs(SqsSource),
    InvokeApiOnly,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { what, addr, source })
}

fn host_config(service: &ServiceArgs) -> HostConfig {
    let function_name = service.resolved_function_name();
    HostConfig {
        program: service.program(),
        args: service.function.iter().skip(1).cloned().collect(),
        log_group: service
            .log_group
            .clone()
            .unwrap_or_else(|| format!("/aws/lambda/{function_name}")),
        function_name,
        memory_size: service.memory_size,
        region: service
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned()),
        account_id: service.account_id.clone(),
        max_concurrency: service.max_concurrency as usize,
        per_process_concurrency: service.per_process_concurrency as usize,
        init_timeout: Duration::from_secs(u64::from(service.init_timeout)),
        runtime_api_open: service.runtime_api_open,
    }
}

async fn run_service(service: ServiceArgs, source: Source) -> Result<(), AppError> {
    let shutdown = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown.clone()).map_err(AppError::Signals)?;
    if service.stop_on_stdin_eof {
        shutdown::cancel_on_stdin_eof(shutdown.clone()).map_err(AppError::Signals)?;
    }
    let timeout = Duration::from_secs(u64::from(service.timeout));
    let budget = ShutdownBudget::new(Duration::from_secs(u64::from(service.shutdown_grace)));
    let config = host_config(&service);

    let mut registry = Registry::default();
    let dropped_log_lines = prometheus_client::metrics::counter::Counter::default();
    registry.register(
        "adapter_log_lines_dropped",
        "Adapter log lines dropped because standard output was not read fast enough",
        dropped_log_lines.clone(),
    );
    output::report_dropped_log_lines(dropped_log_lines);
    let host = FunctionHost::start(config.clone(), &mut registry).await?;
    let prepared = match prepare(source, &mut registry, &shutdown).await {
        Ok(Some(prepared)) => prepared,
        Ok(None) => {
            // Stopped while waiting for the event source: nothing was taken, nothing to drain.
            host.shutdown().await;
            return Ok(());
        }
        Err(error) => {
            host.shutdown().await;
            return Err(error);
        }
    };
    let source_check: SourceCheck = match &prepared {
        PreparedSource::Http(..) | PreparedSource::InvokeApiOnly => Arc::new(|| Ok(())),
        PreparedSource::Sqs(sqs) => {
            let health = sqs.health();
            Arc::new(move || {
                if health.connected() {
                    Ok(())
                } else {
                    Err("the SQS source cannot reach its queue".to_owned())
                }
            })
        }
    };
    let admin_stop = CancellationToken::new();
    let admin = match bind("admin", service.admin_listen).await {
        Ok(listener) => tokio::spawn(admin::serve(
            listener,
            Arc::new(registry),
            Readiness {
                processes: host.ready_processes(),
                source: source_check,
                draining: shutdown.clone(),
            },
            admin_stop.clone(),
        )),
        Err(error) => {
            host.shutdown().await;
            return Err(error);
        }
    };

    let outcome = serve_until_shutdown(
        &host, &service, &config, prepared, timeout, budget, &shutdown,
    )
    .await;
    host.shutdown().await;
    let outcome = match outcome {
        Ok(Drained::Done(result)) => result,
        // The host has now failed what was cut off: let the source answer its callers with that.
        Ok(Drained::Cut(rest)) => tokio::time::timeout(budget.flush_after_cut(), rest)
            .await
            .unwrap_or(Ok(())),
        Err(error) => Err(error),
    };
    admin_stop.cancel();
    if let Err(error) = admin.await {
        tracing::warn!(%error, "admin server task failed");
    }
    if outcome.is_ok() {
        tracing::info!("adapter stopped cleanly");
    }
    outcome
}

async fn prepare(
    source: Source,
    registry: &mut Registry,
    shutdown: &CancellationToken,
) -> Result<Option<PreparedSource>, AppError> {
    Ok(match source {
        Source::Http(args) => {
            let listener = bind("http", args.listen).await?;
            let metrics = ConnectionMetrics::default();
            registry.register(
                "adapter_http_connections_timed_out",
                "HTTP connections closed for a slow request head or a long idle",
                metrics.timed_out.clone(),
            );
            let limits = ConnectionLimits {
                max_connections: open_files::connection_cap(args.max_connections as usize),
                header_read_timeout: Duration::from_secs(args.header_read_timeout.into()),
                idle_timeout: Duration::from_secs(args.idle_timeout.into()),
            };
            let listener = GuardedListener::new(listener, limits, metrics);
            memory::trim_after_bursts(listener.closed_connections());
            Some(PreparedSource::Http(listener, args))
        }
        Source::Sqs(args) => SqsSource::connect(args, registry, shutdown)
            .await?
            .map(PreparedSource::Sqs),
        Source::InvokeApiOnly => Some(PreparedSource::InvokeApiOnly),
    })
}

/// Waits for the function to initialise, runs the source and the Invoke API until shutdown, then
/// drains them for at most `grace`.
async fn serve_until_shutdown(
    host: &FunctionHost,
    service: &ServiceArgs,
    config: &HostConfig,
    prepared: PreparedSource,
    timeout: Duration,
    budget: ShutdownBudget,
    shutdown: &CancellationToken,
) -> Result<Drained, AppError> {
    // Bound before /readyz can say ready, so a caller that waits for ready finds it listening
    // (calls made during init wait in the backlog, as Lambda holds an invoke during init).
    let invoke_listener = match service.invoke_listen {
        Some(addr) => Some(bind("invoke", addr).await?),
        None => None,
    };
    // Under `emulate` a failed init fails at once, as Lambda fails the invocation that met it; a
    // service restarts the function with backoff until the init timeout instead.
    let init_failures = match &prepared {
        PreparedSource::InvokeApiOnly => InitFailures::FailFast,
        PreparedSource::Http(..) | PreparedSource::Sqs(_) => InitFailures::Retry,
    };
    tokio::select! {
        ready = host.wait_until_ready(config.init_timeout, init_failures) => ready?,
        () = shutdown.cancelled() => return Ok(Drained::Done(Ok(()))),
    }
    tracing::info!("function ready; starting the event source");

    let background = TaskTracker::new();
    // Without --platform-logs the layer is not there at all, so the hot path is unchanged.
    let invoker = tower::ServiceBuilder::new()
        .option_layer(service.platform_logs.then_some(PlatformLogLayer {
            memory_size: config.memory_size,
            format: LogFormat::from_env(),
        }))
        .service(host.invoker());
    if let Some(addr) = service.invoke_listen
        && !addr.ip().is_loopback()
    {
        tracing::warn!(%addr, "the Invoke API checks no credentials: anyone who reaches it can invoke the function");
    }
    let invoke_api = invoke_listener.map(|listener| {
        tracing::info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "Invoke API listening");
        tokio::spawn(invoke_api::serve(
            listener,
            invoker.clone(),
            InvokeApiConfig {
                function_name: config.function_name.clone(),
                function_arn: config.function_arn(),
                timeout,
                max_queued_events: service.max_queued_events as usize,
                caller_request_ids: matches!(prepared, PreparedSource::InvokeApiOnly),
            },
            background.clone(),
            shutdown.clone(),
        ))
    });
    // The SQS source keeps to the grace period itself and then releases what it still holds, so it
    // gets a moment more; the HTTP server cannot cut its requests, so the grace bounds it here.
    let drain_bound = match &prepared {
        PreparedSource::Http(..) | PreparedSource::InvokeApiOnly => budget.grace(),
        PreparedSource::Sqs(_) => budget.source_bound(),
    };
    let mut source: JoinHandle<Result<(), AppError>> = match prepared {
        PreparedSource::Http(listener, args) => {
            tracing::info!(listen = %args.listen, "HTTP source listening");
            let server = http_source::serve(
                listener,
                invoker,
                HttpSourceConfig {
                    max_body_bytes: args.max_body_bytes,
                    timeout,
                    account_id: config.account_id.clone(),
                    api_id: config.function_name.clone(),
                    trust_forwarded_for: args.trust_forwarded_for,
                    body_read_timeout: Duration::from_secs(args.body_read_timeout.into()),
                    invoke_mode: args.invoke_mode,
                },
                shutdown.clone(),
            );
            tokio::spawn(async move { server.await.map_err(AppError::Http) })
        }
        PreparedSource::Sqs(sqs) => {
            let run = sqs.run(
                invoker,
                RunConfig {
                    max_concurrency: config.max_concurrency,
                    invocation_timeout: timeout,
                    budget,
                },
                shutdown.clone(),
            );
            tokio::spawn(async move { run.await.map_err(AppError::from) })
        }
        // Nothing to run but the Invoke API, which stops on its own at shutdown.
        PreparedSource::InvokeApiOnly => {
            let stopped = shutdown.clone();
            tokio::spawn(async move {
                stopped.cancelled().await;
                Ok(())
            })
        }
    };

    let early = tokio::select! {
        () = shutdown.cancelled() => None,
        ended = &mut source => Some(ended),
    };
    if let Some(ended) = early {
        // The source stopped on its own: that is a failure unless it returned cleanly.
        shutdown.cancel();
        return Ok(Drained::Done(
            ended.unwrap_or_else(|join| Err(AppError::SourceTask(join))),
        ));
    }

    let mut drain: Drain = Box::pin(async move {
        let source_result = source
            .await
            .unwrap_or_else(|join| Err(AppError::SourceTask(join)));
        if let Some(invoke_api) = invoke_api
            && let Ok(Err(error)) = invoke_api.await
        {
            tracing::warn!(%error, "Invoke API server failed");
        }
        background.close();
        background.wait().await;
        source_result
    });
    match tokio::time::timeout(drain_bound, &mut drain).await {
        Ok(result) => Ok(Drained::Done(result)),
        Err(_) => {
            tracing::warn!(
                grace_seconds = budget.grace().as_secs(),
                "shutdown grace period over; stopping the function with work still in flight"
            );
            Ok(Drained::Cut(drain))
        }
    }
}

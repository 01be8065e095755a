//! Runs one slot's function process: starts it with Lambda's environment, watches it, kills it
//! when asked, and starts it again with backoff when it goes.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::metrics::HostMetrics;
use super::process::{Incarnation, KillReason, Slot};
use super::queue::WorkQueue;
use crate::backoff::Backoff;
use crate::invocation::InvokeError;
use crate::output;

/// First restart delay after a quick failure; the ceiling doubles per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A process that ran this long counts as healthy: the next failure restarts it quickly again.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// How often a process is checked for a worker that replied and stopped polling.
const HANG_CHECK: Duration = Duration::from_secs(1);
/// How long a process has after SIGTERM before SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// How to start the function binary.
#[derive(Debug, Clone)]
pub(crate) struct FunctionCommand {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    /// Lambda's variables, except the per-process ones the supervisor adds.
    pub(crate) env: Vec<(String, String)>,
    /// How long a new process has to call `/next`.
    pub(crate) init_timeout: Duration,
}

impl FunctionCommand {
    fn spawn(&self, slot: &Slot) -> std::io::Result<Child> {
        // A service that hosts the adapter (LocalStack's Lambda) names the stream itself.
        let log_stream = std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_else(|_| {
            format!(
                "{}/[$LATEST]{}",
                chrono::Utc::now().format("%Y/%m/%d"),
                uuid::Uuid::new_v4().simple()
            )
        });
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", slot.runtime_api.to_string())
            .env("AWS_LAMBDA_LOG_STREAM_NAME", log_stream)
            .stdin(Stdio::null())
            // Read by the adapter, never inherited: a stalled reader of the adapter's output
            // must stall only the functions that write, never the adapter (see `output`).
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C in a terminal (SIGINT to the foreground group)
            // reaches the adapter alone, which drains and then stops the function, as Lambda
            // does; the function never sees a signal before its work is settled.
            .process_group(0)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let mut child = command.spawn()?;
        if let Some(stdout) = child.stdout.take() {
            output::forward(stdout.into_owned_fd()?, output::stdout())?;
        }
        if let Some(stderr) = child.stderr.take() {
            output::forward(stderr.into_owned_fd()?, output::stderr())?;
        }
        Ok(child)
    }
}

/// Asks the kernel to SIGKILL the function when the adapter dies, however it dies.
///
/// `kill_on_drop` covers every exit the adapter sees; a SIGKILL of the adapter (the OOM killer, a
/// `kill -9`) it does not see, and the function's runtime would then retry `/next` against a dead
/// address forever, an orphan spinning on a core. Function processes are spawned from tokio worker
/// threads, which live as long as the runtime, so the thread-scoped death signal fires only when
/// the adapter goes.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec; it only calls prctl(2), which
    // is async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// How one run of the process ended.
enum Ended {
    Exited(std::io::Result<ExitStatus>),
    Killed(KillReason),
    InitTimeout,
    Shutdown,
}

/// Keeps a process running in `slot` until `stop` fires, then terminates it.
pub(crate) async fn supervise(
    slot: Arc<Slot>,
    command: Arc<FunctionCommand>,
    queue: Arc<WorkQueue>,
    metrics: Arc<HostMetrics>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut first = true;
    while !stop.is_cancelled() {
        if !first {
            metrics.restarted();
        }
        first = false;
        let incarnation = Incarnation::new();
        slot.set_current(Some(incarnation.clone()));
        let started = Instant::now();
        let ended = match command.spawn(&slot) {
            Ok(child) => {
                // Right away: the Runtime API's peer check waits for it (see `Incarnation::pid`).
                if let Some(pid) = child.id() {
                    incarnation.set_pid(pid);
                }
                run(child, &incarnation, command.init_timeout, &stop).await
            }
            Err(error) => {
                let failure = format!("could not start {}: {error}", command.program.display());
                tracing::error!(process = slot.index, "{failure}");
                slot.record_failure(failure);
                Ended::Exited(Err(error))
            }
        };
        let detail = describe(&ended);
        let error = if matches!(ended, Ended::Shutdown) {
            InvokeError::ShuttingDown
        } else {
            InvokeError::ExitError {
                detail: detail.clone(),
            }
        };
        let was_up = incarnation.retire(&error, || queue.process_down());
        slot.set_current(None);
        if matches!(ended, Ended::Shutdown) {
            tracing::info!(process = slot.index, "function process stopped: {detail}");
            break;
        }
        if was_up {
            tracing::warn!(process = slot.index, "function process went away: {detail}");
        } else {
            let failure = match incarnation.init_error() {
                Some(reported) => format!("{reported} (then: {detail})"),
                None => format!("function process failed to initialise: {detail}"),
            };
            tracing::error!(process = slot.index, "{failure}");
            slot.record_failure(failure);
        }

        // Lambda re-initialises at once after a timeout; a process that ran well restarts quickly;
        // one that keeps failing waits longer each time.
        let delay = if matches!(ended, Ended::Killed(KillReason::Timeout | KillReason::Hung)) {
            Duration::ZERO
        } else if was_up && started.elapsed() >= HEALTHY_RUN {
            backoff.reset();
            MIN_BACKOFF
        } else {
            // Jittered: processes of one adapter that crash together do not restart together.
            backoff.next_delay()
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => break,
        }
    }
}

async fn run(
    mut child: Child,
    incarnation: &Incarnation,
    init_timeout: Duration,
    stop: &CancellationToken,
) -> Ended {
    let init_deadline = tokio::time::sleep(init_timeout);
    tokio::pin!(init_deadline);
    let mut waiting_for_init = true;
    let mut hang_check = tokio::time::interval(HANG_CHECK);
    hang_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = hang_check.tick() => {
                if incarnation.overdue(tokio::time::Instant::now()) {
                    tracing::warn!(
                        "function process replied but did not ask for its next invocation; \
                         replacing it"
                    );
                    kill_now(&mut child).await;
                    return Ended::Killed(KillReason::Hung);
                }
            }
            status = child.wait() => return Ended::Exited(status),
            () = incarnation.kill_requested().cancelled() => {
                kill_now(&mut child).await;
                let reason = incarnation.kill_reason().unwrap_or(KillReason::Timeout);
                return Ended::Killed(reason);
            }
            () = stop.cancelled() => {
                terminate(&mut child).await;
                return Ended::Shutdown;
            }
            () = &mut init_deadline, if waiting_for_init => {
                if incarnation.is_initialised() {
                    waiting_for_init = false;
                } else {
                    kill_now(&mut child).await;
                    return Ended::InitTimeout;
                }
            }
        }
    }
}

async fn kill_now(child: &mut Child) {
    if let Err(error) = child.kill().await {
        tracing::warn!(%error, "could not kill function process");
    }
}

/// SIGTERM, then SIGKILL if the process is still there after [`TERMINATE_GRACE`].
async fn terminate(child: &mut Child) {
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return; // Already reaped.
    };
    if let Err(error) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
        tracing::warn!(%error, pid, "could not send SIGTERM to function process");
    }
    if tokio::time::timeout(TERMINATE_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(pid, "function process ignored SIGTERM; killing it");
        kill_now(child).await;
    }
}

fn describe(ended: &Ended) -> String {
    match ended {
        Ended::Exited(Ok(status)) => match (status.code(), signal_of(status)) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("signal: {signal}"),
            (None, None) => status.to_string(),
        },
        Ended::Exited(Err(error)) => format!("could not run: {error}"),
        Ended::Killed(KillReason::Timeout) => "killed after an invocation timed out".to_owned(),
        Ended::Killed(KillReason::InitError) => "killed after reporting an init error".to_owned(),
        Ended::Killed(KillReason::Hung) => {
            "killed: it replied but did not ask for its next invocation in time".to_owned()
        }
        Ended::InitTimeout => "did not call /next within the init timeout; killed".to_owned(),
        Ended::Shutdown => "adapter shutting down".to_owned(),
    }
}

fn signal_of(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

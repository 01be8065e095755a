//! One function process as the host sees it: its slot (a stable Runtime API address that outlives
//! restarts) and its incarnation (one run of the binary, with the invocations it holds).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::queue::Job;
use crate::invocation::InvokeError;
use crate::lock::lock;
use crate::response_stream::StreamWriter;

/// A place for one function process. Each slot has its own Runtime API listener, so the host knows
/// which process took an invocation from the connection it arrived on.
pub(crate) struct Slot {
    /// 0-based position, for logs.
    pub(crate) index: usize,
    /// What `AWS_LAMBDA_RUNTIME_API` points at.
    pub(crate) runtime_api: SocketAddr,
    current: Mutex<Option<Arc<Incarnation>>>,
    last_failure: Mutex<Option<String>>,
    /// How many processes of this slot failed to start, for waiters that stop at the first.
    failures: tokio::sync::watch::Sender<u64>,
}

impl Slot {
    pub(crate) fn new(index: usize, runtime_api: SocketAddr) -> Self {
        Self {
            index,
            runtime_api,
            current: Mutex::new(None),
            last_failure: Mutex::new(None),
            failures: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The process running in this slot, if any.
    pub(crate) fn current(&self) -> Option<Arc<Incarnation>> {
        lock(&self.current).clone()
    }

    pub(crate) fn set_current(&self, incarnation: Option<Arc<Incarnation>>) {
        *lock(&self.current) = incarnation;
    }

    /// Remembers why the last process failed to start, for the init-timeout message.
    pub(crate) fn record_failure(&self, failure: String) {
        *lock(&self.last_failure) = Some(failure);
        self.failures.send_modify(|n| *n += 1);
    }

    /// Changes each time a process of this slot fails to start.
    pub(crate) fn failures(&self) -> tokio::sync::watch::Receiver<u64> {
        self.failures.subscribe()
    }

    /// Why the last process failed to start, if one did.
    pub(crate) fn last_failure(&self) -> Option<String> {
        lock(&self.last_failure).clone()
    }
}

/// Why the host asked for a process to be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillReason {
    /// An invocation ran past its deadline (Lambda re-initialises the sandbox after a timeout).
    Timeout,
    /// The process posted `/runtime/init/error`.
    InitError,
    /// The process replied but did not ask for its next invocation in time.
    Hung,
}

/// The time a process has to call `/next` again after a reply: the rest of the invocation's
/// deadline, but at least [`NEXT_GRACE_MIN`] and at most [`NEXT_GRACE_MAX`].
///
/// Lambda lets a runtime use the whole deadline; but every runtime we know calls `/next` right
/// after its reply, invocations queued behind a wedged process wait on this bound, and a false
/// alarm costs only a restart (the reply is already out), so the bound is short.
const NEXT_GRACE_MIN: Duration = Duration::from_secs(1);
const NEXT_GRACE_MAX: Duration = Duration::from_secs(2);

struct Running {
    job: Job,
    timer: AbortHandle,
    deadline: Instant,
}

#[derive(Default)]
struct State {
    running: HashMap<String, Running>,
    /// By when each worker that replied must ask for work again, oldest first.
    owed_next: VecDeque<Instant>,
    initialised: bool,
    retired: bool,
    kill_reason: Option<KillReason>,
    init_error: Option<String>,
}

/// One run of the function binary.
pub(crate) struct Incarnation {
    state: Mutex<State>,
    /// Fired to stop handing work to this process: it is being killed or has exited.
    retired: CancellationToken,
    /// Fired to ask the supervisor to kill the process.
    kill: CancellationToken,
    /// The process id, set as soon as the process is spawned. The incarnation is made current
    /// before the spawn (so a fast process never finds its slot empty), hence a watch: the
    /// Runtime API's peer check waits on it for a connection that beats the supervisor here.
    pid: watch::Sender<Option<u32>>,
    /// When the incarnation was made, just before its spawn: the start of its `Init Duration`.
    created: std::time::Instant,
}

impl Incarnation {
    pub(crate) fn new() -> Arc<Self> {
        let kill = CancellationToken::new();
        Arc::new(Self {
            state: Mutex::new(State::default()),
            retired: kill.child_token(),
            kill,
            pid: watch::Sender::new(None),
            created: std::time::Instant::now(),
        })
    }

    /// Time since the incarnation was made (its process spawned right after).
    pub(crate) fn age(&self) -> std::time::Duration {
        self.created.elapsed()
    }

    /// Records the id of the process just spawned for this incarnation.
    pub(crate) fn set_pid(&self, pid: u32) {
        self.pid.send_replace(Some(pid));
    }

    /// The process id: waits for the spawn if it is under way; `None` if this incarnation was
    /// retired without one (the spawn failed, or the process is gone).
    pub(crate) async fn pid(&self) -> Option<u32> {
        let mut pid = self.pid.subscribe();
        tokio::select! {
            biased;
            set = pid.wait_for(Option::is_some) => set.ok().and_then(|pid| *pid),
            () = self.retired.cancelled() => None,
        }
    }

    /// Notes a call to `/next`. The first time (the process has just initialised) runs `on_up`,
    /// under the same lock as [`Incarnation::retire`], so "up" and "down" are never reordered.
    /// A retired process is never counted as up.
    pub(crate) fn mark_initialised(&self, on_up: impl FnOnce()) -> bool {
        let mut state = lock(&self.state);
        let first = !state.initialised && !state.retired;
        if first {
            state.initialised = true;
            on_up();
        }
        first
    }

    /// Records what the process reported to `/runtime/init/error`.
    pub(crate) fn set_init_error(&self, message: String) {
        lock(&self.state).init_error = Some(message);
    }

    /// What the process reported to `/runtime/init/error`, if it did.
    pub(crate) fn init_error(&self) -> Option<String> {
        lock(&self.state).init_error.clone()
    }

    /// Whether the process has called `/next` at least once.
    pub(crate) fn is_initialised(&self) -> bool {
        lock(&self.state).initialised
    }

    /// Resolves when this process takes no more work.
    pub(crate) fn retired(&self) -> &CancellationToken {
        &self.retired
    }

    /// Resolves when the host wants this process killed.
    pub(crate) fn kill_requested(&self) -> &CancellationToken {
        &self.kill
    }

    /// Asks the supervisor to kill the process.
    pub(crate) fn request_kill(&self, reason: KillReason) {
        lock(&self.state).kill_reason.get_or_insert(reason);
        self.kill.cancel();
    }

    /// Why the kill was asked for, if it was.
    pub(crate) fn kill_reason(&self) -> Option<KillReason> {
        lock(&self.state).kill_reason
    }

    /// Registers a job the process has just been handed, and arms its timeout. Gives the job
    /// back when the process is already retired.
    pub(crate) fn start(self: &Arc<Self>, job: Job) -> Result<(), Box<Job>> {
        let mut state = lock(&self.state);
        // A process being killed takes nothing new: the job goes back to the queue for another.
        if state.retired || self.kill.is_cancelled() {
            return Err(Box::new(job));
        }
        let request_id = job.invocation.request_id.clone();
        let timeout = job.invocation.timeout;
        let deadline = Instant::now() + timeout;
        let incarnation: Weak<Self> = Arc::downgrade(self);
        let timer_id = request_id.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let Some(incarnation) = incarnation.upgrade() else {
                return;
            };
            if let Some(job) = incarnation.finish(&timer_id) {
                tracing::warn!(
                    request_id = %timer_id,
                    timeout_seconds = timeout.as_secs_f64(),
                    "invocation timed out; replacing its function process"
                );
                // Doomed first: completing frees the job's slot, and with several invocations
                // per process a new job must not be handed to this one meanwhile.
                incarnation.request_kill(KillReason::Timeout);
                job.complete(Err(InvokeError::Timeout {
                    seconds: timeout.as_secs_f64(),
                }));
            }
        })
        .abort_handle();
        state.running.insert(
            request_id,
            Running {
                job,
                timer,
                deadline,
            },
        );
        Ok(())
    }

    /// Opens the reply stream of a job this process runs (see [`Job::open_stream`]); `None` when
    /// the reply is to be buffered, or the job is not running here. The job stays running, under
    /// its timeout, until the stream ends with [`Incarnation::replied`].
    pub(crate) fn open_stream(
        &self,
        request_id: &str,
        content_type: Option<http::HeaderValue>,
    ) -> Option<StreamWriter> {
        lock(&self.state)
            .running
            .get_mut(request_id)?
            .job
            .open_stream(content_type)
    }

    /// Removes a running job and disarms its timeout.
    pub(crate) fn finish(&self, request_id: &str) -> Option<Job> {
        let running = lock(&self.state).running.remove(request_id)?;
        running.timer.abort();
        Some(running.job)
    }

    /// Removes a job the process has replied to, and expects the worker that ran it to ask for
    /// work again soon (see [`NEXT_GRACE_MAX`]); Lambda too counts an invocation until the
    /// runtime's next `/next`. A process that does not is hung (its reply went out, so no caller
    /// notices): it is replaced, and until then readiness counts it as up.
    ///
    /// `streamed` says whether the reply is the job's open stream ending: a job whose reply
    /// streams takes no other reply (a second `/response` or an `/error` meanwhile).
    pub(crate) fn replied(self: &Arc<Self>, request_id: &str, streamed: bool) -> Option<Job> {
        let mut state = lock(&self.state);
        if state.running.get(request_id)?.job.is_streaming() != streamed {
            return None;
        }
        let running = state.running.remove(request_id)?;
        running.timer.abort();
        let bound = running
            .deadline
            .saturating_duration_since(Instant::now())
            .clamp(NEXT_GRACE_MIN, NEXT_GRACE_MAX);
        // Checked by the supervisor's periodic look (see `overdue`): a timer per reply would cost
        // a task spawn and a wake of the I/O driver on every invocation.
        state.owed_next.push_back(Instant::now() + bound);
        Some(running.job)
    }

    /// Whether a worker that replied has not asked for work again by its bound: the process is
    /// hung (see [`Incarnation::replied`]).
    pub(crate) fn overdue(&self, now: Instant) -> bool {
        lock(&self.state)
            .owed_next
            .front()
            .is_some_and(|due| *due <= now)
    }

    /// Notes a call to `/next`: the oldest reply still waiting for one is settled.
    pub(crate) fn asked_next(&self) {
        lock(&self.state).owed_next.pop_front();
    }

    /// The process is gone: fails what it held with `error`. If it had initialised, runs
    /// `on_down` (under the lock, see [`Incarnation::mark_initialised`]) and returns true.
    pub(crate) fn retire(&self, error: &InvokeError, on_down: impl FnOnce()) -> bool {
        let (running, initialised) = {
            let mut state = lock(&self.state);
            state.retired = true;
            state.owed_next.clear();
            if state.initialised {
                on_down();
            }
            (std::mem::take(&mut state.running), state.initialised)
        };
        self.retired.cancel();
        for (_, running) in running {
            running.timer.abort();
            running.job.complete(Err(error.clone()));
        }
        initialised
    }
}

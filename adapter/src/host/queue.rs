//! The queue between event sources and function processes.
//!
//! Invocations wait here until a function process asks for work with `GET /invocation/next`. A
//! process asks only when it has a free worker, so the queue is what spreads invocations over
//! processes, at most K per process. The queue also knows how many processes are up: with none, an
//! invocation would wait for nobody, so it goes back to its caller untouched ([`Reply::NotTaken`]),
//! which waits for a process to come up (see `Invoker`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot, watch};

use super::metrics::HostMetrics;
use crate::gauge::GaugeGuard;
use crate::invocation::{Invocation, InvocationResponse, InvokeError};
use crate::response_stream::{StreamEnd, StreamWriter};

/// What an invocation resolves to.
pub(crate) type InvokeResult = Result<InvocationResponse, InvokeError>;

/// What the caller of a job hears.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The invocation ran, or failed for good.
    Done(InvokeResult),
    /// No process was up to take it: the invocation comes back untouched, to wait for one.
    NotTaken(Invocation),
}

/// One invocation on its way to a function process, with the way back to its caller.
pub(crate) struct Job {
    pub(crate) invocation: Invocation,
    /// Unique in this process, for [`WorkQueue::withdraw`] (request ids may come from callers).
    id: u64,
    reply: oneshot::Sender<Reply>,
    submitted: Instant,
    metrics: Arc<HostMetrics>,
    /// Set once the function streams its reply: how the stream ends is told here.
    stream_end: Option<StreamEnd>,
    // Held until the job completes, so a caller that gives up waiting does not free its slot early.
    _permit: OwnedSemaphorePermit,
    _in_flight: GaugeGuard,
}

impl Job {
    /// A job and the receiver its caller awaits.
    pub(crate) fn new(
        invocation: Invocation,
        permit: OwnedSemaphorePermit,
        metrics: Arc<HostMetrics>,
    ) -> (Self, oneshot::Receiver<Reply>) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let (reply, receiver) = oneshot::channel();
        let in_flight = metrics.in_flight_guard();
        let job = Self {
            invocation,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            reply,
            submitted: Instant::now(),
            metrics,
            stream_end: None,
            _permit: permit,
            _in_flight: in_flight,
        };
        (job, receiver)
    }

    /// Opens the reply stream to the source, if the source takes one and still waits; the job
    /// then ends the stream when it completes. `None`: the reply is to be buffered.
    pub(crate) fn open_stream(
        &mut self,
        content_type: Option<http::HeaderValue>,
    ) -> Option<StreamWriter> {
        let (writer, end) = self.invocation.response_stream.take()?.open(content_type)?;
        self.stream_end = Some(end);
        Some(writer)
    }

    /// Whether the reply is being streamed: then only its stream may complete the job.
    pub(crate) fn is_streaming(&self) -> bool {
        self.stream_end.is_some()
    }

    /// Hands the result to the caller (if it still waits) and records it.
    pub(crate) fn complete(self, result: InvokeResult) {
        let Self {
            invocation,
            reply,
            submitted,
            id: _,
            metrics,
            stream_end,
            _permit,
            _in_flight,
        } = self;
        metrics.record(&result, submitted.elapsed());
        if let Some(end) = stream_end {
            end.finish(&result);
        }
        // Done before the caller hears: whoever the reply wakes sees the slot free and the
        // in-flight gauge already down.
        drop(_in_flight);
        drop(_permit);
        // The caller may have gone (an HTTP client that hung up): the result is only logged then.
        if reply.send(Reply::Done(result)).is_err() {
            tracing::debug!(request_id = %invocation.request_id, "caller no longer waiting");
        }
    }

    /// Hands the invocation back to its caller, untaken and unrecorded: no process is up.
    fn give_back(self) {
        let Self {
            invocation,
            reply,
            _permit,
            _in_flight,
            ..
        } = self;
        drop(_in_flight);
        drop(_permit);
        let _ = reply.send(Reply::NotTaken(invocation));
    }

    /// Completes the job with `refusal`, or gives it back when it only waits for a process.
    fn refuse(self, refusal: InvokeError) {
        if refusal == InvokeError::NotReady {
            self.give_back();
        } else {
            self.complete(Err(refusal));
        }
    }
}

struct State {
    jobs: VecDeque<Job>,
    ready_processes: usize,
    closed: bool,
}

impl State {
    /// Why a job cannot wait here now, if it cannot.
    fn refusal(&self) -> Option<InvokeError> {
        if self.closed {
            Some(InvokeError::ShuttingDown)
        } else if self.ready_processes == 0 {
            // Nobody would take it: fail fast rather than wait for a process that may never come.
            Some(InvokeError::NotReady)
        } else {
            None
        }
    }
}

/// The shared queue of invocations waiting for a function process.
pub(crate) struct WorkQueue {
    state: Mutex<State>,
    work_available: Notify,
    ready: watch::Sender<usize>,
    metrics: Arc<HostMetrics>,
}

impl WorkQueue {
    pub(crate) fn new(metrics: Arc<HostMetrics>) -> Self {
        Self {
            metrics,
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                ready_processes: 0,
                closed: false,
            }),
            work_available: Notify::new(),
            ready: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock::lock(&self.state)
    }

    /// Queues a job; one that cannot run now is refused at once (see [`Job::refuse`]).
    pub(crate) fn submit(&self, job: Job) {
        let mut state = self.lock();
        if let Some(error) = state.refusal() {
            drop(state);
            job.refuse(error);
            return;
        }
        state.jobs.push_back(job);
        drop(state);
        self.work_available.notify_one();
    }

    /// Puts back a job a process took but could not start, ahead of the others.
    pub(crate) fn requeue(&self, job: Job) {
        let mut state = self.lock();
        if let Some(error) = state.refusal() {
            drop(state);
            job.refuse(error);
            return;
        }
        state.jobs.push_front(job);
        drop(state);
        self.work_available.notify_one();
    }

    /// The id [`WorkQueue::withdraw`] knows `job` by.
    pub(crate) fn id_of(job: &Job) -> u64 {
        job.id
    }

    /// Takes back a job no process has taken yet; `None` once one has (or it is gone).
    pub(crate) fn withdraw(&self, id: u64) -> Option<Job> {
        let mut state = self.lock();
        let position = state.jobs.iter().position(|job| job.id == id)?;
        state.jobs.remove(position)
    }

    /// Waits for the next job. Cancel-safe: a job is only removed when this returns it.
    pub(crate) async fn next(&self) -> Job {
        loop {
            let notified = self.work_available.notified();
            tokio::pin!(notified);
            // Register before looking, so a job pushed in between still wakes us.
            notified.as_mut().enable();
            if let Some(job) = self.lock().jobs.pop_front() {
                return job;
            }
            notified.await;
        }
    }

    /// A process called `/next` for the first time.
    pub(crate) fn process_up(&self) {
        let mut state = self.lock();
        state.ready_processes += 1;
        self.ready.send_replace(state.ready_processes);
        self.metrics.set_ready_processes(state.ready_processes);
    }

    /// A process that was up went away. With none left, waiting jobs go back to their callers.
    pub(crate) fn process_down(&self) {
        let mut state = self.lock();
        state.ready_processes = state.ready_processes.saturating_sub(1);
        self.ready.send_replace(state.ready_processes);
        self.metrics.set_ready_processes(state.ready_processes);
        if state.ready_processes == 0 {
            let jobs: Vec<Job> = state.jobs.drain(..).collect();
            drop(state);
            for job in jobs {
                job.give_back();
            }
        }
    }

    /// Takes no more work and fails what waits.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let jobs: Vec<Job> = state.jobs.drain(..).collect();
        drop(state);
        for job in jobs {
            job.complete(Err(InvokeError::ShuttingDown));
        }
    }

    /// How many processes are up, as it changes.
    pub(crate) fn ready_processes(&self) -> watch::Receiver<usize> {
        self.ready.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::Semaphore;

    fn queue() -> (WorkQueue, Arc<HostMetrics>) {
        let metrics = Arc::new(HostMetrics::new(&mut Default::default()));
        (WorkQueue::new(metrics.clone()), metrics)
    }

    fn job(metrics: &Arc<HostMetrics>, name: &'static str) -> (Job, oneshot::Receiver<Reply>) {
        let permit = Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("permit");
        let mut invocation = Invocation::new("{}", Duration::from_secs(1));
        invocation.request_id = name.to_owned();
        Job::new(invocation, permit, metrics.clone())
    }

    #[tokio::test]
    async fn requeued_jobs_go_first() {
        let (queue, metrics) = queue();
        queue.process_up();
        let (a, _a) = job(&metrics, "a");
        let (b, _b) = job(&metrics, "b");
        queue.submit(a);
        queue.submit(b);
        let first = queue.next().await;
        assert_eq!(first.invocation.request_id, "a");
        queue.requeue(first);
        assert_eq!(queue.next().await.invocation.request_id, "a");
        assert_eq!(queue.next().await.invocation.request_id, "b");
    }

    #[tokio::test]
    async fn last_process_down_gives_waiting_jobs_back_untaken() {
        let (queue, metrics) = queue();
        queue.process_up();
        let (a, a_reply) = job(&metrics, "a");
        queue.submit(a);
        queue.process_down();
        assert!(matches!(a_reply.await, Ok(Reply::NotTaken(i)) if i.request_id == "a"));
        assert_eq!(*queue.ready_processes().borrow(), 0);
        // With no process up, a new job comes back at once too.
        let (b, b_reply) = job(&metrics, "b");
        queue.submit(b);
        assert!(matches!(b_reply.await, Ok(Reply::NotTaken(i)) if i.request_id == "b"));
    }

    #[tokio::test]
    async fn withdraw_takes_back_only_an_untaken_job() {
        let (queue, metrics) = queue();
        queue.process_up();
        let (a, _a) = job(&metrics, "a");
        let (b, _b) = job(&metrics, "b");
        let (a_id, b_id) = (WorkQueue::id_of(&a), WorkQueue::id_of(&b));
        queue.submit(a);
        queue.submit(b);
        let taken = queue.next().await;
        assert_eq!(taken.invocation.request_id, "a");
        assert!(queue.withdraw(a_id).is_none(), "a process holds it");
        let withdrawn = queue.withdraw(b_id).map(|job| job.invocation.request_id);
        assert_eq!(withdrawn.as_deref(), Some("b"));
        assert!(queue.withdraw(b_id).is_none());
    }

    #[tokio::test]
    async fn closing_fails_waiting_and_new_jobs_as_shutting_down() {
        let (queue, metrics) = queue();
        queue.process_up();
        let (a, a_reply) = job(&metrics, "a");
        queue.submit(a);
        queue.close();
        assert!(matches!(
            a_reply.await,
            Ok(Reply::Done(Err(InvokeError::ShuttingDown)))
        ));
        let (b, b_reply) = job(&metrics, "b");
        queue.submit(b);
        assert!(matches!(
            b_reply.await,
            Ok(Reply::Done(Err(InvokeError::ShuttingDown)))
        ));
    }
}

//! Where function output and the adapter's own lines go, without ever blocking a tokio worker.
//!
//! Function processes write into pipes that the adapter reads asynchronously and forwards, a line
//! at a time, to its own standard output and error through a bounded queue and one writer thread
//! each ([`Sink`]). When the reader of the adapter's output falls behind (a log driver that blocks
//! while its service throttles), the queue fills, the pipe readers stop reading, and a function
//! that keeps writing blocks in its own `write`: backpressure on the functions that log, and
//! nothing lost. The adapter's own log lines never wait: they go through `tracing-appender`'s
//! lossy writer, which drops them when its buffer is full and counts them
//! ([`report_dropped_log_lines`] says how many, on the output and in `/metrics`). Health checks,
//! admin and the event sources keep answering while the output is stalled.
//!
//! [`barrier`] orders the platform `END`/`REPORT` lines after every line a function wrote before
//! its reply, as Lambda does: it drains what the pipes hold and flushes the writers first.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, WorkerGuard};

/// Chunks a sink holds before its senders wait (each at most [`READ_SIZE`] bytes, or a held line).
const QUEUE_CHUNKS: usize = 256;
/// Bytes read from a pipe at once: small, as every function process has two such buffers.
const READ_SIZE: usize = 8 * 1024;
/// A line longer than this is forwarded in pieces rather than held whole.
const MAX_HELD_LINE: usize = 256 * 1024;
/// Adapter log lines buffered before new ones are dropped (the buffer is allocated whole).
const LOG_LINES_BUFFERED: usize = 2048;

enum Message {
    Bytes(Bytes),
    /// Acknowledged once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// One of the adapter's own output streams, written by a thread of its own.
pub(crate) struct Sink {
    queue: mpsc::Sender<Message>,
    /// Bytes queued since the last flush: a flush with nothing queued needs no round trip.
    unflushed: AtomicBool,
}

impl Sink {
    fn spawn(name: &str, mut out: impl Write + Send + 'static) -> Self {
        let (queue, mut receiver) = mpsc::channel::<Message>(QUEUE_CHUNKS);
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Some(message) = receiver.blocking_recv() {
                    match message {
                        // A closed output must not stop the functions: their lines are dropped.
                        Message::Bytes(bytes) => {
                            let _ = out.write_all(&bytes).and_then(|()| out.flush());
                        }
                        Message::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start an output writer thread; output is lost");
        }
        Self {
            queue,
            unflushed: AtomicBool::new(false),
        }
    }

    /// Queues `bytes`, waiting while the queue is full.
    pub(crate) async fn write(&self, bytes: Bytes) {
        self.unflushed.store(true, Ordering::Release);
        let _ = self.queue.send(Message::Bytes(bytes)).await;
    }

    /// Waits until everything queued so far is written.
    async fn flush(&self) {
        if !self.unflushed.swap(false, Ordering::AcqRel) {
            return;
        }
        let (done, written) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

/// The adapter's standard output.
pub(crate) fn stdout() -> &'static Sink {
    static STDOUT: OnceLock<Sink> = OnceLock::new();
    STDOUT.get_or_init(|| Sink::spawn("stdout-writer", std::io::stdout()))
}

/// The adapter's standard error.
pub(crate) fn stderr() -> &'static Sink {
    static STDERR: OnceLock<Sink> = OnceLock::new();
    STDERR.get_or_init(|| Sink::spawn("stderr-writer", std::io::stderr()))
}

/// The pipe readers running now, each asked to drain by [`barrier`].
fn readers() -> &'static Mutex<Vec<mpsc::Sender<oneshot::Sender<()>>>> {
    static READERS: OnceLock<Mutex<Vec<mpsc::Sender<oneshot::Sender<()>>>>> = OnceLock::new();
    READERS.get_or_init(Default::default)
}

/// Forwards a function process's pipe (its stdout or stderr) to `sink` until the process closes
/// it. Lines stay whole, so lines of concurrent processes never interleave mid-line.
pub(crate) fn forward(pipe: OwnedFd, sink: &'static Sink) -> std::io::Result<()> {
    let pipe = pipe::Receiver::from_owned_fd(pipe)?;
    let (drain, mut drains) = mpsc::channel::<oneshot::Sender<()>>(4);
    crate::lock::lock(readers()).push(drain);
    tokio::spawn(async move {
        let mut pipe = pipe;
        let mut held = BytesMut::new();
        let mut chunk = vec![0u8; READ_SIZE];
        loop {
            tokio::select! {
                read = pipe.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        held.extend_from_slice(&chunk[..n]);
                        if let Some(lines) = whole_lines(&mut held) {
                            sink.write(lines).await;
                        }
                    }
                },
                Some(done) = drains.recv() => {
                    // What the function wrote before it replied is in the pipe: take all of it.
                    while let Ok(n) = pipe.try_read(&mut chunk) {
                        if n == 0 {
                            break;
                        }
                        held.extend_from_slice(&chunk[..n]);
                    }
                    if !held.is_empty() {
                        sink.write(held.split().freeze()).await;
                    }
                    let _ = done.send(());
                }
            }
        }
        if !held.is_empty() {
            sink.write(held.freeze()).await;
        }
    });
    Ok(())
}

/// Takes the complete lines off the front of `held`, or everything once it is too long to hold.
fn whole_lines(held: &mut BytesMut) -> Option<Bytes> {
    if held.len() > MAX_HELD_LINE {
        return Some(held.split().freeze());
    }
    let end = held.iter().rposition(|&b| b == b'\n')? + 1;
    Some(held.split_to(end).freeze())
}

/// Waits until every line the functions wrote so far is written out (see the module docs).
pub(crate) async fn barrier() {
    let live: Vec<_> = {
        let mut readers = crate::lock::lock(readers());
        readers.retain(|reader| !reader.is_closed());
        readers.clone()
    };
    for reader in live {
        let (done, drained) = oneshot::channel();
        if reader.send(done).await.is_ok() {
            let _ = drained.await;
        }
    }
    stderr().flush().await;
}

/// The writer of the adapter's own log lines, and the guard that flushes it at exit.
pub fn adapter_log_writer() -> (NonBlocking, WorkerGuard) {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_LINES_BUFFERED)
        .thread_name("log-writer")
        .finish(std::io::stdout());
    let _ = LOG_DROPS.set(writer.error_counter());
    (writer, guard)
}

static LOG_DROPS: OnceLock<ErrorCounter> = OnceLock::new();

/// Every few seconds, adds the adapter log lines dropped since the last look to `dropped` and
/// says so in a log line, until the process ends.
pub(crate) fn report_dropped_log_lines(dropped: Counter) {
    let Some(counter) = LOG_DROPS.get().cloned() else {
        return;
    };
    tokio::spawn(async move {
        let mut reported = 0;
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            let total = counter.dropped_lines();
            if total > reported {
                let new = total - reported;
                dropped.inc_by(new as u64);
                reported = total;
                // Through the same lossy writer: the output moves again if this line gets out.
                tracing::warn!(
                    dropped = new,
                    "adapter log lines dropped: standard output was not read fast enough"
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_lines_go_out_until_a_line_is_too_long() {
        let mut held = BytesMut::from(&b"one\ntwo\nthr"[..]);
        assert_eq!(whole_lines(&mut held).as_deref(), Some(&b"one\ntwo\n"[..]));
        assert_eq!(&held[..], b"thr");
        assert_eq!(whole_lines(&mut held), None);
        let mut long = BytesMut::from(&vec![b'x'; MAX_HELD_LINE + 1][..]);
        assert_eq!(
            whole_lines(&mut long).map(|b| b.len()),
            Some(MAX_HELD_LINE + 1)
        );
        assert!(long.is_empty());
    }
}

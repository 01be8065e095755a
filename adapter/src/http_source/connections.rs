//! The HTTP source's connections: a cap on how many are open, and the time a client has to send
//! a request's headers or, between requests, to send anything at all.
//!
//! axum's server sets no hyper timer, so without this a client that opens a connection and sends
//! a byte now and then (slowloris) holds it, and its file descriptor, for ever. Both limits live
//! in the connection's IO: [`GuardedListener`] hands out [`GuardedIo`]s, which watch the request
//! head go by (up to its blank line) and fail the read that waits past a deadline, which closes
//! the connection. The IO cannot see a request's end, so "idle" starts with each response's
//! first write and starts again with each later one, as a load balancer counts it: a streamed
//! response that keeps writing is never idle.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Limits on the HTTP source's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; the listener stops accepting at this many.
    pub max_connections: usize,
    /// How long a client has to send a whole request head, from its first byte.
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request, after it opens or after a response. Above
    /// an ALB's idle timeout (60 s by default), so the balancer, not the target, closes first.
    pub idle_timeout: Duration,
}

/// What the HTTP source counts about its connections.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    /// Connections closed for a slow head or a long idle.
    pub timed_out: Counter,
}

/// A [`TcpListener`] that keeps to [`ConnectionLimits`].
pub struct GuardedListener {
    listener: TcpListener,
    limits: ConnectionLimits,
    open: Arc<Semaphore>,
    metrics: ConnectionMetrics,
    closed: Arc<AtomicU64>,
}

impl GuardedListener {
    /// Wraps `listener`.
    pub fn new(
        listener: TcpListener,
        limits: ConnectionLimits,
        metrics: ConnectionMetrics,
    ) -> Self {
        Self {
            open: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            listener,
            limits,
            metrics,
            closed: Arc::default(),
        }
    }

    /// How many of its connections have closed so far.
    pub fn closed_connections(&self) -> Arc<AtomicU64> {
        self.closed.clone()
    }
}

impl Listener for GuardedListener {
    type Io = GuardedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GuardedIo, SocketAddr) {
        // At the cap, new connections wait in the kernel's backlog until one closes, rather than
        // taking the file descriptors the admin listener and the Runtime API need.
        // The semaphore is never closed, so a permit always comes.
        let permit = self.open.clone().acquire_owned().await.ok();
        let (stream, peer) = Listener::accept(&mut self.listener).await;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let io = GuardedIo {
            stream,
            limits: self.limits,
            phase: Phase::Idle,
            due: Instant::now() + self.limits.idle_timeout,
            timer: Box::pin(tokio::time::sleep(self.limits.idle_timeout)),
            metrics: self.metrics.clone(),
            _permit: permit,
            closed: self.closed.clone(),
        };
        (io, peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// The peer of a [`GuardedListener`] connection, for `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, GuardedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, GuardedListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Where a connection is in its request cycle, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request yet, or the last one answered: waiting for the next one's first byte.
    Idle,
    /// Part of a request head has come; `matched` bytes of its closing `\r\n\r\n` so far.
    Head { matched: u8 },
    /// The head is complete: the body and the function's run have no deadline here.
    Request,
}

/// A connection that fails its reads when a client is too slow (see the module docs).
pub struct GuardedIo {
    stream: TcpStream,
    limits: ConnectionLimits,
    phase: Phase,
    /// When the current phase's limit runs out (none in [`Phase::Request`]).
    due: Instant,
    /// Fires at or before `due`. Moved only when `due` comes earlier than it: a later `due` is
    /// met when the timer fires and finds it early, so a request whose head comes in one read
    /// (the usual case) touches no timer at all.
    timer: Pin<Box<Sleep>>,
    metrics: ConnectionMetrics,
    _permit: Option<OwnedSemaphorePermit>,
    closed: Arc<AtomicU64>,
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
}

impl GuardedIo {
    fn enter(&mut self, phase: Phase) {
        match phase {
            Phase::Idle => self.set_due(self.limits.idle_timeout),
            Phase::Head { .. } if !matches!(self.phase, Phase::Head { .. }) => {
                self.set_due(self.limits.header_read_timeout);
            }
            _ => {}
        }
        self.phase = phase;
    }

    /// A response is going out, so the request it answers has been read: the connection is idle
    /// from this write on.
    fn wrote(&mut self, cx: &mut Context<'_>) {
        if self.phase == Phase::Idle {
            // A later write of the response (a stream): the idle time starts again. The timer,
            // set for the earlier deadline, fires early and is moved on in `poll_due`.
            self.due = Instant::now() + self.limits.idle_timeout;
        } else if self.phase == Phase::Request {
            self.enter(Phase::Idle);
            // hyper may already wait on a read it polled before the response, which registered
            // only the socket; the connection's task must also wake by the idle deadline (the
            // read and the write share one task) and then reads again, meeting the deadline.
            let _ = self.poll_due(cx);
        }
    }

    fn set_due(&mut self, after: Duration) {
        self.due = Instant::now() + after;
        if self.due < self.timer.deadline() {
            self.timer.as_mut().reset(self.due);
        }
    }

    /// Ready once `due` has passed; otherwise the timer is armed to wake this task by then.
    fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            if Instant::now() >= self.due {
                return Poll::Ready(());
            }
            // Fired early: the deadline moved on since the timer was set.
            self.timer.as_mut().reset(self.due);
        }
    }
}

/// The phase after `bytes` arrive in `phase`: the head ends at its first `\r\n\r\n`.
fn advance(phase: Phase, bytes: &[u8]) -> Phase {
    const END: &[u8; 4] = b"\r\n\r\n";
    let mut matched = match phase {
        Phase::Request => return Phase::Request,
        Phase::Idle if bytes.is_empty() => return Phase::Idle,
        Phase::Idle => 0,
        Phase::Head { matched } => matched,
    };
    for &byte in bytes {
        matched = if byte == END[usize::from(matched)] {
            matched + 1
        } else if byte == b'\r' {
            1
        } else {
            0
        };
        if usize::from(matched) == END.len() {
            return Phase::Request;
        }
    }
    Phase::Head { matched }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let next = advance(this.phase, &buf.filled()[before..]);
                this.enter(next);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                if this.phase == Phase::Request {
                    return Poll::Pending;
                }
                ready!(this.poll_due(cx));
                this.metrics.timed_out.inc();
                let what = match this.phase {
                    Phase::Idle => "idle connection",
                    _ => "request head not received in time",
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
            }
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.stream).poll_write(cx, data))?;
        this.wrote(cx);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.stream).poll_write_vectored(cx, bufs))?;
        this.wrote(cx);
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_the_first_blank_line_even_split_across_reads() {
        let phase = advance(Phase::Idle, b"GET / HTTP/1.1\r\nHost: x\r");
        assert_eq!(phase, Phase::Head { matched: 1 });
        let phase = advance(phase, b"\n\r");
        assert_eq!(phase, Phase::Head { matched: 3 });
        assert_eq!(advance(phase, b"\nbody"), Phase::Request);
    }

    #[test]
    fn a_broken_terminator_starts_over() {
        let phase = advance(Phase::Idle, b"GET / HTTP/1.1\r\n\r");
        assert_eq!(phase, Phase::Head { matched: 3 });
        assert_eq!(advance(phase, b"x"), Phase::Head { matched: 0 });
        assert_eq!(advance(phase, b"\r"), Phase::Head { matched: 1 });
    }

    #[test]
    fn nothing_read_leaves_an_idle_connection_idle() {
        assert_eq!(advance(Phase::Idle, b""), Phase::Idle);
        assert_eq!(advance(Phase::Request, b"more body"), Phase::Request);
    }
}

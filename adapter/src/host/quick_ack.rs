//! Immediate ACKs on a Runtime API connection while a function streams its reply over it.
//!
//! `lambda_runtime`'s client leaves Nagle's algorithm on, and writes a streamed reply in several
//! small writes (the prelude, its delimiter, each chunk). Nagle holds a small write back until the
//! last one is acknowledged, and the adapter, which answers only once the stream ends, would
//! delay that ACK by up to 40 ms (Linux's delayed ACK): measured, one streamed reply in fifty got
//! its first byte 45 ms late. So when a stream starts, the pending ACK goes out at once
//! (`TCP_QUICKACK`), and while it is read every read re-arms it (Linux clears it by itself).
//! Other replies skip it: no syscall more per read.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A listener whose connections can be switched to immediate ACKs.
pub(crate) struct QuickAckListener<L>(pub(crate) L);

impl<L> Listener for QuickAckListener<L>
where
    L: Listener<Io = TcpStream>,
{
    type Io = QuickAckStream;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = self.0.accept().await;
        // A second descriptor of the same socket, for handlers to reach it (one per connection,
        // and Runtime API connections live long).
        let socket = stream.as_fd().try_clone_to_owned().ok().map(Arc::new);
        let switch = QuickAckSwitch {
            on: Arc::default(),
            socket,
        };
        (QuickAckStream { stream, switch }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Turns immediate ACKs on and off for one connection; handlers get it as `ConnectInfo`.
#[derive(Debug, Clone)]
pub(crate) struct QuickAckSwitch {
    on: Arc<AtomicBool>,
    socket: Option<Arc<OwnedFd>>,
}

impl QuickAckSwitch {
    /// Acknowledges what has come at once, and every read until the guard is dropped.
    pub(crate) fn on(&self) -> QuickAckGuard {
        self.on.store(true, Ordering::Relaxed);
        if let Some(socket) = &self.socket {
            quick_ack(socket);
        }
        QuickAckGuard(self.clone())
    }
}

/// Best effort: without it a stream is only slower.
#[cfg(target_os = "linux")]
fn quick_ack(socket: &impl AsFd) {
    let _ = socket2::SockRef::from(socket).set_tcp_quickack(true);
}

/// `TCP_QUICKACK` is Linux's; elsewhere streams keep the delayed ACK.
#[cfg(not(target_os = "linux"))]
fn quick_ack(_socket: &impl AsFd) {}

/// Turns immediate ACKs off when dropped.
pub(crate) struct QuickAckGuard(QuickAckSwitch);

impl Drop for QuickAckGuard {
    fn drop(&mut self) {
        self.0.on.store(false, Ordering::Relaxed);
    }
}

impl<L> Connected<IncomingStream<'_, QuickAckListener<L>>> for QuickAckSwitch
where
    L: Listener<Io = TcpStream>,
{
    fn connect_info(stream: IncomingStream<'_, QuickAckListener<L>>) -> Self {
        stream.io().switch.clone()
    }
}

/// A TCP stream that re-arms `TCP_QUICKACK` after each read while its switch is on.
pub(crate) struct QuickAckStream {
    stream: TcpStream,
    switch: QuickAckSwitch,
}

impl AsyncRead for QuickAckStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before && self.switch.on.load(Ordering::Relaxed) {
            quick_ack(&self.stream);
        }
        read
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

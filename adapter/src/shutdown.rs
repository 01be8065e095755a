//! SIGTERM and SIGINT as a [`CancellationToken`].

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT. Fails only if the handlers cannot be installed.
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
            () = token.cancelled() => return,
        };
        tracing::info!(
            signal = name,
            "shutting down: no new work; draining what is in flight"
        );
        token.cancel();
    });
    Ok(())
}

/// Cancels `token` when standard input reaches its end (or fails): the process that started the
/// adapter holds the other end of a pipe, and the kernel closes it when that process dies, however
/// it dies. The LocalStack executor uses this so no adapter outlives a `kill -9` of LocalStack.
///
/// The read runs on a plain thread, not tokio's blocking pool: a read cannot be cancelled, and the
/// runtime waits for its blocking pool at exit, so a clean stop would hang on an open stdin.
pub fn cancel_on_stdin_eof(token: CancellationToken) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("stdin-eof".into())
        .spawn(move || {
            use std::io::Read as _;
            let mut stdin = std::io::stdin().lock();
            let mut buffer = [0u8; 256];
            while let Ok(read) = stdin.read(&mut buffer) {
                if read == 0 {
                    break;
                }
            }
            if !token.is_cancelled() {
                tracing::info!("shutting down: standard input closed");
                token.cancel();
            }
        })
        .map(drop)
}

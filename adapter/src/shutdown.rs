//! SIGTERM and SIGINT as a [`CancellationToken`], and [`ShutdownBudget`]: how the grace period
//! that follows is shared out.

use std::time::Duration;

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

/// The shutdown grace period (`--shutdown-grace`) and every deadline derived from it: the one
/// place that says how long each step of a stop may take, for `app` and the event sources alike.
///
/// All spans count from the moment shutdown is seen. Running work drains for [`Self::drain`]; a
/// source that holds messages then gives them back (SQS: visible again at once) by
/// [`Self::release_by`]; `app` stops waiting for such a source at [`Self::source_bound`], and once
/// the function processes are stopped lets the sources answer their callers for
/// [`Self::flush_after_cut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownBudget {
    grace: Duration,
}

impl ShutdownBudget {
    /// Most of the grace period kept for the release, so it happens within the grace.
    const RELEASE: Duration = Duration::from_secs(2);
    /// A source's slack past its release deadline to log what it did and return.
    const RETURN: Duration = Duration::from_secs(1);
    /// After the processes are stopped, how long sources get to answer what the host failed.
    const FLUSH: Duration = Duration::from_secs(2);

    /// The budget for a grace period of `grace`.
    pub fn new(grace: Duration) -> Self {
        Self { grace }
    }

    /// The grace period itself: how long sources that cannot cut their work (HTTP) may drain.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// How long running work may finish: the grace less a slice (2 s, or a fifth of a short
    /// grace) kept for releasing what cannot finish.
    pub fn drain(&self) -> Duration {
        self.grace.saturating_sub(Self::RELEASE.min(self.grace / 5))
    }

    /// When what is still held must have been released: the release may run its slice of the
    /// grace, and up to 2 s past it (a few tries of a batch call).
    pub fn release_by(&self) -> Duration {
        self.grace + Self::RELEASE
    }

    /// How long `app` waits for a source that releases its own work before it stops waiting.
    pub fn source_bound(&self) -> Duration {
        self.release_by() + Self::RETURN
    }

    /// After the grace, with the processes stopped: how long sources get to answer callers.
    pub fn flush_after_cut(&self) -> Duration {
        Self::FLUSH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_fits_between_the_drain_and_the_source_bound() {
        let budget = ShutdownBudget::new(Duration::from_secs(30));
        assert_eq!(budget.drain(), Duration::from_secs(28));
        assert_eq!(budget.release_by(), Duration::from_secs(32));
        assert_eq!(budget.source_bound(), Duration::from_secs(33));
        // A short grace keeps most of itself for the drain.
        let short = ShutdownBudget::new(Duration::from_secs(5));
        assert_eq!(short.drain(), Duration::from_secs(4));
        assert!(short.drain() < short.grace() && short.release_by() < short.source_bound());
    }
}

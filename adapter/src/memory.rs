//! Gives memory back to the system after a burst of connections.
//!
//! glibc's allocator keeps freed memory in its per-thread arenas: after a flood of 4,096
//! connections (about 26 KiB each) the adapter's RSS stayed at its peak long after they closed.
//! Once many connections have closed, `malloc_trim(0)` returns the free pages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Connections closed since the last trim that make another one worth it.
const CLOSED_BEFORE_TRIM: u64 = 1024;
/// How often to look.
const EVERY: Duration = Duration::from_secs(10);

/// Watches `closed` (a count of closed connections) and trims the heap after each burst, until
/// the process ends.
pub(crate) fn trim_after_bursts(closed: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let mut trimmed_at = 0;
        let mut every = tokio::time::interval(EVERY);
        loop {
            every.tick().await;
            let now = closed.load(Ordering::Relaxed);
            if now - trimmed_at >= CLOSED_BEFORE_TRIM {
                trimmed_at = now;
                tokio::task::spawn_blocking(trim);
            }
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; any thread may call it.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "heap trimmed after a burst of connections"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// The largest peak resident set (`VmHWM`) among this process's children (the function
/// processes), in MB rounded up; `None` where `/proc` cannot tell (no children, not Linux).
///
/// Children are listed per thread (`/proc/self/task/*/children`): a child belongs to the thread
/// that spawned it, and tokio spawns from any worker.
pub(crate) fn function_peak_mb() -> Option<u64> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut peak_kb = None;
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for pid in children.split_whitespace() {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            let hwm = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                });
            peak_kb = peak_kb.max(hwm);
        }
    }
    peak_kb.map(|kb| kb.div_ceil(1024))
}

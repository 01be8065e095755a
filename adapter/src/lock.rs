//! The one way the adapter takes a `std::sync::Mutex`.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, ignoring poison. Every critical section in the adapter leaves its data
/// consistent (single inserts, removes or assignments), so a holder that panicked left nothing
/// half-done, and refusing the lock would only spread the panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

//! Locking helpers shared by every layer.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the data even if a thread panicked while holding it: evlog's shared state
/// stays consistent across a panic (every critical section either completes or changes nothing
/// that the next holder relies on), and a poisoned mutex must not turn into a second panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

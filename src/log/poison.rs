//! Poisoning: after a failed write or fsync the log refuses every later append and sync,
//! because the kernel may have dropped the dirty pages (fsyncgate). Never cleared in-process;
//! reopening the log recovers from what is on disk.

use crate::error::LogError as Error;
use crate::log::{Shared, lock};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the log is poisoned, and by what.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    set: AtomicBool,
    cause: Mutex<Option<String>>,
}

impl Poison {
    #[inline]
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }
}

impl Shared {
    /// Every append looks: inline, with the error built out of line.
    #[inline]
    pub fn check_poison(&self) -> Result<(), Error> {
        if self.poison.is_set() { Err(self.poisoned_error()) } else { Ok(()) }
    }

    #[cold]
    fn poisoned_error(&self) -> Error {
        let cause = lock(&self.poison.cause).clone().unwrap_or_default();
        Error::Poisoned { path: self.dir.clone(), cause }
    }

    /// Marks the log poisoned after a failed write or fsync and wakes every waiter.
    pub fn poison(&self, err: &Error) {
        {
            let mut c = lock(&self.poison.cause);
            if c.is_none() {
                *c = Some(err.to_string());
            }
        }
        self.poison.set.store(true, Ordering::Release);
        self.write.wake_all();
    }
}

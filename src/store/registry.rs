//! Where the layers above the store keep state shared per store or per topic (open work queues,
//! a topic's idempotent-producer table) without the store knowing their types: slots keyed by
//! type, looked up with a downcast. The store only holds them; the layer that made one is the only
//! one that reads it.

use crate::error::Result;
use crate::sync::lock;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

type Shared = dyn Any + Send + Sync;

/// Values that live as long as someone holds them, by (type, name, name): a queue is shared by
/// every handle to it while one is open.
#[derive(Debug, Default)]
pub(crate) struct Live {
    entries: Mutex<HashMap<(TypeId, String, String), Weak<Shared>>>,
}

impl Live {
    /// The live value of type `T` under `key`, or the one `make` makes (and registers). The
    /// registry stays locked while `make` runs, so two callers never make two.
    pub fn get_or_make<T: Any + Send + Sync>(
        &self,
        key: (&str, &str),
        make: impl FnOnce() -> Result<Arc<T>>,
    ) -> Result<Arc<T>> {
        let k = (TypeId::of::<T>(), key.0.to_string(), key.1.to_string());
        let mut entries = lock(&self.entries);
        if let Some(v) = entries.get(&k).and_then(Weak::upgrade).and_then(|v| v.downcast::<T>().ok()) {
            return Ok(v);
        }
        let v = make()?;
        let shared: Arc<Shared> = v.clone();
        entries.insert(k, Arc::downgrade(&shared));
        Ok(v)
    }

    /// Whether a value of type `T` under `key` is alive.
    pub fn is_live<T: Any + Send + Sync>(&self, key: (&str, &str)) -> bool {
        let k = (TypeId::of::<T>(), key.0.to_string(), key.1.to_string());
        lock(&self.entries).get(&k).is_some_and(|w| w.strong_count() > 0)
    }

    /// Every live value of type `T`, with its key (for a monitor that reads them all).
    pub fn values<T: Any + Send + Sync>(&self) -> Vec<((String, String), Arc<T>)> {
        let entries = lock(&self.entries);
        (entries.iter())
            .filter(|((t, _, _), _)| *t == TypeId::of::<T>())
            .filter_map(|((_, a, b), w)| Some(((a.clone(), b.clone()), w.upgrade()?.downcast::<T>().ok()?)))
            .collect()
    }

    /// Forgets the entry under `key` if its value is gone (called from the value's `Drop`).
    pub fn forget_dead<T: Any + Send + Sync>(&self, key: (&str, &str)) {
        let k = (TypeId::of::<T>(), key.0.to_string(), key.1.to_string());
        let mut entries = lock(&self.entries);
        if entries.get(&k).is_some_and(|w| w.strong_count() == 0) {
            entries.remove(&k);
        }
    }
}

/// Values kept as long as their owner (a topic) lives, one per type.
#[derive(Debug, Default)]
pub(crate) struct Extensions {
    slots: Mutex<HashMap<TypeId, Arc<Shared>>>,
}

impl Extensions {
    /// The value of type `T`, made by `make` the first time.
    pub fn get_or_make<T: Any + Send + Sync>(&self, make: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
        let mut slots = lock(&self.slots);
        if let Some(v) = slots.get(&TypeId::of::<T>()).and_then(|v| v.clone().downcast::<T>().ok()) {
            return Ok(v);
        }
        let v = Arc::new(make()?);
        slots.insert(TypeId::of::<T>(), v.clone());
        Ok(v)
    }
}

//! The bus's per-node cache of loaded aggregates: a bounded LRU map from stream to a slot that
//! holds one aggregate's state behind its own async mutex.

use std::any::Any;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;
use secureconnect_events::{StreamId, StreamVersion};

/// One aggregate's state and the stream version it reflects.
pub(super) struct Loaded<A> {
    pub state: A,
    pub version: StreamVersion,
}

/// The place of one aggregate instance in the cache. Commands lock it for their whole run, so
/// commands on one aggregate take turns on this node. It is `None` until the first command
/// loads the aggregate, and again after a load found the stream unreadable.
pub(super) type Slot<A> = tokio::sync::Mutex<Option<Loaded<A>>>;

pub(super) struct AggregateCache {
    /// Slots of every aggregate type, type-erased because one bus serves them all. The key's
    /// aggregate type fixes the Rust type behind the `Any`, since each `AggregateType` has one
    /// `ManagedAggregate`. A std mutex suffices because it is never held across an await.
    slots: Mutex<LruCache<StreamId, Arc<dyn Any + Send + Sync>>>,
}

impl AggregateCache {
    pub fn new(capacity: NonZeroUsize) -> AggregateCache {
        AggregateCache {
            slots: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Returns the stream's slot, creating an empty one when the stream is not cached. An
    /// evicted slot that a command still uses stays valid for that command. A command that
    /// starts later loads a new slot from the log, and the log's optimistic concurrency keeps
    /// the two correct.
    pub fn slot<A: Send + 'static>(&self, stream: &StreamId) -> Arc<Slot<A>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = slots.get(stream)
            && let Ok(slot) = Arc::clone(entry).downcast::<Slot<A>>()
        {
            return slot;
        }
        let slot: Arc<Slot<A>> = Arc::new(tokio::sync::Mutex::new(None));
        slots.put(
            stream.clone(),
            Arc::clone(&slot) as Arc<dyn Any + Send + Sync>,
        );
        slot
    }

    /// Drops the stream's slot if it is still `slot`, so that lookups of streams that do not
    /// exist do not push real aggregates out of the cache.
    pub fn forget<A: Send + 'static>(&self, stream: &StreamId, slot: &Arc<Slot<A>>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let is_same_slot = slots.peek(stream).is_some_and(|entry| {
            Arc::clone(entry)
                .downcast::<Slot<A>>()
                .is_ok_and(|cached| Arc::ptr_eq(&cached, slot))
        });
        if is_same_slot {
            slots.pop(stream);
        }
    }

    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

//! [`ValueCache`]: the values of one entity kind held in memory, within a
//! byte budget.
//!
//! It has two parts:
//!
//! - **pending**: every entity a creation published that the writer thread
//!   has not written to sled yet. That copy is the only one until the
//!   writer is done, so it is never evicted; the writer's completion moves
//!   it into the cache ([`ValueCache::written`]). The write queue bounds it
//!   ([`super::store::MAX_QUEUED`] jobs).
//! - **the cache**: entities read from their records or written since,
//!   in two generations. An entity goes into the young one; once the young
//!   generation's bytes reach half the budget, the old generation is
//!   dropped and the young one becomes the old. A hit in the old
//!   generation moves the entity back into the young one
//!   ([`ValueCache::promote`]). So an entity used within the last half
//!   budget's worth of insertions is kept, and the cache never holds more
//!   than its budget (plus one entity's bytes). A value evicted is read
//!   again from its record when asked for.
//!
//! An entity's bytes are [`Entity::heap_bytes`] plus its `Arc`'s
//! allocation and its hash-map slot; spare slots are counted by
//! [`ValueCache::bytes`] but not against the budget.
//!
//! Invariant: an id is in at most one of the three maps.

use super::store::Entity;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use uuid::Uuid;

/// The default budget of the meta store's value caches, all kinds
/// together: 64 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// The values of one kind; see the module docs.
pub(super) struct ValueCache<E> {
    pending: FxHashMap<Uuid, Arc<E>>,
    young: FxHashMap<Uuid, Arc<E>>,
    old: FxHashMap<Uuid, Arc<E>>,
    /// Bytes of the entities in `young`, and in `old`.
    young_bytes: usize,
    old_bytes: usize,
    /// Most bytes of `young` and `old` together.
    budget: usize,
}

/// Where [`ValueCache::get`] found an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// Pending, or in the young generation: nothing to do.
    Fresh,
    /// In the old generation: [`ValueCache::promote`] keeps it.
    Old,
}

impl<E: Entity> ValueCache<E> {
    /// An empty cache holding at most `budget` bytes of written entities.
    pub(super) fn new(budget: usize) -> Self {
        ValueCache {
            pending: FxHashMap::default(),
            young: FxHashMap::default(),
            old: FxHashMap::default(),
            young_bytes: 0,
            old_bytes: 0,
            budget,
        }
    }

    /// The bytes one entity counts for.
    fn cost(e: &E) -> usize {
        // The Arc's counts, the value, its heap; the slot and its control byte.
        16 + std::mem::size_of::<E>() + e.heap_bytes() + std::mem::size_of::<(Uuid, Arc<E>)>() + 1
    }

    /// The entity `id`, if held, and where.
    pub(super) fn get(&self, id: &Uuid) -> Option<(Arc<E>, Found)> {
        if let Some(e) = self.pending.get(id).or_else(|| self.young.get(id)) {
            return Some((e.clone(), Found::Fresh));
        }
        self.old.get(id).map(|e| (e.clone(), Found::Old))
    }

    /// Moves `id` from the old generation into the young one (nothing if
    /// it is not in the old generation any more).
    pub(super) fn promote(&mut self, id: &Uuid) {
        if let Some(e) = self.old.remove(id) {
            self.old_bytes -= Self::cost(&e);
            self.insert_young(*id, e);
        }
    }

    /// Holds `e`, just created and not written yet, until
    /// [`ValueCache::written`]. A new id is not held: only stored ids are
    /// cached, and a collection forgets an id when it deletes it.
    pub(super) fn insert_pending(&mut self, id: Uuid, e: Arc<E>) {
        debug_assert!(!self.young.contains_key(&id) && !self.old.contains_key(&id));
        self.pending.insert(id, e);
    }

    /// The writer thread has written `id` to sled: a pending entity moves
    /// into the cache.
    pub(super) fn written(&mut self, id: &Uuid) {
        if let Some(e) = self.pending.remove(id) {
            self.insert_young(*id, e);
        }
    }

    /// Caches `e`, written (read from its record, or created after the
    /// writer wrote it), unless `id` is held already; returns the held
    /// entity.
    pub(super) fn insert(&mut self, id: Uuid, e: impl FnOnce() -> Arc<E>) -> Arc<E> {
        match self.get(&id) {
            Some((held, Found::Fresh)) => held,
            Some((held, Found::Old)) => {
                self.promote(&id);
                held
            }
            None => {
                let e = e();
                self.insert_young(id, e.clone());
                e
            }
        }
    }

    fn insert_young(&mut self, id: Uuid, e: Arc<E>) {
        let cost = Self::cost(&e);
        if self.young_bytes + cost > self.budget / 2 && !self.young.is_empty() {
            // Rotate: the old generation goes, the young one ages.
            self.old = std::mem::take(&mut self.young);
            self.old_bytes = std::mem::replace(&mut self.young_bytes, 0);
        }
        if let Some(prev) = self.young.insert(id, e) {
            self.young_bytes -= Self::cost(&prev);
        }
        self.young_bytes += cost;
    }

    /// Forgets `id` (a collection deleted it).
    pub(super) fn remove(&mut self, id: &Uuid) {
        self.pending.remove(id);
        if let Some(e) = self.young.remove(id) {
            self.young_bytes -= Self::cost(&e);
        }
        if let Some(e) = self.old.remove(id) {
            self.old_bytes -= Self::cost(&e);
        }
    }

    /// Drops every written entity (pending ones stay).
    #[cfg(test)]
    pub(super) fn clear(&mut self) {
        self.young = FxHashMap::default();
        self.old = FxHashMap::default();
        self.young_bytes = 0;
        self.old_bytes = 0;
    }

    /// Gives spare hash-map slots back.
    pub(super) fn shrink_to_fit(&mut self) {
        self.pending.shrink_to_fit();
        self.young.shrink_to_fit();
        self.old.shrink_to_fit();
    }

    /// The ids held, pending or cached.
    #[cfg(test)]
    pub(super) fn ids(&self) -> impl Iterator<Item = &Uuid> {
        self.pending
            .keys()
            .chain(self.young.keys())
            .chain(self.old.keys())
    }

    /// Entities pending, and cached.
    #[cfg(test)]
    pub(super) fn lens(&self) -> (usize, usize) {
        (self.pending.len(), self.young.len() + self.old.len())
    }

    /// Bytes of the cached (written) entities, which the budget bounds.
    pub(super) fn cached_bytes(&self) -> usize {
        self.young_bytes + self.old_bytes
    }

    /// Approximate heap bytes of everything held, spare slots included.
    pub(super) fn bytes(&self) -> usize {
        let slot = std::mem::size_of::<(Uuid, Arc<E>)>() + 1;
        let spare = |m: &FxHashMap<Uuid, Arc<E>>| (m.capacity() - m.len()) * slot;
        let pending: usize = self.pending.values().map(|e| Self::cost(e)).sum();
        pending + self.cached_bytes() + spare(&self.pending) + spare(&self.young) + spare(&self.old)
    }
}

#[cfg(test)]
mod tests {
    //! The cache against a slow model: a list of every entity inserted or
    //! used, most recent last. What the cache holds must be a suffix of
    //! the distinct entities of that list (the most recently used ones),
    //! at least as long as the suffix that fits half the budget, and
    //! within the budget; pending entities are always held.

    use super::*;
    use crate::model::Function;
    use proptest::prelude::*;

    fn function(i: u8, len: usize) -> Arc<Function> {
        Arc::new(Function {
            name: format!("f{i}-{}", "x".repeat(len)),
            ..Function::default()
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Read `id` from its record and cache it (or use it if held).
        Read(u8, usize),
        /// Create `id`: pending.
        Create(u8, usize),
        /// The writer wrote the oldest pending entity.
        Written,
        /// Ask for `id`, promoting it if old.
        Get(u8),
        /// A collection deletes `id`.
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..40, 0usize..200).prop_map(|(i, n)| Op::Read(i, n)),
            1 => (40u8..60, 0usize..200).prop_map(|(i, n)| Op::Create(i, n)),
            1 => Just(Op::Written),
            3 => (0u8..60).prop_map(Op::Get),
            1 => (0u8..60).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #[test]
        fn holds_the_most_recently_used_within_the_budget(
            budget in 300usize..4000,
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let mut c: ValueCache<Function> = ValueCache::new(budget);
            let id = |i: u8| Uuid::from_u128(i as u128);
            let cost = |e: &Arc<Function>| ValueCache::<Function>::cost(e);
            // The model: written entities by recency, most recent last;
            // and every use with its bytes, a removed entity's uses kept
            // as ghosts (it took room in the cache until removed).
            let mut recent: Vec<(u8, Arc<Function>)> = Vec::new();
            let mut history: Vec<(u8, usize, bool)> = Vec::new();
            let mut pending: Vec<(u8, Arc<Function>)> = Vec::new();
            let touch = |recent: &mut Vec<(u8, Arc<Function>)>,
                         history: &mut Vec<(u8, usize, bool)>,
                         i: u8,
                         e: Arc<Function>| {
                recent.retain(|(j, _)| *j != i);
                history.retain(|(j, _, _)| *j != i);
                history.push((i, cost(&e), true));
                recent.push((i, e));
            };
            for op in ops {
                match op {
                    Op::Read(i, n) => {
                        if pending.iter().any(|(j, _)| *j == i) {
                            continue;
                        }
                        let got = c.insert(id(i), || function(i, n));
                        touch(&mut recent, &mut history, i, got);
                    }
                    Op::Create(i, n) => {
                        if c.get(&id(i)).is_some() || recent.iter().any(|(j, _)| *j == i) {
                            continue;
                        }
                        let e = function(i, n);
                        c.insert_pending(id(i), e.clone());
                        pending.push((i, e));
                    }
                    Op::Written => {
                        if !pending.is_empty() {
                            let (i, e) = pending.remove(0);
                            c.written(&id(i));
                            touch(&mut recent, &mut history, i, e);
                        }
                    }
                    Op::Get(i) => {
                        if let Some((e, found)) = c.get(&id(i)) {
                            if found == Found::Old {
                                c.promote(&id(i));
                            }
                            if !pending.iter().any(|(j, _)| *j == i) {
                                touch(&mut recent, &mut history, i, e);
                            }
                        }
                    }
                    Op::Remove(i) => {
                        c.remove(&id(i));
                        recent.retain(|(j, _)| *j != i);
                        pending.retain(|(j, _)| *j != i);
                        for h in history.iter_mut().filter(|h| h.0 == i) {
                            h.2 = false;
                        }
                    }
                }
                // Pending entities are all held, as they were created.
                for (i, e) in &pending {
                    let (held, _) = c.get(&id(*i)).expect("a pending entity is held");
                    prop_assert!(Arc::ptr_eq(&held, e));
                }
                prop_assert_eq!(c.lens().0, pending.len());
                // The cached ones: a suffix of the recency list.
                let held: Vec<u8> = recent
                    .iter()
                    .map(|(i, _)| *i)
                    .filter(|i| c.get(&id(*i)).is_some())
                    .collect();
                prop_assert_eq!(held.len(), c.lens().1);
                let suffix: Vec<u8> =
                    recent[recent.len() - held.len()..].iter().map(|(i, _)| *i).collect();
                prop_assert_eq!(&held, &suffix);
                // Within the budget, and at least the most recent half of it
                // (or the most recent entity, whatever its size).
                let mut largest = 0;
                let cached: usize = recent[recent.len() - held.len()..]
                    .iter()
                    .map(|(_, e)| {
                        largest = largest.max(cost(e));
                        cost(e)
                    })
                    .sum();
                prop_assert_eq!(cached, c.cached_bytes());
                // Each generation: half the budget, or one entity over.
                prop_assert!(cached <= budget.max(2 * largest), "{cached} > {budget}");
                let mut sum = 0;
                for (n, (i, bytes, live)) in history.iter().rev().enumerate() {
                    sum += bytes;
                    if sum > budget / 2 && n > 0 {
                        break;
                    }
                    if *live {
                        prop_assert!(c.get(&id(*i)).is_some(), "{i} is among the last used");
                    }
                }
            }
        }
    }
}

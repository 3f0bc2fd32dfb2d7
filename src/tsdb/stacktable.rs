//! [`StackTable`]: dense 32-bit numbers ([`StackRef`]) for the 16-byte
//! stack ids of the chunk sets that share the table, so that a sealed
//! set's column index names a stack in 4 bytes rather than 16
//! ([`crate::tsdb::chunkset`]).
//!
//! Invariants: a table only grows; a number, once given, names the same
//! stack for the table's life; a stack interned twice gets the same number.
//! Interning takes the table's write lock; a reader takes its read lock
//! once per set it reads ([`StackTable::ids`]) and then resolves numbers by
//! indexing a slice, as cheap as the 16-byte ids inline were.
//!
//! Who shares a table, and so how long it lives: the head's chunk sets of
//! one generation ([`crate::tsdb::head::Head::stack_table`]; the head starts
//! a new one each time it is truncated after a cut, so a table holds the
//! stacks of about one head span and is freed with the last set that was
//! built with it), the sets read from one block (for the life of the block
//! handle), and the sets of one block being written.
//!
//! Memory: 16 bytes per id (up to twice that while the vector grows) and a
//! hash table of 4-byte numbers (hashed by the id each names) to find a
//! stack's number when a set is sealed: about 25–40 bytes per stack in all.
//! A sealed column saves 12 bytes, and a stack has a column in every set of
//! every series that has it, so the table pays for itself from about three
//! columns per stack.

use crate::model::StackId;
use hashbrown::HashTable;
use parking_lot::{RwLock, RwLockReadGuard};
use std::hash::BuildHasher;

/// A stack's number in one [`StackTable`]: meaningful only with that table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StackRef(pub u32);

/// Dense numbers for stack ids (see the [module docs](self)).
#[derive(Default)]
pub struct StackTable {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Number → id.
    ids: Vec<StackId>,
    /// The numbers, found by the hash of the id they name.
    index: HashTable<u32>,
}

/// The ids of a table, read-locked: [`StackIds::get`] resolves numbers.
pub struct StackIds<'a>(RwLockReadGuard<'a, Inner>);

impl StackIds<'_> {
    /// The id numbered `r`, if `r` was given by this table.
    #[inline]
    pub fn get(&self, r: StackRef) -> Option<StackId> {
        self.0.ids.get(r.0 as usize).copied()
    }
}

impl std::fmt::Debug for StackTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackTable")
            .field("stacks", &self.len())
            .finish()
    }
}

fn hash(id: &StackId) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(id)
}

impl StackTable {
    /// An empty table.
    pub fn new() -> StackTable {
        StackTable::default()
    }

    /// The numbers of `ids`, in order, each interned (one lock for all).
    /// `None` only when the table is full (2³² stacks, far more than a
    /// process holds): the caller keeps the ids instead.
    pub fn intern_all(&self, ids: impl IntoIterator<Item = StackId>) -> Option<Vec<StackRef>> {
        let mut inner = self.inner.write();
        ids.into_iter().map(|id| inner.intern(id)).collect()
    }

    /// The number of `id`, interned if new (see [`StackTable::intern_all`]).
    pub fn intern(&self, id: StackId) -> Option<StackRef> {
        self.inner.write().intern(id)
    }

    /// The table's ids, read-locked until the value is dropped: take it
    /// once per set read, not per column. Interning waits meanwhile.
    pub fn ids(&self) -> StackIds<'_> {
        // Recursive: a thread reading two sets of one table at once must
        // not wait behind a writer that waits for its first read.
        StackIds(self.inner.read_recursive())
    }

    /// The id numbered `r`, if `r` was given by this table.
    pub fn get(&self, r: StackRef) -> Option<StackId> {
        self.ids().get(r)
    }

    /// Stacks numbered.
    pub fn len(&self) -> usize {
        self.inner.read_recursive().ids.len()
    }

    /// True when no stack is numbered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held: the ids' and the index's allocations.
    pub fn bytes(&self) -> usize {
        let inner = self.inner.read_recursive();
        inner.ids.capacity() * std::mem::size_of::<StackId>() + inner.index.allocation_size()
    }
}

impl Inner {
    fn intern(&mut self, id: StackId) -> Option<StackRef> {
        let h = hash(&id);
        let ids = &self.ids;
        if let Some(&n) = self.index.find(h, |&n| ids.get(n as usize) == Some(&id)) {
            return Some(StackRef(n));
        }
        let n = u32::try_from(ids.len()).ok()?;
        self.ids.push(id);
        let ids = &self.ids;
        // Every number in the index names an id in `ids` (pushed before it
        // is inserted), so the fallback is never used; were it, the entry
        // would only sit in another bucket and the stack get a second
        // number, which still names it.
        self.index.insert_unique(h, n, |&m| {
            hash(
                &ids.get(m as usize)
                    .copied()
                    .unwrap_or(StackId(uuid::Uuid::nil())),
            )
        });
        Some(StackRef(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn id(i: u64) -> StackId {
        StackId(uuid::Uuid::from_u64_pair(
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            i,
        ))
    }

    proptest! {
        /// Against a `Vec` and a linear search: the same id gets the same
        /// number, numbers are dense in first-seen order, and each
        /// resolves to its id.
        #[test]
        fn numbers_match_a_linear_table(ids in proptest::collection::vec(0u64..200, 0..600)) {
            let t = StackTable::new();
            let mut model: Vec<StackId> = Vec::new();
            for (k, &i) in ids.iter().enumerate() {
                let s = id(i);
                let r = if k % 2 == 0 {
                    t.intern(s).unwrap()
                } else {
                    t.intern_all([s]).unwrap()[0]
                };
                let want = match model.iter().position(|m| *m == s) {
                    Some(p) => p,
                    None => {
                        model.push(s);
                        model.len() - 1
                    }
                };
                prop_assert_eq!(r, StackRef(want as u32));
                prop_assert_eq!(t.get(r), Some(s));
            }
            prop_assert_eq!(t.len(), model.len());
            prop_assert_eq!(t.get(StackRef(model.len() as u32)), None);
        }
    }

    #[test]
    fn threads_interning_the_same_ids_agree() {
        let t = Arc::new(StackTable::new());
        let runs: Vec<Vec<StackRef>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|k| {
                    let t = Arc::clone(&t);
                    s.spawn(move || {
                        // Each thread in its own order.
                        let mut order: Vec<u64> = (0..2000).collect();
                        order.rotate_left(k * 500);
                        let refs = t.intern_all(order.iter().map(|&i| id(i))).unwrap();
                        let mut by_id = vec![StackRef(0); 2000];
                        for (i, r) in order.iter().zip(refs) {
                            by_id[*i as usize] = r;
                        }
                        by_id
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(t.len(), 2000);
        for r in &runs[1..] {
            assert_eq!(r, &runs[0]);
        }
        for (i, r) in runs[0].iter().enumerate() {
            assert_eq!(t.get(*r), Some(id(i as u64)));
        }
        assert!(t.bytes() >= 2000 * 16);
    }
}

//! [`StackTable`]: dense 32-bit numbers ([`StackRef`]) for the 16-byte
//! stack ids of the chunk sets that share the table, so that a sealed
//! set's column index names a stack in 4 bytes rather than 16
//! ([`crate::tsdb::chunkset`]).
//!
//! Invariants: a table only grows; a number, once given, names the same
//! stack for the table's life; a stack interned twice gets the same number
//! (interning is serialized by a mutex). Readers resolve a number without
//! a lock: the ids live in an append-only vector (`boxcar`) whose entries
//! never move, and a number is handed out only after its id is written.
//!
//! Who shares a table, and so how long it lives: the head's chunk sets of
//! one generation ([`crate::tsdb::head::Head::stack_table`]; the head starts
//! a new one each time it is truncated after a cut, so a table holds the
//! stacks of about one head span and is freed with the last set that was
//! built with it), the sets read from one block (for the life of the block
//! handle), and the sets of one block being written.
//!
//! Memory: 17 bytes per id, plus the vector's growth (its buckets double),
//! and a hash table of 4-byte numbers (hashed by the id each names) to find
//! a stack's number when a set is sealed: about 25–45 bytes per stack in
//! all. A sealed column saves 12 bytes, and a stack has a column in every
//! set of every series that has it, so the table pays for itself from
//! about three columns per stack.

use crate::model::StackId;
use hashbrown::HashTable;
use parking_lot::Mutex;
use std::hash::BuildHasher;

/// A stack's number in one [`StackTable`]: meaningful only with that table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StackRef(pub u32);

/// Dense numbers for stack ids (see the [module docs](self)).
#[derive(Default)]
pub struct StackTable {
    /// Number → id.
    ids: boxcar::Vec<StackId>,
    /// The numbers, found by the hash of the id they name.
    index: Mutex<HashTable<u32>>,
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
        let mut index = self.index.lock();
        ids.into_iter()
            .map(|id| self.intern_locked(&mut index, id))
            .collect()
    }

    /// The number of `id`, interned if new (see [`StackTable::intern_all`]).
    pub fn intern(&self, id: StackId) -> Option<StackRef> {
        self.intern_locked(&mut self.index.lock(), id)
    }

    fn intern_locked(&self, index: &mut HashTable<u32>, id: StackId) -> Option<StackRef> {
        let h = hash(&id);
        let ids = &self.ids;
        if let Some(&n) = index.find(h, |&n| ids.get(n as usize) == Some(&id)) {
            return Some(StackRef(n));
        }
        let n = u32::try_from(ids.count()).ok()?;
        // Under the lock, so the vector's next index is `n`.
        let pushed = ids.push(id);
        debug_assert_eq!(pushed, n as usize);
        // Every number in the index has its id written (pushed before it
        // is inserted), so the default is never used; were it, the entry
        // would only sit in another bucket and the stack get a second
        // number, which still names it.
        index.insert_unique(h, n, |&m| {
            hash(
                &ids.get(m as usize)
                    .copied()
                    .unwrap_or(StackId(uuid::Uuid::nil())),
            )
        });
        Some(StackRef(n))
    }

    /// The id numbered `r`, if `r` was given by this table.
    #[inline]
    pub fn get(&self, r: StackRef) -> Option<StackId> {
        self.ids.get(r.0 as usize).copied()
    }

    /// Stacks numbered.
    pub fn len(&self) -> usize {
        self.ids.count()
    }

    /// True when no stack is numbered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes held: the ids (17 bytes each, with the vector's
    /// buckets rounded up to powers of two) and the index's allocation.
    pub fn bytes(&self) -> usize {
        let n = self.len();
        let ids = if n == 0 {
            0
        } else {
            n.next_power_of_two() * 17
        };
        ids + self.index.lock().allocation_size()
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
        assert!(t.bytes() >= 2000 * 17);
    }
}

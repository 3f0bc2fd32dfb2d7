//! [`OpenColumns`]: the growable stack columns of a chunk set that still
//! takes profiles.
//!
//! Invariant: the columns are sorted by stack id, one per stack. A profile's
//! samples come sorted by stack id too (the ingest plan orders them so), so
//! a push walks both lists together instead of looking each sample's stack
//! up in a hash map, and the list holds no hash slots: 16 bytes of id and
//! the column's struct per column, the list's capacity exact after a push
//! that adds stacks. A push whose samples are not sorted (tests, callers
//! that build profiles by hand) sorts a copy first.

use super::{StackColumn, Values};
use crate::model::StackId;
use crate::tsdb::chunkenc::Encoding;
use std::borrow::Cow;

/// Growable stack columns sorted by stack id (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub(super) struct OpenColumns {
    cols: Vec<(StackId, StackColumn)>,
}

/// The first index at or after `from` whose stack is not below `stack`:
/// `cols[from]` itself in the common case (the next sample's stack is the
/// next column's), else an exponential then a binary search, so a profile
/// of few stacks in a set of many columns does not walk them all.
fn seek(cols: &[(StackId, StackColumn)], from: usize, stack: StackId) -> usize {
    let below = |i: usize| cols[i].0 < stack;
    if from >= cols.len() || !below(from) {
        return from;
    }
    // cols[lo] is below; find hi with cols[hi] not below (or the end).
    let (mut lo, mut step) = (from, 1usize);
    let hi = loop {
        let hi = lo.saturating_add(step);
        if hi >= cols.len() || !below(hi) {
            break hi.min(cols.len());
        }
        lo = hi;
        step = step.saturating_mul(2);
    };
    lo + 1 + cols[lo + 1..hi].partition_point(|c| c.0 < stack)
}

impl OpenColumns {
    /// Columns from a list in any order; `Err(stack)` when a stack has two.
    pub(super) fn from_unsorted(
        mut cols: Vec<(StackId, StackColumn)>,
    ) -> Result<OpenColumns, StackId> {
        cols.sort_unstable_by_key(|c| c.0);
        if let Some(w) = cols.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(w[0].0);
        }
        Ok(OpenColumns { cols })
    }

    /// Number of columns.
    pub(super) fn len(&self) -> usize {
        self.cols.len()
    }

    /// The columns, sorted by stack id.
    pub(super) fn iter(&self) -> std::slice::Iter<'_, (StackId, StackColumn)> {
        self.cols.iter()
    }

    /// Takes the columns out, sorted by stack id.
    pub(super) fn take(&mut self) -> Vec<(StackId, StackColumn)> {
        std::mem::take(&mut self.cols)
    }

    /// Appends profile `idx`'s samples (stacks unique, values non-zero):
    /// each to its stack's column, after zeros for the profiles the column
    /// missed; a stack without a column gets one that starts at `idx`, in
    /// encoding `enc`. Returns the wrapping sum of the values.
    pub(super) fn push(&mut self, idx: u16, samples: &[(StackId, i64)], enc: Encoding) -> i64 {
        let samples: Cow<[(StackId, i64)]> = if samples.is_sorted_by_key(|s| s.0) {
            Cow::Borrowed(samples)
        } else {
            let mut s = samples.to_vec();
            s.sort_unstable_by_key(|s| s.0);
            Cow::Owned(s)
        };
        let mut total = 0i64;
        let mut fresh = 0usize;
        let mut at = 0usize;
        for &(stack, v) in samples.iter() {
            total = total.wrapping_add(v);
            at = seek(&self.cols, at, stack);
            match self.cols.get_mut(at) {
                Some((id, col)) if *id == stack => {
                    while usize::from(col.first) + col.values.len() < usize::from(idx) {
                        col.values.append(0);
                    }
                    col.values.append(v);
                    at += 1;
                }
                _ => fresh += 1,
            }
        }
        if fresh > 0 {
            self.add(idx, &samples, fresh, enc);
        }
        total
    }

    /// Merges columns for the `fresh` stacks of `samples` (sorted) that have
    /// none into the list, each holding its one value.
    fn add(&mut self, idx: u16, samples: &[(StackId, i64)], fresh: usize, enc: Encoding) {
        let old = std::mem::take(&mut self.cols);
        let mut out = Vec::with_capacity(old.len() + fresh);
        let mut old = old.into_iter().peekable();
        for &(stack, v) in samples {
            while let Some(c) = old.next_if(|c| c.0 < stack) {
                out.push(c);
            }
            if old.peek().is_some_and(|c| c.0 == stack) {
                continue;
            }
            let mut values = Values::new(enc);
            values.append(v);
            out.push((stack, StackColumn { first: idx, values }));
        }
        out.extend(old);
        debug_assert_eq!(out.len(), out.capacity());
        self.cols = out;
    }

    /// Heap bytes: the list's slots, used or spare, and each column's chunk.
    pub(super) fn size_bytes(&self) -> usize {
        self.cols.capacity() * std::mem::size_of::<(StackId, StackColumn)>()
            + self
                .cols
                .iter()
                .map(|(_, c)| c.values.size_bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn id(n: u8) -> StackId {
        StackId(uuid::Uuid::from_bytes([n; 16]))
    }

    proptest! {
        /// Pushes of random profiles give the columns a map per stack gives:
        /// same stacks, same first profiles, same values; sorted, exact
        /// capacity after adds, `seek` agreeing with a linear search.
        #[test]
        fn pushes_match_a_map_per_stack(
            profiles in proptest::collection::vec(
                proptest::collection::btree_map(0u8..60, -5i64..5, 0..40),
                1..40,
            ),
            shuffle in any::<bool>(),
        ) {
            let mut open = OpenColumns::default();
            let mut want: BTreeMap<StackId, (u16, Vec<i64>)> = BTreeMap::new();
            for (idx, p) in profiles.iter().enumerate() {
                let idx = idx as u16;
                let mut samples: Vec<(StackId, i64)> =
                    p.iter().filter(|(_, v)| **v != 0).map(|(k, v)| (id(*k), *v)).collect();
                if shuffle {
                    samples.reverse();
                }
                let total = open.push(idx, &samples, Encoding::Int);
                prop_assert_eq!(total, samples.iter().map(|s| s.1).sum::<i64>());
                for (stack, v) in samples {
                    let (first, values) = want.entry(stack).or_insert((idx, Vec::new()));
                    values.resize(usize::from(idx - *first), 0);
                    values.push(v);
                }
            }
            prop_assert!(open.cols.windows(2).all(|w| w[0].0 < w[1].0));
            let got: BTreeMap<StackId, (u16, Vec<i64>)> = open
                .iter()
                .map(|(s, c)| (*s, (c.first, c.values.iter().collect())))
                .collect();
            prop_assert_eq!(got, want);
            for n in 0..62u8 {
                for from in 0..=open.cols.len() {
                    let linear = (from..open.cols.len())
                        .find(|&i| open.cols[i].0 >= id(n))
                        .unwrap_or(open.cols.len());
                    prop_assert_eq!(seek(&open.cols, from, id(n)), linear);
                }
            }
        }
    }

    /// The size the module docs give: 16 bytes of id and the column.
    #[test]
    fn a_column_slot_takes_88_bytes() {
        assert_eq!(std::mem::size_of::<(StackId, StackColumn)>(), 88);
    }

    #[test]
    fn two_columns_of_one_stack_are_refused() {
        let col = |v: i64| {
            let mut values = Values::new(Encoding::Int);
            values.append(v);
            StackColumn { first: 0, values }
        };
        let e = OpenColumns::from_unsorted(vec![(id(2), col(1)), (id(1), col(1)), (id(2), col(3))]);
        assert_eq!(e.err(), Some(id(2)));
        let ok =
            OpenColumns::from_unsorted(vec![(id(2), col(1)), (id(1), col(1))]).expect("unique");
        assert_eq!(ok.iter().map(|c| c.0).collect::<Vec<_>>(), [id(1), id(2)]);
    }
}

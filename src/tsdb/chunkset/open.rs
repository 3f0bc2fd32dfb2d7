//! [`OpenColumns`]: the growable stack columns of a chunk set that still
//! takes profiles.
//!
//! Invariants: one column per stack, in two lists each sorted by stack id
//! with no stack in both: `main`, and `recent`, the columns of stacks new
//! since `main` was last rebuilt. A profile's samples come sorted by stack
//! id too (the ingest plan orders them so), so a push walks them together
//! with both lists instead of looking each sample's stack up in a hash map,
//! and the lists hold no hash slots: 16 bytes of id and the column's struct
//! per column. New stacks are merged into `recent` (small: a rebuild costs
//! little), and `recent` into `main` once it holds more than an eighth of
//! it, so a profile with a few new stacks does not move every column of a
//! large set; each rebuild allocates exactly what it holds. A push whose
//! samples are not sorted (tests, callers that build profiles by hand)
//! sorts a copy first.

use super::{StackColumn, Values};
use crate::model::StackId;
use crate::tsdb::chunkenc::Encoding;
use std::borrow::Cow;

/// Growable stack columns sorted by stack id (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub(super) struct OpenColumns {
    main: Vec<(StackId, StackColumn)>,
    recent: Vec<(StackId, StackColumn)>,
}

/// `recent` is merged into `main` when it holds more than this many
/// columns and more than an eighth of `main`'s.
const RECENT_MIN: usize = 64;

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

/// Appends `v` to the column at `cols[at]` if it is `stack`'s (after zeros
/// for the profiles before `idx` it missed); whether it was.
fn append_at(
    cols: &mut [(StackId, StackColumn)],
    at: usize,
    stack: StackId,
    idx: u16,
    v: i64,
) -> bool {
    match cols.get_mut(at) {
        Some((id, col)) if *id == stack => {
            while usize::from(col.first) + col.values.len() < usize::from(idx) {
                col.values.append(0);
            }
            col.values.append(v);
            true
        }
        _ => false,
    }
}

/// The two sorted lists as one, allocated exactly.
fn merge(
    a: Vec<(StackId, StackColumn)>,
    b: Vec<(StackId, StackColumn)>,
) -> Vec<(StackId, StackColumn)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut b = b.into_iter().peekable();
    for c in a {
        while let Some(n) = b.next_if(|n| n.0 < c.0) {
            out.push(n);
        }
        out.push(c);
    }
    out.extend(b);
    out
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
        Ok(OpenColumns::from_unique(cols))
    }

    /// Columns from a list in any order whose stacks are known to be
    /// unique (a sealed set's, or what [`OpenColumns::take`] gave).
    pub(super) fn from_unique(mut cols: Vec<(StackId, StackColumn)>) -> OpenColumns {
        cols.sort_unstable_by_key(|c| c.0);
        debug_assert!(cols.windows(2).all(|w| w[0].0 < w[1].0));
        OpenColumns {
            main: cols,
            recent: Vec::new(),
        }
    }

    /// Number of columns.
    pub(super) fn len(&self) -> usize {
        self.main.len() + self.recent.len()
    }

    /// The columns, in no set order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &(StackId, StackColumn)> {
        self.main.iter().chain(&self.recent)
    }

    /// Takes the columns out, sorted by stack id.
    pub(super) fn take(&mut self) -> Vec<(StackId, StackColumn)> {
        let (main, recent) = (
            std::mem::take(&mut self.main),
            std::mem::take(&mut self.recent),
        );
        merge(main, recent)
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
        let mut added: Vec<(StackId, StackColumn)> = Vec::new();
        let (mut at, mut at_recent) = (0usize, 0usize);
        for &(stack, v) in samples.iter() {
            total = total.wrapping_add(v);
            at = seek(&self.main, at, stack);
            if append_at(&mut self.main, at, stack, idx, v) {
                at += 1;
                continue;
            }
            at_recent = seek(&self.recent, at_recent, stack);
            if append_at(&mut self.recent, at_recent, stack, idx, v) {
                at_recent += 1;
                continue;
            }
            let mut values = Values::new(enc);
            values.append(v);
            added.push((stack, StackColumn { first: idx, values }));
        }
        if !added.is_empty() {
            let recent = std::mem::take(&mut self.recent);
            self.recent = merge(recent, added);
            if self.recent.len() > RECENT_MIN.max(self.main.len() / 8) {
                let (main, recent) = (
                    std::mem::take(&mut self.main),
                    std::mem::take(&mut self.recent),
                );
                self.main = merge(main, recent);
            }
        }
        total
    }

    /// Heap bytes: the lists' slots, used or spare, and each column's chunk.
    pub(super) fn size_bytes(&self) -> usize {
        (self.main.capacity() + self.recent.capacity())
            * std::mem::size_of::<(StackId, StackColumn)>()
            + self
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

    /// Ids that sort as `n` does.
    fn id(n: u16) -> StackId {
        StackId(uuid::Uuid::from_u128(u128::from(n) << 64 | 7))
    }

    proptest! {
        /// Pushes of random profiles give the columns a map per stack gives:
        /// same stacks, same first profiles, same values; sorted, exact
        /// capacity after adds, `seek` agreeing with a linear search.
        #[test]
        fn pushes_match_a_map_per_stack(
            profiles in proptest::collection::vec(
                proptest::collection::btree_map(0u16..600, -5i64..5, 0..100),
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
            prop_assert!(open.main.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert!(open.recent.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert!(open.recent.len() <= RECENT_MIN.max(open.main.len() / 8));
            let all = open.clone().take();
            prop_assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert_eq!(all.len(), open.len());
            let got: BTreeMap<StackId, (u16, Vec<i64>)> = open
                .iter()
                .map(|(s, c)| (*s, (c.first, c.values.iter().collect())))
                .collect();
            prop_assert_eq!(got, want);
            for n in (0..602u16).step_by(5) {
                for from in 0..=all.len() {
                    let linear = (from..all.len())
                        .find(|&i| all[i].0 >= id(n))
                        .unwrap_or(all.len());
                    prop_assert_eq!(seek(&all, from, id(n)), linear);
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

//! The head's series in label order, kept as series arrive, so that a
//! query over many series gets them sorted without comparing label sets.
//!
//! Queries answer in label order. Sorting a selection by labels costs about
//! `k log k` label-set comparisons, and label sets under churn share long
//! prefixes (`__name__`, `job`, the start of `instance`), so on 7,200 short
//! series it was most of a `series` query. [`LabelOrder`] keeps every
//! series in label order: a new series waits in `pending` (one push when it
//! is created); the next large query sorts the pending ones and inserts
//! them by binary search (`p log n` comparisons and one pass over the list),
//! then walks the list keeping the selected refs. A small selection is
//! sorted by labels directly (see [`use_order`]).
//!
//! # Invariants
//! - Every series of the head is in `sorted` or `pending`: the head adds a
//!   series here before it enters the postings, so a ref a selection
//!   found is here when the query takes the lock.
//! - `sorted` is in label order. It may still hold series the head removed
//!   (they are dropped by [`LabelOrder::purge`] and when removed ones could
//!   outnumber live ones); they are never returned, as the postings no
//!   longer select them.

use super::MemSeries;
use crate::tsdb::index::SeriesRef;
use croaring::Bitmap;
use parking_lot::Mutex;
use std::sync::Arc;

/// The head's series in label order (see the module docs).
#[derive(Default)]
pub(crate) struct LabelOrder {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Series in label order.
    sorted: Vec<Arc<MemSeries>>,
    /// Series created since the last query that used the order.
    pending: Vec<Arc<MemSeries>>,
}

/// True when a selection of `k` of the head's `n` series is better read in
/// the kept order (one pass over `n`) than sorted by labels (`k log k`
/// comparisons of label sets, each worth about 16 steps of the pass).
pub(crate) fn use_order(k: u64, n: u64) -> bool {
    k >= 32 && k * u64::from(64 - k.leading_zeros()) * 16 >= n
}

impl LabelOrder {
    /// Takes a new series in (before it enters the postings).
    pub fn add(&self, s: Arc<MemSeries>) {
        self.inner.lock().pending.push(s);
    }

    /// The series whose refs are in `selected`, in label order; `live`
    /// tells whether a ref is still a series of the head (asked only when
    /// removed series may outnumber live ones, to drop them).
    pub fn select(
        &self,
        selected: &Bitmap,
        live: impl Fn(SeriesRef) -> bool,
        num_series: usize,
    ) -> Vec<Arc<MemSeries>> {
        let mut inner = self.inner.lock();
        inner.merge_pending();
        if inner.sorted.len() > 2 * num_series + 64 {
            inner.purge(live);
        }
        let mut out = Vec::with_capacity(selected.cardinality() as usize);
        out.extend(
            inner
                .sorted
                .iter()
                .filter(|s| selected.contains(s.sref.0))
                .cloned(),
        );
        out
    }

    /// Drops the series `live` says the head no longer holds.
    pub fn purge(&self, live: impl Fn(SeriesRef) -> bool) {
        self.inner.lock().purge(live);
    }

    /// Bytes of the two lists.
    pub fn size_bytes(&self) -> usize {
        let inner = self.inner.lock();
        (inner.sorted.capacity() + inner.pending.capacity()) * std::mem::size_of::<usize>()
    }
}

impl Inner {
    /// Drops the series `live` says the head no longer holds.
    fn purge(&mut self, live: impl Fn(SeriesRef) -> bool) {
        self.sorted.retain(|s| live(s.sref));
        self.pending.retain(|s| live(s.sref));
    }

    /// Sorts the pending series into `sorted`.
    fn merge_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by(|a, b| a.labels.cmp(&b.labels));
        // Where each pending series goes (non-decreasing, as `pending` is
        // sorted), found by binary search; then one pass moves both lists.
        let at: Vec<usize> = pending
            .iter()
            .map(|s| self.sorted.partition_point(|o| o.labels <= s.labels))
            .collect();
        let old = std::mem::take(&mut self.sorted);
        let mut merged = Vec::with_capacity(old.len() + pending.len());
        let mut old = old.into_iter();
        let mut taken = 0;
        for (s, at) in pending.into_iter().zip(at) {
            merged.extend(old.by_ref().take(at - taken));
            taken = at;
            merged.push(s);
        }
        merged.extend(old);
        self.sorted = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, MatchOp, Matcher, ProfileType};
    use crate::tsdb::chunkset::AppendProfile;
    use crate::tsdb::head::Head;
    use proptest::prelude::*;

    #[test]
    fn the_order_needs_a_large_enough_selection() {
        assert!(!use_order(1, 100_000));
        assert!(!use_order(31, 31));
        assert!(use_order(7_200, 7_200));
        assert!(use_order(1_000, 100_000));
        assert!(!use_order(100, 100_000));
    }

    /// What the head does to its series, one step.
    #[derive(Debug, Clone)]
    enum Op {
        /// Creates the series `instance=i, kind=k` with a profile at `ts`.
        Add(u16, u8, i64),
        /// Removes the `n`-th live series (modulo their number).
        Remove(usize),
        /// Releases removed series ([`Head::shrink`]).
        Shrink,
        /// Selects `kind=k` (or every series) over `[lo, lo + len]`.
        Select(Option<u8>, i64, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u16..600, 0u8..3, 0i64..100).prop_map(|(i, k, t)| Op::Add(i, k, t)),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => Just(Op::Shrink),
            2 => (proptest::option::of(0u8..3), 0i64..100, 0i64..100)
                .prop_map(|(k, lo, len)| Op::Select(k, lo, len)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the order of creations, removals and queries, a
        /// selection comes back as the selected series sorted by labels
        /// (the small ones sorted, the large ones from the kept order).
        #[test]
        fn selections_come_back_in_label_order(ops in prop::collection::vec(op(), 1..400)) {
            let head = Head::new(usize::MAX);
            let pt = ProfileType::parse("process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta")
                .expect("a valid profile type");
            for op in ops {
                match op {
                    Op::Add(i, k, ts) => {
                        let labels = Labels::from_pairs([
                            ("__name__", "process_cpu".to_string()),
                            ("instance", format!("host-{i:04}.example:8080")),
                            ("kind", format!("k{k}")),
                        ]);
                        let s = head.get_or_create(labels, pt.clone(), Vec::new()).expect("room");
                        s.append(
                            &AppendProfile {
                                timestamp: ts,
                                duration: 10,
                                period: 1,
                                ..Default::default()
                            },
                            &head.stack_table(),
                        );
                    }
                    Op::Remove(n) => {
                        let all = head.all_series();
                        if !all.is_empty() {
                            head.remove(&all[n % all.len()]);
                        }
                    }
                    Op::Shrink => head.shrink(),
                    Op::Select(k, lo, len) => {
                        let matchers: Vec<Matcher> = k
                            .map(|k| {
                                vec![Matcher::new(MatchOp::Equal, "kind", format!("k{k}"))
                                    .expect("a valid matcher")]
                            })
                            .unwrap_or_default();
                        let got: Vec<Labels> = head
                            .select_in_range(&matchers, lo, lo + len)
                            .iter()
                            .map(|s| s.labels.clone())
                            .collect();
                        let mut want: Vec<Labels> = head
                            .select(&matchers)
                            .into_iter()
                            .filter(|s| s.overlaps(lo, lo + len))
                            .map(|s| s.labels.clone())
                            .collect();
                        want.sort();
                        prop_assert_eq!(got, want);
                    }
                }
            }
        }
    }
}

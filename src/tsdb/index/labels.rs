//! Label names and values of a selection, answered from the postings.
//!
//! A label query asks which label names (or which values of one name) occur
//! among the series a selector picks. An index answers it one of two ways,
//! chosen per query by cardinality, as Prometheus's `LabelNames` and
//! `LabelValues` do:
//!
//! - **Postings** ([`names_from_postings`], [`values_from_postings`]): with
//!   every series selected ([`Selection::All`]), the answer is the keys of
//!   the postings maps, read in order, no bitmap touched. Otherwise a value
//!   is in the answer when its posting list intersects the selection, and a
//!   name when one of its values' lists does (the test stops at the first
//!   such value). Costs at most one intersection test per posting list.
//! - **Series** ([`Plan::Series`]): the caller reads the labels of each
//!   selected series ([`Collect`]). Costs one series read per selected
//!   series, so it wins when few are selected.
//!
//! [`plan_names`] and [`plan_values`] take the series way when the selected
//! series, each counted as [`SERIES_COST`] intersection tests, cost less
//! than the posting lists the postings way may test.
//!
//! # Time
//! This module knows nothing of time, and postings hold every series of
//! their index whether or not it has a profile in a query's range. So a
//! caller answers from postings only when every series of the index has a
//! profile in the range (the head and the blocks know when: their time
//! bounds lie inside the range and no series is empty), and otherwise reads
//! the selected series, keeping those with a profile in the range.
//!
//! # Invariants
//! - Every answer is sorted (byte order) and holds each string once.
//! - Both ways give the same answer for the same postings and selection
//!   (checked against each other and a brute-force scan in the tests).

use super::postings::MemPostings;
use super::select::select;
use crate::model::labels::Labels;
use crate::model::Matcher;
use croaring::Bitmap;
use std::collections::BTreeSet;

/// What reading one series' labels costs, in intersection tests of a small
/// posting list against a selection (a rough figure: a head series is a
/// lookup in a striped map and a lock, a block series an index in a vector).
pub const SERIES_COST: u64 = 8;

/// The series of one index that a label query is about.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every series of the index (no matchers, or matchers that select them
    /// all).
    All,
    /// Some series: never every series of the index.
    Some(Bitmap),
}

impl Selection {
    /// The series of `postings` matching `matchers` (every series for an
    /// empty slice), as [`select`] picks them.
    pub fn new(postings: &MemPostings, matchers: &[Matcher]) -> Selection {
        if matchers.is_empty() {
            return Selection::All;
        }
        let b = select(postings, matchers);
        // `b` is a subset of `all`, so equal sizes mean equal sets.
        if b.cardinality() == postings.all().cardinality() {
            Selection::All
        } else {
            Selection::Some(b)
        }
    }

    /// Number of series selected.
    pub fn cardinality(&self, postings: &MemPostings) -> u64 {
        match self {
            Selection::All => postings.all().cardinality(),
            Selection::Some(b) => b.cardinality(),
        }
    }

    /// True when no series is selected.
    pub fn is_empty(&self, postings: &MemPostings) -> bool {
        match self {
            Selection::All => postings.all().is_empty(),
            Selection::Some(b) => b.is_empty(),
        }
    }

    /// The selected series as a bitmap.
    pub fn into_bitmap(self, postings: &MemPostings) -> Bitmap {
        match self {
            Selection::All => postings.all().clone(),
            Selection::Some(b) => b,
        }
    }
}

/// How to answer a label query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// From the posting lists.
    Postings,
    /// By reading the labels of each selected series.
    Series,
}

/// The cheaper way to answer "which label names does `sel` have".
pub fn plan_names(postings: &MemPostings, sel: &Selection) -> Plan {
    match sel {
        Selection::All => Plan::Postings,
        Selection::Some(b) => cheaper(b, postings.num_postings()),
    }
}

/// The cheaper way to answer "which values of `name` does `sel` have".
pub fn plan_values(postings: &MemPostings, name: &str, sel: &Selection) -> Plan {
    match sel {
        Selection::All => Plan::Postings,
        Selection::Some(b) => cheaper(b, postings.values(name).map_or(0, |v| v.len())),
    }
}

/// Series when reading `sel`'s series costs less than testing `lists`
/// posting lists.
fn cheaper(sel: &Bitmap, lists: usize) -> Plan {
    if sel.cardinality().saturating_mul(SERIES_COST) < lists as u64 {
        Plan::Series
    } else {
        Plan::Postings
    }
}

/// The label names of the series in `sel`, sorted, from the postings.
pub fn names_from_postings(postings: &MemPostings, sel: &Selection) -> Vec<String> {
    match sel {
        Selection::All => postings.label_names(),
        Selection::Some(b) => postings
            .names()
            .filter(|(_, values)| values.values().any(|v| v.intersect(b)))
            .map(|(name, _)| name.clone())
            .collect(),
    }
}

/// The values of label `name` over the series in `sel`, sorted, from the
/// postings.
pub fn values_from_postings(postings: &MemPostings, name: &str, sel: &Selection) -> Vec<String> {
    match sel {
        Selection::All => postings.label_values(name),
        Selection::Some(b) => postings.values(name).map_or_else(Vec::new, |values| {
            values
                .iter()
                .filter(|(_, v)| v.intersect(b))
                .map(|(value, _)| value.clone())
                .collect()
        }),
    }
}

/// Label names or values gathered from series' labels (the series way),
/// each once; a string already held costs no allocation.
#[derive(Debug, Default)]
pub struct Collect(BTreeSet<String>);

impl Collect {
    /// Adds every label name of `labels`.
    pub fn names(&mut self, labels: &Labels) {
        for l in labels {
            self.add(&l.name);
        }
    }

    /// Adds the value of label `name` in `labels`, if it has one.
    pub fn value(&mut self, labels: &Labels, name: &str) {
        if let Some(v) = labels.get(name) {
            self.add(v);
        }
    }

    fn add(&mut self, s: &str) {
        if !self.0.contains(s) {
            self.0.insert(s.to_string());
        }
    }

    /// What was gathered, sorted.
    pub fn into_vec(self) -> Vec<String> {
        self.0.into_iter().collect()
    }
}

/// The union of sorted lists of distinct strings, sorted, each once.
/// Merges pairwise, moving the strings (no copies).
pub fn merge_sorted(mut lists: Vec<Vec<String>>) -> Vec<String> {
    lists.retain(|l| !l.is_empty());
    while lists.len() > 1 {
        let mut next = Vec::with_capacity(lists.len().div_ceil(2));
        let mut it = lists.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => merge_two(a, b),
                None => a,
            });
        }
        lists = next;
    }
    lists.pop().unwrap_or_default()
}

/// The union of two sorted lists of distinct strings.
fn merge_two(a: Vec<String>, b: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                std::cmp::Ordering::Equal => {
                    b.next();
                    a.next()
                }
            },
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MatchOp;
    use crate::tsdb::index::SeriesRef;
    use proptest::prelude::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merges_sorted_lists() {
        assert!(merge_sorted(vec![]).is_empty());
        assert!(merge_sorted(vec![vec![], vec![]]).is_empty());
        assert_eq!(
            merge_sorted(vec![strings(&["a", "c"])]),
            strings(&["a", "c"])
        );
        assert_eq!(
            merge_sorted(vec![
                strings(&["a", "c", "e"]),
                strings(&["b", "c"]),
                vec![],
                strings(&["a", "z"]),
            ]),
            strings(&["a", "b", "c", "e", "z"])
        );
    }

    #[test]
    fn selection_of_everything_is_all() {
        let mut p = MemPostings::new();
        p.add(SeriesRef(1), &Labels::from_pairs([("a", "x")]));
        p.add(SeriesRef(2), &Labels::from_pairs([("a", "y")]));
        let m = |op, v: &str| vec![Matcher::new(op, "a", v).unwrap()];
        assert!(matches!(Selection::new(&p, &[]), Selection::All));
        assert!(matches!(
            Selection::new(&p, &m(MatchOp::Regex, "x|y")),
            Selection::All
        ));
        let one = Selection::new(&p, &m(MatchOp::Equal, "x"));
        assert!(matches!(one, Selection::Some(_)));
        assert_eq!(one.cardinality(&p), 1);
        assert!(Selection::new(&p, &m(MatchOp::Equal, "z")).is_empty(&p));
        assert!(Selection::All.is_empty(&MemPostings::new()));
    }

    fn arb_matcher() -> impl Strategy<Value = Matcher> {
        let name = prop::sample::select(vec!["a", "b", "c", "d"]);
        let value = prop::sample::select(vec!["", "x", "y", "xy", "x|y", ".*", ".+", "x.*"]);
        let op = prop::sample::select(vec![
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::Regex,
            MatchOp::NotRegex,
        ]);
        (op, name, value).prop_map(|(op, name, v)| Matcher::new(op, name, v).unwrap())
    }

    fn arb_series() -> impl Strategy<Value = Vec<Labels>> {
        let value = prop::sample::select(vec!["", "", "x", "y", "xy", "yx", "z"]);
        prop::collection::vec((value.clone(), value.clone(), value), 0..40).prop_map(|v| {
            v.into_iter()
                .map(|(a, b, c)| Labels::from_pairs([("a", a), ("b", b), ("c", c)]))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Both ways give what a scan of the selected series' labels gives.
        #[test]
        fn postings_and_series_ways_equal_a_scan(
            series in arb_series(),
            ms in prop::collection::vec(arb_matcher(), 0..3),
            removed in prop::collection::vec(any::<bool>(), 40),
        ) {
            let mut p = MemPostings::new();
            for (i, l) in series.iter().enumerate() {
                p.add(SeriesRef(i as u32), l);
            }
            for (i, l) in series.iter().enumerate() {
                if removed[i] {
                    p.remove(SeriesRef(i as u32), l);
                }
            }
            let kept = |i: &usize| !removed[*i];
            let picked: Vec<&Labels> = (0..series.len())
                .filter(kept)
                .map(|i| &series[i])
                .filter(|l| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
                .collect();
            let sel = Selection::new(&p, &ms);

            let mut names = BTreeSet::new();
            for l in &picked {
                names.extend(l.iter().map(|l| l.name.clone()));
            }
            let names: Vec<String> = names.into_iter().collect();
            prop_assert_eq!(&names_from_postings(&p, &sel), &names);
            let mut c = Collect::default();
            for r in sel.clone().into_bitmap(&p).iter() {
                c.names(&series[r as usize]);
            }
            prop_assert_eq!(&c.into_vec(), &names);

            for name in ["a", "b", "c", "d"] {
                let values: BTreeSet<String> = picked
                    .iter()
                    .filter_map(|l| l.get(name).map(str::to_string))
                    .collect();
                let values: Vec<String> = values.into_iter().collect();
                prop_assert_eq!(&values_from_postings(&p, name, &sel), &values);
                let mut c = Collect::default();
                for r in sel.clone().into_bitmap(&p).iter() {
                    c.value(&series[r as usize], name);
                }
                prop_assert_eq!(&c.into_vec(), &values);
            }
        }
    }
}

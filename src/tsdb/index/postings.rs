//! In-memory postings: label name → label value → bitmap of series ids.
//!
//! Names and values are kept in sorted maps, so label queries list them in
//! order without sorting (`labels.rs`); a lookup costs O(log values) string
//! comparisons, and only series creation and removal write.

use super::SeriesRef;
use crate::model::labels::Labels;
use croaring::Bitmap;
use std::collections::BTreeMap;
use std::fmt;

/// One label's values and their series, sorted by value.
pub type Values = BTreeMap<String, Bitmap>;

/// The inverted index of the head: for each label name and value, the roaring
/// bitmap of the series that have that label, plus the bitmap of all series.
///
/// Invariants (see the [module docs](super)): no empty bitmap, no empty value
/// map, no posting list for the empty value; `all` is the union of every
/// posting list and holds exactly the series added and not removed. Names
/// and values are sorted (byte order, as `String`'s `Ord`).
///
/// Not thread-safe by itself: the head keeps it behind an `RwLock`, taken for
/// writing only by [`add`](Self::add) and [`remove`](Self::remove).
#[derive(Default)]
pub struct MemPostings {
    /// label name → label value → series with that label.
    by_name: BTreeMap<String, Values>,
    /// Every series.
    all: Bitmap,
}

impl fmt::Debug for MemPostings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemPostings")
            .field("series", &self.num_series())
            .field("names", &self.by_name.len())
            .field(
                "values",
                &self.by_name.values().map(|v| v.len()).sum::<usize>(),
            )
            .finish()
    }
}

impl MemPostings {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes series `r` under each of its labels. Adding a series twice is
    /// harmless.
    pub fn add(&mut self, r: SeriesRef, labels: &Labels) {
        for l in labels {
            if l.value.is_empty() {
                // Cannot happen for a `Labels` value; keep the invariant anyway.
                continue;
            }
            // Look up before inserting so that known names (almost all) cost
            // no allocation.
            if !self.by_name.contains_key(l.name.as_str()) {
                self.by_name.insert(l.name.clone(), Values::new());
            }
            let Some(values) = self.by_name.get_mut(l.name.as_str()) else {
                continue; // unreachable: inserted just above
            };
            match values.get_mut(&l.value) {
                Some(b) => b.add(r.0),
                None => {
                    values.insert(l.value.clone(), Bitmap::of(&[r.0]));
                }
            }
        }
        self.all.add(r.0);
    }

    /// Removes series `r`, which was added with `labels`; values and names
    /// left without series are dropped.
    pub fn remove(&mut self, r: SeriesRef, labels: &Labels) {
        for l in labels {
            let Some(values) = self.by_name.get_mut(&l.name) else {
                continue;
            };
            if let Some(b) = values.get_mut(&l.value) {
                b.remove(r.0);
                if b.is_empty() {
                    values.remove(&l.value);
                }
            }
            if values.is_empty() {
                self.by_name.remove(&l.name);
            }
        }
        self.all.remove(r.0);
    }

    /// All label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// All values of label `name`, sorted (empty for an unknown name).
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.by_name
            .get(name)
            .map(|values| values.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every label name and its values, sorted by name.
    pub fn names(&self) -> impl ExactSizeIterator<Item = (&String, &Values)> {
        self.by_name.iter()
    }

    /// Number of posting lists (label name and value pairs).
    pub fn num_postings(&self) -> usize {
        self.by_name.values().map(BTreeMap::len).sum()
    }

    /// The series with label `name` = `value` (`None` when there are none, so
    /// always for `value == ""`).
    pub fn get(&self, name: &str, value: &str) -> Option<&Bitmap> {
        self.by_name.get(name)?.get(value)
    }

    /// The values of label `name` and their series, sorted by value.
    pub fn values(&self, name: &str) -> Option<&Values> {
        self.by_name.get(name)
    }

    /// Every series.
    pub fn all(&self) -> &Bitmap {
        &self.all
    }

    /// Number of series.
    pub fn num_series(&self) -> usize {
        self.all.cardinality() as usize
    }

    /// An estimate of the heap bytes held: strings, B-tree entries, bitmap
    /// containers. Walks every posting list, so it costs O(number of label
    /// values); meant for metrics, not hot paths.
    pub fn size_bytes(&self) -> usize {
        // A B-tree entry: its key and value, plus the node's share (nodes
        // of 11 entries, about 2/3 full, and their edges).
        const STRING: usize = std::mem::size_of::<String>();
        const BITMAP: usize = std::mem::size_of::<Bitmap>();
        const VALUES: usize = std::mem::size_of::<Values>();
        let entry = |kv: usize| kv * 3 / 2 + 8;
        let mut total = bitmap_bytes(&self.all);
        total += self.by_name.len() * entry(STRING + VALUES);
        for (name, values) in &self.by_name {
            total += name.capacity();
            total += values.len() * entry(STRING + BITMAP);
            for (value, b) in values {
                total += value.capacity() + bitmap_bytes(b);
            }
        }
        total
    }
}

/// Heap bytes of a bitmap: container payloads plus per-container bookkeeping
/// (a 16-bit key, a pointer, a type code and the container header).
fn bitmap_bytes(b: &Bitmap) -> usize {
    const PER_CONTAINER: usize = 2 + 8 + 1 + 16;
    let s = b.statistics();
    (s.n_bytes_array_containers + s.n_bytes_run_containers + s.n_bytes_bitset_containers) as usize
        + s.n_containers as usize * PER_CONTAINER
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn add_get_names_values() {
        let mut p = MemPostings::new();
        p.add(SeriesRef(1), &ls(&[("__name__", "cpu"), ("job", "a")]));
        p.add(SeriesRef(2), &ls(&[("__name__", "cpu"), ("job", "b")]));
        p.add(
            SeriesRef(3),
            &ls(&[("__name__", "mem"), ("job", "a"), ("pod", "x")]),
        );
        assert_eq!(p.num_series(), 3);
        assert_eq!(p.label_names(), vec!["__name__", "job", "pod"]);
        assert_eq!(p.label_values("job"), vec!["a", "b"]);
        assert!(p.label_values("nope").is_empty());
        assert_eq!(p.get("job", "a").unwrap().to_vec(), vec![1, 3]);
        assert_eq!(p.get("__name__", "cpu").unwrap().to_vec(), vec![1, 2]);
        assert!(p.get("job", "").is_none());
        assert!(p.get("job", "c").is_none());
        assert_eq!(p.all().to_vec(), vec![1, 2, 3]);
        assert!(p.size_bytes() > 0);
        // Idempotent.
        p.add(
            SeriesRef(3),
            &ls(&[("__name__", "mem"), ("job", "a"), ("pod", "x")]),
        );
        assert_eq!(p.num_series(), 3);
        assert_eq!(p.get("job", "a").unwrap().cardinality(), 2);
    }

    #[test]
    fn remove_drops_empty_values_and_names() {
        let mut p = MemPostings::new();
        let a = ls(&[("job", "a"), ("pod", "x")]);
        let b = ls(&[("job", "a")]);
        p.add(SeriesRef(1), &a);
        p.add(SeriesRef(2), &b);
        p.remove(SeriesRef(1), &a);
        assert_eq!(p.label_names(), vec!["job"]);
        assert!(p.get("pod", "x").is_none());
        assert_eq!(p.get("job", "a").unwrap().to_vec(), vec![2]);
        p.remove(SeriesRef(2), &b);
        assert!(p.label_names().is_empty());
        assert_eq!(p.num_series(), 0);
        // Removing what is not there is harmless.
        p.remove(SeriesRef(7), &a);
        assert_eq!(p.num_series(), 0);
        assert_eq!(
            format!("{p:?}"),
            "MemPostings { series: 0, names: 0, values: 0 }"
        );
    }
}

//! The head: the in-memory sample store.
//!
//! # Layout
//! A series is a full label set, `__name__` (the profile type) included. The
//! series map is striped by label hash ([`STRIPES`] stripes) so that writers of
//! different series proceed in parallel; each series holds its columns behind
//! its own mutex. The postings ([`crate::tsdb::index::MemPostings`]) sit behind one
//! `RwLock`, taken for writing only when a series is created.
//!
//! Per series, profiles are stored as aligned columns, cut into chunk sets of
//! [`CHUNK_PROFILES`] profiles ([`series::ChunkSet`]):
//! - timestamps (ms): delta-of-delta chunk;
//! - durations (ns) and periods: run-length chunks;
//! - totals: an XOR chunk of each profile's total (the "root"), so totals over
//!   time never touch stacks;
//! - one XOR value column per stack that occurs in that chunk set, aligned by
//!   profile index. A column starts at the first profile of the set that has
//!   the stack (earlier profiles cost nothing) and is padded with zeros only
//!   when the stack comes back after a gap (a zero after a zero costs one
//!   bit). Reads past a column's end return 0, so a stack that disappears costs
//!   nothing more. Unlike Parca's head, a chunk set never allocates a column
//!   for a stack it has not seen.
//!
//! # Invariants
//! - A series' chunk sets are in time order: timestamps strictly increase
//!   within a set, and a set starts at or after the previous set's last
//!   timestamp (two different profiles at one timestamp sit in two sets).
//!   A profile that arrives out of order rebuilds the set it falls into.
//! - A series never holds the same profile (timestamp, duration, period
//!   and samples) twice: a retry is not added again.
//! - Every chunk of a chunk set holds exactly `len` values, except stack
//!   columns, which hold `len - first` values at most.
//! - A series' labels and profile type never change once created.
//! - The head's [`Extent`] counts exactly its series without a profile, and
//!   its time bounds hold every profile's timestamp (they may be wider: they
//!   only grow, until a cut sets them again while appends are excluded).
//!
//! # Label queries
//! [`Head::label_names`] and [`Head::label_values`] answer from the postings
//! ([`crate::tsdb::index::labels`]) when the [`Extent`] shows that every
//! series has a profile in the query's range (no empty series, time bounds
//! inside the range), and the selection is large enough; otherwise they read
//! the selected series, keeping those with a profile in the range, as
//! [`Head::select_in_range`] does. Either way the answer is the one a scan
//! of `select_in_range`'s series gives.

mod order;
pub mod series;

pub use series::{Appended, MemSeries};

use crate::model::labels::Labels;
use crate::model::profile_type::ProfileType;
use crate::model::Matcher;
use crate::tsdb::index::labels::{self, Collect, Plan, Selection};
use crate::tsdb::index::{select, MemPostings, SeriesRef};
use crate::tsdb::stacktable::StackTable;
use croaring::Bitmap;
use parking_lot::RwLock;
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// Number of stripes of the series map.
pub const STRIPES: usize = 64;

/// Errors of the head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Chunk sets loaded (from a snapshot) before the series' latest
    /// profile.
    #[error("chunk sets out of time order: series {labels} already has a profile at {max_time} ms, a loaded set starts at {timestamp} ms")]
    SetsOutOfOrder {
        /// The series.
        labels: String,
        /// The first timestamp of the set.
        timestamp: i64,
        /// The series' latest timestamp.
        max_time: i64,
    },
    /// Creating the series would exceed the series limit.
    #[error("series limit reached: the store holds {limit} series (limit max_series)")]
    SeriesLimit {
        /// The limit.
        limit: usize,
    },
}

impl From<HeadError> for crate::ingest::IngestError {
    fn from(e: HeadError) -> Self {
        use crate::ingest::IngestError as E;
        match e {
            HeadError::SeriesLimit { limit } => E::SeriesLimit { limit },
            e @ HeadError::SetsOutOfOrder { .. } => {
                E::Storage(crate::model::StorageError::new("head", e))
            }
        }
    }
}

/// What a head knows about all of its series at once, without visiting
/// them: how many have no profile, and bounds of every profile's timestamp.
/// Shared by the head and its series, which update it under their own locks.
///
/// Ordering: a series is counted empty before it enters the postings, and
/// the bounds take a profile's timestamp before the profile is stored and
/// before the series is counted filled (all `SeqCst`). So a reader that
/// takes the postings lock and then finds no empty series also finds bounds
/// holding every profile of every series it saw in the postings.
#[derive(Debug)]
pub struct Extent {
    /// Series without a profile: created and not appended to yet (or whose
    /// append failed or was a retry of a profile held elsewhere), or
    /// truncated to nothing and not removed yet.
    empty: AtomicUsize,
    /// At most the earliest timestamp of a profile (`i64::MAX` while none).
    min_time: AtomicI64,
    /// At least the latest timestamp of a profile (`i64::MIN` while none).
    max_time: AtomicI64,
    /// The sample label names any profile of the head carried, sorted (it
    /// only grows).
    sample_labels: RwLock<Vec<String>>,
}

impl Default for Extent {
    fn default() -> Self {
        Extent {
            empty: AtomicUsize::new(0),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            sample_labels: RwLock::default(),
        }
    }
}

impl Extent {
    /// Takes sample label names into the head's list.
    pub(crate) fn note_sample_labels<'a>(&self, names: impl Iterator<Item = &'a str>) {
        let new: Vec<&str> = {
            let known = self.sample_labels.read();
            names
                .filter(|n| known.binary_search_by(|k| k.as_str().cmp(n)).is_err())
                .collect()
        };
        if new.is_empty() {
            return;
        }
        let mut known = self.sample_labels.write();
        for n in new {
            if let Err(i) = known.binary_search_by(|k| k.as_str().cmp(n)) {
                known.insert(i, n.to_string());
            }
        }
    }

    /// Takes profiles in `[lo, hi]` into the bounds.
    fn widen(&self, lo: i64, hi: i64) {
        // Loads first: most appends move neither bound down, and only
        // in-order ones move the upper bound up.
        if lo < self.min_time.load(Ordering::SeqCst) {
            self.min_time.fetch_min(lo, Ordering::SeqCst);
        }
        if hi > self.max_time.load(Ordering::SeqCst) {
            self.max_time.fetch_max(hi, Ordering::SeqCst);
        }
    }

    /// A series was created (empty).
    fn created(&self) {
        self.empty.fetch_add(1, Ordering::SeqCst);
    }

    /// An empty series got a profile, or left the head.
    fn filled(&self) {
        self.empty.fetch_sub(1, Ordering::SeqCst);
    }

    /// A series lost its last profile.
    fn emptied(&self) {
        self.empty.fetch_add(1, Ordering::SeqCst);
    }

    /// True when every series has a profile and every profile lies in
    /// `[start, end]`, so every series has a profile in `[start, end]`.
    fn covered_by(&self, start: i64, end: i64) -> bool {
        self.empty.load(Ordering::SeqCst) == 0
            && self.min_time.load(Ordering::SeqCst) >= start
            && self.max_time.load(Ordering::SeqCst) <= end
    }
}

/// The in-memory store of series.
pub struct Head {
    /// label hash → series with that hash.
    stripes: Vec<RwLock<FxHashMap<u64, Vec<Arc<MemSeries>>>>>,
    /// series ref → series, striped by ref.
    by_ref: Vec<RwLock<FxHashMap<SeriesRef, Arc<MemSeries>>>>,
    postings: RwLock<MemPostings>,
    /// Every series in label order, for large selections.
    order: order::LabelOrder,
    /// Empty series and time bounds, for label queries.
    extent: Arc<Extent>,
    next_ref: AtomicU32,
    num_series: AtomicUsize,
    max_series: usize,
    /// Where sealed sets number their stacks ([`Head::stack_table`]).
    stack_tables: RwLock<StackTables>,
}

/// The head's stack tables: the one sets are built with now, and earlier
/// ones as long as a set built with them lives.
#[derive(Debug, Default)]
struct StackTables {
    current: Arc<StackTable>,
    earlier: Vec<std::sync::Weak<StackTable>>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("series", &self.num_series())
            .finish()
    }
}

impl Head {
    /// An empty head that holds at most `max_series` series.
    pub fn new(max_series: usize) -> Head {
        Head {
            stripes: (0..STRIPES).map(|_| RwLock::default()).collect(),
            by_ref: (0..STRIPES).map(|_| RwLock::default()).collect(),
            postings: RwLock::new(MemPostings::new()),
            order: order::LabelOrder::default(),
            extent: Arc::new(Extent::default()),
            next_ref: AtomicU32::new(1),
            num_series: AtomicUsize::new(0),
            max_series,
            stack_tables: RwLock::default(),
        }
    }

    /// The table the head's chunk sets built from now on number their
    /// stacks in once sealed ([`crate::tsdb::stacktable`]).
    pub fn stack_table(&self) -> Arc<StackTable> {
        Arc::clone(&self.stack_tables.read().current)
    }

    /// Starts a new stack table: sets built from now on use it, and the
    /// previous one is freed with the last set built with it. The cut calls
    /// this before it truncates the head, so that a table holds the stacks
    /// of about one head span rather than of every profile ever taken.
    pub fn start_stack_table(&self) {
        let mut t = self.stack_tables.write();
        let old = std::mem::take(&mut t.current);
        t.earlier.retain(|w| w.strong_count() > 0);
        t.earlier.push(Arc::downgrade(&old));
    }

    /// Bytes of the stack tables still in use.
    fn stack_table_bytes(&self) -> usize {
        let t = self.stack_tables.read();
        t.current.bytes()
            + t.earlier
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                .map(|e| e.bytes())
                .sum::<usize>()
    }

    /// The sample label names any profile of the head carried, sorted.
    pub fn sample_label_names(&self) -> Vec<String> {
        self.extent.sample_labels.read().clone()
    }

    /// The series limit.
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// Number of series.
    pub fn num_series(&self) -> usize {
        self.num_series.load(Ordering::Relaxed)
    }

    /// The series with exactly these labels, if any.
    pub fn get(&self, labels: &Labels) -> Option<Arc<MemSeries>> {
        let h = labels.stable_hash();
        let stripe = self.stripes[(h as usize) % STRIPES].read();
        stripe
            .get(&h)
            .and_then(|v| v.iter().find(|s| &s.labels == labels).cloned())
    }

    /// The series with these labels, created (and indexed) if new.
    /// `pprof_labels` maps series label names to the pprof string label names
    /// they came from; it is kept from the first call that creates the series.
    pub fn get_or_create(
        &self,
        labels: Labels,
        profile_type: ProfileType,
        pprof_labels: Vec<(String, String)>,
    ) -> Result<Arc<MemSeries>, HeadError> {
        let h = labels.stable_hash();
        let mut stripe = self.stripes[(h as usize) % STRIPES].write();
        let bucket = stripe.entry(h).or_default();
        if let Some(s) = bucket.iter().find(|s| s.labels == labels) {
            return Ok(s.clone());
        }
        // Reserve a slot under the limit without a lock on other stripes.
        let n = self.num_series.fetch_add(1, Ordering::Relaxed);
        if n >= self.max_series {
            self.num_series.fetch_sub(1, Ordering::Relaxed);
            return Err(HeadError::SeriesLimit {
                limit: self.max_series,
            });
        }
        let sref = SeriesRef(self.next_ref.fetch_add(1, Ordering::Relaxed));
        // Counted empty (by `new`) before it enters the postings.
        let s = Arc::new(MemSeries::new(
            sref,
            labels,
            profile_type,
            pprof_labels,
            self.extent.clone(),
        ));
        bucket.push(s.clone());
        self.by_ref[(sref.0 as usize) % STRIPES]
            .write()
            .insert(sref, s.clone());
        // In the order before the postings: see `order`'s invariants.
        self.order.add(s.clone());
        self.postings.write().add(sref, &s.labels);
        Ok(s)
    }

    /// The series with ref `r`.
    pub fn series(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        self.by_ref[(r.0 as usize) % STRIPES]
            .read()
            .get(&r)
            .cloned()
    }

    /// Series matching `matchers` (all series when `matchers` is empty),
    /// sorted by series ref.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        self.resolve(&self.selection(matchers))
    }

    /// The series of the refs in `refs` still in the head, by ref.
    fn resolve(&self, refs: &Bitmap) -> Vec<Arc<MemSeries>> {
        refs.iter()
            .filter_map(|r| self.series(SeriesRef(r)))
            .collect()
    }

    /// The refs of the series matching `matchers` (all when empty).
    fn selection(&self, matchers: &[Matcher]) -> Bitmap {
        let p = self.postings.read();
        if matchers.is_empty() {
            p.all().clone()
        } else {
            select(&p, matchers)
        }
    }

    /// Series matching `matchers` that have a profile in `[start, end]` (ms),
    /// sorted by labels: a large selection in the head's kept label order,
    /// a small one sorted (see [`order`]).
    pub fn select_in_range(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Vec<Arc<MemSeries>> {
        let bitmap = self.selection(matchers);
        let n = self.num_series();
        let mut v = if order::use_order(bitmap.cardinality(), n as u64) {
            self.order.select(&bitmap, |r| self.series(r).is_some(), n)
        } else {
            let mut v = self.resolve(&bitmap);
            v.sort_by(|a, b| a.labels.cmp(&b.labels));
            v
        };
        v.retain(|s| s.overlaps(start, end));
        v
    }

    /// Label names of the series [`Head::select_in_range`] returns, sorted.
    /// See "Label queries" in the module docs.
    pub fn label_names(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<String> {
        let candidates = {
            let p = self.postings.read();
            let sel = Selection::new(&p, matchers);
            if sel.is_empty(&p) {
                return Vec::new();
            }
            // The extent is read under the postings lock (see `Extent`).
            if labels::plan_names(&p, &sel) == Plan::Postings && self.extent.covered_by(start, end)
            {
                return labels::names_from_postings(&p, &sel);
            }
            sel.into_bitmap(&p)
        };
        let mut out = Collect::default();
        self.each_in_range(&candidates, start, end, |s| out.names(&s.labels));
        out.into_vec()
    }

    /// Values of label `name` over the series [`Head::select_in_range`]
    /// returns, sorted. See "Label queries" in the module docs.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Vec<String> {
        let candidates = {
            let p = self.postings.read();
            if p.values(name).is_none() {
                return Vec::new();
            }
            let sel = Selection::new(&p, matchers);
            if sel.is_empty(&p) {
                return Vec::new();
            }
            if labels::plan_values(&p, name, &sel) == Plan::Postings
                && self.extent.covered_by(start, end)
            {
                return labels::values_from_postings(&p, name, &sel);
            }
            sel.into_bitmap(&p)
        };
        let mut out = Collect::default();
        self.each_in_range(&candidates, start, end, |s| out.value(&s.labels, name));
        out.into_vec()
    }

    /// Calls `f` with each series of `refs` that has a profile in
    /// `[start, end]` (without the postings lock, as [`Head::select`]).
    fn each_in_range(&self, refs: &Bitmap, start: i64, end: i64, mut f: impl FnMut(&MemSeries)) {
        for r in refs.iter() {
            if let Some(s) = self.series(SeriesRef(r)) {
                if s.overlaps(start, end) {
                    f(&s);
                }
            }
        }
    }

    /// Sets the time bounds of label queries to `bounds` (`None`: no
    /// profile), which must hold every profile in the head. The caller
    /// excludes appends (the store calls it after a cut, holding its state
    /// lock exclusively).
    pub fn reset_time_bounds(&self, bounds: Option<(i64, i64)>) {
        let (lo, hi) = bounds.unwrap_or((i64::MAX, i64::MIN));
        self.extent.min_time.store(lo, Ordering::SeqCst);
        self.extent.max_time.store(hi, Ordering::SeqCst);
    }

    /// Every series, sorted by ref.
    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        let mut v: Vec<Arc<MemSeries>> = Vec::with_capacity(self.num_series());
        for stripe in &self.by_ref {
            v.extend(stripe.read().values().cloned());
        }
        v.sort_by_key(|s| s.sref);
        v
    }

    /// Removes a series from the series map and the postings. The caller
    /// makes sure no writer holds it (the store removes series only while
    /// ingest is excluded).
    pub fn remove(&self, series: &MemSeries) {
        let h = series.labels.stable_hash();
        let mut stripe = self.stripes[(h as usize) % STRIPES].write();
        let mut removed = false;
        if let Some(bucket) = stripe.get_mut(&h) {
            let before = bucket.len();
            bucket.retain(|s| s.sref != series.sref);
            removed = bucket.len() < before;
            if bucket.is_empty() {
                stripe.remove(&h);
            }
        }
        drop(stripe);
        if removed {
            self.by_ref[(series.sref.0 as usize) % STRIPES]
                .write()
                .remove(&series.sref);
            self.postings.write().remove(series.sref, &series.labels);
            if series.is_empty() {
                // An empty series no longer counts.
                self.extent.filled();
            }
            self.num_series.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Releases the memory of series maps left sparse by removals, and of
    /// removed series still in the label order.
    pub fn shrink(&self) {
        self.order.purge(|r| self.series(r).is_some());
        for stripe in &self.stripes {
            let mut m = stripe.write();
            if m.capacity() > 4 * m.len() + 64 {
                m.shrink_to_fit();
            }
        }
        for stripe in &self.by_ref {
            let mut m = stripe.write();
            if m.capacity() > 4 * m.len() + 64 {
                m.shrink_to_fit();
            }
        }
    }

    /// Seals the open chunk sets that are idle at `now` (ms) in every
    /// series ([`MemSeries::seal_idle`]: after a few of the series' own
    /// intervals, within `[min_idle, max_idle]`): a series that stopped
    /// receiving profiles (a target gone, a process ended) keeps its
    /// columns packed, 12 bytes of index per column instead of about 100 of
    /// growable column. Returns how many sets it sealed.
    pub fn seal_idle(&self, now: i64, min_idle: i64, max_idle: i64) -> usize {
        let mut sealed = 0;
        for stripe in &self.by_ref {
            let series: Vec<Arc<MemSeries>> = stripe.read().values().cloned().collect();
            for s in series {
                sealed += s.seal_idle(now, min_idle, max_idle);
            }
        }
        sealed
    }

    /// Bytes held by all chunks of all series, and by the stack tables
    /// their sealed sets number their stacks in.
    pub fn chunk_bytes(&self) -> usize {
        let mut total = self.stack_table_bytes();
        for stripe in &self.by_ref {
            for s in stripe.read().values() {
                total += s.chunk_bytes();
            }
        }
        total
    }

    /// Approximate bytes held by the postings and the label order.
    pub fn postings_bytes(&self) -> usize {
        self.postings.read().size_bytes() + self.order.size_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StackId;
    use crate::tsdb::chunkset::{AppendProfile, CHUNK_PROFILES};

    /// A new stack table at a cut: sets sealed with the old one read as
    /// before, the sets built from then on use the new one, and the old
    /// one is freed with the last set that used it.
    #[test]
    fn stack_tables_change_at_a_cut_and_old_ones_go_with_their_sets() {
        let head = Head::new(usize::MAX);
        let pt = ProfileType::parse("process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta").unwrap();
        let s = head
            .get_or_create(Labels::from_pairs([("job", "a")]), pt, Vec::new())
            .unwrap();
        let stack = |i: u64| StackId(uuid::Uuid::from_u64_pair(i, i ^ 0xabcd));
        let profile = |t: i64| AppendProfile {
            timestamp: t * 10,
            duration: 10,
            period: 1,
            // Stacks come and go, so columns start late and stop early.
            samples: (0..8)
                .filter(|k| (t as u64 + k) % 3 != 0)
                .map(|k| (stack((t as u64 / 7 + k) % 40), 1 + t + k as i64))
                .collect(),
            tagged: Vec::new(),
        };
        let n = CHUNK_PROFILES as i64 * 2 + 30;
        let first = head.stack_table();
        for t in 0..n {
            s.append(&profile(t), &head.stack_table());
        }
        let merged = |from: i64| {
            let mut acc = FxHashMap::default();
            s.merge_into(from * 10, i64::MAX, &mut acc);
            acc.retain(|_, v| *v != 0);
            acc
        };
        let want = |from: i64| {
            let mut acc: FxHashMap<StackId, i64> = FxHashMap::default();
            for t in from..n {
                for (k, v) in profile(t).samples {
                    *acc.entry(k).or_insert(0) += v;
                }
            }
            acc
        };
        assert_eq!(merged(0), want(0));
        let bytes = head.chunk_bytes();
        assert!(
            !first.is_empty(),
            "the full sets were sealed into the table"
        );

        head.start_stack_table();
        let second = head.stack_table();
        assert!(!Arc::ptr_eq(&first, &second));
        // Nothing new yet, and the sealed sets still read through `first`.
        assert_eq!(merged(0), want(0));
        assert_eq!(head.chunk_bytes(), bytes + second.bytes());
        // Truncating inside the second set builds it again with `second`;
        // the third (open) set was started with `first` and keeps it: it
        // fills, and seals into `first`.
        let cut = CHUNK_PROFILES as i64 + 50;
        s.truncate_before(cut * 10, &second);
        assert_eq!(merged(0), want(cut));
        let m = n + 2 * CHUNK_PROFILES as i64;
        for t in n..m {
            s.append(&profile(t), &head.stack_table());
        }
        let from = |lo: i64| {
            let mut acc: FxHashMap<StackId, i64> = FxHashMap::default();
            for t in lo..m {
                for (k, v) in profile(t).samples {
                    *acc.entry(k).or_insert(0) += v;
                }
            }
            acc
        };
        assert_eq!(merged(0), from(cut));
        assert!(
            !second.is_empty(),
            "a set built after the cut sealed into the new table"
        );
        let weak = Arc::downgrade(&first);
        drop(first);
        assert!(
            weak.upgrade().is_some(),
            "the set started before the cut holds it"
        );
        // Once every set built with it is gone, so is the table.
        s.truncate_before((n + 100) * 10, &second);
        assert!(weak.upgrade().is_none());
        assert_eq!(merged(0), from(n + 100));
        assert!(head.chunk_bytes() >= second.bytes());
    }
}

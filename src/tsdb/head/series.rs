//! One series of the head: its labels and its chunk sets.
//!
//! Profiles after the series' latest go to the in-order chunk sets (`sets`),
//! in time order, as always. A profile at or before the latest (out of
//! order) goes to the out-of-order sets (`ooo`): to the one whose last
//! profile is the latest before it (an append, as in order), or to a new
//! set. So an out-of-order write costs about an in-order one; nothing is
//! decoded and encoded again. Out-of-order sets may overlap each other and
//! the in-order sets in time; reads combine both (totals sorted by time,
//! merges added up, the first profile the earliest of both), and writing a
//! block or the snapshot merges them into sets in time order. Patience
//! sorting bounds their number (about 2√n for n profiles in random order);
//! past [`MAX_OOO_SETS`] they are merged into sets in time order, and when
//! those are still more than half the bound, the in-order sets are encoded
//! again with them and the out-of-order sets are gone.

use super::{Extent, HeadError};
use crate::model::labels::Labels;
use crate::model::profile_type::ProfileType;
use crate::model::StackId;
use crate::tsdb::chunkset::{
    build_sets, sets_first_in, sets_hold, sets_merge_into, sets_merge_where, sets_overlap,
    sets_totals, sets_totals_where, AppendProfile, ChunkSet, MergeStats, CHUNK_PROFILES,
};
use crate::tsdb::index::SeriesRef;
use crate::tsdb::stacktable::StackTable;
use crate::tsdb::tagged::RowFilter;
use parking_lot::{Mutex, MutexGuard};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Out-of-order chunk sets of a series past which they are merged into
/// sets in time order.
pub const MAX_OOO_SETS: usize = 32;

/// A series' open set is idle once its newest profile is older than this
/// many of its intervals between profiles ([`MemSeries::seal_idle`]): a
/// target scraped every 10 s that missed three scrapes is gone or stuck.
pub const IDLE_INTERVALS: i64 = 3;

/// A series' columns (guarded by [`MemSeries`]' mutex).
#[derive(Debug, Default)]
pub struct SeriesData {
    max_time: Option<i64>,
    min_time: Option<i64>,
    /// In-order chunk sets: in time order, each after the previous.
    sets: Vec<ChunkSet>,
    /// Out-of-order chunk sets: each in time order, in no order among
    /// themselves or with `sets`.
    ooo: Vec<ChunkSet>,
}

impl SeriesData {
    fn all_sets(&self) -> impl Iterator<Item = &ChunkSet> {
        self.sets.iter().chain(&self.ooo)
    }

    /// Every profile in `[start, end]`, in time order (stable: in-order
    /// sets first at one timestamp).
    fn profiles(&self, start: i64, end: i64) -> Vec<AppendProfile> {
        let mut out = Vec::new();
        for s in self.all_sets() {
            if s.time_range().1 >= start && s.time_range().0 <= end {
                out.extend(s.profiles(start, end));
            }
        }
        if !self.ooo.is_empty() {
            out.sort_by_key(|p| p.timestamp);
        }
        out
    }

    fn update_range(&mut self) {
        self.min_time = self.all_sets().map(|s| s.time_range().0).min();
        if self.min_time.is_none() {
            self.max_time = None;
        }
    }
}

/// What [`MemSeries::append_locked`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The profile was added.
    Stored,
    /// The series already held this very profile; nothing changed.
    Duplicate,
}

/// A series: its identity (never changes) and its columns.
#[derive(Debug)]
pub struct MemSeries {
    /// The series' id.
    pub sref: SeriesRef,
    /// The full label set, `__name__` included.
    pub labels: Labels,
    /// The profile type (parsed from `__name__`).
    pub profile_type: ProfileType,
    /// Series label name → pprof string label name, for the labels that came
    /// from pprof sample labels (they return as pprof labels on output).
    pub pprof_labels: Vec<(String, String)>,
    data: Mutex<SeriesData>,
    /// The head's extent: told when the series gets its first profile or
    /// loses its last, and of every profile's timestamp.
    extent: Arc<Extent>,
}

impl MemSeries {
    pub(super) fn new(
        sref: SeriesRef,
        labels: Labels,
        profile_type: ProfileType,
        pprof_labels: Vec<(String, String)>,
        extent: Arc<Extent>,
    ) -> MemSeries {
        extent.created();
        MemSeries {
            sref,
            labels,
            profile_type,
            pprof_labels,
            data: Mutex::new(SeriesData::default()),
            extent,
        }
    }

    /// Locks the series' columns (for appending several series atomically).
    pub fn lock(&self) -> MutexGuard<'_, SeriesData> {
        self.data.lock()
    }

    /// True when the series holds a profile equal to `p` (same timestamp,
    /// duration, period and samples); the caller holds the lock.
    pub fn holds_locked(&self, data: &SeriesData, p: &AppendProfile) -> bool {
        match (data.min_time, data.max_time) {
            (Some(lo), Some(hi)) if (lo..=hi).contains(&p.timestamp) => {
                sets_hold(&data.sets, p) || sets_hold(&data.ooo, p)
            }
            _ => false,
        }
    }

    /// True when the series holds a profile equal to `p`.
    pub fn holds(&self, p: &AppendProfile) -> bool {
        self.holds_locked(&self.data.lock(), p)
    }

    /// Adds one profile (the caller holds the lock). A profile equal to one
    /// the series holds is not added again ([`Appended::Duplicate`]);
    /// another profile at a timestamp the series already has is added
    /// beside it, and reads sum the two. See the module docs for where it
    /// goes. A set it starts numbers its stacks in `table` once sealed (the
    /// head's, [`super::Head::stack_table`]).
    pub fn append_locked(
        &self,
        data: &mut SeriesData,
        p: &AppendProfile,
        table: &Arc<StackTable>,
    ) -> Appended {
        if self.holds_locked(data, p) {
            return Appended::Duplicate;
        }
        let ts = p.timestamp;
        let was_empty = data.min_time.is_none();
        // Before the profile is stored (see `Extent`).
        self.extent.widen(ts, ts);
        if !p.tagged.is_empty() {
            self.extent.note_sample_labels(
                p.tagged
                    .iter()
                    .flat_map(|t| t.0.iter().map(|l| l.0.as_str())),
            );
        }
        if data.max_time.is_none_or(|max| ts > max) {
            match data.sets.last_mut() {
                Some(set) if set.len() < CHUNK_PROFILES => set.push(p),
                _ => {
                    let mut set = ChunkSet::new(Arc::clone(table));
                    set.push(p);
                    data.sets.push(set);
                }
            }
            data.max_time = Some(ts);
        } else {
            let best = data
                .ooo
                .iter_mut()
                .filter(|s| s.len() < CHUNK_PROFILES && s.time_range().1 < ts)
                .max_by_key(|s| s.time_range().1);
            match best {
                Some(set) => set.push(p),
                None => {
                    let mut set = ChunkSet::new(Arc::clone(table));
                    set.push(p);
                    data.ooo.push(set);
                }
            }
            if data.ooo.len() > MAX_OOO_SETS {
                let mut profiles = Vec::new();
                for s in &data.ooo {
                    profiles.extend(s.profiles(i64::MIN, i64::MAX));
                }
                profiles.sort_by_key(|p| p.timestamp);
                data.ooo = build_sets(&profiles, table);
                if data.ooo.len() > MAX_OOO_SETS / 2 {
                    // So many out-of-order profiles that their merged sets
                    // would soon pass the bound again: everything goes into
                    // in-order sets once.
                    data.sets = build_sets(&data.profiles(i64::MIN, i64::MAX), table);
                    data.ooo.clear();
                }
            }
        }
        data.min_time = Some(data.min_time.map_or(ts, |m| m.min(ts)));
        if was_empty {
            self.extent.filled();
        }
        Appended::Stored
    }

    /// Adds one profile (see [`MemSeries::append_locked`]).
    pub fn append(&self, p: &AppendProfile, table: &Arc<StackTable>) -> Appended {
        let mut data = self.data.lock();
        self.append_locked(&mut data, p, table)
    }

    /// `(min, max)` timestamps, if the series has profiles.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let d = self.data.lock();
        Some((d.min_time?, d.max_time?))
    }

    /// True when the series holds no profile.
    pub fn is_empty(&self) -> bool {
        self.data.lock().min_time.is_none()
    }

    /// True when the series has a profile in `[start, end]`.
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        let d = self.data.lock();
        sets_overlap(&d.sets, start, end) || sets_overlap(&d.ooo, start, end)
    }

    /// Number of profiles stored.
    pub fn num_profiles(&self) -> usize {
        self.data.lock().all_sets().map(ChunkSet::len).sum()
    }

    /// Seals ([`ChunkSet::seal`]) the series' open sets that are idle at
    /// `now` (ms): their newest profile is older than [`IDLE_INTERVALS`] of
    /// the set's mean interval between profiles, kept within `[min_idle,
    /// max_idle]` (`max_idle` for a set of one profile). Returns how many
    /// it sealed. Answers do not change; a later profile unpacks the set it
    /// goes to.
    pub fn seal_idle(&self, now: i64, min_idle: i64, max_idle: i64) -> usize {
        let mut d = self.data.lock();
        let d = &mut *d;
        let mut sealed = 0;
        for s in d.sets.iter_mut().chain(d.ooo.iter_mut()) {
            if s.is_empty() || s.is_sealed() {
                continue;
            }
            let (lo, hi) = s.time_range();
            let idle = match s.len() {
                1 => max_idle,
                n => ((hi - lo) / (n as i64 - 1))
                    .saturating_mul(IDLE_INTERVALS)
                    .clamp(min_idle, max_idle.max(min_idle)),
            };
            if hi < now.saturating_sub(idle) {
                s.seal();
                sealed += usize::from(s.is_sealed());
            }
        }
        sealed
    }

    /// Bytes held by the series' chunks.
    pub fn chunk_bytes(&self) -> usize {
        self.data.lock().all_sets().map(ChunkSet::bytes).sum()
    }

    /// `(timestamp, total)` of every profile in `[start, end]`, in time
    /// order (two profiles at one timestamp are two entries).
    pub fn totals(&self, start: i64, end: i64) -> Vec<(i64, i64)> {
        let d = self.data.lock();
        let mut out = sets_totals(&d.sets, start, end);
        if !d.ooo.is_empty() {
            out.extend(sets_totals(&d.ooo, start, end));
            out.sort_by_key(|t| t.0);
        }
        out
    }

    /// Timestamp of the first profile in `[start, end]`.
    pub fn first_in(&self, start: i64, end: i64) -> Option<i64> {
        let d = self.data.lock();
        let ooo = d
            .ooo
            .iter()
            .filter_map(|s| sets_first_in(std::slice::from_ref(s), start, end));
        sets_first_in(&d.sets, start, end)
            .into_iter()
            .chain(ooo)
            .min()
    }

    /// Adds the value of every stack over the profiles in `[start, end]` into
    /// `acc`.
    pub fn merge_into(
        &self,
        start: i64,
        end: i64,
        acc: &mut FxHashMap<StackId, i64>,
    ) -> MergeStats {
        let d = self.data.lock();
        let mut stats = sets_merge_into(&d.sets, start, end, acc);
        for s in &d.ooo {
            stats.add(&sets_merge_into(std::slice::from_ref(s), start, end, acc));
        }
        stats
    }

    /// [`MemSeries::totals`] over the samples `f` selects.
    pub fn totals_where(&self, start: i64, end: i64, f: &RowFilter) -> Vec<(i64, i64)> {
        let d = self.data.lock();
        let mut out = sets_totals_where(&d.sets, start, end, f);
        if !d.ooo.is_empty() {
            out.extend(sets_totals_where(&d.ooo, start, end, f));
            out.sort_by_key(|t| t.0);
        }
        out
    }

    /// [`MemSeries::merge_into`] over the samples `f` selects.
    pub fn merge_where(
        &self,
        start: i64,
        end: i64,
        f: &RowFilter,
        acc: &mut FxHashMap<StackId, i64>,
    ) -> MergeStats {
        let d = self.data.lock();
        let mut stats = sets_merge_where(&d.sets, start, end, f, acc);
        for s in &d.ooo {
            stats.add(&sets_merge_where(
                std::slice::from_ref(s),
                start,
                end,
                f,
                acc,
            ));
        }
        stats
    }

    /// The profiles in `[start, end]`, decoded, in time order (for writing
    /// a block).
    pub fn profiles(&self, start: i64, end: i64) -> Vec<AppendProfile> {
        self.data.lock().profiles(start, end)
    }

    /// The chunk sets in time order, as a block holds them (for writing a
    /// snapshot): the in-order sets, cloned, or — with out-of-order sets —
    /// every profile encoded again (numbering their stacks in `table`).
    pub fn chunk_sets(&self, table: &Arc<StackTable>) -> Vec<ChunkSet> {
        let d = self.data.lock();
        if d.ooo.is_empty() {
            d.sets.clone()
        } else {
            build_sets(&d.profiles(i64::MIN, i64::MAX), table)
        }
    }

    /// Adds the stacks the series references to `into`.
    pub fn stack_ids(&self, into: &mut rustc_hash::FxHashSet<StackId>) {
        for s in self.data.lock().all_sets() {
            into.extend(s.stack_ids());
        }
    }

    /// Drops every profile before `t` and returns how many are left. Sets
    /// it builds again (one straddling `t`, out-of-order ones) number their
    /// stacks in `table`.
    pub fn truncate_before(&self, t: i64, table: &Arc<StackTable>) -> usize {
        let mut d = self.data.lock();
        let was_empty = d.min_time.is_none();
        let keep_from = d.sets.iter().position(|s| s.time_range().1 >= t);
        match keep_from {
            None => d.sets.clear(),
            Some(k) => {
                d.sets.drain(..k);
                if d.sets[0].time_range().0 < t {
                    // Rebuild the straddling set from its profiles at or
                    // after t.
                    let rest = d.sets[0].profiles(t, i64::MAX);
                    let mut set = ChunkSet::new(Arc::clone(table));
                    for p in &rest {
                        set.push(p);
                    }
                    d.sets[0] = set;
                }
            }
        }
        if d.ooo.iter().any(|s| s.time_range().0 < t) {
            let mut rest = Vec::new();
            for s in &d.ooo {
                rest.extend(s.profiles(t, i64::MAX));
            }
            rest.sort_by_key(|p| p.timestamp);
            d.ooo = build_sets(&rest, table);
        }
        d.update_range();
        if !was_empty && d.min_time.is_none() {
            self.extent.emptied();
        }
        d.all_sets().map(ChunkSet::len).sum()
    }

    /// Appends whole chunk sets read from a snapshot; they must follow the
    /// series' profiles in time (a set may start at the previous set's last
    /// timestamp: two profiles at one timestamp).
    pub fn load_sets(&self, sets: Vec<ChunkSet>) -> Result<(), HeadError> {
        let mut d = self.data.lock();
        let was_empty = d.min_time.is_none();
        let result = self.load_sets_locked(&mut d, sets);
        if was_empty && d.min_time.is_some() {
            self.extent.filled();
        }
        result
    }

    fn load_sets_locked(&self, d: &mut SeriesData, sets: Vec<ChunkSet>) -> Result<(), HeadError> {
        for mut set in sets {
            if let Some(max) = d.max_time {
                if set.time_range().0 < max {
                    return Err(HeadError::SetsOutOfOrder {
                        labels: self.labels.to_string(),
                        timestamp: set.time_range().0,
                        max_time: max,
                    });
                }
            }
            // Before the set is stored (see `Extent`).
            self.extent.widen(set.time_range().0, set.time_range().1);
            self.extent
                .note_sample_labels(set.sample_label_names().into_iter());
            d.min_time.get_or_insert(set.time_range().0);
            d.max_time = Some(set.time_range().1);
            // Kept in memory: its sample-label rows packed (a set read from
            // a block has them as read).
            set.seal_rows();
            d.sets.push(set);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn stack(i: u128) -> StackId {
        StackId(Uuid::from_u128(i))
    }

    /// One table for the module's sets.
    fn table() -> Arc<StackTable> {
        static T: std::sync::LazyLock<Arc<StackTable>> = std::sync::LazyLock::new(Arc::default);
        Arc::clone(&T)
    }

    fn series() -> MemSeries {
        MemSeries::new(
            SeriesRef(1),
            Labels::from_pairs([("__name__", "x:a:b:c:d")]),
            ProfileType::parse("x:a:b:c:d").unwrap(),
            vec![],
            Arc::new(Extent::default()),
        )
    }

    /// A slow, obvious model: every profile kept as a map.
    #[test]
    fn merge_matches_a_plain_model_across_chunk_sets_and_gaps() {
        let s = series();
        let mut model: Vec<(i64, FxHashMap<StackId, i64>)> = Vec::new();
        let mut seed: u64 = 42;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for p in 0..300i64 {
            let mut samples = Vec::new();
            for st in 0..20u128 {
                if rnd() % 3 == 0 {
                    samples.push((stack(st), (rnd() % 1000) as i64 - 100));
                }
            }
            samples.retain(|x| x.1 != 0);
            let ts = 1000 + p * 10_000 + (rnd() % 100) as i64;
            s.append(
                &AppendProfile {
                    timestamp: ts,
                    duration: 10,
                    period: 7,
                    samples: samples.clone(),
                    ..Default::default()
                },
                &table(),
            );
            model.push((ts, samples.into_iter().collect()));
        }
        assert_eq!(s.num_profiles(), 300);
        for (start, end) in [
            (i64::MIN, i64::MAX),
            (0, 1000 + 119 * 10_000 + 100),
            (1000 + 50 * 10_000, 1000 + 250 * 10_000),
            (1000 + 121 * 10_000, 1000 + 121 * 10_000 + 99),
            (5, 6),
        ] {
            let mut acc = FxHashMap::default();
            let stats = s.merge_into(start, end, &mut acc);
            let mut want: FxHashMap<StackId, i64> = FxHashMap::default();
            let mut n = 0;
            for (ts, m) in &model {
                if *ts >= start && *ts <= end {
                    n += 1;
                    for (k, v) in m {
                        *want.entry(*k).or_insert(0) += v;
                    }
                }
            }
            want.retain(|_, v| *v != 0);
            acc.retain(|_, v| *v != 0);
            assert_eq!(acc, want, "range {start}..{end}");
            assert_eq!(stats.profiles, n);
            assert_eq!(stats.duration, 10 * n as i64);
            let totals = s.totals(start, end);
            assert_eq!(totals.len(), n);
            for (t, v) in totals {
                let m = &model.iter().find(|x| x.0 == t).unwrap().1;
                assert_eq!(v, m.values().sum::<i64>());
            }
        }
    }

    fn profile(ts: i64, seed: u64) -> AppendProfile {
        let mut samples: Vec<(StackId, i64)> = (0..5u64)
            .filter(|k| (seed >> k) & 1 == 1)
            .map(|k| (stack(u128::from(k)), (seed % 97 + k + 1) as i64))
            .collect();
        samples.sort_unstable_by_key(|x| x.0);
        AppendProfile {
            timestamp: ts,
            duration: 10 + (seed % 3) as i64,
            period: 7,
            samples,
            ..Default::default()
        }
    }

    /// A set is idle after three of its own intervals, within the bounds;
    /// sealing changes no answer.
    #[test]
    fn sets_are_idle_after_three_of_their_intervals_within_bounds() {
        let (min, max) = (30_000, 300_000);
        // (interval ms, profiles, idle after ms)
        for (every, n, idle) in [
            (10_000, 5, 30_000),
            (60_000, 4, 180_000),
            (2_000, 20, 30_000),
            (3_600_000, 2, 300_000),
            (0, 1, 300_000),
        ] {
            let s = series();
            let last = 1_000_000 + every * (n - 1);
            for i in 0..n {
                s.append(&profile(1_000_000 + every * i, 5 + i as u64), &table());
            }
            let before = s.profiles(i64::MIN, i64::MAX);
            assert_eq!(
                s.seal_idle(last + idle, min, max),
                0,
                "every {every} ms: sealed early"
            );
            assert_eq!(
                s.seal_idle(last + idle + 1, min, max),
                1,
                "every {every} ms: not sealed"
            );
            assert!(s.data.lock().sets[0].is_sealed());
            assert_eq!(s.profiles(i64::MIN, i64::MAX), before);
            // A profile after all unpacks it.
            s.append(&profile(last + idle + 10, 3), &table());
            assert!(!s.data.lock().sets[0].is_sealed());
        }
    }

    /// Any arrival order gives the same series as time order: totals,
    /// merges and the profiles themselves; retries are not added twice,
    /// and two different profiles at one timestamp are both kept.
    #[test]
    fn any_arrival_order_reads_as_time_order() {
        let mut seed: u64 = 7;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20 {
            let n = 50 + (rnd() % 300) as usize;
            let mut arrivals: Vec<AppendProfile> = (0..n)
                .map(|i| profile(1000 + (i as i64) * 10 - (rnd() % 3) as i64 * 5, rnd()))
                .collect();
            // A few different profiles at an existing timestamp.
            for _ in 0..5 {
                let ts = arrivals[(rnd() % n as u64) as usize].timestamp;
                arrivals.push(profile(ts, rnd() | 1));
            }
            let in_order = {
                let mut v = arrivals.clone();
                v.sort_by_key(|p| p.timestamp);
                v
            };
            let shuffled = {
                let mut v = arrivals.clone();
                for i in (1..v.len()).rev() {
                    v.swap(i, (rnd() % (i as u64 + 1)) as usize);
                }
                v
            };
            let (a, b) = (series(), series());
            for p in &in_order {
                assert_eq!(a.append(p, &table()), Appended::Stored);
            }
            for p in &shuffled {
                assert_eq!(b.append(p, &table()), Appended::Stored, "round {round}");
            }
            // Retries change nothing.
            for p in shuffled.iter().take(20) {
                assert_eq!(b.append(p, &table()), Appended::Duplicate);
            }
            assert_eq!(a.num_profiles(), in_order.len());
            assert_eq!(b.num_profiles(), in_order.len());
            for (start, end) in [(i64::MIN, i64::MAX), (1200, 1900), (995, 1000)] {
                let (mut ma, mut mb) = (FxHashMap::default(), FxHashMap::default());
                let sa = a.merge_into(start, end, &mut ma);
                let sb = b.merge_into(start, end, &mut mb);
                assert_eq!(ma, mb);
                assert_eq!(sa.profiles, sb.profiles);
                assert_eq!(sa.duration, sb.duration);
                let mut ta = a.totals(start, end);
                let mut tb = b.totals(start, end);
                ta.sort_unstable();
                tb.sort_unstable();
                assert_eq!(ta, tb);
                assert_eq!(a.first_in(start, end), b.first_in(start, end));
            }
            let sets = b.chunk_sets(&table());
            for w in sets.windows(2) {
                assert!(w[0].time_range().1 <= w[1].time_range().0);
            }
            let key = |p: &AppendProfile| (p.timestamp, p.samples.clone(), p.duration);
            let mut pa = a.profiles(i64::MIN, i64::MAX);
            let mut pb = b.profiles(i64::MIN, i64::MAX);
            pa.sort_by_key(key);
            pb.sort_by_key(key);
            assert_eq!(pa, pb);
        }
    }

    /// Thousands of profiles in descending order: the out-of-order sets are
    /// merged, then folded into the in-order sets, and the series still
    /// reads as time order.
    #[test]
    fn many_out_of_order_profiles_fold_into_in_order_sets() {
        let (a, b) = (series(), series());
        let n = 2_500i64;
        for t in 0..n {
            a.append(&profile(t * 10, t as u64), &table());
        }
        b.append(&profile((n - 1) * 10, (n - 1) as u64), &table());
        for t in (0..n - 1).rev() {
            assert_eq!(
                b.append(&profile(t * 10, t as u64), &table()),
                Appended::Stored
            );
            let d = b.lock();
            assert!(d.ooo.len() <= MAX_OOO_SETS, "{}", d.ooo.len());
        }
        assert!(b.lock().sets.len() > 1, "folded into in-order sets");
        assert_eq!(b.num_profiles(), n as usize);
        assert_eq!(a.totals(i64::MIN, i64::MAX), b.totals(i64::MIN, i64::MAX));
        let (mut ma, mut mb) = (FxHashMap::default(), FxHashMap::default());
        a.merge_into(100, 20_000, &mut ma);
        b.merge_into(100, 20_000, &mut mb);
        assert_eq!(ma, mb);
        assert_eq!(a.profiles(0, 99), b.profiles(0, 99));
    }
}

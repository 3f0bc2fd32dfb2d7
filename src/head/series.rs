//! One series of the head: its labels and its columns.

use super::HeadError;
use crate::chunkenc::{RleChunk, TimestampChunk, XorChunk};
use crate::index::SeriesRef;
use crate::labels::Labels;
use crate::meta::StackId;
use crate::profile_type::ProfileType;
use parking_lot::{Mutex, MutexGuard};
use rustc_hash::FxHashMap;

/// Profiles per chunk set. At a 10 s scrape interval this is 20 minutes: long
/// enough that the XOR and delta-of-delta encodings amortize their first raw
/// value (64 bits) over many samples, short enough that a query over a few
/// minutes decodes little it does not need. It is Prometheus's 120 samples per
/// chunk, which Parca's head kept.
pub const CHUNK_PROFILES: usize = 120;

/// One profile to append to a series.
#[derive(Debug, Clone, Default)]
pub struct AppendProfile {
    /// Timestamp in ms.
    pub timestamp: i64,
    /// Duration in ns.
    pub duration: i64,
    /// Sampling period.
    pub period: i64,
    /// Value per stack; stacks are unique and values non-zero.
    pub samples: Vec<(StackId, i64)>,
}

/// A stack's values within one chunk set.
#[derive(Debug, Clone)]
pub(crate) struct StackColumn {
    /// Index (within the chunk set) of the profile of the column's first
    /// value.
    first: u16,
    values: XorChunk,
}

/// Up to [`CHUNK_PROFILES`] profiles of a series, as aligned columns.
#[derive(Debug, Clone)]
pub struct ChunkSet {
    min_time: i64,
    max_time: i64,
    len: usize,
    timestamps: TimestampChunk,
    durations: RleChunk,
    periods: RleChunk,
    totals: XorChunk,
    stacks: FxHashMap<StackId, StackColumn>,
}

impl ChunkSet {
    pub(crate) fn new() -> ChunkSet {
        ChunkSet {
            min_time: i64::MAX,
            max_time: i64::MIN,
            len: 0,
            timestamps: TimestampChunk::new(),
            durations: RleChunk::new(),
            periods: RleChunk::new(),
            totals: XorChunk::new(),
            stacks: FxHashMap::default(),
        }
    }

    /// Number of profiles.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the set holds no profile.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `(min, max)` timestamps of the set.
    pub fn time_range(&self) -> (i64, i64) {
        (self.min_time, self.max_time)
    }

    /// The distinct stacks of the set.
    pub fn stack_ids(&self) -> impl Iterator<Item = &StackId> {
        self.stacks.keys()
    }

    /// Number of (stack, profile) values stored, padding included.
    pub fn num_values(&self) -> usize {
        self.stacks.values().map(|c| c.values.len()).sum()
    }

    /// The set as a block message (chunk bytes as they are).
    pub fn to_proto(&self) -> crate::proto::block::ChunkSet {
        let mut stacks: Vec<_> = self
            .stacks
            .iter()
            .map(|(id, c)| crate::proto::block::StackColumn {
                stack: id.0.as_bytes().to_vec(),
                first: u32::from(c.first),
                values: c.values.bytes().to_vec(),
            })
            .collect();
        stacks.sort_unstable_by(|a, b| a.stack.cmp(&b.stack));
        crate::proto::block::ChunkSet {
            min_time: self.min_time,
            max_time: self.max_time,
            len: self.len as u32,
            timestamps: self.timestamps.bytes().to_vec(),
            durations: self.durations.bytes().to_vec(),
            periods: self.periods.bytes().to_vec(),
            totals: self.totals.bytes().to_vec(),
            stacks,
        }
    }

    /// Decodes and checks a set read from a block: every chunk decodes, the
    /// columns hold `len` values (stack columns at most `len - first`), the
    /// timestamps increase and lie in `[min_time, max_time]`.
    pub fn from_proto(p: &crate::proto::block::ChunkSet) -> Result<ChunkSet, String> {
        let len = p.len as usize;
        if len == 0 || len > CHUNK_PROFILES {
            return Err(format!("chunk set of {len} profiles"));
        }
        let chunk = |what: &str, e: crate::chunkenc::ChunkError| format!("{what}: {e}");
        let timestamps =
            TimestampChunk::from_bytes(&p.timestamps).map_err(|e| chunk("timestamps", e))?;
        let durations = RleChunk::from_bytes(&p.durations).map_err(|e| chunk("durations", e))?;
        let periods = RleChunk::from_bytes(&p.periods).map_err(|e| chunk("periods", e))?;
        let totals = XorChunk::from_bytes(&p.totals).map_err(|e| chunk("totals", e))?;
        if timestamps.len() != len
            || durations.len() != len
            || periods.len() != len
            || totals.len() != len
        {
            return Err(format!("columns disagree with the set's {len} profiles"));
        }
        if timestamps.iter().next() != Some(p.min_time) || timestamps.last() != Some(p.max_time) {
            return Err("timestamps disagree with the set's time range".into());
        }
        let mut stacks = FxHashMap::default();
        for c in &p.stacks {
            let id = uuid::Uuid::from_slice(&c.stack)
                .map_err(|_| format!("stack id of {} bytes", c.stack.len()))?;
            let values = XorChunk::from_bytes(&c.values).map_err(|e| chunk("stack column", e))?;
            let first = c.first as usize;
            if first >= len || first + values.len() > len || values.is_empty() {
                return Err(format!(
                    "stack column of {} values from profile {first} in a set of {len}",
                    values.len()
                ));
            }
            stacks.insert(
                StackId(id),
                StackColumn {
                    first: first as u16,
                    values,
                },
            );
        }
        Ok(ChunkSet {
            min_time: p.min_time,
            max_time: p.max_time,
            len,
            timestamps,
            durations,
            periods,
            totals,
            stacks,
        })
    }

    /// The profiles of the set with timestamps in `[start, end]`, decoded.
    pub fn profiles(&self, start: i64, end: i64) -> Vec<AppendProfile> {
        let (lo, hi, ts) = self.index_range(start, end);
        if hi == lo {
            return Vec::new();
        }
        let mut out: Vec<AppendProfile> = (lo..hi)
            .map(|i| AppendProfile {
                timestamp: ts[i],
                ..AppendProfile::default()
            })
            .collect();
        for (i, d) in self.durations.iter().enumerate().take(hi).skip(lo) {
            out[i - lo].duration = d;
        }
        for (i, p) in self.periods.iter().enumerate().take(hi).skip(lo) {
            out[i - lo].period = p;
        }
        for (stack, col) in &self.stacks {
            let first = usize::from(col.first);
            for (j, v) in col.values.iter().enumerate() {
                let i = first + j;
                if i >= hi {
                    break;
                }
                if i >= lo && v != 0 {
                    out[i - lo].samples.push((*stack, v));
                }
            }
        }
        for p in &mut out {
            p.samples.sort_unstable_by_key(|(k, _)| *k);
        }
        out
    }

    /// Appends one profile (the caller has checked that its timestamp is
    /// after the set's last and that the set is not full).
    fn push(&mut self, p: &AppendProfile) {
        let idx = self.len;
        // Cannot fail: the caller checked the timestamp is after the set's
        // last one.
        if self.timestamps.append(p.timestamp).is_err() {
            unreachable!("timestamps of a chunk set increase");
        }
        self.durations.append(p.duration);
        self.periods.append(p.period);
        let mut total: i64 = 0;
        for &(stack, v) in &p.samples {
            total = total.wrapping_add(v);
            let col = self.stacks.entry(stack).or_insert_with(|| StackColumn {
                first: idx as u16,
                values: XorChunk::new(),
            });
            while usize::from(col.first) + col.values.len() < idx {
                col.values.append(0);
            }
            col.values.append(v);
        }
        self.totals.append(total);
        self.len += 1;
        self.min_time = self.min_time.min(p.timestamp);
        self.max_time = p.timestamp;
    }

    fn bytes(&self) -> usize {
        self.timestamps.size_bytes()
            + self.durations.size_bytes()
            + self.periods.size_bytes()
            + self.totals.size_bytes()
            + self
                .stacks
                .values()
                .map(|c| c.values.size_bytes() + std::mem::size_of::<StackColumn>() + 16)
                .sum::<usize>()
    }

    /// Profile indexes `[lo, hi)` of this set whose timestamps are in
    /// `[start, end]`, with their timestamps.
    fn index_range(&self, start: i64, end: i64) -> (usize, usize, Vec<i64>) {
        let ts: Vec<i64> = self.timestamps.iter().collect();
        let lo = ts.partition_point(|&t| t < start);
        let hi = ts.partition_point(|&t| t <= end);
        (lo, hi.max(lo), ts)
    }
}

/// Summary of the profiles a merge read from one series.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MergeStats {
    /// Profiles read.
    pub profiles: usize,
    /// Earliest timestamp read (ms), `i64::MAX` when none.
    pub min_time: i64,
    /// Sum of the durations read (ns).
    pub duration: i64,
    /// Period of the last profile read.
    pub period: i64,
    /// `(timestamp, duration)` of every profile read.
    pub reads: Vec<(i64, i64)>,
}

impl MergeStats {
    /// Stats of nothing.
    pub fn empty() -> MergeStats {
        MergeStats {
            profiles: 0,
            min_time: i64::MAX,
            duration: 0,
            period: 0,
            reads: Vec::new(),
        }
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &MergeStats) {
        self.profiles += o.profiles;
        self.min_time = self.min_time.min(o.min_time);
        self.duration = self.duration.saturating_add(o.duration);
        if o.profiles > 0 {
            self.period = o.period;
        }
        self.reads.extend_from_slice(&o.reads);
    }
}

/// A series' columns (guarded by [`MemSeries`]' mutex).
#[derive(Debug, Default)]
pub struct SeriesData {
    max_time: Option<i64>,
    min_time: Option<i64>,
    sets: Vec<ChunkSet>,
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
}

impl MemSeries {
    pub(super) fn new(
        sref: SeriesRef,
        labels: Labels,
        profile_type: ProfileType,
        pprof_labels: Vec<(String, String)>,
    ) -> MemSeries {
        MemSeries {
            sref,
            labels,
            profile_type,
            pprof_labels,
            data: Mutex::new(SeriesData::default()),
        }
    }

    /// Locks the series' columns (for appending several series atomically).
    pub fn lock(&self) -> MutexGuard<'_, SeriesData> {
        self.data.lock()
    }

    /// The pprof string labels this series stands for, as (pprof name, value).
    pub fn pprof_label_values(&self) -> Vec<(String, String)> {
        self.pprof_labels
            .iter()
            .filter_map(|(series_name, pprof_name)| {
                self.labels
                    .get(series_name)
                    .map(|v| (pprof_name.clone(), v.to_string()))
            })
            .collect()
    }

    /// Checks that a profile at `timestamp` may be appended.
    pub fn check_append(&self, data: &SeriesData, timestamp: i64) -> Result<(), HeadError> {
        match data.max_time {
            Some(max) if timestamp <= max => Err(HeadError::OutOfOrder {
                labels: self.labels.to_string(),
                timestamp,
                max_time: max,
            }),
            _ => Ok(()),
        }
    }

    /// Appends one profile (the caller holds the lock and has called
    /// [`MemSeries::check_append`]; on a failed check nothing changes).
    pub fn append_locked(&self, data: &mut SeriesData, p: &AppendProfile) -> Result<(), HeadError> {
        self.check_append(data, p.timestamp)?;
        if data.sets.last().is_none_or(|s| s.len >= CHUNK_PROFILES) {
            data.sets.push(ChunkSet::new());
        }
        let Some(set) = data.sets.last_mut() else {
            unreachable!("a chunk set was pushed above")
        };
        set.push(p);
        data.max_time = Some(p.timestamp);
        data.min_time.get_or_insert(p.timestamp);
        Ok(())
    }

    /// Appends one profile.
    pub fn append(&self, p: &AppendProfile) -> Result<(), HeadError> {
        let mut data = self.data.lock();
        self.append_locked(&mut data, p)
    }

    /// `(min, max)` timestamps, if the series has profiles.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let d = self.data.lock();
        Some((d.min_time?, d.max_time?))
    }

    /// True when the series has a profile in `[start, end]`.
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        sets_overlap(&self.data.lock().sets, start, end)
    }

    /// Number of profiles stored.
    pub fn num_profiles(&self) -> usize {
        self.data.lock().sets.iter().map(|s| s.len).sum()
    }

    /// Bytes held by the series' chunks.
    pub fn chunk_bytes(&self) -> usize {
        self.data.lock().sets.iter().map(ChunkSet::bytes).sum()
    }

    /// `(timestamp, total)` of every profile in `[start, end]`.
    pub fn totals(&self, start: i64, end: i64) -> Vec<(i64, i64)> {
        sets_totals(&self.data.lock().sets, start, end)
    }

    /// Timestamp of the first profile in `[start, end]`.
    pub fn first_in(&self, start: i64, end: i64) -> Option<i64> {
        sets_first_in(&self.data.lock().sets, start, end)
    }

    /// Adds the value of every stack over the profiles in `[start, end]` into
    /// `acc`.
    pub fn merge_into(
        &self,
        start: i64,
        end: i64,
        acc: &mut FxHashMap<StackId, i64>,
    ) -> MergeStats {
        sets_merge_into(&self.data.lock().sets, start, end, acc)
    }

    /// The profiles in `[start, end]`, decoded (for writing a block).
    pub fn profiles(&self, start: i64, end: i64) -> Vec<AppendProfile> {
        let d = self.data.lock();
        let mut out = Vec::new();
        for s in &d.sets {
            if s.max_time >= start && s.min_time <= end {
                out.extend(s.profiles(start, end));
            }
        }
        out
    }

    /// The chunk sets, cloned (for writing a snapshot or a block from a
    /// series built for it).
    pub fn chunk_sets(&self) -> Vec<ChunkSet> {
        self.data.lock().sets.clone()
    }

    /// Adds the stacks the series references to `into`.
    pub fn stack_ids(&self, into: &mut rustc_hash::FxHashSet<StackId>) {
        for s in &self.data.lock().sets {
            into.extend(s.stacks.keys().copied());
        }
    }

    /// Drops every profile before `t` and returns how many are left. The
    /// series keeps its latest timestamp, so an append at or before it is
    /// still out of order.
    pub fn truncate_before(&self, t: i64) -> usize {
        let mut d = self.data.lock();
        let keep_from = d.sets.iter().position(|s| s.max_time >= t);
        let Some(k) = keep_from else {
            d.sets.clear();
            d.min_time = None;
            return 0;
        };
        d.sets.drain(..k);
        if d.sets[0].min_time < t {
            // Rebuild the straddling set from its profiles at or after t.
            let rest = d.sets[0].profiles(t, i64::MAX);
            let mut set = ChunkSet::new();
            for p in &rest {
                set.push(p);
            }
            d.sets[0] = set;
        }
        d.min_time = d.sets.first().map(|s| s.min_time);
        d.sets.iter().map(|s| s.len).sum()
    }

    /// Appends whole chunk sets read from a snapshot; they must follow the
    /// series' profiles in time.
    pub fn load_sets(&self, sets: Vec<ChunkSet>) -> Result<(), HeadError> {
        let mut d = self.data.lock();
        for set in sets {
            if let Some(max) = d.max_time {
                if set.min_time <= max {
                    return Err(HeadError::OutOfOrder {
                        labels: self.labels.to_string(),
                        timestamp: set.min_time,
                        max_time: max,
                    });
                }
            }
            d.min_time.get_or_insert(set.min_time);
            d.max_time = Some(set.max_time);
            d.sets.push(set);
        }
        Ok(())
    }
}

/// Chunk sets holding `profiles` (in time order, timestamps increasing).
pub fn build_sets(profiles: &[AppendProfile]) -> Vec<ChunkSet> {
    let mut sets: Vec<ChunkSet> = Vec::new();
    for p in profiles {
        match sets.last_mut() {
            Some(s) if s.len < CHUNK_PROFILES && s.max_time < p.timestamp => s.push(p),
            _ => {
                let mut s = ChunkSet::new();
                s.push(p);
                sets.push(s);
            }
        }
    }
    sets
}

/// True when `sets` hold a profile in `[start, end]`.
pub fn sets_overlap(sets: &[ChunkSet], start: i64, end: i64) -> bool {
    sets.iter().any(|s| {
        s.len > 0 && s.min_time <= end && s.max_time >= start && {
            let (lo, hi, _) = s.index_range(start, end);
            hi > lo
        }
    })
}

/// `(timestamp, total)` of every profile of `sets` in `[start, end]`.
pub fn sets_totals(sets: &[ChunkSet], start: i64, end: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for s in sets {
        if s.max_time < start || s.min_time > end {
            continue;
        }
        for (t, v) in s.timestamps.iter().zip(s.totals.iter()) {
            if t >= start && t <= end {
                out.push((t, v));
            }
        }
    }
    out
}

/// Timestamp of the first profile of `sets` in `[start, end]`.
pub fn sets_first_in(sets: &[ChunkSet], start: i64, end: i64) -> Option<i64> {
    for s in sets {
        if s.max_time < start || s.min_time > end {
            continue;
        }
        if let Some(t) = s.timestamps.iter().find(|&t| t >= start && t <= end) {
            return Some(t);
        }
    }
    None
}

/// Adds the value of every stack of `sets` over the profiles in
/// `[start, end]` into `acc`.
pub fn sets_merge_into(
    sets: &[ChunkSet],
    start: i64,
    end: i64,
    acc: &mut FxHashMap<StackId, i64>,
) -> MergeStats {
    let mut stats = MergeStats::empty();
    for s in sets {
        if s.len == 0 || s.max_time < start || s.min_time > end {
            continue;
        }
        let (lo, hi, ts) = s.index_range(start, end);
        if hi == lo {
            continue;
        }
        stats.min_time = stats.min_time.min(ts[lo]);
        stats.profiles += hi - lo;
        for (i, d) in s.durations.iter().enumerate() {
            if i >= lo && i < hi {
                stats.duration = stats.duration.saturating_add(d);
                stats.reads.push((ts[i], d));
            }
        }
        if let Some(p) = s.periods.get(hi - 1) {
            stats.period = p;
        }
        for (stack, col) in &s.stacks {
            let first = usize::from(col.first);
            let end_idx = first + col.values.len();
            if end_idx <= lo || first >= hi {
                continue;
            }
            let mut sum: i64 = 0;
            if lo <= first && end_idx <= hi {
                for v in col.values.iter() {
                    sum = sum.wrapping_add(v);
                }
            } else {
                for (i, v) in col.values.iter().enumerate() {
                    let idx = first + i;
                    if idx >= hi {
                        break;
                    }
                    if idx >= lo {
                        sum = sum.wrapping_add(v);
                    }
                }
            }
            if sum != 0 {
                *acc.entry(*stack).or_insert(0) += sum;
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn stack(i: u128) -> StackId {
        StackId(Uuid::from_u128(i))
    }

    fn series() -> MemSeries {
        MemSeries::new(
            SeriesRef(1),
            Labels::from_pairs([("__name__", "x:a:b:c:d")]),
            ProfileType::parse("x:a:b:c:d").unwrap(),
            vec![],
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
            s.append(&AppendProfile {
                timestamp: ts,
                duration: 10,
                period: 7,
                samples: samples.clone(),
            })
            .unwrap();
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

    #[test]
    fn out_of_order_is_rejected_and_changes_nothing() {
        let s = series();
        let p = |ts| AppendProfile {
            timestamp: ts,
            duration: 0,
            period: 1,
            samples: vec![(stack(1), 5)],
        };
        s.append(&p(10)).unwrap();
        assert!(matches!(
            s.append(&p(10)),
            Err(HeadError::OutOfOrder { .. })
        ));
        assert!(matches!(s.append(&p(9)), Err(HeadError::OutOfOrder { .. })));
        assert_eq!(s.num_profiles(), 1);
        assert_eq!(s.totals(i64::MIN, i64::MAX), vec![(10, 5)]);
        s.append(&p(11)).unwrap();
        assert_eq!(s.first_in(11, 100), Some(11));
    }
}

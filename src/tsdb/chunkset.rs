//! [`ChunkSet`]: up to [`CHUNK_PROFILES`] profiles of one series as aligned,
//! compressed columns — timestamps, durations, periods, totals, and one
//! value column per stack — and the functions every reader (head series,
//! block series) computes its answers with.
//!
//! Invariants: every chunk of a set holds exactly `len` values, except
//! stack columns, which hold `len - first` values at most; timestamps
//! strictly increase within a set; a stack column exists only from the
//! stack's first profile in the set on; the totals and every stack column of
//! a set share one value encoding ([`Values`]): integer chunks for every set
//! built here, XOR for sets read from blocks written before them.

use crate::model::StackId;
use crate::tsdb::chunkenc::{
    Encoding, IntChunk, IntIter, RleChunk, TimestampChunk, XorChunk, XorIter,
};
use rustc_hash::FxHashMap;

/// A column of values (the totals or one stack's): an [`IntChunk`], or an
/// [`XorChunk`] in a set read from a block written before integer chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Values {
    /// Gorilla XOR (encoding 1), read only from older blocks.
    Xor(XorChunk),
    /// Integer chunk (encoding 4), every set built now.
    Int(IntChunk),
}

impl Values {
    /// An empty column of encoding `enc` (XOR or integer).
    fn new(enc: Encoding) -> Values {
        match enc {
            Encoding::Xor => Values::Xor(XorChunk::new()),
            _ => Values::Int(IntChunk::new()),
        }
    }

    /// Decodes and validates a column of encoding `enc`.
    fn from_bytes(enc: Encoding, b: &[u8]) -> Result<Values, crate::tsdb::chunkenc::ChunkError> {
        Ok(match enc {
            Encoding::Xor => Values::Xor(XorChunk::from_bytes(b)?),
            _ => Values::Int(IntChunk::from_bytes(b)?),
        })
    }

    fn append(&mut self, v: i64) {
        match self {
            Values::Xor(c) => c.append(v),
            Values::Int(c) => c.append(v),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::Xor(c) => c.len(),
            Values::Int(c) => c.len(),
        }
    }

    /// Whether the column is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Values::Xor(c) => c.bytes(),
            Values::Int(c) => c.bytes(),
        }
    }

    /// The values in order.
    pub fn iter(&self) -> ValuesIter<'_> {
        match self {
            Values::Xor(c) => ValuesIter::Xor(c.iter()),
            Values::Int(c) => ValuesIter::Int(c.iter()),
        }
    }

    /// The wrapping sum of the values.
    pub fn sum(&self) -> i64 {
        match self {
            Values::Xor(c) => c.iter().fold(0i64, |a, v| a.wrapping_add(v)),
            Values::Int(c) => c.sum(),
        }
    }

    fn size_bytes(&self) -> usize {
        match self {
            Values::Xor(c) => c.size_bytes(),
            Values::Int(c) => c.size_bytes(),
        }
    }
}

/// Iterator over a [`Values`] column.
#[derive(Debug, Clone)]
pub enum ValuesIter<'a> {
    /// Over an XOR chunk.
    Xor(XorIter<'a>),
    /// Over an integer chunk.
    Int(IntIter<'a>),
}

impl Iterator for ValuesIter<'_> {
    type Item = i64;

    #[inline]
    fn next(&mut self) -> Option<i64> {
        match self {
            ValuesIter::Xor(i) => i.next(),
            ValuesIter::Int(i) => i.next(),
        }
    }
}

/// Profiles per chunk set. At a 10 s scrape interval this is 20 minutes: long
/// enough that the XOR and delta-of-delta encodings amortize their first raw
/// value (64 bits) over many samples, short enough that a query over a few
/// minutes decodes little it does not need. It is Prometheus's 120 samples per
/// chunk, which Parca's head kept.
pub const CHUNK_PROFILES: usize = 120;

/// One profile to append to a series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
pub struct StackColumn {
    /// Index (within the chunk set) of the profile of the column's first
    /// value.
    first: u16,
    values: Values,
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
    totals: Values,
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
            totals: Values::new(Encoding::Int),
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

    /// The encoding of the set's totals and stack columns.
    pub fn values_encoding(&self) -> Encoding {
        match self.totals {
            Values::Xor(_) => Encoding::Xor,
            Values::Int(_) => Encoding::Int,
        }
    }

    /// The set as a block message (chunk bytes as they are); each column
    /// names its stack by `index(stack)`, called in stack id order.
    pub fn to_proto(&self, mut index: impl FnMut(StackId) -> u32) -> crate::proto::block::ChunkSet {
        let mut cols: Vec<(&StackId, &StackColumn)> = self.stacks.iter().collect();
        cols.sort_unstable_by_key(|(id, _)| **id);
        let stacks = cols
            .into_iter()
            .map(|(id, c)| crate::proto::block::StackColumn {
                stack: Vec::new(),
                stack_index: index(*id),
                first: u32::from(c.first),
                values: c.values.bytes().to_vec(),
            })
            .collect();
        crate::proto::block::ChunkSet {
            min_time: self.min_time,
            max_time: self.max_time,
            len: self.len as u32,
            timestamps: self.timestamps.bytes().to_vec(),
            durations: self.durations.bytes().to_vec(),
            periods: self.periods.bytes().to_vec(),
            totals: self.totals.bytes().to_vec(),
            stacks,
            values_encoding: match self.values_encoding() {
                // Blocks written before integer chunks leave the field 0.
                Encoding::Xor => 0,
                e => u32::from(e.as_u8()),
            },
        }
    }

    /// Decodes and checks a set read from a block: every chunk decodes, the
    /// columns hold `len` values (stack columns at most `len - first`), the
    /// timestamps increase and lie in `[min_time, max_time]`; `stack` names
    /// each column's stack (from its id or its index, by block version).
    pub fn from_proto(
        p: &crate::proto::block::ChunkSet,
        stack: impl Fn(&crate::proto::block::StackColumn) -> Result<StackId, String>,
    ) -> Result<ChunkSet, String> {
        let len = p.len as usize;
        if len == 0 || len > CHUNK_PROFILES {
            return Err(format!("chunk set of {len} profiles"));
        }
        let chunk = |what: &str, e: crate::tsdb::chunkenc::ChunkError| format!("{what}: {e}");
        let timestamps =
            TimestampChunk::from_bytes(&p.timestamps).map_err(|e| chunk("timestamps", e))?;
        let durations = RleChunk::from_bytes(&p.durations).map_err(|e| chunk("durations", e))?;
        let periods = RleChunk::from_bytes(&p.periods).map_err(|e| chunk("periods", e))?;
        let enc = match p.values_encoding {
            0 => Encoding::Xor,
            4 => Encoding::Int,
            e => return Err(format!("unknown value encoding {e}")),
        };
        let totals = Values::from_bytes(enc, &p.totals).map_err(|e| chunk("totals", e))?;
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
            let id = stack(c)?;
            let values =
                Values::from_bytes(enc, &c.values).map_err(|e| chunk("stack column", e))?;
            let first = c.first as usize;
            if first >= len || first + values.len() > len || values.is_empty() {
                return Err(format!(
                    "stack column of {} values from profile {first} in a set of {len}",
                    values.len()
                ));
            }
            let col = StackColumn {
                first: first as u16,
                values,
            };
            if stacks.insert(id, col).is_some() {
                return Err(format!("stack {} has two columns", id.0));
            }
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
    pub(crate) fn push(&mut self, p: &AppendProfile) {
        let idx = self.len;
        // Cannot fail: the caller checked the timestamp is after the set's
        // last one.
        if self.timestamps.append(p.timestamp).is_err() {
            unreachable!("timestamps of a chunk set increase");
        }
        self.durations.append(p.duration);
        self.periods.append(p.period);
        let mut total: i64 = 0;
        let enc = self.values_encoding();
        for &(stack, v) in &p.samples {
            total = total.wrapping_add(v);
            let col = self.stacks.entry(stack).or_insert_with(|| StackColumn {
                first: idx as u16,
                values: Values::new(enc),
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

    pub(crate) fn bytes(&self) -> usize {
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

    /// Adds `o` into `self`; the period is the one of the later of the two
    /// latest profiles (`o`'s on a tie, as when `o`'s profiles follow).
    pub fn add(&mut self, o: &MergeStats) {
        let latest = |s: &MergeStats| s.reads.iter().map(|r| r.0).max();
        if o.profiles > 0 && latest(o) >= latest(self) {
            self.period = o.period;
        }
        self.profiles += o.profiles;
        self.min_time = self.min_time.min(o.min_time);
        self.duration = self.duration.saturating_add(o.duration);
        self.reads.extend_from_slice(&o.reads);
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

/// True when `a` and `b` are the same profile: timestamp, duration, period
/// and the same non-zero value per stack.
pub fn same_profile(a: &AppendProfile, b: &AppendProfile) -> bool {
    if a.timestamp != b.timestamp || a.duration != b.duration || a.period != b.period {
        return false;
    }
    let norm = |p: &AppendProfile| {
        let mut v: Vec<(StackId, i64)> = p.samples.iter().copied().filter(|s| s.1 != 0).collect();
        v.sort_unstable();
        v
    };
    norm(a) == norm(b)
}

/// True when `sets` hold a profile equal to `p` ([`same_profile`]).
pub fn sets_hold(sets: &[ChunkSet], p: &AppendProfile) -> bool {
    let ts = p.timestamp;
    sets.iter()
        .filter(|s| s.len > 0 && s.min_time <= ts && s.max_time >= ts)
        .any(|s| s.profiles(ts, ts).iter().any(|q| same_profile(q, p)))
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
                sum = col.values.sum();
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

//! [`ChunkSet`]: up to [`CHUNK_PROFILES`] profiles of one series as aligned,
//! compressed columns — timestamps, durations, periods, totals, and one
//! value column per stack — and the functions every reader (head series,
//! block series) computes its answers with.
//!
//! Invariants: every chunk of a set holds exactly `len` values, except
//! stack columns, which hold `len - first` values at most; timestamps
//! strictly increase within a set, from its `min_time` to its `max_time`;
//! a stack column exists only from the stack's first profile in the set on;
//! the totals and every stack column of a set share one value encoding
//! ([`Values`]): integer chunks for every set built here, XOR for sets read
//! from blocks written before them.
//!
//! Memory: a set that takes profiles keeps a list of growable columns
//! sorted by stack id ([`open`]: 88 bytes per column besides its chunk).
//! A full set of integer
//! chunks is **sealed** ([`ChunkSet::push`] of its last profile, sets read
//! from blocks, and the open set of a head series that stopped receiving
//! profiles: [`crate::tsdb::head::Head::seal_idle`]): its columns' bytes
//! are packed into one buffer behind an index of 3 to 5 bytes per column
//! (uvarints, see [`pack`]), which names the column's stack by its number
//! in the [`StackTable`] the set shares with others (the head's sets of
//! one generation, a block's sets) rather than by its 16-byte id.
//! Real profiles have many stacks seen in few profiles of a set, and many
//! short-lived series, so most columns hold a few bytes and the per-column
//! cost is most of a set. A sealed set is read in place; a push into one (a
//! head series whose last set came from the head snapshot) unpacks it
//! first. A set whose table is full (2³² stacks) stays unsealed. Sealing
//! also gives back the spare capacity the set's other chunks (timestamps,
//! durations, periods, totals) grew by.
//!
//! In a block message ([`ChunkSet::to_proto`], block format 6) a stack with
//! at most [`ROW_MAX`] non-zero values in the set is written as rows
//! (stack, profile, value) rather than as a column; reading the message
//! builds its column again.

use crate::model::{SampleLabels, StackId};
use crate::tsdb::chunkenc::{
    gcd, varint, Encoding, IntChunk, IntIter, RleChunk, TimestampChunk, XorChunk, XorIter,
};
use crate::tsdb::stacktable::{StackRef, StackTable};
use crate::tsdb::tagged::{RowFilter, Tagged};
use open::OpenColumns;
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::sync::Arc;

mod open;

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

    /// The column in its shorter integer form when that differs
    /// ([`IntChunk::compact`]); `None` for XOR.
    fn compact(&self) -> Option<IntChunk> {
        match self {
            Values::Int(c) => c.compact(),
            Values::Xor(_) => None,
        }
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

    fn shrink_to_fit(&mut self) {
        match self {
            Values::Xor(c) => c.shrink_to_fit(),
            Values::Int(c) => c.shrink_to_fit(),
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

/// A stack with at most this many non-zero values in a set is written to a
/// block as rows (stack, profile, value) rather than as a column (since
/// block format 6): a column costs its stack index, its first profile and
/// a chunk header however few values it holds, and real CPU profiles have
/// many stacks seen once in a set.
pub const ROW_MAX: usize = 16;

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
    /// The samples that carried sample labels, summed per (labels, stack),
    /// sorted, values non-zero; their values are in `samples` too (see
    /// [`crate::tsdb::tagged`]).
    pub tagged: Vec<(SampleLabels, StackId, i64)>,
}

/// A stack's values within one chunk set.
#[derive(Debug, Clone)]
pub struct StackColumn {
    /// Index (within the chunk set) of the profile of the column's first
    /// value.
    first: u16,
    values: Values,
}

/// Sealed columns from `(stack, first, bytes)` per column, given in the
/// order of the stacks' numbers (the order the index keeps).
///
/// The index holds per column, as uvarints: the stack's number less the
/// previous column's (the first column: its number), the column's first
/// profile and its chunk's length in bytes; the chunks follow one another
/// in `bytes` in the same order, each starting with its count of values
/// (an integer chunk's header). 3 to 5 bytes per column where a struct
/// took 12.
fn pack(cols: Vec<(StackRef, u16, &[u8])>) -> Columns {
    debug_assert!(cols.windows(2).all(|w| w[0].0 < w[1].0));
    let mut bytes = Vec::with_capacity(cols.iter().map(|c| c.2.len()).sum());
    let mut index = Vec::with_capacity(cols.len() * 3);
    let mut previous = 0u32;
    for &(stack, first, b) in &cols {
        varint::put(&mut index, u64::from(stack.0 - previous));
        previous = stack.0;
        varint::put(&mut index, u64::from(first));
        varint::put(&mut index, b.len() as u64);
        bytes.extend_from_slice(b);
    }
    Columns::Sealed {
        // A set holds far fewer than 2^32 columns.
        count: cols.len() as u32,
        index: index.into_boxed_slice(),
        bytes: bytes.into_boxed_slice(),
    }
}

/// The stack columns of a set.
#[derive(Debug, Clone)]
enum Columns {
    /// Growable columns: the set still takes profiles.
    Open(OpenColumns),
    /// `count` integer chunks packed in `bytes`, listed by `index` (in the
    /// order of the stacks' numbers; see [`pack`]).
    Sealed {
        count: u32,
        index: Box<[u8]>,
        bytes: Box<[u8]>,
    },
}

/// A read view of one stack column.
#[derive(Clone, Copy)]
enum Col<'a> {
    Open(&'a Values),
    /// An integer chunk's bytes.
    Packed(&'a [u8]),
}

impl<'a> Col<'a> {
    fn len(&self) -> usize {
        match self {
            Col::Open(v) => v.len(),
            // The chunk's header: its count.
            Col::Packed(b) => varint::read(b, &mut 0).map_or(0, |n| n as usize),
        }
    }

    fn iter(&self) -> ValuesIter<'a> {
        match self {
            Col::Open(v) => v.iter(),
            Col::Packed(b) => ValuesIter::Int(IntChunk::iter_bytes(b)),
        }
    }

    fn sum(&self) -> i64 {
        match self {
            Col::Open(v) => v.sum(),
            Col::Packed(b) => IntChunk::sum_bytes(b),
        }
    }
}

impl Columns {
    fn len(&self) -> usize {
        match self {
            Columns::Open(m) => m.len(),
            Columns::Sealed { count, .. } => *count as usize,
        }
    }

    /// Every column: `(stack, first, column)`, in no set order; a sealed
    /// set's stacks are numbers in `table`.
    fn iter<'a>(
        &'a self,
        table: &'a StackTable,
    ) -> Box<dyn Iterator<Item = (StackId, usize, Col<'a>)> + 'a> {
        match self {
            Columns::Open(m) => Box::new(
                m.iter()
                    .map(|(id, c)| (*id, usize::from(c.first), Col::Open(&c.values))),
            ),
            Columns::Sealed {
                count,
                index,
                bytes,
            } => {
                let ids = table.ids();
                let (mut at, mut start, mut stack) = (0usize, 0usize, 0u32);
                Box::new((0..*count).map_while(move |_| {
                    // The index is the one `pack` wrote.
                    let mut next = || varint::read(index, &mut at).ok();
                    let (d, first, n) = (next()?, next()?, next()?);
                    stack = stack.wrapping_add(d as u32);
                    let b = bytes.get(start..start + n as usize).unwrap_or(&[]);
                    start += n as usize;
                    // The set numbered its stacks in this table when it was
                    // sealed, and a table only grows.
                    let Some(id) = ids.get(StackRef(stack)) else {
                        debug_assert!(false, "stack number {stack} not in the set's table");
                        return None;
                    };
                    Some((id, first as usize, Col::Packed(b)))
                }))
            }
        }
    }
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
    stacks: Columns,
    /// The samples with sample labels, when any had them.
    tagged: Option<Box<Tagged>>,
    /// Where a sealed set's column index numbers its stacks.
    table: Arc<StackTable>,
}

impl ChunkSet {
    /// An empty set whose columns, once sealed, number their stacks in
    /// `table`.
    pub(crate) fn new(table: Arc<StackTable>) -> ChunkSet {
        ChunkSet {
            min_time: i64::MAX,
            max_time: i64::MIN,
            len: 0,
            timestamps: TimestampChunk::new(),
            durations: RleChunk::new(),
            periods: RleChunk::new(),
            totals: Values::new(Encoding::Int),
            stacks: Columns::Open(OpenColumns::default()),
            tagged: None,
            table,
        }
    }

    /// Every column: `(stack, first, column)`, in no set order.
    fn columns(&self) -> Box<dyn Iterator<Item = (StackId, usize, Col<'_>)> + '_> {
        self.stacks.iter(&self.table)
    }

    /// Packs the columns of a set of integer chunks into one buffer (see
    /// the [module docs](self)); sets of XOR chunks stay as they are. A
    /// later [`ChunkSet::push`] unpacks it again.
    pub(crate) fn seal(&mut self) {
        self.seal_rows();
        self.seal_columns();
        // The chunks grew by doubling; a sealed set takes no more values.
        self.timestamps.shrink_to_fit();
        self.durations.shrink_to_fit();
        self.periods.shrink_to_fit();
        self.totals.shrink_to_fit();
    }

    /// Packs the set's sample-label rows (see [`crate::tsdb::tagged`]); a
    /// later push unpacks them.
    pub(crate) fn seal_rows(&mut self) {
        if let Some(t) = &mut self.tagged {
            t.seal();
        }
    }

    /// The columns part of [`ChunkSet::seal`].
    fn seal_columns(&mut self) {
        if self.values_encoding() != Encoding::Int {
            return;
        }
        let Columns::Open(map) = &mut self.stacks else {
            return;
        };
        let cols = map.take();
        let Some(refs) = self.table.intern_all(cols.iter().map(|c| c.0)) else {
            // The table is full: the set stays open.
            *map = OpenColumns::from_unique(cols);
            return;
        };
        // The columns take no more values: each in its shorter form.
        let compact: Vec<Option<IntChunk>> = cols.iter().map(|(_, c)| c.values.compact()).collect();
        let mut packed: Vec<_> = refs
            .into_iter()
            .zip(cols.iter().zip(&compact))
            .map(|(r, ((_, c), k))| {
                let b = k.as_ref().map_or(c.values.bytes(), IntChunk::bytes);
                (r, c.first, b)
            })
            .collect();
        packed.sort_unstable_by_key(|c| c.0);
        self.stacks = pack(packed);
        if let Some(t) = self.totals.compact() {
            self.totals = Values::Int(t);
        }
    }

    /// Unpacks a sealed set's columns into growable ones.
    fn unseal(&mut self) {
        if let Columns::Sealed { .. } = self.stacks {
            let cols = self
                .columns()
                .filter_map(|(stack, first, col)| {
                    let Col::Packed(b) = col else { return None };
                    // The bytes are a chunk this set wrote or validated.
                    let values = IntChunk::from_bytes(b).ok()?;
                    Some((
                        stack,
                        StackColumn {
                            first: first as u16,
                            values: Values::Int(values),
                        },
                    ))
                })
                .collect();
            // A sealed set numbers each of its stacks once.
            self.stacks = Columns::Open(OpenColumns::from_unique(cols));
        }
    }

    /// Whether the set's columns are packed (see the [module docs](self)).
    pub fn is_sealed(&self) -> bool {
        matches!(self.stacks, Columns::Sealed { .. })
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

    /// The stacks of the set's columns and rows (a stack may come more
    /// than once).
    pub fn stack_ids(&self) -> impl Iterator<Item = StackId> + '_ {
        self.columns()
            .map(|(id, _, _)| id)
            .chain(self.tagged.iter().flat_map(|t| t.stacks()))
    }

    /// The sample label names the set's rows use.
    pub fn sample_label_names(&self) -> std::collections::BTreeSet<&str> {
        self.tagged.as_ref().map(|t| t.names()).unwrap_or_default()
    }

    /// Number of stack columns.
    pub fn num_stacks(&self) -> usize {
        self.stacks.len()
    }

    /// Number of (stack, profile) values stored, padding included.
    pub fn num_values(&self) -> usize {
        self.columns().map(|(_, _, c)| c.len()).sum()
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
        let mut cols: Vec<(StackId, usize, Col<'_>)> = self.columns().collect();
        cols.sort_unstable_by_key(|(id, _, _)| *id);
        let int = self.values_encoding() == Encoding::Int;
        let mut stacks = Vec::with_capacity(cols.len());
        // (stack index, profile, value) of the stacks written as rows.
        let mut rows: Vec<(u32, u32, i64)> = Vec::new();
        let mut few: Vec<(u32, i64)> = Vec::with_capacity(ROW_MAX);
        for (id, first, c) in cols {
            let stack_index = index(id);
            if int && Self::few_values(first, &c, &mut few) {
                rows.extend(few.iter().map(|(i, v)| (stack_index, *i, *v)));
                continue;
            }
            stacks.push(crate::proto::block::StackColumn {
                stack: Vec::new(),
                stack_index,
                first: first as u32,
                values: match c {
                    Col::Open(v) => v
                        .compact()
                        .map_or_else(|| v.bytes().to_vec(), |k| k.bytes().to_vec()),
                    Col::Packed(b) => b.to_vec(),
                },
            });
        }
        let mut msg = crate::proto::block::ChunkSet {
            min_time: self.min_time,
            max_time: self.max_time,
            len: self.len as u32,
            timestamps: self.timestamps.bytes().to_vec(),
            durations: self.durations.bytes().to_vec(),
            periods: self.periods.bytes().to_vec(),
            totals: self
                .totals
                .compact()
                .map_or_else(|| self.totals.bytes().to_vec(), |k| k.bytes().to_vec()),
            stacks,
            values_encoding: match self.values_encoding() {
                // Blocks written before integer chunks leave the field 0.
                Encoding::Xor => 0,
                e => u32::from(e.as_u8()),
            },
            ..Default::default()
        };
        if !rows.is_empty() {
            rows.sort_unstable();
            // A divisor of every value, at least 1 (no value is 0); 1 when
            // it is 2^63 (every value i64::MIN), which is no i64.
            let scale = match rows.iter().fold(0u64, |g, r| gcd(g, r.2.unsigned_abs())) {
                g if g > i64::MAX as u64 => 1,
                g => g,
            };
            let mut previous = 0;
            for (stack, profile, v) in rows {
                msg.row_stack.push(stack - previous);
                previous = stack;
                msg.row_profile.push(profile);
                msg.row_value.push(v / scale as i64);
            }
            msg.row_scale = scale;
        }
        if let Some(t) = &self.tagged {
            t.to_proto(&mut index, &mut msg);
        }
        msg
    }

    /// Whether column `c` (from profile `first`) has at most [`ROW_MAX`]
    /// non-zero values; if so they are in `out` as (profile, value).
    fn few_values(first: usize, c: &Col<'_>, out: &mut Vec<(u32, i64)>) -> bool {
        out.clear();
        for (i, v) in c.iter().enumerate() {
            if v != 0 {
                if out.len() == ROW_MAX {
                    return false;
                }
                // Profile indexes are below CHUNK_PROFILES.
                out.push(((first + i) as u32, v));
            }
        }
        true
    }

    /// Decodes and checks a set read from a block: every chunk decodes, the
    /// columns hold `len` values (stack columns at most `len - first`), the
    /// timestamps increase and lie in `[min_time, max_time]`; `stack` names
    /// each column's stack (from its id or its index, by block version).
    /// The set is sealed, numbering its stacks in `table`.
    pub fn from_proto(
        p: &crate::proto::block::ChunkSet,
        table: &Arc<StackTable>,
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
        // The stacks written as rows, as columns of their own.
        let (arena, built) = Self::rows_from_proto(p, enc, len, &stack)?;
        // Each column checked in place: (stack, first, values, bytes).
        let mut cols: Vec<(StackId, u16, u16, &[u8])> =
            Vec::with_capacity(p.stacks.len() + built.len());
        for c in &p.stacks {
            let id = stack(c)?;
            let n = match enc {
                Encoding::Xor => Values::from_bytes(enc, &c.values).map(|v| v.len()),
                _ => IntChunk::check_bytes(&c.values),
            }
            .map_err(|e| chunk("stack column", e))?;
            let first = c.first as usize;
            if first >= len || first + n > len || n == 0 {
                return Err(format!(
                    "stack column of {n} values from profile {first} in a set of {len}"
                ));
            }
            // Both at most `len` <= CHUNK_PROFILES.
            cols.push((id, first as u16, n as u16, &c.values));
        }
        cols.extend(
            built
                .into_iter()
                .map(|(id, first, n, r)| (id, first, n, &arena[r])),
        );
        let stacks = Self::columns_from_proto(enc, cols, table)?;
        // A row names its stack by index as a version 3 column does.
        let tagged = Tagged::from_proto(p, len, |i| {
            stack(&crate::proto::block::StackColumn {
                stack_index: i,
                ..Default::default()
            })
        })?
        .map(Box::new);
        let mut set = ChunkSet {
            min_time: p.min_time,
            max_time: p.max_time,
            len,
            timestamps,
            durations,
            periods,
            totals,
            stacks,
            tagged,
            table: Arc::clone(table),
        };
        // The columns are sealed already, or XOR. The sample-label rows
        // stay as read: a set read from a block is most often read once and
        // dropped; one the head keeps has them packed as it is stored
        // (`MemSeries::load_sets`).
        set.seal_columns();
        Ok(set)
    }

    /// The rows of a set read from a block (block format 6), checked, as
    /// one column per stack: the columns' chunks one after the other, and
    /// per column `(stack, first, values, its bytes in them)`.
    #[allow(clippy::type_complexity)]
    fn rows_from_proto(
        p: &crate::proto::block::ChunkSet,
        enc: Encoding,
        len: usize,
        stack: &impl Fn(&crate::proto::block::StackColumn) -> Result<StackId, String>,
    ) -> Result<(Vec<u8>, Vec<(StackId, u16, u16, std::ops::Range<usize>)>), String> {
        let n = p.row_stack.len();
        if n == 0 && p.row_profile.is_empty() && p.row_value.is_empty() && p.row_scale == 0 {
            return Ok(Default::default());
        }
        if enc != Encoding::Int {
            return Err("rows in a set of XOR chunks".into());
        }
        if p.row_profile.len() != n || p.row_value.len() != n || n == 0 {
            return Err("row columns of different lengths".into());
        }
        let scale = i64::try_from(p.row_scale)
            .ok()
            .filter(|s| *s >= 1)
            .ok_or_else(|| format!("row scale {}", p.row_scale))?;
        let (mut arena, mut out) = (Vec::with_capacity(4 * n), Vec::new());
        let mut values = [0i64; CHUNK_PROFILES];
        let mut i = 0;
        let mut stack_index = 0u32;
        while i < n {
            stack_index = stack_index
                .checked_add(p.row_stack[i])
                .ok_or("row stack index past 2^32")?;
            // This stack's rows: those up to the next non-zero difference
            // (so no stack has two runs).
            let end = (i + 1..n).find(|j| p.row_stack[*j] != 0).unwrap_or(n);
            let (first, last) = (p.row_profile[i] as usize, p.row_profile[end - 1] as usize);
            if last >= len || first > last || end - i > ROW_MAX {
                return Err(format!(
                    "{} rows of stack {stack_index} from profile {first} up to profile {last} \
                     in a set of {len}",
                    end - i
                ));
            }
            values[first..=last].fill(0);
            let mut previous = None;
            for j in i..end {
                let profile = p.row_profile[j] as usize;
                // Increasing, so each at most the last (< len).
                if previous.is_some_and(|q| q >= profile) || profile > last {
                    return Err(format!("rows of stack {stack_index} out of order"));
                }
                previous = Some(profile);
                values[profile] = p.row_value[j]
                    .checked_mul(scale)
                    .filter(|v| *v != 0)
                    .ok_or_else(|| format!("row value {} × {scale}", p.row_value[j]))?;
            }
            let id = stack(&crate::proto::block::StackColumn {
                stack_index,
                ..Default::default()
            })?;
            // Both below CHUNK_PROFILES.
            let count = (last - first + 1) as u16;
            let start = arena.len();
            IntChunk::encode_values_into(&values[first..=last], &mut arena);
            out.push((id, first as u16, count, start..arena.len()));
            i = end;
        }
        Ok((arena, out))
    }

    /// The columns of a set read from a block, checked: integer chunks
    /// packed straight from the message (no growable column on the way),
    /// XOR ones decoded (they are never packed). Errors when a stack has
    /// two columns.
    fn columns_from_proto(
        enc: Encoding,
        cols: Vec<(StackId, u16, u16, &[u8])>,
        table: &StackTable,
    ) -> Result<Columns, String> {
        let two = |id: StackId| format!("stack {} has two columns", id.0);
        let refs = match enc {
            Encoding::Int => table.intern_all(cols.iter().map(|c| c.0)),
            _ => None,
        };
        let Some(refs) = refs else {
            // XOR, or a full table: growable columns.
            let mut open = Vec::with_capacity(cols.len());
            for (id, first, _, b) in cols {
                // Checked by the caller.
                let values =
                    Values::from_bytes(enc, b).map_err(|e| format!("stack column: {e}"))?;
                open.push((id, StackColumn { first, values }));
            }
            return OpenColumns::from_unsorted(open)
                .map(Columns::Open)
                .map_err(two);
        };
        let mut order: Vec<(StackRef, usize)> = refs.into_iter().zip(0..).collect();
        order.sort_unstable_by_key(|o| o.0);
        if let Some(w) = order.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(two(cols[w[0].1].0));
        }
        Ok(pack(
            order
                .into_iter()
                .map(|(r, i)| (r, cols[i].1, cols[i].3))
                .collect(),
        ))
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
        for (stack, first, col) in self.columns() {
            for (j, v) in col.iter().enumerate() {
                let i = first + j;
                if i >= hi {
                    break;
                }
                if i >= lo && v != 0 {
                    out[i - lo].samples.push((stack, v));
                }
            }
        }
        for p in &mut out {
            p.samples.sort_unstable_by_key(|(k, _)| *k);
        }
        if let Some(t) = &self.tagged {
            for (p, tagged) in out.iter_mut().zip(t.profiles(lo, hi)) {
                p.tagged = tagged;
            }
        }
        out
    }

    /// Appends one profile (the caller has checked that its timestamp is
    /// after the set's last and that the set is not full).
    pub(crate) fn push(&mut self, p: &AppendProfile) {
        let idx = self.len;
        self.unseal();
        // Cannot fail: the caller checked the timestamp is after the set's
        // last one.
        if self.timestamps.append(p.timestamp).is_err() {
            unreachable!("timestamps of a chunk set increase");
        }
        self.durations.append(p.duration);
        self.periods.append(p.period);
        let enc = self.values_encoding();
        let Columns::Open(stacks) = &mut self.stacks else {
            unreachable!("unsealed above");
        };
        // idx < CHUNK_PROFILES.
        let total = stacks.push(idx as u16, &p.samples, enc);
        self.totals.append(total);
        if !p.tagged.is_empty() {
            self.tagged
                .get_or_insert_with(Box::default)
                .push(idx as u16, &p.tagged);
        }
        self.len += 1;
        self.min_time = self.min_time.min(p.timestamp);
        self.max_time = p.timestamp;
        if self.len >= CHUNK_PROFILES {
            self.seal();
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.timestamps.size_bytes()
            + self.durations.size_bytes()
            + self.periods.size_bytes()
            + self.totals.size_bytes()
            + match &self.stacks {
                Columns::Open(m) => m.size_bytes(),
                Columns::Sealed { index, bytes, .. } => index.len() + bytes.len(),
            }
            + self.tagged.as_ref().map_or(0, |t| t.bytes())
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

/// Chunk sets holding `profiles` (in time order, timestamps increasing),
/// numbering their stacks in `table` once sealed.
pub fn build_sets(profiles: &[AppendProfile], table: &Arc<StackTable>) -> Vec<ChunkSet> {
    let mut sets: Vec<ChunkSet> = Vec::new();
    for p in profiles {
        match sets.last_mut() {
            Some(s) if s.len < CHUNK_PROFILES && s.max_time < p.timestamp => s.push(p),
            _ => {
                let mut s = ChunkSet::new(Arc::clone(table));
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
    fn tags(p: &AppendProfile) -> Vec<&(SampleLabels, StackId, i64)> {
        let mut v: Vec<&(SampleLabels, StackId, i64)> =
            p.tagged.iter().filter(|s| s.2 != 0).collect();
        v.sort_unstable();
        v
    }
    norm(a) == norm(b) && tags(a) == tags(b)
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
        // A set holds a profile at its min and max time: only a range that
        // falls strictly between them needs the timestamps decoded.
        s.len > 0
            && s.min_time <= end
            && s.max_time >= start
            && (s.min_time >= start
                || s.max_time <= end
                || s.timestamps
                    .iter()
                    .take_while(|&t| t <= end)
                    .any(|t| t >= start))
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

/// The sets with a profile in `[start, end]`, each with its profile
/// indexes `[lo, hi)` there (`lo < hi`) and its timestamps.
fn sets_in(
    sets: &[ChunkSet],
    start: i64,
    end: i64,
) -> impl Iterator<Item = (&ChunkSet, usize, usize, Vec<i64>)> {
    sets.iter()
        .filter(move |s| s.len > 0 && s.max_time >= start && s.min_time <= end)
        .filter_map(move |s| {
            let (lo, hi, ts) = s.index_range(start, end);
            (hi > lo).then_some((s, lo, hi, ts))
        })
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
    for (s, lo, hi, ts) in sets_in(sets, start, end) {
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
        for (stack, first, col) in s.columns() {
            let end_idx = first + col.len();
            if end_idx <= lo || first >= hi {
                continue;
            }
            let mut sum: i64 = 0;
            if lo <= first && end_idx <= hi {
                sum = col.sum();
            } else {
                for (i, v) in col.iter().enumerate() {
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
                *acc.entry(stack).or_insert(0) += sum;
            }
        }
    }
    stats
}

/// Per profile `lo..hi` of `s`, its total over the samples `f` selects, or
/// `None` when `f` selects none of them (see [`crate::tsdb::tagged`]).
fn filtered_totals(s: &ChunkSet, lo: usize, hi: usize, f: &RowFilter) -> Vec<Option<i64>> {
    let rows = s
        .tagged
        .as_ref()
        .map_or(Cow::Borrowed(&[][..]), |t| t.rows_in(lo, hi));
    let matching = s.tagged.as_ref().map(|t| t.matching(f)).unwrap_or_default();
    if f.matches_empty() {
        let mut out: Vec<Option<i64>> = s.totals.iter().skip(lo).take(hi - lo).map(Some).collect();
        for r in rows.iter().filter(|r| !matching[r.tuple as usize]) {
            if let Some(Some(v)) = out.get_mut(usize::from(r.profile) - lo) {
                *v = v.wrapping_sub(r.value);
            }
        }
        out
    } else {
        let mut out: Vec<Option<i64>> = vec![None; hi - lo];
        for r in rows.iter().filter(|r| matching[r.tuple as usize]) {
            let v = &mut out[usize::from(r.profile) - lo];
            *v = Some(v.unwrap_or(0).wrapping_add(r.value));
        }
        out
    }
}

/// [`sets_totals`] over the samples `f` selects: profiles where it selects
/// none are left out.
pub fn sets_totals_where(
    sets: &[ChunkSet],
    start: i64,
    end: i64,
    f: &RowFilter,
) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for (s, lo, hi, ts) in sets_in(sets, start, end) {
        for (i, v) in filtered_totals(s, lo, hi, f).into_iter().enumerate() {
            if let Some(v) = v {
                out.push((ts[lo + i], v));
            }
        }
    }
    out
}

/// [`sets_first_in`] over the profiles where `f` selects a sample.
pub fn sets_first_in_where(sets: &[ChunkSet], start: i64, end: i64, f: &RowFilter) -> Option<i64> {
    sets_totals_where(sets, start, end, f).first().map(|t| t.0)
}

/// [`sets_merge_into`] over the samples `f` selects.
pub fn sets_merge_where(
    sets: &[ChunkSet],
    start: i64,
    end: i64,
    f: &RowFilter,
    acc: &mut FxHashMap<StackId, i64>,
) -> MergeStats {
    let mut stats = MergeStats::empty();
    for (s, lo, hi, ts) in sets_in(sets, start, end) {
        let rows = s
            .tagged
            .as_ref()
            .map_or(Cow::Borrowed(&[][..]), |t| t.rows_in(lo, hi));
        let matching = s.tagged.as_ref().map(|t| t.matching(f)).unwrap_or_default();
        if f.matches_empty() {
            stats.add(&sets_merge_into(std::slice::from_ref(s), start, end, acc));
            for r in rows.iter().filter(|r| !matching[r.tuple as usize]) {
                let e = acc.entry(r.stack).or_insert(0);
                *e = e.wrapping_sub(r.value);
            }
            continue;
        }
        let mut read = vec![false; hi - lo];
        for r in rows.iter().filter(|r| matching[r.tuple as usize]) {
            read[usize::from(r.profile) - lo] = true;
            let e = acc.entry(r.stack).or_insert(0);
            *e = e.wrapping_add(r.value);
        }
        let durations: Vec<i64> = s.durations.iter().skip(lo).take(hi - lo).collect();
        let mut last = None;
        for (i, _) in read.iter().enumerate().filter(|(_, r)| **r) {
            let d = durations.get(i).copied().unwrap_or(0);
            stats.profiles += 1;
            stats.min_time = stats.min_time.min(ts[lo + i]);
            stats.duration = stats.duration.saturating_add(d);
            stats.reads.push((ts[lo + i], d));
            last = Some(lo + i);
        }
        if let Some(p) = last.and_then(|i| s.periods.get(i)) {
            stats.period = p;
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stack(i: u8) -> StackId {
        StackId(uuid::Uuid::from_bytes([i; 16]))
    }

    /// A table already numbering other stacks, and the test's stacks in
    /// reverse, so that a sealed set's numbers follow neither its stacks'
    /// order nor start at 0.
    fn a_table() -> Arc<StackTable> {
        let t = StackTable::new();
        for k in 0..37u64 {
            t.intern(StackId(uuid::Uuid::from_u64_pair(k, !k))).unwrap();
        }
        for i in (0..=255u8).rev().step_by(3) {
            t.intern(stack(i)).unwrap();
        }
        Arc::new(t)
    }

    /// The sample labels of tag `t` (0: none).
    fn tag(t: u8) -> SampleLabels {
        let l = |n: &str, v: &str| (n.to_string(), v.to_string());
        match t {
            1 => vec![l("span_id", "a")],
            2 => vec![l("span_id", "b")],
            3 => vec![l("span_id", "a"), l("trace_id", "t")],
            _ => Vec::new(),
        }
    }

    /// Raw samples per profile: (stack, tag, value), each (stack, tag) once.
    type Raw = Vec<Vec<(u8, u8, i64)>>;

    /// Profiles 10 s apart; each holds samples of a random subset of 12
    /// stacks, with values that are multiples of a 10 ms period or
    /// arbitrary, some with sample labels (tags 1..=3).
    fn raw() -> impl Strategy<Value = Raw> {
        let value = prop_oneof![(1i64..6).prop_map(|k| k * 10_000_000), 1i64..100_000];
        prop::collection::vec(
            prop::collection::btree_map(
                (0u8..12, prop_oneof![4 => Just(0u8), 1 => 1u8..4]),
                value,
                0..8,
            ),
            1..300,
        )
        .prop_map(|ps| {
            ps.into_iter()
                .map(|m| m.into_iter().map(|((s, t), v)| (s, t, v)).collect())
                .collect()
        })
    }

    /// The profiles of `raw`: values summed per stack, and per (tag, stack).
    fn build(raw: &Raw) -> Vec<AppendProfile> {
        raw.iter()
            .enumerate()
            .map(|(i, samples)| {
                let mut by_stack: std::collections::BTreeMap<StackId, i64> = Default::default();
                let mut by_tag: std::collections::BTreeMap<(SampleLabels, StackId), i64> =
                    Default::default();
                for &(s, t, v) in samples {
                    *by_stack.entry(stack(s)).or_insert(0) += v;
                    if t != 0 {
                        *by_tag.entry((tag(t), stack(s))).or_insert(0) += v;
                    }
                }
                AppendProfile {
                    timestamp: 1_000 + i as i64 * 10_000,
                    duration: 10_000_000_000,
                    period: 10_000_000,
                    samples: by_stack.into_iter().collect(),
                    tagged: by_tag.into_iter().map(|((l, s), v)| (l, s, v)).collect(),
                }
            })
            .collect()
    }

    /// Sealing compacts: a full set's column of scattered values is packed,
    /// a column of one repeated value too, each column and the totals end
    /// in their shorter form, and the set answers as before; an open set's
    /// message has them compacted too.
    /// A set read from a block keeps its sample-label rows as read (it is
    /// most often dropped after one query); `seal_rows` packs them, as the
    /// head does for the sets it keeps.
    #[test]
    fn sets_read_from_a_block_pack_their_rows_when_kept() {
        let ps: Vec<AppendProfile> = (0..CHUNK_PROFILES as i64)
            .map(|i| {
                let tags: Vec<(SampleLabels, StackId, i64)> = (0..20u8)
                    .map(|k| {
                        let span = format!("{:016x}", (i << 8 | i64::from(k)) * 7919);
                        (vec![("span_id".to_string(), span)], stack(k), 3)
                    })
                    .collect();
                AppendProfile {
                    timestamp: 1_000 + i * 10_000,
                    samples: (0..20u8).map(|k| (stack(k), 3)).collect(),
                    tagged: tags,
                    ..AppendProfile::default()
                }
            })
            .collect();
        let sets = build_sets(&ps, &a_table());
        assert!(sets[0].is_sealed());
        let msg = sets[0].to_proto(|id| u32::from(id.0.as_bytes()[0]));
        let mut read =
            ChunkSet::from_proto(&msg, &a_table(), |c| Ok(stack(c.stack_index as u8))).unwrap();
        assert!(
            read.bytes() > sets[0].bytes() + 120 * 20 * 40,
            "rows as read"
        );
        read.seal_rows();
        // The columns read back may differ by a chunk form or two.
        assert!(read.bytes() < sets[0].bytes() + 1_000, "rows packed");
        assert_eq!(read.profiles(i64::MIN, i64::MAX), ps);
    }

    /// The sealed index takes a few bytes per column: 400 stacks, seen
    /// from various profiles on, in a table numbering others between them.
    #[test]
    fn a_sealed_index_takes_a_few_bytes_per_column() {
        let table = a_table();
        let id = |k: u32| StackId(uuid::Uuid::from_u64_pair(u64::from(k), 7));
        // Numbers the stacks far apart in the table (deltas of 2 bytes).
        table
            .intern_all((0..400u32).flat_map(|k| (0..200).map(move |j| id(k * 1000 + j))))
            .unwrap();
        let ps: Vec<AppendProfile> = (0..CHUNK_PROFILES as i64)
            .map(|i| AppendProfile {
                timestamp: 1_000 + i * 10_000,
                samples: (0..400u32)
                    .filter(|k| i64::from(*k % 100) <= i)
                    .map(|k| (id(k * 1000), 1 + i64::from(k) * i))
                    .collect(),
                ..AppendProfile::default()
            })
            .collect();
        let sets = build_sets(&ps, &table);
        assert_eq!(sets.len(), 1);
        let Columns::Sealed {
            count,
            index,
            bytes,
        } = &sets[0].stacks
        else {
            panic!("a full set is sealed");
        };
        assert_eq!(*count, 400);
        // Per column: 2 bytes of stack number, 1 of first profile, 1 or 2
        // of length (the count is the chunk's own header).
        assert!(index.len() <= 5 * 400, "index of {} bytes", index.len());
        assert!(index.len() >= 4 * 400, "index of {} bytes", index.len());
        assert_eq!(
            sets[0].columns().map(|(_, _, c)| c.len()).sum::<usize>(),
            (0..400).map(|k| CHUNK_PROFILES - k % 100).sum::<usize>()
        );
        assert!(bytes.len() > 400);
        assert_eq!(sets[0].profiles(i64::MIN, i64::MAX), ps);
    }

    /// A sealed set holds no spare capacity: its chunks take the bytes
    /// they are, where they had grown by doubling (durations and periods
    /// change every profile here, so their run lists grow too).
    #[test]
    fn a_sealed_set_keeps_no_spare_capacity() {
        let ps: Vec<AppendProfile> = (0..CHUNK_PROFILES as i64)
            .map(|i| AppendProfile {
                timestamp: 1_000 + i * 10_000 + i * i,
                duration: 10_000 + i,
                period: 1 + i % 3,
                samples: vec![(stack(1), 5 + i)],
                ..AppendProfile::default()
            })
            .collect();
        let mut set = ChunkSet::new(a_table());
        for p in &ps[..CHUNK_PROFILES - 1] {
            set.push(p);
        }
        let spare = |s: &ChunkSet| {
            s.timestamps.size_bytes() - s.timestamps.bytes().len() + s.durations.size_bytes()
                - s.durations.bytes().len()
                - s.durations.runs() * 16
                + s.periods.size_bytes()
                - s.periods.bytes().len()
                - s.periods.runs() * 16
                + s.totals.size_bytes()
                - s.totals.bytes().len()
        };
        assert!(
            spare(&set) > 100,
            "open chunks grow by doubling: {}",
            spare(&set)
        );
        set.push(&ps[CHUNK_PROFILES - 1]);
        assert!(set.is_sealed());
        assert_eq!(spare(&set), 0);
        assert_eq!(set.profiles(i64::MIN, i64::MAX), ps);
    }

    #[test]
    fn sealing_packs_columns_that_are_shorter_packed() {
        let ps: Vec<AppendProfile> = (0..CHUNK_PROFILES as i64)
            .map(|i| AppendProfile {
                timestamp: 1_000 + i * 10_000,
                duration: 10_000_000_000,
                period: 10_000_000,
                samples: vec![
                    // Scattered around 1000, absent from every seventh.
                    (stack(1), if i % 7 == 3 { 0 } else { 1_000 + (i * 37) % 41 }),
                    (stack(2), 5),
                ]
                .into_iter()
                .filter(|s| s.1 != 0)
                .collect(),
                tagged: vec![],
            })
            .collect();
        let mut open = ChunkSet::new(a_table());
        for p in &ps[..CHUNK_PROFILES - 1] {
            open.push(p);
        }
        let mut sealed = open.clone();
        sealed.push(&ps[CHUNK_PROFILES - 1]);
        assert!(sealed.is_sealed());
        let msg = sealed.to_proto(|id| u32::from(id.0.as_bytes()[0]));
        // The totals (5 when stack 1 is absent) are shorter as deltas.
        let totals = IntChunk::from_bytes(&msg.totals).unwrap();
        assert!(!totals.is_packed() && totals.compact().is_none());
        assert_eq!(msg.stacks.len(), 2);
        for c in &msg.stacks {
            assert!(IntChunk::from_bytes(&c.values).unwrap().is_packed());
        }
        assert_eq!(sealed.profiles(i64::MIN, i64::MAX), ps);
        // A set still open writes its columns compacted on the way out.
        assert!(!open.is_sealed());
        let msg = open.to_proto(|id| u32::from(id.0.as_bytes()[0]));
        for c in &msg.stacks {
            assert!(IntChunk::from_bytes(&c.values).unwrap().is_packed());
        }
    }

    /// A stack with at most [`ROW_MAX`] non-zero values in a set goes to
    /// the block as rows, one with more as a column; the set reads back
    /// the same, and damaged rows are refused with an error.
    #[test]
    fn stacks_with_few_values_are_written_as_rows() {
        // Stack k is in profiles i with i % (k + 1) == 0 (k = 0: all 120),
        // stack 9 once (at 7), stack 10 with 16 values, 11 with 17.
        let ps: Vec<AppendProfile> = (0..CHUNK_PROFILES as i64)
            .map(|i| {
                let mut samples: Vec<(StackId, i64)> = (0..9u8)
                    .filter(|k| i % (i64::from(*k) * 7 + 1) == 0)
                    .map(|k| (stack(k), 10_000_000 * (1 + (i + i64::from(k)) % 3)))
                    .collect();
                if i == 7 {
                    samples.push((stack(9), -30_000_000));
                }
                if i % 7 == 2 && i < 7 * 16 {
                    samples.push((stack(10), 20_000_000));
                }
                if i % 7 == 3 {
                    samples.push((stack(11), 40_000_000));
                }
                AppendProfile {
                    timestamp: 1_000 + i * 10_000,
                    duration: 10_000_000_000,
                    period: 10_000_000,
                    samples,
                    tagged: vec![],
                }
            })
            .collect();
        let set = &build_sets(&ps, &a_table())[0];
        let index = |id: StackId| u32::from(id.0.as_bytes()[0]) * 3;
        let msg = set.to_proto(index);
        let mut columns: Vec<u32> = msg.stacks.iter().map(|c| c.stack_index / 3).collect();
        columns.sort();
        // Every stack with more than ROW_MAX values has a column.
        let nonzero = |k: u8| {
            ps.iter()
                .filter(|p| p.samples.iter().any(|s| s.0 == stack(k)))
                .count()
        };
        let want: Vec<u32> = (0..12u8)
            .filter(|k| nonzero(*k) > ROW_MAX)
            .map(u32::from)
            .collect();
        assert_eq!(columns, want);
        assert!(want.contains(&11) && !want.contains(&10));
        let rows: usize = (0..12u8)
            .filter(|k| nonzero(*k) <= ROW_MAX)
            .map(nonzero)
            .sum();
        assert_eq!(msg.row_stack.len(), rows);
        assert_eq!(msg.row_scale, 10_000_000);
        let read = |m: &crate::proto::block::ChunkSet| {
            ChunkSet::from_proto(m, &a_table(), |c| Ok(stack((c.stack_index / 3) as u8)))
        };
        let back = read(&msg).unwrap();
        assert_eq!(back.profiles(i64::MIN, i64::MAX), ps);
        let mut acc = FxHashMap::default();
        sets_merge_into(
            std::slice::from_ref(&back),
            1_000,
            1_000 + 50 * 10_000,
            &mut acc,
        );
        acc.retain(|_, v| *v != 0);
        assert_eq!(acc, naive(&ps, 1_000, 1_000 + 50 * 10_000));
        // Damage, each refused.
        type Damage = fn(&mut crate::proto::block::ChunkSet);
        let cases: [(&str, Damage); 10] = [
            ("lengths", |m| {
                m.row_value.pop();
            }),
            ("scale", |m| m.row_scale = 0),
            ("scale", |m| m.row_scale = 1 << 63),
            ("× ", |m| m.row_value[0] = 0),
            ("× ", |m| m.row_value[0] = i64::MAX),
            ("profile 120", |m| *m.row_profile.last_mut().unwrap() = 120),
            ("out of order", |m| {
                let i = m.row_stack.iter().skip(1).position(|d| *d == 0).unwrap() + 1;
                m.row_profile[i] = m.row_profile[i - 1];
            }),
            // A row between a run's first and last, past its last.
            ("out of order", |m| {
                let i = m.row_stack.iter().skip(1).position(|d| *d == 0).unwrap() + 1;
                m.row_profile[i] = 200;
            }),
            // A run whose first profile comes after its last.
            ("rows of stack", |m| {
                let i = m.row_stack.iter().skip(1).position(|d| *d == 0).unwrap();
                m.row_profile[i] = 119;
            }),
            ("two columns", |m| {
                let c = m.stacks[0].stack_index;
                m.row_stack = vec![c];
                m.row_profile = vec![0];
                m.row_value = vec![1];
            }),
        ];
        for (want, damage) in cases {
            let mut m = msg.clone();
            damage(&mut m);
            match read(&m) {
                Err(e) => assert!(e.contains(want), "{want}: {e}"),
                Ok(_) => panic!("{want}: read"),
            }
        }
        let xor = ChunkSet::rows_from_proto(&msg, Encoding::Xor, CHUNK_PROFILES, &|_| Ok(stack(0)));
        assert!(xor.unwrap_err().contains("XOR"));
        // More than ROW_MAX rows of one stack.
        let mut m = msg.clone();
        m.stacks.retain(|c| c.stack_index != 11 * 3);
        m.row_stack = std::iter::once(11 * 3).chain([0; 16]).collect();
        m.row_profile = (0..17).collect();
        m.row_value = vec![1; 17];
        assert!(read(&m).unwrap_err().contains("17 rows"));
    }

    fn profiles() -> impl Strategy<Value = Vec<AppendProfile>> {
        raw().prop_map(|r| build(&r))
    }

    /// The filters the tests read through.
    fn filter(k: u8) -> RowFilter {
        use crate::model::MatchOp::*;
        let m = |op, n: &str, v: &str| crate::model::Matcher::new(op, n, v).unwrap();
        RowFilter::new(match k {
            0 => vec![m(Equal, "span_id", "a")],
            1 => vec![m(NotEqual, "span_id", "a")],
            2 => vec![m(Regex, "span_id", "a|b")],
            3 => vec![m(Equal, "span_id", "a"), m(Equal, "trace_id", "t")],
            _ => vec![m(Equal, "trace_id", "")],
        })
    }

    fn naive(ps: &[AppendProfile], start: i64, end: i64) -> FxHashMap<StackId, i64> {
        let mut acc = FxHashMap::default();
        for p in ps
            .iter()
            .filter(|p| p.timestamp >= start && p.timestamp <= end)
        {
            for &(s, v) in &p.samples {
                *acc.entry(s).or_insert(0) += v;
            }
        }
        acc.retain(|_, v| *v != 0);
        acc
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Reads through a row filter answer as the raw samples whose
        /// labels match, for open, sealed and decoded sets.
        #[test]
        fn filtered_reads_match_the_raw_samples(r in raw(), a in 0usize..300, b in 0usize..300, k in 0u8..5) {
            let ps = build(&r);
            let f = filter(k);
            let (lo, hi) = (a.min(b), a.max(b));
            let (start, end) = (1_000 + lo as i64 * 10_000, 1_000 + hi as i64 * 10_000);
            // The obvious answer, sample by sample.
            let mut want: FxHashMap<StackId, i64> = FxHashMap::default();
            let mut want_totals: Vec<(i64, i64)> = Vec::new();
            for (i, samples) in r.iter().enumerate() {
                let ts = 1_000 + i as i64 * 10_000;
                let picked: Vec<&(u8, u8, i64)> = samples.iter().filter(|(_, t, _)| f.matches(&tag(*t))).collect();
                // A filter that matches no label keeps every profile.
                if picked.is_empty() && !f.matches_empty() {
                    continue;
                }
                want_totals.push((ts, picked.iter().map(|x| x.2).sum()));
                if ts >= start && ts <= end {
                    for &&(s, _, v) in &picked {
                        *want.entry(stack(s)).or_insert(0) += v;
                    }
                }
            }
            want.retain(|_, v| *v != 0);
            let sets = build_sets(&ps, &a_table());
            let mut table: Vec<StackId> = Vec::new();
            let decoded: Vec<ChunkSet> = sets.iter().map(|s| {
                let msg = s.to_proto(|id| match table.iter().position(|t| *t == id) {
                    Some(i) => i as u32,
                    None => { table.push(id); (table.len() - 1) as u32 }
                });
                ChunkSet::from_proto(&msg, &a_table(), |c| Ok(table[c.stack_index as usize])).unwrap()
            }).collect();
            for sets in [&sets, &decoded] {
                let mut acc = FxHashMap::default();
                let stats = sets_merge_where(sets, start, end, &f, &mut acc);
                acc.retain(|_, v| *v != 0);
                prop_assert_eq!(&acc, &want);
                let in_range = want_totals.iter().filter(|t| t.0 >= start && t.0 <= end).count();
                prop_assert_eq!(stats.profiles, in_range);
                prop_assert_eq!(&sets_totals_where(sets, i64::MIN, i64::MAX, &f), &want_totals);
                prop_assert_eq!(
                    sets_first_in_where(sets, start, end, &f),
                    want_totals.iter().map(|t| t.0).find(|&t| t >= start && t <= end)
                );
            }
        }

        /// `sets_overlap` answers as a scan of every timestamp, for ranges
        /// that hold a set's ends, fall between its profiles or miss it.
        #[test]
        fn overlap_matches_a_scan(gaps in prop::collection::vec(1i64..50, 1..300), a in -20i64..8_000, len in 0i64..400) {
            let mut ts = 0;
            let ps: Vec<AppendProfile> = gaps.iter().map(|g| {
                ts += g;
                AppendProfile {
                    timestamp: ts,
                    duration: 1,
                    period: 1,
                    samples: vec![(stack(0), 1)],
                    tagged: Vec::new(),
                }
            }).collect();
            let sets = build_sets(&ps, &a_table());
            let (start, end) = (a, a + len);
            let want = ps.iter().any(|p| p.timestamp >= start && p.timestamp <= end);
            prop_assert_eq!(sets_overlap(&sets, start, end), want);
        }

        /// Full sets are sealed, others open; both answer like the input,
        /// and a set survives its block message either way.
        #[test]
        fn sealed_and_open_sets_answer_alike(ps in profiles(), a in 0usize..300, b in 0usize..300) {
            let sets = build_sets(&ps, &a_table());
            for s in &sets {
                prop_assert_eq!(s.is_sealed(), s.len() == CHUNK_PROFILES);
            }
            let (lo, hi) = (a.min(b), a.max(b));
            let (start, end) = (1_000 + lo as i64 * 10_000, 1_000 + hi as i64 * 10_000);
            let mut acc = FxHashMap::default();
            sets_merge_into(&sets, start, end, &mut acc);
            acc.retain(|_, v| *v != 0);
            prop_assert_eq!(&acc, &naive(&ps, start, end));
            let back: Vec<AppendProfile> = sets.iter().flat_map(|s| s.profiles(i64::MIN, i64::MAX)).collect();
            prop_assert_eq!(&back, &ps);
            let totals: Vec<i64> = sets_totals(&sets, i64::MIN, i64::MAX).iter().map(|t| t.1).collect();
            let want: Vec<i64> = ps.iter().map(|p| p.samples.iter().map(|s| s.1).sum()).collect();
            prop_assert_eq!(totals, want);
            // Through the block message (ids as indexes into a table).
            let mut table: Vec<StackId> = Vec::new();
            for s in &sets {
                let msg = s.to_proto(|id| match table.iter().position(|t| *t == id) {
                    Some(i) => i as u32,
                    None => { table.push(id); (table.len() - 1) as u32 }
                });
                let read = ChunkSet::from_proto(&msg, &a_table(), |c| Ok(table[c.stack_index as usize])).unwrap();
                prop_assert!(read.is_sealed());
                prop_assert_eq!(read.profiles(i64::MIN, i64::MAX), s.profiles(i64::MIN, i64::MAX));
                prop_assert_eq!(read.num_values(), s.num_values());
                // A stack with two columns, or a column that does not
                // decode, is refused.
                if let Some(c) = msg.stacks.first().cloned() {
                    let mut twice = msg.clone();
                    twice.stacks.push(c);
                    prop_assert!(ChunkSet::from_proto(&twice, &a_table(), |c| Ok(table[c.stack_index as usize])).is_err());
                    let mut bad = msg.clone();
                    bad.stacks[0].values.push(0xff);
                    prop_assert!(ChunkSet::from_proto(&bad, &a_table(), |c| Ok(table[c.stack_index as usize])).is_err());
                }
            }
        }

        /// A set read from a block (sealed) takes more profiles: it is
        /// unpacked and ends as if built directly.
        #[test]
        fn a_sealed_partial_set_takes_more_profiles(ps in profiles(), cut in 1usize..119) {
            let cut = cut.min(ps.len());
            let first = &ps[..cut.min(CHUNK_PROFILES - 1)];
            let rest = &ps[first.len()..ps.len().min(CHUNK_PROFILES)];
            let built = build_sets(first, &a_table());
            let msg = built[0].to_proto(|id| u32::from(id.0.as_bytes()[0]));
            let mut set = ChunkSet::from_proto(&msg, &a_table(), |c| Ok(stack(c.stack_index as u8))).unwrap();
            prop_assert!(set.is_sealed());
            for p in rest {
                set.push(p);
            }
            let direct = build_sets(&ps[..first.len() + rest.len()], &a_table());
            prop_assert_eq!(set.profiles(i64::MIN, i64::MAX), direct[0].profiles(i64::MIN, i64::MAX));
            if !rest.is_empty() {
                prop_assert_eq!(set.is_sealed(), set.len() == CHUNK_PROFILES);
            }
        }
    }
}

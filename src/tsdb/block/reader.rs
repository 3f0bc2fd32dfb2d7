//! Opening and reading a block file (see the module docs of
//! [`crate::tsdb::block`]).

use super::section::unframe;
use super::symbols::BlockSymbols;
use super::{
    BlockError, FOOTER_LEN, FOOTER_MAGIC, FRAMED_VERSION, MAGIC, MAGIC_PREFIX, MAX_BLOB_BYTES,
    MAX_INDEX_BYTES, MAX_SYMBOLS_BYTES, MIN_VERSION,
};
use crate::model::labels::{Labels, METRIC_NAME};
use crate::model::profile_type::ProfileType;
use crate::model::Matcher;
use crate::model::StackId;
use crate::proto::block as pb;
use crate::tsdb::chunkenc::TimestampChunk;
use crate::tsdb::chunkset::{sets_hold, sets_overlap, AppendProfile, ChunkSet};
use crate::tsdb::index::labels::{self, Collect, Plan, Selection};
use crate::tsdb::index::{select, MemPostings, SeriesRef};
use crate::tsdb::stacktable::StackTable;
use prost::Message;
use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// What the index says about one series.
#[derive(Debug)]
struct SeriesMeta {
    labels: Labels,
    profile_type: ProfileType,
    pprof_labels: Vec<(String, String)>,
    min_time: i64,
    max_time: i64,
    offset: u64,
    len: u32,
    crc32: u32,
}

/// Where a block's bytes are read from: its file, or an object in a
/// bucket (a querier's blocks, through its cache). Reads are positioned
/// and may run concurrently.
pub trait BlockSource: Send + Sync + std::fmt::Debug {
    /// Bytes in the block.
    fn size(&self) -> std::io::Result<u64>;
    /// `len` bytes from `offset`, all of them (a short read is an error).
    fn read_at(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>>;
}

impl BlockSource for File {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_at(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

/// An open block: its index in memory, its chunks in its file (or
/// another [`BlockSource`]).
#[derive(Debug)]
pub struct Block {
    /// The file, or the name a remote block is known by in errors.
    path: PathBuf,
    file: Box<dyn BlockSource>,
    min_time: i64,
    max_time: i64,
    series: Vec<SeriesMeta>,
    postings: MemPostings,
    /// The least and greatest of every series' `min_time` and `max_time`
    /// (`(i64::MAX, i64::MIN)` without series): when they lie in a query's
    /// range, so does every series' first profile.
    series_bounds: (i64, i64),
    /// The symbols section: offset, length, CRC32.
    symbols_at: (u64, u64, u32),
    /// The decoded symbols section, once a query needed it.
    symbols: parking_lot::Mutex<Option<Arc<BlockSymbols>>>,
    profiles: u64,
    bytes: u64,
    /// The index section's CRC32 (from the footer).
    index_crc32: u32,
    damaged: AtomicU64,
    /// The format version (2, 3 or 4).
    version: u8,
    /// The sample label names its chunk sets use (sorted).
    sample_labels: Vec<String>,
    /// Where the sets read from the block number their stacks.
    stack_table: Arc<StackTable>,
}

fn read_at(
    file: &dyn BlockSource,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, BlockError> {
    file.read_at(offset, len).map_err(|source| BlockError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Block {
    /// Opens a block file: checks its magic, footer and index, and builds
    /// the postings of its series.
    pub fn open(path: &Path) -> Result<Block, BlockError> {
        let file = File::open(path).map_err(|source| BlockError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Block::open_source(path, Box::new(file))
    }

    /// Opens the block `file` holds, known as `path` in errors (the same
    /// checks as [`Block::open`]).
    pub fn open_source(path: &Path, file: Box<dyn BlockSource>) -> Result<Block, BlockError> {
        let corrupt = |reason: String| BlockError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = file.size().map_err(|source| BlockError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if bytes < (MAGIC.len() + FOOTER_LEN) as u64 {
            return Err(corrupt(format!("{bytes} bytes is too short for a block")));
        }
        let magic = read_at(file.as_ref(), path, 0, MAGIC.len() as u64)?;
        let version = magic[7];
        if !magic.starts_with(MAGIC_PREFIX) || !(MIN_VERSION..=MAGIC[7]).contains(&version) {
            if magic.starts_with(MAGIC_PREFIX) && magic[7] < MIN_VERSION {
                return Err(BlockError::Version {
                    path: path.to_path_buf(),
                    version: magic[7],
                    hint: "it was written by an earlier profstore whose blocks need that \
                           node's meta store; move the data directory aside and start with \
                           an empty one (the earlier version still reads the old one)",
                });
            }
            if magic.starts_with(MAGIC_PREFIX) {
                return Err(BlockError::Version {
                    path: path.to_path_buf(),
                    version: magic[7],
                    hint: "it was written by a newer profstore; run that version",
                });
            }
            return Err(corrupt("bad magic (not a block)".into()));
        }
        let footer = read_at(
            file.as_ref(),
            path,
            bytes - FOOTER_LEN as u64,
            FOOTER_LEN as u64,
        )?;
        let word = |i: usize| -> [u8; 8] {
            let mut w = [0u8; 8];
            w.copy_from_slice(&footer[i..i + 8]);
            w
        };
        let half = |i: usize| -> u32 {
            let mut w = [0u8; 4];
            w.copy_from_slice(&footer[i..i + 4]);
            u32::from_le_bytes(w)
        };
        if word(24) != *FOOTER_MAGIC {
            return Err(corrupt("bad footer magic (the file is truncated?)".into()));
        }
        if crc32fast::hash(&footer[..20]) != half(20) {
            return Err(corrupt("footer CRC32 mismatch".into()));
        }
        let index_offset = u64::from_le_bytes(word(0));
        let index_len = u64::from_le_bytes(word(8));
        let data_end = bytes - FOOTER_LEN as u64;
        if index_len > MAX_INDEX_BYTES
            || index_offset < MAGIC.len() as u64
            || index_offset.checked_add(index_len) != Some(data_end)
        {
            return Err(corrupt(format!(
                "index at {index_offset}+{index_len} does not end where the footer starts ({data_end})"
            )));
        }
        let index_bytes = read_at(file.as_ref(), path, index_offset, index_len)?;
        if crc32fast::hash(&index_bytes) != half(16) {
            return Err(corrupt("index CRC32 mismatch".into()));
        }
        let index_bytes = if version >= FRAMED_VERSION {
            unframe(&index_bytes, MAX_INDEX_BYTES as usize)
                .map_err(|e| corrupt(format!("index: {e}")))?
        } else {
            Cow::Borrowed(index_bytes.as_slice())
        };
        let index = pb::BlockIndex::decode(index_bytes.as_ref())
            .map_err(|e| corrupt(format!("undecodable index: {e}")))?;
        drop(index_bytes);
        if index.symbols_offset < MAGIC.len() as u64
            || index.symbols_offset.checked_add(index.symbols_len) > Some(index_offset)
        {
            return Err(corrupt("symbols section out of bounds".into()));
        }
        let mut series = Vec::with_capacity(index.series.len());
        let mut postings = MemPostings::new();
        let mut series_bounds = (i64::MAX, i64::MIN);
        for (i, e) in index.series.into_iter().enumerate() {
            let mut labels = Labels::new();
            for l in e.labels {
                labels.set(l.name, l.value);
            }
            let name = labels
                .get(METRIC_NAME)
                .ok_or_else(|| corrupt(format!("series {i} has no {METRIC_NAME}")))?;
            let profile_type =
                ProfileType::parse(name).map_err(|err| corrupt(format!("series {i}: {err}")))?;
            if e.chunks_len > MAX_BLOB_BYTES
                || e.chunks_offset < MAGIC.len() as u64
                || e.chunks_offset.checked_add(u64::from(e.chunks_len)) > Some(index.symbols_offset)
            {
                return Err(corrupt(format!("series {i}: chunks out of bounds")));
            }
            if series
                .last()
                .is_some_and(|p: &SeriesMeta| p.labels >= labels)
            {
                return Err(corrupt(format!("series {i} is out of order")));
            }
            let Ok(sref) = u32::try_from(i) else {
                return Err(corrupt("more than 2^32 series".into()));
            };
            postings.add(SeriesRef(sref), &labels);
            series_bounds.0 = series_bounds.0.min(e.min_time).min(e.max_time);
            series_bounds.1 = series_bounds.1.max(e.min_time).max(e.max_time);
            series.push(SeriesMeta {
                labels,
                profile_type,
                pprof_labels: e
                    .pprof_labels
                    .into_iter()
                    .map(|p| (p.series_name, p.pprof_name))
                    .collect(),
                min_time: e.min_time,
                max_time: e.max_time,
                offset: e.chunks_offset,
                len: e.chunks_len,
                crc32: e.chunks_crc32,
            });
        }
        Ok(Block {
            path: path.to_path_buf(),
            file,
            min_time: index.min_time,
            max_time: index.max_time,
            series,
            postings,
            series_bounds,
            symbols_at: (index.symbols_offset, index.symbols_len, index.symbols_crc32),
            symbols: parking_lot::Mutex::new(None),
            profiles: index.profiles,
            bytes,
            index_crc32: half(16),
            damaged: AtomicU64::new(0),
            version,
            sample_labels: index.sample_labels.clone(),
            stack_table: Arc::default(),
        })
    }

    /// The sample label names its chunk sets use, sorted.
    pub fn sample_label_names(&self) -> &[String] {
        &self.sample_labels
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// First ms of the block's range.
    pub fn min_time(&self) -> i64 {
        self.min_time
    }

    /// First ms after the block's range (exclusive end).
    pub fn max_time(&self) -> i64 {
        self.max_time
    }

    /// Series in the block.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// Profiles in the block (summed over series).
    pub fn num_profiles(&self) -> u64 {
        self.profiles
    }

    /// Bytes of the file.
    pub fn size_bytes(&self) -> u64 {
        self.bytes
    }

    /// What tells this block's bytes from another version of the same
    /// range (a compaction's rewrite): its size and its index's CRC32.
    pub fn fingerprint(&self) -> (u64, u32) {
        (self.bytes, self.index_crc32)
    }

    /// `len` bytes from `offset` of the file, as opened (a file renamed
    /// over since is not read).
    pub fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, BlockError> {
        read_at(self.file.as_ref(), &self.path, offset, len)
    }

    /// Approximate bytes of memory the open block holds (its index, and its
    /// symbols once a query read them).
    pub fn memory_bytes(&self) -> usize {
        self.symbols.lock().as_ref().map_or(0, |s| s.memory_bytes())
            + self.stack_table.bytes()
            + self.postings.size_bytes()
            + self
                .series
                .iter()
                .map(|s| {
                    std::mem::size_of::<SeriesMeta>()
                        + s.labels
                            .iter()
                            .map(|l| l.name.len() + l.value.len() + 48)
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    /// Chunk reads that found damage since the block was opened.
    pub fn damaged_reads(&self) -> u64 {
        self.damaged.load(Ordering::Relaxed)
    }

    /// True when the block may hold profiles in `[start, end]`.
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        self.min_time <= end && self.max_time > start
    }

    /// The series matching `matchers` (all when empty) whose time range
    /// touches `[start, end]`, in label order.
    pub fn select(
        self: &Arc<Self>,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Vec<BlockSeries> {
        let bitmap = if matchers.is_empty() {
            self.postings.all().clone()
        } else {
            select(&self.postings, matchers)
        };
        bitmap
            .iter()
            .map(|r| r as usize)
            .filter(|&i| {
                let s = &self.series[i];
                s.min_time <= end && s.max_time >= start
            })
            .map(|idx| BlockSeries {
                block: self.clone(),
                idx,
                sets: OnceLock::new(),
            })
            .collect()
    }

    /// True when series `idx` has a profile in `[start, end]`: the series
    /// [`Block::select`] returns and [`BlockSeries::overlaps`] keeps.
    fn has_profile_in(self: &Arc<Self>, idx: usize, start: i64, end: i64) -> bool {
        let s = &self.series[idx];
        if s.min_time > end || s.max_time < start {
            return false;
        }
        BlockSeries {
            block: self.clone(),
            idx,
            sets: OnceLock::new(),
        }
        .overlaps(start, end)
    }

    /// True when every series has a profile in `[start, end]`: each one's
    /// first profile lies in it.
    fn covered_by(&self, start: i64, end: i64) -> bool {
        self.series_bounds.0 >= start && self.series_bounds.1 <= end
    }

    /// Label names of the series matching `matchers` (all when empty) with
    /// a profile in `[start, end]`, sorted: from the postings when every
    /// series has a profile in the range and the selection is large enough
    /// ([`crate::tsdb::index::labels`]), otherwise from the labels of the
    /// selected series with a profile in the range.
    pub fn label_names(
        self: &Arc<Self>,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Vec<String> {
        let sel = Selection::new(&self.postings, matchers);
        if sel.is_empty(&self.postings) {
            return Vec::new();
        }
        if labels::plan_names(&self.postings, &sel) == Plan::Postings && self.covered_by(start, end)
        {
            return labels::names_from_postings(&self.postings, &sel);
        }
        let mut out = Collect::default();
        for r in sel.into_bitmap(&self.postings).iter() {
            if self.has_profile_in(r as usize, start, end) {
                out.names(&self.series[r as usize].labels);
            }
        }
        out.into_vec()
    }

    /// Values of label `name` over the series [`Block::label_names`] reads,
    /// sorted, found the same way.
    pub fn label_values(
        self: &Arc<Self>,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Vec<String> {
        if self.postings.values(name).is_none() {
            return Vec::new();
        }
        let sel = Selection::new(&self.postings, matchers);
        if sel.is_empty(&self.postings) {
            return Vec::new();
        }
        if labels::plan_values(&self.postings, name, &sel) == Plan::Postings
            && self.covered_by(start, end)
        {
            return labels::values_from_postings(&self.postings, name, &sel);
        }
        let mut out = Collect::default();
        for r in sel.into_bitmap(&self.postings).iter() {
            if self.has_profile_in(r as usize, start, end) {
                out.value(&self.series[r as usize].labels, name);
            }
        }
        out.into_vec()
    }

    /// The block's symbols, read and checked at the first call and kept
    /// while the block is open.
    pub fn symbols(&self) -> Result<Arc<BlockSymbols>, BlockError> {
        let mut cached = self.symbols.lock();
        if let Some(s) = &*cached {
            return Ok(s.clone());
        }
        let corrupt = |reason: String| BlockError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let (offset, len, crc) = self.symbols_at;
        let b = read_at(self.file.as_ref(), &self.path, offset, len)?;
        if crc32fast::hash(&b) != crc {
            return Err(corrupt("symbols section CRC32 mismatch".into()));
        }
        let b = self
            .unframe(&b, MAX_SYMBOLS_BYTES as usize)
            .map_err(|e| corrupt(format!("symbols section: {e}")))?;
        let s = Arc::new(BlockSymbols::decode(&b).map_err(corrupt)?);
        *cached = Some(s.clone());
        Ok(s)
    }

    /// The distinct stacks the block references.
    pub fn stack_ids(&self) -> Result<Vec<StackId>, BlockError> {
        Ok(self.symbols()?.stack_ids().collect())
    }

    /// True when the block holds a profile equal to `p` (timestamp,
    /// duration, period, samples) in the series `labels`. Damaged chunks
    /// hold nothing.
    pub fn holds(&self, labels: &Labels, p: &AppendProfile) -> bool {
        if p.timestamp < self.min_time || p.timestamp >= self.max_time {
            return false;
        }
        let Ok(idx) = self.series.binary_search_by(|s| s.labels.cmp(labels)) else {
            return false;
        };
        let s = &self.series[idx];
        let ts = p.timestamp;
        if ts < s.min_time || ts > s.max_time {
            return false;
        }
        let Ok(chunks) = self.read_chunks(idx) else {
            return false;
        };
        let Ok(symbols) = self.column_symbols() else {
            return false;
        };
        // Only a set with a profile at `ts` is decoded whole: most late
        // profiles are new, and their timestamp is in no set.
        chunks
            .sets
            .iter()
            .filter(|c| c.min_time <= ts && ts <= c.max_time)
            .filter(|c| {
                TimestampChunk::from_bytes(&c.timestamps).is_ok_and(|t| t.iter().any(|t| t == ts))
            })
            .filter_map(|c| {
                ChunkSet::from_proto(c, &self.stack_table, |col| {
                    column_stack(symbols.as_deref(), col)
                })
                .ok()
            })
            .any(|set| sets_hold(std::slice::from_ref(&set), p))
    }

    /// Bytes of the symbols section on disk.
    pub fn symbols_bytes(&self) -> u64 {
        self.symbols_at.1
    }

    /// What the columns of this block's blobs need to name their stacks:
    /// the symbols section (version 3), or nothing (version 2: ids).
    fn column_symbols(&self) -> Result<Option<Arc<BlockSymbols>>, String> {
        if self.version < 3 {
            return Ok(None);
        }
        self.symbols().map(Some).map_err(|e| e.to_string())
    }

    /// A section as stored: the message itself before version 4, else
    /// unframed ([`super::section`]) within `max` bytes.
    fn unframe<'a>(&self, stored: &'a [u8], max: usize) -> Result<Cow<'a, [u8]>, String> {
        if self.version >= FRAMED_VERSION {
            unframe(stored, max)
        } else {
            Ok(Cow::Borrowed(stored))
        }
    }

    /// Reads series `idx`'s blob, checks its CRC32, decompresses and
    /// decodes it.
    fn read_chunks(&self, idx: usize) -> Result<pb::SeriesChunks, String> {
        let s = &self.series[idx];
        let b = read_at(self.file.as_ref(), &self.path, s.offset, u64::from(s.len))
            .map_err(|e| e.to_string())?;
        if crc32fast::hash(&b) != s.crc32 {
            return Err("chunk CRC32 mismatch".into());
        }
        let b = self.unframe(&b, MAX_BLOB_BYTES as usize)?;
        pb::SeriesChunks::decode(b.as_ref()).map_err(|e| format!("undecodable: {e}"))
    }

    /// Reads and checks series `idx`'s chunk sets.
    fn read_sets(&self, idx: usize) -> Result<Vec<ChunkSet>, String> {
        let chunks = self.read_chunks(idx)?;
        let symbols = self.column_symbols()?;
        let mut sets: Vec<ChunkSet> = Vec::with_capacity(chunks.sets.len());
        for c in &chunks.sets {
            let set = ChunkSet::from_proto(c, &self.stack_table, |col| {
                column_stack(symbols.as_deref(), col)
            })?;
            if let Some(prev) = sets.last() {
                if set.time_range().0 < prev.time_range().1 {
                    return Err("chunk sets out of time order".into());
                }
            }
            sets.push(set);
        }
        Ok(sets)
    }

    /// Whether series `idx` has a profile in `[start, end]`, from its
    /// sets' time ranges: only a set the range falls strictly inside has
    /// its timestamps decoded, and no stack column is (a query over the
    /// newest hour of a day-long block would otherwise decode and check
    /// every column of the day to select the series). `None` when the
    /// chunks do not read or disagree with their time ranges.
    fn series_overlaps(&self, idx: usize, start: i64, end: i64) -> Option<bool> {
        let chunks = self.read_chunks(idx).ok()?;
        for c in &chunks.sets {
            if c.min_time > end || c.max_time < start {
                continue;
            }
            // A set's first and last profiles are at its min and max time.
            if c.min_time >= start || c.max_time <= end {
                return Some(true);
            }
            let ts = TimestampChunk::from_bytes(&c.timestamps).ok()?;
            if ts.iter().next() != Some(c.min_time) || ts.last() != Some(c.max_time) {
                return None;
            }
            if ts.iter().take_while(|&t| t <= end).any(|t| t >= start) {
                return Some(true);
            }
        }
        Some(false)
    }
}

/// The stack a block column names: by its 16-byte id (version 2, when
/// `symbols` is `None`) or by its index in the symbols' stacks table.
fn column_stack(symbols: Option<&BlockSymbols>, c: &pb::StackColumn) -> Result<StackId, String> {
    match symbols {
        None => uuid::Uuid::from_slice(&c.stack)
            .map(StackId)
            .map_err(|_| format!("stack id of {} bytes", c.stack.len())),
        Some(s) => s
            .stacks()
            .get(c.stack_index as usize)
            .map(|(id, _)| *id)
            .ok_or_else(|| format!("stack index {} of {} stacks", c.stack_index, s.num_stacks())),
    }
}

/// One series of an open block; its chunks are read at first use and kept
/// for the life of the handle (one query).
#[derive(Debug)]
pub struct BlockSeries {
    block: Arc<Block>,
    idx: usize,
    sets: OnceLock<Vec<ChunkSet>>,
}

impl BlockSeries {
    fn meta(&self) -> &SeriesMeta {
        &self.block.series[self.idx]
    }

    /// The series' labels.
    pub fn labels(&self) -> &Labels {
        &self.meta().labels
    }

    /// The series' profile type.
    pub fn profile_type(&self) -> &ProfileType {
        &self.meta().profile_type
    }

    /// Series label name → pprof label name.
    pub fn pprof_labels(&self) -> &[(String, String)] {
        &self.meta().pprof_labels
    }

    /// `(min, max)` timestamps of the series in the block.
    pub fn time_range(&self) -> (i64, i64) {
        (self.meta().min_time, self.meta().max_time)
    }

    /// True when the series has a profile in `[start, end]`; reads its
    /// chunks only when the range lies strictly between its first and last
    /// profiles.
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        let (lo, hi) = self.time_range();
        if lo > end || hi < start {
            return false;
        }
        // The first and last profiles are in range: no need to read chunks.
        if (start..=end).contains(&lo) || (start..=end).contains(&hi) {
            return true;
        }
        if let Some(sets) = self.sets.get() {
            return sets_overlap(sets, start, end);
        }
        // Chunks that do not read are read as `sets` does, which logs and
        // counts the damage.
        self.block
            .series_overlaps(self.idx, start, end)
            .unwrap_or_else(|| sets_overlap(self.sets(), start, end))
    }

    /// The series' chunk sets (empty when its chunks are damaged; the
    /// damage is logged and counted).
    pub fn sets(&self) -> &[ChunkSet] {
        self.sets.get_or_init(|| {
            self.block.read_sets(self.idx).unwrap_or_else(|reason| {
                self.block.damaged.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    block = %self.block.path.display(),
                    series = %self.labels(),
                    "damaged chunks skipped: {reason}"
                );
                Vec::new()
            })
        })
    }
}

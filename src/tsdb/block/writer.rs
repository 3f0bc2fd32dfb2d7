//! Writing a block file (see the module docs of [`crate::tsdb::block`]).

use super::section::Framer;
use super::{BlockError, FOOTER_LEN, FOOTER_MAGIC, MAGIC};
use crate::model::labels::Labels;
use crate::model::{StackId, SymbolSource};
use crate::proto::block as pb;
use crate::tsdb::chunkset::ChunkSet;
use prost::Message;
use rustc_hash::FxHashMap;
use std::io::Write;
use std::path::Path;

/// One series to write: its labels, pprof label names and chunk sets (in
/// time order, none empty).
#[derive(Debug)]
pub struct BlockSeriesData {
    /// The full label set.
    pub labels: Labels,
    /// Series label name → pprof label name.
    pub pprof_labels: Vec<(String, String)>,
    /// The series' profiles in the block.
    pub sets: Vec<ChunkSet>,
}

/// What [`write_block`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WrittenBlock {
    /// Series written.
    pub series: usize,
    /// Profiles written (summed over series).
    pub profiles: u64,
    /// (stack, profile) values written, padding included.
    pub samples: u64,
    /// Distinct stacks.
    pub stacks: usize,
    /// Bytes of the symbols section as stored.
    pub symbol_bytes: u64,
    /// Bytes of the series blobs and the symbols section before their
    /// compression.
    pub plain_bytes: u64,
    /// Bytes of the file.
    pub bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlockError + '_ {
    move |source| BlockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a block of `series` (sorted by labels; series without sets are
/// skipped) covering `[min_time, max_time)` to `path`, atomically: a
/// temporary file is written and synced, then renamed, then the directory is
/// synced. The stacks the chunks refer to, and what they reach, are read
/// from `symbols` into the block's symbols section. On an error (a full
/// disk) the temporary file is removed, and `path` is as it was.
pub fn write_block(
    path: &Path,
    min_time: i64,
    max_time: i64,
    series: impl IntoIterator<Item = BlockSeriesData>,
    symbols: &dyn SymbolSource,
) -> Result<WrittenBlock, BlockError> {
    write_block_framed(path, min_time, max_time, series, symbols, Framer::new())
}

/// [`write_block`] with no section compressed (each still framed, as
/// plain): for a block read once and deleted, such as the head's
/// temporary block of a live export, where compressing costs more than
/// the bytes it saves.
pub fn write_block_uncompressed(
    path: &Path,
    min_time: i64,
    max_time: i64,
    series: impl IntoIterator<Item = BlockSeriesData>,
    symbols: &dyn SymbolSource,
) -> Result<WrittenBlock, BlockError> {
    write_block_framed(path, min_time, max_time, series, symbols, Framer::plain())
}

fn write_block_framed(
    path: &Path,
    min_time: i64,
    max_time: i64,
    series: impl IntoIterator<Item = BlockSeriesData>,
    symbols: &dyn SymbolSource,
    framer: Framer,
) -> Result<WrittenBlock, BlockError> {
    let tmp = path.with_extension("tmp");
    let result = write_block_via(&tmp, path, min_time, max_time, series, symbols, framer);
    if result.is_err() {
        // Best effort: an unfinished block is also removed at open.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_block_via(
    tmp: &Path,
    path: &Path,
    min_time: i64,
    max_time: i64,
    series: impl IntoIterator<Item = BlockSeriesData>,
    symbols: &dyn SymbolSource,
    mut framer: Framer,
) -> Result<WrittenBlock, BlockError> {
    let tmp = tmp.to_path_buf();
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut offset: u64 = 0;
    let put = |w: &mut std::io::BufWriter<std::fs::File>, offset: &mut u64, b: &[u8]| {
        *offset += b.len() as u64;
        w.write_all(b)
    };
    put(&mut w, &mut offset, MAGIC).map_err(io(&tmp))?;
    // The stacks the columns name, in the order of their first column: a
    // column names its stack by its index in this list, which is the order
    // of the symbols section's stacks table.
    let mut stacks: Vec<StackId> = Vec::new();
    let mut stack_index: FxHashMap<StackId, u32> = FxHashMap::default();
    let mut index = pb::BlockIndex {
        min_time,
        max_time,
        ..Default::default()
    };
    let mut written = WrittenBlock::default();
    let mut blob = Vec::new();
    let mut sample_labels: std::collections::BTreeSet<String> = Default::default();
    for s in series {
        if s.sets.is_empty() {
            continue;
        }
        let mut entry = pb::SeriesEntry {
            labels: s
                .labels
                .iter()
                .map(|l| pb::Label {
                    name: l.name.clone(),
                    value: l.value.clone(),
                })
                .collect(),
            pprof_labels: s
                .pprof_labels
                .iter()
                .map(|(series_name, pprof_name)| pb::PprofLabel {
                    series_name: series_name.clone(),
                    pprof_name: pprof_name.clone(),
                })
                .collect(),
            min_time: i64::MAX,
            max_time: i64::MIN,
            ..Default::default()
        };
        let mut chunks = pb::SeriesChunks::default();
        for set in &s.sets {
            let (lo, hi) = set.time_range();
            entry.min_time = entry.min_time.min(lo);
            entry.max_time = entry.max_time.max(hi);
            entry.profiles += set.len() as u32;
            written.samples += set.num_values() as u64;
            for n in set.sample_label_names() {
                if !sample_labels.contains(n) {
                    sample_labels.insert(n.to_string());
                }
            }
            chunks.sets.push(set.to_proto(|id| {
                *stack_index.entry(id).or_insert_with(|| {
                    stacks.push(id);
                    // A block's stacks are far fewer than u32::MAX.
                    (stacks.len() - 1) as u32
                })
            }));
        }
        blob.clear();
        chunks.encode(&mut blob).map_err(|e| BlockError::Corrupt {
            path: tmp.clone(),
            reason: format!("encoding a series: {e}"),
        })?;
        if blob.len() > super::MAX_BLOB_BYTES as usize {
            return Err(BlockError::Corrupt {
                path: tmp.clone(),
                reason: format!("series blob of {} bytes", blob.len()),
            });
        }
        written.plain_bytes += blob.len() as u64;
        let stored = framer.frame(&blob);
        entry.chunks_offset = offset;
        entry.chunks_len = u32::try_from(stored.len()).map_err(|_| BlockError::Corrupt {
            path: tmp.clone(),
            reason: format!("series blob of {} bytes", stored.len()),
        })?;
        entry.chunks_crc32 = crc32fast::hash(&stored);
        put(&mut w, &mut offset, &stored).map_err(io(&tmp))?;
        written.series += 1;
        written.profiles += u64::from(entry.profiles);
        index.series.push(entry);
    }
    let plain_symbols =
        super::symbols::encode(symbols, &stacks).map_err(|source| BlockError::Symbols {
            path: tmp.clone(),
            source,
        })?;
    written.plain_bytes += plain_symbols.len() as u64;
    let symbol_bytes = framer.frame(&plain_symbols);
    drop(plain_symbols);
    index.symbols_offset = offset;
    index.symbols_len = symbol_bytes.len() as u64;
    index.symbols_crc32 = crc32fast::hash(&symbol_bytes);
    written.symbol_bytes = symbol_bytes.len() as u64;
    put(&mut w, &mut offset, &symbol_bytes).map_err(io(&tmp))?;
    index.sample_labels = sample_labels.into_iter().collect();
    index.profiles = written.profiles;
    index.samples = written.samples;
    let index_bytes = framer.frame(&index.encode_to_vec());
    let index_offset = offset;
    put(&mut w, &mut offset, &index_bytes).map_err(io(&tmp))?;
    let mut footer = Vec::with_capacity(FOOTER_LEN);
    footer.extend_from_slice(&index_offset.to_le_bytes());
    footer.extend_from_slice(&(index_bytes.len() as u64).to_le_bytes());
    footer.extend_from_slice(&crc32fast::hash(&index_bytes).to_le_bytes());
    let footer_crc = crc32fast::hash(&footer);
    footer.extend_from_slice(&footer_crc.to_le_bytes());
    footer.extend_from_slice(FOOTER_MAGIC);
    put(&mut w, &mut offset, &footer).map_err(io(&tmp))?;
    written.stacks = stacks.len();
    written.bytes = offset;
    let file = w.into_inner().map_err(|e| BlockError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(written)
}

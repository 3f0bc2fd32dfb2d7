//! Blocks: immutable files, each holding every series' profiles of one time
//! range, cut from the head.
//!
//! # Format
//! One file per block, `blocks/<min_time>_<max_time>.block`, laid out as in
//! `docs/format/block.md`:
//!
//! ```text
//! magic "PSBLK\0\0\x07" (8 bytes; the last byte is the format version;
//!                       version 2 to 6 blocks are still read)
//! series chunk blobs   (one SeriesChunks message per series; each blob's
//!                       offset, length and CRC32 are in the index)
//! symbols section      (a Symbols message: the stacks the chunks refer to
//!                       and the locations, functions, mappings and strings
//!                       they reach; see [`symbols`])
//! index section        (a BlockIndex message: time range, series entries,
//!                       counts, the symbols section's offset/length/CRC32)
//! footer (32 bytes)    index offset u64 LE | index length u64 LE |
//!                       index CRC32 u32 LE | footer CRC32 u32 LE (over the
//!                       previous 20 bytes) | magic "PSBLKEND"
//! ```
//!
//! Since version 4 each blob, the symbols section and the index section
//! is stored framed: an encoding byte, then the message, or its length and
//! a zstd frame of it ([`section`]); offsets, lengths and CRC32s are of the
//! stored bytes.
//!
//! Since version 5 an integer value chunk (a stack's column, a set's
//! totals) may be in the packed form of `docs/format/chunks.md` when that
//! is shorter; the writer compacts each column as it writes it. A version
//! 4 reader would take such a chunk for a corrupt one, so the version says
//! it first.
//!
//! Since version 6 the writer stores the symbols section's locations as
//! columns and its stacks as a tree of call paths ([`symbols`]); a version
//! 5 reader would find no stacks there, so the version says it first.
//!
//! Since version 7 a packed chunk of a column that mixes zeros and other
//! values may code its presence as runs (`docs/format/chunks.md`); a
//! version 6 reader would take such a chunk for a corrupt one, so the
//! version says it first.
//!
//! The same format, with every head series, is the head snapshot a clean
//! shutdown writes (`head.snapshot`).
//!
//! A block is self-contained: copied alone into another data directory (or
//! read by another node) it answers every query, because its stacks resolve
//! from its own symbols and ids are content ids.
//!
//! # Reading
//! [`Block::open`] checks the magic, the footer and the index CRC, and keeps
//! in memory only the index: each series' labels and where its blob is, and
//! postings over the series (memory grows with series, not with profiles).
//! Chunk blobs are read with positioned reads when a query needs them, and
//! their CRC32 is checked on every read: a damaged blob is logged, counted
//! ([`Block::damaged_reads`]) and read as empty, so the rest of the block is
//! still served. The symbols section is read and decoded at the first query
//! that reads a blob or resolves a stack from the block, and kept while the
//! block is open: since version 3 a column names its stack by its index in
//! the symbols section's stacks table (version 2: by its 16-byte id). A
//! compressed section is decompressed after its CRC32 is checked.
//!
//! # Invariants
//! - A block file is written to a temporary name, synced, renamed and its
//!   directory synced: a block either exists whole or not at all.
//! - Every profile of a block has `min_time <= t < max_time`; blocks written
//!   by one store never overlap in time.
//! - Series entries are sorted by labels and unique.

pub mod merge;
mod reader;
pub mod section;
pub mod symbols;
#[cfg(test)]
mod symbols_tests;
mod writer;

pub use merge::{merge_blocks, LooseProfiles};
pub use reader::{Block, BlockSeries, BlockSource};
pub use symbols::BlockSymbols;
pub use writer::{write_block, write_block_uncompressed, BlockSeriesData, WrittenBlock};

use std::path::PathBuf;

/// The magic at the start of every block file; the last byte is the format
/// version.
pub const MAGIC: &[u8; 8] = b"PSBLK\0\0\x07";
/// The oldest format version read: version 2 (columns name their stacks by
/// id) differs from 3 (by index into the symbols section) only there, and
/// 3 from 4 (sections framed, compressed: [`section`]) only there, 4
/// from 5 (integer chunks may be packed) only there, and 5 from 6 (the
/// symbols section's tree form, [`symbols`]) only there.
pub const MIN_VERSION: u8 = 2;
/// The first format version whose sections are framed ([`section`]).
pub const FRAMED_VERSION: u8 = 4;
/// The start of every block file's magic, before the version byte.
pub const MAGIC_PREFIX: &[u8; 7] = b"PSBLK\0\0";
/// The magic at the end of every block file.
pub const FOOTER_MAGIC: &[u8; 8] = b"PSBLKEND";
/// Bytes of the footer.
pub const FOOTER_LEN: usize = 32;
/// Largest index section accepted (a bound on what opening a damaged file
/// can allocate).
pub const MAX_INDEX_BYTES: u64 = 1 << 31;
/// Largest series blob accepted (stored, and decompressed).
pub const MAX_BLOB_BYTES: u32 = 1 << 30;
/// Largest symbols section accepted once decompressed (stored, it is
/// bounded by the file).
pub const MAX_SYMBOLS_BYTES: u64 = 1 << 31;

/// Errors of writing or opening a block.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is a block of another format version (`version`); unlike a
    /// damaged block it is not moved aside.
    #[error("{path}: block format version {version}, this profstore reads version {}: {hint}", MAGIC[7])]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version byte.
        version: u8,
        /// What to do.
        hint: &'static str,
    },
    /// The symbols section could not be written: the source lacks an
    /// entity.
    #[error("{path}: cannot write the symbols section: {source}")]
    Symbols {
        /// The file.
        path: PathBuf,
        /// The error.
        source: crate::model::SymbolError,
    },
    /// The file is not a whole, undamaged block.
    #[error("{path}: damaged block: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests;

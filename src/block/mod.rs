//! Blocks: immutable files, each holding every series' profiles of one time
//! range, cut from the head.
//!
//! # Format
//! One file per block, `blocks/<min_time>_<max_time>.block`, laid out as in
//! `docs/format/block.md`:
//!
//! ```text
//! magic "PSBLK\0\0\x01" (8 bytes; the last byte is the format version)
//! series chunk blobs   (one SeriesChunks message per series; each blob's
//!                       offset, length and CRC32 are in the index)
//! stacks section       (distinct stack ids, 16 bytes each, sorted)
//! index section        (a BlockIndex message: time range, series entries,
//!                       counts, the stacks section's offset/length/CRC32)
//! footer (32 bytes)    index offset u64 LE | index length u64 LE |
//!                       index CRC32 u32 LE | footer CRC32 u32 LE (over the
//!                       previous 20 bytes) | magic "PSBLKEND"
//! ```
//!
//! The same format, with every head series, is the head snapshot a clean
//! shutdown writes (`head.snapshot`).
//!
//! # Reading
//! [`Block::open`] checks the magic, the footer and the index CRC, and keeps
//! in memory only the index: each series' labels and where its blob is, and
//! postings over the series (memory grows with series, not with profiles).
//! Chunk blobs are read with positioned reads when a query needs them, and
//! their CRC32 is checked on every read: a damaged blob is logged, counted
//! ([`Block::damaged_reads`]) and read as empty, so the rest of the block is
//! still served.
//!
//! # Invariants
//! - A block file is written to a temporary name, synced, renamed and its
//!   directory synced: a block either exists whole or not at all.
//! - Every profile of a block has `min_time <= t < max_time`; blocks written
//!   by one store never overlap in time.
//! - Series entries are sorted by labels and unique.

mod reader;
mod writer;

pub use reader::{Block, BlockSeries};
pub use writer::{write_block, BlockSeriesData, WrittenBlock};

use std::path::PathBuf;

/// The magic at the start of every block file; the last byte is the format
/// version.
pub const MAGIC: &[u8; 8] = b"PSBLK\0\0\x01";
/// The magic at the end of every block file.
pub const FOOTER_MAGIC: &[u8; 8] = b"PSBLKEND";
/// Bytes of the footer.
pub const FOOTER_LEN: usize = 32;
/// Largest index section accepted (a bound on what opening a damaged file
/// can allocate).
pub const MAX_INDEX_BYTES: u64 = 1 << 31;
/// Largest series blob accepted.
pub const MAX_BLOB_BYTES: u32 = 1 << 30;

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

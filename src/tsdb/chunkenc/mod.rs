//! Chunk encodings: pure codecs that turn a column of `i64` samples into bytes
//! and back. No I/O, no locks; the head, the WAL and blocks decide where the
//! bytes live.
//!
//! The exact bit layouts, with worked examples, are in `docs/format/chunks.md`
//! at the root of the repository. In short:
//!
//! | chunk | for | header | body |
//! |---|---|---|---|
//! | [`IntChunk`] | sample values, totals | uvarint count | one value: its varint; more: uvarint gcd, varint first value ÷ gcd, then deltas ÷ gcd in buckets (`0`, `10`+3, `110`+7, `1110`+13, `11110`+24, `11111`+64); or, packed (`00` first), uvarint gcd, varint base, a flags byte, then offsets from the base in a fixed width, zeros marked by a bit |
//! | [`XorChunk`] | values and totals of chunk sets written before [`IntChunk`] | uvarint count | Gorilla XOR bit stream (first value 64 raw bits; then `0` / `10`+bits / `11`+5+6+bits) |
//! | [`TimestampChunk`] | timestamps (ms), strictly increasing | uvarint count | first value varint, first delta uvarint, then delta-of-delta bit stream (`0`, `10`+14, `110`+17, `1110`+20, `1111`+64) |
//! | [`RleChunk`] | durations, periods | uvarint count, uvarint runs | (zigzag varint value, uvarint run length) pairs |
//!
//! Bit streams are packed most significant bit first ([`bstream`]); varints
//! are Go's `encoding/binary` varints ([LEB128], zigzag for signed values).
//!
//! # Invariants
//! - A chunk's in-memory form *is* its serialized form: `bytes()` is free, and
//!   `from_bytes(c.bytes())` gives back a chunk equal to `c` that can be
//!   appended to further, producing the same bytes as if it had never been
//!   serialized.
//! - Encoders are deterministic and decoders strict: shortest varints, zero
//!   padding bits, no trailing bytes, adjacent runs of different values,
//!   strictly increasing timestamps; decoders reject anything else (the one
//!   leniency: an XOR `11` field may open a wider window than the encoder
//!   would). For every `b` that `from_bytes` accepts,
//!   `from_bytes(b)?.bytes() == b`.
//! - `from_bytes` validates untrusted bytes fully — it decodes every sample —
//!   and never panics. It allocates a copy of the input (plus, for
//!   [`RleChunk`], a run table of one 16-byte entry per two input bytes at
//!   most), whatever count the header claims: a claimed count is first
//!   bounded by what the input's length can hold.
//! - An empty chunk allocates nothing; its bytes are the header alone
//!   (`[0x00]`, or `[0x00, 0x00]` for [`RleChunk`]).
//! - Timestamps in a [`TimestampChunk`] strictly increase: an append at or
//!   before the last timestamp returns [`ChunkError::OutOfOrder`] and changes
//!   nothing.
//! - Chunks have no size limit of their own (the count is a varint); callers
//!   cut chunks (the head at 120 profiles).
//!
//! Which encoding a chunk uses is not written in its bytes: the container
//! (head column, WAL record, block chunk file) records an [`Encoding`].
//!
//! [LEB128]: https://en.wikipedia.org/wiki/LEB128

pub mod bstream;
mod int;
mod rle;
mod timestamp;
pub(crate) mod varint;
mod xor;

#[cfg(test)]
mod tests;

pub(crate) use int::gcd;
pub use int::{IntChunk, IntIter, PACKED_MAX};
pub use rle::{RleChunk, RleIter, MAX_SAMPLES as RLE_MAX_SAMPLES};
pub use timestamp::{TimestampChunk, TimestampIter};
pub use xor::{XorChunk, XorIter};

/// Errors from decoding chunk bytes, and the one append error
/// ([`ChunkError::OutOfOrder`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// The bytes end before the samples the header promises.
    #[error("chunk truncated")]
    Truncated,
    /// The header (a uvarint count, for [`RleChunk`] also a uvarint number of
    /// runs) is missing or malformed.
    #[error("bad chunk header: {0}")]
    BadHeader(&'static str),
    /// The header claims more samples (or runs) than the chunk's length can
    /// hold.
    #[error("chunk header claims {claimed} {what}, but {len} bytes hold at most {max}")]
    CountTooLarge {
        /// What is counted: "samples" or "runs".
        what: &'static str,
        /// The count in the header.
        claimed: u64,
        /// The most that `len` bytes can encode.
        max: u64,
        /// The chunk's length in bytes.
        len: usize,
    },
    /// Bytes follow the last sample.
    #[error("{0} trailing bytes after the last sample")]
    TrailingBytes(usize),
    /// The body is not a valid (canonical) encoding.
    #[error("corrupt chunk: {0}")]
    Corrupt(&'static str),
    /// An encoding byte names no known [`Encoding`].
    #[error("unknown chunk encoding {0}")]
    UnknownEncoding(u8),
    /// [`TimestampChunk::append`] of a timestamp at or before the chunk's
    /// last one.
    #[error("out-of-order timestamp {timestamp}: not after the chunk's last timestamp {last}")]
    OutOfOrder {
        /// The rejected timestamp.
        timestamp: i64,
        /// The chunk's last timestamp.
        last: i64,
    },
}

/// The chunk encodings, with the byte that containers store for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// [`XorChunk`].
    Xor = 1,
    /// [`TimestampChunk`].
    Timestamp = 2,
    /// [`RleChunk`].
    RunLength = 3,
    /// [`IntChunk`].
    Int = 4,
}

impl Encoding {
    /// The byte stored for this encoding.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The encoding stored as `b`.
    pub fn from_u8(b: u8) -> Result<Encoding, ChunkError> {
        match b {
            1 => Ok(Encoding::Xor),
            2 => Ok(Encoding::Timestamp),
            3 => Ok(Encoding::RunLength),
            4 => Ok(Encoding::Int),
            _ => Err(ChunkError::UnknownEncoding(b)),
        }
    }

    /// Validates `b` as a chunk of this encoding, returning its sample count.
    pub fn validate(self, b: &[u8]) -> Result<usize, ChunkError> {
        Ok(match self {
            Encoding::Xor => XorChunk::from_bytes(b)?.len(),
            Encoding::Timestamp => TimestampChunk::from_bytes(b)?.len(),
            Encoding::RunLength => RleChunk::from_bytes(b)?.len(),
            Encoding::Int => IntChunk::from_bytes(b)?.len(),
        })
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoding::Xor => "xor",
            Encoding::Timestamp => "timestamp",
            Encoding::RunLength => "run-length",
            Encoding::Int => "integer",
        })
    }
}

/// Reads the uvarint count at the start of a chunk: `(count, header length)`.
fn read_count(b: &[u8]) -> Result<(u64, usize), ChunkError> {
    let mut pos = 0;
    match varint::read(b, &mut pos) {
        Ok(c) => Ok((c, pos)),
        Err(ChunkError::Truncated) if b.is_empty() => Err(ChunkError::BadHeader("empty chunk")),
        Err(_) => Err(ChunkError::BadHeader("malformed count")),
    }
}

/// Checks that a bit stream decoded to exactly its end: no overrun, no whole
/// byte unread, zero padding. Returns the number of padding bits.
fn check_stream_end(stream: &[u8], bits_read: u64) -> Result<u32, ChunkError> {
    let len_bits = stream.len() as u64 * 8;
    if bits_read > len_bits {
        return Err(ChunkError::Truncated);
    }
    let unread = len_bits - bits_read;
    if unread >= 8 {
        return Err(ChunkError::TrailingBytes((unread / 8) as usize));
    }
    let pad = unread as u32;
    if pad > 0 {
        let last = stream.last().copied().unwrap_or(0);
        if last & ((1u8 << pad) - 1) != 0 {
            return Err(ChunkError::Corrupt("non-zero padding bits"));
        }
    }
    Ok(pad)
}

//! Run-length chunk for `i64` values that rarely change (durations, periods).
//!
//! # Format
//! ```text
//! chunk := uvarint(count) uvarint(runs) pair{runs}
//! pair  := varint(value) uvarint(length)   value zigzag; length >= 1
//! ```
//! Run lengths add up to `count`; adjacent runs hold different values; no
//! bytes follow the last pair. An empty chunk is `00 00`.
//!
//! # Invariants
//! - `runs` and `buf` describe the same samples: `runs` is the decoded form
//!   (for `get` and iteration), `buf` the serialized one, kept in step on
//!   every append so that [`RleChunk::bytes`] is free.
//! - `last_run_off` is the offset in `buf` of the last pair's length varint,
//!   the only part of the body an append rewrites.

use super::{varint, ChunkError};

/// One run: `value` repeated up to sample index `end` (exclusive), i.e. the
/// run's length is `end` minus the previous run's `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    value: i64,
    end: u64,
}

/// A run-length chunk of `i64` values. See the [module docs](self) for the
/// format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RleChunk {
    /// The runs, in order; cumulative ends allow a binary search in `get`.
    runs: Vec<Run>,
    /// The serialized chunk (empty while the chunk is).
    buf: Vec<u8>,
    /// Length of the header (count and number of runs) in `buf`.
    hdr_len: usize,
    /// Offset in `buf` of the last run's length varint.
    last_run_off: usize,
}

/// The most samples a decoded run-length chunk may claim. A few long runs
/// can claim any count in a few bytes; the bound keeps later appends (and
/// anything that sums counts) far from overflow. Head chunks hold 120.
pub const MAX_SAMPLES: u64 = u32::MAX as u64;

impl RleChunk {
    /// An empty chunk; allocates nothing.
    pub const fn new() -> RleChunk {
        RleChunk {
            runs: Vec::new(),
            buf: Vec::new(),
            hdr_len: 0,
            last_run_off: 0,
        }
    }

    /// Number of samples as a `u64`.
    #[inline]
    fn count(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.end)
    }

    /// Appends a value.
    ///
    /// The chunk must hold fewer than [`MAX_SAMPLES`] values: the caller
    /// cuts chunks long before (the head's hold 120 profiles). Appending to
    /// a full chunk panics rather than write a count no reader accepts.
    pub fn append(&mut self, v: i64) {
        assert!(
            self.count() < MAX_SAMPLES,
            "append to a full run-length chunk ({MAX_SAMPLES} values)"
        );
        if self.buf.is_empty() {
            self.buf.extend_from_slice(&[0, 0]);
            self.hdr_len = 2;
        }
        let count = self.count() + 1;
        let n = self.runs.len();
        match self.runs.last_mut() {
            Some(r) if r.value == v => {
                r.end = count;
                let start = match n {
                    2.. => self.runs[n - 2].end,
                    _ => 0,
                };
                self.buf.truncate(self.last_run_off);
                varint::put(&mut self.buf, count - start);
            }
            _ => {
                self.runs.push(Run {
                    value: v,
                    end: count,
                });
                varint::put(&mut self.buf, varint::zigzag(v));
                self.last_run_off = self.buf.len();
                self.buf.push(1);
            }
        }
        let nruns = self.runs.len() as u64;
        match self.buf.first_chunk_mut::<2>() {
            // Fast path: both header fields take one byte.
            Some([c, r]) if self.hdr_len == 2 && count < 0x80 && nruns < 0x80 => {
                *c = count as u8;
                *r = nruns as u8;
            }
            _ => {
                let moved =
                    varint::rewrite_header(&mut self.buf, &mut self.hdr_len, &[count, nruns]);
                self.last_run_off = self.last_run_off.wrapping_add_signed(moved);
            }
        }
    }

    /// Number of samples.
    #[inline]
    pub fn len(&self) -> usize {
        // Bounded by usize: built by appends, or checked by from_bytes.
        self.count() as usize
    }

    /// Whether the chunk holds no sample.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Number of runs.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The sample at index `i`, or `None` past the end. O(log runs).
    pub fn get(&self, i: usize) -> Option<i64> {
        let i = i as u64;
        let k = self.runs.partition_point(|r| r.end <= i);
        self.runs.get(k).map(|r| r.value)
    }

    /// The last sample, if any.
    #[inline]
    pub fn last(&self) -> Option<i64> {
        self.runs.last().map(|r| r.value)
    }

    /// The serialized chunk; free.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        if self.buf.is_empty() {
            &[0, 0]
        } else {
            &self.buf
        }
    }

    /// The samples, in append order.
    #[inline]
    pub fn iter(&self) -> RleIter<'_> {
        RleIter {
            runs: self.runs.iter(),
            value: 0,
            left: 0,
            pos: 0,
            remaining: self.count(),
        }
    }

    /// Heap bytes held (for memory accounting).
    pub fn size_bytes(&self) -> usize {
        self.runs.capacity() * std::mem::size_of::<Run>() + self.buf.capacity()
    }

    /// Releases unused capacity (for a chunk that will not grow much more).
    pub fn shrink_to_fit(&mut self) {
        self.runs.shrink_to_fit();
        self.buf.shrink_to_fit();
    }

    /// Decodes and fully validates untrusted bytes; the result can be
    /// appended to. Accepts exactly what [`RleChunk::bytes`] can produce, so
    /// `from_bytes(b)?.bytes() == b`. Allocates the input's length plus one
    /// run (16 bytes) per two input bytes at most.
    ///
    /// Errors: [`ChunkError::BadHeader`], [`ChunkError::CountTooLarge`] (more
    /// runs than pairs of bytes left, or more than [`MAX_SAMPLES`] samples), [`ChunkError::Truncated`],
    /// [`ChunkError::TrailingBytes`], [`ChunkError::Corrupt`] (a zero-length
    /// run, adjacent runs of one value, lengths that do not add up to the
    /// count, a non-canonical varint).
    pub fn from_bytes(b: &[u8]) -> Result<RleChunk, ChunkError> {
        if b.is_empty() {
            return Err(ChunkError::BadHeader("empty chunk"));
        }
        let mut pos = 0;
        let count =
            varint::read(b, &mut pos).map_err(|_| ChunkError::BadHeader("malformed count"))?;
        let nruns = varint::read(b, &mut pos)
            .map_err(|_| ChunkError::BadHeader("malformed number of runs"))?;
        let hdr_len = pos;
        let max = (b.len() - pos) as u64 / 2;
        if nruns > max {
            return Err(ChunkError::CountTooLarge {
                what: "runs",
                claimed: nruns,
                max,
                len: b.len(),
            });
        }
        if count > MAX_SAMPLES {
            return Err(ChunkError::CountTooLarge {
                what: "samples",
                claimed: count,
                max: MAX_SAMPLES,
                len: b.len(),
            });
        }
        // nruns <= b.len() / 2: the table is bounded by the input.
        let mut runs: Vec<Run> = Vec::with_capacity(nruns as usize);
        let mut end = 0u64;
        let mut last_run_off = 0;
        for _ in 0..nruns {
            let value = varint::unzigzag(varint::read(b, &mut pos)?);
            last_run_off = pos;
            let len = varint::read(b, &mut pos)?;
            if len == 0 {
                return Err(ChunkError::Corrupt("zero-length run"));
            }
            if runs.last().is_some_and(|r| r.value == value) {
                return Err(ChunkError::Corrupt("adjacent runs of the same value"));
            }
            end = match end.checked_add(len) {
                Some(e) if e <= count => e,
                _ => return Err(ChunkError::Corrupt("run lengths exceed the count")),
            };
            runs.push(Run { value, end });
        }
        if end != count {
            return Err(ChunkError::Corrupt("run lengths fall short of the count"));
        }
        if pos != b.len() {
            return Err(ChunkError::TrailingBytes(b.len() - pos));
        }
        if runs.is_empty() {
            return Ok(RleChunk::new());
        }
        Ok(RleChunk {
            runs,
            buf: b.to_vec(),
            hdr_len,
            last_run_off,
        })
    }
}

impl<'a> IntoIterator for &'a RleChunk {
    type Item = i64;
    type IntoIter = RleIter<'a>;
    fn into_iter(self) -> RleIter<'a> {
        self.iter()
    }
}

/// Iterator over the samples of an [`RleChunk`].
#[derive(Clone, Debug)]
pub struct RleIter<'a> {
    runs: std::slice::Iter<'a, Run>,
    /// The current run's value.
    value: i64,
    /// Samples left in the current run.
    left: u64,
    /// End of the current run.
    pos: u64,
    /// Samples left in all.
    remaining: u64,
}

impl Iterator for RleIter<'_> {
    type Item = i64;

    #[inline]
    fn next(&mut self) -> Option<i64> {
        if self.left == 0 {
            let r = self.runs.next()?;
            self.left = r.end - self.pos;
            self.pos = r.end;
            self.value = r.value;
        }
        self.left -= 1;
        self.remaining -= 1;
        Some(self.value)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        // Fits: the count of a chunk fits a usize.
        let n = self.remaining as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for RleIter<'_> {}
impl std::iter::FusedIterator for RleIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_from_the_format_doc() {
        let mut c = RleChunk::new();
        for v in [10_000_000, 10_000_000, 10_000_000, -1, 10_000_000] {
            c.append(v);
        }
        // count 5, 3 runs, (10_000_000 x3) (-1 x1) (10_000_000 x1).
        assert_eq!(
            c.bytes(),
            &[0x05, 0x03, 0x80, 0xDA, 0xC4, 0x09, 0x03, 0x01, 0x01, 0x80, 0xDA, 0xC4, 0x09, 0x01]
        );
        assert_eq!(c.get(0), Some(10_000_000));
        assert_eq!(c.get(3), Some(-1));
        assert_eq!(c.get(4), Some(10_000_000));
        assert_eq!(c.get(5), None);
        assert_eq!(c.runs(), 3);
    }

    #[test]
    fn header_growth_keeps_the_last_run_offset() {
        let mut c = RleChunk::new();
        for i in 0..20_000u32 {
            c.append(i64::from(i / 150));
        }
        let d = RleChunk::from_bytes(c.bytes()).unwrap();
        assert_eq!(d, c);
        assert_eq!(c.iter().count(), 20_000);
    }

    /// A chunk claiming the most values there can be (two long runs, found
    /// by the fuzzer) reads back, and refuses a further append instead of
    /// writing a count no reader accepts.
    #[test]
    fn a_full_chunk_reads_and_refuses_an_append() {
        let bytes = [
            0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x3e, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ];
        let c = RleChunk::from_bytes(&bytes).unwrap();
        assert_eq!(c.len() as u64, MAX_SAMPLES);
        assert_eq!(c.bytes(), bytes);
        let full = std::panic::catch_unwind(|| {
            let mut more = c.clone();
            more.append(1);
        });
        assert!(full.is_err(), "appending to a full chunk must not succeed");
    }
}

//! Delta-of-delta chunk for strictly increasing millisecond timestamps
//! (Prometheus's timestamp encoding from its XOR chunk, on its own).
//!
//! # Format
//! ```text
//! chunk  := uvarint(count) body            (body absent when count = 0)
//! body   := varint(t0)                     zigzag, byte-aligned
//!           [uvarint(t1 - t0)]             when count >= 2; >= 1
//!           dod* padding                   count - 2 fields, MSB first
//! dod    := '0'                            delta unchanged
//!         | '10'   x:14                    x: two's complement of
//!         | '110'  x:17                       dod = (t[i] - t[i-1]) -
//!         | '1110' x:20                             (t[i-1] - t[i-2]),
//!         | '1111' x:64                       smallest width that holds it
//! padding := '0'{0,7}
//! ```
//! A `w`-bit field holds `-2^(w-1) <= dod < 2^(w-1)`. Deltas are unsigned
//! 64-bit (the gap from `i64::MIN` to `i64::MAX` is one delta) and all
//! arithmetic wraps, so every strictly increasing sequence round-trips; the
//! decoder rejects any stream whose timestamps do not strictly increase.
//!
//! # Invariants
//! - `buf` holds exactly the serialized chunk.
//! - `last` is the last timestamp and `delta` the last delta (when
//!   `count >= 2`), so appending goes on from any chunk, including one built by
//!   [`TimestampChunk::from_bytes`].

use super::bstream::{BitReader, BitWriter};
use super::{check_stream_end, read_count, varint, ChunkError};

/// A delta-of-delta chunk of strictly increasing timestamps. See the
/// [module docs](self) for the format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimestampChunk {
    /// The serialized chunk: uvarint count, then the body.
    w: BitWriter,
    /// Length of the count header in bytes (0 when empty).
    hdr_len: usize,
    /// Number of timestamps.
    count: usize,
    /// The last timestamp (meaningful when `count >= 1`).
    last: i64,
    /// The last delta (meaningful when `count >= 2`).
    delta: u64,
}

/// Whether `x` fits a `w`-bit two's-complement field.
#[inline]
fn fits(x: i64, w: u32) -> bool {
    let lim = 1i64 << (w - 1);
    (-lim..lim).contains(&x)
}

impl TimestampChunk {
    /// An empty chunk; allocates nothing.
    pub const fn new() -> TimestampChunk {
        TimestampChunk {
            w: BitWriter::new(),
            hdr_len: 0,
            count: 0,
            last: 0,
            delta: 0,
        }
    }

    /// Appends a timestamp.
    ///
    /// Errors: [`ChunkError::OutOfOrder`] if `t` is not after the last
    /// timestamp; the chunk is then unchanged.
    #[inline]
    pub fn append(&mut self, t: i64) -> Result<(), ChunkError> {
        match self.count {
            0 => {
                let buf = self.w.buf_mut();
                buf.clear();
                // One allocation for the header, the first value and a few
                // more fields (Vec would start at 8 bytes, then grow to 16).
                buf.reserve(16);
                buf.push(0);
                self.hdr_len = 1;
                // Byte-aligned: the writer has no free bits.
                varint::put(buf, varint::zigzag(t));
            }
            n => {
                if t <= self.last {
                    return Err(ChunkError::OutOfOrder {
                        timestamp: t,
                        last: self.last,
                    });
                }
                // t > last, so the true delta is in 1..2^64: exact as u64.
                let delta = t.wrapping_sub(self.last) as u64;
                if n == 1 {
                    // Still byte-aligned.
                    varint::put(self.w.buf_mut(), delta);
                } else {
                    self.write_dod(delta.wrapping_sub(self.delta) as i64);
                }
                self.delta = delta;
            }
        }
        self.last = t;
        self.set_count(self.count + 1);
        Ok(())
    }

    #[inline]
    fn write_dod(&mut self, dod: i64) {
        let d = dod as u64;
        if dod == 0 {
            self.w.write_bits(0, 1);
        } else if fits(dod, 14) {
            self.w.write_bits((0b10 << 14) | (d & 0x3fff), 16);
        } else if fits(dod, 17) {
            self.w.write_bits((0b110 << 17) | (d & 0x1_ffff), 20);
        } else if fits(dod, 20) {
            self.w.write_bits((0b1110 << 20) | (d & 0xf_ffff), 24);
        } else {
            self.w.write_bits(0b1111, 4);
            self.w.write_bits(d, 64);
        }
    }

    #[inline]
    fn set_count(&mut self, n: usize) {
        self.count = n;
        varint::set_count(self.w.buf_mut(), &mut self.hdr_len, n as u64);
    }

    /// Number of timestamps.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the chunk holds no timestamp.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The last (largest) timestamp, if any.
    #[inline]
    pub fn last(&self) -> Option<i64> {
        (self.count > 0).then_some(self.last)
    }

    /// The serialized chunk (header and body); free.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        if self.count == 0 {
            &[0]
        } else {
            self.w.as_bytes()
        }
    }

    /// The timestamps, in (increasing) order.
    #[inline]
    pub fn iter(&self) -> TimestampIter<'_> {
        let body = self.w.as_bytes().get(self.hdr_len..).unwrap_or(&[]);
        TimestampIter::new(body, self.count)
    }

    /// Heap bytes held (for memory accounting).
    pub fn size_bytes(&self) -> usize {
        self.w.capacity()
    }

    /// Releases unused capacity (for a chunk that will not grow much more).
    pub fn shrink_to_fit(&mut self) {
        self.w.shrink_to_fit();
    }

    /// Decodes and fully validates untrusted bytes: every timestamp is
    /// decoded and must be after the previous one; the result can be appended
    /// to. Accepts exactly what [`TimestampChunk::bytes`] can produce, so
    /// `from_bytes(b)?.bytes() == b`.
    ///
    /// Errors: [`ChunkError::BadHeader`], [`ChunkError::CountTooLarge`] (the
    /// first two timestamps take a byte each at least, every other a bit),
    /// [`ChunkError::Truncated`], [`ChunkError::TrailingBytes`],
    /// [`ChunkError::Corrupt`].
    pub fn from_bytes(b: &[u8]) -> Result<TimestampChunk, ChunkError> {
        let (count, hdr_len) = read_count(b)?;
        let body = b.get(hdr_len..).unwrap_or(&[]);
        if count == 0 {
            return match body.len() {
                0 => Ok(TimestampChunk::new()),
                n => Err(ChunkError::TrailingBytes(n)),
            };
        }
        let bits = body.len() as u64 * 8;
        let max = match bits {
            0..8 => 0,
            8..16 => 1,
            _ => bits - 14,
        };
        let count = match usize::try_from(count) {
            Ok(c) if count <= max => c,
            _ => {
                return Err(ChunkError::CountTooLarge {
                    what: "samples",
                    claimed: count,
                    max,
                    len: b.len(),
                })
            }
        };
        let mut it = TimestampIter::new(body, count);
        let mut last = 0;
        for t in it.by_ref() {
            last = t;
        }
        if let Some(what) = it.corrupt {
            return Err(ChunkError::Corrupt(what));
        }
        let pad = check_stream_end(body, it.r.bits_read())?;
        let w = BitWriter::from_parts(b.to_vec(), pad)
            .ok_or(ChunkError::Corrupt("non-zero padding bits"))?;
        Ok(TimestampChunk {
            w,
            hdr_len,
            count,
            last,
            delta: it.delta,
        })
    }
}

impl<'a> IntoIterator for &'a TimestampChunk {
    type Item = i64;
    type IntoIter = TimestampIter<'a>;
    fn into_iter(self) -> TimestampIter<'a> {
        self.iter()
    }
}

/// Iterator over the timestamps of a [`TimestampChunk`].
///
/// On bytes that [`TimestampChunk::from_bytes`] accepted (every
/// `TimestampChunk` is built that way or by appends) it yields exactly the
/// appended timestamps.
#[derive(Clone, Debug)]
pub struct TimestampIter<'a> {
    r: BitReader<'a>,
    /// Timestamps yielded so far.
    i: usize,
    /// Total timestamps.
    count: usize,
    t: i64,
    delta: u64,
    /// Set on an invalid field; only possible on bytes not yet validated.
    corrupt: Option<&'static str>,
}

impl<'a> TimestampIter<'a> {
    fn new(body: &'a [u8], count: usize) -> TimestampIter<'a> {
        TimestampIter {
            r: BitReader::new(body),
            i: 0,
            count,
            t: 0,
            delta: 0,
            corrupt: None,
        }
    }

    /// Reads a (canonical) uvarint from the bit stream.
    fn read_uvarint(&mut self) -> u64 {
        let mut x = 0u64;
        for i in 0..varint::MAX_LEN {
            let b = self.r.read_byte();
            if i == varint::MAX_LEN - 1 && b > 1 {
                self.corrupt = Some("varint overflows 64 bits");
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if b == 0 && i > 0 {
                    self.corrupt = Some("overlong varint");
                }
                return x;
            }
        }
        x
    }

    /// Moves to `t + delta`, flagging a stream that does not increase.
    #[inline]
    fn step(&mut self) {
        let t = self.t.wrapping_add(self.delta as i64);
        if t <= self.t {
            self.corrupt = Some("timestamps do not increase");
        }
        self.t = t;
    }
}

impl Iterator for TimestampIter<'_> {
    type Item = i64;

    #[inline]
    fn next(&mut self) -> Option<i64> {
        if self.i >= self.count {
            return None;
        }
        match self.i {
            0 => self.t = varint::unzigzag(self.read_uvarint()),
            1 => {
                self.delta = self.read_uvarint();
                self.step();
            }
            _ => {
                let dod = if !self.r.read_bit() {
                    0
                } else {
                    // The rest of the control prefix: '0', '10', '110', '111'.
                    let (skip, w) = match self.r.peek_bits(3) {
                        0b000..=0b011 => (1, 14),
                        0b100..=0b101 => (2, 17),
                        0b110 => (3, 20),
                        _ => (3, 64),
                    };
                    self.r.skip_bits(skip);
                    // Sign-extend the w-bit field.
                    let x = self.r.read_bits_wide(w);
                    ((x << (64 - w)) as i64) >> (64 - w)
                };
                self.delta = self.delta.wrapping_add(dod as u64);
                self.step();
            }
        }
        self.i += 1;
        Some(self.t)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.count - self.i;
        (n, Some(n))
    }
}

impl ExactSizeIterator for TimestampIter<'_> {}
impl std::iter::FusedIterator for TimestampIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_changes_nothing() {
        let mut c = TimestampChunk::new();
        c.append(1000).unwrap();
        c.append(2000).unwrap();
        let before = c.clone();
        assert_eq!(
            c.append(2000),
            Err(ChunkError::OutOfOrder {
                timestamp: 2000,
                last: 2000
            })
        );
        assert!(c.append(i64::MIN).is_err());
        assert_eq!(c, before);
        c.append(3000).unwrap();
        assert_eq!(c.iter().collect::<Vec<_>>(), [1000, 2000, 3000]);
    }

    #[test]
    fn bucket_boundaries() {
        // Deltas chosen so that the dods hit each bucket's edges.
        let dods: Vec<i64> = [14u32, 17, 20]
            .iter()
            .flat_map(|&w| {
                let lim = 1i64 << (w - 1);
                [lim - 1, lim, -lim, -lim - 1]
            })
            .chain([0, 1, -1, i64::MAX / 4, i64::MIN / 4])
            .collect();
        let mut ts = vec![0i64, 1 << 40];
        let mut delta: i64 = 1 << 40;
        for d in dods {
            // Keep deltas positive: re-base when a dod would make it <= 0.
            let nd = delta + d;
            let nd = if nd <= 0 { 1 } else { nd };
            delta = nd;
            let last = *ts.last().unwrap();
            ts.push(last + delta);
        }
        let mut c = TimestampChunk::new();
        for &t in &ts {
            c.append(t).unwrap();
        }
        assert_eq!(c.iter().collect::<Vec<_>>(), ts);
        assert_eq!(TimestampChunk::from_bytes(c.bytes()).as_ref(), Ok(&c));
    }

    #[test]
    fn worked_example_from_the_format_doc() {
        let t0 = 1_700_000_000_000;
        let ts = [t0, t0 + 10_000, t0 + 20_000, t0 + 30_007, t0 + 40_000];
        let mut c = TimestampChunk::new();
        for t in ts {
            c.append(t).unwrap();
        }
        #[rustfmt::skip]
        let want = [
            0x05,
            0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62,
            0x90, 0x4e,
            0x40, 0x03, 0xdf, 0xf9, 0x00,
        ];
        assert_eq!(c.bytes(), &want);
        assert_eq!(c.iter().collect::<Vec<_>>(), ts);
    }
}

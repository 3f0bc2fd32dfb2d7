//! Gorilla XOR chunk for `i64` values (Prometheus's XOR chunk as Parca forked
//! it: the values are `int64`, XORed as their two's-complement bits).
//!
//! # Format
//! ```text
//! chunk  := uvarint(count) stream      (stream absent when count = 0)
//! stream := v0:64 field* padding       (count - 1 fields, MSB first)
//! field  := '0'                        value equal to the previous one
//!         | '10' bits:(64-L-T)         d = prev ^ v fits the current window
//!                                      (L leading, T trailing zero bits):
//!                                      bits = d >> T
//!         | '11' L:5 S:6 bits:S        new window: L = min(leading zeros
//!                                      of d, 31), S = 64 - L - trailing zeros
//!                                      of d, written as 0 when S = 64;
//!                                      bits = d >> (64 - L - S)
//! padding := '0'{0,7}                  to the byte boundary
//! ```
//! There is no window before the first `11` field, so the first value that
//! differs from its predecessor always opens one; a `10` before that is
//! corrupt. The encoder uses `10` whenever `d` fits the current window (its
//! leading and trailing zeros are at least the window's), else `11`.
//!
//! # Invariants
//! - `buf` holds exactly the serialized chunk: the count header, then the bit
//!   stream with zero padding.
//! - `prev`, `leading` and `trailing` are the encoder's state after the last
//!   value, so appending goes on from any chunk, including one built by
//!   [`XorChunk::from_bytes`].

use super::bstream::{BitReader, BitWriter};
use super::{check_stream_end, read_count, varint, ChunkError};

/// `leading` before any window is set; larger than any real leading count,
/// so the "fits the window" test fails without a separate check.
const NO_WINDOW: u8 = 0xff;

/// A Gorilla XOR chunk of `i64` values. See the [module docs](self) for the
/// format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XorChunk {
    /// The serialized chunk: uvarint count, then the bit stream.
    w: BitWriter,
    /// Length of the count header in bytes (0 when empty).
    hdr_len: usize,
    /// Number of values.
    count: usize,
    /// The last value's bits.
    prev: u64,
    /// The current window's leading zeros, or [`NO_WINDOW`].
    leading: u8,
    /// The current window's trailing zeros.
    trailing: u8,
}

impl Default for XorChunk {
    fn default() -> XorChunk {
        XorChunk::new()
    }
}

impl XorChunk {
    /// An empty chunk; allocates nothing.
    pub const fn new() -> XorChunk {
        XorChunk {
            w: BitWriter::new(),
            hdr_len: 0,
            count: 0,
            prev: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Appends a value.
    #[inline]
    pub fn append(&mut self, v: i64) {
        let v = v as u64;
        if self.count == 0 {
            let buf = self.w.buf_mut();
            buf.clear();
            // One allocation for the header, the first value and a few more
            // fields (Vec would start at 8 bytes, then grow to 16).
            buf.reserve(16);
            buf.push(0);
            self.hdr_len = 1;
            self.w.write_bits(v, 64);
        } else {
            self.write_xor(v ^ self.prev);
        }
        self.prev = v;
        self.set_count(self.count + 1);
    }

    /// Writes one field for `d = prev ^ v`.
    #[inline]
    fn write_xor(&mut self, d: u64) {
        if d == 0 {
            self.w.write_bits(0, 1);
            return;
        }
        let lz = d.leading_zeros().min(31);
        let tz = d.trailing_zeros();
        if lz >= u32::from(self.leading) && tz >= u32::from(self.trailing) {
            // '10' + the window's bits.
            let t = u32::from(self.trailing);
            let sig = 64 - u32::from(self.leading) - t;
            let bits = d >> t;
            if sig <= 62 {
                self.w.write_bits((0b10 << sig) | bits, sig + 2);
            } else {
                self.w.write_bits(0b10, 2);
                self.w.write_bits(bits, sig);
            }
        } else {
            // '11' + 5 bits leading + 6 bits significant count + the bits.
            let sig = 64 - lz - tz; // 1..=64
            let head = (0b11 << 11) | (u64::from(lz) << 6) | u64::from(sig & 63);
            let bits = d >> tz;
            if sig <= 51 {
                self.w.write_bits((head << sig) | bits, 13 + sig);
            } else {
                self.w.write_bits(head, 13);
                self.w.write_bits(bits, sig);
            }
            // lz <= 31 and tz <= 63: both fit a u8.
            self.leading = lz as u8;
            self.trailing = tz as u8;
        }
    }

    #[inline]
    fn set_count(&mut self, n: usize) {
        self.count = n;
        varint::set_count(self.w.buf_mut(), &mut self.hdr_len, n as u64);
    }

    /// Number of values.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the chunk holds no value.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The last value appended, if any.
    pub fn last(&self) -> Option<i64> {
        (self.count > 0).then_some(self.prev as i64)
    }

    /// The serialized chunk (header and bit stream); free.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        if self.count == 0 {
            &[0]
        } else {
            self.w.as_bytes()
        }
    }

    /// The values, in append order.
    #[inline]
    pub fn iter(&self) -> XorIter<'_> {
        let stream = self.w.as_bytes().get(self.hdr_len..).unwrap_or(&[]);
        XorIter::new(stream, self.count)
    }

    /// Heap bytes held (for memory accounting).
    pub fn size_bytes(&self) -> usize {
        self.w.capacity()
    }

    /// Releases unused capacity (for a chunk that will not grow much more).
    pub fn shrink_to_fit(&mut self) {
        self.w.shrink_to_fit();
    }

    /// Decodes and fully validates untrusted bytes: every value is decoded,
    /// and the result can be appended to. Accepts exactly what
    /// [`XorChunk::bytes`] can produce, up to the encoder's choice of fields
    /// (a valid `11` where `10` would do is accepted), so
    /// `from_bytes(b)?.bytes() == b`.
    ///
    /// Errors: [`ChunkError::BadHeader`], [`ChunkError::CountTooLarge`] (a
    /// count over `8 * stream bytes - 63`: the first value takes 64 bits, every
    /// other at least 1), [`ChunkError::Truncated`],
    /// [`ChunkError::TrailingBytes`], [`ChunkError::Corrupt`].
    pub fn from_bytes(b: &[u8]) -> Result<XorChunk, ChunkError> {
        let (count, hdr_len) = read_count(b)?;
        let stream = b.get(hdr_len..).unwrap_or(&[]);
        if count == 0 {
            return match stream.len() {
                0 => Ok(XorChunk::new()),
                n => Err(ChunkError::TrailingBytes(n)),
            };
        }
        let max = (stream.len() as u64 * 8).saturating_sub(63);
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
        let mut it = XorIter::new(stream, count);
        let mut prev = 0;
        for v in it.by_ref() {
            prev = v as u64;
        }
        if let Some(what) = it.corrupt {
            return Err(ChunkError::Corrupt(what));
        }
        let pad = check_stream_end(stream, it.r.bits_read())?;
        let (leading, trailing) = if it.sig == 0 {
            (NO_WINDOW, 0)
        } else {
            // sig + trailing <= 64 and leading <= 31: both fit a u8.
            ((64 - it.sig - it.trailing) as u8, it.trailing as u8)
        };
        let w = BitWriter::from_parts(b.to_vec(), pad)
            .ok_or(ChunkError::Corrupt("non-zero padding bits"))?;
        Ok(XorChunk {
            w,
            hdr_len,
            count,
            prev,
            leading,
            trailing,
        })
    }
}

impl<'a> IntoIterator for &'a XorChunk {
    type Item = i64;
    type IntoIter = XorIter<'a>;
    fn into_iter(self) -> XorIter<'a> {
        self.iter()
    }
}

/// Iterator over the values of an [`XorChunk`].
///
/// On bytes that [`XorChunk::from_bytes`] accepted (every `XorChunk` is
/// built that way or by appends) it yields exactly the appended values.
#[derive(Clone, Debug)]
pub struct XorIter<'a> {
    r: BitReader<'a>,
    /// Values left to yield.
    remaining: usize,
    /// Whether the next value is the first (64 raw bits).
    first: bool,
    prev: u64,
    /// The current window: `sig` meaningful bits above `trailing` zero bits;
    /// `sig == 0` before any window.
    sig: u32,
    trailing: u32,
    /// Set (and decoding goes on with a made-up window) on an invalid field;
    /// only possible on bytes not yet validated.
    corrupt: Option<&'static str>,
}

impl<'a> XorIter<'a> {
    fn new(stream: &'a [u8], count: usize) -> XorIter<'a> {
        XorIter {
            r: BitReader::new(stream),
            remaining: count,
            first: true,
            prev: 0,
            sig: 0,
            trailing: 0,
            corrupt: None,
        }
    }

    /// Sets the window from a `11` field's 11-bit header (`L:5 S:6`).
    #[inline]
    fn new_window(&mut self, h: u32) {
        let lead = (h >> 6) & 31;
        let mut sig = h & 63;
        if sig == 0 {
            sig = 64;
        }
        if lead + sig > 64 {
            self.corrupt = Some("leading plus significant bits exceed 64");
            sig = 64 - lead;
        }
        self.sig = sig;
        self.trailing = 64 - lead - sig;
    }
}

impl Iterator for XorIter<'_> {
    type Item = i64;

    #[inline]
    fn next(&mut self) -> Option<i64> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        if self.first {
            self.first = false;
            self.prev = self.r.read_bits_wide(64);
        } else {
            if !self.r.read_bit() {
                // '0': unchanged.
                return Some(self.prev as i64);
            }
            // The rest of the longest field head: '1' L:5 S:6.
            let head = self.r.peek_bits(12);
            if head >> 11 == 1 {
                self.r.skip_bits(12);
                self.new_window(head as u32 & 0x7ff);
            } else {
                self.r.skip_bits(1);
                if self.sig == 0 {
                    self.corrupt = Some("'10' field before any window");
                    self.sig = 64;
                }
            }
            let bits = self.r.read_bits_wide(self.sig);
            self.prev ^= bits << self.trailing;
        }
        Some(self.prev as i64)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for XorIter<'_> {}
impl std::iter::FusedIterator for XorIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(vs: &[i64]) -> XorChunk {
        let mut c = XorChunk::new();
        for &v in vs {
            c.append(v);
        }
        c
    }

    #[test]
    fn worked_example_from_the_format_doc() {
        // docs/format/chunks.md walks through these bytes.
        let vs = [10_000_000, 10_000_000, 20_000_000, 30_000_000];
        let c = chunk(&vs);
        #[rustfmt::skip]
        let want = [
            0x04,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x98, 0x96, 0x80,
            0x7f, 0x68, 0x03, 0x53, 0x77, 0x80, 0x1f, 0x1d, 0xd0,
        ];
        assert_eq!(c.bytes(), &want);
        assert_eq!(c.iter().collect::<Vec<_>>(), vs);
    }

    #[test]
    fn sixty_four_significant_bits() {
        // d = all ones: leading 0, trailing 0, S = 64 written as 0.
        let c = chunk(&[0, -1, 0, -1]);
        let b = c.bytes();
        assert_eq!(b[0], 4);
        // After v0 (8 bytes): '11' 00000 000000 then 64 ones.
        assert_eq!(b[9], 0b1100_0000);
        assert_eq!(c.iter().collect::<Vec<_>>(), [0, -1, 0, -1]);
        assert_eq!(XorChunk::from_bytes(b).as_ref(), Ok(&c));
    }

    #[test]
    fn ten_before_any_window_is_corrupt() {
        let mut w = BitWriter::new();
        w.buf_mut().push(2);
        w.write_bits(5, 64);
        w.write_bits(0b10, 2);
        w.write_bits(u64::MAX, 64);
        assert!(matches!(
            XorChunk::from_bytes(w.as_bytes()),
            Err(ChunkError::Corrupt(_))
        ));
    }

    #[test]
    fn window_wider_than_64_bits_is_corrupt() {
        let mut w = BitWriter::new();
        w.buf_mut().push(2);
        w.write_bits(5, 64);
        // '11', L = 31, S = 40: 71 bits.
        w.write_bits((0b11 << 11) | (31 << 6) | 40, 13);
        w.write_bits(1, 40);
        assert!(matches!(
            XorChunk::from_bytes(w.as_bytes()),
            Err(ChunkError::Corrupt(_))
        ));
    }
}

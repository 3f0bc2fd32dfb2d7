//! Varints as in Go's `encoding/binary` (LEB128: 7 bits per byte, low groups
//! first, high bit set on every byte but the last) and zigzag for signed
//! values. Decoding accepts only the shortest form, so every value has one
//! encoding and a decoded chunk re-encodes to the same bytes.

use super::ChunkError;

/// Longest uvarint of a `u64`.
pub(crate) const MAX_LEN: usize = 10;

/// Zigzag: 0, -1, 1, -2, ... → 0, 1, 2, 3, ...
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends the uvarint of `v` to `buf`.
#[inline]
pub(crate) fn put(buf: &mut Vec<u8>, mut v: u64) {
    // Byte pushes: a variable-length copy would call memmove.
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Encoded length of `v`.
#[inline]
pub(crate) fn len(v: u64) -> usize {
    // ceil(significant bits / 7), with 0 taking one byte.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Writes the uvarint of `v` at `b[i..]`, which must have room; returns
/// the index after it.
#[inline]
fn write_at(b: &mut [u8], mut i: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        if let Some(x) = b.get_mut(i) {
            *x = (v as u8) | 0x80;
        }
        v >>= 7;
        i += 1;
    }
    if let Some(x) = b.get_mut(i) {
        *x = v as u8;
    }
    i + 1
}

/// Decodes a uvarint at `*pos`, advancing `*pos` past it.
///
/// Errors: [`ChunkError::Truncated`] when the bytes end inside it,
/// [`ChunkError::Corrupt`] for an overlong form or one that overflows a `u64`.
///
/// A one-byte uvarint (most of the indexes' and rows' numbers) is read
/// inline; longer ones by a call.
#[inline]
pub(crate) fn read(b: &[u8], pos: &mut usize) -> Result<u64, ChunkError> {
    match b.get(*pos) {
        Some(&x) if x < 0x80 => {
            *pos += 1;
            Ok(u64::from(x))
        }
        _ => read_long(b, pos),
    }
}

/// [`read`] of a uvarint of any length.
#[inline(never)]
fn read_long(b: &[u8], pos: &mut usize) -> Result<u64, ChunkError> {
    let mut x = 0u64;
    for i in 0..MAX_LEN {
        let Some(&byte) = b.get(*pos) else {
            return Err(ChunkError::Truncated);
        };
        *pos += 1;
        if i == MAX_LEN - 1 && byte > 1 {
            return Err(ChunkError::Corrupt("varint overflows 64 bits"));
        }
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if byte == 0 && i > 0 {
                return Err(ChunkError::Corrupt("overlong varint"));
            }
            return Ok(x);
        }
    }
    // Unreachable: the tenth byte is either rejected or ends the varint.
    Err(ChunkError::Corrupt("varint overflows 64 bits"))
}

/// Rewrites the header `buf[..*hdr_len]` to be `fields` as consecutive
/// uvarints, moving the rest of `buf` when the header's length changes.
/// Returns how far the rest moved (positive: to the right).
#[inline]
pub(crate) fn rewrite_header(buf: &mut Vec<u8>, hdr_len: &mut usize, fields: &[u64]) -> isize {
    let n: usize = fields.iter().map(|&f| len(f)).sum();
    if n == *hdr_len && buf.len() >= n {
        let mut i = 0;
        for &f in fields {
            i = write_at(buf, i, f);
        }
        0
    } else {
        resize_header(buf, hdr_len, fields, n)
    }
}

/// Sets the single-uvarint count header `buf[..*hdr_len]` to `n`: two fast
/// paths for 1- and 2-byte headers, else [`rewrite_header`].
#[inline]
pub(crate) fn set_count(buf: &mut Vec<u8>, hdr_len: &mut usize, n: u64) {
    if *hdr_len == 1 && n < 1 << 7 {
        if let Some(b) = buf.first_mut() {
            *b = n as u8;
            return;
        }
    } else if *hdr_len == 2 && (1 << 7..1 << 14).contains(&n) {
        if let Some([lo, hi]) = buf.first_chunk_mut::<2>() {
            *lo = (n as u8) | 0x80;
            *hi = (n >> 7) as u8;
            return;
        }
    }
    rewrite_header(buf, hdr_len, &[n]);
}

/// The rare case of [`rewrite_header`]: a field crossed a power of 128.
#[cold]
fn resize_header(buf: &mut Vec<u8>, hdr_len: &mut usize, fields: &[u64], n: usize) -> isize {
    let mut hdr = Vec::with_capacity(n);
    for &f in fields {
        put(&mut hdr, f);
    }
    let old = *hdr_len;
    buf.splice(..old.min(buf.len()), hdr);
    *hdr_len = n;
    n as isize - old as isize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lengths() {
        let vals = [
            0,
            1,
            127,
            128,
            16383,
            16384,
            1 << 35,
            u64::MAX >> 1,
            u64::MAX,
        ];
        for v in vals {
            let mut buf = Vec::new();
            put(&mut buf, v);
            assert_eq!(buf.len(), len(v), "{v}");
            let mut pos = 0;
            assert_eq!(read(&buf, &mut pos), Ok(v));
            assert_eq!(pos, buf.len());
        }
        assert_eq!(len(u64::MAX), MAX_LEN);
        for v in [0, -1, 1, i64::MIN, i64::MAX, -64, 64] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn rejects_non_canonical_and_overflow() {
        let mut pos = 0;
        assert!(read(&[0x80, 0x00], &mut pos).is_err());
        let mut pos = 0;
        assert_eq!(read(&[0x80], &mut pos), Err(ChunkError::Truncated));
        let mut over = [0xFFu8; 10];
        over[9] = 0x02;
        let mut pos = 0;
        assert!(read(&over, &mut pos).is_err());
        over[9] = 0x01;
        let mut pos = 0;
        assert_eq!(read(&over, &mut pos), Ok(u64::MAX));
    }

    #[test]
    fn header_rewrite_moves_the_rest() {
        let mut buf = vec![5, 0xAA, 0xBB];
        let mut hdr = 1;
        assert_eq!(rewrite_header(&mut buf, &mut hdr, &[127]), 0);
        assert_eq!(buf, [127, 0xAA, 0xBB]);
        assert_eq!(rewrite_header(&mut buf, &mut hdr, &[128]), 1);
        assert_eq!(buf, [0x80, 0x01, 0xAA, 0xBB]);
        assert_eq!(hdr, 2);
        assert_eq!(rewrite_header(&mut buf, &mut hdr, &[300, 1]), 1);
        assert_eq!(buf, [0xAC, 0x02, 0x01, 0xAA, 0xBB]);
    }
}

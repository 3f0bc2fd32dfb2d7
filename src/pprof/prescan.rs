//! A pass over the protobuf wire format, before prost sees the bytes, that
//! counts what decoding would allocate and rejects over-limit input.
//!
//! It allocates nothing and reads each byte at most once: top-level fields
//! are walked tag by tag; `Sample` and `Location` bodies are walked one level
//! deeper (to count location ids, values, labels and lines); packed varint
//! arrays are counted by their terminating bytes (bytes below `0x80`), a
//! branch-free loop. Everything else is skipped by its length.
//!
//! It is not a validator: it only fails where prost would fail too (truncated
//! or malformed framing, a counted field with the wrong wire type) or where a
//! limit is exceeded. Semantic checks are [`super::validate`]'s.

use std::mem::size_of;

use crate::proto::pprof::{Function, Label, Line, Location, Mapping, Sample, ValueType};

use super::{DecodeLimits, PprofError};

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const I32: u8 = 5;

/// Nesting bound for (unknown) groups; prost's own recursion limit is 100.
const MAX_GROUP_DEPTH: usize = 100;

/// Element counts of the top-level repeated fields, and the estimated heap
/// footprint of the decoded `Profile`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Counts {
    pub sample_types: usize,
    pub samples: usize,
    pub mappings: usize,
    pub locations: usize,
    pub functions: usize,
    pub strings: usize,
    pub comments: usize,
    /// Bytes the decoded `Profile` will own on the heap, assuming the
    /// top-level vectors are reserved exactly (as `decode` does) and nested
    /// vectors grow by pushing (capacity `max(4, n.next_power_of_two())`);
    /// strings take `max(8, len)` bytes (prost copies them with `reserve`).
    pub heap_bytes: usize,
}

/// Scans `buf` (an uncompressed `Profile` message) and checks every count
/// limit and the heap limit.
pub(crate) fn scan(buf: &[u8], limits: &DecodeLimits) -> Result<Counts, PprofError> {
    let mut c = Counts::default();
    let mut nested_heap = 0usize;
    let mut string_bytes = 0usize;
    let mut r = Cursor::new(buf);
    while !r.at_end() {
        let (field, wt) = r.key()?;
        match (field, wt) {
            (1, LEN) => {
                r.bytes(field)?;
                c.sample_types += 1;
                over(c.sample_types, limits.max_sample_types, "sample type count")?;
            }
            (2, LEN) => {
                let body = r.bytes(field)?;
                nested_heap += scan_sample(body, c.samples, limits)?;
                c.samples += 1;
                over(c.samples, limits.max_samples, "sample count")?;
            }
            (3, LEN) => {
                r.bytes(field)?;
                c.mappings += 1;
                over(c.mappings, limits.max_mappings, "mapping count")?;
            }
            (4, LEN) => {
                let body = r.bytes(field)?;
                nested_heap += scan_location(body, c.locations, limits)?;
                c.locations += 1;
                over(c.locations, limits.max_locations, "location count")?;
            }
            (5, LEN) => {
                r.bytes(field)?;
                c.functions += 1;
                over(c.functions, limits.max_functions, "function count")?;
            }
            (6, LEN) => {
                let s = r.bytes(field)?;
                if s.len() > limits.max_string_bytes {
                    return Err(PprofError::too_large(
                        format!("string {}: length {} bytes", c.strings, s.len()),
                        limits.max_string_bytes,
                    ));
                }
                // prost copies with `Vec::reserve(len)`: at least 8 bytes.
                string_bytes += if s.is_empty() { 0 } else { s.len().max(8) };
                c.strings += 1;
                over(c.strings, limits.max_strings, "string table size")?;
            }
            (13, LEN) => c.comments += count_varints(r.bytes(field)?),
            (13, VARINT) => {
                r.skip_varint()?;
                c.comments += 1;
            }
            (1..=6, _) | (13, _) => return Err(wrong_wire_type("profile", field, wt, r.pos)),
            _ => r.skip(field, wt, 0)?,
        }
    }
    // Every term is bounded by the body length times a small constant, so
    // none of these sums can overflow on a 64-bit target; saturate anyway.
    c.heap_bytes = [
        c.sample_types * size_of::<ValueType>(),
        c.samples * size_of::<Sample>(),
        c.mappings * size_of::<Mapping>(),
        c.locations * size_of::<Location>(),
        c.functions * size_of::<Function>(),
        c.strings * size_of::<String>(),
        string_bytes,
        c.comments * size_of::<i64>(),
        nested_heap,
    ]
    .iter()
    .fold(0usize, |a, b| a.saturating_add(*b));
    if c.heap_bytes > limits.max_heap_bytes {
        return Err(PprofError::too_large(
            format!("estimated decoded size {} bytes", c.heap_bytes),
            limits.max_heap_bytes,
        ));
    }
    Ok(c)
}

/// Scans one `Sample`; returns the heap its vectors will own.
fn scan_sample(body: &[u8], idx: usize, limits: &DecodeLimits) -> Result<usize, PprofError> {
    let (mut locs, mut values, mut labels) = (0usize, 0usize, 0usize);
    let mut r = Cursor::new(body);
    while !r.at_end() {
        let (field, wt) = r.key()?;
        match (field, wt) {
            (1, LEN) => locs += count_varints(r.bytes(field)?),
            (1, VARINT) => {
                r.skip_varint()?;
                locs += 1;
            }
            (2, LEN) => values += count_varints(r.bytes(field)?),
            (2, VARINT) => {
                r.skip_varint()?;
                values += 1;
            }
            (3, LEN) => {
                r.bytes(field)?;
                labels += 1;
            }
            (1..=3, _) => return Err(wrong_wire_type("sample", field, wt, r.pos)),
            _ => r.skip(field, wt, 0)?,
        }
    }
    if locs > limits.max_stack_depth {
        return Err(PprofError::too_large(
            format!("sample {idx}: stack depth {locs}"),
            limits.max_stack_depth,
        ));
    }
    if labels > limits.max_labels_per_sample {
        return Err(PprofError::too_large(
            format!("sample {idx}: label count {labels}"),
            limits.max_labels_per_sample,
        ));
    }
    // A valid sample has exactly one value per sample type.
    if values > limits.max_sample_types {
        return Err(PprofError::too_large(
            format!("sample {idx}: value count {values}"),
            limits.max_sample_types,
        ));
    }
    Ok(vec_heap::<u64>(locs) + vec_heap::<i64>(values) + vec_heap::<Label>(labels))
}

/// Scans one `Location`; returns the heap its line vector will own.
fn scan_location(body: &[u8], idx: usize, limits: &DecodeLimits) -> Result<usize, PprofError> {
    let mut lines = 0usize;
    let mut r = Cursor::new(body);
    while !r.at_end() {
        let (field, wt) = r.key()?;
        match (field, wt) {
            (4, LEN) => {
                r.bytes(field)?;
                lines += 1;
            }
            (4, _) => return Err(wrong_wire_type("location", field, wt, r.pos)),
            _ => r.skip(field, wt, 0)?,
        }
    }
    if lines > limits.max_lines_per_location {
        return Err(PprofError::too_large(
            format!("location {idx}: line count {lines}"),
            limits.max_lines_per_location,
        ));
    }
    Ok(vec_heap::<Line>(lines))
}

/// Heap owned by a `Vec<T>` of `n` elements built by pushing one at a time
/// (std's growth: 0, then 4, then doubling, for 1 < size_of::<T>() <= 1024).
fn vec_heap<T>(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n.next_power_of_two().max(4) * size_of::<T>()
    }
}

/// Number of varints in a packed array: one terminating byte (< 0x80) each.
/// Counted eight bytes at a time (SWAR): the arrays are mostly shorter than a
/// SIMD loop's stride.
#[inline]
pub(crate) fn count_varints(bytes: &[u8]) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut chunks = bytes.chunks_exact(8);
    let mut n = 0usize;
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        // One bit per byte whose high bit is clear, moved to bit 0 of its
        // byte; the multiply sums the eight bytes (at most 8) into the top one.
        let ends = (!u64::from_le_bytes(a) & HIGH) >> 7;
        n += (ends.wrapping_mul(ONES) >> 56) as usize;
    }
    n + chunks.remainder().iter().filter(|b| **b < 0x80).count()
}

fn over(n: usize, limit: usize, what: &str) -> Result<(), PprofError> {
    if n > limit {
        Err(PprofError::too_large(what, limit))
    } else {
        Ok(())
    }
}

#[cold]
#[inline(never)]
fn wrong_wire_type(msg: &str, field: u32, wt: u8, pos: usize) -> PprofError {
    PprofError::Protobuf(format!(
        "{msg} field {field} has wire type {wt} (near byte {pos} of its message), which that field cannot have"
    ))
}

/// A read position in a protobuf message. The hot paths (one- and two-byte
/// varints, one-byte keys) are small and inlined; everything that formats an
/// error is out of line.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    #[inline(always)]
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// A base-128 varint, as prost accepts it: at most 10 bytes, the 10th
    /// at most 1.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, PprofError> {
        // Fast paths: keys, lengths and small values take one or two bytes.
        if let Some(&b0) = self.buf.get(self.pos) {
            if b0 < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b0));
            }
            if let Some(&b1) = self.buf.get(self.pos + 1) {
                if b1 < 0x80 {
                    self.pos += 2;
                    return Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7));
                }
            }
        }
        self.varint_slow()
    }

    /// Skips a varint without computing its value (same acceptance as
    /// [`Cursor::varint`]).
    #[inline(always)]
    fn skip_varint(&mut self) -> Result<(), PprofError> {
        let rest = &self.buf[self.pos..];
        match rest.iter().take(10).position(|b| *b < 0x80) {
            Some(i) if i < 9 || rest[9] <= 1 => {
                self.pos += i + 1;
                Ok(())
            }
            _ => self.varint_slow().map(|_| ()),
        }
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, PprofError> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(PprofError::Protobuf(format!(
                    "truncated varint at byte {} of its message",
                    self.pos
                )));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                break;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(PprofError::Protobuf(format!(
            "varint overflows 64 bits at byte {} of its message",
            self.pos
        )))
    }

    /// A field key: (field number, wire type).
    #[inline(always)]
    fn key(&mut self) -> Result<(u32, u8), PprofError> {
        // Fast path: fields 1–15 with a valid wire type are one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if (8..0x80).contains(&b) && b & 7 <= 5 {
                self.pos += 1;
                return Ok((u32::from(b >> 3), b & 7));
            }
        }
        self.key_slow()
    }

    #[cold]
    #[inline(never)]
    fn key_slow(&mut self) -> Result<(u32, u8), PprofError> {
        let at = self.pos;
        let key = self.varint()?;
        let Ok(key) = u32::try_from(key) else {
            return Err(PprofError::Protobuf(format!(
                "invalid field key {key} at byte {at} of its message"
            )));
        };
        if key & 7 > 5 {
            return Err(PprofError::Protobuf(format!(
                "invalid wire type {} at byte {at} of its message",
                key & 7
            )));
        }
        if key >> 3 == 0 {
            return Err(PprofError::Protobuf(format!(
                "field number 0 at byte {at} of its message"
            )));
        }
        // The wire type is 3 bits, so the cast is lossless.
        Ok((key >> 3, (key & 7) as u8))
    }

    /// The payload of a length-delimited field.
    #[inline(always)]
    fn bytes(&mut self, field: u32) -> Result<&'a [u8], PprofError> {
        let len = self.varint()?;
        let rest = self.buf.len() - self.pos;
        if len <= rest as u64 {
            // len <= rest, so it fits in usize.
            let s = &self.buf[self.pos..self.pos + len as usize];
            self.pos += len as usize;
            return Ok(s);
        }
        Err(length_error(field, len, rest))
    }

    fn advance(&mut self, n: usize, field: u32) -> Result<(), PprofError> {
        if self.buf.len() - self.pos < n {
            return Err(PprofError::Protobuf(format!(
                "field {field}: truncated fixed-width value"
            )));
        }
        self.pos += n;
        Ok(())
    }

    /// Skips a field this scan does not count.
    fn skip(&mut self, field: u32, wt: u8, depth: usize) -> Result<(), PprofError> {
        match wt {
            VARINT => self.skip_varint(),
            I64 => self.advance(8, field),
            LEN => self.bytes(field).map(|_| ()),
            I32 => self.advance(4, field),
            START_GROUP => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err(PprofError::Protobuf("groups nested too deeply".into()));
                }
                loop {
                    let (inner, iwt) = self.key()?;
                    if iwt == END_GROUP {
                        if inner != field {
                            return Err(PprofError::Protobuf(format!(
                                "group {field} closed by end-group tag {inner}"
                            )));
                        }
                        return Ok(());
                    }
                    self.skip(inner, iwt, depth + 1)?;
                }
            }
            END_GROUP => Err(PprofError::Protobuf(format!(
                "unexpected end-group tag for field {field}"
            ))),
            // `key` rejects wire types 6 and 7.
            _ => Err(PprofError::Protobuf(format!(
                "field {field}: invalid wire type {wt}"
            ))),
        }
    }
}

#[cold]
#[inline(never)]
fn length_error(field: u32, len: u64, rest: usize) -> PprofError {
    PprofError::Protobuf(format!(
        "field {field}: length {len} runs past the end of its message ({rest} bytes left)"
    ))
}

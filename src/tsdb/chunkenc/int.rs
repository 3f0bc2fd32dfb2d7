//! Integer chunk for `i64` profile values: the values divided by their
//! greatest common divisor, then deltas in bit-width buckets (after
//! Prometheus's varbit integers).
//!
//! Profile values are integer counts, often multiples of a large unit (a CPU
//! profile's values are sample counts × the period in ns). The XOR encoding
//! ([`super::XorChunk`]) spends 64 raw bits on a column's first value and 13 +
//! 26 bits on the first change between such values; here a column of one
//! value costs its varint, and a change of a few periods 5 bits.
//!
//! # Format
//! ```text
//! chunk  := uvarint(count)                 count = 0
//!         | uvarint(count) varint(v0)      count = 1, byte-aligned
//!         | uvarint(count) uvarint(scale) varint(s0) field{count-1} padding
//!         | uvarint(count) 00 uvarint(scale) varint(base) flags packed{count}
//!           padding                        the packed form, 2 <= count <= 4096
//!         | uvarint(count) 00 00 uvarint(scale) varint(base) flags p0:1 run+
//!           padding                        the packed form with presence
//!                                          runs, 2 <= count <= 4096
//! field  := '0'                            d = 0
//!         | '10'    x:3                    x: two's complement of
//!         | '110'   x:7                       d = s[i] - s[i-1] (wrapping),
//!         | '1110'  x:13                      in the smallest bucket
//!         | '11110' x:24                      that holds it
//!         | '11111' x:64
//! padding := '0'{0,7}
//! ```
//! For `count >= 2`, `scale` is the greatest common divisor of the values'
//! magnitudes (1 when every value is 0) and `s[i] = v[i] / scale`, exactly;
//! the bit stream starts at the byte after `varint(s0)`. A `w`-bit field holds
//! `-2^(w-1) <= d < 2^(w-1)`.
//!
//! # The packed form
//! Deltas suit a column whose values change rarely (a heap profile's); a
//! column whose values scatter around a level (a busy stack's CPU time,
//! each scrape an independent draw) pays for every delta the width of twice
//! the scatter, and for every absent profile (value 0) two wide deltas. The
//! packed form stores each scaled value as its offset from the column's
//! least one in a fixed width (frame of reference), with one presence bit
//! per value when the column mixes zeros and other values:
//! ```text
//! flags  := byte: z << 7 | w               w = 0..=64 bits per offset
//! packed := 'p' x:w    (z = 1)             p = 0: the value is 0 (no x)
//!         | x:w        (z = 0)             s[i] = base + x
//! ```
//! A zero byte where the scale would be marks the form (a scale is never 0).
//! `z` is 1 exactly when the column holds both 0 and other values; `base` is
//! the least coded value (the non-zero ones when `z`), so some `x` is 0, and
//! `w` is the width of the largest `x` (0 when every coded value is `base`).
//! The scale and its rules are the delta form's. The encoder writes the
//! packed form only for a column that asks for it ([`IntChunk::compact`])
//! and is shorter in it; that choice is the one freedom: a sequence has one
//! encoding in the delta form and one in the packed form, and a decoder
//! accepts both.
//!
//! # Presence runs
//! A stack is usually present in a stretch of profiles and absent in the
//! next (a code path taken for a while, a scrape's worth of sampling luck),
//! so when `z` is 1 its presence bits come in runs. A second zero byte after
//! the first codes them as runs instead (`z` must be 1):
//! ```text
//! run    := gamma(n) x:w{n}    a run of n present values (offsets as above)
//!         | gamma(n)           a run of n absent values (0)
//! gamma(n) := '0'{k} n:k+1     Elias gamma, k = floor(log2 n), 1 <= n <= count
//! ```
//! `p0` says whether the first run is present; runs alternate and their
//! lengths add up to `count` exactly. The packed form thus has two
//! variants, each with one encoding per sequence; the encoder takes runs
//! when they make the chunk shorter in bytes (ties keep the bits) and hold
//! at least [`RUN_MIN_MEAN`] values on average (a run's length reads slower
//! than a bit), and a decoder accepts both (blocks written before runs
//! have bits where runs would be shorter).
//!
//! # Invariants
//! - `w` holds exactly the serialized chunk.
//! - For `count >= 2`, `scale` is the gcd of the values and `prev` the last
//!   scaled value; for `count == 1`, `prev` is the value itself. Appending a
//!   value the scale does not divide (and the second value) re-encodes the
//!   chunk with the new gcd: the scale only shrinks, by a factor of 2 at
//!   least each time, so a chunk is re-encoded at most 64 times in its life.
//! - Decoding is strict: shortest varints and buckets, `scale >= 1`, scaled
//!   values whose gcd is 1 (or all 0 with scale 1), every `s[i] * scale` in
//!   `i64`, zero padding, nothing after it; so `from_bytes(b)?.bytes() == b`.
//! - A packed chunk is only read and summed: appending to one re-encodes it
//!   in the delta form first.

use super::bstream::{BitReader, BitWriter};
use super::{check_stream_end, read_count, varint, ChunkError};

/// Bucket widths of the bit stream, after the prefixes `10`, `110`, `1110`,
/// `11110` and `11111`.
const WIDTHS: [u32; 5] = [3, 7, 13, 24, 64];

/// The most values a chunk in the packed form holds: with `w = 0` a value
/// takes no bit, so the count is bounded apart from the chunk's length.
pub const PACKED_MAX: usize = 4096;

/// The most leading zeros of a presence run's gamma code: a run is at most
/// [`PACKED_MAX`] = 2^12 values long.
const GAMMA_MAX_ZEROS: u32 = 12;

/// Presence is coded as runs only when they hold at least this many
/// values on average (and make the chunk shorter): reading a run's length
/// costs several times a presence bit, so short runs (a stack in four
/// profiles of five at random) read slower for the byte or two they save.
const RUN_MIN_MEAN: usize = 8;

/// Bits of the Elias gamma code of `n >= 1`.
#[inline]
fn gamma_len(n: u64) -> u64 {
    2 * u64::from(63 - n.leading_zeros()) + 1
}

/// Writes the Elias gamma code of `1 <= n <= PACKED_MAX`: as many zeros as
/// `n` has bits after its leading one, then `n`'s bits.
#[inline]
fn write_gamma(w: &mut BitWriter, n: u64) {
    w.write_bits(n, gamma_len(n) as u32);
}

/// Reads an Elias gamma code; `None` when more than [`GAMMA_MAX_ZEROS`]
/// zeros lead (no run is that long; the end of the data reads as zeros).
#[inline]
fn read_gamma(r: &mut BitReader<'_>) -> Option<u64> {
    let p = r.peek_bits(GAMMA_MAX_ZEROS + 1);
    if p == 0 {
        return None;
    }
    let k = (p << (64 - (GAMMA_MAX_ZEROS + 1))).leading_zeros();
    r.skip_bits(k);
    Some(r.read_bits(k + 1))
}

/// The runs of `ss`: (whether its values are non-zero, start, length), in
/// order.
fn runs(ss: &[i64]) -> impl Iterator<Item = (bool, usize, usize)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let present = *ss.get(start)? != 0;
        let len = ss[start..]
            .iter()
            .take_while(|&&s| (s != 0) == present)
            .count();
        let run = (present, start, len);
        start += len;
        Some(run)
    })
}

/// The bits of `ss`'s presence as runs (the first run's presence bit,
/// then a gamma code per run), and the number of runs.
fn run_bits(ss: &[i64]) -> (usize, usize) {
    runs(ss).fold((1, 0), |(bits, n), (_, _, len)| {
        (bits + gamma_len(len as u64) as usize, n + 1)
    })
}

/// Bits of `x` (0 for 0).
#[inline]
fn width(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// Whether `x` fits a `w`-bit two's-complement field (`w < 64`).
#[inline]
fn fits(x: i64, w: u32) -> bool {
    let lim = 1i64 << (w - 1);
    (-lim..lim).contains(&x)
}

/// Whether `lo * scale` and `hi * scale` (so every `s * scale` with `lo <=
/// s <= hi`) are i64s.
fn scaled_fit(lo: i128, hi: i128, scale: u64) -> bool {
    let fits = |s: i128| {
        s.checked_mul(i128::from(scale))
            .is_some_and(|v| i64::try_from(v).is_ok())
    };
    fits(lo) && fits(hi)
}

/// Greatest common divisor (binary; `gcd(0, x) = x`).
#[inline]
pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// `v / scale`, exact when `scale` divides `v` (`scale` may be `2^63`).
#[inline]
fn div_exact(v: i64, scale: u64) -> i64 {
    match i64::try_from(scale) {
        // Most columns: no division at all.
        Ok(1) => v,
        // scale >= 1, so neither a division by zero nor the one overflow
        // (i64::MIN / -1) is possible; a 64-bit division is several times
        // cheaper than a 128-bit one.
        Ok(s) => v / s,
        // scale = 2^63: |v| <= 2^63, so the quotient fits an i64.
        Err(_) => (i128::from(v) / i128::from(scale)) as i64,
    }
}

/// The fields of a column's packed form (see the module docs).
#[derive(Clone, Copy)]
struct PackedPlan {
    /// The gcd of the values' magnitudes (0 when all are 0).
    gcd: u64,
    base: i64,
    /// Whether presence bits mark the zeros.
    z: bool,
    w: u32,
    /// Values coded with an offset (the non-zero ones when `z`).
    coded: usize,
    /// Whether presence is coded as runs (only when `z`).
    runs: bool,
    /// Bits of the presence runs (`p0` and the gamma codes; 0 unless
    /// `runs`).
    run_bits: usize,
}

impl PackedPlan {
    /// The plan for the scaled values `ss` (at least 2) of values whose
    /// magnitudes' gcd is `gcd`, with presence coded the shorter way.
    fn of(ss: &[i64], gcd: u64) -> PackedPlan {
        let (mut zeros, mut lo, mut hi) = (0usize, i64::MAX, i64::MIN);
        let (mut lo_nz, mut hi_nz) = (i64::MAX, i64::MIN);
        for &s in ss {
            lo = lo.min(s);
            hi = hi.max(s);
            if s == 0 {
                zeros += 1;
            } else {
                lo_nz = lo_nz.min(s);
                hi_nz = hi_nz.max(s);
            }
        }
        let z = zeros > 0 && zeros < ss.len();
        let (base, top, coded) = if z {
            (lo_nz, hi_nz, ss.len() - zeros)
        } else {
            (lo, hi, ss.len())
        };
        let bits = PackedPlan {
            gcd,
            base,
            z,
            w: width(top.wrapping_sub(base) as u64),
            coded,
            runs: false,
            run_bits: 0,
        };
        if !z {
            return bits;
        }
        // Counting the runs' gamma bits costs about what counting the runs
        // does (a separate count of the changes, to skip the gamma bits
        // where runs are too short, made packing slower), so both are
        // counted in one pass.
        let (run_bits, nruns) = run_bits(ss);
        let runs = PackedPlan {
            runs: true,
            run_bits,
            ..bits
        };
        if nruns * RUN_MIN_MEAN <= ss.len() && runs.len(ss.len()) < bits.len(ss.len()) {
            runs
        } else {
            bits
        }
    }

    /// Bytes of the chunk of `count` values in this form.
    fn len(&self, count: usize) -> usize {
        let presence = match (self.runs, self.z) {
            (true, _) => self.run_bits,
            (false, true) => count,
            (false, false) => 0,
        };
        let bits = presence + self.coded * self.w as usize;
        varint::len(count as u64)
            + 1
            + usize::from(self.runs)
            + varint::len(self.gcd.max(1))
            + varint::len(varint::zigzag(self.base))
            + 1
            + bits.div_ceil(8)
    }

    /// The packed chunk of `ss`, the scaled values this plan was made of.
    fn encode(&self, ss: &[i64]) -> IntChunk {
        let mut c = IntChunk::new();
        let buf = c.w.buf_mut();
        buf.clear();
        buf.reserve(self.len(ss.len()));
        varint::put(buf, ss.len() as u64);
        c.hdr_len = varint::len(ss.len() as u64) as u8;
        buf.push(0);
        if self.runs {
            buf.push(0);
        }
        varint::put(buf, self.gcd.max(1));
        varint::put(buf, varint::zigzag(self.base));
        buf.push((u8::from(self.z) << 7) | self.w as u8);
        let offset = |w: &mut BitWriter, s: i64| {
            if self.w > 0 {
                w.write_bits(s.wrapping_sub(self.base) as u64, self.w);
            }
        };
        if self.runs {
            c.w.write_bit(ss.first().is_some_and(|&s| s != 0));
            for (present, start, n) in runs(ss) {
                write_gamma(&mut c.w, n as u64);
                if present {
                    for &s in &ss[start..start + n] {
                        offset(&mut c.w, s);
                    }
                }
            }
        } else {
            for &s in ss {
                if self.z {
                    c.w.write_bit(s != 0);
                    if s == 0 {
                        continue;
                    }
                }
                offset(&mut c.w, s);
            }
        }
        c.count = ss.len() as u32;
        c.gcd = self.gcd;
        // The last scaled value (0 when absent).
        c.prev = ss.last().copied().unwrap_or(0);
        c.packed = true;
        c
    }
}

/// An integer chunk of `i64` values. See the [module docs](self) for the
/// format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntChunk {
    /// The serialized chunk.
    w: BitWriter,
    /// Number of values.
    count: u32,
    /// Length of the count header in bytes (0 when empty).
    hdr_len: u8,
    /// The gcd of the values' magnitudes, 0 while they are all 0
    /// (meaningful when `count >= 2`; the chunk's scale is `max(gcd, 1)`).
    gcd: u64,
    /// The last scaled value (the last value when `count == 1`).
    prev: i64,
    /// Whether the chunk is in the packed form (see the module docs).
    packed: bool,
}

impl Default for IntChunk {
    fn default() -> IntChunk {
        IntChunk::new()
    }
}

impl IntChunk {
    /// The most values a chunk holds (its count is kept in a `u32`).
    pub const MAX_SAMPLES: usize = u32::MAX as usize;

    /// An empty chunk; allocates nothing.
    pub const fn new() -> IntChunk {
        IntChunk {
            w: BitWriter::new(),
            count: 0,
            hdr_len: 0,
            gcd: 0,
            prev: 0,
            packed: false,
        }
    }

    /// A chunk of `vs`, encoded in one pass.
    ///
    /// `vs` must hold at most [`IntChunk::MAX_SAMPLES`] values (callers cut
    /// chunks long before; the head's hold 120): more panics rather than
    /// write a count no reader accepts.
    pub fn from_values(vs: &[i64]) -> IntChunk {
        Self::from_values_after(vs, Vec::new())
    }

    /// Appends the bytes of [`IntChunk::from_values`]`(vs)` to `out`: for
    /// a reader that builds many small chunks into one buffer (no
    /// allocation per chunk). `vs` must not be empty.
    pub fn encode_values_into(vs: &[i64], out: &mut Vec<u8>) {
        debug_assert!(!vs.is_empty());
        *out = Self::from_values_after(vs, std::mem::take(out))
            .w
            .into_bytes();
    }

    /// [`IntChunk::from_values`] with its bytes after those of `buf`
    /// (which [`IntChunk::encode_values_into`] takes back; any other
    /// caller passes an empty `buf`).
    fn from_values_after(vs: &[i64], buf: Vec<u8>) -> IntChunk {
        assert!(
            vs.len() <= Self::MAX_SAMPLES,
            "an integer chunk of more than {} values",
            Self::MAX_SAMPLES
        );
        let mut c = IntChunk::new();
        let Some((&v0, rest)) = vs.split_first() else {
            return c;
        };
        // Whole bytes: no unused bits.
        c.w = BitWriter::from_parts(buf, 0).unwrap_or_default();
        let buf = c.w.buf_mut();
        buf.reserve(8 + rest.len() / 2);
        varint::put(buf, vs.len() as u64);
        c.hdr_len = varint::len(vs.len() as u64) as u8;
        c.count = vs.len() as u32;
        if rest.is_empty() {
            varint::put(buf, varint::zigzag(v0));
            c.prev = v0;
            return c;
        }
        c.gcd = vs.iter().fold(0u64, |g, v| gcd(g, v.unsigned_abs()));
        let g = c.gcd.max(1);
        varint::put(buf, g);
        let s0 = div_exact(v0, g);
        varint::put(buf, varint::zigzag(s0));
        let mut prev = s0;
        for &v in rest {
            let s = div_exact(v, g);
            c.write_delta(s.wrapping_sub(prev));
            prev = s;
        }
        c.prev = prev;
        c
    }

    /// The chunk in the packed form when that is shorter (see the module
    /// docs), else `None`: for a column that will take no more values (a
    /// sealed set's). Costs a decode of the values and, when it pays, an
    /// encode.
    pub fn compact(&self) -> Option<IntChunk> {
        if self.packed || self.count < 2 || self.len() > PACKED_MAX {
            return None;
        }
        // The iterator yields the scaled values: no division.
        let mut it = self.iter();
        let ss: Vec<i64> = std::iter::from_fn(|| it.next_scaled()).collect();
        let plan = PackedPlan::of(&ss, self.gcd);
        (plan.len(ss.len()) < self.bytes().len()).then(|| plan.encode(&ss))
    }

    /// `vs` divided by their gcd, and the packed plan of them; `None` for
    /// fewer than 2 or more than [`PACKED_MAX`] values, which the packed
    /// form cannot hold.
    fn packed_plan(vs: &[i64]) -> Option<(Vec<i64>, PackedPlan)> {
        if vs.len() < 2 || vs.len() > PACKED_MAX {
            return None;
        }
        let g = vs.iter().fold(0u64, |g, v| gcd(g, v.unsigned_abs()));
        let ss: Vec<i64> = vs.iter().map(|&v| div_exact(v, g.max(1))).collect();
        let plan = PackedPlan::of(&ss, g);
        Some((ss, plan))
    }

    /// `vs` in the packed form whether or not it is shorter; `None` for
    /// fewer than 2 or more than [`PACKED_MAX`] values, which it cannot
    /// hold.
    pub fn packed(vs: &[i64]) -> Option<IntChunk> {
        let (ss, plan) = Self::packed_plan(vs)?;
        Some(plan.encode(&ss))
    }

    /// `vs` in the packed form with its presence as runs (`runs`) or as
    /// bits, whether or not that is the shorter; `None` where
    /// [`IntChunk::packed`] gives `None`, and for runs on values that do
    /// not mix zeros and others (which have no presence to code).
    pub fn packed_with_presence(vs: &[i64], runs: bool) -> Option<IntChunk> {
        let (ss, plan) = Self::packed_plan(vs)?;
        let plan = match (runs, plan.z) {
            (true, false) => return None,
            (true, true) => PackedPlan {
                runs: true,
                run_bits: run_bits(&ss).0,
                ..plan
            },
            (false, _) => PackedPlan {
                runs: false,
                run_bits: 0,
                ..plan
            },
        };
        Some(plan.encode(&ss))
    }

    /// Whether the chunk is in the packed form.
    pub fn is_packed(&self) -> bool {
        self.packed
    }

    /// Whether the chunk is in the packed form with its presence coded as
    /// runs.
    pub fn has_presence_runs(&self) -> bool {
        self.packed && self.bytes().get(usize::from(self.hdr_len) + 1) == Some(&0)
    }

    /// Appends a value.
    ///
    /// The chunk must hold fewer than [`IntChunk::MAX_SAMPLES`] values (see
    /// [`IntChunk::from_values`]); appending to a full chunk panics.
    #[inline]
    pub fn append(&mut self, v: i64) {
        assert!(self.count < u32::MAX, "append to a full integer chunk");
        // The scale stays when it divides v; while every value is 0 (gcd 0,
        // scale 1), only another 0 keeps it.
        let keeps_scale = match self.gcd {
            0 => v == 0,
            g => v.unsigned_abs() % g == 0,
        };
        if self.count >= 2 && keeps_scale && !self.packed {
            let s = div_exact(v, self.gcd.max(1));
            self.write_delta(s.wrapping_sub(self.prev));
            self.prev = s;
            self.set_count(self.count + 1);
        } else if self.count == 0 {
            *self = IntChunk::from_values(&[v]);
        } else {
            self.reencode_with(v);
        }
    }

    /// Re-encodes the chunk with `v` appended (a new scale, or a packed
    /// chunk in the delta form).
    #[cold]
    fn reencode_with(&mut self, v: i64) {
        let mut vs: Vec<i64> = Vec::with_capacity(self.len() + 1);
        vs.extend(self.iter());
        vs.push(v);
        *self = IntChunk::from_values(&vs);
    }

    /// Writes one field for the scaled delta `d`.
    #[inline]
    fn write_delta(&mut self, d: i64) {
        let u = d as u64;
        if d == 0 {
            self.w.write_bits(0, 1);
        } else if fits(d, 3) {
            self.w.write_bits((0b10 << 3) | (u & 0x7), 5);
        } else if fits(d, 7) {
            self.w.write_bits((0b110 << 7) | (u & 0x7f), 10);
        } else if fits(d, 13) {
            self.w.write_bits((0b1110 << 13) | (u & 0x1fff), 17);
        } else if fits(d, 24) {
            self.w.write_bits((0b11110 << 24) | (u & 0xff_ffff), 29);
        } else {
            self.w.write_bits(0b11111, 5);
            self.w.write_bits(u, 64);
        }
    }

    #[inline]
    fn set_count(&mut self, n: u32) {
        self.count = n;
        let mut hdr = usize::from(self.hdr_len);
        varint::set_count(self.w.buf_mut(), &mut hdr, u64::from(n));
        // A u32's uvarint is at most 5 bytes.
        self.hdr_len = hdr as u8;
    }

    /// Number of values.
    #[inline]
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the chunk holds no value.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The last value appended, if any.
    pub fn last(&self) -> Option<i64> {
        match self.count {
            0 => None,
            1 => Some(self.prev),
            _ => Some(self.prev.wrapping_mul(self.gcd.max(1) as i64)),
        }
    }

    /// The serialized chunk; free.
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
    pub fn iter(&self) -> IntIter<'_> {
        IntIter::new(self.w.as_bytes(), usize::from(self.hdr_len), self.len())
    }

    /// The values of the chunk bytes `b`, which must be the bytes of a
    /// chunk ([`IntChunk::bytes`], or accepted by [`IntChunk::from_bytes`]):
    /// a column kept as bytes alone is read without copying. Other bytes
    /// yield wrong values or fewer, never a panic.
    pub fn iter_bytes(b: &[u8]) -> IntIter<'_> {
        match read_count(b) {
            Ok((count, hdr_len)) => IntIter::new(b, hdr_len, usize::try_from(count).unwrap_or(0)),
            Err(_) => IntIter::new(&[], 0, 0),
        }
    }

    /// [`IntChunk::sum`] of the chunk bytes `b` (see
    /// [`IntChunk::iter_bytes`]).
    pub fn sum_bytes(b: &[u8]) -> i64 {
        Self::sum_iter(Self::iter_bytes(b))
    }

    /// The sum of the values, wrapping (as adding them one by one would):
    /// the scaled values are summed and multiplied once.
    pub fn sum(&self) -> i64 {
        Self::sum_iter(self.iter())
    }

    fn sum_iter(mut it: IntIter<'_>) -> i64 {
        let scale = it.scale;
        let mut s: i64 = 0;
        match it.packed {
            Some(p) => s = it.sum_packed(p),
            None if it.first && it.remaining > 0 => s = it.sum_deltas(),
            None => {
                while let Some(x) = it.next_scaled() {
                    s = s.wrapping_add(x);
                }
            }
        }
        s.wrapping_mul(scale as i64)
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
    /// [`IntChunk::bytes`] can produce, so `from_bytes(b)?.bytes() == b`.
    ///
    /// Errors: [`ChunkError::BadHeader`], [`ChunkError::CountTooLarge`] (the
    /// scale and the first value take a byte each, every other value a bit),
    /// [`ChunkError::Truncated`], [`ChunkError::TrailingBytes`],
    /// [`ChunkError::Corrupt`].
    pub fn from_bytes(b: &[u8]) -> Result<IntChunk, ChunkError> {
        let p = Self::parse(b)?;
        let mut c = IntChunk::new();
        if p.count == 0 {
            // An empty chunk writes its header when asked for its bytes.
            return Ok(c);
        }
        c.w = BitWriter::from_parts(b.to_vec(), p.pad)
            .ok_or(ChunkError::Corrupt("non-zero padding bits"))?;
        c.count = p.count;
        c.hdr_len = p.hdr_len;
        c.gcd = p.gcd;
        c.prev = p.prev;
        c.packed = p.packed;
        Ok(c)
    }

    /// The number of values in `b` if [`IntChunk::from_bytes`] accepts it
    /// (the same checks, without copying the bytes): for readers that
    /// iterate the bytes in place ([`IntChunk::iter_bytes`]).
    pub fn check_bytes(b: &[u8]) -> Result<usize, ChunkError> {
        let p = Self::parse(b)?;
        if p.pad > 0
            && b.last()
                .is_none_or(|&last| last & ((1u8 << p.pad) - 1) != 0)
        {
            return Err(ChunkError::Corrupt("non-zero padding bits"));
        }
        Ok(p.count as usize)
    }

    /// Reads and checks every field of `b` but the padding bits' values.
    fn parse(b: &[u8]) -> Result<Parsed, ChunkError> {
        let (count, hdr_len) = read_count(b)?;
        let body = b.get(hdr_len..).unwrap_or(&[]);
        if count >= 2 && body.first() == Some(&0) {
            return Self::parse_packed(b, count, hdr_len);
        }
        let n = body.len() as u64;
        let max = match n {
            0 => 0,
            1 => 1,
            _ => (n - 2) * 8 + 1,
        }
        .min(Self::MAX_SAMPLES as u64);
        if count > max {
            return Err(ChunkError::CountTooLarge {
                what: "samples",
                claimed: count,
                max,
                len: b.len(),
            });
        }
        // count <= MAX_SAMPLES = u32::MAX; a u64's uvarint is at most 10
        // bytes.
        let mut p = Parsed {
            count: count as u32,
            hdr_len: hdr_len as u8,
            gcd: 0,
            prev: 0,
            pad: 0,
            packed: false,
        };
        match count {
            0 => match body.len() {
                0 => Ok(p),
                n => Err(ChunkError::TrailingBytes(n)),
            },
            1 => {
                let mut pos = 0;
                let v0 = varint::unzigzag(varint::read(body, &mut pos)?);
                if pos != body.len() {
                    return Err(ChunkError::TrailingBytes(body.len() - pos));
                }
                p.prev = v0;
                Ok(p)
            }
            _ => {
                let mut pos = 0;
                let scale = varint::read(body, &mut pos)?;
                if scale == 0 || scale > 1 << 63 {
                    return Err(ChunkError::Corrupt("scale out of range"));
                }
                varint::read(body, &mut pos)?;
                // The header was read above: the iterator reads it again
                // without error.
                let mut it = IntIter::new(b, hdr_len, count as usize);
                let mut g = 0u64;
                let (mut prev, mut lo, mut hi) = (0, i64::MAX, i64::MIN);
                while let Some(s) = it.next_scaled_checked() {
                    lo = lo.min(s);
                    hi = hi.max(s);
                    // Once 1, the gcd stays 1.
                    if g != 1 {
                        g = gcd(g, s.unsigned_abs());
                    }
                    prev = s;
                }
                if let Some(what) = it.corrupt {
                    return Err(ChunkError::Corrupt(what));
                }
                if !scaled_fit(i128::from(lo), i128::from(hi), scale) {
                    return Err(ChunkError::Corrupt("value overflows 64 bits"));
                }
                if g > 1 || (g == 0 && scale != 1) {
                    return Err(ChunkError::Corrupt("scale is not the values' gcd"));
                }
                p.pad = check_stream_end(it.r_data, it.r.bits_read())?;
                p.gcd = if g == 0 { 0 } else { scale };
                p.prev = prev;
                Ok(p)
            }
        }
    }

    /// [`IntChunk::parse`] of a chunk in the packed form (`count >= 2`, a
    /// zero byte after the count): every rule of the module docs.
    fn parse_packed(b: &[u8], count: u64, hdr_len: usize) -> Result<Parsed, ChunkError> {
        if count > PACKED_MAX as u64 {
            return Err(ChunkError::CountTooLarge {
                what: "packed samples",
                claimed: count,
                max: PACKED_MAX as u64,
                len: b.len(),
            });
        }
        let body = b.get(hdr_len..).unwrap_or(&[]);
        let PackedHeader {
            scale,
            base,
            z,
            w,
            runs,
            stream,
        } = PackedHeader::read(body)?;
        let stream = body.get(stream..).unwrap_or(&[]);
        if scale == 0 || scale > 1 << 63 {
            return Err(ChunkError::Corrupt("scale out of range"));
        }
        if w > 64 {
            return Err(ChunkError::Corrupt("packed width over 64 bits"));
        }
        if runs && !z {
            return Err(ChunkError::Corrupt(
                "presence runs on a column without zeros",
            ));
        }
        let mut r = BitReader::new(stream);
        let (mut zeros, mut min_x, mut max_x) = (0u64, u64::MAX, 0u64);
        let (mut g, mut prev) = (0u64, 0i64);
        // With `runs`: the current run's presence, and its values left.
        let mut present = runs && !r.read_bit();
        let mut left = 0u64;
        for i in 0..count {
            let here = if runs {
                if left == 0 {
                    left =
                        read_gamma(&mut r).ok_or(ChunkError::Corrupt("malformed presence run"))?;
                    if left > count - i {
                        return Err(ChunkError::Corrupt("presence runs past the column's end"));
                    }
                    present = !present;
                }
                left -= 1;
                present
            } else {
                !z || r.read_bit()
            };
            let s = if !here {
                zeros += 1;
                0
            } else {
                let x = match w {
                    0 => 0,
                    1..=56 => r.read_bits(w),
                    _ => r.read_bits_wide(w),
                };
                min_x = min_x.min(x);
                max_x = max_x.max(x);
                let s = i128::from(base) + i128::from(x);
                if s == 0 {
                    if z {
                        return Err(ChunkError::Corrupt("a zero coded as present"));
                    }
                    zeros += 1;
                }
                s
            };
            // Whether every s * scale is an i64 is checked after the loop,
            // from the least and the greatest x; until then s may wrap.
            let s = s as i64;
            // Once 1, the gcd stays 1.
            if g != 1 {
                g = gcd(g, s.unsigned_abs());
            }
            prev = s;
        }
        if min_x <= max_x {
            let (lo, hi) = (
                i128::from(base) + i128::from(min_x),
                i128::from(base) + i128::from(max_x),
            );
            if !scaled_fit(lo, hi, scale) {
                return Err(ChunkError::Corrupt("value overflows 64 bits"));
            }
        }
        if z != (zeros > 0 && zeros < count) {
            return Err(ChunkError::Corrupt(
                "presence bits not exactly on a column of zeros and other values",
            ));
        }
        if min_x != 0 || width(max_x) != w {
            return Err(ChunkError::Corrupt("packed base or width not the least"));
        }
        if g > 1 || (g == 0 && scale != 1) {
            return Err(ChunkError::Corrupt("scale is not the values' gcd"));
        }
        Ok(Parsed {
            // count <= PACKED_MAX.
            count: count as u32,
            hdr_len: hdr_len as u8,
            gcd: if g == 0 { 0 } else { scale },
            prev,
            pad: check_stream_end(stream, r.bits_read())?,
            packed: true,
        })
    }
}

/// The fields before a packed chunk's bit stream, as written (the
/// validator checks them; the iterator trusts validated bytes).
struct PackedHeader {
    scale: u64,
    base: i64,
    z: bool,
    w: u32,
    /// A second zero byte: presence coded as runs.
    runs: bool,
    /// Where the bit stream starts in the body.
    stream: usize,
}

impl PackedHeader {
    /// Reads the header from `body`, the chunk after its count, which
    /// starts with the packed form's zero byte.
    #[inline]
    fn read(body: &[u8]) -> Result<PackedHeader, ChunkError> {
        let runs = body.get(1) == Some(&0);
        let mut pos = 1 + usize::from(runs);
        let scale = varint::read(body, &mut pos)?;
        let base = varint::unzigzag(varint::read(body, &mut pos)?);
        let flags = *body.get(pos).ok_or(ChunkError::Truncated)?;
        Ok(PackedHeader {
            scale,
            base,
            z: flags & 0x80 != 0,
            w: u32::from(flags & 0x7f),
            runs,
            stream: pos + 1,
        })
    }
}

/// What [`IntChunk::parse`] read: the fields an appendable chunk needs.
struct Parsed {
    count: u32,
    hdr_len: u8,
    gcd: u64,
    prev: i64,
    /// Padding bits in the last byte.
    pad: u32,
    packed: bool,
}

impl<'a> IntoIterator for &'a IntChunk {
    type Item = i64;
    type IntoIter = IntIter<'a>;
    fn into_iter(self) -> IntIter<'a> {
        self.iter()
    }
}

/// Iterator over the values of an [`IntChunk`].
///
/// On bytes that [`IntChunk::from_bytes`] accepted (every `IntChunk` is
/// built that way or by appends) it yields exactly the appended values.
#[derive(Clone, Debug)]
pub struct IntIter<'a> {
    r: BitReader<'a>,
    /// The bit stream's bytes (empty when `count < 2`).
    r_data: &'a [u8],
    /// Values left to yield.
    remaining: usize,
    /// Whether the next value is the first.
    first: bool,
    /// The first scaled value.
    s0: i64,
    /// The current scaled value.
    s: i64,
    /// The gcd (1 when `count < 2`).
    scale: u64,
    /// The packed form's fields, when the chunk is in it.
    packed: Option<Packed>,
    /// With presence runs: values left in the current run, and whether
    /// they are present.
    run_left: u64,
    present: bool,
    /// Set on an invalid header or field; only possible on bytes not yet
    /// validated.
    corrupt: Option<&'static str>,
}

/// What an [`IntIter`] reads a packed chunk's values with.
#[derive(Clone, Copy, Debug)]
struct Packed {
    base: i64,
    w: u32,
    z: bool,
    /// Presence as runs rather than bits.
    runs: bool,
}

impl<'a> IntIter<'a> {
    /// An iterator over the chunk `b` (its header is `hdr_len` bytes) of
    /// `count` values.
    fn new(b: &'a [u8], hdr_len: usize, count: usize) -> IntIter<'a> {
        let body = b.get(hdr_len..).unwrap_or(&[]);
        let mut it = IntIter {
            r: BitReader::new(&[]),
            r_data: &[],
            remaining: count,
            first: true,
            s0: 0,
            s: 0,
            scale: 1,
            packed: None,
            run_left: 0,
            present: false,
            corrupt: None,
        };
        let mut pos = 0;
        let header = match count {
            0 => Ok(()),
            1 => varint::read(body, &mut pos).map(|v| it.s0 = varint::unzigzag(v)),
            _ if body.first() == Some(&0) => PackedHeader::read(body).map(|h| {
                it.scale = h.scale.max(1);
                it.packed = Some(Packed {
                    base: h.base,
                    // At most 64 on validated bytes; clamped for others.
                    w: h.w.min(64),
                    z: h.z,
                    runs: h.runs,
                });
                it.first = false;
                pos = h.stream;
            }),
            _ => varint::read(body, &mut pos).and_then(|scale| {
                it.scale = scale.max(1);
                varint::read(body, &mut pos).map(|s0| it.s0 = varint::unzigzag(s0))
            }),
        };
        match header {
            Ok(()) => {
                let stream = body.get(pos..).unwrap_or(&[]);
                it.r = BitReader::new(stream);
                it.r_data = stream;
                if it.packed.is_some_and(|p| p.runs) {
                    // The first run's presence, negated: each run flips it.
                    it.present = !it.r.read_bit();
                }
            }
            Err(ChunkError::Truncated) => {
                it.corrupt = Some("truncated header");
                it.remaining = 0;
            }
            Err(_) => {
                it.corrupt = Some("malformed header");
                it.remaining = 0;
            }
        }
        it
    }

    /// The next value divided by the chunk's scale.
    #[inline]
    fn next_scaled(&mut self) -> Option<i64> {
        self.step::<false>()
    }

    /// [`IntIter::next_scaled`] for bytes not yet validated: flags a delta
    /// written in a wider bucket than it needs.
    fn next_scaled_checked(&mut self) -> Option<i64> {
        self.step::<true>()
    }

    /// The next scaled value; with `CHECK`, a delta in a wider bucket than
    /// it needs marks the iterator corrupt (canonical: the smallest bucket
    /// that holds it).
    #[inline(always)]
    fn step<const CHECK: bool>(&mut self) -> Option<i64> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        if let Some(p) = self.packed {
            self.s = self.packed_value(p);
            return Some(self.s);
        }
        if self.first {
            self.first = false;
            self.s = self.s0;
            return Some(self.s);
        }
        let (d, k) = self.field();
        if CHECK {
            let shorter = match k {
                None => false,
                Some(0) => d == 0,
                Some(k) => fits(d, WIDTHS[k - 1]),
            };
            if shorter {
                self.corrupt = Some("delta in a wider bucket than needed");
            }
        }
        self.s = self.s.wrapping_add(d);
        Some(self.s)
    }

    /// Reads one value of the packed form (inlined into every reader's
    /// loop: left to the compiler, it became a call per value, and a
    /// merge's decode a third slower).
    #[inline(always)]
    fn packed_value(&mut self, p: Packed) -> i64 {
        if p.runs {
            if self.run_left == 0 {
                self.next_run();
            }
            self.run_left -= 1;
            if !self.present {
                return 0;
            }
        } else if p.z && !self.r.read_bit() {
            return 0;
        }
        let x = match p.w {
            0 => 0,
            w @ 1..=56 => self.r.read_bits(w),
            w => self.r.read_bits_wide(w),
        };
        p.base.wrapping_add(x as i64)
    }

    /// The wrapping sum of the packed values left, scaled. The loop of
    /// [`IntIter::next_scaled`] on local copies of its state, which the
    /// compiler keeps in registers (inside a merge's loop over columns the
    /// iterator's own fields were loaded and stored for every value, twice
    /// as slow); a present run is summed as its offsets plus `n · base`.
    fn sum_packed(&self, p: Packed) -> i64 {
        let mut r = self.r.clone();
        let (mut left, mut run_left, mut present) = (self.remaining, self.run_left, self.present);
        let offset = |r: &mut BitReader<'_>| -> i64 {
            (match p.w {
                0 => 0,
                w @ 1..=56 => r.read_bits(w),
                w => r.read_bits_wide(w),
            }) as i64
        };
        let mut sum = 0i64;
        if p.runs {
            while left > 0 {
                if run_left == 0 {
                    present = !present;
                    // None only on bytes not validated: stop there.
                    let Some(n) = read_gamma(&mut r) else { break };
                    run_left = n;
                }
                let n = run_left.min(left as u64);
                if present {
                    sum = sum.wrapping_add(p.base.wrapping_mul(n as i64));
                    for _ in 0..n {
                        sum = sum.wrapping_add(offset(&mut r));
                    }
                }
                run_left -= n;
                left -= n as usize;
            }
        } else {
            for _ in 0..left {
                if p.z && !r.read_bit() {
                    continue;
                }
                sum = sum.wrapping_add(p.base.wrapping_add(offset(&mut r)));
            }
        }
        sum
    }

    /// The wrapping sum of a delta-form chunk's scaled values, from its
    /// first: as [`IntIter::sum_packed`], on local copies of the state.
    fn sum_deltas(&self) -> i64 {
        let mut it = IntIter {
            r: self.r.clone(),
            ..*self
        };
        let mut v = it.s0;
        let mut sum = v;
        for _ in 1..it.remaining {
            let (d, _) = it.field();
            v = v.wrapping_add(d);
            sum = sum.wrapping_add(v);
        }
        sum
    }

    /// Starts the next presence run: reads its length and flips the
    /// presence.
    #[inline(always)]
    fn next_run(&mut self) {
        self.present = !self.present;
        self.run_left = match read_gamma(&mut self.r) {
            Some(n) => n,
            None => {
                // Only on bytes not validated: end here.
                self.corrupt = Some("malformed presence run");
                self.remaining = 0;
                1
            }
        };
    }

    /// Reads one field: the delta and its bucket (`None` for `0`).
    #[inline]
    fn field(&mut self) -> (i64, Option<usize>) {
        // The prefix is at most 5 bits: '0', '10', '110', '1110', '11110',
        // '11111'; its leading ones name the bucket.
        let p = self.r.peek_bits(5) as u32;
        let ones = (p << 27).leading_ones();
        if ones == 0 {
            self.r.skip_bits(1);
            return (0, None);
        }
        let (skip, k) = if ones >= 5 {
            (5, 4)
        } else {
            (ones + 1, ones as usize - 1)
        };
        self.r.skip_bits(skip);
        let w = WIDTHS[k];
        let x = if w <= 56 {
            self.r.read_bits(w)
        } else {
            self.r.read_bits_wide(w)
        };
        (((x << (64 - w)) as i64) >> (64 - w), Some(k))
    }
}

impl Iterator for IntIter<'_> {
    type Item = i64;

    #[inline]
    fn next(&mut self) -> Option<i64> {
        self.next_scaled()
            .map(|s| s.wrapping_mul(self.scale as i64))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for IntIter<'_> {}
impl std::iter::FusedIterator for IntIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks encoded one after another into one buffer are each the
    /// bytes `from_values` makes, whatever came before them.
    #[test]
    fn chunks_encoded_into_one_buffer_are_each_whole() {
        let seqs: [&[i64]; 6] = [
            &[10_000_000],
            &[-3],
            &[0, 0, 5, 0, 7],
            &[20_000_000, 0, 40_000_000],
            &[i64::MIN, i64::MAX],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
        ];
        let mut buf = vec![0xff, 0x01];
        let mut at = Vec::new();
        for vs in seqs {
            let start = buf.len();
            IntChunk::encode_values_into(vs, &mut buf);
            at.push(start..buf.len());
        }
        assert_eq!(&buf[..2], &[0xff, 0x01]);
        for (vs, r) in seqs.iter().zip(at) {
            assert_eq!(&buf[r.clone()], IntChunk::from_values(vs).bytes());
            assert_eq!(IntChunk::iter_bytes(&buf[r]).collect::<Vec<_>>(), *vs);
        }
    }

    #[test]
    fn gcd_matches_euclid() {
        fn euclid(a: u64, b: u64) -> u64 {
            if b == 0 {
                a
            } else {
                euclid(b, a % b)
            }
        }
        let xs = [
            0u64,
            1,
            2,
            3,
            6,
            10,
            12,
            10_000_000,
            1 << 63,
            u64::MAX,
            97 * 89,
        ];
        for &a in &xs {
            for &b in &xs {
                assert_eq!(gcd(a, b), euclid(a, b), "gcd({a}, {b})");
            }
        }
    }

    #[test]
    fn cpu_column_is_scaled_by_the_period() {
        let vs: Vec<i64> = [3, 1, 0, 2, 2, 5].iter().map(|k| k * 10_000_000).collect();
        let c = IntChunk::from_values(&vs);
        // count, scale 10^7 (4 bytes), s0 = 3, then 5 fields: -2 (5 bits),
        // -1 (5), +2 (5), 0 (1), +3 (5) = 21 bits = 3 bytes.
        assert_eq!(c.bytes().len(), 1 + 4 + 1 + 3);
        assert_eq!(c.iter().collect::<Vec<_>>(), vs);
        assert_eq!(c.sum(), 13 * 10_000_000);
        let mut appended = IntChunk::new();
        for &v in &vs {
            appended.append(v);
        }
        assert_eq!(appended, c);
    }

    #[test]
    fn worked_example_from_the_format_doc() {
        let vs = [30_000_000, 10_000_000, 10_000_000, 0, 50_000_000];
        let c = IntChunk::from_values(&vs);
        #[rustfmt::skip]
        let want = [
            0x05,
            0x80, 0xad, 0xe2, 0x04,
            0x06,
            0xb2, 0xf8, 0x28,
        ];
        assert_eq!(c.bytes(), &want);
        assert_eq!(IntChunk::from_bytes(&want), Ok(c));
        let one = IntChunk::from_values(&[10_000_000]);
        assert_eq!(one.bytes(), &[0x01, 0x80, 0xda, 0xc4, 0x09]);
    }

    #[test]
    fn non_canonical_chunks_are_rejected() {
        // Scale 2 over values 2, 4: gcd of the scaled values (1, 2) is 1: ok.
        let ok = IntChunk::from_values(&[2, 4]);
        assert_eq!(ok.bytes(), &[0x02, 0x02, 0x02, 0x88]);
        assert!(IntChunk::from_bytes(ok.bytes()).is_ok());
        // Scale 1 over 2, 4: the gcd of the scaled values is 2.
        assert_eq!(
            IntChunk::from_bytes(&[0x02, 0x01, 0x04, 0x90]),
            Err(ChunkError::Corrupt("scale is not the values' gcd"))
        );
        // Scale 0.
        assert!(IntChunk::from_bytes(&[0x02, 0x00, 0x02, 0x90]).is_err());
        // All zero with scale 2.
        assert!(IntChunk::from_bytes(&[0x02, 0x02, 0x00, 0x00]).is_err());
        // d = 1 in the 7-bit bucket: '110' 0000001 + padding.
        assert_eq!(
            IntChunk::from_bytes(&[0x02, 0x01, 0x02, 0b1100_0000, 0b1000_0000]),
            Err(ChunkError::Corrupt("delta in a wider bucket than needed"))
        );
        // d = 0 in the 3-bit bucket.
        assert!(IntChunk::from_bytes(&[0x02, 0x01, 0x02, 0b1000_0000]).is_err());
        // Non-zero padding.
        assert!(IntChunk::from_bytes(&[0x02, 0x02, 0x02, 0x91]).is_err());
        // A value past i64: scale 2^62, s0 = 2.
        let mut b = vec![0x02];
        varint::put(&mut b, 1 << 62);
        b.extend([0x04, 0x00]);
        assert_eq!(
            IntChunk::from_bytes(&b),
            Err(ChunkError::Corrupt("value overflows 64 bits"))
        );
        // A single value with bytes after it.
        assert_eq!(
            IntChunk::from_bytes(&[0x01, 0x02, 0x00]),
            Err(ChunkError::TrailingBytes(1))
        );
    }

    /// Found by the property test: after leading zeros (gcd 0, written as
    /// scale 1) a non-zero value must set the scale, not keep 1.
    #[test]
    fn zeros_then_a_value_rescale() {
        let mut c = IntChunk::new();
        for v in [0, 0, 30_000_000, 10_000_000] {
            c.append(v);
        }
        let want = IntChunk::from_values(&[0, 0, 30_000_000, 10_000_000]);
        assert_eq!(c, want);
        assert_eq!(&c.bytes()[..5], &[0x04, 0x80, 0xad, 0xe2, 0x04]);
    }

    #[test]
    fn packed_worked_example_from_the_format_doc() {
        // A busy stack's values scattered around 1000, absent once.
        let vs = [1003, 997, 1010, 0, 995, 1001];
        let delta = IntChunk::from_values(&vs);
        let p = delta.compact().expect("shorter packed");
        // count 6, marker, scale 1, base 995 (zigzag 1990), flags z=1 w=4,
        // then '1' 1000, '1' 0010, '1' 1111, '0', '1' 0000, '1' 0110.
        #[rustfmt::skip]
        let want = [
            0x06, 0x00, 0x01, 0xc6, 0x0f, 0x84,
            0b1100_0100, 0b1011_1110, 0b1000_0101, 0b1000_0000,
        ];
        assert_eq!(p.bytes(), &want);
        assert_eq!(delta.bytes().len(), 12);
        assert_eq!(IntChunk::from_bytes(&want), Ok(p.clone()));
        assert_eq!(p.iter().collect::<Vec<_>>(), vs);
        assert_eq!(p.sum(), vs.iter().sum::<i64>());
        // Every value equal: no bit per value.
        let flat = IntChunk::packed(&[7; 100]).unwrap();
        assert_eq!(flat.bytes(), &[100, 0x00, 0x07, 0x02, 0x00]);
        assert_eq!(IntChunk::from_values(&[7; 100]).compact(), Some(flat));
    }

    #[test]
    fn non_canonical_packed_chunks_are_rejected() {
        let ok = [0x06, 0x00, 0x01, 0xc6, 0x0f, 0x84, 0xc4, 0xbe, 0x85, 0x80];
        assert!(IntChunk::from_bytes(&ok).is_ok());
        let with = |i: usize, b: u8| {
            let mut v = ok.to_vec();
            v[i] = b;
            IntChunk::from_bytes(&v)
        };
        // Width 5 where 4 holds every offset.
        assert!(with(5, 0x85).is_err());
        // No presence bits on a column with a zero.
        assert!(with(5, 0x04).is_err());
        // Values 5, 6 from base 4 (offsets 1, 2): no offset is 0.
        assert_eq!(
            IntChunk::from_bytes(&[0x02, 0x00, 0x01, 0x08, 0x02, 0b0110_0000]),
            Err(ChunkError::Corrupt("packed base or width not the least"))
        );
        // Width over 64.
        assert_eq!(
            with(5, 0xc1),
            Err(ChunkError::Corrupt("packed width over 64 bits"))
        );
        // Scale 1 over 2, 4 (base 2, offsets 0, 2): their gcd is 2.
        assert_eq!(
            IntChunk::from_bytes(&[0x02, 0x00, 0x01, 0x04, 0x02, 0b0010_0000]),
            Err(ChunkError::Corrupt("scale is not the values' gcd"))
        );
        // Non-zero padding; a byte too many; a byte too few.
        assert!(with(9, 0x81).is_err());
        let mut long = ok.to_vec();
        long.push(0);
        assert_eq!(
            IntChunk::from_bytes(&long),
            Err(ChunkError::TrailingBytes(1))
        );
        assert!(IntChunk::from_bytes(&ok[..9]).is_err());
        // Presence bits on a column without zeros: 2 values 5, 6.
        assert!(IntChunk::from_bytes(&[0x02, 0x00, 0x01, 0x0a, 0x81, 0b1010_0000]).is_err());
        assert!(IntChunk::from_bytes(&[0x02, 0x00, 0x01, 0x0a, 0x01, 0b0100_0000]).is_ok());
        // A zero coded as present: base -1, values -1, 0 marked present.
        assert_eq!(
            IntChunk::from_bytes(&[0x02, 0x00, 0x01, 0x01, 0x81, 0b1011_0000]),
            Err(ChunkError::Corrupt("a zero coded as present"))
        );
        // More values than the packed form holds, with no bit each.
        let mut many = Vec::new();
        varint::put(&mut many, PACKED_MAX as u64 + 1);
        many.extend([0x00, 0x07, 0x02, 0x00]);
        assert!(matches!(
            IntChunk::from_bytes(&many),
            Err(ChunkError::CountTooLarge { .. })
        ));
        many[0..2].copy_from_slice(&[0x80, 0x20]);
        assert_eq!(IntChunk::from_bytes(&many).map(|c| c.len()), Ok(PACKED_MAX));
    }

    #[test]
    fn extremes_round_trip() {
        for vs in [
            vec![i64::MIN, 0],
            vec![i64::MIN, i64::MIN],
            vec![i64::MIN, i64::MAX, i64::MIN],
            vec![0, 0, 0],
            vec![i64::MAX, -i64::MAX, 0, i64::MAX],
            vec![-7, 7, -14],
        ] {
            let c = IntChunk::from_values(&vs);
            assert_eq!(c.iter().collect::<Vec<_>>(), vs);
            assert_eq!(IntChunk::from_bytes(c.bytes()), Ok(c.clone()));
            let sum = vs.iter().fold(0i64, |a, &v| a.wrapping_add(v));
            assert_eq!(c.sum(), sum);
        }
    }

    /// The values of the presence runs example in `docs/format/chunks.md`.
    fn runs_example() -> Vec<i64> {
        let mut vs = vec![3, 5, 4, 6, 3, 5, 4, 6, 3, 5];
        vs.extend([0; 20]);
        vs.extend([6, 4, 5, 3, 6, 4, 5, 3, 6, 4]);
        vs
    }

    fn packed_with(vs: &[i64], runs: bool) -> IntChunk {
        IntChunk::packed_with_presence(vs, runs).expect("values that mix zeros and others")
    }

    #[test]
    fn presence_runs_worked_example_from_the_format_doc() {
        let vs = runs_example();
        let delta = IntChunk::from_values(&vs);
        let p = delta.compact().expect("shorter packed");
        // count 40, two zero bytes, scale 1, base 3 (zigzag 6), flags z=1
        // w=2; then p0 '1', gamma(10) '0001010', ten 2-bit offsets,
        // gamma(20) '000010100', gamma(10) '0001010', ten offsets.
        #[rustfmt::skip]
        let want = [
            0x28, 0x00, 0x00, 0x01, 0x06, 0x82,
            0x8a, 0x27, 0x27, 0x20, 0xa0, 0xad, 0x8d, 0x8d,
        ];
        assert_eq!(p.bytes(), &want);
        assert_eq!(delta.bytes().len(), 20);
        assert_eq!(IntChunk::from_bytes(&want), Ok(p.clone()));
        assert_eq!(IntChunk::check_bytes(&want), Ok(40));
        assert_eq!(p.iter().collect::<Vec<_>>(), vs);
        assert_eq!(p.sum(), vs.iter().sum::<i64>());
        assert_eq!(IntChunk::packed(&vs).as_ref(), Some(&p));
        assert!(p.has_presence_runs());
        // The same values with presence bits take a byte more; a block
        // written before runs holds such a chunk, and it is read.
        let bits = packed_with(&vs, false);
        assert_eq!(bits.bytes().len(), want.len() + 1);
        assert!(!bits.has_presence_runs() && bits.is_packed());
        assert_eq!(IntChunk::from_bytes(bits.bytes()), Ok(bits.clone()));
        assert_eq!(bits.iter().collect::<Vec<_>>(), vs);
    }

    #[test]
    fn presence_runs_where_shorter_and_well_formed() {
        // Scattered presence: bits are shorter and the encoder takes
        // them; runs read back all the same.
        let vs = [1003, 997, 1010, 0, 995, 1001];
        let ran = packed_with(&vs, true);
        assert!(ran.bytes().len() > packed_with(&vs, false).bytes().len());
        assert!(!IntChunk::packed(&vs).unwrap().has_presence_runs());
        assert_eq!(ran.iter().collect::<Vec<_>>(), vs);
        assert_eq!(IntChunk::from_bytes(ran.bytes()), Ok(ran.clone()));
        assert_eq!(IntChunk::packed_with_presence(&[5, 6, 7], true), None);
        let ok = runs_example();
        let ok = IntChunk::packed(&ok).unwrap().bytes().to_vec();
        let with = |i: usize, b: u8| {
            let mut v = ok.clone();
            v[i] = b;
            IntChunk::from_bytes(&v)
        };
        // Runs on a column the flags say has no zeros.
        assert_eq!(
            with(5, 0x02),
            Err(ChunkError::Corrupt(
                "presence runs on a column without zeros"
            ))
        );
        // More than 12 zeros before a run's length: no run is that long.
        let mut zeros = ok.clone();
        zeros[6..8].copy_from_slice(&[0x80, 0x00]);
        assert_eq!(
            IntChunk::from_bytes(&zeros),
            Err(ChunkError::Corrupt("malformed presence run"))
        );
        // A first run 9 + 1 bits long: past the column's 40 values.
        assert_eq!(
            with(6, 0x80),
            Err(ChunkError::Corrupt("presence runs past the column's end"))
        );
        // gamma(11) for the first run: the rest no longer lines up.
        assert!(with(6, 0x8b).is_err());
        // Runs adding up to more than the column: the last run 11 long.
        let mut long = ok.clone();
        let mut w = BitWriter::new();
        w.write_bit(true);
        write_gamma(&mut w, 10);
        for _ in 0..10 {
            w.write_bits(0, 2);
        }
        write_gamma(&mut w, 20);
        write_gamma(&mut w, 11);
        long.truncate(6);
        long.extend_from_slice(w.as_bytes());
        assert_eq!(
            IntChunk::from_bytes(&long),
            Err(ChunkError::Corrupt("presence runs past the column's end"))
        );
        // Unvalidated bytes never panic the iterator.
        for b in [&long[..], &ok[..9], &[0x28, 0, 0, 1, 6, 0x82, 0, 0][..]] {
            let _ = IntChunk::iter_bytes(b).count();
            let _ = IntChunk::sum_bytes(b);
        }
    }

    /// Runs are taken only where they average [`RUN_MIN_MEAN`] values,
    /// even where shorter runs would save a byte.
    #[test]
    fn presence_runs_only_when_they_average_eight_values() {
        // 120 values in alternating runs of `run` present and absent.
        let column = |run: usize| -> Vec<i64> {
            (0..120)
                .map(|i| if (i / run) % 2 == 0 { 7 } else { 0 })
                .collect()
        };
        // Runs of 6: 20 codes of 5 bits, shorter than 120 bits, but a
        // run read per 6 values.
        let six = column(6);
        assert!(packed_with(&six, true).bytes().len() < packed_with(&six, false).bytes().len());
        assert!(!IntChunk::packed(&six).unwrap().has_presence_runs());
        // Runs of 10 (12 codes of 7 bits): above the mean, and shorter.
        let ten = column(10);
        assert!(packed_with(&ten, true).bytes().len() < packed_with(&ten, false).bytes().len());
        assert!(IntChunk::packed(&ten).unwrap().has_presence_runs());
        // The head's conversion of a sealed column decides the same way.
        for (vs, runs) in [(six, false), (ten, true)] {
            let c = IntChunk::from_values(&vs).compact().unwrap();
            assert_eq!(c.has_presence_runs(), runs);
            assert_eq!(c.iter().collect::<Vec<_>>(), vs);
        }
    }

    /// A stack absent from one stretch of profiles in five: runs take a
    /// few codes where bits took one per profile.
    #[test]
    fn presence_runs_shorten_a_column_absent_in_stretches() {
        let vs: Vec<i64> = (0..120i64)
            .map(|i| match (i / 6) % 5 {
                2 => 0,
                _ => 1000 + (i * 37) % 200,
            })
            .collect();
        let p = IntChunk::from_values(&vs)
            .compact()
            .expect("shorter packed");
        assert_eq!(&p.bytes()[..3], &[120, 0x00, 0x00], "runs");
        // 9 runs in 62 bits where bits took 120; the marker takes a byte.
        let bits = packed_with(&vs, false);
        assert_eq!(p.bytes().len() + 6, bits.bytes().len());
        assert_eq!(IntChunk::from_bytes(p.bytes()), Ok(p.clone()));
        assert_eq!(p.iter().collect::<Vec<_>>(), vs);
    }
}

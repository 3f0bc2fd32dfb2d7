//! Tests shared by every encoding: one suite of named cases run over each
//! chunk type (`shared_suite!`), property tests against a plain `Vec`, and a
//! fuzz-style sweep of random, truncated and bit-flipped bytes through every
//! decoder.

use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

/// What the shared suite needs from a chunk type.
trait Codec: Clone + std::fmt::Debug + PartialEq + Default {
    fn push(&mut self, v: i64);
    fn values(&self) -> Vec<i64>;
    fn n(&self) -> usize;
    fn empty(&self) -> bool;
    fn data(&self) -> &[u8];
    fn parse(b: &[u8]) -> Result<Self, ChunkError>;
    fn heap(&self) -> usize;
    /// The sequences of this encoding to test for a case (timestamps must
    /// strictly increase).
    fn admissible(vs: &[i64]) -> Vec<Vec<i64>> {
        vec![vs.to_vec()]
    }
    /// Encoding-specific checks against the reference.
    fn extra(&self, _vs: &[i64]) {}
}

impl Codec for XorChunk {
    fn push(&mut self, v: i64) {
        self.append(v)
    }
    fn values(&self) -> Vec<i64> {
        self.iter().collect()
    }
    fn n(&self) -> usize {
        self.len()
    }
    fn empty(&self) -> bool {
        self.is_empty()
    }
    fn data(&self) -> &[u8] {
        self.bytes()
    }
    fn parse(b: &[u8]) -> Result<Self, ChunkError> {
        XorChunk::from_bytes(b)
    }
    fn heap(&self) -> usize {
        self.size_bytes()
    }
    fn extra(&self, vs: &[i64]) {
        assert_eq!(self.last(), vs.last().copied());
    }
}

impl Codec for IntChunk {
    fn push(&mut self, v: i64) {
        self.append(v)
    }
    fn values(&self) -> Vec<i64> {
        self.iter().collect()
    }
    fn n(&self) -> usize {
        self.len()
    }
    fn empty(&self) -> bool {
        self.is_empty()
    }
    fn data(&self) -> &[u8] {
        self.bytes()
    }
    fn parse(b: &[u8]) -> Result<Self, ChunkError> {
        IntChunk::from_bytes(b)
    }
    fn heap(&self) -> usize {
        self.size_bytes()
    }
    fn extra(&self, vs: &[i64]) {
        assert_eq!(self.last(), vs.last().copied());
        let sum = vs.iter().fold(0i64, |a, &v| a.wrapping_add(v));
        assert_eq!(self.sum(), sum, "sum() equals adding the values");
        assert_eq!(
            &IntChunk::from_values(vs),
            self,
            "from_values equals appends"
        );
        // The packed form of the same values, whether or not it is shorter.
        let Some(p) = IntChunk::packed(vs) else {
            assert!(vs.len() < 2 || vs.len() > PACKED_MAX);
            assert_eq!(self.compact(), None);
            return;
        };
        assert!(p.is_packed());
        assert_eq!(p.iter().collect::<Vec<_>>(), vs, "packed values");
        assert_eq!(p.sum(), sum, "packed sum");
        assert_eq!(p.last(), vs.last().copied());
        assert_eq!(
            IntChunk::from_bytes(p.bytes()).as_ref(),
            Ok(&p),
            "packed round trip"
        );
        assert_eq!(IntChunk::check_bytes(p.bytes()), Ok(vs.len()));
        assert_eq!(IntChunk::sum_bytes(p.bytes()), sum);
        // compact() picks it exactly when it is shorter.
        let shorter = p.bytes().len() < self.bytes().len();
        assert_eq!(self.compact().as_ref(), shorter.then_some(&p));
        // Appending to a packed chunk goes back to the delta form.
        let mut more = p.clone();
        more.append(vs[0] ^ 0x5555);
        let mut all = vs.to_vec();
        all.push(vs[0] ^ 0x5555);
        assert_eq!(
            more,
            IntChunk::from_values(&all),
            "append to a packed chunk"
        );
    }
}

impl Codec for TimestampChunk {
    fn push(&mut self, v: i64) {
        self.append(v).expect("admissible sequences increase")
    }
    fn values(&self) -> Vec<i64> {
        self.iter().collect()
    }
    fn n(&self) -> usize {
        self.len()
    }
    fn empty(&self) -> bool {
        self.is_empty()
    }
    fn data(&self) -> &[u8] {
        self.bytes()
    }
    fn parse(b: &[u8]) -> Result<Self, ChunkError> {
        TimestampChunk::from_bytes(b)
    }
    fn heap(&self) -> usize {
        self.size_bytes()
    }
    /// The case sorted and deduplicated (keeps extremes and huge jumps), and
    /// the case as jitter around a 1000 ms grid (keeps its length and shape).
    fn admissible(vs: &[i64]) -> Vec<Vec<i64>> {
        let mut sorted = vs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let grid = vs
            .iter()
            .enumerate()
            .map(|(i, v)| i as i64 * 1000 + v % 500)
            .collect();
        vec![sorted, grid]
    }
    fn extra(&self, vs: &[i64]) {
        assert_eq!(self.last(), vs.last().copied());
        // Out-of-order appends fail and change nothing.
        if let Some(&last) = vs.last() {
            let mut c = self.clone();
            assert_eq!(
                c.append(last),
                Err(ChunkError::OutOfOrder {
                    timestamp: last,
                    last
                })
            );
            assert!(c.append(i64::MIN).is_err());
            assert_eq!(&c, self);
        }
    }
}

impl Codec for RleChunk {
    fn push(&mut self, v: i64) {
        self.append(v)
    }
    fn values(&self) -> Vec<i64> {
        self.iter().collect()
    }
    fn n(&self) -> usize {
        self.len()
    }
    fn empty(&self) -> bool {
        self.is_empty()
    }
    fn data(&self) -> &[u8] {
        self.bytes()
    }
    fn parse(b: &[u8]) -> Result<Self, ChunkError> {
        RleChunk::from_bytes(b)
    }
    fn heap(&self) -> usize {
        self.size_bytes()
    }
    fn extra(&self, vs: &[i64]) {
        assert_eq!(self.last(), vs.last().copied());
        let step = (vs.len() / 64).max(1);
        for i in (0..vs.len()).step_by(step).chain(vs.len().checked_sub(1)) {
            assert_eq!(self.get(i), Some(vs[i]), "get({i})");
        }
        assert_eq!(self.get(vs.len()), None);
        assert_eq!(self.get(usize::MAX), None);
    }
}

fn build<C: Codec>(vs: &[i64]) -> C {
    let mut c = C::default();
    for &v in vs {
        c.push(v);
    }
    c
}

/// Checks one sequence: iteration, length, round trip through bytes, and
/// appending after a round trip at a few split points.
fn check_seq<C: Codec>(vs: &[i64]) {
    let c: C = build(vs);
    assert_eq!(c.n(), vs.len());
    assert_eq!(c.empty(), vs.is_empty());
    assert!(c.values() == vs, "iter() differs from the input");
    c.extra(vs);
    if vs.is_empty() {
        assert_eq!(c.heap(), 0, "an empty chunk allocates nothing");
    }
    let parsed = C::parse(c.data()).expect("from_bytes(bytes())");
    assert_eq!(parsed, c);
    assert_eq!(parsed.data(), c.data());
    // Each split rebuilds the chunk: for long inputs, split once near the end.
    let splits = match vs.len() {
        0..100_000 => vec![0, 1, 2, vs.len() / 2, vs.len().saturating_sub(1)],
        n => vec![n - 1],
    };
    for &k in splits.iter().filter(|&&k| k <= vs.len()) {
        let head: C = build(&vs[..k]);
        let mut resumed = C::parse(head.data()).expect("from_bytes(prefix)");
        for &v in &vs[k..] {
            resumed.push(v);
        }
        assert_eq!(resumed.data(), c.data(), "append after from_bytes at {k}");
        assert!(resumed.values() == vs);
    }
}

fn check<C: Codec>(vs: &[i64]) {
    for seq in C::admissible(vs) {
        check_seq::<C>(&seq);
    }
}

/// Named cases of the shared suite.
mod cases {
    use rand::{Rng, SeedableRng};

    fn rng(seed: u64) -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(seed)
    }

    pub fn empty() -> Vec<i64> {
        vec![]
    }
    pub fn single() -> Vec<i64> {
        vec![42]
    }
    pub fn single_min() -> Vec<i64> {
        vec![i64::MIN]
    }
    pub fn single_max() -> Vec<i64> {
        vec![i64::MAX]
    }
    pub fn two_equal() -> Vec<i64> {
        vec![7, 7]
    }
    pub fn extremes() -> Vec<i64> {
        let mut v = vec![i64::MIN, i64::MAX, 0, -1, 1, i64::MIN, i64::MIN, i64::MAX];
        v.extend([
            i64::MAX,
            i64::MIN + 1,
            i64::MAX - 1,
            0,
            i64::MIN,
            -1,
            i64::MAX,
        ]);
        v
    }
    pub fn negatives() -> Vec<i64> {
        (1..2000).map(|i| -i * 7919).collect()
    }
    pub fn zeros_long() -> Vec<i64> {
        vec![0; 10_000]
    }
    pub fn sparse() -> Vec<i64> {
        let mut r = rng(3);
        (0..5000)
            .map(|_| match r.random_range(0..10) {
                0 => r.random_range(1..1_000_000_000),
                _ => 0,
            })
            .collect()
    }
    pub fn huge_jumps() -> Vec<i64> {
        let mut r = rng(4);
        let picks = [i64::MIN, i64::MAX, 0, -1, 1, i64::MIN / 2, i64::MAX / 2];
        (0..3000)
            .map(|_| match r.random_range(0..3) {
                0 => picks[r.random_range(0..picks.len())],
                _ => r.random(),
            })
            .collect()
    }
    pub fn alternating() -> Vec<i64> {
        let mut v: Vec<i64> = (0..1000).map(|i| if i % 2 == 0 { 1 } else { -1 }).collect();
        v.extend((0..1000).map(|i| if i % 2 == 0 { i64::MIN } else { i64::MAX }));
        v.extend((0..1000).map(|i| if i % 2 == 0 { 0 } else { -1 }));
        v
    }
    pub fn random() -> Vec<i64> {
        let mut r = rng(5);
        (0..5000).map(|_| r.random()).collect()
    }
    pub fn cpu_jitter() -> Vec<i64> {
        let mut r = rng(6);
        (0..5000)
            .map(|_| 10_000_000 * r.random_range(1..200) + r.random_range(-3..=3))
            .collect()
    }
    pub fn narrow_windows() -> Vec<i64> {
        // Leading zeros above 31 (clamped), windows that shrink and grow.
        let mut v = vec![0, 1, 3, 2, 1 << 40, (1 << 40) + 1, 1 << 62, 5, 5, 4, 6];
        v.extend((0..64).map(|s| 1i64 << s));
        v.extend((0..64).map(|s| -1i64 << s));
        v
    }
    /// A stack present and absent in runs, its values scattered (packed
    /// with presence runs).
    pub fn in_runs() -> Vec<i64> {
        let mut r = rng(7);
        (0..400)
            .map(|i| match (i / 9) % 4 {
                1 => 0,
                _ => 5000 + r.random_range(0..300),
            })
            .collect()
    }
    /// Counts around each width change of the count varint.
    pub fn header_widths() -> Vec<i64> {
        (0..16_500).map(|i| i % 3).collect()
    }
    /// The largest count the suite runs: past a 4-byte count header.
    pub fn max_count() -> Vec<i64> {
        vec![-5; (1 << 21) + 3]
    }
}

macro_rules! shared_suite {
    ($modname:ident, $ty:ty, [$($case:ident),* $(,)?]) => {
        mod $modname {
            use super::*;
            $(
                #[test]
                fn $case() {
                    check::<$ty>(&cases::$case());
                }
            )*
        }
    };
}

macro_rules! all_encodings {
    ($($case:ident),* $(,)?) => {
        shared_suite!(xor, XorChunk, [$($case),*]);
        shared_suite!(int, IntChunk, [$($case),*]);
        shared_suite!(timestamp, TimestampChunk, [$($case),*]);
        shared_suite!(rle, RleChunk, [$($case),*]);
    };
}

all_encodings!(
    empty,
    single,
    single_min,
    single_max,
    two_equal,
    extremes,
    negatives,
    zeros_long,
    sparse,
    huge_jumps,
    alternating,
    random,
    cpu_jitter,
    narrow_windows,
    header_widths,
    max_count,
    in_runs,
);

#[test]
fn header_crosses_each_varint_width() {
    for n in [127usize, 128, 129, 16_383, 16_384, 16_385] {
        let vs: Vec<i64> = (0..n as i64).map(|i| i * 10_000).collect();
        let x: XorChunk = build(&vs);
        assert_eq!(x.bytes()[..varint::len(n as u64)], varint_bytes(n as u64));
        check_seq::<XorChunk>(&vs);
        check_seq::<IntChunk>(&vs);
        check_seq::<TimestampChunk>(&vs);
        check_seq::<RleChunk>(&vs);
    }
}

fn varint_bytes(v: u64) -> Vec<u8> {
    let mut b = Vec::new();
    varint::put(&mut b, v);
    b
}

#[test]
fn empty_chunks_serialize_to_a_header_only() {
    assert_eq!(XorChunk::new().bytes(), &[0]);
    assert_eq!(IntChunk::new().bytes(), &[0]);
    assert_eq!(IntChunk::from_bytes(&[0]), Ok(IntChunk::new()));
    assert!(IntChunk::from_bytes(&[]).is_err());
    assert_eq!(TimestampChunk::new().bytes(), &[0]);
    assert_eq!(RleChunk::new().bytes(), &[0, 0]);
    assert_eq!(XorChunk::from_bytes(&[0]), Ok(XorChunk::new()));
    assert_eq!(TimestampChunk::from_bytes(&[0]), Ok(TimestampChunk::new()));
    assert_eq!(RleChunk::from_bytes(&[0, 0]), Ok(RleChunk::new()));
    assert!(XorChunk::from_bytes(&[]).is_err());
    assert!(TimestampChunk::from_bytes(&[]).is_err());
    assert!(RleChunk::from_bytes(&[]).is_err());
    assert!(RleChunk::from_bytes(&[0]).is_err());
}

#[test]
fn encoding_bytes() {
    for e in [
        Encoding::Xor,
        Encoding::Timestamp,
        Encoding::RunLength,
        Encoding::Int,
    ] {
        assert_eq!(Encoding::from_u8(e.as_u8()), Ok(e));
    }
    assert_eq!(Encoding::from_u8(0), Err(ChunkError::UnknownEncoding(0)));
    let x: XorChunk = build(&[1, 2, 3]);
    assert_eq!(Encoding::Xor.validate(x.bytes()), Ok(3));
    let i: IntChunk = build(&[1, 2, 3]);
    assert_eq!(Encoding::Int.validate(i.bytes()), Ok(3));
    assert_eq!(Encoding::from_u8(5), Err(ChunkError::UnknownEncoding(5)));
}

#[test]
fn compression_of_typical_columns() {
    // The head's common cases, per 120-sample chunk (header included).
    let zeros: XorChunk = build(&[0; 120]);
    assert_eq!(zeros.bytes().len(), 1 + 8 + 15);
    // The integer chunk: a count, the gcd (1), the first value, 119 bits.
    let zeros: IntChunk = build(&[0; 120]);
    assert_eq!(zeros.bytes().len(), 1 + 1 + 1 + 15);
    // A stack seen once in a CPU profile: 4 bytes of value.
    let once: IntChunk = build(&[20_000_000]);
    assert_eq!(once.bytes().len(), 1 + 4);
    // A stack of 1..=4 samples in each of 120 CPU profiles: 5 bits a value.
    let cpu: Vec<i64> = (0..120).map(|i| (1 + i % 4) * 10_000_000).collect();
    let cpu_int: IntChunk = build(&cpu);
    let cpu_xor: XorChunk = build(&cpu);
    assert_eq!(
        cpu_int.bytes().len(),
        1 + 4 + 1 + (119 * 5usize).div_ceil(8)
    );
    assert!(cpu_xor.bytes().len() > 4 * cpu_int.bytes().len());
    let ts: TimestampChunk = build(
        &(0..120)
            .map(|i| 1_700_000_000_000 + i * 10_000)
            .collect::<Vec<_>>(),
    );
    assert_eq!(ts.bytes().len(), 1 + 6 + 2 + 15);
    let d: RleChunk = build(&[10_000_000_000; 120]);
    assert_eq!(d.bytes().len(), 2 + 5 + 1);
}

// ---- property tests against a plain Vec ----

fn value() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => any::<i64>(),
        2 => Just(0i64),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => Just(-1i64),
        2 => -1000i64..1000,
        2 => (0i64..200).prop_map(|k| k * 10_000_000),
        1 => (0u32..64).prop_map(|s| 1i64 << s),
    ]
}

/// Sequences with runs of repeated values.
fn values() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec((value(), 1usize..20), 0..80).prop_map(|runs| {
        runs.into_iter()
            .flat_map(|(v, n)| std::iter::repeat_n(v, n))
            .collect()
    })
}

/// Strictly increasing timestamps: a start and gaps of mixed sizes, cut
/// where the sum would overflow.
fn timestamps() -> impl Strategy<Value = Vec<i64>> {
    let gap = prop_oneof![
        4 => Just(10_000u64),
        3 => 9_990u64..10_010,
        2 => 1u64..100_000,
        1 => 1u64..=u64::MAX,
        1 => Just(u64::MAX),
        1 => Just(1u64),
    ];
    let start = prop_oneof![
        any::<i64>(),
        Just(i64::MIN),
        Just(0i64),
        1_600_000_000_000i64..1_800_000_000_000
    ];
    (start, prop::collection::vec(gap, 0..300)).prop_map(|(start, gaps)| {
        let mut out = vec![start];
        let mut t = start;
        for g in gaps {
            match (t as i128).checked_add(g as i128) {
                Some(n) if n <= i128::from(i64::MAX) => {
                    t = n as i64;
                    out.push(t);
                }
                _ => break,
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn xor_matches_vec(vs in values()) {
        check_seq::<XorChunk>(&vs);
    }

    #[test]
    fn int_matches_vec(vs in values()) {
        check_seq::<IntChunk>(&vs);
    }

    /// Values sharing a large factor (a CPU profile's period), with zeros
    /// for profiles a stack is absent from.
    #[test]
    fn int_matches_vec_scaled(
        unit in prop_oneof![Just(1i64), Just(10_000_000), 1i64..1_000_000],
        ks in prop::collection::vec(prop_oneof![3 => 0i64..6, 1 => -3i64..1000], 0..150),
    ) {
        let vs: Vec<i64> = ks.iter().map(|k| k * unit).collect();
        check_seq::<IntChunk>(&vs);
    }

    /// A stack's values scattered around a level, present and absent in
    /// runs (the shape presence runs are for), and scaled.
    #[test]
    fn int_matches_vec_in_runs(
        level in prop_oneof![Just(1i64), 1i64..1_000_000],
        spread in prop_oneof![Just(0i64), 1i64..64, 1i64..100_000],
        unit in prop_oneof![Just(1i64), Just(10_000_000)],
        runs in prop::collection::vec((any::<bool>(), 1usize..60), 1..12),
        seed in any::<u64>(),
    ) {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let vs: Vec<i64> = runs
            .iter()
            .flat_map(|&(present, n)| std::iter::repeat_n(present, n))
            .map(|present| match present {
                true => (level + r.random_range(0..=spread)) * unit,
                false => 0,
            })
            .collect();
        check_seq::<IntChunk>(&vs);
    }

    #[test]
    fn rle_matches_vec(vs in values()) {
        check_seq::<RleChunk>(&vs);
    }

    #[test]
    fn timestamp_matches_vec(ts in timestamps()) {
        check_seq::<TimestampChunk>(&ts);
    }

    #[test]
    fn timestamp_rejects_every_out_of_order_append(ts in timestamps(), bad in value()) {
        let mut c: TimestampChunk = build(&ts);
        let before = c.clone();
        let last = *ts.last().expect("non-empty");
        let res = c.append(bad);
        if bad <= last {
            prop_assert_eq!(res, Err(ChunkError::OutOfOrder { timestamp: bad, last }));
            prop_assert_eq!(c, before);
        } else {
            prop_assert!(res.is_ok());
            prop_assert_eq!(c.last(), Some(bad));
        }
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..64)) {
        fuzz_all(&b);
    }
}

// ---- fuzz-style: random, truncated and bit-flipped bytes ----

/// Feeds `b` to one decoder: it must return, and an accepted chunk must be
/// consistent and appendable.
fn fuzz_one_xor(b: &[u8]) {
    let Ok(c) = XorChunk::from_bytes(b) else {
        return;
    };
    assert_eq!(c.bytes(), b, "accepted bytes re-serialize unchanged");
    let mut vs: Vec<i64> = c.iter().collect();
    assert_eq!(vs.len(), c.len());
    assert_eq!(vs.last().copied(), c.last());
    let mut more = c.clone();
    for v in [vs.first().copied().unwrap_or(0) ^ 0x5555, i64::MIN] {
        more.append(v);
        vs.push(v);
    }
    let again = XorChunk::from_bytes(more.bytes()).expect("appending keeps a chunk valid");
    assert!(again.iter().eq(vs.iter().copied()));
}

fn fuzz_one_int(b: &[u8]) {
    assert_eq!(
        IntChunk::check_bytes(b).ok(),
        IntChunk::from_bytes(b).ok().map(|c| c.len()),
        "check_bytes accepts exactly what from_bytes accepts"
    );
    let Ok(c) = IntChunk::from_bytes(b) else {
        return;
    };
    assert_eq!(c.bytes(), b, "accepted bytes re-serialize unchanged");
    let mut vs: Vec<i64> = c.iter().collect();
    assert_eq!(vs.len(), c.len());
    assert_eq!(vs.last().copied(), c.last());
    if c.is_packed() {
        assert_eq!(
            IntChunk::packed_with_presence(&vs, c.has_presence_runs()).as_ref(),
            Some(&c),
            "one packed encoding per sequence and presence coding"
        );
    } else {
        assert_eq!(IntChunk::from_values(&vs), c);
    }
    let mut more = c.clone();
    for v in [vs.first().copied().unwrap_or(0) ^ 0x5555, i64::MIN] {
        more.append(v);
        vs.push(v);
    }
    let again = IntChunk::from_bytes(more.bytes()).expect("appending keeps a chunk valid");
    assert!(again.iter().eq(vs.iter().copied()));
}

fn fuzz_one_ts(b: &[u8]) {
    let Ok(c) = TimestampChunk::from_bytes(b) else {
        return;
    };
    assert_eq!(c.bytes(), b);
    let vs: Vec<i64> = c.iter().collect();
    assert_eq!(vs.len(), c.len());
    assert!(vs.windows(2).all(|w| w[0] < w[1]));
    let mut more = c.clone();
    match vs.last() {
        Some(&i64::MAX) => assert!(more.append(i64::MAX).is_err()),
        Some(&last) => more.append(last + 1).expect("after last"),
        None => more.append(0).expect("first"),
    }
    TimestampChunk::from_bytes(more.bytes()).expect("appended chunk stays valid");
}

fn fuzz_one_rle(b: &[u8]) {
    let Ok(c) = RleChunk::from_bytes(b) else {
        return;
    };
    assert_eq!(c.bytes(), b);
    // A huge claimed count is legal for RLE (a long run); iterate a bounded
    // prefix only.
    let n = c.len().min(1 << 16);
    let vs: Vec<i64> = c.iter().take(n).collect();
    assert_eq!(vs.len(), n);
    if let Some(i) = c.len().checked_sub(1) {
        assert_eq!(c.get(i), c.last());
    }
    let mut more = c.clone();
    more.append(7);
    RleChunk::from_bytes(more.bytes()).expect("appended chunk stays valid");
}

fn fuzz_all(b: &[u8]) {
    fuzz_one_xor(b);
    fuzz_one_int(b);
    fuzz_one_ts(b);
    fuzz_one_rle(b);
}

fn sample_chunks() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for vs in [
        cases::extremes(),
        cases::narrow_windows(),
        cases::cpu_jitter()[..50].to_vec(),
        cases::sparse()[..80].to_vec(),
        vec![3; 200],
        cases::in_runs(),
    ] {
        out.push(build::<XorChunk>(&vs).bytes().to_vec());
        out.push(build::<IntChunk>(&vs).bytes().to_vec());
        let scaled: Vec<i64> = vs
            .iter()
            .map(|v| (v % 8).wrapping_mul(10_000_000))
            .collect();
        out.push(build::<IntChunk>(&scaled).bytes().to_vec());
        for p in [IntChunk::packed(&vs), IntChunk::packed(&scaled)]
            .into_iter()
            .flatten()
        {
            out.push(p.bytes().to_vec());
        }
        out.push(build::<RleChunk>(&vs).bytes().to_vec());
        for ts in TimestampChunk::admissible(&vs) {
            out.push(build::<TimestampChunk>(&ts).bytes().to_vec());
        }
    }
    out
}

#[test]
fn fuzz_random_bytes() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..20_000 {
        let n = rng.random_range(0..48);
        let b: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        fuzz_all(&b);
        // Small counts make acceptance likelier.
        let mut small = b.clone();
        if let Some(first) = small.first_mut() {
            *first &= 0x07;
        }
        fuzz_all(&small);
    }
}

#[test]
fn fuzz_truncated_and_extended() {
    for b in sample_chunks() {
        for k in 0..b.len() {
            fuzz_all(&b[..k]);
        }
        let mut longer = b.clone();
        longer.push(0);
        fuzz_all(&longer);
    }
}

#[test]
fn fuzz_bit_flips() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    for b in sample_chunks() {
        for bit in 0..(b.len() * 8).min(1600) {
            let mut f = b.clone();
            f[bit / 8] ^= 0x80 >> (bit % 8);
            fuzz_all(&f);
        }
        for _ in 0..500 {
            let mut f = b.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..f.len());
                f[i] = rng.random();
            }
            fuzz_all(&f);
        }
    }
}

#[test]
fn huge_claimed_counts_are_rejected_without_allocating() {
    for count in [u64::MAX, 1 << 40, 1_000_000] {
        let mut b = varint_bytes(count);
        b.extend_from_slice(&[0u8; 16]);
        assert!(matches!(
            XorChunk::from_bytes(&b),
            Err(ChunkError::CountTooLarge { .. })
        ));
        assert!(matches!(
            TimestampChunk::from_bytes(&b),
            Err(ChunkError::CountTooLarge { .. })
        ));
        assert!(matches!(
            IntChunk::from_bytes(&b),
            Err(ChunkError::CountTooLarge { .. })
        ));
        // RLE: a huge number of runs is bounded by the bytes.
        let mut r = varint_bytes(count);
        r.extend(varint_bytes(count));
        r.extend_from_slice(&[0u8; 16]);
        assert!(matches!(
            RleChunk::from_bytes(&r),
            Err(ChunkError::CountTooLarge { .. })
        ));
    }
    // A legal RLE chunk may claim a huge count (up to MAX_SAMPLES) in one
    // run; it allocates one run and iterates lazily.
    let big = super::rle::MAX_SAMPLES;
    let mut r = varint_bytes(big);
    r.push(1);
    r.push(varint::zigzag(5) as u8);
    r.extend(varint_bytes(big));
    let c = RleChunk::from_bytes(&r).expect("one long run");
    assert_eq!(c.len() as u64, big);
    assert_eq!(c.get(big as usize - 1), Some(5));
    assert_eq!(c.iter().take(3).collect::<Vec<_>>(), [5, 5, 5]);
}

/// Found by the chunk_rle fuzz target: runs claiming 2^64 − 1 samples made
/// a later append overflow the count.
#[test]
fn rle_rejects_counts_past_max_samples() {
    use super::rle::MAX_SAMPLES;
    let crash: [u8; 22] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01, 0x01, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert!(matches!(
        RleChunk::from_bytes(&crash),
        Err(ChunkError::CountTooLarge {
            what: "samples",
            ..
        })
    ));
    assert_eq!(MAX_SAMPLES, u64::from(u32::MAX));
}

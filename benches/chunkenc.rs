//! Chunk encoding speed and size, per encoding and data pattern.
//!
//! Times are this thread's CPU time (see `clock`), so a busy shared machine
//! does not inflate them; `PROFSTORE_BENCH_WALL=1` switches to wall time.
//!
//! What's measured (`Throughput::Elements` = samples, so criterion reports
//! time per sample as time per element):
//! - `<enc>/append/<pattern>/n=<n>`: building a chunk of `n` samples from
//!   empty (allocation included);
//! - `<enc>/iter/<pattern>/n=<n>`: decoding all `n` samples (summed, so the
//!   decode cannot be optimized away);
//! - `<enc>/from_bytes/<pattern>/n=<n>`: validating untrusted bytes (decode
//!   everything and copy).
//!
//! `n=120` is the head's chunk (120 profiles); `n=10000` is the steady state.
//! Printed once per pattern (stderr): bytes per sample of the serialized chunk.
//!
//! Patterns (fixed seeds):
//! - `v=constant`: one value repeated;
//! - `v=random`: uniformly random `i64`;
//! - `v=jitter`: a CPU profile's stack value: `10_000_000 * k` ns (10 ms
//!   samples), `k` in 8..=12;
//! - `v=sparse`: 90% zeros, else `10_000_000 * k`, `k` in 1..100 (a stack
//!   that comes and goes);
//! - `v=runs`: present in stretches of 6 values and absent one stretch in
//!   5 (a code path taken for a while), present values `10_000_000 * k`,
//!   `k` in 800..=1200 (a busy stack's scatter; the packed form codes its
//!   presence as runs);
//! - `t=regular`: timestamps 10 s apart (ms);
//! - `t=jitter`: 10 s apart ± up to 50 ms.
//!
//! Encodings: `xor`, `int` (the integer chunk, appended value by value as
//! the head does), `int-packed` (the integer chunk's packed form, built
//! from the values as a sealed column is: `append` is that encode;
//! `n=4096`, the most it holds, in place of `n=10000`), `timestamp`, `rle`.
//!
//! Run with: `cargo bench --bench chunkenc` (add `-- --quick` for a short
//! run, or a filter such as `-- xor/`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use profstore::tsdb::chunkenc::{IntChunk, RleChunk, TimestampChunk, XorChunk};
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

#[path = "support/clock.rs"]
mod clock;

const SIZES: [usize; 2] = [120, 10_000];
/// The packed form holds at most `PACKED_MAX` (4096) values.
const PACKED_SIZES: [usize; 2] = [120, 4096];

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn values(pattern: &str, n: usize) -> Vec<i64> {
    let mut r = rng(42);
    match pattern {
        "v=constant" => vec![30_000_000; n],
        "v=random" => (0..n).map(|_| r.random()).collect(),
        "v=jitter" => (0..n)
            .map(|_| 10_000_000 * r.random_range(8..=12))
            .collect(),
        "v=sparse" => (0..n)
            .map(|_| match r.random_range(0..10) {
                0 => 10_000_000 * r.random_range(1..100),
                _ => 0,
            })
            .collect(),
        "v=runs" => (0..n)
            .map(|i| match (i / 6) % 5 {
                2 => 0,
                _ => 10_000_000 * r.random_range(800..=1200),
            })
            .collect(),
        _ => unreachable!("unknown pattern {pattern}"),
    }
}

fn timestamps(pattern: &str, n: usize) -> Vec<i64> {
    let mut r = rng(43);
    let t0 = 1_700_000_000_000i64;
    (0..n as i64)
        .map(|i| match pattern {
            "t=regular" => t0 + i * 10_000,
            "t=jitter" => t0 + i * 10_000 + r.random_range(-50..=50),
            _ => unreachable!("unknown pattern {pattern}"),
        })
        .collect()
}

const V_PATTERNS: [&str; 5] = ["v=constant", "v=random", "v=jitter", "v=sparse", "v=runs"];
const T_PATTERNS: [&str; 2] = ["t=regular", "t=jitter"];

fn xor_chunk(vs: &[i64]) -> XorChunk {
    let mut c = XorChunk::new();
    for &v in vs {
        c.append(v);
    }
    c
}

/// Appended one by one, as the head builds its columns.
fn int_chunk(vs: &[i64]) -> IntChunk {
    let mut c = IntChunk::new();
    for &v in vs {
        c.append(v);
    }
    c
}

/// The packed form, whether or not it is shorter.
fn packed_chunk(vs: &[i64]) -> IntChunk {
    IntChunk::packed(vs).expect("2 to 4096 values")
}

fn ts_chunk(ts: &[i64]) -> TimestampChunk {
    let mut c = TimestampChunk::new();
    for &t in ts {
        // The patterns strictly increase.
        c.append(t).expect("increasing timestamps");
    }
    c
}

fn rle_chunk(vs: &[i64]) -> RleChunk {
    let mut c = RleChunk::new();
    for &v in vs {
        c.append(v);
    }
    c
}

fn report(enc: &str, pattern: &str, n: usize, bytes: usize) {
    eprintln!(
        "{enc}/{pattern}/n={n}: {bytes} bytes, {:.3} bytes/sample",
        bytes as f64 / n as f64
    );
}

/// Benchmarks append, iter and from_bytes of one encoding.
macro_rules! bench_encoding {
    ($c:expr, $enc:literal, $patterns:expr, $data:ident, $build:ident, $ty:ty) => {
        bench_encoding!($c, $enc, $patterns, SIZES, $data, $build, $ty)
    };
    ($c:expr, $enc:literal, $patterns:expr, $sizes:expr, $data:ident, $build:ident, $ty:ty) => {{
        let mut g = $c.benchmark_group($enc);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        for pattern in $patterns {
            for n in $sizes {
                let data = $data(pattern, n);
                let chunk = $build(&data);
                report($enc, pattern, n, chunk.bytes().len());
                g.throughput(Throughput::Elements(n as u64));
                let id = |op: &str| BenchmarkId::new(op, format!("{pattern}/n={n}"));
                g.bench_function(id("append"), |b| {
                    b.iter_custom(|it| clock::time(it, || $build(black_box(&data))))
                });
                g.bench_function(id("iter"), |b| {
                    b.iter_custom(|it| {
                        clock::time(it, || {
                            black_box(&chunk)
                                .iter()
                                .fold(0i64, |a, v| a.wrapping_add(v))
                        })
                    })
                });
                g.bench_function(id("from_bytes"), |b| {
                    b.iter_custom(|it| {
                        clock::time(it, || <$ty>::from_bytes(black_box(chunk.bytes())))
                    })
                });
            }
        }
        g.finish();
    }};
}

fn bench_xor(c: &mut Criterion) {
    bench_encoding!(c, "xor", V_PATTERNS, values, xor_chunk, XorChunk);
}

fn bench_int(c: &mut Criterion) {
    bench_encoding!(c, "int", V_PATTERNS, values, int_chunk, IntChunk);
}

fn bench_int_packed(c: &mut Criterion) {
    bench_encoding!(
        c,
        "int-packed",
        V_PATTERNS,
        PACKED_SIZES,
        values,
        packed_chunk,
        IntChunk
    );
}

fn bench_timestamp(c: &mut Criterion) {
    bench_encoding!(
        c,
        "timestamp",
        T_PATTERNS,
        timestamps,
        ts_chunk,
        TimestampChunk
    );
}

fn bench_rle(c: &mut Criterion) {
    bench_encoding!(c, "rle", V_PATTERNS, values, rle_chunk, RleChunk);
}

criterion_group!(
    benches,
    bench_xor,
    bench_int,
    bench_int_packed,
    bench_timestamp,
    bench_rle
);
criterion_main!(benches);

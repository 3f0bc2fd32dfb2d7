//! The chunk bit stream: hand-rolled `u64` bit buffer vs `bitvec`.
//!
//! The question (from the chunk-encoding issue): use `bitvec` for the chunk
//! bit stream only if it is as fast as a hand-rolled bit buffer. Both sides
//! write and read the same MSB-first stream of fields:
//! - `hand`: `profstore::tsdb::chunkenc::bstream::{BitWriter, BitReader}` (the
//!   stream the chunks use);
//! - `bitvec/store`: `BitVec<u8, Msb0>`, grown with `resize`, each field
//!   written with `store_be`;
//! - `bitvec/extend`: the same, each field appended with
//!   `extend_from_bitslice` of the value's low bits;
//! - reading (`bitvec`): `load_be` of each field's sub-slice.
//!
//! What's measured: `write/<pattern>/<impl>` builds a stream of 10 000 fields
//! from empty; `read/<pattern>/<impl>` reads them back (summed).
//! `Throughput::Elements` = fields. Both implementations are checked to
//! produce the same bytes before timing. Times are this thread's CPU time (see
//! `clock`); `PROFSTORE_BENCH_WALL=1` switches to wall time.
//!
//! Patterns (fixed seed): `w=1` (single bits, as a constant XOR column),
//! `w=16` (16-bit fields, as a timestamp delta-of-delta), `w=mixed` (widths
//! uniform in 1..=64, as a random XOR column).
//!
//! Run with: `cargo bench --bench bitstream` (add `-- --quick` for a short
//! run).

use bitvec::prelude::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use profstore::tsdb::chunkenc::bstream::{BitReader, BitWriter};
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

#[path = "support/clock.rs"]
mod clock;

const FIELDS: usize = 10_000;

/// `(value, width)` pairs; values fit their width.
fn fields(pattern: &str) -> Vec<(u64, u32)> {
    let mut r = rand::rngs::StdRng::seed_from_u64(42);
    (0..FIELDS)
        .map(|_| {
            let w = match pattern {
                "w=1" => 1,
                "w=16" => 16,
                "w=mixed" => r.random_range(1..=64),
                _ => unreachable!("unknown pattern {pattern}"),
            };
            (r.random::<u64>() >> (64 - w), w)
        })
        .collect()
}

fn write_hand(fs: &[(u64, u32)]) -> BitWriter {
    let mut w = BitWriter::new();
    for &(v, n) in fs {
        w.write_bits(v, n);
    }
    w
}

fn read_hand(bytes: &[u8], fs: &[(u64, u32)]) -> u64 {
    let mut r = BitReader::new(bytes);
    fs.iter()
        .fold(0u64, |a, &(_, n)| a.wrapping_add(r.read_bits_wide(n)))
}

fn write_bitvec_store(fs: &[(u64, u32)]) -> BitVec<u8, Msb0> {
    let mut bv: BitVec<u8, Msb0> = BitVec::new();
    for &(v, n) in fs {
        let len = bv.len();
        bv.resize(len + n as usize, false);
        bv[len..].store_be::<u64>(v);
    }
    bv
}

fn write_bitvec_extend(fs: &[(u64, u32)]) -> BitVec<u8, Msb0> {
    let mut bv: BitVec<u8, Msb0> = BitVec::new();
    for &(v, n) in fs {
        bv.extend_from_bitslice(&v.view_bits::<Msb0>()[64 - n as usize..]);
    }
    bv
}

fn read_bitvec(bits: &BitSlice<u8, Msb0>, fs: &[(u64, u32)]) -> u64 {
    let mut pos = 0;
    fs.iter().fold(0u64, |a, &(_, n)| {
        let end = pos + n as usize;
        let v = bits[pos..end].load_be::<u64>();
        pos = end;
        a.wrapping_add(v)
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("bitstream");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(FIELDS as u64));
    for pattern in ["w=1", "w=16", "w=mixed"] {
        let fs = fields(pattern);
        let hand = write_hand(&fs);
        let bv = write_bitvec_store(&fs);
        assert_eq!(hand.as_bytes(), bv.as_raw_slice(), "same stream");
        assert_eq!(write_bitvec_extend(&fs), bv);
        let want = read_hand(hand.as_bytes(), &fs);
        assert_eq!(read_bitvec(&bv, &fs), want);

        let id = |op: &str, imp: &str| BenchmarkId::new(op, format!("{pattern}/{imp}"));
        g.bench_function(id("write", "hand"), |b| {
            b.iter_custom(|it| clock::time(it, || write_hand(black_box(&fs))))
        });
        g.bench_function(id("write", "bitvec/store"), |b| {
            b.iter_custom(|it| clock::time(it, || write_bitvec_store(black_box(&fs))))
        });
        g.bench_function(id("write", "bitvec/extend"), |b| {
            b.iter_custom(|it| clock::time(it, || write_bitvec_extend(black_box(&fs))))
        });
        g.bench_function(id("read", "hand"), |b| {
            b.iter_custom(|it| clock::time(it, || read_hand(black_box(hand.as_bytes()), &fs)))
        });
        g.bench_function(id("read", "bitvec"), |b| {
            b.iter_custom(|it| clock::time(it, || read_bitvec(black_box(&bv), &fs)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

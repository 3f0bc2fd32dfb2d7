//! Head memory and merge speed on a realistic series.
//!
//! Data: 360 jittered copies of `testdata/pprof/parca/fib.pb.gz` (a Go CPU
//! profile) 10 s apart in one series — 1 h at a 10 s scrape interval. Each
//! copy scales every sample by a factor in [0.5, 1.5] (rounded to the 10 ms
//! period) and drops each sample with probability 0.2, so stacks appear and
//! disappear. Fixed seed.
//!
//! What's measured:
//! - printed once: head chunk bytes per (stack, profile) sample stored;
//! - `merge/360`: merge of all 360 profiles of the series into one profile
//!   (decode every stack column, sum per stack, resolve stacks);
//! - `merge_sum_only/360`: the same without resolving stacks (head work only);
//! - `query_range/360`: totals over time for the series.
//!
//! Run with: `cargo bench --bench head` (add `-- --quick` for a short run).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use profstore::engine::{Storage, TimeRange};
use profstore::ingest::IngestRequest;
use profstore::model::labels::Labels;
use profstore::pprof::decode;
use profstore::proto::pprof::Profile;
use profstore::tsdb::Tsdb;
use rand::{Rng, SeedableRng};
use rustc_hash::FxHashMap;
use std::path::Path;

const PROFILES: usize = 360;

/// `n` jittered copies of `base`, 10 s apart.
pub fn jittered(base: &Profile, n: usize, seed: u64) -> Vec<Profile> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut p = base.clone();
            p.time_nanos = base.time_nanos + (i as i64) * 10_000_000_000;
            p.sample.retain(|_| rng.random_bool(0.8));
            for s in &mut p.sample {
                let f: f64 = rng.random_range(0.5..1.5);
                for v in &mut s.value {
                    let unit = if *v % 10_000_000 == 0 { 10_000_000 } else { 1 };
                    *v = (((*v as f64) * f / unit as f64).round() as i64).max(1) * unit;
                }
            }
            p
        })
        .collect()
}

fn setup() -> (Tsdb, usize) {
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pprof/parca/fib.pb.gz"))
            .unwrap();
    let base = decode(&bytes, &Default::default()).unwrap();
    let store = Tsdb::temporary().unwrap();
    let mut samples = 0;
    for p in jittered(&base, PROFILES, 7) {
        let s = store
            .ingest(IngestRequest {
                name: None,
                labels: Labels::from_pairs([("job", "bench")]),
                delta: None,
                profile: p,
                received_at_ms: 0,
            })
            .unwrap();
        samples += s.samples;
    }
    (store, samples)
}

fn bench_head(c: &mut Criterion) {
    let (store, samples) = setup();
    let bytes = store.head().chunk_bytes();
    eprintln!(
        "head: {PROFILES} profiles, {} series, {samples} (stack, profile) samples, {bytes} chunk bytes = {:.3} bytes/sample",
        store.head().num_series(),
        bytes as f64 / samples as f64
    );
    let sel = profstore::model::parse_selector(
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta{job=\"bench\"}",
    )
    .unwrap();
    let mut g = c.benchmark_group("head");
    g.throughput(Throughput::Elements(PROFILES as u64));
    g.bench_function("merge/360", |b| {
        b.iter(|| store.merge(&sel, TimeRange::ALL).unwrap())
    });
    let series = store.head().select(&sel);
    g.bench_function("merge_sum_only/360", |b| {
        b.iter(|| {
            let mut acc = FxHashMap::default();
            for s in &series {
                s.merge_into(i64::MIN, i64::MAX, &mut acc);
            }
            acc
        })
    });
    g.bench_function("query_range/360", |b| {
        b.iter(|| store.query_range(&sel, TimeRange::ALL, None).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_head);
criterion_main!(benches);

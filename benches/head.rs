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
//! Label queries (`labels/…`) on a head of 100k series, one per scrape
//! target: `instance` unique (100k values), `job` one of 50, `region` one of
//! 4 or missing (1 in 5), one profile type; profiles 10 s apart over 1 h
//! (series `i` at `T0 + (i mod 360) · 10 s`). Fixed seed. What's measured,
//! through `Storage` (`TimeRange::ALL` unless said):
//! - `names_all`: `label_names` with no selector;
//! - `names_most`: `label_names` of `{region!="eu-west-1"}` (about 80%);
//! - `names_one`: `label_names` of one `instance` (reads that series);
//! - `names_half_range`: `label_names` with no selector over the first
//!   half hour: the head is not inside the range, so every series' time is
//!   checked;
//! - `values_instance_all`: `label_values("instance")`, no selector;
//! - `values_instance_most`: the same for `{region!="eu-west-1"}`;
//! - `values_instance_job`: the same for one `job` (2%);
//! - `values_floor_clone`: cloning a `Vec` of the 100k values the query
//!   returns (and dropping the clone): what any answer made of owned
//!   `String`s costs at the least, the bound of `values_instance_all`.
//!
//! Run with: `cargo bench --bench head` (add `-- --quick` for a short run,
//! and a filter such as `labels` for one group).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use profstore::engine::{Storage, TimeRange};
use profstore::ingest::IngestRequest;
use profstore::model::labels::Labels;
use profstore::model::{parse_selector, MatchOp, Matcher};
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

const LABEL_SERIES: usize = 100_000;
const T0: i64 = 1_700_000_000_000;

/// The label queries' head: `LABEL_SERIES` series (see the module docs).
fn label_setup() -> Tsdb {
    let mut base = profstore::engine::suite::profile(0, &[(&["main", "leaf"], 1, &[])]);
    // One sample type, so one series per target.
    base.sample_type.remove(0);
    for s in &mut base.sample {
        s.value.remove(0);
    }
    let regions = ["us-east-1", "us-west-2", "eu-west-1", "ap-south-1"];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1abe1);
    let store = Tsdb::temporary().unwrap();
    for i in 0..LABEL_SERIES {
        let mut p = base.clone();
        p.time_nanos = (T0 + (i % 360) as i64 * 10_000) * 1_000_000;
        let job = format!("job-{}", i % 50);
        let instance = format!("10.{}.{}.{}:6060", i >> 16, (i >> 8) & 0xff, i & 0xff);
        let region = if rng.random_bool(0.2) {
            ""
        } else {
            regions[rng.random_range(0..regions.len())]
        };
        store
            .ingest(IngestRequest {
                name: None,
                labels: Labels::from_pairs([
                    ("job", job.as_str()),
                    ("instance", &instance),
                    ("region", region),
                ]),
                delta: None,
                profile: p,
                received_at_ms: 0,
            })
            .unwrap();
    }
    store
}

fn bench_labels(c: &mut Criterion) {
    let store = label_setup();
    let all = TimeRange::ALL;
    let half = TimeRange::new(T0, T0 + 1_800_000 - 1).unwrap();
    let most = vec![Matcher::new(MatchOp::NotEqual, "region", "eu-west-1").unwrap()];
    let one = parse_selector(r#"{instance="10.0.1.2:6060"}"#).unwrap();
    let job = parse_selector(r#"{job="job-7"}"#).unwrap();
    eprintln!(
        "labels: {} series, {} instances; most selects {}, half range holds {} instances",
        store.head().num_series(),
        store.label_values("instance", &[], all).unwrap().len(),
        store.series(&most, all).unwrap().len(),
        store.label_values("instance", &[], half).unwrap().len(),
    );
    let mut g = c.benchmark_group("labels");
    g.throughput(Throughput::Elements(LABEL_SERIES as u64));
    g.bench_function("names_all/100k", |b| {
        b.iter(|| store.label_names(&[], all).unwrap())
    });
    g.bench_function("names_most/100k", |b| {
        b.iter(|| store.label_names(&most, all).unwrap())
    });
    g.bench_function("names_one/100k", |b| {
        b.iter(|| store.label_names(&one, all).unwrap())
    });
    g.bench_function("names_half_range/100k", |b| {
        b.iter(|| store.label_names(&[], half).unwrap())
    });
    g.bench_function("values_instance_all/100k", |b| {
        b.iter(|| store.label_values("instance", &[], all).unwrap())
    });
    g.bench_function("values_instance_most/100k", |b| {
        b.iter(|| store.label_values("instance", &most, all).unwrap())
    });
    g.bench_function("values_instance_job/100k", |b| {
        b.iter(|| store.label_values("instance", &job, all).unwrap())
    });
    let values = store.label_values("instance", &[], all).unwrap();
    g.bench_function("values_floor_clone/100k", |b| b.iter(|| values.clone()));
    g.finish();
}

criterion_group!(benches, bench_head, bench_labels);
criterion_main!(benches);

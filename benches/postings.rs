//! Selector evaluation on the in-memory postings.
//!
//! Data (`targets`): `n` series, 6 profile types per scrape target, so `n / 6`
//! targets. Each target has `job` (one of 50), `instance` (unique per target),
//! `pod` (unique per target, `<job>-<10 random hex digits>`: the
//! high-cardinality label, `n / 6` values) and `region` (one of 4, missing on
//! about 1 target in 5). Series ids are assigned target by target, as a head
//! creates them. Fixed seed.
//!
//! What's measured (`index::select`, matchers → bitmap of series; matchers
//! parsed and compiled once, outside the loop), at 10k, 100k and 1M series,
//! throughput in series held by the index:
//! - `eq`: `cpu{job="job-7"}`: two lookups, one intersection;
//! - `regex_alt`: `cpu{job=~"job-1|job-2|job-3"}`: a literal alternation, so
//!   three lookups and a union, no regex run;
//! - `neq`: `cpu{region!="eu-west-1"}`: a lookup minus a lookup;
//! - `neq_only`: `job!="job-7"` alone (built directly: `parse_selector`
//!   rejects a selector whose matchers all match `""`): no positive matcher,
//!   so all series minus a lookup;
//! - `prefix_scan`: `cpu{pod=~"job-1-.*"}`: a scan of every `pod` value, as a
//!   prefix test (literals joined by `.*` skip the regex engine);
//! - `substr_scan_only`: `{pod=~".*-7f.*"}`: a scan of every `pod` value, as a
//!   substring search;
//! - `regex_scan`: `cpu{pod=~"job-1[0-9]-[0-9a-f]*7f"}`: a regex that needs the
//!   regex engine, run on every `pod` value, then an intersection;
//! - `regex_scan_only`: `{pod=~"job-[0-9]+-7f.*"}`: the regex engine on every
//!   `pod` value.
//!
//! Printed once per size: build time, `MemPostings::size_bytes`, and how many
//! series each selector selects.
//!
//! Run with: `cargo bench --bench postings` (add e.g. `-- --quick` or
//! `-- --warm-up-time 1 --measurement-time 2` for a short run; a filter such
//! as `-- 1000000` picks one size).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use profstore::model::labels::Labels;
use profstore::model::{parse_selector, MatchOp, Matcher};
use profstore::tsdb::index::{select, MemPostings, SeriesRef};
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::{Duration, Instant};

const PROFILE_TYPES: [&str; 6] = [
    "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta",
    "memory:alloc_objects:count:space:bytes",
    "memory:alloc_space:bytes:space:bytes",
    "memory:inuse_objects:count:space:bytes",
    "memory:inuse_space:bytes:space:bytes",
    "goroutine:goroutine:count:goroutine:count",
];
const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-south-1"];
const JOBS: usize = 50;

/// Postings for `n` series of the `targets` data set.
fn build(n: usize) -> MemPostings {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut p = MemPostings::new();
    let mut next = 1u32;
    for target in 0..n.div_ceil(PROFILE_TYPES.len()) {
        let job = format!("job-{}", target % JOBS);
        let instance = format!(
            "10.{}.{}.{}:6060",
            (target >> 16) & 0xff,
            (target >> 8) & 0xff,
            target & 0xff
        );
        let pod = format!("{job}-{:010x}", rng.random::<u64>() & 0xff_ffff_ffff);
        let region = if rng.random_bool(0.2) {
            ""
        } else {
            REGIONS[rng.random_range(0..REGIONS.len())]
        };
        for ptype in PROFILE_TYPES {
            if next as usize > n {
                break;
            }
            let labels = Labels::from_pairs([
                ("__name__", ptype),
                ("job", &job),
                ("instance", &instance),
                ("pod", &pod),
                ("region", region),
            ]);
            p.add(SeriesRef(next), &labels);
            next += 1;
        }
    }
    p
}

fn bench_select(c: &mut Criterion) {
    let cpu = PROFILE_TYPES[0];
    let cases = [
        ("eq", format!(r#"{cpu}{{job="job-7"}}"#)),
        ("regex_alt", format!(r#"{cpu}{{job=~"job-1|job-2|job-3"}}"#)),
        ("neq", format!(r#"{cpu}{{region!="eu-west-1"}}"#)),
        ("prefix_scan", format!(r#"{cpu}{{pod=~"job-1-.*"}}"#)),
        ("substr_scan_only", r#"{pod=~".*-7f.*"}"#.to_string()),
        (
            "regex_scan",
            format!(r#"{cpu}{{pod=~"job-1[0-9]-[0-9a-f]*7f"}}"#),
        ),
        ("regex_scan_only", r#"{pod=~"job-[0-9]+-7f.*"}"#.to_string()),
    ];
    let mut cases: Vec<_> = cases
        .iter()
        .map(|(name, sel)| (*name, parse_selector(sel).expect("valid selector")))
        .collect();
    let neq_only = Matcher::new(MatchOp::NotEqual, "job", "job-7").expect("valid matcher");
    cases.insert(3, ("neq_only", vec![neq_only]));

    let mut g = c.benchmark_group("select");
    for n in [10_000, 100_000, 1_000_000] {
        let start = Instant::now();
        let p = build(n);
        eprintln!(
            "postings: {n} series built in {:.2?}, {} label values, size_bytes {} ({:.1} bytes/series)",
            start.elapsed(),
            ["__name__", "job", "instance", "pod", "region"]
                .iter()
                .map(|l| p.label_values(l).len())
                .sum::<usize>(),
            p.size_bytes(),
            p.size_bytes() as f64 / n as f64
        );
        g.throughput(Throughput::Elements(n as u64));
        if n >= 1_000_000 {
            g.sample_size(20);
            g.measurement_time(Duration::from_secs(5));
        }
        for (name, matchers) in &cases {
            let hits = select(&p, matchers).cardinality();
            eprintln!("  {name}/{n}: selects {hits} series");
            g.bench_with_input(BenchmarkId::new(*name, n), matchers, |b, ms| {
                b.iter(|| select(black_box(&p), black_box(ms)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_select);
criterion_main!(benches);

//! Ingest and query cost of each storage backend, through the same
//! `Storage` trait, on one generated workload.
//!
//! Data ([`profstore::workload`], fixed seed): 20 targets × the `cpu` kind
//! (`testdata/pprof/parca/cpu_labels.pb.gz`) × 360 scrapes at 10 s — one hour
//! — with jittered values, stacks that come and go and the profile's own
//! pprof labels. Both backends hold it in memory (the store without a
//! write-ahead log, DuckDB in an in-memory database), so these figures are
//! the engines' own cost; `benches/compare.rs` measures them on disk.
//!
//! What's measured, per backend (`store/…` always, `columnar/…` with the
//! `duckdb` feature), in wall time (DuckDB runs threads of its own):
//! - `ingest/profile`: one more profile into the loaded backend (a new
//!   scrape of target 0; generated before the clock starts);
//! - `query_range/one_1h`, `query_range/all_1h`: totals over time (60 s
//!   step) of one target, and of all 20 targets, over the hour;
//! - `single/one`: one target's profile at a scrape time;
//! - `merge/one_1h`, `merge/all_1h`: the merged profile of one target, and of
//!   all targets, over the hour;
//! - `label_values/instance`: the values of `instance`.
//!
//! Run with: `cargo bench --bench backends` (the store only), or
//! `eval "$(bash scripts/setup-duckdb)"; cargo bench --features duckdb --bench backends`
//! (both); add `-- --quick` for a short run.

use criterion::{criterion_group, criterion_main, Criterion};
use profstore::engine::{Storage, TimeRange};
use profstore::model::parse_selector;
use profstore::tsdb::Tsdb;
use profstore::workload::{Kind, Workload, WorkloadSpec};
use std::path::Path;
use std::time::{Duration, Instant};

const TARGETS: usize = 20;
const SCRAPES: usize = 360;

/// A backend under test.
trait Subject: Storage {
    const NAME: &'static str;
    fn empty() -> Self;
}

impl Subject for Tsdb {
    const NAME: &'static str = "store";
    fn empty() -> Self {
        Tsdb::temporary().expect("a temporary store")
    }
}

#[cfg(feature = "duckdb")]
impl Subject for profstore::columnar::Columnar {
    const NAME: &'static str = "columnar";
    fn empty() -> Self {
        profstore::columnar::Columnar::open(None).expect("an in-memory DuckDB")
    }
}

fn workload() -> Workload {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pprof");
    let kinds = Kind::testdata(&dir, 1).expect("the cpu profile in testdata");
    Workload::new(
        WorkloadSpec {
            targets: TARGETS,
            scrapes: SCRAPES,
            lifetime_scrapes: None,
            label_cardinality: 0,
            ..WorkloadSpec::default()
        },
        kinds,
    )
}

fn bench_backend<B: Subject>(c: &mut Criterion) {
    let w = workload();
    let backend = B::empty();
    let mut samples = 0;
    let mut cpu = String::new();
    for req in w.clone() {
        let s = backend.ingest(req).expect("ingest the workload");
        samples += s.samples;
        if cpu.is_empty() {
            cpu = s
                .profile_types
                .iter()
                .find(|t| t.contains(":cpu:nanoseconds:"))
                .cloned()
                .unwrap_or_default();
        }
    }
    let spec = w.spec().clone();
    eprintln!(
        "{}: {} profiles, {samples} samples loaded",
        B::NAME,
        spec.requests(1)
    );
    let newest = spec.timestamp(TARGETS - 1, SCRAPES - 1);
    let hour = TimeRange::new(newest - 3_600_000, newest).expect("a valid range");
    let one = parse_selector(&format!(
        r#"{{__name__="{cpu}", instance="{}"}}"#,
        spec.instance(0, 0)
    ))
    .expect("a valid selector");
    let all = parse_selector(&format!(r#"{{__name__="{cpu}"}}"#)).expect("a valid selector");
    let job = parse_selector(r#"{job="workload"}"#).expect("a valid selector");

    let mut g = c.benchmark_group(B::NAME);
    // New scrapes of target 0 after the loaded hour.
    let mut next = SCRAPES;
    g.bench_function("ingest/profile", |b| {
        b.iter_custom(|iters| {
            let reqs: Vec<_> = (0..iters)
                .map(|_| {
                    next += 1;
                    w.request(next, 0, 0)
                })
                .collect();
            let t = Instant::now();
            for r in reqs {
                backend.ingest(r).expect("ingest");
            }
            t.elapsed()
        })
    });
    g.bench_function("query_range/one_1h", |b| {
        b.iter(|| backend.query_range(&one, hour, Some(60_000)).unwrap())
    });
    g.bench_function("query_range/all_1h", |b| {
        b.iter(|| backend.query_range(&all, hour, Some(60_000)).unwrap())
    });
    let at = spec.timestamp(0, SCRAPES / 2);
    g.bench_function("single/one", |b| {
        b.iter(|| backend.single(&one, at).unwrap())
    });
    g.bench_function("merge/one_1h", |b| {
        b.iter(|| backend.merge(&one, hour).unwrap())
    });
    g.bench_function("merge/all_1h", |b| {
        b.iter(|| backend.merge(&all, hour).unwrap())
    });
    g.bench_function("label_values/instance", |b| {
        b.iter(|| {
            backend
                .label_values("instance", &job, TimeRange::ALL)
                .unwrap()
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_backend::<Tsdb>(c);
    #[cfg(feature = "duckdb")]
    bench_backend::<profstore::columnar::Columnar>(c);
}

criterion_group! {
    name = group;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    targets = benches
}
criterion_main!(group);

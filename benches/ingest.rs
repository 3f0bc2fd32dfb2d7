//! Ingest cost per profile, against its floor (gunzip + protobuf decode).
//!
//! What's measured, per input file (`testdata/pprof/parca/alloc_objects.pb.gz`,
//! a Go heap profile with 4 sample types, and `testdata/pprof/pprof/large.cpu`,
//! a 2.4 MB Go CPU profile with ~23k functions):
//! - `decode_floor`: gunzip + prost decode alone;
//! - `decode_validate`: profstore's bounded decode + validation;
//! - `ingest_steady`: decode + ingest into a store that has seen the profile's
//!   metadata before (the steady state of a scraped target), each iteration at
//!   a new timestamp into the same series;
//!
//! Every ingest passes the body as received for the write-ahead log, as the
//! daemon's push and scrape paths do (`Tsdb::ingest_raw`; the store is a
//! temporary directory with the default log).
//! - `ingest_first`: decode + ingest into a fresh store (every mapping,
//!   function, location and stack is new: encoded, published and queued for
//!   the meta store's writer thread, which writes it to sled off the ingest
//!   path, on another core);
//! - `ingest_first_synced`: `ingest_first` until the writer thread has put
//!   every new entity into sled (`MetaStore::sync_writes`): the whole work
//!   of a first-seen profile, on both cores, and the bound on how many
//!   profiles with new stacks a store takes per second when they keep coming;
//! - `ingest_out_of_order`: decode + ingest of a profile stamped between two
//!   the series holds (the head rebuilds the chunk set it falls into);
//! - `ingest_late`: decode + ingest of a profile stamped inside a range
//!   already cut into a block (the late head, after the retry check reads
//!   the series' chunks from the block).
//!
//! Run with: `cargo bench --bench ingest` (add `-- --quick` for a short run).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use profstore::ingest::IngestRequest;
use profstore::model::labels::Labels;
use profstore::pprof::{decode, DecodeLimits};
use profstore::tsdb::{Tsdb, TsdbConfig};
use prost::Message;
use std::io::Read;
use std::path::Path;

const FILES: [&str; 2] = ["parca/alloc_objects.pb.gz", "pprof/large.cpu"];

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/pprof")
            .join(rel),
    )
    .unwrap()
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    if b.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        b.to_vec()
    }
}

fn bench_ingest(c: &mut Criterion) {
    for rel in FILES {
        let bytes = read(rel);
        let limits = DecodeLimits::default();
        let mut g = c.benchmark_group(format!("ingest/{rel}"));
        g.throughput(Throughput::Elements(1));
        g.sample_size(20);
        g.bench_function("decode_floor", |b| {
            b.iter(|| profstore::proto::pprof::Profile::decode(gunzip(&bytes).as_slice()).unwrap())
        });
        g.bench_function("decode_validate", |b| {
            b.iter(|| decode(&bytes, &limits).unwrap())
        });

        let store = Tsdb::temporary().unwrap();
        let mut ts = 1_000_000_000_000i64;
        let mut req = |profile| {
            ts += 10_000;
            IngestRequest {
                name: None,
                labels: Labels::from_pairs([("job", "bench")]),
                delta: None,
                profile,
                received_at_ms: ts,
            }
        };
        let mut first = decode(&bytes, &limits).unwrap();
        first.time_nanos = 0;
        store.ingest_raw(&req(first), Some(&bytes)).unwrap();
        g.bench_function("ingest_steady", |b| {
            b.iter(|| {
                let mut p = decode(&bytes, &limits).unwrap();
                p.time_nanos = 0;
                store.ingest_raw(&req(p), Some(&bytes)).unwrap()
            })
        });
        for (name, sync) in [("ingest_first", false), ("ingest_first_synced", true)] {
            g.bench_function(name, |b| {
                b.iter_batched(
                    || Tsdb::temporary().unwrap(),
                    |store| {
                        let p = decode(&bytes, &limits).unwrap();
                        let req = IngestRequest {
                            name: None,
                            labels: Labels::new(),
                            delta: None,
                            profile: p,
                            received_at_ms: 0,
                        };
                        store.ingest_raw(&req, Some(&bytes)).unwrap();
                        if sync {
                            store.meta().sync_writes().unwrap();
                        }
                        store
                    },
                    BatchSize::PerIteration,
                )
            });
        }

        let store = Tsdb::temporary().unwrap();
        let t0 = 1_000_000_000_000i64;
        let at = |t: i64| {
            let mut p = decode(&bytes, &limits).unwrap();
            p.time_nanos = t * 1_000_000;
            IngestRequest {
                name: None,
                labels: Labels::from_pairs([("job", "bench")]),
                delta: None,
                profile: p,
                received_at_ms: t,
            }
        };
        for k in 0..120 {
            store
                .ingest_raw(&at(t0 + k * 10_000), Some(&bytes))
                .unwrap();
        }
        let mut k = 0i64;
        g.bench_function("ingest_out_of_order", |b| {
            b.iter(|| {
                k += 1;
                // Between two profiles, never twice at one timestamp.
                store
                    .ingest_raw(&at(t0 + (k % 119) * 10_000 + 1 + k / 119), Some(&bytes))
                    .unwrap()
            })
        });

        let dir = tempfile::tempdir().unwrap();
        let store = Tsdb::open(TsdbConfig {
            data_dir: Some(dir.path().to_path_buf()),
            ..TsdbConfig::default()
        })
        .unwrap();
        for k in 0..120 {
            store
                .ingest_raw(&at(t0 + k * 10_000), Some(&bytes))
                .unwrap();
        }
        store.cut_all().unwrap();
        let mut k = 0i64;
        g.bench_function("ingest_late", |b| {
            b.iter(|| {
                k += 1;
                store
                    .ingest_raw(&at(t0 + (k % 119) * 10_000 + 1 + k / 119), Some(&bytes))
                    .unwrap()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench_ingest);
criterion_main!(benches);

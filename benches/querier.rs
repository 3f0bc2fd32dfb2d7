//! A querier over a bucket against the store that shipped it: merges of one
//! day of profiles, from the ingester's local blocks, through a querier
//! whose disk cache holds every range it needs (warm), and through a new
//! querier with an empty cache (cold: every range read from the bucket).
//!
//! Data ([`profstore::workload`], fixed seed): 10 targets × the `cpu` kind
//! (`testdata/pprof/parca/cpu_labels.pb.gz`) × 720 scrapes at 2 min — one
//! day — cut into 2 h blocks and shipped to a `file://` bucket in a
//! temporary directory. A local directory has no network latency: against
//! S3 the cold figures grow by the round trips (about three range reads
//! per block to open it, then one per symbols section and series blob).
//!
//! What's measured (wall time), each for one target (`one`) and all ten
//! (`all`) over the day:
//! - `local/merge_*`: `Tsdb::merge` on the ingester (blocks on its disk);
//! - `warm/merge_*`: `Querier::merge` with every range in its cache;
//! - `cold/merge_*`: a new querier (fresh cache, blocks listed and opened
//!   before the clock starts) answering one merge;
//! - `peers{1,2,4}/{warm,cold}/merge_all_1d`: the merge of all ten through
//!   a querier that shares it with 1, 2 or 4 peer queriers (itself among
//!   them), each served over HTTP on 127.0.0.1 with its own disk cache:
//!   warm, every peer's cache holds the units rendezvous hashing gives it;
//!   cold, new queriers (blocks listed and opened before the clock starts,
//!   caches empty). All peers share this machine's cores, so the figures
//!   show the protocol's cost and what two cores give, not a cluster's
//!   scaling;
//! - `live/export_2h_head`: what an ingester does for each querier sync
//!   (`LiveSource::live`): its live data, the day's last 2 h in its head,
//!   written as one block and read back.
//!
//! The bytes a cold merge reads from the bucket are printed once (with
//! peers: by all the queriers together, and how many units each read).
//!
//! Run with: `cargo bench --bench querier` (add `-- --quick` for a short
//! run).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use profstore::bucket::{Bucket, BucketOptions};
use profstore::engine::live::LiveSource;
use profstore::engine::peer::PeerWork;
use profstore::engine::{Limits, Storage, TimeRange};
use profstore::model::parse_selector;
use profstore::querier::peers::{HttpPeer, Peer, Peers};
use profstore::querier::{Querier, QuerierConfig};
use profstore::server::{router, serve, AppState};
use profstore::tsdb::{ShipTo, Tsdb, TsdbConfig};
use profstore::workload::{Kind, Workload, WorkloadSpec};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

const TARGETS: usize = 10;
const SCRAPES: usize = 720;

fn querier(bucket: &Arc<Bucket>, cache: &Path) -> Querier {
    let q = Querier::open(QuerierConfig {
        bucket: Arc::clone(bucket),
        cache_dir: Some(cache.to_path_buf()),
        cache_bytes: 1 << 30,
        limits: Limits::default(),
        sync_interval: std::time::Duration::from_secs(3600),
        dedup_label: None,
        ingesters: Vec::new(),
        peers: Default::default(),
    })
    .expect("a querier");
    q.sync().expect("list the bucket");
    q
}

/// A group of `n` queriers over `url`, each over its own bucket client
/// (its own byte counts) and cache in `dir`, served over HTTP on `rt`;
/// the first coordinates (its own entry in the peer list is read in
/// process). Every querier has listed the bucket.
struct Group {
    queriers: Vec<Arc<Querier>>,
    buckets: Vec<Arc<Bucket>>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Group {
    fn start(rt: &tokio::runtime::Runtime, url: &str, dir: &Path, n: usize) -> Group {
        let listeners: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a port"))
            .collect();
        let names: Vec<String> = listeners
            .iter()
            .map(|l| format!("http://{}", l.local_addr().expect("an address")))
            .collect();
        let mut g = Group {
            queriers: Vec::new(),
            buckets: Vec::new(),
            servers: Vec::new(),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let bucket = Arc::new(Bucket::open(url, &BucketOptions::default()).expect("a bucket"));
            let peers = Peers {
                peers: names
                    .iter()
                    .map(|u| Arc::new(HttpPeer::new(u)) as Arc<dyn Peer>)
                    .collect(),
                own_name: Some(names[i].clone()),
                ..Peers::default()
            };
            let q = Arc::new(
                Querier::open(QuerierConfig {
                    bucket: Arc::clone(&bucket),
                    cache_dir: Some(dir.join(format!("peer-{i}"))),
                    cache_bytes: 1 << 30,
                    limits: Limits::default(),
                    sync_interval: std::time::Duration::from_secs(3600),
                    dedup_label: None,
                    ingesters: Vec::new(),
                    peers,
                })
                .expect("a querier"),
            );
            q.sync().expect("list the bucket");
            let state = AppState::new(Arc::clone(&q) as Arc<dyn Storage>, 1 << 20)
                .with_peer_work(Arc::clone(&q) as Arc<dyn PeerWork>);
            let app = router(state);
            listener
                .set_nonblocking(true)
                .expect("a non-blocking listener");
            let server = rt.spawn(async move {
                let l = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                serve(
                    l,
                    app,
                    std::time::Duration::from_secs(30),
                    std::future::pending(),
                )
                .await
            });
            g.queriers.push(q);
            g.buckets.push(bucket);
            g.servers.push(server);
        }
        g
    }

    /// Bytes all the queriers read from the bucket so far.
    fn bytes_read(&self) -> u64 {
        self.buckets
            .iter()
            .map(|b| b.stats().bytes_read.load(Relaxed))
            .sum()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pprof");
    let w = Workload::new(
        WorkloadSpec {
            targets: TARGETS,
            scrapes: SCRAPES,
            interval_ms: 120_000,
            lifetime_scrapes: None,
            label_cardinality: 0,
            ..WorkloadSpec::default()
        },
        Kind::testdata(&testdata, 1).expect("the cpu profile in testdata"),
    );
    let bucket = Arc::new(
        Bucket::open(
            &format!("file://{}/bucket", dir.path().display()),
            &BucketOptions::default(),
        )
        .expect("a file bucket"),
    );
    let store = Tsdb::open(TsdbConfig {
        data_dir: Some(dir.path().join("ingester")),
        min_free_bytes: 0,
        ship: Some(ShipTo {
            bucket: Arc::clone(&bucket),
            external_labels: [("replica".to_string(), "a".to_string())].into(),
        }),
        ..TsdbConfig::default()
    })
    .expect("an ingester");
    let mut cpu = String::new();
    for req in w.clone() {
        let s = store.ingest(req).expect("ingest the workload");
        if cpu.is_empty() {
            if let Some(t) = s
                .profile_types
                .iter()
                .find(|t| t.contains(":cpu:nanoseconds:"))
            {
                cpu = t.clone();
            }
        }
    }
    store.cut_all().expect("cut the blocks");
    let shipper = store.shipper().expect("a shipper");
    shipper.ship_pending().expect("ship the blocks");
    let spec = w.spec().clone();
    let day = TimeRange::new(
        spec.timestamp(0, 0),
        spec.timestamp(TARGETS - 1, SCRAPES - 1),
    )
    .expect("a valid range");
    let one = parse_selector(&format!(
        r#"{{__name__="{cpu}", instance="{}"}}"#,
        spec.instance(0, 0)
    ))
    .expect("a valid selector");
    let all = parse_selector(&format!(r#"{{__name__="{cpu}"}}"#)).expect("a valid selector");
    eprintln!(
        "{} profiles, {} blocks, {} bytes shipped",
        spec.requests(1),
        store.blocks().len(),
        shipper.stats().bytes.load(Relaxed)
    );

    let warm = querier(&bucket, &dir.path().join("warm"));
    for (name, sel) in [("one", &one), ("all", &all)] {
        let expected = store.merge(sel, day).expect("merge");
        let before = bucket.stats().bytes_read.load(Relaxed);
        let cold = querier(&bucket, &dir.path().join(format!("probe-{name}")));
        let opened = bucket.stats().bytes_read.load(Relaxed) - before;
        assert_eq!(cold.merge(sel, day).expect("merge"), expected);
        let read = bucket.stats().bytes_read.load(Relaxed) - before - opened;
        assert_eq!(warm.merge(sel, day).expect("merge"), expected);
        eprintln!("merge_{name}: opening the blocks read {opened} bytes, a cold merge {read} more");
    }

    let mut g = c.benchmark_group("querier");
    g.sample_size(20);
    for (name, sel) in [("one", &one), ("all", &all)] {
        g.bench_function(format!("local/merge_{name}_1d"), |b| {
            b.iter(|| store.merge(sel, day).expect("merge"))
        });
        g.bench_function(format!("warm/merge_{name}_1d"), |b| {
            b.iter(|| warm.merge(sel, day).expect("merge"))
        });
        let mut k = 0;
        g.bench_function(format!("cold/merge_{name}_1d"), |b| {
            b.iter_batched(
                || {
                    k += 1;
                    querier(&bucket, &dir.path().join(format!("cold-{name}-{k}")))
                },
                |q| q.merge(sel, day).expect("merge"),
                BatchSize::PerIteration,
            )
        });
    }

    // Merges shared with 1, 2 and 4 peers.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let url = bucket.url().to_string();
    let expected = store.merge(&all, day).expect("merge");
    for n in [1, 2, 4] {
        let probe = Group::start(&rt, &url, &dir.path().join(format!("probe-peers{n}")), n);
        let before = probe.bytes_read();
        assert_eq!(probe.queriers[0].merge(&all, day).expect("merge"), expected);
        let read = probe.bytes_read() - before;
        let units: Vec<String> = probe
            .queriers
            .iter()
            .map(|q| {
                let s = q.share_stats();
                format!("{}+{}", s.local, s.answered)
            })
            .collect();
        eprintln!(
            "peers{n}: a cold merge_all read {read} bytes; units read (coordinated here + for peers) per querier: {}",
            units.join(" ")
        );
        let warm = Group::start(&rt, &url, &dir.path().join(format!("warm-peers{n}")), n);
        warm.queriers[0].merge(&all, day).expect("merge");
        g.bench_function(format!("peers{n}/warm/merge_all_1d"), |b| {
            b.iter(|| warm.queriers[0].merge(&all, day).expect("merge"))
        });
        let mut k = 0;
        g.bench_function(format!("peers{n}/cold/merge_all_1d"), |b| {
            b.iter_batched(
                || {
                    k += 1;
                    Group::start(&rt, &url, &dir.path().join(format!("cold-peers{n}-{k}")), n)
                },
                // The group is dropped (its servers stopped) after the clock.
                |g| (g.queriers[0].merge(&all, day).expect("merge"), g),
                BatchSize::PerIteration,
            )
        });
    }

    // An ingester's live data: the day's last 2 h still in its head.
    let live_store = Tsdb::open(TsdbConfig {
        data_dir: Some(dir.path().join("live-ingester")),
        min_free_bytes: 0,
        ship: Some(ShipTo {
            bucket: Arc::new(Bucket::memory()),
            external_labels: [("replica".to_string(), "b".to_string())].into(),
        }),
        ..TsdbConfig::default()
    })
    .expect("an ingester");
    let from = spec.timestamp(0, SCRAPES - 60);
    let mut head = 0;
    for req in w.clone() {
        if req.profile.time_nanos / 1_000_000 >= from {
            live_store.ingest(req).expect("ingest the workload");
            head += 1;
        }
    }
    let live = live_store
        .live()
        .expect("the live export")
        .expect("profiles in the head");
    eprintln!(
        "live export: {head} profiles in the head, {} bytes",
        live.block.len()
    );
    g.bench_function("live/export_2h_head", |b| {
        b.iter(|| live_store.live().expect("the live export"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

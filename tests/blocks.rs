//! Blocks, the shutdown snapshot, retention and garbage collection, through
//! the `Tsdb` API: the same queries give identical answers from the head
//! only, from head + blocks, and from blocks only after a restart; retention
//! deletes whole blocks; churn leaves the head and the meta store near their
//! baseline.

mod common;

use profstore::engine::{Limits, Storage, TimeRange};
use profstore::ingest::{Clock, IngestRequest, TimePolicy};
use profstore::model::labels::Labels;
use profstore::model::parse_selector;
use profstore::pprof::{decode, DecodeLimits};
use profstore::proto::pprof::Profile;
use profstore::tsdb::{Tsdb, TsdbConfig};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;

const MINUTE: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;

fn corpus(name: &str) -> Profile {
    let bytes = std::fs::read(common::testdata_dir().join(name)).unwrap();
    decode(&bytes, &DecodeLimits::default()).unwrap()
}

/// Profile `k` of a series: a subset of `base`'s samples (stacks come and
/// go), values scaled, at time `t` ms.
fn variant(base: &Profile, k: usize, t: i64) -> Profile {
    let mut p = base.clone();
    p.time_nanos = t * 1_000_000;
    let mut i = 0;
    p.sample.retain(|_| {
        i += 1;
        (i + k) % 3 != 0
    });
    for s in &mut p.sample {
        for v in &mut s.value {
            *v *= 1 + (k % 5) as i64;
        }
    }
    p
}

thread_local! {
    /// The wall clock of the stores a test opens: the data's time, moved
    /// by [`tick`] as profiles are written.
    static NOW: Arc<AtomicI64> = Arc::new(AtomicI64::new(T0));
}

/// Moves the test's wall clock to `t` (never back).
fn tick(t: i64) {
    NOW.with(|n| n.fetch_max(t, Relaxed));
}

/// A store whose wall clock is the test's ([`tick`]); profiles may be
/// stamped any time after it (the tests write hours of data at once).
fn open(dir: &Path, block_minutes: i64, retention: Option<i64>) -> Tsdb {
    let limits = Limits {
        time: TimePolicy {
            max_future_ms: 100 * 365 * 86_400_000,
            retention_ms: retention,
            clock: Clock::manual(NOW.with(Arc::clone)),
        },
        ..Limits::default()
    };
    Tsdb::open(TsdbConfig {
        data_dir: Some(dir.to_path_buf()),
        block_duration_ms: block_minutes * MINUTE,
        limits,
        ..TsdbConfig::default()
    })
    .unwrap()
}

/// 3 instances × 2 files, one profile every 10 s for `minutes`.
fn requests(from: i64, minutes: i64) -> Vec<IngestRequest> {
    let files = [
        ("cpu", corpus("parca/fib.pb.gz")),
        ("heap", corpus("dd-trace-go/heap.pprof")),
    ];
    let mut out = Vec::new();
    for step in 0..minutes * 6 {
        for inst in 0..3 {
            for (job, base) in &files {
                let t = from + step * 10_000 + inst * 7;
                out.push(IngestRequest {
                    name: None,
                    labels: Labels::from_pairs([
                        ("job", job.to_string()),
                        ("instance", format!("host-{inst}")),
                    ]),
                    delta: None,
                    profile: variant(base, (step + inst) as usize, t),
                    received_at_ms: t,
                });
            }
        }
    }
    out
}

/// Writes [`requests`] in time order, the clock following.
fn fill(store: &Tsdb, from: i64, minutes: i64) -> usize {
    let reqs = requests(from, minutes);
    for r in &reqs {
        tick(r.received_at_ms);
        store.ingest(r.clone()).unwrap();
    }
    reqs.len()
}

/// Every query kind over ranges that cross block edges, as one comparable
/// string.
fn answers(store: &Tsdb, end_minutes: i64) -> String {
    let mut out = String::new();
    let all = TimeRange::new(T0 - MINUTE, T0 + end_minutes * MINUTE).unwrap();
    let ranges = [
        all,
        TimeRange::new(T0 + 3 * MINUTE + 5_000, T0 + 7 * MINUTE - 1).unwrap(),
        TimeRange::new(T0 + 4 * MINUTE, T0 + 4 * MINUTE).unwrap(),
        TimeRange::new(T0 + 9 * MINUTE, T0 + 30 * MINUTE).unwrap(),
    ];
    for r in ranges {
        out += &format!("range {r:?}\n");
        out += &format!("names {:?}\n", store.label_names(&[], r).unwrap());
        out += &format!(
            "values {:?}\n",
            store.label_values("instance", &[], r).unwrap()
        );
        out += &format!("series {:?}\n", store.series(&[], r).unwrap());
        out += &format!("types {:?}\n", store.profile_types(&[], r).unwrap());
        for sel in [
            r#"{job="cpu"}"#,
            r#"{__name__=~"memory:alloc_objects.*", instance!="host-1"}"#,
        ] {
            let m = parse_selector(sel).unwrap();
            out += &format!(
                "range {sel} {:?}\n",
                store.query_range(&m, r, None).unwrap()
            );
            out += &format!(
                "step {sel} {:?}\n",
                store.query_range(&m, r, Some(45_000)).unwrap()
            );
        }
        for name in [
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta",
            "memory:alloc_objects:count:space:bytes",
        ] {
            let m = parse_selector(&format!(r#"{{__name__="{name}"}}"#)).unwrap();
            out += &format!("merge {name} {:?}\n", store.merge(&m, r).map(sorted));
            out += &format!(
                "single {name} {:?}\n",
                store.single(&m, r.start).map(sorted)
            );
        }
    }
    let m = parse_selector(r#"{__name__="memory:alloc_objects:count:space:bytes"}"#).unwrap();
    let a = TimeRange::new(T0, T0 + 4 * MINUTE).unwrap();
    let b = TimeRange::new(T0 + 4 * MINUTE, T0 + 9 * MINUTE).unwrap();
    out += &format!("diff {:?}\n", store.diff((&m, a), (&m, b)).map(sorted));
    out
}

/// Samples in a canonical order (the order of equal-stack samples from
/// different sources is not part of the answer).
fn sorted(mut p: profstore::model::Profile) -> profstore::model::Profile {
    p.samples.sort_by(|a, b| {
        format!("{:?}", (a.labels.clone(), &a.stack))
            .cmp(&format!("{:?}", (b.labels.clone(), &b.stack)))
    });
    p
}

#[test]
fn head_head_plus_blocks_and_blocks_after_restart_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 2, None);
    fill(&store, T0, 10);
    let want = answers(&store, 10);
    assert!(want.contains("host-2"), "the data is there");
    assert_eq!(store.blocks().len(), 0);

    // Head + blocks.
    let written = store.maintain().unwrap();
    assert!(written >= 3, "{written} blocks");
    assert!(store.head().num_series() > 0);
    assert_eq!(answers(&store, 10), want, "head + blocks");

    // Blocks only, after a restart (nothing is left in the head to replay).
    store.cut_all().unwrap();
    assert_eq!(store.head().num_series(), 0);
    assert_eq!(answers(&store, 10), want, "blocks only");
    drop(store);
    let store = open(dir.path(), 2, None);
    assert_eq!(store.head().num_series(), 0);
    assert!(store.recovery().blocks >= 5);
    assert_eq!(answers(&store, 10), want, "blocks only after restart");
}

#[test]
fn a_restart_without_close_after_a_cut_replays_only_what_no_block_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 2, None);
    fill(&store, T0, 10);
    let want = answers(&store, 10);
    store.maintain().unwrap();
    // Dropped without close(), as after a crash: no snapshot, and the WAL
    // still holds the head's profiles (and maybe some that blocks hold).
    drop(store);
    let store = open(dir.path(), 2, None);
    let r = store.recovery();
    assert!(r.blocks >= 3);
    assert_eq!(r.failed, 0);
    assert_eq!(answers(&store, 10), want);
}

#[test]
fn clean_shutdown_leaves_nothing_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 2, None);
    fill(&store, T0, 5);
    store.maintain().unwrap();
    let want = answers(&store, 10);
    store.close().unwrap();
    drop(store);
    let store = open(dir.path(), 2, None);
    assert_eq!(store.recovery().wal.records, 0, "{:?}", store.recovery());
    assert!(store.recovery().snapshot_series > 0);
    assert_eq!(answers(&store, 10), want);
    // And again after more writes, a cut and a crash: snapshot + WAL.
    fill(&store, T0 + 5 * MINUTE, 5);
    let want = answers(&store, 10);
    store.maintain().unwrap();
    drop(store); // no close(): as after a crash, the WAL is kept
    let store = open(dir.path(), 2, None);
    assert_eq!(answers(&store, 10), want);
}

/// Profiles written in shuffled order — across block edges, into ranges
/// already cut into blocks — answer every query as in-order arrival does:
/// from the late head, after a crash (WAL replay), after compaction and
/// after a clean restart; retries count once.
#[test]
fn late_profiles_answer_as_if_they_had_arrived_in_order() {
    let reqs = requests(T0, 10);
    let reference = tempfile::tempdir().unwrap();
    let a = open(reference.path(), 2, None);
    for r in &reqs {
        a.ingest(r.clone()).unwrap();
    }
    let want = answers(&a, 10);
    drop(a);

    let mut order = reqs.clone();
    let mut seed: u64 = 0x5eed;
    for i in (1..order.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        order.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 2, None);
    for (i, r) in order.iter().enumerate() {
        tick(r.received_at_ms);
        let s = store.ingest(r.clone()).unwrap();
        assert!(!s.is_duplicate());
        if i % 40 == 39 {
            store.maintain().unwrap();
        }
    }
    let ms = store.maintenance_stats();
    assert!(ms.blocks_written >= 3, "{ms:?}");
    assert_eq!(answers(&store, 10), want, "blocks, late head and head");
    for r in order.iter().step_by(7) {
        assert!(store.ingest(r.clone()).unwrap().is_duplicate());
    }
    assert_eq!(answers(&store, 10), want, "after retries");
    drop(store); // no close(): as after a crash
    let store = open(dir.path(), 2, None);
    assert_eq!(store.recovery().failed, 0, "{:?}", store.recovery());
    assert_eq!(answers(&store, 10), want, "after WAL replay");
    store.cut_all().unwrap();
    let ms = store.maintenance_stats();
    assert!(
        ms.late_compacted > 100 && ms.compactions >= 3,
        "profiles that came after their range was cut were compacted into its block: {ms:?}"
    );
    assert_eq!(answers(&store, 10), want, "all in blocks");
    store.close().unwrap();
    drop(store);
    let store = open(dir.path(), 2, None);
    assert_eq!(store.recovery().wal.records, 0);
    assert_eq!(answers(&store, 10), want, "after a clean restart");
    let blocks = store.blocks();
    for w in blocks.windows(2) {
        assert!(w[0].max_time() <= w[1].min_time(), "blocks do not overlap");
    }
}

#[test]
fn retention_deletes_whole_blocks_and_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1, Some(4 * MINUTE));
    fill(&store, T0, 12);
    store.maintain().unwrap();
    let blocks = store.blocks();
    assert!(!blocks.is_empty());
    let oldest = blocks[0].min_time();
    let newest = T0 + 12 * MINUTE;
    assert!(
        oldest >= newest - 6 * MINUTE,
        "old blocks are gone: {oldest}"
    );
    assert!(store.maintenance_stats().blocks_deleted >= 5);
    let all = TimeRange::new(T0 - MINUTE, T0 + 20 * MINUTE).unwrap();
    let m = parse_selector(r#"{job="cpu"}"#).unwrap();
    for s in store.query_range(&m, all, None).unwrap() {
        assert!(
            s.points.iter().all(|(t, _)| *t >= oldest),
            "{:?}",
            s.points[0]
        );
    }
    // Nothing left before the cut: the early range is empty.
    let early = TimeRange::new(T0, T0 + 3 * MINUTE).unwrap();
    assert!(store.series(&[], early).unwrap().is_empty());
    let files = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .count();
    assert_eq!(files, store.blocks().len());
    // A restart keeps the same view.
    drop(store);
    let store = open(dir.path(), 1, Some(4 * MINUTE));
    assert!(store.series(&[], early).unwrap().is_empty());
}

/// A profile of `stacks` stacks of depth 3 whose function names are unique
/// to `tag` (so every generation of series brings new meta entries).
fn synthetic(tag: &str, stacks: usize, t: i64) -> Profile {
    use profstore::proto::pprof as pb;
    let mut st = profstore::pprof::StringTable::new();
    let mut p = pb::Profile {
        sample_type: vec![pb::ValueType {
            r#type: st.intern("alloc_space"),
            unit: st.intern("bytes"),
        }],
        period_type: Some(pb::ValueType {
            r#type: st.intern("space"),
            unit: st.intern("bytes"),
        }),
        period: 1,
        time_nanos: t * 1_000_000,
        ..Default::default()
    };
    let mut next = 1u64;
    for s in 0..stacks {
        let mut locs = Vec::new();
        for d in 0..3 {
            let id = next;
            next += 1;
            p.function.push(pb::Function {
                id,
                name: st.intern(&format!("{tag}.f{s}_{d}")),
                ..Default::default()
            });
            p.location.push(pb::Location {
                id,
                line: vec![pb::Line {
                    function_id: id,
                    line: 1,
                    column: 0,
                }],
                ..Default::default()
            });
            locs.push(id);
        }
        p.sample.push(pb::Sample {
            location_id: locs,
            value: vec![(s as i64 + 1) * 100],
            label: vec![],
        });
    }
    p.string_table = st.into_vec();
    p
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Series that live 2 profiles each, 20 new ones every 30 s, with blocks
/// of 1 min and a retention of 3 min: after warm-up, the head's series and
/// postings, the blocks on disk and the meta store stay near their
/// baseline.
fn churn(generations: i64) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1, Some(3 * MINUTE));
    let mut baseline = None;
    for g in 0..generations {
        for i in 0..20 {
            let tag = format!("g{g}i{i}");
            for k in 0..2 {
                let t = T0 + g * 30_000 + k * 10_000 + i;
                tick(t);
                store
                    .ingest(IngestRequest {
                        name: Some("memory".into()),
                        labels: Labels::from_pairs([("instance", tag.clone())]),
                        delta: None,
                        profile: synthetic(&tag, 5, t),
                        received_at_ms: t,
                    })
                    .unwrap();
            }
        }
        store.maintain().unwrap();
        let now = (
            store.head().num_series(),
            store.head().postings_bytes(),
            store.meta().counts(),
            store.blocks().len(),
            rss_bytes(),
        );
        if g == 20 {
            baseline = Some(now);
        }
        if g % 10 == 9 {
            println!(
                "generation {g}: head series {}, postings {} B, meta {:?}, blocks {}, rss {} MB",
                now.0,
                now.1,
                now.2,
                now.3,
                now.4 >> 20
            );
        }
    }
    let (series, postings, meta, blocks, rss) = baseline.unwrap();
    let ms = store.maintenance_stats();
    let end_meta = store.meta().counts();
    println!("maintenance: {ms:?}");
    // The head holds about 1.5 block durations of series: 3 generations.
    assert!(store.head().num_series() <= series.max(60) * 3 / 2);
    assert!(store.head().postings_bytes() <= postings.max(4096) * 3 / 2);
    assert!(store.blocks().len() <= blocks + 1);
    assert!(
        end_meta.stacks <= meta.stacks * 3 / 2,
        "{end_meta:?} vs {meta:?}"
    );
    assert!(end_meta.functions <= meta.functions * 3 / 2);
    assert!(end_meta.locations <= meta.locations * 3 / 2);
    assert!(ms.series_removed as i64 >= (generations - 10) * 20);
    assert!(ms.gc_deleted > 0);
    let grown = rss_bytes().saturating_sub(rss);
    println!("rss grew {} MB after the baseline", grown >> 20);
    assert!(grown < 64 << 20, "rss grew {grown} bytes");
}

#[test]
fn churn_returns_series_postings_and_meta_to_their_baseline() {
    churn(40);
}

#[test]
#[ignore = "long: 400 generations of churn"]
fn churn_long() {
    churn(400);
}

/// Figures for the durability report, printed (run by hand, in release):
/// `PROFSTORE_REPORT_MB=1024 cargo test --release --test blocks -- --ignored report --nocapture`.
/// Ingests real profiles (20 instances × 3 files, 10 s apart) until
/// `PROFSTORE_REPORT_MB` MB of pprof (as stored in the WAL) are in, with
/// and without a WAL; then bytes per sample in the head and in blocks, WAL
/// replay speed, and start-up time and memory over the blocks.
#[test]
#[ignore = "report: run by hand in release"]
fn report() {
    let mb: u64 = std::env::var("PROFSTORE_REPORT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let files: Vec<Profile> = [
        "parca/alloc_objects.pb.gz",
        "parca/cpu_labels.pb.gz",
        "dd-trace-go/heap.pprof",
    ]
    .iter()
    .map(|f| corpus(f))
    .collect();
    // Each request comes with its pprof encoded (as a writer sends it), so
    // the WAL logs the bytes as received, as on the HTTP path. Only the
    // store calls are timed.
    let stream = |f: &mut dyn FnMut(&IngestRequest, &[u8])| {
        let mut bytes = 0u64;
        let mut step = 0i64;
        while bytes < mb << 20 {
            for inst in 0..20 {
                for (i, base) in files.iter().enumerate() {
                    let t = T0 + step * 10_000 + inst;
                    let mut p = variant(base, (step + inst) as usize, t);
                    p.time_nanos = t * 1_000_000;
                    let raw = profstore::pprof::encode(&p);
                    bytes += raw.len() as u64;
                    let req = IngestRequest {
                        name: None,
                        labels: Labels::from_pairs([
                            ("job", format!("f{i}")),
                            ("instance", format!("host-{inst}")),
                        ]),
                        delta: None,
                        profile: p,
                        received_at_ms: t,
                    };
                    f(&req, &raw);
                }
            }
            step += 1;
        }
        bytes
    };
    let timed = |store: &Tsdb| {
        let mut spent = std::time::Duration::ZERO;
        let mut n = 0u64;
        let bytes = stream(&mut |req, raw| {
            let started = std::time::Instant::now();
            store.ingest_raw(req, Some(raw)).unwrap();
            spent += started.elapsed();
            n += 1;
        });
        (n, bytes, spent)
    };
    // Without a WAL.
    let mem = Tsdb::temporary().unwrap();
    let (n, total, no_wal) = timed(&mem);
    drop(mem);
    // With the WAL (default sync), blocks of 2 h (none are cut here: the
    // stream spans less than 3 h unless it is very large).
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 120, None);
    let (_, _, with_wal) = timed(&store);
    println!(
        "ingest {n} profiles ({} MB of pprof): no WAL {:.1} profiles/s, WAL {:.1} profiles/s",
        total >> 20,
        n as f64 / no_wal.as_secs_f64(),
        n as f64 / with_wal.as_secs_f64()
    );
    let samples = store.stats().samples;
    let head_bytes = store.head().chunk_bytes() + store.head().postings_bytes();
    println!(
        "head: {samples} samples, {} chunk + postings bytes, {:.2} B/sample",
        head_bytes,
        head_bytes as f64 / samples as f64
    );
    let wal_bytes: u64 = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    // WAL replay: reopen without a clean shutdown.
    drop(store); // no close(): as after a crash, the WAL is kept
    let started = std::time::Instant::now();
    let store = open(dir.path(), 120, None);
    let replay = started.elapsed();
    println!(
        "WAL replay: {} records, {:.1} MB in {:.2} s: {:.1} profiles/s, {:.1} MB/s",
        store.recovery().wal.records,
        wal_bytes as f64 / 1e6,
        replay.as_secs_f64(),
        store.recovery().profiles as f64 / replay.as_secs_f64(),
        wal_bytes as f64 / 1e6 / replay.as_secs_f64()
    );
    // Start-up after a clean shutdown, from the head snapshot.
    store.close().unwrap();
    drop(store);
    let rss0 = rss_bytes();
    let started = std::time::Instant::now();
    let store = open(dir.path(), 120, None);
    println!(
        "start from the head snapshot ({} series): {:.2} s, rss +{} MB",
        store.recovery().snapshot_series,
        started.elapsed().as_secs_f64(),
        rss_bytes().saturating_sub(rss0) >> 20
    );
    store.cut_all().unwrap();
    let ms = store.maintenance_stats();
    println!(
        "blocks: {} files, {} bytes, {:.2} B/sample (index included), index memory {} bytes",
        ms.blocks,
        ms.block_bytes,
        ms.block_bytes as f64 / samples as f64,
        ms.block_memory_bytes
    );
    store.close().unwrap();
    drop(store);
    fn du(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    du(&e.path())
                } else {
                    m.len()
                }
            })
            .sum()
    }
    println!("data directory: {} bytes", du(dir.path()));
    let rss0 = rss_bytes();
    let started = std::time::Instant::now();
    let store = open(dir.path(), 120, None);
    println!(
        "start over {} blocks: {:.3} s, rss +{} MB",
        store.recovery().blocks,
        started.elapsed().as_secs_f64(),
        rss_bytes().saturating_sub(rss0) >> 20
    );
    let m =
        parse_selector(r#"{job="f0", __name__="memory:alloc_space:bytes:space:bytes"}"#).unwrap();
    let started = std::time::Instant::now();
    let p = store.merge(&m, TimeRange::ALL).unwrap();
    println!(
        "merge of every f0 profile from blocks: {} samples in {:.2} s",
        p.samples.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn single_finds_a_profile_in_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 120, None);
    let base = corpus("parca/cpu_labels.pb.gz");
    for (i, t) in [T0, T0 + 4 * 3600 * 1000].into_iter().enumerate() {
        store
            .ingest(IngestRequest {
                name: None,
                labels: Labels::from_pairs([("instance", "a")]),
                delta: None,
                profile: variant(&base, i, t),
                received_at_ms: t,
            })
            .unwrap();
    }
    let m = parse_selector(r#"{__name__="process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta"}"#)
        .unwrap();
    let want = store.single(&m, T0).unwrap();
    assert!(!want.samples.is_empty());
    tick(T0 + 4 * 3600 * 1000);
    assert_eq!(store.maintain().unwrap(), 1);
    assert_eq!(sorted(store.single(&m, T0).unwrap()), sorted(want));
}

/// Copies the block files (only those) of `from` into `to/blocks`.
fn copy_blocks(from: &Path, to: &Path) -> usize {
    std::fs::create_dir_all(to.join("blocks")).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(from.join("blocks")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "block") {
            std::fs::copy(&p, to.join("blocks").join(p.file_name().unwrap())).unwrap();
            n += 1;
        }
    }
    n
}

#[test]
fn blocks_copied_alone_into_an_empty_data_dir_answer_every_query_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 2, None);
    fill(&store, T0, 10);
    store.cut_all().unwrap();
    // Collection now keeps only what the (empty) head uses: the blocks
    // carry their own symbols.
    store.collect_garbage().unwrap();
    assert_eq!(store.meta().counts().stacks, 0);
    let want = answers(&store, 10);
    drop(store);

    let other = tempfile::tempdir().unwrap();
    assert!(copy_blocks(dir.path(), other.path()) >= 5);
    let copy = open(other.path(), 2, None);
    assert_eq!(
        copy.meta().counts(),
        Default::default(),
        "nothing but blocks"
    );
    assert_eq!(answers(&copy, 10), want);
    // And new writes next to the copied blocks resolve from the new node's
    // meta store.
    fill(&copy, T0 + 12 * MINUTE, 1);
    let m = parse_selector(
        r#"{__name__="process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta", job="cpu"}"#,
    )
    .unwrap();
    let old = copy
        .merge(&m, TimeRange::new(T0, T0 + 10 * MINUTE).unwrap())
        .unwrap();
    let new = copy
        .merge(
            &m,
            TimeRange::new(T0 + 12 * MINUTE, T0 + 14 * MINUTE).unwrap(),
        )
        .unwrap();
    let both = copy
        .merge(&m, TimeRange::new(T0, T0 + 14 * MINUTE).unwrap())
        .unwrap();
    assert!(old.total() > 0 && new.total() > 0);
    assert_eq!(both.total(), old.total() + new.total());
}

#[test]
fn the_same_profiles_get_the_same_ids_in_two_stores() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sa, sb) = (open(a.path(), 2, None), open(b.path(), 2, None));
    // One store keeps everything in its head, the other cuts blocks (whose
    // ids then come from the blocks' symbols): ids do not depend on it.
    fill(&sa, T0, 6);
    fill(&sb, T0, 6);
    assert!(sb.maintain().unwrap() >= 1);
    let stacks = |s: &Tsdb| {
        let mut ids: Vec<_> = s
            .head()
            .all_series()
            .iter()
            .flat_map(|x| {
                let mut set = Default::default();
                x.stack_ids(&mut set);
                set.into_iter().collect::<Vec<_>>()
            })
            .chain(s.blocks().iter().flat_map(|b| b.stack_ids().unwrap()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let ids = stacks(&sa);
    assert!(ids.len() > 100, "{} stacks", ids.len());
    assert!(ids.iter().all(|id| id.0.get_version_num() == 8));
    assert_eq!(ids, stacks(&sb));
    let (wa, wb) = (answers(&sa, 6), answers(&sb, 6));
    for (la, lb) in wa.lines().zip(wb.lines()) {
        assert_eq!(la, lb, "frame and function ids too");
    }
}

#[test]
fn a_data_dir_of_the_earlier_format_is_refused_with_what_to_do() {
    // A block of format version 1: refused, and left where it is.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("blocks")).unwrap();
    let old = dir.path().join("blocks/0_7200000.block");
    let mut bytes = b"PSBLK\0\0\x01".to_vec();
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&old, &bytes).unwrap();
    let err = Tsdb::open(TsdbConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..TsdbConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("format version 1"), "{err}");
    assert!(err.contains("move the data directory aside"), "{err}");
    assert!(old.exists(), "an old block is not moved aside as damaged");

    // A meta store with entities and no format marker (random ids).
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path().join("meta")).unwrap();
        let id = uuid::Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
        db.insert(
            b"functions/by-key/\0\0\0\0\0\0\0\0",
            id.as_bytes().as_slice(),
        )
        .unwrap();
        db.insert(b"counts/functions", 1u64.to_be_bytes().as_slice())
            .unwrap();
        db.flush().unwrap();
    }
    let err = Tsdb::open(TsdbConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..TsdbConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("random ids"), "{err}");
    assert!(err.contains("move the data directory aside"), "{err}");
}

/// Block bytes per sample with and without the symbols section, on the
/// comparison runner's steady workload (`SMALL_KINDS`; 100 targets × 3
/// kinds × 360 scrapes at 10 s by default; `PROFSTORE_REPORT_KINDS=testdata`
/// takes the larger `TESTDATA_KINDS` profiles instead). Run in release:
/// `PROFSTORE_REPORT_TARGETS=100 cargo test --release --test blocks -- --ignored block_bytes --nocapture`.
#[test]
#[ignore]
fn block_bytes_with_and_without_symbols() {
    use profstore::workload::{Kind, Workload, WorkloadSpec, SMALL_KINDS, TESTDATA_KINDS};
    let targets: usize = std::env::var("PROFSTORE_REPORT_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let spec = WorkloadSpec {
        targets,
        scrapes: 360,
        lifetime_scrapes: None,
        label_cardinality: 0,
        ..Default::default()
    };
    let list = match std::env::var("PROFSTORE_REPORT_KINDS").as_deref() {
        Ok("testdata") => TESTDATA_KINDS,
        _ => SMALL_KINDS,
    };
    let kinds = Kind::load(&common::testdata_dir(), list, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 120, None);
    let mut samples = 0u64;
    for r in Workload::new(spec, kinds) {
        samples += store.ingest(r).unwrap().samples as u64;
    }
    store.cut_all().unwrap();
    let blocks = store.blocks();
    let bytes: u64 = blocks.iter().map(|b| b.size_bytes()).sum();
    let symbols: u64 = blocks.iter().map(|b| b.symbols_bytes()).sum();
    let stacks: usize = blocks.iter().map(|b| b.stack_ids().unwrap().len()).sum();
    println!(
        "{} blocks, {samples} samples, {stacks} stacks (summed over blocks): \
         {:.3} B/sample with symbols, {:.3} B/sample without; symbols {} bytes \
         ({:.1} B/stack); a 16-byte id per stack would be {:.3} B/sample",
        blocks.len(),
        bytes as f64 / samples as f64,
        (bytes - symbols) as f64 / samples as f64,
        symbols,
        symbols as f64 / stacks as f64,
        (bytes - symbols + 16 * stacks as u64) as f64 / samples as f64,
    );
    assert!(symbols > 0 && bytes > symbols);
}

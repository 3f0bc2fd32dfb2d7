//! Blocks in a bucket: an ingester (`Tsdb` with a shipper) uploads the
//! blocks it cuts and compacts, and a querier answers from the bucket
//! alone exactly as the ingester does; replaced blocks are never read; a
//! bucket that cannot be reached keeps the WAL segments and the blocks it
//! has not taken, and a restart catches up. The compactor dedupes and
//! merges the bucket's blocks without changing an answer, safely at every
//! step.

mod common;

use common::DownPeer;
use profstore::bucket::{Bucket, BucketOptions};
use profstore::compactor::{Compactor, CompactorConfig};
use profstore::engine::live::{LiveData, LiveSource};
use profstore::engine::{Limits, Storage, TimeRange};
use profstore::ingest::{Clock, IngestRequest, TimePolicy};
use profstore::model::parse_selector;
use profstore::querier::peers::{InProcessPeer, Peer, Peers};
use profstore::querier::{Querier, QuerierConfig};
use profstore::tsdb::ship::{BLOCKS, DESCRIPTOR};
use profstore::tsdb::{ShipTo, Tsdb, TsdbConfig};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;

const MINUTE: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;

fn limits(now: &Arc<AtomicI64>) -> Limits {
    Limits {
        time: TimePolicy {
            max_future_ms: 100 * 365 * 86_400_000,
            retention_ms: None,
            clock: Clock::manual(Arc::clone(now)),
        },
        ..Limits::default()
    }
}

/// An ingester in `dir` shipping to `bucket`, 10-minute blocks.
fn ingester(dir: &Path, bucket: &Arc<Bucket>, now: &Arc<AtomicI64>) -> Tsdb {
    replica(dir, bucket, now, "a")
}

/// [`ingester`] as replica `name`.
fn replica(dir: &Path, bucket: &Arc<Bucket>, now: &Arc<AtomicI64>, name: &str) -> Tsdb {
    Tsdb::open(TsdbConfig {
        data_dir: Some(dir.to_path_buf()),
        block_duration_ms: 10 * MINUTE,
        limits: limits(now),
        min_free_bytes: 0,
        ship: Some(ShipTo {
            bucket: Arc::clone(bucket),
            external_labels: [
                ("replica".to_string(), name.to_string()),
                ("cluster".to_string(), "eu".to_string()),
            ]
            .into(),
        }),
        ..TsdbConfig::default()
    })
    .unwrap()
}

fn querier(bucket: &Arc<Bucket>, cache: &Path) -> Querier {
    deduplicating(bucket, cache, None)
}

fn deduplicating(bucket: &Arc<Bucket>, cache: &Path, label: Option<&str>) -> Querier {
    Querier::open(config(bucket, cache, label)).unwrap()
}

/// The tests' querier configuration: a 64 MiB cache in `cache`, no
/// background listing, dedup label `label`, no ingesters, no peers.
fn config(bucket: &Arc<Bucket>, cache: &Path, label: Option<&str>) -> QuerierConfig {
    QuerierConfig {
        bucket: Arc::clone(bucket),
        cache_dir: Some(cache.to_path_buf()),
        cache_bytes: 64 << 20,
        limits: Limits::default(),
        sync_interval: std::time::Duration::from_secs(3600),
        dedup_label: label.map(str::to_string),
        ingesters: Vec::new(),
        peers: Default::default(),
    }
}

/// [`common::real_stream`] for `minutes` from `from`.
fn requests(from: i64, minutes: i64) -> Vec<IngestRequest> {
    common::real_stream(from, minutes * 6)
}

fn fill(store: &Tsdb, now: &AtomicI64, reqs: &[IngestRequest]) {
    for r in reqs {
        now.fetch_max(r.received_at_ms, Relaxed);
        store.ingest(r.clone()).unwrap();
    }
}

/// Every query kind over ranges that cross block edges, as one string.
fn answers(s: &dyn Storage) -> String {
    let mut out = String::new();
    for r in [
        TimeRange::new(T0 - MINUTE, T0 + 60 * MINUTE).unwrap(),
        TimeRange::new(T0 + 8 * MINUTE, T0 + 13 * MINUTE).unwrap(),
    ] {
        out += &format!("names {:?}\n", s.label_names(&[], r).unwrap());
        out += &format!("values {:?}\n", s.label_values("instance", &[], r).unwrap());
        out += &format!("series {:?}\n", s.series(&[], r).unwrap());
        out += &format!("types {:?}\n", s.profile_types(&[], r).unwrap());
        for sel in [
            r#"{__name__=~"process_cpu:cpu:.*", instance="host-1"}"#,
            r#"{__name__=~"memory:alloc_space.*"}"#,
        ] {
            let m = parse_selector(sel).unwrap();
            out += &format!(
                "range {sel} {:?}\n",
                s.query_range(&m, r, Some(MINUTE)).unwrap()
            );
            let merged = s.merge(&m, r).unwrap();
            let mut totals: Vec<_> = merged
                .samples
                .iter()
                .map(|x| (format!("{:?} {:?}", x.stack, x.labels), x.value))
                .collect();
            totals.sort();
            out += &format!("merge {sel} {} {:?}\n", totals.len(), totals);
        }
    }
    out
}

fn ship_all(store: &Tsdb) {
    store.cut_all().unwrap();
    store.shipper().unwrap().ship_pending().unwrap();
}

fn descriptors(bucket: &Bucket) -> Vec<String> {
    let mut v: Vec<String> = bucket
        .list(BLOCKS)
        .unwrap()
        .into_iter()
        .filter(|l| l.key.ends_with(DESCRIPTOR))
        .map(|l| l.key)
        .collect();
    v.sort();
    v
}

#[test]
fn a_querier_answers_from_the_bucket_as_the_ingester_does() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let bucket = Arc::new(
        Bucket::open(
            &format!("file://{}/bucket", dir.path().display()),
            &BucketOptions::default(),
        )
        .unwrap(),
    );
    let store = ingester(&dir.path().join("ingester"), &bucket, &now);
    fill(&store, &now, &requests(T0, 25));
    ship_all(&store);
    assert!(store.blocks().len() >= 3, "{:?}", store.blocks().len());
    assert_eq!(descriptors(&bucket).len(), store.blocks().len());
    let expected = answers(&store);
    assert!(expected.contains("host-1") && expected.contains("fib"));

    let q = querier(&bucket, &dir.path().join("cache"));
    let s = q.sync().unwrap();
    assert_eq!(
        (s.blocks, s.opened, s.replaced),
        (store.blocks().len(), s.blocks, 0)
    );
    assert_eq!(answers(&q), expected);
    // A repeated query reads the bucket no more: the cache has every range.
    let read = q.bucket().stats().bytes_read.load(Relaxed);
    assert_eq!(answers(&q), expected);
    assert_eq!(q.bucket().stats().bytes_read.load(Relaxed), read);
    assert!(q.cache().stats().hits.load(Relaxed) > 0);

    // Late profiles rewrite a shipped block: the replacement is shipped and
    // the block it replaces deleted from the bucket.
    let late: Vec<IngestRequest> = requests(T0 + 3 * MINUTE + 3, 1);
    let blocks_before = descriptors(&bucket);
    for r in &late {
        store.ingest(r.clone()).unwrap();
    }
    ship_all(&store);
    let expected = answers(&store);
    let after = descriptors(&bucket);
    assert_eq!(after.len(), blocks_before.len());
    assert_ne!(after, blocks_before);
    let s = q.sync().unwrap();
    assert_eq!((s.opened, s.replaced), (1, 0));
    assert_eq!(answers(&q), expected);

    // A fresh querier with an empty cache gives the same answers.
    let fresh = querier(&bucket, &dir.path().join("cache2"));
    assert_eq!(answers(&fresh), expected);
}

#[test]
fn a_replaced_block_left_in_the_bucket_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let bucket = Arc::new(Bucket::memory());
    let store = ingester(dir.path(), &bucket, &now);
    fill(&store, &now, &requests(T0, 15));
    ship_all(&store);
    // What a crash between committing a replacement and deleting the block
    // it replaces leaves: both in the bucket.
    let old: Vec<(String, Vec<u8>)> = bucket
        .list(BLOCKS)
        .unwrap()
        .into_iter()
        .map(|l| (l.key.clone(), bucket.get(&l.key).unwrap()))
        .collect();
    for r in requests(T0 + 2 * MINUTE + 1, 1) {
        store.ingest(r).unwrap();
    }
    ship_all(&store);
    for (k, v) in old {
        bucket.put(&k, v).unwrap();
    }
    assert_eq!(descriptors(&bucket).len(), store.blocks().len() + 1);
    let q = querier(&bucket, &dir.path().join("cache"));
    let s = q.sync().unwrap();
    assert_eq!((s.blocks, s.replaced), (store.blocks().len(), 1));
    assert_eq!(answers(&q), answers(&store));
}

/// Gives `all` every request, and `a` and `b` all but one in 7 each, never
/// the same one.
fn feed_replicas(now: &AtomicI64, reqs: &[IngestRequest], all: &Tsdb, a: &Tsdb, b: &Tsdb) {
    for (i, r) in reqs.iter().enumerate() {
        now.fetch_max(r.received_at_ms, Relaxed);
        all.ingest(r.clone()).unwrap();
        if i % 7 != 3 {
            a.ingest(r.clone()).unwrap();
        }
        if i % 7 != 5 {
            b.ingest(r.clone()).unwrap();
        }
    }
}

/// Two replicas of one stream ship to one bucket; each missed some
/// profiles the other got. A querier deduplicating by `replica` counts
/// every profile once, as a store that got all of them does; without it,
/// the profiles both got count twice.
#[test]
fn replicas_count_once_with_a_dedup_label() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let bucket = Arc::new(Bucket::memory());
    let a = replica(&dir.path().join("a"), &bucket, &now, "a");
    let b = replica(&dir.path().join("b"), &bucket, &now, "b");
    let all = Tsdb::open(TsdbConfig {
        limits: limits(&now),
        ..TsdbConfig::default()
    })
    .unwrap();
    feed_replicas(&now, &requests(T0, 25), &all, &a, &b);
    ship_all(&a);
    ship_all(&b);
    let expected = answers(&all);
    let q = deduplicating(&bucket, &dir.path().join("cache"), Some("replica"));
    assert_eq!(
        q.sync().unwrap().blocks,
        a.blocks().len() + b.blocks().len()
    );
    assert_eq!(answers(&q), expected);
    let plain = querier(&bucket, &dir.path().join("cache-plain"));
    assert_ne!(answers(&plain), expected);
}

fn wal_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("wal")).unwrap().count()
}

#[test]
fn an_unreachable_bucket_keeps_the_wal_and_a_restart_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let down = Arc::new(
        Bucket::open(
            "s3://profiles",
            &BucketOptions {
                endpoint: Some("http://127.0.0.1:9".into()),
                region: Some("us-east-1".into()),
                max_retries: Some(0),
            },
        )
        .unwrap(),
    );
    let store = ingester(dir.path(), &down, &now);
    fill(&store, &now, &requests(T0, 25));
    store.cut_all().unwrap();
    let shipper = store.shipper().unwrap();
    assert!(shipper.ship_pending().is_err());
    assert_eq!(shipper.num_pending(), store.blocks().len());
    // Cut again with later profiles: nothing shipped, so no segment goes.
    let segments = wal_segments(dir.path());
    fill(&store, &now, &requests(T0 + 30 * MINUTE, 1));
    store.cut_all().unwrap();
    assert!(wal_segments(dir.path()) > segments, "segments deleted");
    let expected = answers(&store);
    store.close().unwrap();
    drop(store);

    // Back with a bucket that answers: every block is shipped, and the
    // next cut deletes the segments.
    let bucket = Arc::new(Bucket::memory());
    let store = ingester(dir.path(), &bucket, &now);
    assert_eq!(store.recovery().failed, 0);
    let shipped = store.shipper().unwrap().ship_pending().unwrap();
    assert_eq!(shipped, store.blocks().len());
    fill(&store, &now, &requests(T0 + 40 * MINUTE, 1));
    store.cut_all().unwrap();
    assert!(
        wal_segments(dir.path()) <= 2,
        "{}",
        wal_segments(dir.path())
    );
    let q = querier(&bucket, &dir.path().join("cache"));
    q.sync().unwrap();
    assert_eq!(answers(&q), expected);
}

/// Writes a minute of [`requests`] from `from` (12 profiles) to `srv`;
/// returns them.
fn push_minute(srv: &common::daemon::Server, from: i64) -> Vec<IngestRequest> {
    use prost::Message;
    let mut reqs = requests(from, 1);
    reqs.truncate(12);
    for r in &reqs {
        let labels = format!(
            "{{job=\"{}\",instance=\"{}\"}}",
            r.labels.get("job").unwrap(),
            r.labels.get("instance").unwrap()
        );
        let resp = srv.write(&labels, &r.profile.encode_to_vec());
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    reqs
}

/// A `query_range` of the CPU series from `from` to `now_ms`, by second.
fn cpu_range(from: i64, now_ms: i64) -> String {
    format!(
        "/api/v1/query_range?{}",
        common::daemon::qs(&[
            ("query", r#"{__name__=~"process_cpu:cpu:.*"}"#),
            ("start", &format!("{}", (from - 1000) / 1000)),
            ("end", &format!("{}", (now_ms + 1000) / 1000)),
            ("step", "1s"),
        ])
    )
}

/// The real binaries: `profstore serve --bucket file://…` cuts blocks by
/// the wall clock and ships them; `profstore querier` over the same bucket
/// answers the HTTP API as the ingester does, and refuses writes.
#[test]
fn the_daemons_ship_and_query_through_a_file_bucket() {
    use common::daemon::{qs, Server};
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/bucket", dir.path().display());
    let srv = Server::start(&[
        "--bucket",
        &url,
        "--external-label",
        "replica=a",
        "--block-duration",
        "2s",
    ]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Stamped well before now: their 2 s ranges are due at once, so each
    // write wakes a cut, and each cut the shipper.
    let from = now_ms - 60_000;
    let reqs = push_minute(&srv, from);
    let target = cpu_range(from, now_ms);
    let expected = srv.data(&target);
    assert_eq!(expected["result"].as_array().unwrap().len(), 2);

    let cache = dir.path().join("cache").display().to_string();
    let q = common::daemon::QuerierProcess::start(&[
        "--bucket",
        &url,
        "--sync-interval",
        "200ms",
        "--cache-dir",
        &cache,
    ]);
    let addr = q.addr.clone();
    let get = |t: &str| common::daemon::http(&addr, "GET", t, None, b"");
    // Every block is shipped and listed within a few seconds.
    let mut got = serde_json::Value::Null;
    for _ in 0..100 {
        let r = get(&target);
        if r.status == 200 {
            got = r.json()["data"].clone();
            if got == expected {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(got, expected);
    assert_eq!(
        get("/api/v1/labels").json()["data"],
        srv.data("/api/v1/labels")
    );
    let w = common::daemon::http(
        &addr,
        "POST",
        &format!("/api/v1/write?{}", qs(&[("labels", "{job=\"x\"}")])),
        None,
        &reqs[0].profile.encode_to_vec(),
    );
    assert_eq!(w.status, 501, "{}", w.text());
    let metrics = get("/metrics").text();
    assert!(metrics.contains("profstore_querier_blocks"), "{metrics}");
    assert!(srv
        .get("/metrics")
        .text()
        .contains("profstore_blocks_shipped_total"));
    assert!(q.terminate());
    assert_eq!(srv.terminate(), Some(0));
}

/// A query whose blocks cannot be read from the bucket is an error, never
/// an answer with less in it; ranges already in the cache still answer.
#[test]
fn a_query_whose_blocks_cannot_be_read_fails_rather_than_answers_less() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let root = dir.path().join("bucket");
    let bucket = Arc::new(
        Bucket::open(
            &format!("file://{}", root.display()),
            &BucketOptions::default(),
        )
        .unwrap(),
    );
    let store = ingester(&dir.path().join("ingester"), &bucket, &now);
    fill(&store, &now, &requests(T0, 25));
    ship_all(&store);
    let all = TimeRange::new(T0, T0 + 60 * MINUTE).unwrap();
    let cpu = parse_selector(r#"{__name__=~"process_cpu:cpu:.*"}"#).unwrap();
    let heap = parse_selector(r#"{__name__=~"memory:alloc_space:.*"}"#).unwrap();
    let q = querier(&bucket, &dir.path().join("cache"));
    q.sync().unwrap();
    let warm = q.merge(&cpu, all).unwrap();
    // The block files go; their descriptors stay.
    for l in bucket.list(BLOCKS).unwrap() {
        if l.key.ends_with("/block") {
            std::fs::remove_file(root.join(&l.key)).unwrap();
        }
    }
    // What the cache holds still answers; what it does not is an error.
    assert_eq!(q.merge(&cpu, all).unwrap(), warm);
    let e = q.merge(&heap, all).unwrap_err();
    assert!(e.to_string().contains("bucket"), "{e}");
    assert!(q.query_range(&heap, all, None).is_err());
    // The next query that reads nothing missing answers again.
    assert_eq!(q.merge(&cpu, all).unwrap(), warm);
}

/// Descriptors that lie (another size than the block file's, another id,
/// an unknown version) leave their block out; the rest is served.
#[test]
fn blocks_with_bad_descriptors_are_left_out_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let bucket = Arc::new(Bucket::memory());
    let store = ingester(dir.path(), &bucket, &now);
    fill(&store, &now, &requests(T0, 15));
    ship_all(&store);
    let good = descriptors(&bucket);
    let sample = bucket.get(&good[0]).unwrap();
    let d: serde_json::Value = serde_json::from_slice(&sample).unwrap();
    let id = d["id"].as_str().unwrap().to_string();
    let block = bucket.get(&format!("{BLOCKS}/{id}/block")).unwrap();
    let lie = |name: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = d.clone();
        v["id"] = name.into();
        v["sources"] = serde_json::json!([name]);
        f(&mut v);
        bucket
            .put(&format!("{BLOCKS}/{name}/block"), block.clone())
            .unwrap();
        bucket
            .put(
                &format!("{BLOCKS}/{name}/{DESCRIPTOR}"),
                serde_json::to_vec(&v).unwrap(),
            )
            .unwrap();
    };
    lie("bigger", &|v| {
        v["bytes"] = (block.len() as u64 + 100).into()
    });
    lie("smaller", &|v| v["bytes"] = 40.into());
    lie("version", &|v| v["version"] = 9.into());
    lie("other-id", &|v| v["id"] = "elsewhere".into());
    let q = querier(&bucket, &dir.path().join("cache"));
    let s = q.sync().unwrap();
    assert_eq!((s.blocks, s.unreadable), (good.len(), 4));
    assert_eq!(answers(&q), answers(&store));
}

/// Every key in the bucket with its bytes' length.
fn bucket_keys(bucket: &Bucket) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = bucket
        .list(BLOCKS)
        .unwrap()
        .into_iter()
        .map(|l| (l.key, l.size))
        .collect();
    v.sort();
    v
}

fn block_bytes(bucket: &Bucket) -> u64 {
    bucket_keys(bucket)
        .iter()
        .filter(|(k, _)| k.ends_with("/block"))
        .map(|(_, n)| n)
        .sum()
}

/// A compactor of `bucket` deduplicating by `replica`: 20-minute and
/// 2-hour levels over the tests' 10-minute blocks.
fn compactor(bucket: &Arc<Bucket>, dir: &Path, clock: Clock, delay_s: u64) -> Compactor {
    Compactor::open(CompactorConfig {
        bucket: Arc::clone(bucket),
        work_dir: dir.to_path_buf(),
        dedup_label: Some("replica".to_string()),
        ranges_ms: vec![20 * MINUTE, 120 * MINUTE],
        retention_ms: None,
        delete_delay: std::time::Duration::from_secs(delay_s),
        orphan_age: std::time::Duration::from_secs(3600),
        clock,
    })
    .unwrap()
}

/// Two replicas that each missed some profiles, shipped: what a store
/// that got every profile answers, and the replicas.
fn two_replicas(dir: &Path, bucket: &Arc<Bucket>, now: &Arc<AtomicI64>) -> (Tsdb, Tsdb, Tsdb) {
    let a = replica(&dir.join("a"), bucket, now, "a");
    let b = replica(&dir.join("b"), bucket, now, "b");
    let all = Tsdb::open(TsdbConfig {
        limits: limits(now),
        ..TsdbConfig::default()
    })
    .unwrap();
    feed_replicas(now, &requests(T0, 45), &all, &a, &b);
    ship_all(&a);
    ship_all(&b);
    (all, a, b)
}

/// The compactor merges replicas into one block and small blocks into
/// larger ones; a querier that listed the bucket before the pass, one
/// that lists it after, and one with an empty cache answer as before, each
/// profile once; marked blocks go after the delete delay, and the bucket
/// then holds fewer bytes. Late profiles a replica ships after the
/// compaction count once, and the next pass folds them in.
#[test]
fn the_compactor_dedupes_and_merges_without_changing_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let bucket = Arc::new(Bucket::memory());
    let (all, a, _b) = two_replicas(dir.path(), &bucket, &now);
    let expected = answers(&all);
    let before = bucket_keys(&bucket);
    let old = deduplicating(&bucket, &dir.path().join("old"), Some("replica"));
    assert_eq!(answers(&old), expected);

    let compact_now = Arc::new(AtomicI64::new(T0 + 60 * MINUTE));
    let c = compactor(
        &bucket,
        &dir.path().join("work"),
        Clock::manual(Arc::clone(&compact_now)),
        600,
    );
    let s = c.run_once().unwrap();
    assert!(s.merged >= 2 && s.inputs > s.merged, "{s:?}");
    assert_eq!((s.failed, s.deleted), (0, 0), "{s:?}");
    // Nothing is deleted before the delay: the querier that has not listed
    // the bucket again still reads the inputs.
    assert_eq!(answers(&old), expected);
    old.sync().unwrap();
    assert_eq!(answers(&old), expected);
    let fresh = deduplicating(&bucket, &dir.path().join("fresh"), Some("replica"));
    assert_eq!(answers(&fresh), expected);
    // A second pass has nothing to merge.
    let again = c.run_once().unwrap();
    assert_eq!((again.merged, again.marked, again.deleted), (0, 0, 0));

    compact_now.fetch_add(11 * MINUTE, Relaxed);
    let s = c.run_once().unwrap();
    assert!(s.deleted >= 6, "{s:?}");
    let after = bucket_keys(&bucket);
    let (bytes_before, bytes_after) = (
        before
            .iter()
            .filter(|(k, _)| k.ends_with("/block"))
            .map(|(_, n)| n)
            .sum::<u64>(),
        block_bytes(&bucket),
    );
    println!(
        "compaction: {} block files ({bytes_before} B) -> {} ({bytes_after} B)",
        before.iter().filter(|(k, _)| k.ends_with("/block")).count(),
        after.iter().filter(|(k, _)| k.ends_with("/block")).count(),
    );
    assert!(
        bytes_after * 10 < bytes_before * 7,
        "{bytes_before} -> {bytes_after}"
    );
    assert!(after
        .iter()
        .all(|(k, _)| !k.ends_with("deletion-mark.json")));
    old.sync().unwrap();
    assert_eq!(answers(&old), expected);
    assert_eq!(
        answers(&deduplicating(
            &bucket,
            &dir.path().join("f2"),
            Some("replica")
        )),
        expected
    );

    // Late profiles: replica a rewrites a block the compactor has merged
    // and deleted, and ships the rewrite.
    let late = requests(T0 + 3 * MINUTE + 3, 1);
    for r in &late {
        a.ingest(r.clone()).unwrap();
        all.ingest(r.clone()).unwrap();
    }
    ship_all(&a);
    let expected = answers(&all);
    assert_ne!(
        answers(&old),
        expected,
        "the late profiles change the answers"
    );
    old.sync().unwrap();
    assert_eq!(answers(&old), expected);
    let s = c.run_once().unwrap();
    assert_eq!((s.merged, s.failed), (1, 0), "{s:?}");
    compact_now.fetch_add(11 * MINUTE, Relaxed);
    c.run_once().unwrap();
    old.sync().unwrap();
    assert_eq!(answers(&old), expected);
}

/// Blocks deleted as soon as their replacement is committed (an ingester
/// deletes the blocks it replaced at once; here a compactor without a
/// delete delay): a querier that listed them before, and has not read them
/// into its cache, answers its next queries from the replacement by
/// listing the bucket again, instead of failing them.
#[test]
fn a_block_deleted_since_the_listing_is_read_from_its_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let bucket = Arc::new(Bucket::memory());
    let (all, _a, _b) = two_replicas(dir.path(), &bucket, &now);
    let expected = answers(&all);
    let q = deduplicating(&bucket, &dir.path().join("q"), Some("replica"));
    q.sync().unwrap();
    let listed = q.blocks();
    // And one that shares its merges with a peer; both listed the bucket.
    let y = Arc::new(deduplicating(
        &bucket,
        &dir.path().join("y"),
        Some("replica"),
    ));
    y.sync().unwrap();
    let peers: Vec<Arc<dyn Peer>> = vec![
        Arc::new(DownPeer("http://x")),
        Arc::new(InProcessPeer {
            name: "http://y".into(),
            work: Arc::clone(&y) as Arc<dyn profstore::engine::peer::PeerWork>,
        }),
    ];
    let x = sharing(&bucket, &dir.path().join("x"), peers);
    x.sync().unwrap();
    let compact_now = Arc::new(AtomicI64::new(T0 + 60 * MINUTE));
    let c = compactor(
        &bucket,
        &dir.path().join("work"),
        Clock::manual(compact_now),
        0,
    );
    let s = c.run_once().unwrap();
    assert!(s.merged >= 2 && s.deleted >= s.merged, "{s:?}");
    assert_eq!(q.blocks(), listed, "no sync ran meanwhile");
    assert_eq!(answers(&q), expected);
    assert!(q.blocks().len() < listed.len());
    // The shared merge first: every unit names deleted blocks.
    let sel = parse_selector(r#"{__name__=~"memory:alloc_space.*"}"#).unwrap();
    let r = TimeRange::new(T0 - MINUTE, T0 + 60 * MINUTE).unwrap();
    let totals = |p: profstore::model::Profile| {
        let mut v: Vec<_> = p
            .samples
            .iter()
            .map(|x| (format!("{:?} {:?}", x.stack, x.labels), x.value))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        totals(x.merge(&sel, r).unwrap()),
        totals(all.merge(&sel, r).unwrap())
    );
    assert_eq!(answers(&x), expected);
}

/// A crash after a merged block is committed and before its inputs are
/// marked: the next pass marks them, and answers never change. Block files
/// without a descriptor (an upload cut short) go once they are old; a
/// merge whose input cannot be read changes nothing.
#[test]
fn the_compactor_is_safe_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let bucket = Arc::new(Bucket::memory());
    let (all, _a, _b) = two_replicas(dir.path(), &bucket, &now);
    let expected = answers(&all);
    let pristine = bucket_keys(&bucket);

    // An input whose chunks are damaged (its descriptor still matches):
    // the merge that needs it is abandoned and nothing in the bucket
    // changes.
    let victim = descriptors(&bucket)[0].replace(DESCRIPTOR, "block");
    let good = bucket.get(&victim).unwrap();
    let mut bad = good.clone();
    bad[20] ^= 0xff;
    bucket.put(&victim, bad).unwrap();
    let clock_now = Arc::new(AtomicI64::new(T0 + 60 * MINUTE));
    let clock = Clock::manual(Arc::clone(&clock_now));
    let c = compactor(&bucket, &dir.path().join("work"), clock.clone(), 0);
    let s = c.run_once().unwrap();
    assert!(s.failed >= 1, "{s:?}");
    // Other windows' merges went ahead; the damaged block's did not.
    let left: Vec<String> = bucket_keys(&bucket).into_iter().map(|(k, _)| k).collect();
    let folder = victim.trim_end_matches("block");
    assert!(left.contains(&victim) && left.contains(&format!("{folder}{DESCRIPTOR}")));
    assert!(!left.contains(&format!("{folder}deletion-mark.json")));
    assert!(left.len() < pristine.len(), "{left:?}");
    bucket.put(&victim, good).unwrap();
    let q = deduplicating(&bucket, &dir.path().join("q"), Some("replica"));
    assert_eq!(answers(&q), expected);

    // A crash between the commit and the marks: the marks are lost.
    let c = compactor(&bucket, &dir.path().join("work"), clock.clone(), 3600);
    let s = c.run_once().unwrap();
    assert!(s.merged >= 1 && s.marked >= 2, "{s:?}");
    for (k, _) in bucket_keys(&bucket) {
        if k.ends_with("deletion-mark.json") {
            bucket.delete(&k).unwrap();
        }
    }
    q.sync().unwrap();
    assert_eq!(answers(&q), expected);
    let s = c.run_once().unwrap();
    assert_eq!(s.merged, 0, "{s:?}");
    assert!(
        s.marked >= 2,
        "the next pass marks what the merges replace: {s:?}"
    );
    clock_now.fetch_add(2 * 3_600_000, Relaxed);
    let s = c.run_once().unwrap();
    assert!(s.deleted >= 2, "{s:?}");
    q.sync().unwrap();
    assert_eq!(answers(&q), expected);

    // An upload cut short: a block file with no descriptor. It stays while
    // young (its descriptor may be on its way) and goes once old.
    let wall = Arc::new(AtomicI64::new(Clock::system().now_ms()));
    let c = compactor(
        &bucket,
        &dir.path().join("work"),
        Clock::manual(Arc::clone(&wall)),
        0,
    );
    bucket
        .put(&format!("{BLOCKS}/half/block"), vec![7; 100])
        .unwrap();
    assert_eq!(c.run_once().unwrap().deleted, 0);
    assert!(bucket
        .size(&format!("{BLOCKS}/half/block"))
        .unwrap()
        .is_some());
    wall.fetch_add(2 * 3_600_000, Relaxed);
    assert_eq!(c.run_once().unwrap().deleted, 1);
    assert!(bucket
        .size(&format!("{BLOCKS}/half/block"))
        .unwrap()
        .is_none());
    q.sync().unwrap();
    assert_eq!(answers(&q), expected);
}

/// [`deduplicating`] that also reads `ingesters`' live data.
fn with_ingesters(
    bucket: &Arc<Bucket>,
    cache: &Path,
    label: Option<&str>,
    ingesters: Vec<Arc<dyn LiveSource>>,
) -> Querier {
    Querier::open(QuerierConfig {
        ingesters,
        ..config(bucket, cache, label)
    })
    .unwrap()
}

/// An ingester whose live data fails after `ok` fetches.
#[derive(Debug)]
struct Flaky {
    inner: Arc<Tsdb>,
    ok: AtomicI64,
}

impl LiveSource for Flaky {
    fn name(&self) -> String {
        "flaky".into()
    }
    fn live(&self) -> Result<Option<LiveData>, profstore::model::StorageError> {
        if self.ok.fetch_sub(1, Relaxed) <= 0 {
            return Err(profstore::model::StorageError::new("ingester", "down"));
        }
        self.inner.live()
    }
}

/// What an ingester has not shipped — its head, its late profiles, blocks
/// its bucket has not taken, a rewrite of a shipped block — reaches a
/// querier through its live data, each profile once, whatever part of it
/// is shipped meanwhile; an ingester that stops answering leaves its last
/// live data in place.
#[test]
fn a_querier_reads_what_the_ingesters_have_not_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let bucket = Arc::new(Bucket::memory());
    let a = Arc::new(ingester(&dir.path().join("a"), &bucket, &now));
    // Nothing shipped: blocks cut, the shipper not run; and a head.
    fill(&a, &now, &requests(T0, 25));
    a.cut_all().unwrap();
    fill(&a, &now, &requests(T0 + 25 * MINUTE, 3));
    let flaky = Arc::new(Flaky {
        inner: Arc::clone(&a),
        ok: AtomicI64::new(5),
    });
    let q = with_ingesters(
        &bucket,
        &dir.path().join("q"),
        None,
        vec![Arc::clone(&flaky) as Arc<dyn LiveSource>],
    );
    let bucket_only = querier(&bucket, &dir.path().join("plain"));
    let s = q.sync().unwrap();
    assert_eq!((s.blocks, s.live), (0, 1));
    let expected = answers(&*a);
    assert!(expected.contains("host-1"));
    assert_eq!(answers(&q), expected);
    let all_time = TimeRange::new(T0 - MINUTE, T0 + 60 * MINUTE).unwrap();
    assert!(bucket_only.series(&[], all_time).unwrap().is_empty());

    // Part shipped, late profiles in the late head: each counts once.
    a.shipper().unwrap().ship_pending().unwrap();
    for r in requests(T0 + 3 * MINUTE + 5, 1) {
        a.ingest(r).unwrap();
    }
    q.sync().unwrap();
    let expected = answers(&*a);
    assert_eq!(answers(&q), expected);
    // The late profiles compacted into a rewrite of a shipped block that
    // is not shipped yet.
    a.cut_all().unwrap();
    assert!(a.shipper().unwrap().num_pending() > 0);
    q.sync().unwrap();
    assert_eq!(answers(&q), expected);
    // Everything shipped: the live data is the head's only.
    ship_all(&a);
    q.sync().unwrap();
    assert_eq!(answers(&q), answers(&*a));
    bucket_only.sync().unwrap();
    assert_eq!(answers(&bucket_only), answers(&*a));

    // The ingester stops answering: its last live data is read.
    fill(&a, &now, &requests(T0 + 40 * MINUTE, 1));
    q.sync().unwrap();
    let before = answers(&*a);
    assert_eq!(answers(&q), before);
    fill(&a, &now, &requests(T0 + 45 * MINUTE, 1));
    let s = q.sync().unwrap();
    assert_eq!(s.live, 1);
    assert_eq!(answers(&q), before);
    assert_ne!(answers(&q), answers(&*a));
}

/// Replicas' live data: a querier deduplicating by `replica` counts a
/// profile both replicas hold once, whether it is shipped, live, or both.
#[test]
fn replicas_live_data_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let bucket = Arc::new(Bucket::memory());
    let a = Arc::new(replica(&dir.path().join("a"), &bucket, &now, "a"));
    let b = Arc::new(replica(&dir.path().join("b"), &bucket, &now, "b"));
    let all = Tsdb::open(TsdbConfig {
        limits: limits(&now),
        ..TsdbConfig::default()
    })
    .unwrap();
    feed_replicas(&now, &requests(T0, 25), &all, &a, &b);
    // a ships what it cut; b ships nothing.
    ship_all(&a);
    for r in requests(T0 + 25 * MINUTE, 2) {
        now.fetch_max(r.received_at_ms, Relaxed);
        for s in [&all, &*a, &*b] {
            s.ingest(r.clone()).unwrap();
        }
    }
    let q = with_ingesters(
        &bucket,
        &dir.path().join("q"),
        Some("replica"),
        vec![
            Arc::clone(&a) as Arc<dyn LiveSource>,
            Arc::clone(&b) as Arc<dyn LiveSource>,
        ],
    );
    assert_eq!(answers(&q), answers(&all));
    ship_all(&b);
    q.sync().unwrap();
    assert_eq!(answers(&q), answers(&all));
}

/// The real binaries: a querier started with `--ingesters` answers what an
/// ingester holds before any block is shipped, over HTTP; it keeps the
/// last live data when the ingester dies. A node that ships no blocks
/// serves no live data.
#[test]
fn a_querier_process_reads_an_ingesters_live_data_over_http() {
    use common::daemon::{QuerierProcess, Server};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/bucket", dir.path().display());
    let mut srv = Server::start(&["--bucket", &url, "--external-label", "replica=a"]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let from = now_ms - 30_000;
    push_minute(&srv, from);
    let target = cpu_range(from, now_ms);
    let expected = srv.data(&target);
    assert_eq!(expected["result"].as_array().unwrap().len(), 2);
    let live = srv.get("/internal/v1/live");
    assert_eq!(live.status, 200);
    assert!(live.body.starts_with(b"PSBLK"));

    let cache = dir.path().join("cache").display().to_string();
    let ingester = format!("http://{}", srv.addr);
    let q = QuerierProcess::start(&[
        "--bucket",
        &url,
        "--ingesters",
        &ingester,
        "--sync-interval",
        "200ms",
        "--cache-dir",
        &cache,
    ]);
    let r = q.get(&target);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"], expected);
    assert_eq!(
        q.get("/api/v1/labels").json()["data"],
        srv.data("/api/v1/labels")
    );

    // The ingester dies: the querier answers from its last live data.
    assert_eq!(srv.signal_and_wait(libc::SIGKILL), None);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let r = q.get(&target);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"], expected);
    assert!(q.get("/metrics").text().lines().any(|l| l
        .starts_with("profstore_querier_live_fetch_failures_total ")
        && !l.ends_with(" 0")));
    assert!(q.terminate());

    // A node without a bucket has no live data to give.
    let plain = Server::start(&[]);
    let r = plain.get("/internal/v1/live");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("--bucket"), "{}", r.text());
}

/// `profstore compact` as a daemon: a pass at start (then every
/// `--interval`), its metrics on `--listen`, a clean exit on SIGTERM; and
/// the answers after its pass are the replicas' answers, each profile
/// once. Flags it cannot use are refused with status 2.
#[test]
fn the_compactor_daemon_serves_metrics_and_stops_on_sigterm() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let url = format!("file://{}/bucket", dir.path().display());
    let bucket = Arc::new(Bucket::open(&url, &BucketOptions::default()).unwrap());
    let (all, _a, _b) = two_replicas(dir.path(), &bucket, &now);
    let before = block_bytes(&bucket);
    let work = dir.path().join("work").display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_profstore"))
        .args(["compact", "--bucket", &url, "--dedup-label", "replica"])
        .args([
            "--delete-delay",
            "0s",
            "--interval",
            "1h",
            "--ranges",
            "20m,2h",
        ])
        .args(["--listen", "127.0.0.1:0", "--work-dir", &work])
        .args(["--log-level", "warn"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    let metric = |name: &str| -> Option<i64> {
        let r = common::daemon::http(&addr, "GET", "/metrics", None, b"");
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    };
    let mut waited = 0;
    while metric("profstore_compactor_passes_total") != Some(1) {
        waited += 1;
        assert!(waited < 300, "no pass in 30 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(metric("profstore_compactor_blocks_written_total").unwrap() >= 2);
    assert!(metric("profstore_compactor_blocks_deleted_total").unwrap() >= 6);
    assert_eq!(metric("profstore_compactor_failed_merges_total"), Some(0));
    let after = block_bytes(&bucket);
    assert_eq!(
        metric("profstore_compactor_bucket_block_bytes"),
        Some(after as i64)
    );
    assert!(after < before, "{before} -> {after}");
    let health = common::daemon::http(&addr, "GET", "/-/healthy", None, b"");
    assert_eq!(health.status, 200);
    let q = deduplicating(&bucket, &dir.path().join("q"), Some("replica"));
    assert_eq!(answers(&q), answers(&all));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    for bad in [
        ["--ranges", "2h,1h"],
        ["--delete-delay", "soon"],
        ["--interval", "0s"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_profstore"))
            .args(["compact", "--bucket", &url, "--once", "--work-dir", &work])
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad[0]), "{bad:?}: {err}");
    }
}

/// A peer in process that answers after `delay`.
#[derive(Debug)]
struct SlowPeer {
    inner: InProcessPeer,
    delay: std::time::Duration,
}

impl Peer for SlowPeer {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn partial(&self, request: &[u8]) -> Result<Vec<u8>, profstore::model::StorageError> {
        std::thread::sleep(self.delay);
        self.inner.partial(request)
    }
}

/// A deduplicating querier named `x` sharing merges with `peers`.
fn sharing(bucket: &Arc<Bucket>, cache: &Path, peers: Vec<Arc<dyn Peer>>) -> Querier {
    Querier::open(QuerierConfig {
        peers: Peers {
            peers,
            own_name: Some("http://x".into()),
            ..Peers::default()
        },
        ..config(bucket, cache, Some("replica"))
    })
    .unwrap()
}

/// Merges shared between 1, 2 and 3 peers answer exactly as one querier
/// does, each replicated profile once; the peers read units they never
/// listed; a peer that is down and one that is slow lose their share to
/// the others, and the answers stay the same.
#[test]
fn merges_shared_between_peers_answer_as_one_querier() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let bucket = Arc::new(Bucket::memory());
    let (all, a, b) = two_replicas(dir.path(), &bucket, &now);
    assert!(a.blocks().len() + b.blocks().len() >= 8);
    let expected = answers(&all);
    let y = Arc::new(deduplicating(
        &bucket,
        &dir.path().join("y"),
        Some("replica"),
    ));
    let z = Arc::new(deduplicating(
        &bucket,
        &dir.path().join("z"),
        Some("replica"),
    ));
    let in_process = |name: &str, q: &Arc<Querier>| InProcessPeer {
        name: name.into(),
        work: Arc::clone(q) as Arc<dyn profstore::engine::peer::PeerWork>,
    };
    let own: Arc<dyn Peer> = Arc::new(DownPeer("http://x"));
    let list: Vec<Arc<dyn Peer>> = vec![
        Arc::clone(&own),
        Arc::new(in_process("http://y", &y)),
        Arc::new(in_process("http://z", &z)),
    ];
    for n in 1..=3 {
        let x = sharing(
            &bucket,
            &dir.path().join(format!("x{n}")),
            list[..n].to_vec(),
        );
        assert_eq!(answers(&x), expected, "{n} peers");
        let st = x.share_stats();
        assert_eq!(st.failures, 0, "{n} peers: {st:?}");
        assert!(st.local > 0, "{n} peers: {st:?}");
        assert_eq!(st.remote > 0, n > 1, "{n} peers: {st:?}");
        eprintln!("{n} peers: {st:?}");
    }
    // y and z never listed the bucket: they opened what the units named.
    let (ys, zs) = (y.share_stats(), z.share_stats());
    eprintln!("y {ys:?}\nz {zs:?}");
    assert!(ys.answered + zs.answered > 0);
    assert!(y.blocks().is_empty());

    let slow = SlowPeer {
        inner: in_process("http://y", &y),
        delay: std::time::Duration::from_secs(2),
    };
    let x = sharing(
        &bucket,
        &dir.path().join("x-faults"),
        vec![own, Arc::new(DownPeer("http://down")), Arc::new(slow)],
    );
    assert_eq!(answers(&x), expected);
    let st = x.share_stats();
    // The peer that is down failed the first merge; the next ones left it
    // out (it backs off).
    assert_eq!(st.failures, 1, "{st:?}");
    assert!(st.stolen > 0, "{st:?}");
    eprintln!("faults: {st:?}");
}

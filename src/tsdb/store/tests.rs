//! Label queries answered from the postings equal the obvious scan of the
//! selected series' labels, over random stores with blocks, a late head
//! (with empty series: retries of profiles a block holds) and the head, for
//! random matchers and time ranges.

use super::*;
use crate::engine::suite::profile;
use crate::ingest::{Clock, TimePolicy};
use crate::model::MatchOp;
use proptest::prelude::*;

const MINUTE: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;

/// One profile to write: `job`, `x` (`""`: none), the pprof label `ep` of
/// its sample (`""`: none), its time as a step of 10 s after `T0`, and a
/// sample value.
type Write = (&'static str, &'static str, &'static str, i64, i64);

fn arb_write() -> impl Strategy<Value = Write> {
    (
        prop::sample::select(vec!["a", "b"]),
        prop::sample::select(vec!["", "1", "2"]),
        prop::sample::select(vec!["", "/p", "/q"]),
        0..30i64,
        1..4i64,
    )
}

fn request(w: &Write) -> IngestRequest {
    let (job, x, ep, step, v) = *w;
    let labels: &[(&str, &str)] = if ep.is_empty() { &[] } else { &[("ep", ep)] };
    IngestRequest {
        name: None,
        labels: Labels::from_pairs([("job", job), ("x", x)]),
        delta: None,
        profile: profile(T0 + step * 10_000, &[(&["main", "leaf"], v, labels)]),
        received_at_ms: 0,
    }
}

fn arb_matcher() -> impl Strategy<Value = Matcher> {
    let name = prop::sample::select(vec!["job", "x", "ep", "__name__", "nope"]);
    let value = prop::sample::select(vec![
        "",
        "a",
        "b",
        "1",
        "/p",
        "a|1",
        ".*",
        ".+",
        "/.*",
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
    ]);
    let op = prop::sample::select(vec![
        MatchOp::Equal,
        MatchOp::NotEqual,
        MatchOp::Regex,
        MatchOp::NotRegex,
    ]);
    (op, name, value).prop_map(|(op, name, v)| Matcher::new(op, name, v).unwrap())
}

/// A range bound: every 15 s from before `T0` to after the last write, or
/// the ends of time.
fn arb_time() -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        8 => (-1..24i64).prop_map(|k| T0 + k * 15_000),
    ]
}

fn store(dir: &std::path::Path) -> Tsdb {
    store_syncing(dir, crate::tsdb::wal::SyncPolicy::default())
}

fn store_syncing(dir: &std::path::Path, sync: crate::tsdb::wal::SyncPolicy) -> Tsdb {
    let now = Arc::new(AtomicI64::new(T0));
    Tsdb::open(TsdbConfig {
        wal: WalOptions {
            sync,
            ..WalOptions::default()
        },
        data_dir: Some(dir.to_path_buf()),
        block_duration_ms: MINUTE,
        limits: Limits {
            time: TimePolicy {
                max_future_ms: 365 * 86_400_000,
                retention_ms: None,
                clock: Clock::manual(now),
            },
            ..Limits::default()
        },
        ..TsdbConfig::default()
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn label_queries_equal_a_scan_of_the_selected_series(
        first in prop::collection::vec(arb_write(), 0..12),
        retried in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        second in prop::collection::vec(arb_write(), 0..12),
        cut_again in any::<bool>(),
        third in prop::collection::vec(arb_write(), 0..6),
        queries in prop::collection::vec(
            (prop::collection::vec(arb_matcher(), 0..3), arb_time(), arb_time()),
            1..6,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        // Into the head, then blocks.
        for w in &first {
            s.ingest_raw(&request(w), None).unwrap();
        }
        s.cut_all().unwrap();
        // Retries of profiles in blocks: empty series in the late head.
        if !first.is_empty() {
            for i in &retried {
                s.ingest_raw(&request(i.get(&first)), None).unwrap();
            }
        }
        // Before the blocks' end into the late head, after it into the head.
        for w in &second {
            s.ingest_raw(&request(w), None).unwrap();
        }
        if cut_again {
            s.cut_all().unwrap();
        }
        for w in &third {
            s.ingest_raw(&request(w), None).unwrap();
        }

        for (ms, a, b) in &queries {
            let range = TimeRange::new(*a.min(b), *a.max(b)).unwrap();
            let (groups, by_map) = select_and_by_map(&s, ms, range);
            prop_assert_eq!(&groups, &by_map, "series groups {:?} {:?}", ms, range);
            let types: BTreeSet<String> = groups.iter().map(|g| g.1.clone()).collect();
            prop_assert_eq!(
                s.profile_types(ms, range).unwrap().iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                types.into_iter().collect::<Vec<_>>()
            );
            prop_assert_eq!(
                s.label_names(ms, range).unwrap(),
                s.label_names_by_scan(ms, range),
                "names {:?} {:?}", ms, range
            );
            for name in ["job", "x", "ep", "__name__", "nope"] {
                prop_assert_eq!(
                    s.label_values(name, ms, range).unwrap(),
                    s.label_values_by_scan(name, ms, range),
                    "values of {} {:?} {:?}", name, ms, range
                );
            }
        }
    }
}

/// A series group as the test compares it: labels, profile type, the
/// replicas of its pieces and how many pieces.
type GroupView = (
    Labels,
    String,
    Vec<Option<crate::tsdb::reader::Replica>>,
    usize,
);

/// Each series group [`query::select`] returns — labels, profile type,
/// replicas and pieces in part order — and the same from the obvious
/// grouping of every part's pieces in a map keyed by labels.
fn select_and_by_map(
    s: &Tsdb,
    ms: &[Matcher],
    range: TimeRange,
) -> (Vec<GroupView>, Vec<GroupView>) {
    let parts = s.state.read();
    s.with_parts(&parts, |all| {
        let fast = query::select(all, ms, range, &mut |_| {})
            .iter()
            .map(|g| {
                (
                    g.labels().clone(),
                    g.profile_type().to_string(),
                    g.replicas.clone(),
                    g.parts.len(),
                )
            })
            .collect();
        let mut map = BTreeMap::<Labels, (String, Vec<_>, usize)>::new();
        for part in all.iter().filter(|p| p.overlaps(range.start, range.end)) {
            for piece in query::select_part(*part, ms, range) {
                let e = map
                    .entry(piece.labels().clone())
                    .or_insert_with(|| (piece.profile_type().to_string(), Vec::new(), 0));
                e.1.push(part.replica());
                e.2 += 1;
            }
        }
        let slow = map
            .into_iter()
            .map(|(l, (t, replicas, n))| {
                // `SeriesGroup` keeps replicas only when one is set.
                let replicas = if replicas.iter().any(Option::is_some) {
                    replicas
                } else {
                    Vec::new()
                };
                (l, t, replicas, n)
            })
            .collect();
        (fast, slow)
    })
}

/// A head whose every series has a profile in the range answers from its
/// postings; a series that is empty (a retry of a profile a block holds
/// created it in the late head) or out of range is still left out.
#[test]
fn empty_and_out_of_range_series_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let w: Write = ("a", "1", "", 0, 1);
    s.ingest_raw(&request(&w), None).unwrap();
    s.cut_all().unwrap();
    assert_eq!(s.blocks().len(), 1);
    // Out of the block's range: nothing.
    let later = TimeRange::new(T0 + 10 * MINUTE, i64::MAX).unwrap();
    assert!(s.label_names(&[], later).unwrap().is_empty());
    // A retry: the late head gets an empty series, which names nothing.
    assert!(s.ingest_raw(&request(&w), None).unwrap().is_duplicate());
    assert!(s.label_values("x", &[], later).unwrap().is_empty());
    assert_eq!(
        s.label_values("x", &[], TimeRange::ALL).unwrap(),
        vec!["1".to_string()]
    );
    // A new series in the head, later.
    let w2: Write = ("b", "2", "", 60, 1);
    s.ingest_raw(&request(&w2), None).unwrap();
    assert_eq!(
        s.label_values("x", &[], later).unwrap(),
        vec!["2".to_string()]
    );
    assert_eq!(
        s.label_values("job", &[], TimeRange::ALL).unwrap(),
        vec!["a".to_string(), "b".to_string()]
    );
    let early = TimeRange::new(i64::MIN, T0 + 20_000).unwrap();
    assert_eq!(
        s.label_values("job", &[], early).unwrap(),
        vec!["a".to_string()]
    );
}

/// A batch answers each profile as [`Tsdb::ingest_raw`] would — a refused
/// one gets its error and changes nothing, a retry is a duplicate — with
/// one commit of the log (one sync where each profile alone takes one);
/// everything it acknowledged is replayed from the log after a restart.
#[test]
fn a_batch_answers_as_single_writes_and_its_profiles_survive_a_restart() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let good = |job: &'static str, step: i64, v: i64| request(&(job, "1", "/p", step, v));
    let mut bad = good("a", 3, 1);
    bad.labels = Labels::from_pairs([("", "x")]);
    let reqs = [
        good("a", 1, 5),
        bad,
        good("b", 2, 7),
        good("a", 1, 5),
        good("a", 4, 9),
    ];
    let batch: Vec<(&IngestRequest, Option<&[u8]>)> = reqs.iter().map(|r| (r, None)).collect();
    let always = crate::tsdb::wal::SyncPolicy::Always;
    let a = store_syncing(dir_a.path(), always);
    let b = store_syncing(dir_b.path(), always);
    let syncs = |s: &Tsdb| s.wal.as_ref().map(|w| w.syncs()).unwrap();
    let (a0, b0) = (syncs(&a), syncs(&b));
    let batched = a.ingest_batch(&batch);
    let single: Vec<_> = reqs.iter().map(|r| b.ingest_raw(r, None)).collect();
    assert_eq!(syncs(&a) - a0, 1, "one sync for the batch");
    assert_eq!(syncs(&b) - b0, 4, "one per stored profile or retry");
    assert_eq!(batched.len(), reqs.len());
    for (x, y) in batched.iter().zip(&single) {
        match (x, y) {
            (Ok(x), Ok(y)) => assert_eq!(
                (x.samples, x.series, x.duplicate_series),
                (y.samples, y.series, y.duplicate_series)
            ),
            (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string()),
            _ => panic!("batched {x:?}, single {y:?}"),
        }
    }
    assert!(batched[1].is_err() && batched[3].as_ref().unwrap().is_duplicate());
    assert_eq!(a.stats().profiles, 3);
    assert_eq!(a.stats().profiles, b.stats().profiles);
    assert_eq!(a.stats().samples, b.stats().samples);
    let all: Vec<Matcher> = Vec::new();
    let range = |s: &Tsdb| s.query_range(&all, TimeRange::ALL, None).unwrap();
    let expected = range(&b);
    assert_eq!(range(&a), expected);
    // Three profiles stored, each in two series (one per sample type).
    assert_eq!(expected.iter().map(|s| s.points.len()).sum::<usize>(), 6);
    drop(a);
    let a = store(dir_a.path());
    assert_eq!(range(&a), expected, "replayed from the log");
}

/// Maintenance seals the open chunk sets of series idle for
/// [`maintenance::SEAL_IDLE_MS`] (a target that went away): the head holds
/// fewer bytes, answers do not change, and a later profile of the series is
/// stored as in a store that never sealed.
#[test]
fn idle_series_are_sealed_and_answer_as_before() {
    let now = Arc::new(AtomicI64::new(T0));
    let open = |dir: &std::path::Path| {
        Tsdb::open(TsdbConfig {
            data_dir: Some(dir.to_path_buf()),
            block_duration_ms: 120 * MINUTE,
            limits: Limits {
                time: TimePolicy {
                    max_future_ms: 365 * 86_400_000,
                    retention_ms: None,
                    clock: Clock::manual(now.clone()),
                },
                ..Limits::default()
            },
            ..TsdbConfig::default()
        })
        .unwrap()
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sealing, never) = (open(dir_a.path()), open(dir_b.path()));
    let write = |w: &Write| {
        for s in [&sealing, &never] {
            s.ingest_raw(&request(w), None).unwrap();
        }
    };
    // `a` stops after 20 s; `b` goes on. Several stacks make columns.
    for step in 0..3 {
        write(&("a", "1", "/p", step, 3));
        write(&("a", "1", "/q", step, 5));
        write(&("b", "1", "/p", step, 7));
    }
    let all: Vec<Matcher> = Vec::new();
    let cpu = [Matcher::new(
        MatchOp::Equal,
        "__name__",
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta",
    )
    .unwrap()];
    let answers = |s: &Tsdb| {
        (
            s.query_range(&all, TimeRange::ALL, None).unwrap(),
            s.merge(&cpu, TimeRange::ALL).unwrap(),
        )
    };
    // The first run seals nothing: nothing is idle yet.
    now.store(T0 + 30_000, std::sync::atomic::Ordering::SeqCst);
    sealing.maintain().unwrap();
    let bytes = sealing.head().chunk_bytes();
    assert_eq!(bytes, never.head().chunk_bytes());
    // Six minutes later `a` is idle; `b` got a profile meanwhile.
    now.store(T0 + 6 * MINUTE, std::sync::atomic::Ordering::SeqCst);
    write(&("b", "1", "/p", 35, 7));
    let before = answers(&sealing);
    assert!(sealing.needs_maintenance());
    sealing.maintain().unwrap();
    assert!(
        sealing.head().chunk_bytes() < never.head().chunk_bytes(),
        "{} bytes sealed, {} not",
        sealing.head().chunk_bytes(),
        never.head().chunk_bytes()
    );
    assert!(!sealing.needs_maintenance(), "sealed a minute ago");
    assert_eq!(answers(&sealing), before);
    assert_eq!(answers(&sealing), answers(&never));
    // `a` comes back: its set takes the profile as if never sealed.
    write(&("a", "1", "/p", 37, 11));
    write(&("a", "1", "/r", 38, 13));
    assert_eq!(answers(&sealing), answers(&never));
}

//! Lossless round trip: every corpus profile is ingested into one store, then
//! merged back per sample type, and the per-stack totals must equal the
//! input's (see `common::totals` for what "stack" means here). With the
//! `duckdb` feature the same round trip runs on the DuckDB backend.
//!
//! Sample labels (`span_id`, `profile_id`, … where a backend keeps them per
//! sample) select samples but are not in a merge's output: the input's
//! totals are taken without them.

mod common;

use profstore::engine::{Storage, TimeRange};
use profstore::ingest::IngestRequest;
use profstore::model::labels::Labels;
use profstore::model::to_pprof;
use profstore::model::{parse_selector, MatchOp, Matcher};
use profstore::tsdb::{Tsdb, TsdbConfig};
use std::collections::BTreeMap;

const RECEIVED_AT: i64 = 1_700_000_000_000;

fn eq(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::Equal, name, value).unwrap()
}

fn ingest_file<B: Storage>(
    store: &B,
    rel: &str,
    path: &std::path::Path,
) -> profstore::proto::pprof::Profile {
    let p = common::load(path);
    store
        .ingest(IngestRequest {
            name: None,
            labels: Labels::from_pairs([("file", rel)]),
            delta: None,
            profile: p.clone(),
            received_at_ms: RECEIVED_AT,
        })
        .unwrap_or_else(|e| panic!("{rel}: {e}"));
    p
}

/// `p` without the sample labels named `names`.
fn without_labels(
    p: &profstore::proto::pprof::Profile,
    names: &[String],
) -> profstore::proto::pprof::Profile {
    let mut p = p.clone();
    let st = p.string_table.clone();
    let named = |k: i64| st.get(k as usize).is_some_and(|s| names.contains(s));
    for s in &mut p.sample {
        s.label.retain(|l| l.str == 0 || !named(l.key));
    }
    p
}

/// For each sample type of `input`, the merged output's totals.
fn check_round_trip<B: Storage>(store: &B, rel: &str, input: &profstore::proto::pprof::Profile) {
    let input = &without_labels(input, &store.limits().labels.sample_labels);
    let want = common::totals(input);
    let types = store
        .profile_types(&[eq("file", rel)], TimeRange::ALL)
        .unwrap();
    let s = |i: i64| {
        input
            .string_table
            .get(i as usize)
            .cloned()
            .unwrap_or_default()
    };
    for (t, vt) in input.sample_type.iter().enumerate() {
        let (st, su) = (s(vt.r#type), s(vt.unit));
        let pt = types
            .iter()
            .find(|pt| pt.sample_type == st && pt.sample_unit == su)
            .unwrap_or_else(|| panic!("{rel}: no profile type for {st}/{su} in {types:?}"));
        let merged = store
            .merge(
                &[eq("file", rel), eq("__name__", &pt.to_string())],
                TimeRange::ALL,
            )
            .unwrap_or_else(|e| panic!("{rel}: {e}"));
        let out = to_pprof(&merged);
        // The output must be a valid pprof.
        let bytes = profstore::pprof::encode(&out);
        let out = profstore::pprof::decode(&bytes, &Default::default())
            .unwrap_or_else(|e| panic!("{rel}: output invalid: {e}"));
        assert_eq!(out.sample_type.len(), 1);
        assert_eq!(out.string_table[out.sample_type[0].r#type as usize], st);
        assert_eq!(out.period, input.period, "{rel}: period");
        let got = common::totals(&out).pop().unwrap();
        if got != want[t] {
            let (din, dout) = (common::describe(input), common::describe(&out));
            let missing: Vec<_> = want[t]
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(v))
                .take(3)
                .map(|(k, v)| (&din[k], v, got.get(k)))
                .collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, v)| want[t].get(*k) != Some(v))
                .take(3)
                .map(|(k, v)| (&dout[k], v))
                .collect();
            panic!(
                "{rel} {st}/{su}: {} keys in, {} out\nmissing/different: {missing:#?}\nextra: {extra:#?}",
                want[t].len(),
                got.len()
            );
        }
    }
}

/// Ingests the whole corpus into `store`, then checks every file's round
/// trip.
fn round_trip_corpus<B: Storage>(store: &B) {
    let files = common::corpus();
    assert!(files.len() >= 30, "corpus has {} files", files.len());
    let mut inputs = Vec::new();
    let t0 = std::time::Instant::now();
    for (rel, path) in &files {
        inputs.push((rel.clone(), ingest_file(store, rel, path)));
    }
    let t1 = std::time::Instant::now();
    for (rel, input) in &inputs {
        let t = std::time::Instant::now();
        check_round_trip(store, rel, input);
        if t.elapsed().as_secs_f64() > 1.0 {
            eprintln!("{rel}: check took {:?}", t.elapsed());
        }
    }
    eprintln!(
        "round-tripped {} files: ingest {:?}, check {:?}",
        inputs.len(),
        t1 - t0,
        t1.elapsed()
    );
}

#[test]
fn every_corpus_profile_round_trips() {
    let store = Tsdb::temporary().unwrap();
    round_trip_corpus(&store);
    eprintln!(
        "{} series; meta {:?}",
        store.head().num_series(),
        store.meta().counts()
    );
}

#[cfg(feature = "duckdb")]
#[test]
fn every_corpus_profile_round_trips_through_duckdb() {
    let store = profstore::columnar::Columnar::open(None).unwrap();
    round_trip_corpus(&store);
    eprintln!("{} series", store.num_series());
}

#[test]
fn merging_ten_consecutive_heap_profiles_sums_per_stack() {
    merge_ten_heap_profiles(&Tsdb::temporary().unwrap());
}

#[cfg(feature = "duckdb")]
#[test]
fn merging_ten_consecutive_heap_profiles_sums_per_stack_in_duckdb() {
    merge_ten_heap_profiles(&profstore::columnar::Columnar::open(None).unwrap());
}

fn merge_ten_heap_profiles<B: Storage>(store: &B) {
    let mut files: Vec<_> = common::files_under(&common::testdata_dir().join("parca"))
        .into_iter()
        .filter(|(rel, _)| rel.starts_with("16445"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 10);
    let mut want: Vec<BTreeMap<common::Key, i64>> = Vec::new();
    let mut timestamps = Vec::new();
    for (_, path) in &files {
        let p = common::load(path);
        timestamps.push(p.time_nanos / 1_000_000);
        for (t, m) in common::totals(&p).into_iter().enumerate() {
            if want.len() <= t {
                want.push(BTreeMap::new());
            }
            for (k, v) in m {
                *want[t].entry(k).or_insert(0) += v;
            }
        }
        store
            .ingest(IngestRequest {
                name: Some("memory".into()),
                labels: Labels::from_pairs([("job", "parca")]),
                delta: Some(false),
                profile: p,
                received_at_ms: 0,
            })
            .unwrap();
    }
    for m in &mut want {
        m.retain(|_, v| *v != 0);
    }
    for (t, st) in [
        "alloc_objects:count",
        "alloc_space:bytes",
        "inuse_objects:count",
        "inuse_space:bytes",
    ]
    .iter()
    .enumerate()
    {
        let sel = parse_selector(&format!("memory:{st}:space:bytes{{job=\"parca\"}}")).unwrap();
        let merged = store.merge(&sel, TimeRange::ALL).unwrap();
        assert_eq!(merged.time_ms, timestamps[0]);
        let got = common::totals(&to_pprof(&merged)).pop().unwrap();
        assert_eq!(got, want[t], "{st}");
        // totals over time: one point per profile, summing to the merge.
        let range = store.query_range(&sel, TimeRange::ALL, None).unwrap();
        assert_eq!(range.len(), 1);
        assert_eq!(range[0].points.len(), 10);
        assert_eq!(
            range[0].points.iter().map(|p| p.1).sum::<i64>(),
            merged.total()
        );
        // A window holding only the 3rd profile equals that profile.
        let single = store.single(&sel, timestamps[2] - 1).unwrap();
        assert_eq!(single.time_ms, timestamps[2]);
        let one = common::totals(&common::load(&files[2].1)).remove(t);
        assert_eq!(common::totals(&to_pprof(&single)).pop().unwrap(), one);
    }
}

#[test]
fn same_profile_twice_adds_no_metadata_and_reopen_keeps_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::testdata_dir().join("parca/alloc_objects.pb.gz");
    let bytes = std::fs::read(&path).unwrap();
    let config = TsdbConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let counts = {
        let store = Tsdb::open(config.clone()).unwrap();
        store
            .ingest_bytes(&bytes, None, Labels::from_pairs([("a", "1")]), 0)
            .unwrap();
        let c1 = store.meta().counts();
        assert!(c1.stacks > 100 && c1.locations > 100, "{c1:?}");
        store
            .ingest_bytes(&bytes, None, Labels::from_pairs([("a", "2")]), 0)
            .unwrap();
        assert_eq!(store.meta().counts(), c1);
        store.flush().unwrap();
        c1
    };
    let store = Tsdb::open(config).unwrap();
    assert_eq!(store.meta().counts(), counts);
    store
        .ingest_bytes(&bytes, None, Labels::from_pairs([("a", "3")]), 0)
        .unwrap();
    assert_eq!(store.meta().counts(), counts);
}

#[test]
fn pprof_string_labels_are_selectable_series_labels() {
    string_labels_are_selectable(&Tsdb::temporary().unwrap());
}

#[cfg(feature = "duckdb")]
#[test]
fn pprof_string_labels_are_selectable_series_labels_in_duckdb() {
    string_labels_are_selectable(&profstore::columnar::Columnar::open(None).unwrap());
}

fn string_labels_are_selectable<B: Storage>(store: &B) {
    let path = common::testdata_dir().join("parca/cpu_labels.pb.gz");
    let input = ingest_file(store, "cpu_labels", &path);
    let values = store
        .label_values("grpcmethod", &[], TimeRange::ALL)
        .unwrap();
    assert!(!values.is_empty());
    let ptype = "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta";
    let want_all = &common::totals(&input)[1];
    let mut seen = 0;
    for v in &values {
        let sel = parse_selector(&format!("{ptype}{{grpcmethod=\"{v}\"}}")).unwrap();
        let p = store.merge(&sel, TimeRange::ALL).unwrap();
        assert!(p
            .samples
            .iter()
            .all(|s| s.labels == vec![("grpcmethod".to_string(), v.clone())]));
        let got = common::totals(&to_pprof(&p)).pop().unwrap();
        // Every key of this group is a key of the input with the same total.
        assert!(!got.is_empty());
        for (k, total) in &got {
            assert_eq!(want_all.get(k), Some(total), "grpcmethod={v}");
        }
        seen += got.len();
    }
    // Samples without the label are a series of their own.
    let sel = parse_selector(&format!("{ptype}{{grpcmethod=\"\"}}")).unwrap();
    let rest = store.merge(&sel, TimeRange::ALL).unwrap();
    let rest = common::totals(&to_pprof(&rest)).pop().unwrap();
    assert_eq!(seen + rest.len(), want_all.len());
}

/// Every output format of a real merged profile agrees with its total, and
/// the SVG is well-formed XML naming the widest root child.
#[test]
fn real_profiles_render_consistently() {
    use profstore::model::{MatchOp, Matcher, METRIC_NAME};
    use profstore::render::{flamegraph, folded, svg, top};
    let store = Tsdb::temporary().unwrap();
    let bytes = std::fs::read(common::testdata_dir().join("parca/alloc_objects.pb.gz")).unwrap();
    store.ingest_bytes(&bytes, None, Labels::new(), 0).unwrap();
    let types = store.profile_types(&[], TimeRange::ALL).unwrap();
    assert!(!types.is_empty());
    for pt in types {
        let m = Matcher::new(MatchOp::Equal, METRIC_NAME, pt.to_string()).unwrap();
        let p = store.merge(&[m], TimeRange::ALL).unwrap();
        assert!(p.samples.len() > 10);
        let total = p.total();
        let fg = flamegraph(&p, usize::MAX);
        assert_eq!(fg["root"]["total"], total);
        assert_eq!(top(&p)["total"], total);
        let folded_sum: i64 = folded(&p)
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(folded_sum, total);
        let s = svg(&p, "a <title> & more").unwrap();
        let mut r = quick_xml::Reader::from_reader(&s[..]);
        let mut buf = Vec::new();
        loop {
            match r.read_event_into(&mut buf) {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => buf.clear(),
                Err(e) => panic!("bad XML at {}: {e}", r.buffer_position()),
            }
        }
        let widest = fg["root"]["children"]
            .as_array()
            .unwrap()
            .iter()
            .max_by_key(|c| c["total"].as_i64())
            .unwrap();
        let name = widest["name"].as_str().unwrap();
        assert!(String::from_utf8_lossy(&s).contains(name), "{pt}: {name}");
    }
}

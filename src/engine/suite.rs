//! The conformance suite of [`Storage`]: every check any backend must pass,
//! written against the trait only. A backend's tests call each `pub fn`
//! with a function that makes an empty backend with given limits (see
//! `tests/engine.rs`, which runs it on every backend). The checks panic on
//! failure, as tests do.
//!
//! Covered: label queries, ranges and steps, single/merge/diff, errors,
//! limits, all-or-nothing ingest, pprof label renaming, the empty profile,
//! Prometheus's empty-string matcher semantics, and sample labels.

// The suite is test code that ships in the library so that any backend
// (and a querier over a bucket) can run it.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use super::{Limits, QueryError, Storage, TimeRange};
use crate::ingest::{IngestError, IngestRequest};
use crate::model::{parse_selector, to_pprof, Labels, DIFF_BASE_LABEL};
use crate::proto::pprof as pb;
use std::collections::BTreeMap;

/// Runs every check of the suite on backends made by `make`.
pub fn run_all<S: Storage>(make: impl Fn(Limits) -> S) {
    engine_suite(&make);
    limits_give_clear_errors_and_change_nothing(&make);
    colliding_and_reserved_pprof_label_names_round_trip(&make);
    a_profile_with_only_zero_samples_still_records_a_zero_total(&make);
    documented_label_differences_on_the_way_back(&make);
    empty_string_matchers_follow_prometheus(&make);
    sample_labels_select_their_samples(&make);
}

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta";
const SAMPLES: &str = "process_cpu:samples:count:cpu:nanoseconds:delta";

/// One sample of a test profile: function names (leaf first), the sample
/// count, and pprof string labels.
pub type TestSample<'a> = (&'a [&'a str], i64, &'a [(&'a str, &'a str)]);

/// A small CPU profile (Go's shape: samples/count and cpu/nanoseconds, a 10
/// ms period, 10 s long): each sample gets (count, count × 10 ms) values.
/// Also used by the integration tests.
pub fn profile(time_ms: i64, samples: &[TestSample]) -> pb::Profile {
    let mut st = crate::pprof::StringTable::new();
    let mut p = pb::Profile {
        sample_type: vec![
            pb::ValueType {
                r#type: st.intern("samples"),
                unit: st.intern("count"),
            },
            pb::ValueType {
                r#type: st.intern("cpu"),
                unit: st.intern("nanoseconds"),
            },
        ],
        period_type: Some(pb::ValueType {
            r#type: st.intern("cpu"),
            unit: st.intern("nanoseconds"),
        }),
        period: 10_000_000,
        time_nanos: time_ms * 1_000_000,
        duration_nanos: 10_000_000_000,
        ..Default::default()
    };
    let mut funcs: BTreeMap<String, u64> = BTreeMap::new();
    for (stack, v, labels) in samples {
        let mut loc_ids = Vec::new();
        for name in *stack {
            let next = funcs.len() as u64 + 1;
            let id = *funcs.entry(name.to_string()).or_insert(next);
            if id == next {
                p.function.push(pb::Function {
                    id,
                    name: st.intern(name),
                    filename: st.intern("main.go"),
                    ..Default::default()
                });
                p.location.push(pb::Location {
                    id,
                    line: vec![pb::Line {
                        function_id: id,
                        line: 10,
                        column: 0,
                    }],
                    ..Default::default()
                });
            }
            loc_ids.push(id);
        }
        p.sample.push(pb::Sample {
            location_id: loc_ids,
            value: vec![*v, v * 10_000_000],
            label: labels
                .iter()
                .map(|(k, v)| pb::Label {
                    key: st.intern(k),
                    str: st.intern(v),
                    ..Default::default()
                })
                .collect(),
        });
    }
    p.string_table = st.into_vec();
    p
}

fn req(labels: &[(&str, &str)], p: pb::Profile) -> IngestRequest {
    IngestRequest {
        name: None,
        labels: Labels::from_pairs(labels.iter().copied()),
        delta: None,
        profile: p,
        received_at_ms: 0,
    }
}

fn sel(s: &str) -> Vec<crate::model::Matcher> {
    parse_selector(s).unwrap()
}

/// A sample's identity in these tests: function names (leaf first) and pprof
/// string labels.
type StackKey = (Vec<String>, Vec<(String, String)>);

/// Function-name stack (root last, as in pprof) → value.
fn by_stack(p: &crate::model::Profile) -> BTreeMap<StackKey, i64> {
    let mut m = BTreeMap::new();
    for s in &p.samples {
        let names = s
            .stack
            .frames
            .iter()
            .flat_map(|f| f.lines.iter().map(|l| l.function.name.clone()))
            .collect();
        *m.entry((names, s.labels.clone())).or_insert(0) += s.value;
    }
    m
}

fn key(stack: &[&str], labels: &[(&str, &str)]) -> StackKey {
    (
        stack.iter().map(|s| s.to_string()).collect(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn checks<S: Storage>(b: &S) {
    // Two targets, three profiles each, 10 s apart; target b has pprof labels.
    for i in 0..3i64 {
        let t = 1_000_000 + i * 10_000;
        b.ingest(req(
            &[("job", "api"), ("instance", "a")],
            profile(t, &[(&["leaf", "main"], 1 + i, &[]), (&["main"], 2, &[])]),
        ))
        .unwrap();
        b.ingest(req(
            &[("job", "api"), ("instance", "b")],
            profile(
                t + 1,
                &[
                    (&["leaf", "main"], 5, &[("endpoint", "/slow")]),
                    (&["other", "main"], 7, &[("endpoint", "/fast")]),
                ],
            ),
        ))
        .unwrap();
    }
    let all = TimeRange::ALL;

    // Label queries.
    assert_eq!(
        b.label_names(&[], all).unwrap(),
        vec!["__name__", "endpoint", "instance", "job"]
    );
    assert_eq!(
        b.label_values("instance", &[], all).unwrap(),
        vec!["a", "b"]
    );
    assert_eq!(
        b.label_values("endpoint", &sel(r#"{instance="b"}"#), all)
            .unwrap(),
        vec!["/fast", "/slow"]
    );
    assert!(b
        .label_values("endpoint", &sel(r#"{instance="a"}"#), all)
        .unwrap()
        .is_empty());
    let types: Vec<String> = b
        .profile_types(&[], all)
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(types, vec![CPU, SAMPLES]);
    let series = b
        .series(&sel(&format!("{CPU}{{job=\"api\"}}")), all)
        .unwrap();
    assert_eq!(series.len(), 3, "{series:?}");
    // Time ranges restrict label queries to series with data in range.
    assert!(b
        .label_names(&[], TimeRange::new(0, 10).unwrap())
        .unwrap()
        .is_empty());
    assert_eq!(
        b.series(&[], TimeRange::new(1_000_000, 1_000_000).unwrap())
            .unwrap()
            .len(),
        2
    );

    // query_range: raw points and steps.
    let r = b
        .query_range(&sel(&format!("{CPU}{{instance=\"a\"}}")), all, None)
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].points,
        vec![
            (1_000_000, 30_000_000),
            (1_010_000, 40_000_000),
            (1_020_000, 50_000_000)
        ]
    );
    let r = b
        .query_range(
            &sel(&format!("{CPU}{{instance=\"a\"}}")),
            TimeRange::new(1_000_000, 1_020_000).unwrap(),
            Some(20_000),
        )
        .unwrap();
    assert_eq!(
        r[0].points,
        vec![(1_000_000, 70_000_000), (1_020_000, 50_000_000)]
    );
    let r = b
        .query_range(&sel(&format!("{SAMPLES}{{instance=\"b\"}}")), all, None)
        .unwrap();
    assert_eq!(r.len(), 2, "one series per endpoint");
    assert!(matches!(
        b.query_range(&sel("{job=\"api\"}"), all, Some(0)),
        Err(QueryError::InvalidRange(_))
    ));

    // merge: sums per stack and pprof labels across series and time.
    let m = b
        .merge(&sel(&format!("{SAMPLES}{{job=\"api\"}}")), all)
        .unwrap();
    let want: BTreeMap<_, _> = [
        (key(&["leaf", "main"], &[]), 1 + 2 + 3),
        (key(&["main"], &[]), 6),
        (key(&["leaf", "main"], &[("endpoint", "/slow")]), 15),
        (key(&["other", "main"], &[("endpoint", "/fast")]), 21),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_stack(&m), want);
    assert_eq!(m.time_ms, 1_000_000);
    assert_eq!(m.duration_ns, 6 * 10_000_000_000);
    assert_eq!(m.period, 10_000_000);
    // Selecting by a pprof label.
    let m = b
        .merge(&sel(&format!("{SAMPLES}{{endpoint=\"/slow\"}}")), all)
        .unwrap();
    assert_eq!(
        by_stack(&m),
        [(key(&["leaf", "main"], &[("endpoint", "/slow")]), 15)]
            .into_iter()
            .collect()
    );
    let out = to_pprof(&m);
    let strings = &out.string_table;
    assert_eq!(out.sample.len(), 1);
    assert_eq!(strings[out.sample[0].label[0].key as usize], "endpoint");
    assert_eq!(strings[out.sample[0].label[0].str as usize], "/slow");

    // single: the first profile at or after t of each series, merged.
    let s = b
        .single(&sel(&format!("{SAMPLES}{{job=\"api\"}}")), 1_009_999)
        .unwrap();
    assert_eq!(s.time_ms, 1_010_000);
    assert_eq!(by_stack(&s)[&key(&["leaf", "main"], &[])], 2);
    assert_eq!(
        by_stack(&s)[&key(&["other", "main"], &[("endpoint", "/fast")])],
        7
    );
    let empty = b
        .single(&sel(&format!("{SAMPLES}{{job=\"api\"}}")), 5_000_000)
        .unwrap();
    assert!(empty.samples.is_empty());

    // diff: base negated with pprof::base, compared side as is.
    let d = b
        .diff(
            (
                &sel(&format!("{SAMPLES}{{instance=\"a\"}}")),
                TimeRange::new(1_000_000, 1_000_000).unwrap(),
            ),
            (
                &sel(&format!("{SAMPLES}{{instance=\"a\"}}")),
                TimeRange::new(1_020_000, 1_020_000).unwrap(),
            ),
        )
        .unwrap();
    let got = by_stack(&d);
    assert_eq!(got[&key(&["leaf", "main"], &[])], 3);
    assert_eq!(
        got[&key(&["leaf", "main"], &[(DIFF_BASE_LABEL, "true")])],
        -1
    );
    assert_eq!(got[&key(&["main"], &[(DIFF_BASE_LABEL, "true")])], -2);
    let net: i64 = d.samples.iter().map(|s| s.value).sum();
    assert_eq!(net, (3 + 2) - (1 + 2));
    assert!(matches!(
        b.diff((&sel(SAMPLES), all), (&sel(CPU), all)),
        Err(QueryError::DiffTypeMismatch(_, _))
    ));

    // Several profile types in single/merge is an error naming them.
    match b.merge(&sel("{job=\"api\"}"), all) {
        Err(QueryError::MultipleProfileTypes(t)) => {
            assert_eq!(t, vec![CPU.to_string(), SAMPLES.to_string()])
        }
        other => panic!("want MultipleProfileTypes, got {other:?}"),
    }
    // Nothing matches and no type named: an error; a named type: empty.
    assert!(matches!(
        b.merge(&sel("{job=\"nope\"}"), all),
        Err(QueryError::NoData(_))
    ));
    let e = b
        .merge(&sel(&format!("{CPU}{{job=\"nope\"}}")), all)
        .unwrap();
    assert!(e.samples.is_empty());
    assert_eq!(e.profile_type.to_string(), CPU);
}

/// Label queries, ranges and steps, single, merge and diff over two
/// targets, one with pprof labels.
pub fn engine_suite<S: Storage>(make: impl Fn(Limits) -> S) {
    checks(&make(Limits::default()));
}

/// Late profiles (a backend that accepts any order: the time-series one):
/// written in reverse order, a series answers as in time order; a retry of
/// a profile changes nothing and says so; a different profile at a
/// timestamp the series has is added to it.
pub fn late_profiles_count_once_and_retries_change_nothing<S: Storage>(make: impl Fn(Limits) -> S) {
    let (a, b) = (make(Limits::default()), make(Limits::default()));
    let at = |t: i64, n: i64| {
        req(
            &[("job", "x")],
            profile(t, &[(&["a"], n, &[("k", "1")]), (&["b"], 1, &[("k", "2")])]),
        )
    };
    for t in 1..=20 {
        a.ingest(at(t * 1000, t)).unwrap();
    }
    for t in (1..=20).rev() {
        let s = b.ingest(at(t * 1000, t)).unwrap();
        assert!(!s.is_duplicate());
    }
    let m = sel(&format!("{SAMPLES}{{job=\"x\"}}"));
    let all = TimeRange::ALL;
    let range = TimeRange::new(3000, 9000).unwrap();
    assert_eq!(
        a.query_range(&m, all, None).unwrap(),
        b.query_range(&m, all, None).unwrap()
    );
    let merged = |s: &S| to_pprof(&s.merge(&m, range).unwrap());
    assert_eq!(merged(&a), merged(&b));
    assert_eq!(
        to_pprof(&a.single(&m, 5000).unwrap()),
        to_pprof(&b.single(&m, 5000).unwrap())
    );
    // A retry: answered, not stored again.
    let s = b.ingest(at(7000, 7)).unwrap();
    assert!(s.is_duplicate(), "{s:?}");
    assert_eq!(merged(&a), merged(&b));
    // Another profile at 7000 in the series k=1 (k=2's share is the same,
    // so its two series, one per sample type, hold it already): the two
    // are summed.
    let s = b.ingest(at(7000, 100)).unwrap();
    assert!(!s.is_duplicate());
    assert_eq!((s.series, s.duplicate_series), (4, 2));
    let points = b
        .query_range(&sel(&format!("{SAMPLES}{{k=\"1\"}}")), all, None)
        .unwrap();
    assert_eq!(points.len(), 1, "{points:?}");
    assert!(points[0].points.contains(&(7000, 107)), "{points:?}");
    assert_eq!(points[0].points.len(), 20, "one point per timestamp");
}

/// A profile out of order in one of its series is refused whole by a
/// backend that takes each series in time order (DuckDB's): no series is
/// created and nothing is appended.
pub fn out_of_order_in_one_series_rejects_the_whole_profile<S: Storage>(
    make: impl Fn(Limits) -> S,
) {
    let store = make(Limits::default());
    store
        .ingest(req(
            &[("job", "x")],
            profile(1000, &[(&["a"], 1, &[("k", "1")])]),
        ))
        .unwrap();
    let before = store.num_series();
    // Same timestamp: series k=1 would be out of order, k=2 is new.
    let err = store
        .ingest(req(
            &[("job", "x")],
            profile(
                1000,
                &[(&["a"], 1, &[("k", "1")]), (&["b"], 1, &[("k", "2")])],
            ),
        ))
        .unwrap_err();
    assert!(matches!(err, IngestError::OutOfOrder { .. }), "{err}");
    assert!(err.to_string().contains("out of order"), "{err}");
    assert_eq!(store.num_series(), before, "no series created");
    assert_eq!(
        store.label_values("k", &[], TimeRange::ALL).unwrap(),
        vec!["1"]
    );
    let r = store
        .query_range(
            &sel(&format!("{SAMPLES}{{job=\"x\"}}")),
            TimeRange::ALL,
            None,
        )
        .unwrap();
    assert_eq!(r.iter().map(|s| s.points.len()).sum::<usize>(), 1);
}

/// The series and label limits refuse a write with an error naming the
/// limit, and change nothing.
pub fn limits_give_clear_errors_and_change_nothing<S: Storage>(make: impl Fn(Limits) -> S) {
    let mut limits = Limits {
        max_series: 3,
        ..Default::default()
    };
    limits.labels.max_label_value_len = 16;
    limits.labels.max_labels_per_series = 4;
    let store = make(limits);
    // 2 series (two sample types).
    store
        .ingest(req(&[("job", "x")], profile(1000, &[(&["a"], 1, &[])])))
        .unwrap();
    // Would need 2 more: over the limit of 3.
    let err = store
        .ingest(req(&[("job", "y")], profile(1000, &[(&["a"], 1, &[])])))
        .unwrap_err();
    assert!(
        matches!(err, IngestError::SeriesLimit { limit: 3 }),
        "{err}"
    );
    assert_eq!(store.num_series(), 2);
    let err = store
        .ingest(req(
            &[("job", "01234567890123456789")],
            profile(2000, &[(&["a"], 1, &[])]),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("max_label_value_len"), "{err}");
    let err = store
        .ingest(req(
            &[("job", "x"), ("a", "1"), ("b", "2"), ("c", "3")],
            profile(2000, &[(&["a"], 1, &[])]),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("max_labels_per_series"), "{err}");
    let err = store
        .ingest(req(
            &[("__name__", "x")],
            profile(2000, &[(&["a"], 1, &[])]),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    assert_eq!(store.num_series(), 2);
    assert_eq!(store.series(&[], TimeRange::ALL).unwrap().len(), 2);
}

/// pprof labels that collide with writer labels or are reserved are
/// renamed in the series and come back under their own names.
pub fn colliding_and_reserved_pprof_label_names_round_trip<S: Storage>(make: impl Fn(Limits) -> S) {
    let store = make(Limits::default());
    store
        .ingest(req(
            &[("job", "x")],
            profile(1000, &[(&["a"], 1, &[("job", "inner"), ("__x", "y")])]),
        ))
        .unwrap();
    let names = store.label_names(&[], TimeRange::ALL).unwrap();
    assert_eq!(names, vec!["__name__", "job", "pprof___x", "pprof_job"]);
    let m = store
        .merge(
            &sel(&format!("{SAMPLES}{{pprof_job=\"inner\"}}")),
            TimeRange::ALL,
        )
        .unwrap();
    assert_eq!(m.samples.len(), 1);
    assert_eq!(
        m.samples[0].labels,
        vec![
            ("__x".to_string(), "y".to_string()),
            ("job".to_string(), "inner".to_string())
        ]
    );
}

/// A profile whose samples are all zero still records its zero total.
pub fn a_profile_with_only_zero_samples_still_records_a_zero_total<S: Storage>(
    make: impl Fn(Limits) -> S,
) {
    let store = make(Limits::default());
    store
        .ingest(req(
            &[("job", "idle")],
            profile(1000, &[(&["a"], 0, &[("k", "v")])]),
        ))
        .unwrap();
    let r = store
        .query_range(
            &sel(&format!("{CPU}{{job=\"idle\"}}")),
            TimeRange::ALL,
            None,
        )
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].points, vec![(1000, 0)]);
}

/// Empty label values, repeated keys and value-less labels are dropped as
/// documented; numeric labels stay with the stack.
pub fn documented_label_differences_on_the_way_back<S: Storage>(make: impl Fn(Limits) -> S) {
    // Empty string values are dropped, a repeated key keeps its first value,
    // and a label with neither value nor unit is dropped; numeric labels
    // stay (sorted) with the stack.
    let store = make(Limits::default());
    let mut p = profile(
        1000,
        &[(&["a"], 1, &[("empty", ""), ("k", "first"), ("k", "second")])],
    );
    let key_only = p.string_table.len() as i64;
    p.string_table.push("key_only".into());
    let bytes_key = p.string_table.len() as i64;
    p.string_table.push("bytes".into());
    p.sample[0].label.push(pb::Label {
        key: key_only,
        ..Default::default()
    });
    p.sample[0].label.push(pb::Label {
        key: bytes_key,
        num: 64,
        num_unit: bytes_key,
        ..Default::default()
    });
    store.ingest(req(&[("job", "x")], p)).unwrap();
    let m = store
        .merge(&sel(&format!("{SAMPLES}{{job=\"x\"}}")), TimeRange::ALL)
        .unwrap();
    assert_eq!(m.samples.len(), 1);
    assert_eq!(
        m.samples[0].labels,
        vec![("k".to_string(), "first".to_string())]
    );
    let n = &m.samples[0].stack.num_labels;
    assert_eq!(n.len(), 1);
    assert_eq!(
        (n[0].key.as_str(), n[0].value, n[0].unit.as_str()),
        ("bytes", 64, "bytes")
    );
    assert!(store
        .label_values("empty", &[], TimeRange::ALL)
        .unwrap()
        .is_empty());
}

/// Matchers against the empty string follow Prometheus's semantics.
pub fn empty_string_matchers_follow_prometheus<S: Storage>(make: impl Fn(Limits) -> S) {
    let b = make(Limits::default());
    b.ingest(req(
        &[("job", "api"), ("instance", "a")],
        profile(1000, &[(&["a"], 1, &[])]),
    ))
    .unwrap();
    b.ingest(req(&[("job", "api")], profile(1000, &[(&["a"], 1, &[])])))
        .unwrap();
    b.ingest(req(
        &[("job", "api"), ("instance", "line\nbreak")],
        profile(1000, &[(&["a"], 1, &[])]),
    ))
    .unwrap();
    let instances = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = b
            .series(&sel(&format!("{SAMPLES}{s}")), TimeRange::ALL)
            .unwrap()
            .iter()
            .map(|l| l.get("instance").unwrap_or("-").to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(instances(r#"{instance=""}"#), vec!["-"]);
    assert_eq!(instances(r#"{instance!=""}"#), vec!["a", "line\nbreak"]);
    assert_eq!(instances(r#"{instance=~"a|"}"#), vec!["-", "a"]);
    assert_eq!(instances(r#"{instance=~"|b"}"#), vec!["-"]);
    assert_eq!(instances(r#"{instance!~"a"}"#), vec!["-", "line\nbreak"]);
    assert_eq!(instances(r#"{instance=~".*"}"#).len(), 3);
    assert_eq!(instances(r#"{instance=~".+"}"#), vec!["a", "line\nbreak"]);
    // Anchored, and `.` matches a newline.
    assert!(instances(r#"{job=~"p"}"#).is_empty());
    assert_eq!(instances(r#"{job=~"a.*"}"#).len(), 3);
    assert_eq!(
        instances(r#"{instance=~"line.break"}"#),
        vec!["line\nbreak"]
    );
    assert_eq!(instances(r#"{instance=~"[a-z]"}"#), vec!["a"]);
    assert_eq!(instances(r#"{instance!~"l.*|"}"#), vec!["a"]);
    assert!(instances(r#"{nope!=""}"#).is_empty());
    assert_eq!(instances(r#"{nope=""}"#).len(), 3);
}

/// Sample labels (`span_id`, `trace_id`, …) select the samples that carried
/// them in every query, with Prometheus's matcher semantics (a sample
/// without the label has ""); a backend that keeps them per sample makes no
/// series for them.
pub fn sample_labels_select_their_samples<S: Storage>(make: impl Fn(Limits) -> S) {
    let b = make(Limits::default());
    for i in 1..=3i64 {
        b.ingest(req(
            &[("job", "x")],
            profile(
                i * 1000,
                &[
                    (&["a", "main"], 2, &[("span_id", "s1")]),
                    (&["b", "main"], 3, &[("span_id", "s2"), ("endpoint", "/x")]),
                    (&["a", "main"], 5, &[]),
                    (&["c"], 1, &[("span_id", "s1"), ("trace_id", "t1")]),
                ],
            ),
        ))
        .unwrap();
    }
    let all = TimeRange::ALL;
    // Function names → value, whatever the samples' labels.
    let merged = |s: &str| -> BTreeMap<Vec<String>, i64> {
        let p = b
            .merge(&sel(&format!("{SAMPLES}{{job=\"x\",{s}}}")), all)
            .unwrap();
        let mut m = BTreeMap::new();
        for ((names, _), v) in by_stack(&p) {
            *m.entry(names).or_insert(0) += v;
        }
        m.retain(|_, v| *v != 0);
        m
    };
    let want = |v: &[(&[&str], i64)]| -> BTreeMap<Vec<String>, i64> {
        v.iter()
            .map(|(n, v)| (n.iter().map(|s| s.to_string()).collect(), *v))
            .collect()
    };
    assert_eq!(
        merged(r#"span_id="s1""#),
        want(&[(&["a", "main"], 6), (&["c"], 3)])
    );
    assert_eq!(merged(r#"span_id="s2""#), want(&[(&["b", "main"], 9)]));
    assert_eq!(
        merged(r#"span_id="s2",endpoint="/x""#),
        want(&[(&["b", "main"], 9)])
    );
    assert_eq!(
        merged(r#"span_id!="s1""#),
        want(&[(&["a", "main"], 15), (&["b", "main"], 9)])
    );
    assert_eq!(merged(r#"span_id="""#), want(&[(&["a", "main"], 15)]));
    assert_eq!(
        merged(r#"span_id=~"s.*""#),
        want(&[(&["a", "main"], 6), (&["b", "main"], 9), (&["c"], 3)])
    );
    assert_eq!(
        merged(r#"span_id="s1",trace_id="t1""#),
        want(&[(&["c"], 3)])
    );
    assert_eq!(merged(r#"trace_id="t1""#), want(&[(&["c"], 3)]));
    assert!(merged(r#"span_id="nope""#).is_empty());
    // Totals over time, summed over whatever series answer.
    let totals = |s: &str| -> BTreeMap<i64, i64> {
        let mut m = BTreeMap::new();
        for sp in b
            .query_range(&sel(&format!("{SAMPLES}{{job=\"x\",{s}}}")), all, None)
            .unwrap()
        {
            for (t, v) in sp.points {
                *m.entry(t).or_insert(0) += v;
            }
        }
        m
    };
    assert_eq!(
        totals(r#"span_id="s1""#),
        [(1000, 3), (2000, 3), (3000, 3)].into()
    );
    assert_eq!(
        totals(r#"span_id!="s1""#),
        [(1000, 8), (2000, 8), (3000, 8)].into()
    );
    assert!(totals(r#"span_id="nope""#).is_empty());
    // A single profile, series and label queries.
    let one = b
        .single(&sel(&format!("{SAMPLES}{{span_id=\"s2\"}}")), 2000)
        .unwrap();
    assert_eq!(one.samples.iter().map(|s| s.value).sum::<i64>(), 3);
    assert!(!b.series(&sel(r#"{span_id="s1"}"#), all).unwrap().is_empty());
    assert!(b
        .series(&sel(r#"{span_id="nope"}"#), all)
        .unwrap()
        .is_empty());
    assert_eq!(
        b.label_values("job", &sel(r#"{span_id="s2"}"#), all)
            .unwrap(),
        vec!["x"]
    );
    assert!(b
        .label_values("job", &sel(r#"{span_id="nope"}"#), all)
        .unwrap()
        .is_empty());
    assert!(b
        .label_names(&sel(r#"{span_id="s1"}"#), all)
        .unwrap()
        .contains(&"job".to_string()));
    // A fresh span on every sample makes no series where they are kept
    // per sample.
    if b.limits()
        .labels
        .sample_labels
        .iter()
        .any(|n| n == "span_id")
    {
        let before = b.num_series();
        for i in 4..=40i64 {
            let span = format!("{i:016x}");
            b.ingest(req(
                &[("job", "x")],
                profile(
                    i * 1000,
                    &[(&["a", "main"], 1, &[("span_id", span.as_str())])],
                ),
            ))
            .unwrap();
        }
        assert_eq!(b.num_series(), before);
        assert_eq!(
            merged(r#"span_id="0000000000000011""#),
            want(&[(&["a", "main"], 1)])
        );
    }
}

//! Behaviour of the `Ingester` + `Querier` pair: label queries, ranges and
//! steps, single/merge/diff, errors, limits and all-or-nothing ingest.
//!
//! Every check is written against the traits and the small [`Backend`]
//! trait below (construction, series count), and `on_every_backend!` runs
//! each one on the time-series [`Store`] (`store::*`) and, with the `duckdb`
//! feature, on the DuckDB [`Columnar`] backend (`columnar::*`). With the
//! feature, `backends_agree_on_a_workload` also checks that both give equal
//! answers to every query kind over a generated workload.

mod common;

use profstore::engine::{Ingester, Querier, QueryError, TimeRange};
use profstore::head::HeadError;
use profstore::index::parse_selector;
use profstore::ingest::{IngestError, IngestRequest};
use profstore::labels::Labels;
use profstore::proto::pprof as pb;
use profstore::query::{to_pprof, DIFF_BASE_LABEL};
use profstore::store::{Limits, Store, StoreConfig};
use std::collections::BTreeMap;

#[cfg(feature = "duckdb")]
use profstore::columnar::Columnar;

/// What the checks need beyond the traits.
trait Backend: Ingester + Querier + Sized {
    /// An empty backend with default limits.
    fn empty() -> Self {
        Self::with_limits(Limits::default())
    }
    /// An empty backend with `limits`.
    fn with_limits(limits: Limits) -> Self;
    /// Number of series.
    fn num_series(&self) -> usize;
}

impl Backend for Store {
    fn with_limits(limits: Limits) -> Self {
        Store::open(StoreConfig {
            limits,
            ..Default::default()
        })
        .unwrap()
    }
    fn num_series(&self) -> usize {
        self.head().num_series()
    }
}

#[cfg(feature = "duckdb")]
impl Backend for Columnar {
    fn with_limits(limits: Limits) -> Self {
        Columnar::open_with(None, limits).unwrap()
    }
    fn num_series(&self) -> usize {
        Columnar::num_series(self)
    }
}

/// A `#[test]` per backend for each generic check `fn name<B: Backend>()`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod store {
            $(#[test]
            fn $name() {
                super::$name::<profstore::store::Store>()
            })*
        }
        #[cfg(feature = "duckdb")]
        mod columnar {
            $(#[test]
            fn $name() {
                super::$name::<profstore::columnar::Columnar>()
            })*
        }
    };
}

on_every_backend!(
    engine_suite,
    out_of_order_in_one_series_rejects_the_whole_profile,
    limits_give_clear_errors_and_change_nothing,
    colliding_and_reserved_pprof_label_names_round_trip,
    a_profile_with_only_zero_samples_still_records_a_zero_total,
    documented_label_differences_on_the_way_back,
    empty_string_matchers_follow_prometheus,
);

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta";
const SAMPLES: &str = "process_cpu:samples:count:cpu:nanoseconds:delta";

/// One sample of a test profile: function names (leaf first), the sample
/// count, and pprof string labels.
type TestSample<'a> = (&'a [&'a str], i64, &'a [(&'a str, &'a str)]);

/// A small CPU profile: each sample gets (count, count × 10 ms) values.
fn profile(time_ms: i64, samples: &[TestSample]) -> pb::Profile {
    let mut st = profstore::pprof::StringTable::new();
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

fn sel(s: &str) -> Vec<profstore::index::Matcher> {
    parse_selector(s).unwrap()
}

/// A sample's identity in these tests: function names (leaf first) and pprof
/// string labels.
type StackKey = (Vec<String>, Vec<(String, String)>);

/// Function-name stack (root last, as in pprof) → value.
fn by_stack(p: &profstore::query::Profile) -> BTreeMap<StackKey, i64> {
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

fn suite<B: Ingester + Querier>(b: &B) {
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

fn engine_suite<B: Backend>() {
    suite(&B::empty());
}

fn out_of_order_in_one_series_rejects_the_whole_profile<B: Backend>() {
    let store = B::empty();
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
    assert!(
        matches!(err, IngestError::Head(HeadError::OutOfOrder { .. })),
        "{err}"
    );
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

fn limits_give_clear_errors_and_change_nothing<B: Backend>() {
    let mut limits = Limits {
        max_series: 3,
        ..Default::default()
    };
    limits.labels.max_label_value_len = 16;
    limits.labels.max_labels_per_series = 4;
    let store = B::with_limits(limits);
    // 2 series (two sample types).
    store
        .ingest(req(&[("job", "x")], profile(1000, &[(&["a"], 1, &[])])))
        .unwrap();
    // Would need 2 more: over the limit of 3.
    let err = store
        .ingest(req(&[("job", "y")], profile(1000, &[(&["a"], 1, &[])])))
        .unwrap_err();
    assert!(
        matches!(err, IngestError::Head(HeadError::SeriesLimit { limit: 3 })),
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

fn colliding_and_reserved_pprof_label_names_round_trip<B: Backend>() {
    let store = B::empty();
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

fn a_profile_with_only_zero_samples_still_records_a_zero_total<B: Backend>() {
    let store = B::empty();
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

fn documented_label_differences_on_the_way_back<B: Backend>() {
    // Empty string values are dropped, a repeated key keeps its first value,
    // and a label with neither value nor unit is dropped; numeric labels
    // stay (sorted) with the stack.
    let store = B::empty();
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

fn empty_string_matchers_follow_prometheus<B: Backend>() {
    let b = B::empty();
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

/// Both backends fed the identical generated stream answer every query
/// kind identically (frames compared by content: their ids are the
/// backends' own).
#[cfg(feature = "duckdb")]
#[test]
fn backends_agree_on_a_workload() {
    use profstore::engine::SINGLE_WINDOW_MS;
    use profstore::workload::{Kind, Workload, WorkloadSpec};

    let spec = WorkloadSpec {
        targets: 3,
        scrapes: 8,
        lifetime_scrapes: Some(4),
        label_cardinality: 3,
        ..Default::default()
    };
    let kinds = Kind::testdata(&common::testdata_dir(), 2).unwrap();
    let store = Store::temporary().unwrap();
    let duck = Columnar::open(None).unwrap();
    for r in Workload::new(spec.clone(), kinds) {
        let a = store.ingest(r.clone()).unwrap();
        let b = duck.ingest(r).unwrap();
        assert_eq!(a, b);
    }
    let all = TimeRange::ALL;
    let mid = TimeRange::new(spec.timestamp(0, 2), spec.timestamp(1, 5)).unwrap();
    let types = store.profile_types(&[], all).unwrap();
    assert_eq!(types, duck.profile_types(&[], all).unwrap());
    assert!(types.len() >= 5, "{types:?}");
    assert_eq!(
        store.label_names(&[], all).unwrap(),
        duck.label_names(&[], all).unwrap()
    );
    let norm = |p: profstore::query::Profile| {
        let mut samples: Vec<(String, i64)> = p
            .samples
            .iter()
            .map(|s| {
                let frames: Vec<String> = s
                    .stack
                    .frames
                    .iter()
                    .map(|f| {
                        let lines: Vec<_> = f
                            .lines
                            .iter()
                            .map(|l| (&*l.function, l.line, l.column))
                            .collect();
                        format!(
                            "{:x} {} {:?} {:?}",
                            f.address,
                            f.is_folded,
                            f.mapping.as_ref().map(|m| &*m.1),
                            lines
                        )
                    })
                    .collect();
                (
                    format!("{frames:?} {:?} {:?}", s.stack.num_labels, s.labels),
                    s.value,
                )
            })
            .collect();
        samples.sort();
        (
            p.profile_type.to_string(),
            p.time_ms,
            p.duration_ns,
            p.period,
            samples,
        )
    };
    let mut checked = 0;
    for t in &types {
        for extra in [
            "",
            r#"instance=~"t1-.*""#,
            r#"endpoint="v1""#,
            r#"endpoint="""#,
            r#"kind!="cpu",instance!~"t0-g0|t2-g1""#,
        ] {
            let m = sel(&format!("{t}{{{extra}}}"));
            for range in [all, mid] {
                assert_eq!(
                    store.series(&m, range).unwrap(),
                    duck.series(&m, range).unwrap()
                );
                assert_eq!(
                    store.label_values("instance", &m, range).unwrap(),
                    duck.label_values("instance", &m, range).unwrap()
                );
                assert_eq!(
                    store.label_names(&m, range).unwrap(),
                    duck.label_names(&m, range).unwrap()
                );
                // (Steps only on a bounded range: the time-series backend
                // computes `t - start` in 64 bits.)
                let steps: &[Option<i64>] = if range == all {
                    &[None]
                } else {
                    &[None, Some(25_000), Some(SINGLE_WINDOW_MS)]
                };
                for &step in steps {
                    assert_eq!(
                        store.query_range(&m, range, step).unwrap(),
                        duck.query_range(&m, range, step).unwrap(),
                        "{t}{{{extra}}} {step:?}"
                    );
                }
                assert_eq!(
                    norm(store.merge(&m, range).unwrap()),
                    norm(duck.merge(&m, range).unwrap()),
                    "merge {t}{{{extra}}}"
                );
                checked += 1;
            }
            for at in [spec.timestamp(0, 0) - 1, spec.timestamp(2, 3), 0] {
                assert_eq!(
                    norm(store.single(&m, at).unwrap()),
                    norm(duck.single(&m, at).unwrap()),
                    "single {t}{{{extra}}} at {at}"
                );
            }
            assert_eq!(
                norm(store.diff((&m, mid), (&m, all)).unwrap()),
                norm(duck.diff((&m, mid), (&m, all)).unwrap())
            );
        }
    }
    assert!(checked > 40);
    // Errors are the same kind.
    let both = sel(r#"{job="workload"}"#);
    assert!(matches!(
        (store.merge(&both, all), duck.merge(&both, all)),
        (
            Err(QueryError::MultipleProfileTypes(a)),
            Err(QueryError::MultipleProfileTypes(b))
        ) if a == b
    ));
}

/// Both backends give every location, function and mapping the same
/// content id (frames compared by id, not by content).
#[cfg(feature = "duckdb")]
#[test]
fn backends_give_every_entity_the_same_id() {
    use profstore::workload::{Kind, Workload, WorkloadSpec};

    let spec = WorkloadSpec {
        targets: 2,
        scrapes: 3,
        ..Default::default()
    };
    let kinds = Kind::testdata(&common::testdata_dir(), 2).unwrap();
    let store = Store::temporary().unwrap();
    let duck = Columnar::open(None).unwrap();
    for r in Workload::new(spec, kinds) {
        store.ingest(r.clone()).unwrap();
        duck.ingest(r).unwrap();
    }
    let ids = |p: profstore::query::Profile| {
        let mut v: Vec<String> = p
            .samples
            .iter()
            .map(|s| {
                let frames: Vec<_> = s
                    .stack
                    .frames
                    .iter()
                    .map(|f| {
                        (
                            f.id,
                            f.mapping.as_ref().map(|m| m.0),
                            f.lines.iter().map(|l| l.function_id).collect::<Vec<_>>(),
                        )
                    })
                    .collect();
                format!("{frames:?} {:?} {}", s.labels, s.value)
            })
            .collect();
        v.sort();
        v
    };
    let types = store.profile_types(&[], TimeRange::ALL).unwrap();
    assert!(types.len() >= 3);
    for t in types {
        let m = sel(&format!("{t}"));
        let a = ids(store.merge(&m, TimeRange::ALL).unwrap());
        assert!(!a.is_empty());
        assert_eq!(a, ids(duck.merge(&m, TimeRange::ALL).unwrap()), "{t}");
    }
}

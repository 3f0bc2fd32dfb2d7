//! End to end: Grafana Pyroscope's query API (`querier.v1.QuerierService`
//! over Connect) of the real `profstore serve` binary, in protobuf and
//! proto3 JSON, with the request shapes Grafana's data source sends. Every
//! answer is compared with the daemon's own HTTP API over the same data:
//! flame graph totals with `/api/v1/profile/merge`, series points with
//! `/api/v1/query_range`, labels, series and profile types with their
//! endpoints.

mod common;

use common::daemon::*;
use profstore::pprof::{decode, encode, DecodeLimits};
use profstore::proto::pprof::Profile;
use profstore::proto::pyroscope::push::v1::{PushRequest, RawProfileSeries, RawSample};
use profstore::proto::pyroscope::querier::v1 as q;
use profstore::proto::pyroscope::types::v1 as t;
use prost::Message;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const SERVICE: &str = "/querier.v1.QuerierService";
/// fib.pb.gz's CPU type, as profstore names it and as Pyroscope does.
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta";
const CPU5: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const HEAP5: &str = "memory:alloc_space:bytes:space:bytes";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The data every test reads, written at `t0` (ms, a whole minute).
struct Data {
    srv: Server,
    t0: i64,
}

impl Data {
    fn start() -> Self {
        Data::start_with(&[])
    }

    /// parca/fib.pb.gz as `service_name="fib"`: pod a at t0, t0+30s,
    /// t0+90s, pod b at t0+40s; parca/alloc_objects.pb.gz (four memory
    /// types, cumulative) as `service_name="op"` at t0, and pushed again
    /// with doubled values as delta profiles of `service_name="op2"`.
    fn start_with(flags: &[&str]) -> Self {
        let srv = Server::start(flags);
        let t0 = (now_ms() - 3_600_000) / 60_000 * 60_000;
        let fib = common::load(&common::testdata_dir().join("parca/fib.pb.gz"));
        for (pod, dt) in [("a", 0), ("a", 30_000), ("a", 90_000), ("b", 40_000)] {
            let mut p = fib.clone();
            p.time_nanos = (t0 + dt) * 1_000_000;
            let labels = format!(r#"{{service_name="fib",pod="{pod}"}}"#);
            let r = srv.write(&labels, &encode(&p));
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let mut heap = common::load(&common::testdata_dir().join("parca/alloc_objects.pb.gz"));
        heap.time_nanos = t0 * 1_000_000;
        let r = srv.write(r#"{service_name="op"}"#, &encode(&heap));
        assert_eq!(r.status, 200, "{}", r.text());
        // Twice the values, so that the two are told apart.
        for s in &mut heap.sample {
            for v in &mut s.value {
                *v *= 2;
            }
        }
        let push = PushRequest {
            series: vec![RawProfileSeries {
                labels: [
                    ("__name__", "memory"),
                    ("__delta__", "true"),
                    ("service_name", "op2"),
                ]
                .map(|(name, value)| t::LabelPair {
                    name: name.into(),
                    value: value.into(),
                })
                .to_vec(),
                samples: vec![RawSample {
                    raw_profile: encode(&heap),
                    id: String::new(),
                }],
            }],
        };
        let r = srv.call(
            "POST",
            "/push.v1.PusherService/Push",
            Some("application/proto"),
            &push.encode_to_vec(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        Data { srv, t0 }
    }

    fn end(&self) -> i64 {
        self.t0 + 3_600_000
    }

    /// A proto call that must succeed.
    fn proto<R: Message + Default>(&self, method: &str, req: &impl Message) -> R {
        let r = self.raw(method, "application/proto", &req.encode_to_vec());
        assert_eq!(r.status, 200, "{method}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/proto"));
        R::decode(&r.body[..]).unwrap()
    }

    /// A JSON call that must succeed.
    fn json(&self, method: &str, req: Value) -> Value {
        let r = self.raw(method, "application/json", req.to_string().as_bytes());
        assert_eq!(r.status, 200, "{method}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        r.json()
    }

    fn raw(&self, method: &str, content_type: &str, body: &[u8]) -> Resp {
        try_http_with(
            &self.srv.addr,
            "POST",
            &format!("{SERVICE}/{method}"),
            &[
                ("Content-Type", content_type),
                ("Connect-Protocol-Version", "1"),
            ],
            body,
        )
        .unwrap()
    }

    /// `/api/v1/profile/merge?format=flamegraph`'s root total.
    fn merge_total(&self, query: &str) -> i64 {
        let d = self.srv.data(&format!(
            "/api/v1/profile/merge?{}",
            qs(&[
                ("query", query),
                ("start", &(self.t0 / 1000).to_string()),
                ("end", &(self.end() / 1000).to_string()),
                ("format", "flamegraph"),
            ])
        ));
        d["root"]["total"].as_i64().unwrap()
    }

    /// `/api/v1/query_range` as (labels, [(ms, value)]).
    fn query_range(&self, query: &str, start: i64, step_s: i64) -> Vec<(Value, Vec<(i64, f64)>)> {
        let d = self.srv.data(&format!(
            "/api/v1/query_range?{}",
            qs(&[
                ("query", query),
                ("start", &(start as f64 / 1000.0).to_string()),
                ("end", &(self.end() as f64 / 1000.0).to_string()),
                ("step", &step_s.to_string()),
            ])
        ));
        d["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let points = r["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        let ms = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                        (ms, p[1].as_str().unwrap().parse::<f64>().unwrap())
                    })
                    .collect();
                (r["metric"].clone(), points)
            })
            .collect()
    }
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A flame graph's nodes as (level, absolute x, total, self, name), checked
/// for the layout's invariants: children lie within their parent after its
/// self, and their totals and the parent's self add up to its total.
fn nodes(names: &[String], levels: &[Vec<i64>]) -> Vec<(usize, i64, i64, i64, String)> {
    let mut out: Vec<Vec<(i64, i64, i64, String)>> = Vec::new();
    for l in levels {
        assert_eq!(l.len() % 4, 0);
        let mut end = 0;
        let mut level = Vec::new();
        for v in l.chunks(4) {
            let x = end + v[0];
            assert!(v[0] >= 0 && v[1] >= v[2] && v[2] >= 0, "{v:?}");
            end = x + v[1];
            level.push((x, v[1], v[2], names[v[3] as usize].clone()));
        }
        out.push(level);
    }
    assert_eq!(out[0].len(), 1, "one root");
    assert_eq!(out[0][0].3, "total");
    for d in 1..out.len() {
        for &(px, ptotal, pself, _) in &out[d - 1] {
            let kids: i64 = out[d]
                .iter()
                .filter(|(x, ..)| *x >= px && *x < px + ptotal)
                .map(|k| k.1)
                .sum();
            if kids > 0 {
                assert_eq!(pself + kids, ptotal, "level {d} under x={px}");
            }
        }
    }
    out.into_iter()
        .enumerate()
        .flat_map(|(d, l)| l.into_iter().map(move |(x, tt, s, n)| (d, x, tt, s, n)))
        .collect()
}

fn fg_levels(fg: &q::FlameGraph) -> Vec<Vec<i64>> {
    fg.levels.iter().map(|l| l.values.clone()).collect()
}

fn json_i64(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Null => 0,
        v => panic!("int64 as a JSON string, got {v}"),
    }
}

#[test]
fn profile_types_labels_and_series_match_the_http_api() {
    let d = Data::start();
    let (start, end) = (d.t0, d.end());

    // ProfileTypes: five-part ids, except the memory types pushed both as
    // delta and cumulative profiles, which keep profstore's ids.
    let http_types: Vec<String> = d
        .srv
        .data("/api/v1/profile_types")
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let r: q::ProfileTypesResponse =
        d.proto("ProfileTypes", &q::ProfileTypesRequest { start, end });
    let ids: BTreeSet<String> = r.profile_types.iter().map(|t| t.id.clone()).collect();
    let mut want = BTreeSet::new();
    for id in &http_types {
        if id.starts_with("memory:") {
            want.insert(id.clone());
        } else {
            want.insert(id.trim_end_matches(":delta").to_string());
        }
    }
    assert_eq!(ids, want);
    assert!(ids.contains(CPU5) && ids.contains(&format!("{HEAP5}:delta")));
    let cpu = r.profile_types.iter().find(|t| t.id == CPU5).unwrap();
    assert_eq!(
        (
            cpu.name.as_str(),
            cpu.sample_type.as_str(),
            cpu.sample_unit.as_str()
        ),
        ("process_cpu", "cpu", "nanoseconds")
    );
    let j = d.json(
        "ProfileTypes",
        json!({"start": start.to_string(), "end": end}),
    );
    let jids: BTreeSet<String> = j["profileTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(jids, ids);
    // Out of the range: none.
    let r: q::ProfileTypesResponse = d.proto(
        "ProfileTypes",
        &q::ProfileTypesRequest {
            start: 1000,
            end: 2000,
        },
    );
    assert!(r.profile_types.is_empty());

    // LabelNames as Grafana sends it ({} when nothing is selected).
    let http_names = strings(&d.srv.data("/api/v1/labels"));
    let r: t::LabelNamesResponse = d.proto(
        "LabelNames",
        &t::LabelNamesRequest {
            matchers: vec!["{}".into()],
            start,
            end,
        },
    );
    let mut want = http_names.clone();
    want.insert("__profile_type__".into());
    assert_eq!(r.names.iter().cloned().collect::<BTreeSet<_>>(), want);
    assert!(want.contains("service_name") && want.contains("pod"));
    let j = d.json(
        "LabelNames",
        json!({"matchers": [r#"{service_name="op"}"#], "start": start, "end": end}),
    );
    let op_names = strings(&d.srv.data(&format!(
        "/api/v1/labels?{}",
        qs(&[("match[]", r#"{service_name="op"}"#)])
    )));
    assert!(!op_names.contains("pod"));
    let mut want = op_names;
    want.insert("__profile_type__".into());
    assert_eq!(strings(&j["names"]), want);

    // LabelValues.
    let r: t::LabelValuesResponse = d.proto(
        "LabelValues",
        &t::LabelValuesRequest {
            name: "service_name".into(),
            matchers: vec!["{}".into()],
            start,
            end,
        },
    );
    assert_eq!(r.names, ["fib", "op", "op2"]);
    assert_eq!(
        strings(&d.srv.data("/api/v1/label/service_name/values")),
        r.names.iter().cloned().collect()
    );
    let j = d.json(
        "LabelValues",
        json!({"name": "pod", "matchers": [format!(r#"{{__profile_type__="{CPU5}"}}"#)]}),
    );
    assert_eq!(strings(&j["names"]), ["a", "b"].map(String::from).into());
    let j = d.json(
        "LabelValues",
        json!({"name": "__profile_type__", "matchers": [r#"{service_name="fib"}"#]}),
    );
    assert_eq!(
        strings(&j["names"]),
        [CPU5, "process_cpu:samples:count:cpu:nanoseconds"]
            .map(String::from)
            .into()
    );

    // Series, whole and reduced to label_names.
    let sel = r#"{service_name="fib"}"#;
    let http_series = d
        .srv
        .data(&format!("/api/v1/series?{}", qs(&[("match[]", sel)])));
    let r: q::SeriesResponse = d.proto(
        "Series",
        &q::SeriesRequest {
            matchers: vec![sel.into()],
            label_names: vec![],
            start,
            end,
        },
    );
    assert_eq!(r.labels_set.len(), http_series.as_array().unwrap().len());
    for (got, want) in r.labels_set.iter().zip(http_series.as_array().unwrap()) {
        let got: BTreeMap<&str, &str> = got
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        let name = want["__name__"].as_str().unwrap();
        assert_eq!(got["__profile_type__"], name.trim_end_matches(":delta"));
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(got[k.as_str()], v.as_str().unwrap());
        }
        assert_eq!(got.len(), want.as_object().unwrap().len() + 1);
    }
    let j = d.json(
        "Series",
        json!({"matchers": [sel], "labelNames": ["__profile_type__", "pod"], "start": start}),
    );
    let sets: BTreeSet<String> = j["labelsSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["labels"].to_string())
        .collect();
    assert_eq!(sets.len(), 4, "2 types × 2 pods: {sets:?}");
}

#[test]
fn flame_graphs_and_profiles_equal_the_merge() {
    let d = Data::start();
    let (start, end) = (d.t0, d.end());
    let fib_total = d.merge_total(&format!(r#"{{__name__="{CPU}",service_name="fib"}}"#));
    let pod_a = d.merge_total(&format!(
        r#"{{__name__="{CPU}",service_name="fib",pod="a"}}"#
    ));
    let pod_b = d.merge_total(&format!(
        r#"{{__name__="{CPU}",service_name="fib",pod="b"}}"#
    ));
    assert!(pod_a > 0 && pod_b > 0);
    assert_eq!(pod_a + pod_b, fib_total);
    assert_eq!(pod_a, 3 * pod_b, "three profiles against one");

    // As Grafana asks: five-part id, a label selector, max_nodes.
    let req = q::SelectMergeStacktracesRequest {
        profile_type_id: CPU5.into(),
        label_selector: r#"{service_name="fib"}"#.into(),
        start,
        end,
        max_nodes: Some(16384),
        ..Default::default()
    };
    let r: q::SelectMergeStacktracesResponse = d.proto("SelectMergeStacktraces", &req);
    let fg = r.flamegraph.unwrap();
    assert_eq!(fg.total, fib_total);
    let all = nodes(&fg.names, &fg_levels(&fg));
    assert_eq!(all[0].2, fib_total);
    assert_eq!(fg.max_self, all.iter().map(|n| n.3).max().unwrap());
    assert!(all.len() > 20, "{}", all.len());
    assert!(!fg.names.iter().any(|n| n == "other"));

    // The default cut (2048) keeps this small profile whole; a cut to 10
    // nodes folds the rest into `other` and keeps the total.
    let r: q::SelectMergeStacktracesResponse = d.proto(
        "SelectMergeStacktraces",
        &q::SelectMergeStacktracesRequest {
            max_nodes: None,
            ..req.clone()
        },
    );
    assert_eq!(r.flamegraph.unwrap(), fg);
    let r: q::SelectMergeStacktracesResponse = d.proto(
        "SelectMergeStacktraces",
        &q::SelectMergeStacktracesRequest {
            max_nodes: Some(10),
            ..req.clone()
        },
    );
    let cut = r.flamegraph.unwrap();
    let cut_nodes = nodes(&cut.names, &fg_levels(&cut));
    assert_eq!(cut.total, fib_total);
    assert!(cut.names.iter().any(|n| n == "other"));
    // Kept: the nodes whose total is at least the 10th largest (ties
    // included, as Pyroscope keeps them).
    let kept: Vec<i64> = cut_nodes[1..]
        .iter()
        .filter(|n| n.4 != "other")
        .map(|n| n.2)
        .collect();
    let min = *kept.iter().min().unwrap();
    assert!(
        kept.iter().filter(|&&t| t > min).count() < 10,
        "{cut_nodes:?}"
    );
    assert!(kept.len() < all.len() - 1);
    let mut totals: Vec<i64> = all[1..].iter().map(|n| n.2).collect();
    totals.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(min, totals[9], "the cut is the 10th largest total");

    // JSON, with the proto field names Grafana's Go structs would use.
    let j = d.json(
        "SelectMergeStacktraces",
        json!({"profile_typeID": CPU5, "label_selector": "{service_name=\"fib\",pod=\"a\"}",
               "start": start.to_string(), "end": end.to_string(), "max_nodes": "16384"}),
    );
    let jf = &j["flamegraph"];
    assert_eq!(json_i64(&jf["total"]), pod_a);
    let names: Vec<String> = jf["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().into())
        .collect();
    let levels: Vec<Vec<i64>> = jf["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(json_i64)
                .collect()
        })
        .collect();
    assert_eq!(nodes(&names, &levels)[0].2, pod_a);

    // A full profstore id selects too; so does __profile_type__.
    let r: q::SelectMergeStacktracesResponse = d.proto(
        "SelectMergeStacktraces",
        &q::SelectMergeStacktracesRequest {
            profile_type_id: CPU.into(),
            label_selector: format!(r#"{{__profile_type__="{CPU5}",pod="b"}}"#),
            ..req.clone()
        },
    );
    assert_eq!(r.flamegraph.unwrap().total, pod_b);

    // Nothing selected: an empty flame graph, not an error.
    let r: q::SelectMergeStacktracesResponse = d.proto(
        "SelectMergeStacktraces",
        &q::SelectMergeStacktracesRequest {
            label_selector: r#"{service_name="nobody"}"#.into(),
            ..req.clone()
        },
    );
    let empty = r.flamegraph.unwrap();
    assert_eq!((empty.total, empty.names.len()), (0, 1));

    // PROFILE_FORMAT_PPROF and SelectMergeProfile: the merge as pprof.
    let http = d.srv.get(&format!(
        "/api/v1/profile/merge?{}",
        qs(&[
            (
                "query",
                &format!(r#"{{__name__="{CPU}",service_name="fib"}}"#)
            ),
            ("start", &(start / 1000).to_string()),
            ("end", &(end / 1000).to_string()),
        ])
    ));
    assert_eq!(http.status, 200);
    let http_pprof = decode(&http.body, &DecodeLimits::default()).unwrap();
    let p: Profile = d.proto(
        "SelectMergeProfile",
        &q::SelectMergeProfileRequest {
            profile_type_id: CPU5.into(),
            label_selector: r#"{service_name="fib"}"#.into(),
            start,
            end,
            ..Default::default()
        },
    );
    let total = |p: &Profile| p.sample.iter().map(|s| s.value[0]).sum::<i64>();
    assert_eq!(total(&p), fib_total);
    assert_eq!(common::totals(&p), common::totals(&http_pprof));
    let r: q::SelectMergeStacktracesResponse = d.proto(
        "SelectMergeStacktraces",
        &q::SelectMergeStacktracesRequest {
            format: q::ProfileFormat::Pprof as i32,
            ..req.clone()
        },
    );
    let p2 = r.pprof.unwrap().profile.unwrap();
    assert_eq!(common::totals(&p2), common::totals(&http_pprof));
    let j = d.json(
        "SelectMergeProfile",
        json!({"profileTypeID": CPU5, "labelSelector": "{service_name=\"fib\"}",
               "start": start, "end": end}),
    );
    let jtotal: i64 = j["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json_i64(&s["value"][0]))
        .sum();
    assert_eq!(jtotal, fib_total);
    assert_eq!(j["stringTable"][0], "", "pprof's string table starts empty");

    // Diff: pod a against pod b.
    let side = |pod: &str| q::SelectMergeStacktracesRequest {
        label_selector: format!(r#"{{service_name="fib",pod="{pod}"}}"#),
        ..req.clone()
    };
    let r: q::DiffResponse = d.proto(
        "Diff",
        &q::DiffRequest {
            left: Some(side("a")),
            right: Some(side("b")),
        },
    );
    let df = r.flamegraph.unwrap();
    assert_eq!((df.left_ticks, df.right_ticks), (pod_a, pod_b));
    assert_eq!(df.total, pod_a + pod_b);
    assert_eq!(df.levels[0].values, vec![0, pod_a, 0, 0, pod_b, 0, 0]);
    // Same stacks, three times the values: every node's left is 3 × right.
    for l in &df.levels {
        for v in l.values.chunks(7) {
            assert_eq!(v[1], 3 * v[4], "{v:?}");
        }
    }
    let j = d.json(
        "Diff",
        json!({"left": {"profileTypeID": CPU5, "labelSelector": "{pod=\"a\"}", "start": start, "end": end},
               "right": {"profileTypeID": CPU5, "labelSelector": "{pod=\"b\"}", "start": start, "end": end}}),
    );
    assert_eq!(json_i64(&j["flamegraph"]["leftTicks"]), pod_a);
    assert_eq!(json_i64(&j["flamegraph"]["rightTicks"]), pod_b);

    // A five-part id of both a delta and a cumulative type selects the
    // cumulative one (its profstore id); `:delta` selects the other.
    let heap = |id: &str, sel: &str| q::SelectMergeStacktracesRequest {
        profile_type_id: id.into(),
        label_selector: sel.into(),
        start,
        end,
        ..Default::default()
    };
    let op = d.merge_total(&format!(r#"{{__name__="{HEAP5}"}}"#));
    assert!(op > 0);
    for (id, sel, want) in [
        (HEAP5.to_string(), "{}", op),
        (format!("{HEAP5}:delta"), "{}", 2 * op),
        (HEAP5.to_string(), r#"{service_name="op2"}"#, 2 * op),
        (HEAP5.to_string(), r#"{service_name="op"}"#, op),
    ] {
        let r: q::SelectMergeStacktracesResponse =
            d.proto("SelectMergeStacktraces", &heap(&id, sel));
        assert_eq!(r.flamegraph.unwrap().total, want, "{id} {sel}");
    }
}

/// A series' label pairs and points.
type Points = (Vec<(String, String)>, Vec<(i64, f64)>);

/// SelectSeries as (label pairs, points).
fn select_series(d: &Data, req: &q::SelectSeriesRequest) -> Vec<Points> {
    let r: q::SelectSeriesResponse = d.proto("SelectSeries", req);
    r.series
        .iter()
        .map(|s| {
            (
                s.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                s.points.iter().map(|p| (p.timestamp, p.value)).collect(),
            )
        })
        .collect()
}

#[test]
fn select_series_equals_query_range() {
    let d = Data::start();
    // Starting 20 s before t0, 60 s steps: buckets [t0-20s, t0+40s) and
    // [t0+40s, t0+100s): pod a 2 + 1 profiles, pod b 0 + 1.
    let start = d.t0 - 20_000;
    let req = q::SelectSeriesRequest {
        profile_type_id: CPU5.into(),
        label_selector: r#"{service_name="fib"}"#.into(),
        start,
        end: d.end(),
        step: 60.0,
        ..Default::default()
    };
    let per_profile = d.merge_total(&format!(r#"{{__name__="{CPU}",pod="b"}}"#)) as f64;

    // No group_by: one series without labels, as `sum(…)`.
    let got = select_series(&d, &req);
    let want = d.query_range(
        &format!(r#"sum({{__name__="{CPU}",service_name="fib"}})"#),
        start,
        60,
    );
    assert_eq!(got.len(), 1);
    assert!(got[0].0.is_empty(), "{:?}", got[0].0);
    assert_eq!(got[0].1, want[0].1);
    assert_eq!(
        got[0].1,
        vec![
            (start, 2.0 * per_profile),
            (start + 60_000, 2.0 * per_profile)
        ]
    );

    // group_by pod, as `sum by (pod) (…)`.
    let by_pod = q::SelectSeriesRequest {
        group_by: vec!["pod".into()],
        ..req.clone()
    };
    let got = select_series(&d, &by_pod);
    let want = d.query_range(
        &format!(r#"sum by (pod) ({{__name__="{CPU}",service_name="fib"}})"#),
        start,
        60,
    );
    assert_eq!(got.len(), 2);
    for ((labels, points), (metric, wpoints)) in got.iter().zip(&want) {
        assert_eq!(labels.len(), 1);
        assert_eq!(metric["pod"], labels[0].1.as_str());
        assert_eq!(points, wpoints);
    }
    assert_eq!(
        got[0].1,
        vec![(start, 2.0 * per_profile), (start + 60_000, per_profile)]
    );
    assert_eq!(got[1].1, vec![(start + 60_000, per_profile)]);

    // Average: every profile has the same total.
    let got = select_series(
        &d,
        &q::SelectSeriesRequest {
            aggregation: Some(t::TimeSeriesAggregationType::Average as i32),
            ..by_pod.clone()
        },
    );
    assert_eq!(
        got[0].1,
        vec![(start, per_profile), (start + 60_000, per_profile)]
    );

    // limit: the group of the larger total.
    let got = select_series(
        &d,
        &q::SelectSeriesRequest {
            limit: Some(1),
            ..by_pod.clone()
        },
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, vec![("pod".to_string(), "a".to_string())]);

    // JSON, as Grafana's shapes: a fractional step in seconds.
    let j = d.json(
        "SelectSeries",
        json!({"profileTypeID": CPU5, "labelSelector": "{service_name=\"fib\"}",
               "start": start.to_string(), "end": d.end().to_string(), "step": 60.0,
               "groupBy": ["pod"], "aggregation": "TIME_SERIES_AGGREGATION_TYPE_SUM",
               "exemplarType": "EXEMPLAR_TYPE_NONE"}),
    );
    let series = j["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["labels"], json!([{"name": "pod", "value": "a"}]));
    let points: Vec<(i64, f64)> = series[0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (json_i64(&p["timestamp"]), p["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(points, want[0].1);
    let j = d.json(
        "SelectSeries",
        json!({"profileTypeID": CPU5, "labelSelector": "{}", "start": start,
               "end": d.end(), "step": 0.5, "groupBy": ["service_name"]}),
    );
    let n: usize = j["series"][0]["points"].as_array().unwrap().len();
    assert_eq!(n, 4, "one point per profile with half-second steps");
}

#[test]
fn errors_have_connects_shape() {
    let d = Data::start_with(&["--max-query-series", "1"]);
    let sel = |id: &str, s: &str| q::SelectMergeStacktracesRequest {
        profile_type_id: id.into(),
        label_selector: s.into(),
        start: d.t0,
        end: d.end(),
        ..Default::default()
    };
    let check = |r: Resp, status: u16, code: &str, says: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        assert_eq!(v["code"], code, "{v}");
        let m = v["message"].as_str().unwrap();
        assert!(m.contains(says), "{m:?} lacks {says:?}");
    };
    let proto = |m: &str, body: &[u8]| d.raw(m, "application/proto", body);
    let json = |m: &str, body: &str| d.raw(m, "application/json", body.as_bytes());
    check(
        proto("NoSuchMethod", b""),
        404,
        "unimplemented",
        "NoSuchMethod",
    );
    check(
        proto("SelectHeatmap", b""),
        501,
        "unimplemented",
        "not supported",
    );
    check(
        proto("SelectMergeStacktraces", b"\xff\xff"),
        400,
        "invalid_argument",
        "protobuf",
    );
    check(json("SelectSeries", "{"), 400, "invalid_argument", "JSON");
    check(
        json("SelectSeries", r#"{"start": "soon"}"#),
        400,
        "invalid_argument",
        "start",
    );
    check(json("LabelValues", "[]"), 400, "invalid_argument", "object");
    let bad_id = sel("cpu:only", "{}").encode_to_vec();
    check(
        proto("SelectMergeStacktraces", &bad_id),
        400,
        "invalid_argument",
        "profile_typeID",
    );
    let bad_sel = sel(CPU5, "{pod=").encode_to_vec();
    check(
        proto("SelectMergeStacktraces", &bad_sel),
        400,
        "invalid_argument",
        "selector",
    );
    let backwards = q::SelectMergeStacktracesRequest {
        start: 10,
        end: 5,
        ..sel(CPU5, "{}")
    };
    check(
        proto("SelectMergeStacktraces", &backwards.encode_to_vec()),
        400,
        "invalid_argument",
        "before",
    );
    let tree = q::SelectMergeStacktracesRequest {
        format: q::ProfileFormat::Tree as i32,
        ..sel(CPU5, "{}")
    };
    check(
        proto("SelectMergeStacktraces", &tree.encode_to_vec()),
        501,
        "unimplemented",
        "TREE",
    );
    let zero_step = json!({"profileTypeID": CPU5, "start": d.t0, "end": d.end(), "step": 0});
    check(
        json("SelectSeries", &zero_step.to_string()),
        400,
        "invalid_argument",
        "step",
    );
    let r = d.raw("LabelNames", "text/plain", b"");
    check(r, 415, "unknown", "content-type");
    let r = d.srv.get(&format!("{SERVICE}/LabelNames"));
    check(r, 405, "unknown", "POST");
    // Over the body limit of the query routes (1 MiB).
    let big = t::LabelNamesRequest {
        matchers: vec!["x".repeat(1 << 20)],
        ..Default::default()
    };
    check(
        proto("LabelNames", &big.encode_to_vec()),
        429,
        "resource_exhausted",
        "1048576",
    );
    // Over the per-query series limit (1 here): pod a and b.
    let two = sel(CPU5, r#"{service_name="fib"}"#).encode_to_vec();
    check(
        proto("SelectMergeStacktraces", &two),
        429,
        "resource_exhausted",
        "max_query_series",
    );
    let series = q::SelectSeriesRequest {
        profile_type_id: CPU5.into(),
        label_selector: r#"{service_name="fib"}"#.into(),
        start: d.t0,
        end: d.end(),
        step: 60.0,
        ..Default::default()
    };
    check(
        proto("SelectSeries", &series.encode_to_vec()),
        429,
        "resource_exhausted",
        "max_query_series",
    );
    // One series is within it.
    let one = sel(CPU5, r#"{service_name="fib",pod="b"}"#);
    let r: q::SelectMergeStacktracesResponse = d.proto("SelectMergeStacktraces", &one);
    assert!(r.flamegraph.unwrap().total > 0);
    // gzip request bodies.
    let r = try_http_with(
        &d.srv.addr,
        "POST",
        &format!("{SERVICE}/SelectMergeStacktraces"),
        &[
            ("Content-Type", "application/proto"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(&one.encode_to_vec()),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

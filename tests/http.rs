//! End to end: runs the real `profstore serve` binary on an ephemeral port with
//! a temporary data dir, pushes corpus profiles over HTTP and checks every
//! endpoint of the first daemon slice, a table of bad inputs, and a clean
//! exit on SIGTERM.

mod common;

use common::daemon::*;
use profstore::pprof::{decode, DecodeLimits};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The index of the sample type `"type:unit"` in `p`.
fn sample_index(p: &profstore::proto::pprof::Profile, ty: &str, unit: &str) -> usize {
    let s = |i: i64| p.string_table[i as usize].as_str();
    p.sample_type
        .iter()
        .position(|vt| s(vt.r#type) == ty && s(vt.unit) == unit)
        .unwrap()
}

fn decode_download(r: &Resp) -> profstore::proto::pprof::Profile {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(&r.body[..2], &[0x1f, 0x8b], "gzipped");
    decode(&r.body, &DecodeLimits::default()).unwrap()
}

/// Sum of the (last) values per `instance` of a matrix (`key` = "values")
/// or vector (`key` = "value") result.
fn per_instance(result: &[Value], key: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for r in result {
        let inst = r["metric"]["instance"].as_str().unwrap().to_string();
        let point = if key == "values" {
            r["values"].as_array().unwrap().last().unwrap().clone()
        } else {
            r["value"].clone()
        };
        let v: i64 = point[1].as_str().unwrap().parse().unwrap();
        *out.entry(inst).or_insert(0) += v;
    }
    out
}

/// Checks a whole answer against the shapes of Prometheus's documented
/// examples (HTTP API docs): exactly `status` and `data` at the top; for
/// `matrix`/`vector`, exactly `resultType` and `result`, each result exactly
/// `metric` (string → string) and `values` (pairs) or `value` (one pair),
/// a pair being `[unix seconds as a number, "value as a string"]`; for
/// `strings` (labels, values) an array of strings; for `series` an array of
/// string → string objects.
fn assert_prometheus_shape(kind: &str, v: &Value) {
    let keys = |o: &Value| -> Vec<String> {
        let mut k: Vec<String> = o.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let label_map = |m: &Value| {
        assert!(m.as_object().unwrap().values().all(Value::is_string), "{m}");
    };
    let pair = |p: &Value| {
        let p = p.as_array().unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].is_number(), "{p:?}");
        assert!(p[1].as_str().unwrap().parse::<f64>().is_ok(), "{p:?}");
    };
    assert_eq!(keys(v), ["data", "status"], "{v}");
    assert_eq!(v["status"], "success");
    let data = &v["data"];
    match kind {
        "matrix" | "vector" => {
            assert_eq!(keys(data), ["result", "resultType"], "{data}");
            assert_eq!(data["resultType"], kind);
            for r in data["result"].as_array().unwrap() {
                label_map(&r["metric"]);
                if kind == "matrix" {
                    assert_eq!(keys(r), ["metric", "values"], "{r}");
                    r["values"].as_array().unwrap().iter().for_each(pair);
                } else {
                    assert_eq!(keys(r), ["metric", "value"], "{r}");
                    pair(&r["value"]);
                }
            }
        }
        "strings" => assert!(
            data.as_array().unwrap().iter().all(Value::is_string),
            "{data}"
        ),
        "series" => data.as_array().unwrap().iter().for_each(label_map),
        _ => unreachable!("unknown shape {kind}"),
    }
}

/// Every function name of a pprof.
fn function_names(p: &profstore::proto::pprof::Profile) -> Vec<String> {
    p.function
        .iter()
        .map(|f| p.string_table[f.name as usize].clone())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Reads `text` to its end with an XML parser.
fn assert_well_formed_xml(text: &str) {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut depth = 0i64;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Start(_)) => depth += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(_) => {}
            Err(e) => panic!("not well-formed XML at {}: {e}", reader.buffer_position()),
        }
    }
    assert_eq!(depth, 0, "unbalanced XML");
}

fn sum(m: &BTreeMap<u128, i64>) -> i64 {
    m.values().sum()
}

#[test]
fn daemon_end_to_end() {
    let srv = Server::start(&[
        "--max-body-bytes",
        "1000000",
        "--max-decompressed-bytes",
        "8000000",
    ]);
    assert_eq!(srv.get("/-/healthy").status, 200);
    assert_eq!(srv.get("/-/ready").status, 200);

    // --- ingest ---
    let cpu = corpus_file("parca/cpu_labels.pb.gz");
    let alloc = corpus_file("parca/alloc_objects.pb.gz");
    let w = srv.write(r#"{job="api",instance="a"}"#, &cpu);
    assert_eq!(w.status, 200, "{}", w.text());
    let w = w.json();
    let t_cpu = w["timestamp_ms"].as_i64().unwrap();
    assert!(w["series"].as_u64().unwrap() >= 2, "{w}");
    assert!(w["samples"].as_u64().unwrap() > 0, "{w}");
    let types: Vec<String> = w["profile_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let cpu_type = types
        .iter()
        .find(|t| t.contains(":cpu:nanoseconds:cpu:nanoseconds"))
        .unwrap_or_else(|| panic!("no cpu type in {types:?}"))
        .clone();
    let w = srv.write(r#"{job="api",instance="b"}"#, &cpu);
    assert_eq!(w.status, 200, "{}", w.text());
    let w = srv.write(r#"{job="api",instance="a"}"#, &alloc);
    assert_eq!(w.status, 200, "{}", w.text());
    let w = w.json();
    let t_alloc = w["timestamp_ms"].as_i64().unwrap();
    let alloc_type = w["profile_types"][0].as_str().unwrap().to_string();
    // A raw (not gzipped) body, and a profile name given by the writer.
    let raw = gunzip(&corpus_file("parca/two-stacks.pb.gz"));
    let target = format!(
        "/api/v1/write?{}",
        qs(&[("name", "custom"), ("labels", r#"{job="raw"}"#)])
    );
    let w = srv.call("POST", &target, None, &raw);
    assert_eq!(w.status, 200, "{}", w.text());
    assert!(w.json()["profile_types"][0]
        .as_str()
        .unwrap()
        .starts_with("custom:"));

    // Expected totals from the input.
    let cpu_in = common::load(&common::testdata_dir().join("parca/cpu_labels.pb.gz"));
    let cpu_totals = &common::totals(&cpu_in)[sample_index(&cpu_in, "cpu", "nanoseconds")];
    let cpu_total = sum(cpu_totals);
    assert!(cpu_total > 0);

    // --- query_range: Prometheus's matrix shape ---
    let sel = format!(r#"{cpu_type}{{job="api"}}"#);
    let (s0, s1) = (
        format!("{}", (t_cpu - 60_000) as f64 / 1000.0),
        format!("{}", (t_cpu + 60_000) as f64 / 1000.0),
    );
    let qr_target = format!(
        "/api/v1/query_range?{}",
        qs(&[
            ("query", &sel),
            ("start", &s0),
            ("end", &s1),
            ("step", "15s")
        ])
    );
    assert_prometheus_shape("matrix", &srv.get(&qr_target).json());
    let data = srv.data(&qr_target);
    assert_eq!(data["resultType"], "matrix");
    // The profile's pprof labels (`grpcmethod`) become series labels, so
    // each instance has several series; their totals add up to the input's.
    let result = data["result"].as_array().unwrap();
    assert!(result.len() >= 2, "{data}");
    for series in result {
        assert_eq!(series["metric"]["job"], "api");
        assert_eq!(series["metric"]["__name__"], cpu_type.as_str());
        let values = series["values"].as_array().unwrap();
        assert_eq!(values.len(), 1, "{series}");
        let ts = values[0][0].as_f64().unwrap();
        assert!(ts <= t_cpu as f64 / 1000.0 && ts > t_cpu as f64 / 1000.0 - 15.0);
        assert!(values[0][1].is_string());
    }
    assert_eq!(
        per_instance(result, "values"),
        BTreeMap::from([("a".to_string(), cpu_total), ("b".to_string(), cpu_total)])
    );
    // The same as a POST form and with RFC 3339 times.
    let form = qs(&[
        ("query", &sel),
        ("start", &s0),
        ("end", &s1),
        ("step", "15"),
    ]);
    let r = srv.call(
        "POST",
        "/api/v1/query_range",
        Some("application/x-www-form-urlencoded"),
        form.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"], data);
    let rfc = |ms: i64| {
        let secs = ms.div_euclid(1000);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            ms.rem_euclid(1000)
        )
    };
    let data_rfc = srv.data(&format!(
        "/api/v1/query_range?{}",
        qs(&[
            ("query", &sel),
            ("start", &rfc(t_cpu - 60_000)),
            ("end", &rfc(t_cpu + 60_000)),
            ("step", "15s")
        ])
    ));
    assert_eq!(data_rfc, data);

    // --- query: Prometheus's vector shape ---
    let t_eval = format!("{}", (t_cpu + 10_000) as f64 / 1000.0);
    let data = srv.data(&format!(
        "/api/v1/query?{}",
        qs(&[("query", &sel), ("time", &t_eval)])
    ));
    assert_eq!(data["resultType"], "vector");
    assert_prometheus_shape(
        "vector",
        &srv.get(&format!(
            "/api/v1/query?{}",
            qs(&[("query", &sel), ("time", &t_eval)])
        ))
        .json(),
    );
    let result = data["result"].as_array().unwrap();
    for r in result {
        assert_eq!(
            r["value"][0].as_f64().unwrap(),
            (t_cpu + 10_000) as f64 / 1000.0
        );
    }
    assert_eq!(
        per_instance(result, "value"),
        BTreeMap::from([("a".to_string(), cpu_total), ("b".to_string(), cpu_total)])
    );
    // Outside the 5-minute lookback: nothing.
    let late = format!("{}", (t_cpu + 6 * 60_000) as f64 / 1000.0);
    let data = srv.data(&format!(
        "/api/v1/query?{}",
        qs(&[("query", &sel), ("time", &late)])
    ));
    assert_eq!(data["result"], json!([]));

    // --- labels, values, series: lists of strings / label maps ---
    assert_prometheus_shape("strings", &srv.get("/api/v1/labels").json());
    assert_prometheus_shape("strings", &srv.get("/api/v1/label/job/values").json());
    assert_prometheus_shape(
        "series",
        &srv.get(&format!(
            "/api/v1/series?{}",
            qs(&[("match[]", r#"{job="api"}"#)])
        ))
        .json(),
    );
    let labels = srv.data("/api/v1/labels");
    for want in ["__name__", "instance", "job"] {
        assert!(
            labels.as_array().unwrap().contains(&json!(want)),
            "{labels}"
        );
    }
    let values = srv.data("/api/v1/label/job/values");
    assert_eq!(values, json!(["api", "raw"]));
    let values = srv.data(&format!(
        "/api/v1/label/instance/values?{}",
        qs(&[("match[]", r#"{job="api"}"#)])
    ));
    assert_eq!(values, json!(["a", "b"]));
    let series_target = format!(
        "/api/v1/series?{}",
        qs(&[("match[]", &sel), ("match[]", r#"{job="raw"}"#)])
    );
    let series = srv.data(&series_target);
    let series = series.as_array().unwrap();
    assert!(series.len() >= 3, "{series:?}");
    assert!(series.iter().any(|s| s["job"] == "raw"));
    assert!(series
        .iter()
        .all(|s| s["__name__"].is_string() && s["job"].is_string()));

    // --- profile types ---
    let pts = srv.data(&format!(
        "/api/v1/profile_types?{}",
        qs(&[("match[]", r#"{job="api"}"#)])
    ));
    let ids: Vec<&str> = pts
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&cpu_type.as_str()) && ids.contains(&alloc_type.as_str()));
    let cpu_pt = pts
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == cpu_type.as_str())
        .unwrap();
    assert_eq!(cpu_pt["sample_type"], "cpu");
    assert_eq!(cpu_pt["sample_unit"], "nanoseconds");
    assert_eq!(cpu_pt["period_type"], "cpu");
    assert!(cpu_pt["delta"].is_boolean() && cpu_pt["name"].is_string());

    // --- pprof downloads ---
    let (ms0, ms1) = (
        format!("{}", t_cpu / 1000 - 60),
        format!("{}", t_cpu / 1000 + 60),
    );
    let merged = decode_download(&srv.get(&format!(
        "/api/v1/profile/merge?{}",
        qs(&[
            ("query", &sel),
            ("start", &ms0),
            ("end", &ms1),
            ("format", "pprof")
        ])
    )));
    let merged_totals = &common::totals(&merged)[0];
    assert_eq!(sum(merged_totals), 2 * cpu_total);
    let doubled: BTreeMap<u128, i64> = cpu_totals.iter().map(|(k, v)| (*k, 2 * v)).collect();
    assert_eq!(merged_totals, &doubled, "per-stack totals");

    let t_single = format!("{}", t_cpu as f64 / 1000.0);
    let single = decode_download(&srv.get(&format!(
        "/api/v1/profile?{}",
        qs(&[
            ("query", &format!(r#"{cpu_type}{{instance="a"}}"#)),
            ("time", &t_single)
        ])
    )));
    assert_eq!(&common::totals(&single)[0], cpu_totals);

    let diff_t = |f: &str| {
        format!(
            "/api/v1/profile/diff?{}",
            qs(&[
                ("query_a", &format!(r#"{cpu_type}{{instance="a"}}"#)),
                ("start_a", &ms0),
                ("end_a", &ms1),
                ("query_b", &format!(r#"{cpu_type}{{instance="b"}}"#)),
                ("start_b", &ms0),
                ("end_b", &ms1),
                ("format", f),
            ])
        )
    };
    let diff = decode_download(&srv.get(&diff_t("pprof")));
    let diff_values: Vec<i64> = diff.sample.iter().map(|s| s.value[0]).collect();
    assert_eq!(diff_values.iter().sum::<i64>(), 0);
    assert_eq!(
        diff_values.iter().filter(|v| **v > 0).sum::<i64>(),
        cpu_total
    );

    // --- the other formats agree with the pprof ---
    let merged_total = sum(merged_totals);
    let names = function_names(&merged);
    let fmt = |f: &str| {
        srv.get(&format!(
            "/api/v1/profile/merge?{}",
            qs(&[
                ("query", &sel),
                ("start", &ms0),
                ("end", &ms1),
                ("format", f)
            ])
        ))
    };
    let r = fmt("folded");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let folded_total: i64 = r
        .text()
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<i64>().unwrap())
        .sum();
    assert_eq!(folded_total, merged_total);
    let top = fmt("top");
    assert_eq!(top.status, 200, "{}", top.text());
    let top = top.json()["data"].clone();
    assert_eq!(top["total"], merged_total);
    assert_eq!(top["unit"], "nanoseconds");
    let flat: i64 = top["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flat"].as_i64().unwrap())
        .sum();
    assert_eq!(flat, merged_total, "every sample has a leaf function");
    let fg = fmt("flamegraph").json()["data"].clone();
    assert_eq!(fg["root"]["total"], merged_total);
    let children: i64 = fg["root"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["total"].as_i64().unwrap())
        .sum();
    assert_eq!(
        children + fg["root"]["self"].as_i64().unwrap(),
        merged_total
    );
    // `view` is both, from one merge.
    let view = fmt("view").json()["data"].clone();
    assert_eq!(view["flamegraph"], fg);
    assert_eq!(view["top"], top);
    let svg = fmt("svg");
    assert_eq!(svg.status, 200);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    let svg = svg.text();
    assert_well_formed_xml(&svg);
    let widest = names.iter().filter(|n| svg.contains(n.as_str())).count();
    assert!(widest > 0, "the SVG names the profile's functions");
    // A diff in every format.
    let dfg = srv.data(&diff_t("flamegraph"));
    assert_eq!(dfg["diff"], true);
    assert_eq!(dfg["root"]["total"], cpu_total);
    assert_eq!(dfg["root"]["base_total"], cpu_total);
    let dtop = srv.data(&diff_t("top"));
    assert_eq!(dtop["total"], cpu_total);
    assert_eq!(dtop["base_total"], cpu_total);
    let dfolded = srv.get(&diff_t("folded")).text();
    let (mut base, mut compare) = (0i64, 0i64);
    for l in dfolded.lines() {
        let mut it = l.rsplitn(3, ' ');
        compare += it.next().unwrap().parse::<i64>().unwrap();
        base += it.next().unwrap().parse::<i64>().unwrap();
    }
    assert_eq!((base, compare), (cpu_total, cpu_total));
    assert_well_formed_xml(&srv.get(&diff_t("svg")).text());

    // The query_range total matches the downloaded merge.
    let data = srv.data(&qr_target);
    let qr_sum: i64 = data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["values"][0][1].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(qr_sum, sum(merged_totals));

    // --- bad inputs ---
    let before_series = srv.get(&series_target).body;
    let before_range = srv.get(&qr_target).body;
    let all_types = srv.get("/api/v1/profile_types").body;

    let bomb = gzip(&vec![0u8; 20_000_000]);
    let mut truncated = cpu.clone();
    truncated.truncate(cpu.len() / 2);
    let big_body = vec![7u8; 1_100_000];
    let many_labels = format!(
        "{{{}}}",
        (0..40)
            .map(|i| format!("l{i}=\"v\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let long_value = format!("{{job=\"{}\"}}", "x".repeat(5000));
    let write_t = |labels: &str| format!("/api/v1/write?{}", qs(&[("labels", labels)]));
    let range_t = |query: &str, start: &str, end: &str, step: &str| {
        format!(
            "/api/v1/query_range?{}",
            qs(&[
                ("query", query),
                ("start", start),
                ("end", end),
                ("step", step)
            ])
        )
    };
    let merge_t = |query: &str, start: &str, end: &str, format: &str| {
        format!(
            "/api/v1/profile/merge?{}",
            qs(&[
                ("query", query),
                ("start", start),
                ("end", end),
                ("format", format)
            ])
        )
    };
    let alloc_sel = format!(r#"{alloc_type}{{job="api"}}"#);
    let diff_mismatch = format!(
        "/api/v1/profile/diff?{}",
        qs(&[
            ("query_a", sel.as_str()),
            ("start_a", &ms0),
            ("end_a", &ms1),
            ("query_b", &alloc_sel),
            ("start_b", "0"),
            ("end_b", &format!("{}", t_alloc / 1000 + 60)),
        ])
    );
    let ok_labels = r#"{job="bad"}"#;
    #[rustfmt::skip]
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        ("GET", range_t("foo{", "0", "1", "15s"), vec![], 400, "invalid selector"),
        ("GET", range_t("rate(foo[5m])", "0", "1", "15s"), vec![], 400, "unsupported selector"),
        ("GET", range_t("{}", "0", "1", "15s"), vec![], 400, "at least one non-empty matcher"),
        ("GET", range_t(r#"{job=~"("}"#, "0", "1", "15s"), vec![], 400, "invalid"),
        ("GET", range_t(&sel, "abc", "1", "15s"), vec![], 400, "invalid parameter \"start\""),
        ("GET", range_t(&sel, "2022-13-01T00:00:00Z", "1", "15s"), vec![], 400, "cannot parse"),
        ("GET", range_t(&sel, "0", "NaN", "15s"), vec![], 400, "invalid parameter \"end\""),
        ("GET", range_t(&sel, "100", "50", "15s"), vec![], 400, "end timestamp must not be before start time"),
        ("GET", range_t(&sel, "0", "100", "0"), vec![], 400, "zero or negative"),
        ("GET", range_t(&sel, "0", "100", "-5s"), vec![], 400, "invalid parameter \"step\""),
        ("GET", range_t(&sel, "0", "100", "fast"), vec![], 400, "invalid parameter \"step\""),
        ("GET", range_t(&sel, "0", "1000000", "1ms"), vec![], 400, "11,000 points"),
        ("GET", "/api/v1/query_range?start=0&end=1&step=1".into(), vec![], 400, "missing parameter \"query\""),
        ("GET", format!("/api/v1/query?{}", qs(&[("query", &sel), ("time", "yesterday")])), vec![], 400, "invalid parameter \"time\""),
        ("GET", merge_t(&sel, &ms0, &ms1, "png"), vec![], 400, "unsupported format \"png\" (supported: pprof, flamegraph, top, view, folded, svg)"),
        ("GET", merge_t(&sel, &ms1, &ms0, "pprof"), vec![], 400, "end timestamp must not be before start time"),
        ("GET", merge_t(r#"{job="api"}"#, &ms0, &ms1, "pprof"), vec![], 400, "profile types"),
        ("GET", merge_t(r#"{job="nope"}"#, &ms0, &ms1, "pprof"), vec![], 404, "no profiles"),
        ("GET", diff_mismatch, vec![], 400, "different profile types"),
        ("GET", format!("/api/v1/profile?{}", qs(&[("query", &sel), ("time", "x")])), vec![], 400, "invalid parameter \"time\""),
        ("GET", "/api/v1/series".into(), vec![], 400, "no match[] parameter provided"),
        ("GET", format!("/api/v1/labels?{}", qs(&[("match[]", "{")])), vec![], 400, "invalid selector"),
        ("POST", write_t(ok_labels), b"hello, not a profile".to_vec(), 400, "protobuf"),
        ("POST", write_t(ok_labels), truncated, 400, "gzip"),
        ("POST", write_t(ok_labels), vec![], 400, "empty profile body"),
        ("POST", write_t(ok_labels), bomb, 413, "too large"),
        ("POST", write_t(ok_labels), big_body, 413, "request body too large"),
        ("POST", write_t(r#"{job=~"a"}"#), cpu.clone(), 400, "only `=`"),
        ("POST", write_t("{job="), cpu.clone(), 400, "invalid parameter \"labels\""),
        ("POST", write_t(r#"cpu{job="a"}"#), cpu.clone(), 400, "a label set starts with"),
        ("POST", write_t(r#"{"my.metric", job="a"}"#), cpu.clone(), 400, "no metric name"),
        ("POST", write_t(&many_labels), cpu.clone(), 400, "limit exceeded"),
        ("POST", write_t(&long_value), cpu.clone(), 400, "limit exceeded"),
        ("GET", "/api/v1/nope".into(), vec![], 404, "not found: /api/v1/nope"),
        ("GET", "/".into(), vec![], 404, "not found"),
        ("DELETE", "/api/v1/query_range".into(), vec![], 405, "method not allowed"),
        ("GET", "/api/v1/write".into(), vec![], 405, "method not allowed"),
        ("POST", "/api/v1/profile/merge".into(), vec![], 405, "method not allowed"),
    ];
    assert!(cases.len() >= 30);
    for (method, target, body, status, message) in &cases {
        let short: String = target.chars().take(120).collect();
        let r = srv.call(method, target, None, body);
        assert_eq!(r.status, *status, "{method} {short}: {}", r.text());
        let v = r.json();
        assert_eq!(v["status"], "error", "{method} {short}");
        assert!(v["errorType"].is_string());
        let err = v["error"].as_str().unwrap();
        assert!(
            message.split('|').any(|m| err.contains(m)),
            "{method} {short}: {err:?} lacks {message:?}"
        );
    }
    // Still answering, with exactly the same data.
    assert_eq!(srv.get(&series_target).body, before_series);
    assert_eq!(srv.get(&qr_target).body, before_range);
    assert_eq!(srv.get("/api/v1/profile_types").body, all_types);
    assert_eq!(srv.data("/api/v1/label/job/values"), json!(["api", "raw"]));

    // --- /metrics ---
    let m = srv.get("/metrics");
    assert_eq!(m.status, 200);
    let m = m.text();
    let value = |line_start: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no {line_start} in\n{m}"))
            .rsplit_once(' ')
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    assert_eq!(value("profstore_ingested_profiles_total "), 4.0);
    assert!(value("profstore_ingested_samples_total ") > 0.0);
    assert!(value("profstore_series ") >= 4.0);
    assert!(value("profstore_meta_entities{kind=\"stack\"} ") > 0.0);
    assert!(value("profstore_head_chunk_bytes ") > 0.0);
    assert!(value("profstore_errors_total{kind=\"bad_selector\"} ") >= 1.0);
    assert!(value("profstore_errors_total{kind=\"too_large\"} ") >= 1.0);
    assert!(m.contains("profstore_http_request_duration_seconds_bucket{le=\"0.0005\",handler=\"/api/v1/query_range\"}") || m.contains("handler=\"/api/v1/query_range\""));

    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn series_limit_is_429() {
    let srv = Server::start(&["--max-series", "1"]);
    let r = srv.write(r#"{job="api"}"#, &corpus_file("parca/cpu_labels.pb.gz"));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("series limit"));
    // All or nothing: no series were written.
    assert_eq!(
        srv.data(&format!(
            "/api/v1/series?{}",
            qs(&[("match[]", r#"{job="api"}"#)])
        )),
        json!([])
    );
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn sigterm_during_ingest_exits_0_and_a_restart_serves_every_acked_profile() {
    let mut srv = Server::start(&[]);
    let addr = srv.addr.clone();
    let body = corpus_file("parca/cpu_labels.pb.gz");
    let writer = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0.. {
            let target = format!(
                "/api/v1/write?{}",
                qs(&[("labels", &format!(r#"{{job="w",instance="{i}"}}"#))])
            );
            match try_http(&addr, "POST", &target, None, &body) {
                Ok(r) => {
                    // In-flight requests are finished, not cut off.
                    assert_eq!(r.status, 200, "{}", r.text());
                    acked.push(i);
                }
                // The listener is closed: the server is shutting down.
                Err(_) => return acked,
            }
        }
        unreachable!()
    });
    // Let the writer get going, then take the server down mid-stream.
    std::thread::sleep(Duration::from_millis(300));
    srv.restart(&[]);
    let acked = writer.join().unwrap();
    assert!(!acked.is_empty());
    let input = common::load(&common::testdata_dir().join("parca/cpu_labels.pb.gz"));
    assert_eq!(
        input.string_table[input.sample_type[0].r#type as usize],
        "samples"
    );
    let expected: i64 = common::totals(&input)[0].values().sum();
    // Every acknowledged profile is served after the restart, whole; the
    // unacknowledged one (if any) is whole or absent.
    let q = format!(
        "/api/v1/query_range?{}",
        qs(&[
            ("query", r#"{job="w",__name__=~".*:samples:count:.*"}"#),
            ("start", "0"),
            ("end", "4102444800"),
            ("step", "100000000"),
        ])
    );
    let result = srv.data(&q)["result"].as_array().unwrap().clone();
    let mut by_instance: BTreeMap<String, i64> = BTreeMap::new();
    for r in &result {
        let inst = r["metric"]["instance"].as_str().unwrap().to_string();
        for p in r["values"].as_array().unwrap() {
            *by_instance.entry(inst.clone()).or_insert(0) +=
                p[1].as_str().unwrap().parse::<i64>().unwrap();
        }
    }
    for i in &acked {
        assert_eq!(
            by_instance.get(&i.to_string()),
            Some(&expected),
            "instance {i}"
        );
    }
    assert!(by_instance.len() <= acked.len() + 1);
    for v in by_instance.values() {
        assert_eq!(*v, expected);
    }
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[test]
fn sigterm_right_after_start_exits_0() {
    // The handlers are installed before `listening on` is printed, so even
    // an immediate SIGTERM is a clean shutdown.
    for _ in 0..5 {
        let srv = Server::start(&[]);
        assert_eq!(srv.terminate(), Some(0));
    }
}

/// Sends `head` (the request line and headers, without the blank line) and
/// `body` on a new connection, then waits up to 20 s for the server's answer
/// and for it to close the connection (no `Connection: close` is sent).
/// Returns the raw answer and the time from the last byte sent.
fn send_and_wait(addr: &str, head: &str, body: &[u8]) -> (String, Duration) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let sent = std::time::Instant::now();
    let mut raw = Vec::new();
    // An error after the answer (a reset) ends the read as well.
    let _ = s.read_to_end(&mut raw);
    (String::from_utf8_lossy(&raw).into_owned(), sent.elapsed())
}

#[test]
fn a_slow_body_gets_408_within_the_body_timeout() {
    let srv = Server::start(&["--body-timeout", "1s"]);
    let body = corpus_file("parca/cpu_labels.pb.gz");
    // Headers promise the whole profile; a tenth of it arrives, then nothing.
    let target = format!("/api/v1/write?{}", qs(&[("labels", r#"{job="slow"}"#)]));
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (answer, took) = send_and_wait(&srv.addr, &head, &body[..body.len() / 10]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("limits.body_timeout"), "{answer}");
    assert!(answer.contains(r#""errorType":"timeout""#), "{answer}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A Pyroscope push that trickles in: a Connect error, same status.
    let head = format!(
        "POST /push.v1.PusherService/Push HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let addr = srv.addr.clone();
    let trickle = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let started = std::time::Instant::now();
        for b in body.chunks(100).take(50) {
            if s.write_all(b).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        (
            String::from_utf8_lossy(&raw).into_owned(),
            started.elapsed(),
        )
    });
    let (answer, took) = trickle.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"deadline_exceeded""#), "{answer}");
    assert!(answer.contains("limits.body_timeout"), "{answer}");
    assert!(took < Duration::from_secs(6), "{took:?}");

    // Nothing of either was stored, and a prompt body still goes through.
    assert_eq!(
        srv.data(&format!(
            "/api/v1/series?{}",
            qs(&[("match[]", r#"{job="slow"}"#)])
        )),
        json!([])
    );
    let r = srv.write(r#"{job="fast"}"#, &corpus_file("parca/cpu_labels.pb.gz"));
    assert_eq!(r.status, 200, "{}", r.text());
    let m = srv.get("/metrics").text();
    assert!(
        m.contains(r#"profstore_errors_total{kind="body_timeout"} 1"#),
        "{m}"
    );
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn slow_headers_are_cut_off_after_the_header_timeout() {
    let srv = Server::start(&["--header-timeout", "1s"]);
    // Half a request line, then silence.
    let (answer, took) = send_and_wait(&srv.addr, "GET /-/heal", b"");
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // An idle connection is closed after the same time.
    let (answer, took) = send_and_wait(&srv.addr, "", b"");
    assert!(answer.is_empty(), "{answer}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(srv.get("/-/healthy").status, 200);
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn queries_over_the_series_or_sample_limits_are_422() {
    let srv = Server::start(&["--max-query-series", "2", "--max-query-samples", "3"]);
    let cpu = corpus_file("parca/cpu_labels.pb.gz");
    for inst in ["a", "b", "c"] {
        let r = srv.write(&format!(r#"{{job="api",instance="{inst}"}}"#), &cpu);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let cpu_type = "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta";
    let wide = format!(r#"{cpu_type}{{job="api"}}"#);
    let range = [("start", "0"), ("end", "4102444800")];
    let refused = |target: String| {
        let r = srv.get(&target);
        assert_eq!(r.status, 422, "{target}: {}", r.text());
        let v = r.json();
        assert_eq!(v["errorType"], "execution", "{v}");
        v["error"].as_str().unwrap().to_string()
    };
    for target in [
        format!(
            "/api/v1/query_range?{}",
            qs(&[
                &[("query", wide.as_str()), ("step", "100000000")][..],
                &range
            ]
            .concat())
        ),
        format!(
            "/api/v1/profile/merge?{}",
            qs(&[&[("query", wide.as_str()), ("format", "svg")][..], &range].concat())
        ),
        format!("/api/v1/series?{}", qs(&[("match[]", r#"{job="api"}"#)])),
    ] {
        let e = refused(target);
        assert!(
            e.starts_with("query selects ")
                && e.contains(
                    "series, the limit is 2 (limits.max_query_series); narrow the selector"
                ),
            "{e}"
        );
    }
    // One series: within the series limit, over the sample limit.
    let one = format!(r#"{cpu_type}{{job="api",instance="a",grpcmethod=""}}"#);
    let merge_one = format!(
        "/api/v1/profile/merge?{}",
        qs(&[&[("query", one.as_str()), ("format", "top")][..], &range].concat())
    );
    let e = refused(merge_one.clone());
    assert!(
        e.starts_with("query result holds ")
            && e.contains("samples, the limit is 3 (limits.max_query_samples)"),
        "{e}"
    );
    let diff = format!(
        "/api/v1/profile/diff?{}",
        qs(&[
            ("query_a", one.as_str()),
            ("start_a", "0"),
            ("end_a", "4102444800"),
            ("query_b", one.as_str()),
            ("start_b", "0"),
            ("end_b", "4102444800"),
        ])
    );
    assert!(refused(diff).contains("limits.max_query_samples"));
    // Totals of that series are not bounded by samples.
    let qr = format!(
        "/api/v1/query_range?{}",
        qs(&[
            &[("query", one.as_str()), ("step", "100000000")][..],
            &range
        ]
        .concat())
    );
    assert_eq!(srv.data(&qr)["result"].as_array().unwrap().len(), 1);
    let m = srv.get("/metrics").text();
    assert!(
        m.contains(r#"profstore_errors_total{kind="query_limit"} 5"#),
        "{m}"
    );
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn busy_query_slots_answer_503_with_retry_after_and_ingest_goes_on() {
    // One slot and no queue: a query that finds the slot taken is refused.
    let srv = Server::start(&[
        "--max-concurrent-queries",
        "1",
        "--query-queue-timeout",
        "0s",
    ]);
    let alloc = corpus_file("parca/alloc_objects.pb.gz");
    for i in 0..4 {
        let r = srv.write(&format!(r#"{{job="heap",instance="{i}"}}"#), &alloc);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let target = format!(
        "/api/v1/profile/merge?{}",
        qs(&[
            (
                "query",
                r#"memory:alloc_objects:count:space:bytes{job="heap"}"#
            ),
            ("start", "0"),
            ("end", "4102444800"),
            ("format", "svg"),
        ])
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (addr, target, stop) = (srv.addr.clone(), target.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut statuses = BTreeMap::<u16, usize>::new();
                let mut refusal = None;
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && std::time::Instant::now() < deadline
                {
                    let r = http(&addr, "GET", &target, None, b"");
                    *statuses.entry(r.status).or_default() += 1;
                    if r.status == 503 && refusal.is_none() {
                        refusal = Some((r.header("retry-after").map(str::to_string), r.json()));
                        stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                (statuses, refusal)
            })
        })
        .collect();
    // Ingest does not take query slots: writes go through meanwhile.
    let cpu = corpus_file("parca/cpu_labels.pb.gz");
    let mut writes = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < deadline {
        let r = srv.write(&format!(r#"{{job="w",instance="{writes}"}}"#), &cpu);
        assert_eq!(r.status, 200, "{}", r.text());
        writes += 1;
    }
    let mut refusal = None;
    for reader in readers {
        let (statuses, r) = reader.join().unwrap();
        assert!(
            statuses.keys().all(|s| *s == 200 || *s == 503),
            "{statuses:?}"
        );
        refusal = refusal.or(r);
    }
    let (retry_after, body) = refusal.expect("no query was refused within 60 s");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["errorType"], "unavailable");
    let e = body["error"].as_str().unwrap();
    assert!(
        e.contains("all 1 query slots (limits.max_concurrent_queries)")
            && e.contains("limits.query_queue_timeout"),
        "{e}"
    );
    // The slot is free again once the queries are done.
    let r = srv.get(&target);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.terminate(), Some(0));
}

//! End to end: Pyroscope-compatible push over the real `profstore serve`
//! binary. The Connect push API (`/push.v1.PusherService/Push`, protobuf and
//! JSON, plain and gzipped), the legacy `/ingest` API (folded, lines, raw
//! pprof, multipart pprof), and a table of bad inputs that must store
//! nothing.

mod common;

use base64::Engine;
use common::daemon::*;
use profstore::pprof::{decode, DecodeLimits};
use profstore::proto::pprof::{Label, Profile};
use profstore::proto::pyroscope::push::v1::{PushRequest, RawProfileSeries, RawSample};
use profstore::proto::pyroscope::types::v1::LabelPair;
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const CPU_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta";
const ALL_TIME: [(&str, &str); 2] = [("start", "0"), ("end", "4102444800")];

/// Like `Server::call`, with extra request headers.
fn call_h(srv: &Server, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_http_with(&srv.addr, method, target, headers, body).unwrap()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// parca/fib.pb.gz (a Go CPU profile) with `endpoint="/slow"` on every
/// other sample and `endpoint="/fast"` on the others, timed 30 s ago.
fn endpoint_profile() -> Profile {
    let mut p = common::load(&common::testdata_dir().join("parca/fib.pb.gz"));
    let n = p.string_table.len() as i64;
    p.string_table
        .extend(["endpoint", "/slow", "/fast"].map(String::from));
    for (i, s) in p.sample.iter_mut().enumerate() {
        s.label.push(Label {
            key: n,
            str: if i % 2 == 0 { n + 1 } else { n + 2 },
            ..Default::default()
        });
    }
    p.time_nanos = now_ns() - 30_000_000_000;
    p
}

/// Only the samples of `p` with `endpoint="/slow"`.
fn slow_only(p: &Profile) -> Profile {
    let mut q = p.clone();
    let slow = p.string_table.iter().position(|s| s == "/slow").unwrap() as i64;
    q.sample.retain(|s| s.label.iter().any(|l| l.str == slow));
    q
}

fn sample_index(p: &Profile, ty: &str, unit: &str) -> usize {
    let s = |i: i64| p.string_table[i as usize].as_str();
    p.sample_type
        .iter()
        .position(|vt| s(vt.r#type) == ty && s(vt.unit) == unit)
        .unwrap()
}

fn merge(srv: &Server, query: &str) -> Profile {
    let mut q = vec![("query", query)];
    q.extend(ALL_TIME);
    let r = srv.get(&format!("/api/v1/profile/merge?{}", qs(&q)));
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    decode(&r.body, &DecodeLimits::default()).unwrap()
}

fn series(srv: &Server, selector: &str) -> Vec<Value> {
    srv.data(&format!("/api/v1/series?{}", qs(&[("match[]", selector)])))
        .as_array()
        .unwrap()
        .clone()
}

/// Per stack (frame names root first, `;`-joined): total of sample type 0.
fn stacks(p: &Profile) -> BTreeMap<String, i64> {
    let s = |i: i64| p.string_table[i as usize].clone();
    let fname: BTreeMap<u64, String> = p.function.iter().map(|f| (f.id, s(f.name))).collect();
    let loc: BTreeMap<u64, String> = p
        .location
        .iter()
        .map(|l| (l.id, fname[&l.line[0].function_id].clone()))
        .collect();
    let mut out = BTreeMap::new();
    for smp in &p.sample {
        let names: Vec<&str> = smp
            .location_id
            .iter()
            .rev()
            .map(|id| loc[id].as_str())
            .collect();
        *out.entry(names.join(";")).or_insert(0) += smp.value[0];
    }
    out
}

fn push_request(variant: &str, raw: Vec<u8>) -> PushRequest {
    let lp = |n: &str, v: &str| LabelPair {
        name: n.into(),
        value: v.into(),
    };
    PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![
                lp("__name__", "process_cpu"),
                lp("__session_id__", "abc123"),
                lp("service_name", "svc"),
                lp("variant", variant),
                lp("otel.scope.name", "x"),
            ],
            samples: vec![RawSample {
                raw_profile: raw,
                id: "0f0e".into(),
            }],
        }],
    }
}

fn push_json(req: &PushRequest, original_names: bool) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let series: Vec<Value> = req
        .series
        .iter()
        .map(|s| {
            let labels: Vec<Value> = s
                .labels
                .iter()
                .map(|l| json!({"name": l.name, "value": l.value}))
                .collect();
            let samples: Vec<Value> = s
                .samples
                .iter()
                .map(|x| {
                    let key = if original_names {
                        "raw_profile"
                    } else {
                        "rawProfile"
                    };
                    json!({(key): b64.encode(&x.raw_profile), "ID": x.id})
                })
                .collect();
            json!({"labels": labels, "samples": samples})
        })
        .collect();
    serde_json::to_vec(&json!({ "series": series })).unwrap()
}

fn connect_error(r: &Resp, status: u16, code: &str, message_has: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.text()
    );
    let v = r.json();
    assert_eq!(v["code"], code, "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains(message_has),
        "{m:?} should contain {message_has:?}"
    );
}

const PUSH: &str = "/push.v1.PusherService/Push";

#[test]
fn connect_push() {
    let srv = Server::start(&[
        "--max-body-bytes",
        "1000000",
        "--max-decompressed-bytes",
        "8000000",
    ]);
    let input = endpoint_profile();
    let raw = input.encode_to_vec();
    let cpu = sample_index(&input, "cpu", "nanoseconds");
    let want = &common::totals(&input)[cpu];
    let want_slow = &common::totals(&slow_only(&input))[cpu];
    assert!(!want_slow.is_empty() && want_slow.len() < want.len());

    // proto plain, proto gzip (body and inner pprof), JSON plain, JSON gzip.
    let proto = push_request("proto", raw.clone()).encode_to_vec();
    let r = call_h(
        &srv,
        "POST",
        PUSH,
        &[("Content-Type", "application/proto")],
        &proto,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/proto"));
    assert!(r.body.is_empty());

    let proto_gz = gzip(&push_request("proto_gz", gzip(&raw)).encode_to_vec());
    let r = call_h(
        &srv,
        "POST",
        PUSH,
        &[
            ("Content-Type", "application/proto"),
            ("Content-Encoding", "gzip"),
            ("Connect-Protocol-Version", "1"),
        ],
        &proto_gz,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty());

    let js = push_json(&push_request("json", raw.clone()), false);
    let r = call_h(
        &srv,
        "POST",
        PUSH,
        &[("Content-Type", "application/json")],
        &js,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({}));

    let js_gz = gzip(&push_json(&push_request("json_gz", raw.clone()), true));
    let r = call_h(
        &srv,
        "POST",
        PUSH,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Encoding", "gzip"),
        ],
        &js_gz,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({}));

    for variant in ["proto", "proto_gz", "json", "json_gz"] {
        // Series: the labels as pushed, `__session_id__` dropped, pprof
        // `endpoint` labels split the series.
        let ss = series(
            &srv,
            &format!(r#"{{service_name="svc",variant="{variant}"}}"#),
        );
        assert_eq!(
            ss.len(),
            4,
            "{variant}: 2 sample types x 2 endpoints: {ss:?}"
        );
        for s in &ss {
            assert_eq!(s["otel.scope.name"], "x", "{s}");
            assert!(s.get("__session_id__").is_none(), "{s}");
            assert!(s["__name__"].as_str().unwrap().starts_with("process_cpu:"));
            assert!(s["endpoint"] == "/slow" || s["endpoint"] == "/fast", "{s}");
        }
        let got = merge(&srv, &format!(r#"{CPU_TYPE}{{variant="{variant}"}}"#));
        assert_eq!(
            &common::totals(&got)[0],
            want,
            "{variant}: per-stack totals"
        );
        let got = merge(
            &srv,
            &format!(r#"{CPU_TYPE}{{variant="{variant}",endpoint="/slow"}}"#),
        );
        assert_eq!(
            &common::totals(&got)[0],
            want_slow,
            "{variant}: /slow totals"
        );
        // Quoted UTF-8 label names select.
        let got = merge(
            &srv,
            &format!(r#"{{__name__="{CPU_TYPE}","otel.scope.name"="x",variant="{variant}"}}"#),
        );
        assert_eq!(&common::totals(&got)[0], want, "{variant}: quoted selector");
    }
    assert_eq!(series(&srv, r#"{"otel.scope.name"="x"}"#).len(), 16);
    assert_eq!(
        series(&srv, r#"{"otel.scope.name"="x",endpoint="/slow"}"#).len(),
        8
    );
    // Instant query: one result per series.
    let q = srv.data(&format!(
        "/api/v1/query?{}",
        qs(&[("query", r#"{service_name="svc"}"#)])
    ));
    let result = q["result"].as_array().unwrap();
    assert_eq!(result.len(), 16, "{q}");
    let cpu_sum: i64 = result
        .iter()
        .filter(|r| r["metric"]["__name__"] == CPU_TYPE && r["metric"]["variant"] == "json")
        .map(|r| r["value"][1].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(cpu_sum, want.values().sum::<i64>());

    // --- bad inputs: the right Connect error, nothing stored ---
    let bad_raw = gzip(b"not a pprof");
    let mut half_bad = push_request("bad", raw.clone());
    half_bad.series[0].samples.push(RawSample {
        raw_profile: bad_raw.clone(),
        id: String::new(),
    });
    let bomb = gzip(&vec![0u8; 9_000_000]);
    assert!(bomb.len() < 1_000_000);
    let big = vec![b' '; 1_100_000];
    let ct_proto = ("Content-Type", "application/proto");
    let ct_json = ("Content-Type", "application/json");
    let gz = ("Content-Encoding", "gzip");
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("POST", vec![("Content-Type", "text/plain")], b"x".to_vec(), 415, "unknown", "content-type"),
        ("POST", vec![], b"x".to_vec(), 415, "unknown", "content-type"),
        ("POST", vec![ct_json], b"{\"series\":[".to_vec(), 400, "invalid_argument", "JSON"),
        (
            "POST",
            vec![ct_json],
            br#"{"series":[{"labels":[{"name":"service_name","value":"bad"}],"samples":[{"rawProfile":"@@not base64"}]}]}"#.to_vec(),
            400,
            "invalid_argument",
            "base64",
        ),
        ("POST", vec![ct_proto], vec![0x0a, 0xff, 0xff, 0xff], 400, "invalid_argument", "protobuf"),
        (
            "POST",
            vec![ct_proto],
            half_bad.encode_to_vec(),
            400,
            "invalid_argument",
            "series 0 sample 1",
        ),
        ("POST", vec![ct_json], push_json(&half_bad, false), 400, "invalid_argument", "sample 1"),
        ("POST", vec![ct_proto, gz], b"not gzip".to_vec(), 400, "invalid_argument", "gzip"),
        ("POST", vec![ct_proto, ("Content-Encoding", "br")], proto.clone(), 501, "unimplemented", "br"),
        ("POST", vec![ct_proto, gz], bomb, 429, "resource_exhausted", "limit"),
        ("POST", vec![ct_proto], big, 429, "resource_exhausted", "too large"),
        ("GET", vec![], vec![], 405, "unknown", "POST"),
        ("PUT", vec![ct_proto], proto.clone(), 405, "unknown", "POST"),
    ];
    for (method, headers, body, status, code, msg) in cases {
        let r = call_h(&srv, method, PUSH, &headers, &body);
        connect_error(&r, status, code, msg);
        if status == 405 {
            assert_eq!(r.header("allow"), Some("POST"));
        }
    }
    // Bad labels: __name__ with a colon, a name given twice, bad __delta__.
    for labels in [
        vec![("__name__", "a:b"), ("service_name", "bad")],
        vec![("service_name", "bad"), ("service_name", "bad2")],
        vec![("__delta__", "sometimes"), ("service_name", "bad")],
    ] {
        let mut req = push_request("bad", raw.clone());
        req.series[0].labels = labels
            .iter()
            .map(|(n, v)| LabelPair {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect();
        let r = call_h(&srv, "POST", PUSH, &[ct_proto], &req.encode_to_vec());
        connect_error(&r, 400, "invalid_argument", "series 0");
    }
    assert!(series(&srv, r#"{variant="bad"}"#).is_empty());
    assert!(series(&srv, r#"{service_name=~"bad.*"}"#).is_empty());
    assert_eq!(series(&srv, r#"{service_name="svc"}"#).len(), 16);
}

fn multipart(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in parts {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

fn ingest_target(pairs: &[(&str, &str)]) -> String {
    format!("/ingest?{}", qs(pairs))
}

fn api_error(r: &Resp, status: u16, message_has: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "error", "{v}");
    let m = v["error"].as_str().unwrap();
    assert!(
        m.contains(message_has),
        "{m:?} should contain {message_has:?}"
    );
}

#[test]
fn legacy_ingest() {
    let srv = Server::start(&["--max-body-bytes", "1000000"]);
    let from = (now_ns() / 1_000_000_000 - 60).to_string();
    let until = (now_ns() / 1_000_000_000 - 50).to_string();

    // folded
    let r = srv.call(
        "POST",
        &ingest_target(&[
            ("name", "legacyapp.cpu{env=prod,k8s.pod=p%2C1}"),
            ("from", &from),
            ("until", &until),
            ("format", "folded"),
            ("sampleRate", "100"),
            ("spyName", "gospy"),
            ("units", "samples"),
            ("aggregationType", "sum"),
        ]),
        Some("text/plain"),
        b"main;work;GC worker 3\r\nmain;work;b 2\n\nmain 1\nmain;work;b 4   \n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty());
    let folded_type = "process_cpu:samples:count:cpu:nanoseconds:delta";
    let ss = series(&srv, r#"{service_name="legacyapp"}"#);
    assert_eq!(ss.len(), 1, "{ss:?}");
    assert_eq!(ss[0]["__name__"], folded_type);
    assert_eq!(ss[0]["env"], "prod");
    assert_eq!(ss[0]["k8s.pod"], "p,1");
    let p = merge(&srv, &format!(r#"{folded_type}{{"k8s.pod"="p,1"}}"#));
    assert_eq!(p.period, 10_000_000);
    assert_eq!(p.duration_nanos, 10_000_000_000);
    assert_eq!(p.time_nanos / 1_000_000_000, from.parse::<i64>().unwrap());
    let want: BTreeMap<String, i64> = [("main;work;GC worker", 3), ("main;work;b", 6), ("main", 1)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(stacks(&p), want);

    // lines, no kind suffix on a dotted app name → cpu; default times.
    let r = srv.call(
        "POST",
        &ingest_target(&[
            ("name", "lines.app{env=dev}"),
            ("format", "lines"),
            ("sampleRate", "50"),
        ]),
        None,
        b"a;b\na;b\r\nc d\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ss = series(&srv, r#"{service_name="lines.app"}"#);
    assert_eq!(ss.len(), 1, "{ss:?}");
    assert_eq!(ss[0]["__name__"], folded_type);
    let p = merge(
        &srv,
        &format!(r#"{folded_type}{{service_name="lines.app"}}"#),
    );
    assert_eq!(p.period, 20_000_000);
    let want: BTreeMap<String, i64> = [("a;b", 2), ("c d", 1)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(stacks(&p), want);

    // A kind from the table: wall.
    let r = srv.call(
        "POST",
        &ingest_target(&[("name", "wallapp.wall"), ("format", "folded")]),
        None,
        b"x;y 5\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ss = series(&srv, r#"{service_name="wallapp"}"#);
    assert_eq!(
        ss[0]["__name__"],
        "wall:samples:count:wall:nanoseconds:delta"
    );

    // Raw pprof body (gzipped), kind cpu → process_cpu for every sample type.
    let fib = corpus_file("parca/fib.pb.gz");
    let fib_in = decode(&fib, &DecodeLimits::default()).unwrap();
    let r = srv.call(
        "POST",
        &ingest_target(&[
            ("name", "rawapp.cpu{env=x}"),
            ("format", "pprof"),
            ("from", &from),
            ("until", &until),
        ]),
        Some("application/octet-stream"),
        &fib,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ss = series(&srv, r#"{service_name="rawapp",env="x"}"#);
    assert_eq!(ss.len(), 2, "{ss:?}");
    let got = merge(&srv, &format!(r#"{CPU_TYPE}{{service_name="rawapp"}}"#));
    let cpu = sample_index(&fib_in, "cpu", "nanoseconds");
    assert_eq!(common::totals(&got)[0], common::totals(&fib_in)[cpu]);

    // Raw pprof without format (detected by its gzip magic).
    let r = srv.call(
        "POST",
        &ingest_target(&[("name", "detected.cpu")]),
        None,
        &fib,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(series(&srv, r#"{service_name="detected"}"#).len(), 2);

    // Multipart pprof, with the parts Pyroscope's Go SDK adds.
    let heap = corpus_file("parca/alloc_objects.pb.gz");
    let heap_in = decode(&heap, &DecodeLimits::default()).unwrap();
    let boundary = "----profstore-test-boundary-7d1e";
    let body = multipart(
        boundary,
        &[
            ("profile", heap.as_slice()),
            ("previous_profile", heap.as_slice()),
            (
                "sample_type_config",
                br#"{"alloc_objects":{"units":"objects","cumulative":true}}"#.as_slice(),
            ),
        ],
    );
    let ct = format!("multipart/form-data; boundary={boundary}");
    let r = srv.call(
        "POST",
        &ingest_target(&[("name", "mpapp.alloc_objects{env=mp}"), ("format", "pprof")]),
        Some(ct.as_str()),
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ss = series(&srv, r#"{service_name="mpapp"}"#);
    assert_eq!(ss.len(), heap_in.sample_type.len(), "{ss:?}");
    let alloc_type = ss
        .iter()
        .map(|s| s["__name__"].as_str().unwrap().to_string())
        .find(|t| t.starts_with("memory:alloc_objects:count:"))
        .unwrap();
    let got = merge(&srv, &format!(r#"{alloc_type}{{service_name="mpapp"}}"#));
    let idx = sample_index(&heap_in, "alloc_objects", "count");
    assert_eq!(common::totals(&got)[0], common::totals(&heap_in)[idx]);

    // --- bad inputs: the daemon's errors, nothing stored ---
    let ingest = |pairs: &[(&str, &str)], ct: Option<&str>, body: &[u8]| {
        srv.call("POST", &ingest_target(pairs), ct, body)
    };
    api_error(
        &ingest(
            &[("name", "bad.cpu"), ("format", "folded")],
            None,
            b"a;b 1\na;b x\n",
        ),
        400,
        "line 2",
    );
    api_error(
        &ingest(
            &[("name", "bad.cpu"), ("format", "folded")],
            None,
            b"a;b -1\n",
        ),
        400,
        "negative",
    );
    api_error(
        &ingest(&[("name", "bad{a=1"), ("format", "folded")], None, b"a 1"),
        400,
        "invalid name",
    );
    api_error(
        &ingest(&[("name", "bad{__x=1}")], None, b"a 1"),
        400,
        "reserved",
    );
    api_error(&ingest(&[("format", "folded")], None, b"a 1"), 400, "name");
    api_error(
        &ingest(&[("name", "bad"), ("format", "jfr")], None, b"a 1"),
        400,
        "unsupported format",
    );
    api_error(
        &ingest(&[("name", "bad"), ("format", "pprof")], None, b"garbage"),
        400,
        "profile",
    );
    api_error(
        &ingest(&[("name", "bad"), ("from", "yesterday")], None, b"a 1"),
        400,
        "from",
    );
    api_error(
        &ingest(
            &[("name", "bad"), ("format", "pprof")],
            Some(ct.as_str()),
            &multipart(boundary, &[("other", b"x".as_slice())]),
        ),
        400,
        "no \"profile\" part",
    );
    api_error(
        &ingest(&[("name", "bad")], None, &vec![b'a'; 1_100_000]),
        413,
        "too large",
    );
    let r = srv.call("GET", &ingest_target(&[("name", "bad")]), None, b"");
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(series(&srv, r#"{service_name=~"bad.*"}"#).is_empty());
}

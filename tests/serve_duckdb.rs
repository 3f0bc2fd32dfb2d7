//! End to end for `profstore serve --storage duckdb`: the real binary on
//! the DuckDB backend, written and queried over HTTP, then restarted on the
//! same data directory (SIGTERM, so the shutdown checkpoint runs) and
//! queried again.

#![cfg(feature = "duckdb")]

mod common;

use common::daemon::*;
use profstore::pprof::{decode, DecodeLimits};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const DUCKDB: &[&str] = &["--storage", "duckdb"];
const CPU: &str = "parca/cpu_labels.pb.gz";
const ALLOC: &str = "parca/alloc_objects.pb.gz";
/// From the Unix epoch to 2100: every corpus profile.
const ALL: [(&str, &str); 2] = [("start", "0"), ("end", "4102444800")];

/// The per-stack totals of the `cpu:nanoseconds` sample type of the CPU
/// input.
fn cpu_input() -> BTreeMap<u128, i64> {
    let p = common::load(&common::testdata_dir().join(CPU));
    let s = |i: i64| p.string_table[i as usize].as_str();
    let idx = p
        .sample_type
        .iter()
        .position(|vt| s(vt.r#type) == "cpu" && s(vt.unit) == "nanoseconds")
        .unwrap();
    common::totals(&p).swap_remove(idx)
}

/// Downloads the pprof merge of `selector` over all time.
fn merge(srv: &Server, selector: &str, format: &str) -> Resp {
    let mut q = vec![("query", selector), ("format", format)];
    q.extend(ALL);
    srv.get(&format!("/api/v1/profile/merge?{}", qs(&q)))
}

fn merged_totals(srv: &Server, selector: &str) -> BTreeMap<u128, i64> {
    let r = merge(srv, selector, "pprof");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let p = decode(&r.body, &DecodeLimits::default()).unwrap();
    common::totals(&p).swap_remove(0)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Everything the first daemon was given, checked through the read routes;
/// `t_cpu` is the CPU profile's time (ms).
fn check_contents(srv: &Server, t_cpu: i64) {
    let cpu = cpu_input();
    let cpu_total: i64 = cpu.values().sum();
    assert!(cpu_total > 0);
    let types: Vec<String> = srv
        .data("/api/v1/profile_types")
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let cpu_type = types
        .iter()
        .find(|t| t.contains(":cpu:nanoseconds:cpu:nanoseconds"))
        .unwrap_or_else(|| panic!("no CPU type in {types:?}"));
    assert!(
        types.iter().any(|t| t.contains(":alloc_objects:count:")),
        "{types:?}"
    );

    // Labels, values, series, profile types.
    let labels = strings(&srv.data("/api/v1/labels"));
    for want in ["__name__", "instance", "job", "service_name"] {
        assert!(labels.contains(&want.to_string()), "{labels:?}");
    }
    assert_eq!(srv.data("/api/v1/label/job/values"), json!(["api"]));
    let values = srv.data(&format!(
        "/api/v1/label/instance/values?{}",
        qs(&[("match[]", &format!("{cpu_type}{{job=\"api\"}}"))])
    ));
    assert_eq!(values, json!(["a", "b"]));
    let series = srv.data(&format!(
        "/api/v1/series?{}",
        qs(&[("match[]", r#"{job="api"}"#)])
    ));
    let series = series.as_array().unwrap();
    // cpu_labels has pprof labels: several series per instance and type.
    assert!(series.len() >= 5, "{series:?}");
    assert!(series.iter().all(|s| s["job"] == "api"));

    // query_range: every sample type of every write adds up to the input.
    let (f_cpu, f_alloc) = (file_total(CPU), file_total(ALLOC));
    assert_eq!(
        totals_by_instance(srv, r#"{job="api"}"#),
        BTreeMap::from([("a".to_string(), f_cpu + f_alloc), ("b".to_string(), f_cpu),])
    );
    assert_eq!(
        totals_by_instance(srv, &format!("{cpu_type}{{job=\"api\"}}"))
            .values()
            .sum::<i64>(),
        2 * cpu_total
    );

    // Merge: per stack, twice the input (two instances).
    let doubled: BTreeMap<u128, i64> = cpu.iter().map(|(k, v)| (*k, 2 * v)).collect();
    assert_eq!(
        merged_totals(srv, &format!("{cpu_type}{{job=\"api\"}}")),
        doubled
    );
    // The other formats of the same merge.
    let sel = format!("{cpu_type}{{job=\"api\"}}");
    let top = merge(srv, &sel, "top");
    assert_eq!(top.status, 200, "{}", top.text());
    assert_eq!(top.json()["data"]["total"], 2 * cpu_total);
    let fg = merge(srv, &sel, "flamegraph");
    assert_eq!(fg.json()["data"]["root"]["total"], 2 * cpu_total);
    let folded: i64 = merge(srv, &sel, "folded")
        .text()
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<i64>().unwrap())
        .sum();
    assert_eq!(folded, 2 * cpu_total);
    let svg = merge(srv, &sel, "svg");
    assert_eq!(svg.status, 200);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));

    // Diff of the two instances: the same profile, so every stack cancels.
    let a = format!("{cpu_type}{{instance=\"a\"}}");
    let b = format!("{cpu_type}{{instance=\"b\"}}");
    let diff = srv.data(&format!(
        "/api/v1/profile/diff?{}",
        qs(&[
            ("query_a", a.as_str()),
            ("start_a", "0"),
            ("end_a", "4102444800"),
            ("query_b", b.as_str()),
            ("start_b", "0"),
            ("end_b", "4102444800"),
            ("format", "top"),
        ])
    ));
    assert_eq!(diff["total"], cpu_total);
    assert_eq!(diff["base_total"], cpu_total);

    // The single profile at the CPU profile's time, and the instant query
    // there.
    let t_cpu = format!("{}", t_cpu as f64 / 1000.0);
    let single = srv.get(&format!(
        "/api/v1/profile?{}",
        qs(&[("query", a.as_str()), ("time", &t_cpu)])
    ));
    assert_eq!(single.status, 200, "{}", single.text());
    let p = decode(&single.body, &DecodeLimits::default()).unwrap();
    assert_eq!(common::totals(&p)[0], cpu);
    let instant = srv.data(&format!(
        "/api/v1/query?{}",
        qs(&[("query", a.as_str()), ("time", &t_cpu)])
    ));
    let instant: i64 = instant["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"][1].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(instant, cpu_total);

    // The Pyroscope write.
    let series = srv.data(&format!(
        "/api/v1/series?{}",
        qs(&[("match[]", r#"{service_name="wallapp"}"#)])
    ));
    assert_eq!(series.as_array().unwrap().len(), 1, "{series}");
    assert_eq!(
        merged_totals(srv, r#"{service_name="wallapp"}"#)
            .values()
            .sum::<i64>(),
        5
    );
}

#[test]
fn duckdb_daemon_end_to_end_and_restart() {
    let mut srv = Server::start(DUCKDB);
    assert_eq!(srv.get("/-/ready").status, 200);

    let cpu = corpus_file(CPU);
    let alloc = corpus_file(ALLOC);
    let mut t_cpu = 0;
    for (labels, body) in [
        (r#"{job="api",instance="a"}"#, &cpu),
        (r#"{job="api",instance="b"}"#, &cpu),
        (r#"{job="api",instance="a"}"#, &alloc),
    ] {
        let w = srv.write(labels, body);
        assert_eq!(w.status, 200, "{}", w.text());
        let w = w.json();
        assert!(w["samples"].as_u64().unwrap() > 0, "{w}");
        if std::ptr::eq(body, &cpu) {
            t_cpu = w["timestamp_ms"].as_i64().unwrap();
        }
    }
    let r = srv.call(
        "POST",
        &format!(
            "/ingest?{}",
            qs(&[("name", "wallapp.wall"), ("format", "folded")])
        ),
        None,
        b"x;y 5\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The same profile again is out of order for its series: rejected as
    // by the time-series backend.
    let w = srv.write(r#"{job="api",instance="b"}"#, &cpu);
    assert_eq!(w.status, 400, "{}", w.text());

    check_contents(&srv, t_cpu);

    // /metrics: the daemon's metrics and DuckDB's, none of the store's.
    let m = srv.get("/metrics");
    assert_eq!(m.status, 200);
    let m = m.text();
    for want in [
        "profstore_duckdb_memory_bytes ",
        "profstore_series ",
        "profstore_ingested_profiles_total 4",
        "profstore_http_requests_total{",
    ] {
        assert!(m.contains(want), "no {want:?} in\n{m}");
    }
    assert!(!m.contains("profstore_head_chunk_bytes"), "{m}");
    let series: i64 = m
        .lines()
        .find_map(|l| l.strip_prefix("profstore_series "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(series >= 6, "{series}");

    assert!(srv.dir.path().join("data/profiles.duckdb").is_file());
    // SIGTERM: a clean exit (checkpoint), then the same directory again.
    srv.restart(DUCKDB);
    check_contents(&srv, t_cpu);
    // Writes still work, and still reject what is out of order.
    let w = srv.write(r#"{job="api",instance="a"}"#, &cpu);
    assert_eq!(w.status, 400, "{}", w.text());
    let w = srv.write(r#"{job="api",instance="c"}"#, &cpu);
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(
        totals_by_instance(&srv, r#"{job="api"}"#)["c"],
        file_total(CPU)
    );
    assert_eq!(srv.terminate(), Some(0));
}

/// Serves `body` as the answer to every request on 127.0.0.1:0 (one
/// thread, `Connection: close`) until the test process ends; its address.
fn serve_forever(body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    addr
}

#[test]
fn duckdb_daemon_scrapes() {
    let addr = serve_forever(corpus_file(ALLOC));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("profstore.yaml");
    let mut text = format!(
        "storage: duckdb\n\
         scrape_configs:\n\
         \x20 - job_name: scraped\n\
         \x20   scrape_interval: 1s\n\
         \x20   static_configs:\n\
         \x20     - targets: ['{addr}']\n\
         \x20   profiling_config:\n\
         \x20     pprof_config:\n\
         \x20       memory: {{enabled: true, path: /debug/pprof/allocs}}\n"
    );
    for off in ["block", "goroutine", "mutex", "process_cpu"] {
        text.push_str(&format!("        {off}: {{enabled: false}}\n"));
    }
    std::fs::write(&config, text).unwrap();
    // `storage` from the file.
    let srv = Server::start(&["--config", config.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let total = loop {
        let got = totals_by_instance(&srv, r#"{job="scraped"}"#);
        if let Some(&t) = got.get(&addr) {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scrape stored within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // Every scrape stores the whole served profile.
    let one = file_total(ALLOC);
    assert!(total > 0 && total % one == 0, "{total} vs {one} per scrape");
    let targets = srv.data("/api/v1/targets");
    assert_eq!(targets["activeTargets"][0]["health"], "up", "{targets}");
    let m = srv.get("/metrics").text();
    assert!(m.contains("profstore_duckdb_memory_bytes "), "{m}");
    assert_eq!(srv.terminate(), Some(0));
}

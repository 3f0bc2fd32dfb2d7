//! Pull-based scraping end to end: the real `profstore serve` binary scrapes
//! HTTP servers run inside the test (std `TcpListener`s on 127.0.0.1:0)
//! that serve a testdata profile and a CPU profile recorded at test time by
//! a real profiler (pprof-rs sampling a busy loop in this process).
//!
//! - profiles arrive under the right series (job, instance, static labels,
//!   profile type) and round-trip (the totals the query API gives equal the
//!   served profile's), and survive a restart;
//! - a target that times out, answers 500, answers garbage, sends a body over
//!   the limit or refuses connections is reported in `/api/v1/targets` and
//!   the metrics while the others keep working, and SIGTERM still exits 0;
//! - bad configs are rejected at start naming the file and the line;
//! - reloads (SIGHUP and `POST /-/reload`): a bad file keeps the running
//!   configuration and says why; a changed file adds and removes targets
//!   while unchanged targets keep their loops.

mod common;

use common::daemon::*;
use common::{load, testdata_dir, totals};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a test target answers.
enum Reply {
    /// 200 with the body and its Content-Length.
    Ok(Vec<u8>),
    /// A status and a text body.
    Status(u16, &'static str),
    /// 200 after a pause.
    Slow(Duration, Vec<u8>),
    /// 200 with a body of this many bytes and no Content-Length (ends at
    /// close), so only the reader's limit can stop it.
    Unbounded(usize),
}

type Handler = Arc<dyn Fn(&str, &str) -> Reply + Send + Sync>;

/// A scrape target: an HTTP/1.1 server on 127.0.0.1:0, one thread per
/// connection, `Connection: close`. Runs until the test process ends.
struct Target {
    addr: String,
    /// Requests per path.
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Target {
    fn start(handler: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hits: Arc<Mutex<BTreeMap<String, usize>>> = Default::default();
        let handler: Handler = Arc::new(handler);
        let h = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (handler, hits) = (handler.clone(), h.clone());
                std::thread::spawn(move || answer(stream, &handler, &hits));
            }
        });
        Target { addr, hits }
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn answer(mut s: TcpStream, handler: &Handler, hits: &Mutex<BTreeMap<String, usize>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    *hits.lock().unwrap().entry(path.to_string()).or_insert(0) += 1;
    let (status, body, length) = match handler(path, query) {
        Reply::Ok(b) => (200, b, true),
        Reply::Status(code, text) => (code, text.as_bytes().to_vec(), true),
        Reply::Slow(pause, b) => {
            std::thread::sleep(pause);
            (200, b, true)
        }
        Reply::Unbounded(n) => (200, vec![b'x'; n], false),
    };
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n"
    );
    if length {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    // The scraper may have given up (timeout, limit): ignore write errors.
    let _ = s.write_all(out.as_bytes());
    let _ = s.write_all(&body);
}

/// Polls `f` every 50 ms until it gives `Some`, for at most `secs`.
fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn active_targets(srv: &Server) -> Vec<Value> {
    let r = srv.get("/api/v1/targets");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["droppedTargets"], serde_json::json!([]));
    v["data"]["activeTargets"].as_array().unwrap().clone()
}

/// The active target whose scrape URL contains `needle`.
fn target_with(srv: &Server, needle: &str) -> Option<Value> {
    active_targets(srv)
        .into_iter()
        .find(|t| t["scrapeUrl"].as_str().unwrap().contains(needle))
}

fn metrics(srv: &Server) -> String {
    srv.get("/metrics").text()
}

/// The value of the metric line that starts with `name{` and contains every
/// `parts` (label pairs such as `job="app"`).
fn metric_value(text: &str, name: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Per sample type of `p`: (`name:type:unit:period_type:period_unit[:delta]`,
/// total of all its values).
fn expected_types(
    p: &profstore::proto::pprof::Profile,
    name: &str,
    delta: bool,
) -> Vec<(String, i64)> {
    let s = |i: i64| p.string_table[i as usize].clone();
    let period = p.period_type.unwrap_or_default();
    let t = totals(p);
    p.sample_type
        .iter()
        .enumerate()
        .map(|(i, vt)| {
            let mut id = format!(
                "{name}:{}:{}:{}:{}",
                s(vt.r#type),
                s(vt.unit),
                s(period.r#type),
                s(period.unit)
            );
            if delta {
                id.push_str(":delta");
            }
            (id, t[i].values().sum())
        })
        .collect()
}

/// Per series matching `selector`, its labels and the total of its latest
/// profile (an instant query at now).
fn latest(srv: &Server, selector: &str) -> Vec<(BTreeMap<String, String>, i64)> {
    let data = srv.data(&format!("/api/v1/query?{}", qs(&[("query", selector)])));
    data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (labels, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// A CPU profile of a busy loop in this process, recorded by pprof-rs, as
/// raw pprof protobuf.
fn record_cpu_profile() -> Vec<u8> {
    use pprof::protos::Message;
    for _ in 0..5 {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(997)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .unwrap();
        let start = Instant::now();
        let mut x: u64 = 1;
        while start.elapsed() < Duration::from_millis(400) {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
        }
        std::hint::black_box(x);
        let profile = guard.report().build().unwrap().pprof().unwrap();
        if !profile.sample.is_empty() {
            return profile.encode_to_vec();
        }
    }
    panic!("pprof-rs recorded no samples in five tries");
}

fn write_config(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// `pprof_config` that enables only `enabled` (`name: path` pairs, with
/// `delta` for process_cpu) and disables the other defaults.
fn pprof_config(enabled: &[(&str, &str)]) -> String {
    let mut s = String::from("    profiling_config:\n      pprof_config:\n");
    for d in ["memory", "block", "goroutine", "mutex", "process_cpu"] {
        if !enabled.iter().any(|(n, _)| *n == d) {
            s.push_str(&format!("        {d}: {{enabled: false}}\n"));
        }
    }
    for (n, p) in enabled {
        s.push_str(&format!("        {n}: {{enabled: true, path: {p}}}\n"));
    }
    s
}

#[test]
fn scraped_profiles_arrive_under_their_series_and_round_trip() {
    let heap_file = "parca/alloc_objects.pb.gz";
    let heap = corpus_file(heap_file);
    let cpu = record_cpu_profile();
    let cpu_profile =
        profstore::pprof::decode(&cpu, &Default::default()).expect("the recorded profile decodes");
    let target = {
        let (heap, cpu) = (heap.clone(), cpu.clone());
        Target::start(move |path, query| match path {
            "/debug/pprof/allocs" => Reply::Ok(heap.clone()),
            // `seconds` is the timeout (2 s) minus 1 s.
            "/debug/pprof/profile" if query == "seconds=1" => Reply::Ok(cpu.clone()),
            "/debug/pprof/profile" => Reply::Status(400, "want seconds=1"),
            _ => Reply::Status(404, "not found"),
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "scrape_configs:\n\
         \x20 - job_name: app\n\
         \x20   scrape_interval: 1s\n\
         \x20   static_configs:\n\
         \x20     - targets: ['{addr}']\n\
         \x20       labels: {{env: test}}\n\
         {memory}\
         \x20 - job_name: cpu\n\
         \x20   scrape_interval: 2s\n\
         \x20   static_configs:\n\
         \x20     - targets: ['{addr}']\n\
         \x20       labels: {{team: perf}}\n\
         {cpu}",
        addr = target.addr,
        memory = pprof_config(&[("memory", "/debug/pprof/allocs")]),
        cpu = pprof_config(&[("process_cpu", "/debug/pprof/profile")]),
    );
    let path = write_config(dir.path(), "profstore.yaml", &config);
    let mut srv = Server::start(&["--config", &path]);

    // Two entries (one per job × profile), both up after their scrapes.
    wait_for("both targets up", 20, || {
        let t = active_targets(&srv);
        (t.len() == 2 && t.iter().all(|t| t["health"] == "up")).then_some(())
    });
    let mem = target_with(&srv, "/debug/pprof/allocs").unwrap();
    assert_eq!(mem["scrapePool"], "app");
    assert_eq!(
        mem["scrapeUrl"],
        format!("http://{}/debug/pprof/allocs", target.addr)
    );
    assert_eq!(mem["labels"]["job"], "app");
    assert_eq!(mem["labels"]["instance"], target.addr.as_str());
    assert_eq!(mem["labels"]["env"], "test");
    assert_eq!(mem["discoveredLabels"]["__address__"], target.addr.as_str());
    assert_eq!(mem["discoveredLabels"]["__name__"], "memory");
    assert_eq!(mem["lastError"], "");
    assert!(mem["lastScrape"].as_str().unwrap().ends_with('Z'));
    assert!(mem["lastScrapeDuration"].as_f64().unwrap() > 0.0);
    let cpu_target = target_with(&srv, "/debug/pprof/profile").unwrap();
    assert_eq!(
        cpu_target["scrapeUrl"],
        format!("http://{}/debug/pprof/profile?seconds=1", target.addr)
    );

    // Wait for at least two profiles of each, then check every profile type.
    let heap_profile = load(&testdata_dir().join(heap_file));
    let cases = [
        (
            "app",
            "env",
            "test",
            expected_types(&heap_profile, "memory", false),
        ),
        (
            "cpu",
            "team",
            "perf",
            expected_types(&cpu_profile, "process_cpu", true),
        ),
    ];
    for (job, _, _, types) in &cases {
        let (id, total) = &types[0];
        let sel = format!("{id}{{job=\"{job}\"}}");
        wait_for(&format!("two scrapes of {sel}"), 20, || {
            let sum: i64 = totals_by_instance(&srv, &sel).values().sum();
            (*total != 0 && sum >= 2 * total).then_some(())
        });
    }
    for (job, label, value, types) in &cases {
        let series = srv.data(&format!(
            "/api/v1/series?{}",
            qs(&[("match[]", &format!("{{job=\"{job}\"}}"))])
        ));
        let mut names: Vec<String> = series
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert_eq!(s["instance"], target.addr.as_str(), "{s}");
                assert_eq!(s[*label], *value, "{s}");
                s["__name__"].as_str().unwrap().to_string()
            })
            .collect();
        names.sort();
        names.dedup();
        let mut want: Vec<String> = types.iter().map(|(id, _)| id.clone()).collect();
        want.sort();
        assert_eq!(names, want, "profile types of job {job}");
        for (id, total) in types {
            let sel = format!("{id}{{job=\"{job}\",instance=\"{}\"}}", target.addr);
            // The latest profile's total equals the served profile's.
            let got: i64 = latest(&srv, &sel).iter().map(|(_, v)| v).sum();
            assert_eq!(got, *total, "{sel}: latest profile");
            // Every scrape is a whole copy of the served profile.
            let all: i64 = totals_by_instance(&srv, &sel).values().sum();
            assert!(*total == 0 || all % total == 0, "{sel}: {all} / {total}");
        }
    }
    assert!(target.hits("/debug/pprof/allocs") >= 2);

    // The metrics say up, with bytes and durations.
    let m = metrics(&srv);
    let labels = ["job=\"app\"", "profile=\"memory\""];
    assert_eq!(
        metric_value(&m, "profstore_scrape_up", &labels),
        Some(1.0),
        "{m}"
    );
    assert!(
        metric_value(&m, "profstore_scrape_bytes_total", &labels).unwrap() >= heap.len() as f64
    );
    assert!(metric_value(&m, "profstore_scrape_duration_seconds", &labels).unwrap() > 0.0);
    assert!(m.contains("profstore_scrape_targets 2"), "{m}");

    // Scraped profiles are in the write-ahead log: a restart without the
    // config (no more scrapes) serves them, still whole copies.
    let (id, total) = &cases[0].3[0];
    let sel = format!("{id}{{job=\"app\"}}");
    srv.restart(&[]);
    let after: i64 = totals_by_instance(&srv, &sel).values().sum();
    assert!(
        after >= 2 * total && after % total == 0,
        "{after} / {total}"
    );
    assert!(active_targets(&srv).is_empty());
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn failing_targets_are_reported_and_the_others_keep_working() {
    let heap = corpus_file("parca/alloc_objects.pb.gz");
    let target = {
        let heap = heap.clone();
        Target::start(move |path, _| match path {
            "/ok" => Reply::Ok(heap.clone()),
            "/slow" => Reply::Slow(Duration::from_secs(3), heap.clone()),
            "/error" => Reply::Status(500, "something broke"),
            "/garbage" => Reply::Ok(b"this is not a profile".to_vec()),
            "/big" => Reply::Unbounded(600 << 10),
            _ => Reply::Status(404, "not found"),
        })
    };
    // A port nobody listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut profiles = pprof_config(&[("memory", "/ok")]);
    for name in ["slow", "error", "garbage", "big"] {
        profiles.push_str(&format!("        {name}: {{path: /{name}}}\n"));
    }
    let config = format!(
        "scrape_configs:\n\
         \x20 - job_name: mixed\n\
         \x20   scrape_interval: 1s\n\
         \x20   scrape_timeout: 500ms\n\
         \x20   body_size_limit: 512KiB\n\
         \x20   static_configs:\n\
         \x20     - targets: ['{addr}']\n\
         {profiles}\
         \x20 - job_name: gone\n\
         \x20   scrape_interval: 1s\n\
         \x20   static_configs:\n\
         \x20     - targets: ['{closed}']\n\
         {memory}",
        addr = target.addr,
        memory = pprof_config(&[("memory", "/ok")]),
    );
    let path = write_config(dir.path(), "profstore.yaml", &config);
    let srv = Server::start(&["--config", &path]);

    let cases = [
        ("/slow", "slow", "timeout", "timed out"),
        ("/error", "error", "http_status", "500"),
        ("/garbage", "garbage", "invalid_pprof", "invalid pprof"),
        ("/big", "big", "too_large", "too large"),
    ];
    wait_for("every target scraped", 20, || {
        let t = active_targets(&srv);
        (t.len() == 6 && t.iter().all(|t| t["health"] != "unknown")).then_some(())
    });
    for (path, _, _, message) in cases {
        let t = target_with(&srv, &format!("{}{path}", target.addr)).unwrap();
        assert_eq!(t["health"], "down", "{t}");
        let err = t["lastError"].as_str().unwrap();
        assert!(err.contains(message), "{path}: {err}");
    }
    let refused = target_with(&srv, &closed).unwrap();
    assert_eq!(refused["health"], "down", "{refused}");
    assert!(
        refused["lastError"]
            .as_str()
            .unwrap()
            .contains("connection"),
        "{refused}"
    );
    let ok = target_with(&srv, &format!("{}/ok", target.addr)).unwrap();
    assert_eq!(ok["health"], "up", "{ok}");

    // Metrics: a failure reason per case, up = 0; the healthy loop keeps
    // scraping and ingesting.
    let m = metrics(&srv);
    for (_, profile, reason, _) in cases {
        let p = format!("profile=\"{profile}\"");
        let r = format!("reason=\"{reason}\"");
        assert_eq!(
            metric_value(&m, "profstore_scrape_up", &[&p]),
            Some(0.0),
            "{m}"
        );
        assert!(
            metric_value(&m, "profstore_scrape_failures_total", &[&p, &r]).unwrap() >= 1.0,
            "{profile}: {m}"
        );
    }
    let gone = ["job=\"gone\"", "reason=\"connection\""];
    assert!(metric_value(&m, "profstore_scrape_failures_total", &gone).unwrap() >= 1.0);
    let before = target.hits("/ok");
    wait_for("two more scrapes of the healthy target", 10, || {
        (target.hits("/ok") >= before + 2).then_some(())
    });
    let sel = r#"memory:alloc_objects:count:space:bytes{job="mixed",instance=~".+"}"#;
    let total = common::daemon::file_total("parca/alloc_objects.pb.gz");
    assert!(total > 0);
    let stored: i64 = totals_by_instance(&srv, sel).values().sum();
    assert!(stored > 0, "the healthy target's profiles are stored");
    // Nothing of the failing ones is.
    for (_, profile, _, _) in cases {
        let data = srv.data(&format!(
            "/api/v1/series?{}",
            qs(&[("match[]", &format!("{{__name__=~\"{profile}:.*\"}}"))])
        ));
        assert_eq!(data, serde_json::json!([]), "{profile}");
    }
    // A scrape in flight (the slow target) does not hold up shutdown.
    assert_eq!(srv.terminate(), Some(0));
}

/// Runs `profstore serve --config FILE` and returns its exit code and
/// stderr; fails if it is still running after 10 s.
fn start_with_config(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "bad.yaml", text);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_profstore"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config", &path])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon accepted the config:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
    )
}

#[test]
fn bad_configs_are_rejected_at_start_with_file_and_line() {
    let job = "scrape_configs:\n  - job_name: a\n";
    let target = "    static_configs:\n      - targets: ['127.0.0.1:1']\n";
    let cases = [
        (
            format!("{job}    scrape_intervall: 1s\n"),
            "unknown field `scrape_intervall`",
            3,
        ),
        (
            format!("{job}{target}    scrape_interval: often\n"),
            "valid duration",
            5,
        ),
        (
            format!("{job}    scrape_interval: 1x\n"),
            "valid duration",
            3,
        ),
        (
            format!("{job}    scrape_interval: 5s\n    scrape_timeout: 10s\n"),
            "longer than scrape_interval",
            4,
        ),
        // process_cpu is enabled by default: a 1s timeout is too short.
        (
            format!("{job}    scrape_interval: 1s\n    scrape_timeout: 1s\n"),
            "at least 2s",
            4,
        ),
        (format!("{job}    scheme: ftp\n"), "unknown scheme", 3),
        (
            "scrape_configs:\n  - job_name: ''\n".to_string(),
            "job_name is empty",
            2,
        ),
        (
            format!("{job}  - job_name: b\n  - job_name: a\n"),
            "duplicate job_name",
            4,
        ),
        (
            format!("{job}    static_configs:\n      - targets:\n          - 'http://h:1/debug'\n"),
            "not host:port",
            5,
        ),
        (
            format!("{job}    static_configs:\n      - targets: ['h']\n"),
            "port is missing",
            4,
        ),
        (
            format!("{job}    scrape_interval: [1s]\n"),
            "invalid type",
            3,
        ),
    ];
    for (text, want, line) in cases {
        let (code, stderr, path) = start_with_config(&text);
        assert_eq!(code, Some(2), "{text}\n{stderr}");
        assert!(stderr.contains(want), "{text}\nwant {want:?} in {stderr}");
        assert!(
            stderr.contains(&path),
            "{text}\nthe file is not named: {stderr}"
        );
        assert!(
            stderr.contains(&format!("line {line} ")),
            "{text}\nwant line {line} in {stderr}"
        );
    }
    // The same file with valid values starts.
    let good = format!("{job}{target}");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "good.yaml", &good);
    let srv = Server::start(&["--config", &path]);
    assert_eq!(active_targets(&srv).len(), 5, "the five default profiles");
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn reload_keeps_unchanged_loops_and_rejects_bad_files() {
    let heap = corpus_file("parca/alloc_objects.pb.gz");
    let serve = || {
        let heap = heap.clone();
        Target::start(move |path, _| match path {
            "/debug/pprof/allocs" => Reply::Ok(heap.clone()),
            _ => Reply::Status(404, "not found"),
        })
    };
    let (ta, tb) = (serve(), serve());
    let (a, b) = (ta.addr.clone(), tb.addr.clone());
    let config = |targets: &[&str]| {
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        format!(
            "scrape_configs:\n  - job_name: r\n    scrape_interval: 1s\n    static_configs:\n      - targets: [{}]\n{}",
            list.join(", "),
            pprof_config(&[("memory", "/debug/pprof/allocs")])
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "profstore.yaml", &config(&[&a]));
    let mut srv = Server::start_capturing(&["--config", &path]);
    let up = |srv: &Server, addr: &str| {
        target_with(srv, &format!("//{addr}/"))
            .filter(|t| t["health"] == "up")
            .map(|t| t["lastScrape"].as_str().unwrap().to_string())
    };
    let first = wait_for("the first target up", 10, || up(&srv, &a));

    // A bad file: POST /-/reload says why (file and line) and changes
    // nothing; SIGHUP logs why and the daemon keeps running.
    let bad = format!("{}    bogus: 1\n", config(&[&a, &b]));
    write_config(dir.path(), "profstore.yaml", &bad);
    let r = srv.call("POST", "/-/reload", None, b"");
    assert_eq!(r.status, 400, "{}", r.text());
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(err.contains("keeping the previous configuration"), "{err}");
    assert!(
        err.contains(&path) && err.contains("unknown field `bogus`"),
        "{err}"
    );
    assert!(err.contains("line 13 "), "{err}");
    srv.signal(libc::SIGHUP);
    wait_for("the SIGHUP reload error in the log", 10, || {
        let log = srv.log.lock().unwrap();
        (log.contains("SIGHUP: reload failed") && log.contains("bogus")).then_some(())
    });
    assert!(srv.is_running());
    let t = active_targets(&srv);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0]["health"], "up");

    // SIGHUP with a changed file: b is added, a keeps its loop (still up,
    // its last scrape not reset).
    write_config(dir.path(), "profstore.yaml", &config(&[&a, &b]));
    srv.signal(libc::SIGHUP);
    let t = wait_for("two targets", 10, || {
        let t = active_targets(&srv);
        (t.len() == 2).then_some(t)
    });
    let kept = t
        .iter()
        .find(|t| t["labels"]["instance"] == a.as_str())
        .unwrap();
    assert_eq!(kept["health"], "up", "{kept}");
    assert!(kept["lastScrape"].as_str().unwrap() >= first.as_str());
    wait_for("the new target up", 10, || up(&srv, &b));
    assert!(metrics(&srv).contains("profstore_scrape_targets 2"));

    // POST /-/reload with a removed target: one removed, one unchanged.
    write_config(dir.path(), "profstore.yaml", &config(&[&b]));
    let r = srv.call("POST", "/-/reload", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let data = r.json()["data"].clone();
    assert_eq!(
        data,
        serde_json::json!({"added": 0, "removed": 1, "unchanged": 1})
    );
    let t = active_targets(&srv);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0]["labels"]["instance"], b.as_str());
    assert_eq!(t[0]["health"], "up", "the kept loop keeps its state");
    let m = metrics(&srv);
    assert!(m.contains("profstore_scrape_targets 1"), "{m}");
    assert_eq!(
        metric_value(&m, "profstore_scrape_up", &[&format!("instance=\"{a}\"")]),
        None,
        "the removed target's series are gone"
    );
    // Both targets' profiles are stored under their instances.
    let by_instance =
        totals_by_instance(&srv, r#"memory:alloc_objects:count:space:bytes{job="r"}"#);
    assert!(
        by_instance.contains_key(&a) && by_instance.contains_key(&b),
        "{by_instance:?}"
    );
    assert_eq!(srv.terminate(), Some(0));
}

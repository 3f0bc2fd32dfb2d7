//! profstore on a real distributed object store: a SeaweedFS cluster (see
//! `common::seaweed`; skipped with a note when `PROFSTORE_WEED` is unset,
//! except under `CI`). Two ingesters (`serve --bucket s3://…`, replicas `a`
//! and `b`, one per S3 gateway) receive the same stream of real profiles
//! and ship their blocks; then ingester `a`, a volume server and an S3
//! gateway are killed with SIGKILL, and a querier deduplicating by
//! `replica`, with an empty cache, through the other gateway, answers every
//! query kind exactly as one ingester did: nothing doubled. Ingester `a`
//! restarted after its crash ships more, and the querier's answers include
//! it. A querier started with `--ingesters` answers before the blocks
//! are shipped, and as well after. After the crashes, queries go through a
//! querier with two peers (`--peers`): the peers read the merges' units.
//! Then `profstore compact --once` dedupes and merges the bucket's
//! blocks: the answers stay the same, from fewer bytes; and with one peer
//! killed, the other and the coordinator take its share.

mod common;

use common::daemon::{http, qs, QuerierProcess, Server};
use profstore::pprof::{decode, DecodeLimits};
use prost::Message;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const BUCKET: &str = "profiles";

/// [`common::real_stream`] for 30 s from `from` ms, as (labels, pprof)
/// bodies.
fn bodies(from: i64) -> Vec<(String, Vec<u8>)> {
    common::real_stream(from, 3)
        .into_iter()
        .map(|r| (r.labels.to_string(), r.profile.encode_to_vec()))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Every query kind the tests compare, as one string: label names and
/// values, series, totals over time, and per-stack totals of merges; or
/// the first request that was not answered, with its status and body.
fn answers(addr: &str, from: i64) -> Result<String, String> {
    let (start, end) = (
        format!("{}", (from - 1000) / 1000),
        format!("{}", now_ms() / 1000 + 1),
    );
    let mut out = String::new();
    for t in [
        "/api/v1/labels".to_string(),
        "/api/v1/label/instance/values".to_string(),
        format!("/api/v1/series?{}", qs(&[("match[]", "{job=~\".+\"}")])),
    ] {
        let r = http(addr, "GET", &t, None, b"");
        if r.status != 200 {
            return Err(format!("GET {t}: status {}: {}", r.status, r.text()));
        }
        out += &format!("{t} {}\n", r.json()["data"]);
    }
    for sel in [
        r#"{__name__=~"process_cpu:cpu:.*"}"#,
        r#"{__name__=~"memory:alloc_space:.*", instance="host-1"}"#,
    ] {
        let t = format!(
            "/api/v1/query_range?{}",
            qs(&[
                ("query", sel),
                ("start", &start),
                ("end", &end),
                ("step", "1s")
            ])
        );
        let r = http(addr, "GET", &t, None, b"");
        if r.status != 200 {
            return Err(format!("GET {t}: status {}: {}", r.status, r.text()));
        }
        out += &format!("range {sel} {}\n", r.json()["data"]);
        let t = format!(
            "/api/v1/profile/merge?{}",
            qs(&[
                ("query", sel),
                ("start", &start),
                ("end", &end),
                ("format", "pprof")
            ])
        );
        let r = http(addr, "GET", &t, None, b"");
        if r.status != 200 {
            return Err(format!("GET {t}: status {}: {}", r.status, r.text()));
        }
        let p = decode(&r.body, &DecodeLimits::default()).unwrap();
        let totals: Vec<BTreeMap<_, i64>> = common::totals(&p);
        out += &format!("merge {sel} {totals:?}\n");
    }
    Ok(out)
}

/// The value of the sample `name` (no labels) in `p`'s `/metrics`.
fn metric(p: &QuerierProcess, name: &str) -> f64 {
    let r = p.get("/metrics");
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {}", r.text()))
}

/// Waits until `addr` gives `expected`.
fn until_equal(addr: &str, from: i64, expected: &str, what: &str) {
    let start = Instant::now();
    loop {
        let got = answers(addr, from);
        if got.as_deref() == Ok(expected) {
            return;
        }
        if start.elapsed() > Duration::from_secs(60) {
            assert_eq!(got.as_deref(), Ok(expected), "{what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn querier(endpoint: &str, cache: &std::path::Path) -> QuerierProcess {
    querier_with(endpoint, cache, &[])
}

/// [`querier`] with more flags.
fn querier_with(endpoint: &str, cache: &std::path::Path, more: &[&str]) -> QuerierProcess {
    let bucket = format!("s3://{BUCKET}/prod");
    let cache = cache.display().to_string();
    let mut args = vec![
        "--dedup-label",
        "replica",
        "--bucket",
        &bucket,
        "--bucket-endpoint",
        endpoint,
        "--sync-interval",
        "250ms",
        "--cache-dir",
        &cache,
    ];
    args.extend_from_slice(more);
    QuerierProcess::start(&args)
}

/// Runs `profstore compact --once` against the bucket; its summary line.
fn compact_once(endpoint: &str, work: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_profstore"))
        .args(["compact", "--once", "--log-level", "warn"])
        .args(["--bucket", &format!("s3://{BUCKET}/prod")])
        .args(["--bucket-endpoint", endpoint])
        .args(["--dedup-label", "replica", "--delete-delay", "0s"])
        .args(["--ranges", "10s,1m,10m"])
        .arg("--work-dir")
        .arg(work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn push(srv: &Server, bodies: &[(String, Vec<u8>)]) {
    for (labels, body) in bodies {
        let r = srv.write(labels, body);
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[test]
fn replicated_blocks_in_seaweedfs_outlive_an_ingester_a_volume_server_and_a_gateway() {
    let Some(weed) = common::seaweed::weed() else {
        return;
    };
    let started = Instant::now();
    let mut cluster = common::seaweed::Cluster::start(weed, BUCKET);
    eprintln!("SeaweedFS cluster up in {:?}", started.elapsed());
    // This test binary holds this one test, so setting the environment its
    // daemons inherit races with nothing.
    std::env::set_var("AWS_ACCESS_KEY_ID", "profstore");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "profstore");
    std::env::set_var("AWS_REGION", "us-east-1");
    let url = format!("s3://{BUCKET}/prod");
    let ingester_flags = |endpoint: &str, replica: &str| -> Vec<String> {
        [
            "--bucket",
            &url,
            "--bucket-endpoint",
            endpoint,
            "--external-label",
            &format!("replica={replica}"),
            "--block-duration",
            "2s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let flags = ingester_flags(&cluster.s3[0], "a");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut srv = Server::start(&flags);
    let flags_b = ingester_flags(&cluster.s3[1], "b");
    let flags_b: Vec<&str> = flags_b.iter().map(String::as_str).collect();
    let srv_b = Server::start(&flags_b);
    // Stamped a minute ago: their 2 s blocks are due at once, so every
    // write wakes a cut and every cut the shipper.
    let from = now_ms() - 60_000;
    let first = bodies(from);
    push(&srv, &first);
    push(&srv_b, &first);
    let expected = answers(&srv.addr, from).unwrap();
    assert_eq!(answers(&srv_b.addr, from).unwrap(), expected);
    assert!(
        expected.contains("host-1") && !expected.contains("[{}]"),
        "{expected}"
    );
    // A querier that reads the ingesters' live data too answers at once,
    // each profile once: shipped, live, or both.
    let ingesters = format!("http://{},http://{}", srv.addr, srv_b.addr);
    let q_live = querier_with(
        &cluster.s3[0],
        &cluster.dir.path().join("live-cache"),
        &["--ingesters", &ingesters],
    );
    assert_eq!(
        answers(&q_live.addr, from).as_deref(),
        Ok(expected.as_str())
    );
    let cache = cluster.dir.path().join("querier-cache");
    let q = querier(&cluster.s3[1], &cache);
    until_equal(&q.addr, from, &expected, &cluster.logs());
    assert_eq!(
        answers(&q_live.addr, from).as_deref(),
        Ok(expected.as_str())
    );
    drop(q_live);
    let shipped_in = started.elapsed();

    // The ingester, a volume server and a gateway crash.
    assert_eq!(srv.signal_and_wait(libc::SIGKILL), None);
    cluster.kill("volume0");
    cluster.kill("s3-0");
    drop(q);
    // A new querier, empty cache, through the surviving gateway, sharing
    // its merges with two peers: the bucket alone gives every answer.
    let p1 = querier(&cluster.s3[1], &cluster.dir.path().join("cache-p1"));
    let mut p2 = querier(&cluster.s3[1], &cluster.dir.path().join("cache-p2"));
    let peers = format!("http://{},http://{}", p1.addr, p2.addr);
    let q = querier_with(
        &cluster.s3[1],
        &cluster.dir.path().join("cache-2"),
        &["--peers", &peers],
    );
    until_equal(&q.addr, from, &expected, &cluster.logs());
    let answered = |p: &QuerierProcess| metric(p, "profstore_querier_peer_requests_total");
    assert!(
        answered(&p1) + answered(&p2) > 0.0,
        "the peers read no unit"
    );

    // The ingester comes back (through the other gateway), gets more, and
    // ships it; the querier's answers include it.
    let flags = ingester_flags(&cluster.s3[1], "a");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    srv.start_again(&flags);
    let more = bodies(now_ms() - 30_000);
    push(&srv, &more);
    push(&srv_b, &more);
    let expected_more = answers(&srv.addr, from).unwrap();
    assert_ne!(expected_more, expected);
    until_equal(&q.addr, from, &expected_more, &cluster.logs());

    // The compactor makes one pass (delete delay 0: the inputs go in the
    // same pass); the querier, and a new one, answer as before from fewer
    // bytes.
    let compacted = compact_once(&cluster.s3[1], &cluster.dir.path().join("compactor"));
    eprintln!("cluster test: compactor: {compacted}");
    let (before, after) = compacted
        .rsplit_once("block bytes ")
        .and_then(|(_, b)| b.trim().split_once(" -> "))
        .map(|(a, b)| (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("{compacted}"));
    assert!(after < before, "{compacted}");
    until_equal(&q.addr, from, &expected_more, &cluster.logs());
    let fresh = querier(&cluster.s3[1], &cluster.dir.path().join("cache-3"));
    until_equal(&fresh.addr, from, &expected_more, &cluster.logs());
    // A peer dies: the other and the coordinator take its share.
    p2.child.kill().unwrap();
    p2.child.wait().unwrap();
    assert_eq!(
        answers(&q.addr, from).as_deref(),
        Ok(expected_more.as_str())
    );
    assert!(fresh.terminate());
    assert!(q.terminate());
    assert!(p1.terminate());
    assert_eq!(srv.terminate(), Some(0));
    assert_eq!(srv_b.terminate(), Some(0));
    eprintln!(
        "cluster test: shipped and queried in {shipped_in:?}, all in {:?}",
        started.elapsed()
    );
}

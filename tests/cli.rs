//! End to end for the command-line client: a real daemon, and the real
//! binary as `profstore push` / `profstore query` against it.

mod common;

use common::daemon::Server;
use profstore::model::time::parse_time;
use profstore::pprof::{decode, DecodeLimits};
use std::process::{Command, Output};

const CPU: &str = "testdata/pprof/parca/cpu_labels.pb.gz";
const HEAP: &str = "testdata/pprof/parca/alloc_objects.pb.gz";

fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_profstore"))
        .args(args)
        .env("PROFSTORE_URL", url)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// Runs a command that must succeed; its stdout.
fn ok(url: &str, args: &[&str]) -> String {
    let out = cli(url, args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{args:?}: {stderr}\n{stdout}");
    stdout.into_owned()
}

/// Runs a command that must fail with exit code 1; its stderr.
fn fails(url: &str, args: &[&str]) -> String {
    let out = cli(url, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.starts_with("profstore: "), "{stderr}");
    stderr
}

/// The `total: N (…)` of a table.
fn table_total(table: &str) -> i64 {
    let first = table.lines().next().unwrap();
    first
        .strip_prefix("total: ")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn push_and_query() {
    let srv = Server::start(&[]);
    let url = format!("http://{}", srv.addr);
    let url = url.as_str();

    // --- push: one line per file; the timestamp is the profile's ---
    let out = ok(
        url,
        &["push", CPU, "--label", "job=api", "--label", "instance=a"],
    );
    let line = out.trim();
    assert!(
        line.starts_with(&format!("{CPU}: ")) && line.contains(" series, "),
        "{out}"
    );
    let ts = parse_time(line.rsplit(' ').next().unwrap()).unwrap();
    // A label name that is no identifier, and a value with quotes, from stdin.
    let heap = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(HEAP)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_profstore"))
        .args([
            "push",
            "-",
            "--url",
            url,
            "-l",
            "job=api",
            "-l",
            r#"otel.scope.name=say "hi""#,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &heap).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-: "));

    // --- labels and values ---
    let labels = ok(url, &["query", "labels"]);
    for l in ["__name__", "instance", "job", "otel.scope.name"] {
        assert!(labels.lines().any(|x| x == l), "{l} in {labels}");
    }
    assert_eq!(ok(url, &["query", "values", "job"]), "api\n");
    assert_eq!(
        ok(url, &["query", "values", "otel.scope.name"]),
        "say \"hi\"\n"
    );
    assert_eq!(
        ok(
            url,
            &["query", "values", "instance", "--match", r#"{job="nope"}"#]
        ),
        ""
    );
    let names = ok(
        url,
        &[
            "query",
            "values",
            "__name__",
            "--match",
            r#"{instance="a"}"#,
        ],
    );
    let cpu_type = names
        .lines()
        .find(|n| n.contains(":cpu:nanoseconds:cpu:nanoseconds"))
        .unwrap();

    // --- range: a table per series, or the server's JSON ---
    let sel = format!(r#"{cpu_type}{{job="api"}}"#);
    let (start, end) = (
        format!("{}", (ts - 60_000) / 1000),
        format!("{}", (ts + 60_000) / 1000),
    );
    let range = ok(
        url,
        &[
            "query", "range", &sel, "--start", &start, "--end", &end, "--step", "15s",
        ],
    );
    let mut range_total = 0;
    for l in range.lines() {
        if let Some(point) = l.strip_prefix("  ") {
            let (t, v) = point.split_once("  ").unwrap();
            assert!(parse_time(t).is_ok(), "{l}");
            range_total += v.parse::<i64>().unwrap();
        } else if !l.is_empty() {
            assert!(l.starts_with('{') && l.contains(r#"job="api""#), "{l}");
        }
    }
    let json = ok(
        url,
        &[
            "query", "range", &sel, "--start", &start, "--end", &end, "-o", "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["data"]["resultType"], "matrix");

    // --- merge: the table's total is the downloaded pprof's ---
    let merge = ok(
        url,
        &[
            "query", "merge", &sel, "--start", &start, "--end", &end, "--top", "5",
        ],
    );
    assert!(merge.lines().nth(1).unwrap().contains("flat%"), "{merge}");
    assert_eq!(merge.lines().count(), 7, "{merge}");
    assert!(merge.contains("runtime."), "{merge}");
    let total = table_total(&merge);
    assert_eq!(total, range_total);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.pb.gz");
    let f = file.to_str().unwrap();
    ok(
        url,
        &[
            "query", "merge", &sel, "--start", &start, "--end", &end, "--format", "pprof", "-o", f,
        ],
    );
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzipped");
    let p = decode(&bytes, &DecodeLimits::default()).unwrap();
    let pprof_total: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    assert_eq!(pprof_total, total);
    // The same function names, from pprof: the table's top row is in it.
    let top_name = merge.lines().nth(2).unwrap().rsplit("  ").next().unwrap();
    assert!(
        p.function
            .iter()
            .any(|f| p.string_table[f.name as usize] == top_name),
        "{top_name}"
    );

    // --- profile at a time (its 5-minute window) ---
    let at = format!("{}", ts / 1000);
    let single = ok(url, &["query", "profile", &sel, "--time", &at]);
    assert_eq!(table_total(&single), total);

    // --- diff: B (an empty hour) minus A is minus A ---
    let diff = ok(
        url,
        &[
            "query",
            "diff",
            "--query-a",
            &sel,
            "--start-a",
            &start,
            "--end-a",
            &end,
            "--start-b",
            "0",
            "--end-b",
            "3600",
        ],
    );
    let head = diff.lines().next().unwrap();
    assert!(
        head.contains(&format!("net change -{total} (base {total}, compared 0)")),
        "{diff}"
    );
    assert!(
        diff.lines().nth(2).unwrap().trim_start().starts_with('-'),
        "{diff}"
    );

    // --- errors ---
    let e = fails(url, &["query", "merge", "rate(x[5m])"]);
    assert!(e.contains("unsupported selector"), "{e}");
    let e = fails(url, &["query", "range", &sel, "--start", "yesterday"]);
    assert!(e.contains("yesterday"), "{e}");
    let e = fails(url, &["push", "no/such/file.pb.gz", CPU]);
    assert!(e.contains("no/such/file.pb.gz"), "{e}");
    assert!(e.contains("1 of 2 files failed"), "{e}");
    let e = fails(url, &["push", "Cargo.toml"]);
    assert!(e.contains("Cargo.toml: "), "{e}");
    let e = fails("https://127.0.0.1:1", &["query", "labels"]);
    assert!(e.contains("https is not supported"), "{e}");
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let e = fails(&dead, &["query", "labels"]);
    assert!(e.contains(&format!("cannot connect to {dead}")), "{e}");
}

/// Runs `profstore serve` with `args`, which must make it exit at once;
/// its exit code and stderr.
fn serve_exits(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_profstore"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon started with {args:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_storage_is_rejected() {
    let (code, stderr) = serve_exits(&["--storage", "bogus"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("storage") && stderr.contains("bogus"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tsdb") && stderr.contains("duckdb"),
        "{stderr}"
    );
}

#[cfg(not(feature = "duckdb"))]
#[test]
fn duckdb_storage_needs_the_feature() {
    let (code, stderr) = serve_exits(&["--storage", "duckdb"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("without the `duckdb`"), "{stderr}");
    assert!(
        stderr.contains("cargo build --release --features duckdb"),
        "{stderr}"
    );
    assert!(stderr.contains("scripts/setup-duckdb"), "{stderr}");
}

//! The time policy, end to end on the real binary: profiles stamped too far
//! in the future or before the retention are refused with 400 and stop no
//! one; 180 profiles over the last 3 hours written in shuffled order answer
//! every query kind exactly as in-order arrival does — from the head, the
//! late head and blocks, after kill -9 and WAL replay, and after a clean
//! shutdown compacted the late ones into their blocks; retries count once.

mod common;

use common::daemon::*;
use profstore::pprof::{decode, encode, DecodeLimits};
use profstore::proto::pprof::Profile;
use std::collections::BTreeSet;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Profile `k`: a subset of `base`'s samples, values scaled, at `t_ms`.
fn variant(base: &Profile, k: usize, t_ms: i64) -> Vec<u8> {
    let mut p = base.clone();
    p.time_nanos = t_ms * 1_000_000;
    let mut i = 0;
    p.sample.retain(|_| {
        i += 1;
        (i + k) % 4 != 0
    });
    for s in &mut p.sample {
        for v in &mut s.value {
            *v *= 1 + (k % 5) as i64;
        }
    }
    gzip(&encode(&p))
}

fn base() -> Profile {
    decode(&corpus_file("parca/fib.pb.gz"), &DecodeLimits::default()).unwrap()
}

fn pprof(r: &Resp) -> Profile {
    assert_eq!(r.status, 200, "{}", r.text());
    decode(&r.body, &DecodeLimits::default()).unwrap()
}

/// A profile as comparable text: per-stack totals, duration, time, period.
fn summary(p: &Profile) -> String {
    format!(
        "{:?} duration={} time={} period={}",
        common::totals(p),
        p.duration_nanos,
        p.time_nanos,
        p.period
    )
}

/// Every query kind over the writes of [`writes`], as one string.
fn answers(srv: &Server, t0: i64, t1: i64) -> String {
    let (s, e) = (format!("{}", t0 / 1000 - 1), format!("{}", t1 / 1000 + 1));
    let mid = format!("{}", (t0 + (t1 - t0) / 3) / 1000);
    let a = format!(r#"{CPU}{{instance="a"}}"#);
    let b = format!(r#"{CPU}{{instance="b"}}"#);
    let mut out = String::new();
    for step in ["15", "600"] {
        let q = [
            ("query", a.as_str()),
            ("start", &s),
            ("end", &e),
            ("step", step),
        ];
        out += &format!(
            "range {step} {}\n",
            srv.data(&format!("/api/v1/query_range?{}", qs(&q)))
        );
    }
    let range = [("start", s.as_str()), ("end", e.as_str())];
    let with = |extra: &[(&str, &str)]| {
        let mut v = extra.to_vec();
        v.extend_from_slice(&range);
        qs(&v)
    };
    out += &format!(
        "labels {}\n",
        srv.data(&format!("/api/v1/labels?{}", with(&[])))
    );
    out += &format!(
        "values {}\n",
        srv.data(&format!("/api/v1/label/instance/values?{}", with(&[])))
    );
    out += &format!(
        "series {}\n",
        srv.data(&format!("/api/v1/series?{}", with(&[("match[]", CPU)])))
    );
    for (from, to) in [(s.as_str(), e.as_str()), (s.as_str(), mid.as_str())] {
        let merged = pprof(&srv.get(&format!(
            "/api/v1/profile/merge?{}",
            qs(&[
                ("query", &a),
                ("start", from),
                ("end", to),
                ("format", "pprof")
            ])
        )));
        out += &format!("merge {from}..{to} {}\n", summary(&merged));
    }
    let single = pprof(&srv.get(&format!(
        "/api/v1/profile?{}",
        qs(&[("query", &a), ("time", &mid)])
    )));
    out += &format!("single {}\n", summary(&single));
    let diff = pprof(&srv.get(&format!(
        "/api/v1/profile/diff?{}",
        qs(&[
            ("query_a", &a),
            ("start_a", &s),
            ("end_a", &mid),
            ("query_b", &b),
            ("start_b", &s),
            ("end_b", &e),
            ("format", "pprof"),
        ])
    )));
    out += &format!("diff {}\n", summary(&diff));
    out
}

/// 180 profiles of instance `a`, one a minute over the last 3 hours, and
/// 30 of instance `b`: (labels, body).
fn writes(now: i64) -> (Vec<(String, Vec<u8>)>, i64, i64) {
    let base = base();
    let t0 = now - 3 * 3600 * 1000 + 30_000;
    let mut out = Vec::new();
    for k in 0..180 {
        let t = t0 + k as i64 * 60_000;
        out.push((
            r#"{job="app",instance="a"}"#.to_string(),
            variant(&base, k, t),
        ));
        if k % 6 == 0 {
            out.push((
                r#"{job="app",instance="b"}"#.to_string(),
                variant(&base, k + 1, t + 7),
            ));
        }
    }
    (out, t0, t0 + 179 * 60_000 + 7)
}

fn metric(srv: &Server, name: &str) -> f64 {
    let text = srv.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[test]
fn a_bad_clock_is_refused_and_stops_no_one() {
    let srv = Server::start(&["--retention", "15d", "--block-duration", "2h"]);
    let base = base();
    let year_2100 = 4_102_444_800_000;
    let r = srv.write(r#"{job="skewed"}"#, &variant(&base, 0, year_2100));
    assert_eq!(r.status, 400, "{}", r.text());
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(err.contains("max_future (10m)"), "{err}");
    assert!(err.contains("2100-01-01T00:00:00.000Z"), "{err}");
    let old = now_ms() - 30 * 86_400_000;
    let r = srv.write(r#"{job="late"}"#, &variant(&base, 0, old));
    assert_eq!(r.status, 400, "{}", r.text());
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(err.contains("retention (15d)"), "{err}");
    // Writes stamped now, and a few minutes ahead, go on.
    for (k, dt) in [0, 60_000, 5 * 60_000].into_iter().enumerate() {
        let r = srv.write(r#"{job="ok"}"#, &variant(&base, k, now_ms() + dt));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let jobs = srv.data("/api/v1/label/job/values?start=0&end=4200000000");
    assert_eq!(
        jobs,
        serde_json::json!(["ok"]),
        "nothing refused was stored"
    );
    let refused = metric(&srv, "profstore_errors_total{kind=\"too_new\"}")
        + metric(&srv, "profstore_errors_total{kind=\"too_old\"}");
    assert_eq!(refused, 2.0);
}

#[test]
fn shuffled_profiles_answer_as_in_order_through_crashes_and_compaction() {
    let now = now_ms();
    let (reqs, t0, t1) = writes(now);
    // The reference: in time order, one block span longer than the data.
    let reference = Server::start(&["--retention", "15d"]);
    for (labels, body) in &reqs {
        assert_eq!(reference.write(labels, body).status, 200);
    }
    let want = answers(&reference, t0, t1);
    drop(reference);

    // 1 h blocks: ranges that ended half an hour ago are cut while the
    // profiles arrive, and the later ones of those ranges are late.
    let flags = ["--retention", "15d", "--block-duration", "1h"];
    let mut srv = Server::start(&flags);
    let mut order: Vec<usize> = (0..reqs.len()).collect();
    let mut seed: u64 = 0x7157;
    for i in (1..order.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        order.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    for &i in &order {
        let (labels, body) = &reqs[i];
        let r = srv.write(labels, body);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["duplicate"], false);
    }
    assert_eq!(answers(&srv, t0, t1), want, "head, late head and blocks");
    assert!(metric(&srv, "profstore_blocks_written_total") >= 1.0);

    // Retries are answered and change nothing.
    for &i in order.iter().step_by(9) {
        let (labels, body) = &reqs[i];
        let r = srv.write(labels, body);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["duplicate"], true);
    }
    assert_eq!(answers(&srv, t0, t1), want, "after retries");

    srv.kill_and_restart(&flags);
    assert_eq!(answers(&srv, t0, t1), want, "after kill -9 and WAL replay");

    // A clean shutdown (SIGTERM, exit 0) compacts the late profiles into
    // their blocks.
    srv.restart(&flags);
    assert_eq!(
        answers(&srv, t0, t1),
        want,
        "after compaction and a restart"
    );
    let blocks: BTreeSet<String> = std::fs::read_dir(srv.dir.path().join("data/blocks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!blocks.is_empty(), "{blocks:?}");
    assert!(blocks.iter().all(|b| b.ends_with(".block")), "{blocks:?}");
    let ranges: Vec<(i64, i64)> = blocks
        .iter()
        .map(|b| {
            let (lo, hi) = b.trim_end_matches(".block").split_once('_').unwrap();
            (lo.parse().unwrap(), hi.parse().unwrap())
        })
        .collect();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "blocks do not overlap: {ranges:?}");
    }
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB at `at`, or says why not.
    fn mount(at: &std::path::Path, mib: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` until `leave` bytes are free (or it is
/// full) with the file `dir/filler`.
fn fill_disk(dir: &std::path::Path, leave: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    loop {
        let free = profstore::tsdb::free_bytes(dir).unwrap();
        if free <= leave {
            break;
        }
        let n = chunk.len().min((free - leave) as usize);
        if f.write_all(&chunk[..n]).is_err() || f.sync_all().is_err() {
            break;
        }
    }
}

/// The number of profiles of `job` stored in the last hour (points of its
/// series at a 1 s step).
fn stored(srv: &Server, job: &str) -> usize {
    let now = now_ms() / 1000;
    let data = srv.data(&format!(
        "/api/v1/query_range?{}",
        qs(&[
            ("query", &format!(r#"{CPU}{{job="{job}"}}"#)),
            ("start", &format!("{}", now - 3600)),
            ("end", &format!("{}", now + 60)),
            ("step", "1"),
        ])
    ));
    data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["values"].as_array().unwrap().len())
        .sum()
}

#[test]
fn a_full_disk_refuses_writes_with_507_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _tmpfs = match Tmpfs::mount(&data, 48) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("note: full-disk test skipped, cannot mount a tmpfs here: {e}");
            return;
        }
    };
    let base = base();
    let t0 = now_ms() - 600_000;
    let flags = ["--retention", "15d", "--min-free-bytes", "8388608"];
    let mut srv = Server::start_in(dir, &flags);
    let data = srv.dir.path().join("data");
    let mut acked = 0;
    let mut write = |srv: &Server, k: usize| {
        let r = srv.write(r#"{job="disk"}"#, &variant(&base, k, t0 + k as i64 * 1000));
        if r.status == 200 {
            acked += 1;
        }
        r
    };
    for k in 0..20 {
        assert_eq!(write(&srv, k).status, 200);
    }
    // Below the reserve: refused with 507, and nothing changes.
    fill_disk(&data, 4 << 20);
    let r = write(&srv, 20);
    assert_eq!(r.status, 507, "{}", r.text());
    assert!(r.text().contains("min_free_bytes"), "{}", r.text());
    assert_eq!(stored(&srv, "disk"), 20, "queries keep working");
    // Space returns: writes go on without a restart.
    std::fs::remove_file(data.join("filler")).unwrap();
    for k in 21..30 {
        assert_eq!(write(&srv, k).status, 200);
    }
    // With no reserve, a write that meets the full disk itself (the WAL's
    // write fails) is refused the same way, and the log stays readable.
    srv.restart(&["--retention", "15d", "--min-free-bytes", "0"]);
    // Profile 0's stacks are all known: only the WAL writes.
    fill_disk(&data, 0);
    let mut refused = 0;
    for k in 30..40 {
        let r = write(&srv, k % 20 + 40);
        match r.status {
            200 => {}
            507 => refused += 1,
            s => panic!("status {s}: {}", r.text()),
        }
    }
    assert!(refused > 0, "the full disk refused writes");
    assert!(stored(&srv, "disk") >= 29);
    std::fs::remove_file(data.join("filler")).unwrap();
    assert_eq!(write(&srv, 60).status, 200);
    let want = stored(&srv, "disk");
    assert_eq!(want, acked, "every acknowledged write is stored");
    srv.kill_and_restart(&["--retention", "15d", "--min-free-bytes", "0"]);
    assert_eq!(stored(&srv, "disk"), want, "and survives kill -9");
    srv.restart(&["--retention", "15d", "--min-free-bytes", "0"]);
    assert_eq!(stored(&srv, "disk"), want, "and a clean restart");
}

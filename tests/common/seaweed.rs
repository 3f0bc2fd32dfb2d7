//! A SeaweedFS cluster on 127.0.0.1 for the cluster tests: 3 masters (a
//! raft group), 3 volume servers (default replication `001`: every volume
//! on two servers), a filer and 2 S3 gateways, each process in its own
//! folder of a temporary directory so a test can kill any one of them.
//!
//! The `weed` binary comes from `PROFSTORE_WEED` (set by
//! `eval "$(bash scripts/setup-seaweedfs)"`). Without it the cluster tests
//! print a note and skip, except under `CI`, where that is a failure.
//!
//! SeaweedFS also listens on each port + 10000 (gRPC), so ports are picked
//! with that one free too; the S3 gateways' Iceberg and Lance ports are
//! turned off; gateways start one after the other. Processes are stopped
//! by PID: SIGTERM, then SIGKILL after a short grace.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The running cluster; every process is stopped on drop.
pub struct Cluster {
    weed: PathBuf,
    pub dir: tempfile::TempDir,
    procs: BTreeMap<String, Child>,
    /// The S3 gateways' endpoints (`http://127.0.0.1:PORT`).
    pub s3: Vec<String>,
    masters: String,
}

/// The `weed` binary, or `None` (with a note) when the tests must skip.
pub fn weed() -> Option<PathBuf> {
    match std::env::var_os("PROFSTORE_WEED") {
        Some(p) if Path::new(&p).exists() => Some(PathBuf::from(p)),
        _ if std::env::var_os("CI").is_some() => {
            panic!("PROFSTORE_WEED is not set: run `eval \"$(bash scripts/setup-seaweedfs)\"`")
        }
        _ => {
            eprintln!(
                "note: skipping the SeaweedFS cluster test: set PROFSTORE_WEED \
                 (eval \"$(bash scripts/setup-seaweedfs)\")"
            );
            None
        }
    }
}

/// A port that is free, with port + 10000 free too.
fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 55_000 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < timeout,
            "SeaweedFS: {what} not ready after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn answers(addr: &str, method: &str, target: &str) -> Option<u16> {
    super::daemon::try_http(addr, method, target, None, b"")
        .ok()
        .map(|r| r.status)
}

impl Cluster {
    /// Starts the cluster and creates `bucket`; returns once an object can
    /// be written through each gateway.
    pub fn start(weed: PathBuf, bucket: &str) -> Cluster {
        let mut c = Cluster {
            weed,
            dir: tempfile::tempdir().unwrap(),
            procs: BTreeMap::new(),
            s3: Vec::new(),
            masters: String::new(),
        };
        let mports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        c.masters = mports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        for (i, p) in mports.iter().enumerate() {
            let masters = c.masters.clone();
            c.spawn(
                &format!("master{i}"),
                &[
                    "master",
                    "-ip=127.0.0.1",
                    &format!("-port={p}"),
                    &format!("-peers={masters}"),
                    "-defaultReplication=001",
                    "-volumeSizeLimitMB=16",
                ],
                "-mdir",
            );
        }
        for i in 0..3 {
            let p = free_port();
            let masters = c.masters.clone();
            c.spawn(
                &format!("volume{i}"),
                &[
                    "volume",
                    "-ip=127.0.0.1",
                    &format!("-port={p}"),
                    &format!("-mserver={masters}"),
                    "-max=30",
                    // SeaweedFS marks every volume read-only when the disk
                    // has less than 1% free (its default); a shared CI disk
                    // can be that full while still holding far more than
                    // this test writes.
                    "-minFreeSpace=64MiB",
                ],
                "-dir",
            );
        }
        let fport = free_port();
        let masters = c.masters.clone();
        c.spawn(
            "filer",
            &[
                "filer",
                "-ip=127.0.0.1",
                &format!("-port={fport}"),
                &format!("-master={masters}"),
            ],
            "-defaultStoreDir",
        );
        let filer = format!("127.0.0.1:{fport}");
        wait_for("the filer", Duration::from_secs(60), || {
            answers(&filer, "GET", "/").is_some()
        });
        for i in 0..2 {
            let p = free_port();
            c.spawn(
                &format!("s3-{i}"),
                &[
                    "s3",
                    "-ip=127.0.0.1",
                    &format!("-port={p}"),
                    &format!("-filer={filer}"),
                    "-port.iceberg=0",
                    "-port.lance=0",
                ],
                "",
            );
            let addr = format!("127.0.0.1:{p}");
            wait_for("an S3 gateway", Duration::from_secs(60), || {
                answers(&addr, "GET", "/").is_some()
            });
            c.s3.push(format!("http://{addr}"));
        }
        let first = c.s3[0].trim_start_matches("http://").to_string();
        wait_for("the bucket", Duration::from_secs(60), || {
            answers(&first, "PUT", &format!("/{bucket}")) == Some(200)
        });
        // A write needs the masters' leader and two volume servers.
        for (i, s3) in c.s3.clone().iter().enumerate() {
            let addr = s3.trim_start_matches("http://").to_string();
            wait_for("a first object", Duration::from_secs(90), || {
                answers(&addr, "PUT", &format!("/{bucket}/probe-{i}")) == Some(200)
            });
        }
        c
    }

    /// Starts `weed ARGS` as `name`, with its own folder passed as
    /// `dir_flag` (none when empty); its log goes to `<name>.log`.
    fn spawn(&mut self, name: &str, args: &[&str], dir_flag: &str) {
        let own = self.dir.path().join(name);
        std::fs::create_dir_all(&own).unwrap();
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let mut cmd = Command::new(&self.weed);
        cmd.args(args);
        if !dir_flag.is_empty() {
            cmd.arg(format!("{dir_flag}={}", own.display()));
        }
        let child = cmd
            .current_dir(&own)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.insert(name.to_string(), child);
    }

    /// Kills process `name` with SIGKILL, as a crash would.
    pub fn kill(&mut self, name: &str) {
        let mut c = self.procs.remove(name).unwrap();
        let _ = c.kill();
        let _ = c.wait();
    }

    /// The last lines of every process's log, for a failing test.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in self.procs.keys() {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            out += &format!(
                "--- {name}\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.procs.values() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for c in self.procs.values_mut() {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

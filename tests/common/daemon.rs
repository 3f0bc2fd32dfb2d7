//! A running `profstore serve` binary for black-box tests, and a minimal
//! HTTP/1.1 client to talk to it.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running daemon; killed on drop if the test did not stop it.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// The daemon's stderr so far, when started with
    /// [`Server::start_capturing`] (echoed to the test's stderr too).
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// [`Server::start`] with the data directory `dir/data`.
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        let (child, addr) = spawn(&dir.path().join("data"), extra);
        Server {
            child,
            addr,
            dir,
            log: Default::default(),
        }
    }

    /// [`Server::start`] with the daemon's stderr collected in `log`.
    pub fn start_capturing(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (mut child, addr) = spawn_with(&dir.path().join("data"), extra, Stdio::piped());
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Server {
            child,
            addr,
            dir,
            log,
        }
    }

    /// Sends `signal` without waiting.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Stops the server with SIGTERM (asserting a clean exit) and starts it
    /// again on the same data directory with `extra` flags.
    pub fn restart(&mut self, extra: &[&str]) {
        assert_eq!(self.signal_and_wait(libc::SIGTERM), Some(0));
        self.start_again(extra);
    }

    /// Kills the server with SIGKILL (no clean shutdown at all) and starts
    /// it again on the same data directory.
    pub fn kill_and_restart(&mut self, extra: &[&str]) {
        assert_eq!(self.signal_and_wait(libc::SIGKILL), None);
        self.start_again(extra);
    }

    /// Starts the server again on the same data directory (after it
    /// exited or was killed).
    pub fn start_again(&mut self, extra: &[&str]) {
        let (child, addr) = spawn(&self.dir.path().join("data"), extra);
        self.child = child;
        self.addr = addr;
    }

    /// Sends `signal` and waits up to 10 s for the exit code (`None` when
    /// killed by a signal).
    pub fn signal_and_wait(&mut self, signal: libc::c_int) -> Option<i32> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not exit within 10 s of signal {signal}");
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        self.signal_and_wait(libc::SIGTERM)
    }

    pub fn call(
        &self,
        method: &str,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Resp {
        http(&self.addr, method, target, content_type, body)
    }

    pub fn get(&self, target: &str) -> Resp {
        self.call("GET", target, None, b"")
    }

    /// GET that must succeed with Prometheus's envelope; returns `data`.
    pub fn data(&self, target: &str) -> Value {
        let r = self.get(target);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let v = r.json();
        assert_eq!(v["status"], "success", "{target}");
        v["data"].clone()
    }

    pub fn write(&self, labels: &str, body: &[u8]) -> Resp {
        let target = format!("/api/v1/write?{}", qs(&[("labels", labels)]));
        self.call("POST", &target, None, body)
    }
}

/// Starts `profstore serve` on an ephemeral port with `data_dir`; returns the
/// child and the address it printed.
fn spawn(data_dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    spawn_with(data_dir, extra, Stdio::inherit())
}

fn spawn_with(data_dir: &std::path::Path, extra: &[&str], stderr: Stdio) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_profstore"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
        .arg("--data-dir")
        .arg(data_dir)
        // The corpus files are years apart, and some writes are stamped
        // now: unless a test sets them, keep block cuts (which reject older
        // profiles afterwards) and retention out of the way.
        .args(if extra.contains(&"--retention") {
            &[][..]
        } else {
            &["--retention", "36500d"][..]
        })
        .args(if extra.contains(&"--block-duration") {
            &[][..]
        } else {
            &["--block-duration", "36500d"][..]
        })
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let addr = listening_on(&mut child);
    (child, addr)
}

/// The address a starting daemon prints first, `listening on ADDR`.
fn listening_on(child: &mut Child) -> String {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn qs(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A minimal HTTP/1.1 client: one request per connection.
pub fn http(
    addr: &str,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Resp {
    try_http(addr, method, target, content_type, body).unwrap()
}

pub fn try_http(
    addr: &str,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<Resp> {
    let headers: Vec<(&str, &str)> = content_type
        .map(|ct| ("Content-Type", ct))
        .into_iter()
        .collect();
    try_http_with(addr, method, target, &headers, body)
}

/// [`try_http`] with any request headers.
pub fn try_http_with(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // The server may answer (413) before reading a large body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        // A server that answered before reading the whole body (413) may
        // reset the connection after its answer: keep what arrived.
        if raw.is_empty() {
            return Err(e);
        }
    }
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_str = std::str::from_utf8(&b[..eol]).unwrap();
        let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16).unwrap();
        b = &b[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

pub fn corpus_file(name: &str) -> Vec<u8> {
    std::fs::read(super::testdata_dir().join(name)).unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Per `instance` label, the sum of every point of every series matching
/// `selector` over all time: what one write per instance adds up to.
pub fn totals_by_instance(srv: &Server, selector: &str) -> std::collections::BTreeMap<String, i64> {
    let data = srv.data(&format!(
        "/api/v1/query_range?{}",
        qs(&[
            ("query", selector),
            ("start", "0"),
            ("end", "4102444800"),
            ("step", "100000000"),
        ])
    ));
    let mut out = std::collections::BTreeMap::new();
    for r in data["result"].as_array().unwrap() {
        let inst = r["metric"]["instance"].as_str().unwrap().to_string();
        for p in r["values"].as_array().unwrap() {
            *out.entry(inst.clone()).or_insert(0) += p[1].as_str().unwrap().parse::<i64>().unwrap();
        }
    }
    out
}

/// The sum of every value of every sample type of a testdata file: what
/// [`totals_by_instance`] gives for one write of it.
pub fn file_total(name: &str) -> i64 {
    let p = super::load(&super::testdata_dir().join(name));
    super::totals(&p).iter().flat_map(|t| t.values()).sum()
}

/// A running `profstore querier`; killed on drop (also when a test fails).
pub struct QuerierProcess {
    pub child: Child,
    pub addr: String,
}

impl QuerierProcess {
    /// Starts `profstore querier --listen 127.0.0.1:0 ARGS`.
    pub fn start(args: &[&str]) -> QuerierProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_profstore"))
            .args(["querier", "--listen", "127.0.0.1:0", "--log-level", "warn"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let addr = listening_on(&mut child);
        QuerierProcess { child, addr }
    }

    pub fn get(&self, target: &str) -> Resp {
        http(&self.addr, "GET", target, None, b"")
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> bool {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.child.wait().unwrap().success()
    }
}

impl Drop for QuerierProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

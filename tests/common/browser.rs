//! A headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, which `scripts/setup-chromium` installs), for testing
//! the web UI in a real browser. The WebDriver protocol is JSON over HTTP;
//! this speaks it with the tests' own HTTP client.
//!
//! [`Browser::start`] returns `None` with a note when Chromium or
//! ChromeDriver is missing, except under `CI`, where that is a failure.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key of an element reference in WebDriver's JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser session; the driver (and its browser) stop on drop.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session.
    pub fn start() -> Option<Browser> {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|p| !std::path::Path::new(p).exists())
            .collect();
        if !missing.is_empty() {
            let note = format!(
                "{} missing: run scripts/setup-chromium (Debian's chromium and chromium-driver)",
                missing.join(" and ")
            );
            if std::env::var_os("CI").is_some() {
                panic!("{note}");
            }
            eprintln!("note: skipping the browser test: {note}");
            return None;
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, v)) = request(&addr, "GET", "/status", b"") {
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let v = b.cmd("POST", "/session", caps);
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        Some(b)
    }

    /// One WebDriver command; its `value`. Panics with the driver's error.
    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if method == "GET" || method == "DELETE" {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        let (status, v) = request(&self.addr, method, path, &body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        assert_eq!(status, 200, "webdriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn session(&self, method: &str, path: &str, body: Value) -> Value {
        self.cmd(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Loads `url` and waits for the load event.
    pub fn goto(&self, url: &str) {
        self.session("POST", "/url", json!({ "url": url }));
    }

    pub fn url(&self) -> String {
        self.session("GET", "/url", Value::Null)
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn refresh(&self) {
        self.session("POST", "/refresh", json!({}));
    }

    pub fn back(&self) {
        self.session("POST", "/back", json!({}));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and
    /// returns what it returns.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// Waits up to 20 s for the expression `expr` to be truthy, and returns
    /// its value; panics with `what` when it never is.
    pub fn wait_for(&self, what: &str, expr: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.exec(
                &format!("try {{ return ({expr}); }} catch (e) {{ return null; }}"),
                json!([]),
            );
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(_) => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let page = self.exec(
                    "return [document.body.dataset.error || '', location.href + '\\n' + [...document.querySelectorAll('input')].map(i => i.id + '=' + i.value).join('\\n') + '\\n' + document.body.innerText.slice(0, 3000)]",
                    json!([]),
                );
                panic!(
                    "timed out waiting for {what} ({expr}); script error: {:?}; the page says:\n{}",
                    page[0].as_str().unwrap_or(""),
                    page[1].as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The first element matching the CSS selector `css`.
    pub fn find(&self, css: &str) -> Value {
        let v = self.session(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        json!({ ELEMENT: v[ELEMENT].clone() })
    }

    fn element_id(e: &Value) -> String {
        e[ELEMENT].as_str().unwrap().to_string()
    }

    /// Clicks the element matching `css` (a real pointer click).
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.session(
            "POST",
            &format!("/element/{}/click", Self::element_id(&e)),
            json!({}),
        );
    }

    /// Types `text` into the element matching `css` (WebDriver key codes
    /// such as `\u{E007}`, Enter, work).
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.session(
            "POST",
            &format!("/element/{}/value", Self::element_id(&e)),
            json!({ "text": text }),
        );
    }

    pub fn clear(&self, css: &str) {
        let e = self.find(css);
        self.session(
            "POST",
            &format!("/element/{}/clear", Self::element_id(&e)),
            json!({}),
        );
    }

    /// Presses the mouse at `from` and releases it at `to`, in pixels from
    /// the centre of the element matching `css`.
    pub fn drag(&self, css: &str, from: (i64, i64), to: (i64, i64)) {
        let e = self.find(css);
        let origin = json!({ ELEMENT: Self::element_id(&e) });
        self.session(
            "POST",
            "/actions",
            json!({"actions": [{
                "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                "actions": [
                    {"type": "pointerMove", "duration": 0, "origin": origin, "x": from.0, "y": from.1},
                    {"type": "pointerDown", "button": 0},
                    {"type": "pointerMove", "duration": 150, "origin": origin, "x": (from.0 + to.0) / 2, "y": to.1},
                    {"type": "pointerMove", "duration": 150, "origin": origin, "x": to.0, "y": to.1},
                    {"type": "pointerUp", "button": 0},
                ],
            }]}),
        );
        self.session("DELETE", "/actions", Value::Null);
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.session("GET", "/screenshot", Value::Null);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(
                &self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                b"",
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One JSON request to the driver on a kept-alive connection's terms: the
/// answer is read to its `Content-Length` (ChromeDriver keeps connections
/// open whatever the request asks).
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut length = None;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut buf = Vec::new();
    match length {
        Some(n) => {
            buf.resize(n, 0);
            r.read_exact(&mut buf)?;
        }
        None => {
            r.read_to_end(&mut buf)?;
        }
    }
    let v = serde_json::from_slice(&buf).unwrap_or(Value::Null);
    Ok((status, v))
}

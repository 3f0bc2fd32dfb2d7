//! A small blocking HTTP client for the daemon's API (plain HTTP only: the
//! `ureq` build has no TLS, so `https://` URLs are refused up front).

use serde_json::Value;
use std::time::Duration;

/// Largest response body read, in bytes (profiles and SVGs can be large).
const MAX_RESPONSE_BYTES: u64 = 1 << 30;

/// The daemon at one base URL.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for `url` (`http://host:port`, optionally with a path
    /// prefix).
    pub fn new(url: &str) -> Result<Client, String> {
        let base = url.trim_end_matches('/').to_string();
        if base.starts_with("https://") {
            return Err(format!(
                "{url}: https is not supported by this client (plain HTTP only)"
            ));
        }
        if !base.starts_with("http://") {
            return Err(format!("{url}: the URL must start with http://"));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        Ok(Client { base, agent })
    }

    fn url(&self, path: &str, params: &[(&str, &str)]) -> String {
        let qs = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        if qs.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{qs}", self.base)
        }
    }

    /// `GET path?params`: the response body, or the server's error message.
    pub fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<Vec<u8>, String> {
        let res = self.agent.get(self.url(path, params)).call();
        self.finish(res)
    }

    /// `POST path?params` with `body`.
    pub fn post(
        &self,
        path: &str,
        params: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        let res = self.agent.post(self.url(path, params)).send(body);
        self.finish(res)
    }

    /// `GET` of a JSON API in Prometheus's envelope: its `data`.
    pub fn data(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let mut v = json(&self.get(path, params)?)?;
        Ok(v["data"].take())
    }

    fn finish(
        &self,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Vec<u8>, String> {
        let res = res.map_err(|e| self.transport_error(e))?;
        let status = res.status();
        let body = res
            .into_body()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| format!("reading the response of {}: {e}", self.base))?;
        if status.is_success() {
            return Ok(body);
        }
        // The API's errors are `{"status":"error","error":"..."}`.
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim()));
        Err(message)
    }

    fn transport_error(&self, e: ureq::Error) -> String {
        let refused = match &e {
            ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
            ureq::Error::ConnectionFailed => true,
            _ => false,
        };
        if refused {
            format!(
                "cannot connect to {} (connection refused): is `profstore serve` running there? \
                 (set --url or PROFSTORE_URL)",
                self.base
            )
        } else {
            format!("request to {} failed: {e}", self.base)
        }
    }
}

/// Parses a JSON response body.
pub fn json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the server answered invalid JSON: {e}"))
}

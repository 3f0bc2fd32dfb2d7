//! The loop of one [`TargetSpec`] and its scrapes: fetch (blocking `ureq`
//! on tokio's blocking pool, bounded by the timeout and the body limit),
//! then decode and ingest through the storage backend (blocking pool
//! again).

use super::metrics::ScrapeMetrics;
use super::target::{Health, TargetSpec, TargetStatus};
use super::ScrapeError;
use crate::engine::Storage;
use crate::ingest::{IngestRequest, IngestSummary};
use parking_lot::Mutex;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// How much of an error response's body goes into the error message.
const ERROR_BODY_BYTES: u64 = 256;

/// What one loop shares with the manager and the targets API.
#[derive(Debug)]
pub struct LoopState {
    /// What the loop scrapes.
    pub spec: TargetSpec,
    /// Its last scrape; written by the loop only.
    pub status: Mutex<TargetStatus>,
}

/// The HTTP agent shared by every loop (keeps connections to targets).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("profstore/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// Runs the loop of `state.spec` until `stop` is closed (its sender
/// dropped). Never returns early on a failed scrape.
pub async fn run(
    state: Arc<LoopState>,
    backend: Arc<dyn Storage>,
    agent: ureq::Agent,
    metrics: ScrapeMetrics,
    mut stop: watch::Receiver<()>,
) {
    let spec = &state.spec;
    let delay = spec.first_delay(SystemTime::now());
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + delay, spec.interval);
    // A scrape longer than the interval (impossible with timeout <=
    // interval, but ingest can be slow) skips ticks rather than bunching.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let labels = spec.metric_labels();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        let started = SystemTime::now();
        let clock = Instant::now();
        let mut bytes = 0u64;
        let result = async {
            let body = tokio::select! {
                // Abandons the fetch: its blocking thread ends within the
                // timeout and its body is dropped.
                _ = stop.changed() => return Ok(None),
                r = fetch(&agent, spec) => r?,
            };
            bytes = body.len() as u64;
            // Not cancellable: the backend is flushed only after every
            // ingest in flight has returned.
            ingest(&backend, spec, body, started).await.map(Some)
        }
        .await;
        let elapsed = clock.elapsed();
        if stop.has_changed().is_err() {
            // Stopped during the ingest: the manager has removed this
            // loop's metrics; do not bring them back.
            return;
        }
        let outcome = match result {
            Ok(None) => return,
            Ok(Some(summary)) => {
                tracing::debug!(
                    job = %spec.job,
                    url = %spec.url,
                    series = summary.series,
                    samples = summary.samples,
                    "scraped"
                );
                metrics.observe(&labels, bytes, elapsed.as_secs_f64(), Ok(()));
                TargetStatus {
                    health: Health::Up,
                    last_error: String::new(),
                    last_scrape: Some(started),
                    last_duration: elapsed,
                }
            }
            Err(e) => {
                tracing::debug!(job = %spec.job, url = %spec.url, error = %e, "scrape failed");
                metrics.observe(&labels, bytes, elapsed.as_secs_f64(), Err(e.reason()));
                TargetStatus {
                    health: Health::Down,
                    last_error: e.to_string(),
                    last_scrape: Some(started),
                    last_duration: elapsed,
                }
            }
        };
        *state.status.lock() = outcome;
    }
}

/// GETs the spec's URL on the blocking pool: the body, at most
/// `body_limit` bytes, within `timeout`.
pub async fn fetch(agent: &ureq::Agent, spec: &TargetSpec) -> Result<Vec<u8>, ScrapeError> {
    let agent = agent.clone();
    let (url, timeout, limit) = (spec.url.clone(), spec.timeout, spec.body_limit);
    tokio::task::spawn_blocking(move || fetch_blocking(&agent, &url, timeout, limit))
        .await
        .map_err(|e| ScrapeError::Internal(format!("scrape task failed: {e}")))?
}

fn fetch_blocking(
    agent: &ureq::Agent,
    url: &str,
    timeout: Duration,
    limit: usize,
) -> Result<Vec<u8>, ScrapeError> {
    let transport = |e: ureq::Error| match e {
        ureq::Error::Timeout(_) => ScrapeError::Timeout(timeout),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            ScrapeError::Timeout(timeout)
        }
        ureq::Error::Io(io) => ScrapeError::Connection(io.to_string()),
        ureq::Error::ConnectionFailed => ScrapeError::Connection("connection failed".into()),
        ureq::Error::HostNotFound => ScrapeError::Connection("host not found".into()),
        ureq::Error::BodyExceedsLimit(_) => ScrapeError::TooLarge(limit),
        other => ScrapeError::Http(other.to_string()),
    };
    let mut res = agent
        .get(url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call()
        .map_err(transport)?;
    let status = res.status().as_u16();
    if !(200..300).contains(&status) {
        let mut head = Vec::new();
        // The body only decorates the message: a failure to read it is
        // ignored.
        let _ = res
            .body_mut()
            .as_reader()
            .take(ERROR_BODY_BYTES)
            .read_to_end(&mut head);
        let body = String::from_utf8_lossy(&head).trim().to_string();
        let detail = if body.is_empty() {
            body
        } else {
            format!(": {body}")
        };
        return Err(ScrapeError::HttpStatus { status, detail });
    }
    let declared = res
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ScrapeError::TooLarge(limit));
    }
    res.body_mut()
        .with_config()
        .limit(limit as u64)
        .read_to_vec()
        .map_err(transport)
}

/// Decodes `body` and ingests it with the spec's name, delta and labels,
/// stamped with the scrape's start time (see the module doc of
/// [`crate::scrape`]).
pub async fn ingest(
    backend: &Arc<dyn Storage>,
    spec: &TargetSpec,
    body: Vec<u8>,
    started: SystemTime,
) -> Result<IngestSummary, ScrapeError> {
    let backend = Arc::clone(backend);
    let name = spec.profile.clone();
    let delta = spec.delta;
    let labels = spec.series_labels();
    let since_epoch = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        let mut profile = crate::pprof::decode(&body, &backend.limits().decode)
            .map_err(ScrapeError::InvalidPprof)?;
        profile.time_nanos = i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX);
        let req = IngestRequest {
            name: Some(name),
            labels,
            delta: Some(delta),
            profile,
            received_at_ms: i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX),
        };
        // The body as received: the log keeps the new time beside it.
        backend
            .ingest_raw(&req, Some(&body))
            .map_err(ScrapeError::Ingest)
    })
    .await
    .map_err(|e| ScrapeError::Internal(format!("ingest task failed: {e}")))?
}

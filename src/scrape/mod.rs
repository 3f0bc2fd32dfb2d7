//! Pull-based collection: profstore scrapes `/debug/pprof` endpoints (Go's
//! `net/http/pprof` and anything that serves pprof the same way) as Parca
//! and Prometheus do.
//!
//! - [`config`]: `scrape_configs` in the `--config` file, validated into
//!   [`ScrapeJob`]s (errors name the file and the line).
//! - [`target`]: a job expands into one [`TargetSpec`] per target × enabled
//!   profile; a spec is everything that decides how a loop scrapes, so two
//!   equal specs are the same loop.
//! - [`scrape_loop`]: the loop of one spec: a first scrape at a jittered
//!   offset in the interval (a hash of the spec, so targets spread over the
//!   interval and keep their slot across reloads), then one per interval;
//!   each scrape is a GET with the timeout and a body size limit, then the
//!   ordinary ingest path ([`crate::engine::Storage::ingest_raw`], the
//!   store's or DuckDB's) on tokio's blocking pool.
//! - [`ScrapeManager`]: the running loops; [`ScrapeManager::apply`] starts
//!   the loops of new specs, stops those of removed specs and leaves equal
//!   specs alone (a reload does not disturb unchanged targets).
//!
//! What a scrape writes: profile name = the `pprof_config` name (`memory`,
//! `process_cpu`, ...), delta = the config's `delta`, labels `job` (the
//! job name), `instance` (the target's `host:port`) and the static labels
//! (which may override `instance`). The profile's time is the scrape's
//! start time (as Prometheus stamps samples): the body's own `time_nanos`
//! is replaced, so a target that serves the same bytes twice still yields
//! two profiles, and the write-ahead log holds the body as received with
//! that time beside it (`ProfileRecord.time_nanos`), so replay rebuilds the
//! same series.
//!
//! Invariants: a failing scrape (timeout, connection, HTTP status, body
//! over the limit, invalid pprof, rejected ingest) is recorded in the
//! target's [`TargetStatus`] and the metrics and never ends its loop, other
//! loops or the daemon; a loop stops when its stop channel closes, between
//! scrapes or during a fetch (the fetch is abandoned), but never during an
//! ingest, so [`ScrapeManager::stop`] returns only when no ingest is in
//! flight and the backend can be flushed.

pub mod config;
pub mod metrics;
pub mod scrape_loop;
pub mod target;

mod manager;

pub use config::{ScrapeConfigFile, ScrapeJob};
pub use manager::{ApplySummary, JobSource, ScrapeManager};
pub use metrics::ScrapeMetrics;
pub use target::{Health, TargetSpec, TargetStatus};

use crate::ingest::IngestError;
use crate::pprof::PprofError;

/// Every way one scrape can fail.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The target did not answer within `scrape_timeout`.
    #[error("scrape timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// No connection (refused, unknown host, reset).
    #[error("connection failed: {0}")]
    Connection(String),
    /// A status other than 2xx.
    #[error("server returned HTTP status {status}{detail}")]
    HttpStatus {
        /// The status code.
        status: u16,
        /// `": "` and the start of the body, or empty.
        detail: String,
    },
    /// The body is over `body_size_limit`.
    #[error("response body too large: over the limit of {0} bytes (body_size_limit)")]
    TooLarge(usize),
    /// Any other HTTP failure.
    #[error("HTTP request failed: {0}")]
    Http(String),
    /// The body is not a valid pprof profile.
    #[error("invalid pprof: {0}")]
    InvalidPprof(#[source] PprofError),
    /// The store rejected the profile.
    #[error("ingest failed: {0}")]
    Ingest(#[source] IngestError),
    /// A task failed (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ScrapeError {
    /// A short name of the failure, for
    /// `profstore_scrape_failures_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Timeout(_) => "timeout",
            ScrapeError::Connection(_) => "connection",
            ScrapeError::HttpStatus { .. } => "http_status",
            ScrapeError::TooLarge(_) => "too_large",
            ScrapeError::Http(_) => "connection",
            ScrapeError::InvalidPprof(e) if e.is_too_large() => "too_large",
            ScrapeError::InvalidPprof(_) => "invalid_pprof",
            ScrapeError::Ingest(_) => "ingest",
            ScrapeError::Internal(_) => "internal",
        }
    }
}

//! `/metrics`: the daemon's own metrics in Prometheus text format
//! (prometheus-client).
//!
//! Every backend:
//!
//! | metric | type | what |
//! |---|---|---|
//! | `profstore_ingested_profiles_total` | counter | profiles accepted |
//! | `profstore_ingested_samples_total` | counter | (series, stack) samples appended |
//! | `profstore_ingested_bytes_total` | counter | pprof bytes accepted (as received) |
//! | `profstore_series` | gauge | series in the store (the head's, for the time-series backend) |
//! | `profstore_http_request_duration_seconds{handler}` | histogram | request latency by route |
//! | `profstore_http_requests_total{handler,code}` | counter | requests by route and status |
//! | `profstore_errors_total{kind}` | counter | failed requests by error kind |
//! | `profstore_scrape_*` | | scrape health, durations, bytes, failures: see [`crate::scrape::metrics`] |
//!
//! The time-series backend only ([`crate::tsdb::metrics`]):
//!
//! | metric | type | what |
//! |---|---|---|
//! | `profstore_meta_entities{kind}` | gauge | mappings, functions, locations, stacks in the meta store |
//! | `profstore_head_chunk_bytes` | gauge | bytes of the head's compressed columns |
//! | `profstore_wal_replayed_records` | gauge | WAL records replayed at start |
//! | `profstore_wal_corruptions` | gauge | damaged WAL ranges found at start |
//! | `profstore_blocks` | gauge | open on-disk blocks |
//! | `profstore_block_bytes` | gauge | bytes of the open blocks' files |
//! | `profstore_block_index_memory_bytes` | gauge | memory held by the open blocks' indexes |
//! | `profstore_block_damaged_reads_total` | counter | chunk reads that found damage in a block |
//! | `profstore_damaged_blocks` | gauge | block files found damaged at start (moved aside) |
//! | `profstore_blocks_written_total` | counter | blocks cut from the head |
//! | `profstore_blocks_deleted_total` | counter | blocks deleted by retention |
//! | `profstore_wal_segments_deleted_total` | counter | WAL segments deleted after a cut or a snapshot |
//! | `profstore_head_series_removed_total` | counter | head series removed with no profiles left |
//! | `profstore_meta_gc_runs_total` | counter | garbage collections of the meta store |
//! | `profstore_meta_gc_deleted_total` | counter | meta entries deleted by garbage collection |
//! | `profstore_maintenance_failures_total` | counter | failed maintenance steps (each logged) |
//!
//! The DuckDB backend only: `profstore_duckdb_memory_bytes` (gauge), the
//! bytes DuckDB's buffer manager holds.
//!
//! The backend's counters and sizes are read when `/metrics` is scraped
//! (the backend-specific ones through the refresher that
//! [`Storage::register_metrics`] returned); the HTTP metrics are recorded
//! by [`track`], a middleware around every route.

use super::AppState;
use crate::engine::{RefreshMetrics, Storage};
use crate::scrape::ScrapeMetrics;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// The kind of a failed request, attached to error responses as an
/// extension so [`track`] can count it.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKind(pub &'static str);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    handler: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    handler: String,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    backend: Arc<dyn Storage>,
    /// Sets the backend's own metrics (see [`Storage::register_metrics`]).
    refresh_backend: RefreshMetrics,
    profiles: Counter,
    samples: Counter,
    bytes: Counter,
    series: Gauge,
    latency: Family<HandlerLabels, Histogram>,
    requests: Family<RequestLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    /// The scrape loops' metrics (registered here, updated by the loops).
    pub scrape: ScrapeMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers every metric: the daemon's and `backend`'s own.
    pub fn new(backend: Arc<dyn Storage>) -> Metrics {
        let mut registry = Registry::with_prefix("profstore");
        let profiles = Counter::default();
        let samples = Counter::default();
        let bytes = Counter::default();
        let series = Gauge::default();
        // 0.5 ms … ~16 s.
        let latency: Family<HandlerLabels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        let requests: Family<RequestLabels, Counter> = Family::default();
        let errors: Family<KindLabels, Counter> = Family::default();
        let scrape = ScrapeMetrics::default();
        let r = &mut registry;
        r.register("ingested_profiles", "Profiles accepted", profiles.clone());
        r.register(
            "ingested_samples",
            "(series, stack) samples appended",
            samples.clone(),
        );
        r.register(
            "ingested_bytes",
            "pprof bytes accepted, as received",
            bytes.clone(),
        );
        r.register(
            "series",
            "Series in the store (the head's, for the time-series backend)",
            series.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by route and status code",
            requests.clone(),
        );
        r.register("errors", "Failed requests by error kind", errors.clone());
        scrape.register(r);
        let refresh_backend = Arc::clone(&backend).register_metrics(r);
        Metrics {
            registry,
            backend,
            refresh_backend,
            profiles,
            samples,
            bytes,
            series,
            latency,
            requests,
            errors,
            scrape,
        }
    }

    /// Renders every metric, reading the backend's figures first (blocks:
    /// call it on the blocking pool).
    pub fn render(&self) -> String {
        let stats = self.backend.ingest_stats();
        // The backend's counters are the source of truth (they only grow):
        // mirror them.
        self.profiles.inner().store(stats.profiles, Relaxed);
        self.samples.inner().store(stats.samples, Relaxed);
        self.bytes.inner().store(stats.bytes, Relaxed);
        self.series
            .set(i64::try_from(self.backend.num_series()).unwrap_or(i64::MAX));
        (self.refresh_backend)();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// `GET /metrics`.
pub async fn metrics(State(st): State<AppState>) -> Response {
    let metrics = st.metrics.clone();
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => super::ApiError::Internal(format!("task failed: {e}")).into_response(),
    }
}

/// Middleware: times every request and counts it by route and status, and
/// failed ones by [`ErrorKind`].
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(req).await;
    let m = &st.metrics;
    m.latency
        .get_or_create(&HandlerLabels {
            handler: handler.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            handler,
            code: response.status().as_u16(),
        })
        .inc();
    if let Some(ErrorKind(kind)) = response.extensions().get::<ErrorKind>() {
        m.errors
            .get_or_create(&KindLabels {
                kind: (*kind).to_string(),
            })
            .inc();
    }
    response
}

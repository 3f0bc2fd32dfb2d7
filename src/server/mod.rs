//! The HTTP daemon: a Prometheus-style JSON API and pprof downloads over a
//! storage [`Storage`](crate::engine::Storage): the time-series [`Tsdb`](crate::tsdb::Tsdb) or,
//! with the `duckdb` feature, the DuckDB
//! [`Columnar`](crate::columnar::Columnar) backend. Nothing here depends on
//! which one.
//!
//! Every handler parses its parameters ([`params`]), runs the backend call
//! on tokio's blocking pool (sled, DuckDB and query work are blocking) and
//! answers JSON
//! in Prometheus's envelope, or a gzipped pprof. Every error goes through
//! [`ApiError::status`], the one place that maps errors to statuses.
//!
//! Requests are bounded ([`limits`]): a body must arrive within
//! `limits.body_timeout`, the queries that read profiles take one of
//! `limits.max_concurrent_queries` slots, and a query may select at most
//! `limits.max_query_series` series and `limits.max_query_samples`
//! samples. [`serve`] runs the router on hyper with a header read timeout.
//!
//! [`connect`] serves Grafana Pyroscope's query API
//! (`querier.v1.QuerierService`) over the Connect protocol, for Grafana's
//! Pyroscope data source, within the same limits.
//!
//! See the "The daemon" section of README.md for the API table.

pub mod connect;
mod error;
mod handlers;
pub mod limits;
mod live;
mod metrics;
pub mod params;
mod peer;
mod pyroscope;
mod scrape;
mod serve;
mod ui;

pub use error::ApiError;
pub use limits::{QuerySlots, ServerLimits};
pub use metrics::{ErrorKind, Metrics};
pub use serve::serve;

use crate::engine::live::{LiveSource, LIVE_ROUTE};
use crate::engine::peer::{PeerWork, PARTIAL_ROUTE};
use crate::engine::Storage;
use crate::scrape::ScrapeManager;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The storage backend.
    pub backend: Arc<dyn Storage>,
    /// Largest request body accepted by `/api/v1/write` (and the Pyroscope
    /// push routes), in bytes.
    pub max_body_bytes: usize,
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// The scrape loops (none until [`ScrapeManager::apply`]).
    pub scrape: Arc<ScrapeManager>,
    /// Bounds on requests (timeouts, query slots, query sizes).
    pub limits: ServerLimits,
    /// The slots of expensive queries (`limits.max_concurrent_queries`).
    pub queries: QuerySlots,
    /// The node's live data for queriers (an ingester's: set with
    /// [`AppState::with_live`]); `None` answers its route with 404.
    pub live: Option<Arc<dyn LiveSource>>,
    /// What reads units for peer queriers (a querier's: set with
    /// [`AppState::with_peer_work`]); `None` answers its route with 404.
    pub peer: Option<Arc<dyn PeerWork>>,
}

impl AppState {
    /// State over `backend` with fresh metrics, no scrape loops (jobs
    /// without `body_size_limit` scrape at most `max_body_bytes`) and the
    /// default [`ServerLimits`].
    pub fn new(backend: Arc<dyn Storage>, max_body_bytes: usize) -> AppState {
        let metrics = Arc::new(Metrics::new(Arc::clone(&backend)));
        let scrape = Arc::new(ScrapeManager::new(
            Arc::clone(&backend),
            metrics.scrape.clone(),
            max_body_bytes,
        ));
        let limits = ServerLimits::default();
        AppState {
            backend,
            max_body_bytes,
            metrics,
            scrape,
            queries: QuerySlots::new(limits.max_concurrent_queries, limits.query_queue_timeout),
            limits,
            live: None,
            peer: None,
        }
    }

    /// The same state serving `live` on [`LIVE_ROUTE`].
    pub fn with_live(mut self, live: Arc<dyn LiveSource>) -> AppState {
        self.live = Some(live);
        self
    }

    /// The same state serving `work` on [`PARTIAL_ROUTE`].
    pub fn with_peer_work(mut self, work: Arc<dyn PeerWork>) -> AppState {
        self.peer = Some(work);
        self
    }

    /// The same state with `limits` (and fresh query slots sized by them).
    pub fn with_limits(mut self, limits: ServerLimits) -> AppState {
        self.queries = QuerySlots::new(limits.max_concurrent_queries, limits.query_queue_timeout);
        self.limits = limits;
        self
    }
}

/// The daemon's routes.
pub fn router(state: AppState) -> Router {
    let max_body = state.max_body_bytes;
    Router::new()
        .route("/api/v1/write", post(handlers::write))
        .route(
            "/push.v1.PusherService/Push",
            post(pyroscope::push).fallback(pyroscope::push_method_not_allowed),
        )
        .route(
            "/ingest",
            post(pyroscope::ingest).layer(DefaultBodyLimit::max(max_body)),
        )
        .route(
            "/api/v1/query_range",
            get(handlers::query_range).post(handlers::query_range),
        )
        .route("/api/v1/query", get(handlers::query).post(handlers::query))
        .route(
            "/api/v1/labels",
            get(handlers::labels).post(handlers::labels),
        )
        .route("/api/v1/label/{name}/values", get(handlers::label_values))
        .route(
            "/api/v1/series",
            get(handlers::series).post(handlers::series),
        )
        .route("/api/v1/profile_types", get(handlers::profile_types))
        .route("/api/v1/profile", get(handlers::profile))
        .route("/api/v1/profile/merge", get(handlers::merge))
        .route("/api/v1/profile/diff", get(handlers::diff))
        .merge(connect::routes())
        .route("/api/v1/targets", get(scrape::targets))
        .route("/-/reload", post(scrape::reload))
        .route(LIVE_ROUTE, get(live::live))
        .route(PARTIAL_ROUTE, post(peer::partial))
        .route("/-/healthy", get(handlers::healthy))
        .route("/-/ready", get(handlers::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/ui", get(ui::redirect))
        .route("/ui/", get(ui::index))
        .route("/ui/targets", get(ui::targets))
        .route("/ui/app.js", get(ui::app_js))
        .route("/ui/style.css", get(ui::style_css))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.limits.body_timeout,
            limits::body_deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Reads a whole body, failing with [`ApiError::BodyTooLarge`] over `limit`
/// bytes and with [`ApiError::BodyTimeout`] when it missed the deadline
/// [`limits::body_deadline`] set.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(ApiError::BodyTooLarge(limit));
                }
                if let Some(t) = s.downcast_ref::<limits::BodyTimeout>() {
                    return Err(ApiError::BodyTimeout(t.0));
                }
                source = s.source();
            }
            Err(ApiError::BadData(format!("reading the request body: {e}")))
        }
    }
}

/// Runs `f(backend)` on the blocking pool.
pub(crate) async fn blocking<T, E, F>(backend: &Arc<dyn Storage>, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&dyn Storage) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    let backend = Arc::clone(backend);
    match tokio::task::spawn_blocking(move || f(&*backend)).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(ApiError::Internal(format!("task failed: {e}"))),
    }
}

/// Runs the expensive query `f(backend)` on the blocking pool in one of the
/// query slots (waiting for one up to the queue timeout). The slot is held
/// until `f` returns, even if the client has gone meanwhile.
pub(crate) async fn query<T, E, F>(st: &AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&dyn Storage) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    let permit = st.queries.acquire().await?;
    blocking(&st.backend, move |s| {
        let _slot = permit;
        f(s)
    })
    .await
}

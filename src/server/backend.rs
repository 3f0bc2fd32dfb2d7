//! [`Backend`]: what the daemon needs of a storage backend, so the server,
//! the Pyroscope routes and the scrape loops run unchanged over the
//! time-series [`Store`] or, with the `duckdb` feature, the
//! [`Columnar`](crate::columnar::Columnar) DuckDB backend.
//!
//! Invariants:
//! - Every method may block (disk, sled, DuckDB): callers run them on
//!   tokio's blocking pool, never on a runtime worker.
//! - [`Backend::ingest_raw`] is the one write path of the daemon; `raw`,
//!   when given, is the pprof exactly as received and is what
//!   [`Backend::ingest_stats`] counts as bytes (a backend may also keep it,
//!   as the store's write-ahead log does).
//! - What is specific to one backend (the store's maintenance thread, head
//!   snapshot, WAL recovery; DuckDB's checkpoint) stays with the code that
//!   opened it (`main.rs`); the server sees a backend only through this
//!   trait, and its backend-specific metrics only through
//!   [`Backend::register_metrics`].

use super::metrics::StoreMetrics;
use crate::engine::{Ingester, Querier};
use crate::ingest::{IngestError, IngestRequest, IngestSummary};
use crate::labels::Labels;
use crate::store::{IngestStats, Limits, Store};
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Sets a backend's own metrics from the backend; the server calls it
/// before each render of `/metrics` (on the blocking pool).
pub type RefreshMetrics = Box<dyn Fn() + Send + Sync>;

/// A storage backend as the daemon uses it (see the module docs).
pub trait Backend: Ingester + Querier + std::fmt::Debug {
    /// The decode and label limits every write is checked against.
    fn limits(&self) -> &Limits;

    /// Ingests `req`; `raw` is the pprof as received, when the caller has
    /// it.
    fn ingest_raw(
        &self,
        req: &IngestRequest,
        raw: Option<&[u8]>,
    ) -> Result<IngestSummary, IngestError>;

    /// Decodes, validates and ingests a pprof body (gzipped or not).
    fn ingest_bytes(
        &self,
        body: &[u8],
        name: Option<String>,
        labels: Labels,
        received_at_ms: i64,
    ) -> Result<IngestSummary, IngestError> {
        let profile = crate::pprof::decode(body, &self.limits().decode)?;
        let req = IngestRequest {
            name,
            labels,
            delta: None,
            profile,
            received_at_ms,
        };
        self.ingest_raw(&req, Some(body))
    }

    /// What the backend accepted since it opened.
    fn ingest_stats(&self) -> IngestStats;

    /// Series stored now (the head's, for the time-series store).
    fn num_series(&self) -> usize;

    /// Registers the backend's own metrics in `registry` (which carries the
    /// `profstore_` prefix) and returns what refreshes them.
    fn register_metrics(self: Arc<Self>, registry: &mut Registry) -> RefreshMetrics;
}

impl Backend for Store {
    fn limits(&self) -> &Limits {
        Store::limits(self)
    }

    fn ingest_raw(
        &self,
        req: &IngestRequest,
        raw: Option<&[u8]>,
    ) -> Result<IngestSummary, IngestError> {
        Store::ingest_raw(self, req, raw)
    }

    fn ingest_bytes(
        &self,
        body: &[u8],
        name: Option<String>,
        labels: Labels,
        received_at_ms: i64,
    ) -> Result<IngestSummary, IngestError> {
        Store::ingest_bytes(self, body, name, labels, received_at_ms)
    }

    fn ingest_stats(&self) -> IngestStats {
        self.stats()
    }

    fn num_series(&self) -> usize {
        self.head().num_series()
    }

    fn register_metrics(self: Arc<Self>, registry: &mut Registry) -> RefreshMetrics {
        let metrics = StoreMetrics::register(registry);
        Box::new(move || metrics.refresh(&self))
    }
}

#[cfg(feature = "duckdb")]
mod duckdb {
    use super::{Backend, RefreshMetrics};
    use crate::columnar::Columnar;
    use crate::ingest::{IngestError, IngestRequest, IngestSummary};
    use crate::labels::Labels;
    use crate::store::{IngestStats, Limits};
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;
    use std::sync::Arc;

    impl Backend for Columnar {
        fn limits(&self) -> &Limits {
            Columnar::limits(self)
        }

        fn ingest_raw(
            &self,
            req: &IngestRequest,
            raw: Option<&[u8]>,
        ) -> Result<IngestSummary, IngestError> {
            Columnar::ingest_raw(self, req, raw)
        }

        fn ingest_bytes(
            &self,
            body: &[u8],
            name: Option<String>,
            labels: Labels,
            received_at_ms: i64,
        ) -> Result<IngestSummary, IngestError> {
            Columnar::ingest_bytes(self, body, name, labels, received_at_ms)
        }

        fn ingest_stats(&self) -> IngestStats {
            self.stats()
        }

        fn num_series(&self) -> usize {
            Columnar::num_series(self)
        }

        fn register_metrics(self: Arc<Self>, registry: &mut Registry) -> RefreshMetrics {
            let memory: Gauge = Gauge::default();
            registry.register(
                "duckdb_memory_bytes",
                "Bytes held by DuckDB's buffer manager (duckdb_memory())",
                memory.clone(),
            );
            Box::new(move || match self.memory_bytes() {
                Ok(b) => {
                    memory.set(i64::try_from(b).unwrap_or(i64::MAX));
                }
                // The gauge keeps its last value; the scrape still answers.
                Err(e) => tracing::warn!("reading DuckDB's memory use: {e}"),
            })
        }
    }
}

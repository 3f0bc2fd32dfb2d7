//! The time-series backend's own metrics, registered by its
//! [`crate::engine::Storage::register_metrics`] and read from the store
//! when `/metrics` is scraped (names and meanings in the module docs of
//! [`crate::server::metrics`]).

use super::Tsdb;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering::Relaxed;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// Gauges read from the store at scrape time: (name, help).
const GAUGES: &[(&str, &str)] = &[
    ("blocks", "Open on-disk blocks"),
    ("block_bytes", "Bytes of the open blocks' files"),
    (
        "block_index_memory_bytes",
        "Memory held by the open blocks' indexes",
    ),
    (
        "damaged_blocks",
        "Block files found damaged at start (moved aside, not served)",
    ),
    (
        "blocks_pending_upload",
        "Blocks cut but not yet shipped to the bucket (an ingester's)",
    ),
];

/// Counters read from the store at scrape time: (name, help).
const COUNTERS: &[(&str, &str)] = &[
    (
        "block_damaged_reads",
        "Chunk reads that found damage in a block",
    ),
    ("blocks_written", "Blocks cut from the head"),
    ("blocks_deleted", "Blocks deleted by retention"),
    (
        "wal_segments_deleted",
        "WAL segments deleted after a block cut or a snapshot",
    ),
    (
        "head_series_removed",
        "Head series removed with no profiles left",
    ),
    ("meta_gc_runs", "Garbage collections of the meta store"),
    (
        "meta_gc_deleted",
        "Meta entries deleted by garbage collection",
    ),
    ("maintenance_failures", "Failed maintenance steps"),
    (
        "blocks_compacted",
        "Blocks written by compaction (late profiles merged into their range)",
    ),
    (
        "late_profiles_compacted",
        "Late profiles (stamped before the newest block's end) compacted into blocks",
    ),
    ("blocks_shipped", "Blocks shipped to the bucket"),
    (
        "block_uploads_failed",
        "Block uploads that failed (each is retried with backoff)",
    ),
];

/// The time-series backend's own metrics (see the module docs), registered
/// by its [`crate::engine::Storage::register_metrics`].
pub struct TsdbMetrics {
    entities: Family<KindLabels, Gauge>,
    chunk_bytes: Gauge,
    wal_records: Gauge,
    wal_corruptions: Gauge,
    /// Gauges and counters read at scrape time, by name.
    gauges: Vec<(&'static str, Gauge)>,
    counters: Vec<(&'static str, Counter)>,
}

impl TsdbMetrics {
    /// Registers the store's metrics in `r`.
    pub fn register(r: &mut Registry) -> TsdbMetrics {
        let m = TsdbMetrics {
            entities: Family::default(),
            chunk_bytes: Gauge::default(),
            wal_records: Gauge::default(),
            wal_corruptions: Gauge::default(),
            gauges: GAUGES
                .iter()
                .map(|(name, help)| {
                    let g = Gauge::default();
                    r.register(*name, *help, g.clone());
                    (*name, g)
                })
                .collect(),
            counters: COUNTERS
                .iter()
                .map(|(name, help)| {
                    let c = Counter::default();
                    r.register(*name, *help, c.clone());
                    (*name, c)
                })
                .collect(),
        };
        r.register(
            "meta_entities",
            "Entities in the meta store by kind",
            m.entities.clone(),
        );
        r.register(
            "head_chunk_bytes",
            "Bytes of the head's compressed columns",
            m.chunk_bytes.clone(),
        );
        r.register(
            "wal_replayed_records",
            "Write-ahead log records replayed at start",
            m.wal_records.clone(),
        );
        r.register(
            "wal_corruptions",
            "Damaged write-ahead log ranges found at start",
            m.wal_corruptions.clone(),
        );
        m
    }

    /// Sets every store metric from `store`.
    pub fn refresh(&self, store: &Tsdb) {
        self.chunk_bytes.set(store.head().chunk_bytes() as i64);
        let c = store.meta().counts();
        for (kind, n) in [
            ("mapping", c.mappings),
            ("function", c.functions),
            ("location", c.locations),
            ("stack", c.stacks),
        ] {
            self.entities
                .get_or_create(&KindLabels { kind: kind.into() })
                .set(n as i64);
        }
        let r = store.recovery();
        self.wal_records.set(r.wal.records as i64);
        self.wal_corruptions.set(r.wal.corruptions.len() as i64);
        let ms = store.maintenance_stats();
        for (name, g) in &self.gauges {
            g.set(match *name {
                "blocks" => ms.blocks as i64,
                "block_bytes" => ms.block_bytes as i64,
                "block_index_memory_bytes" => ms.block_memory_bytes as i64,
                "damaged_blocks" => r.damaged_blocks as i64,
                "blocks_pending_upload" => ms.blocks_pending_upload as i64,
                _ => 0,
            });
        }
        for (name, c) in &self.counters {
            c.inner().store(
                match *name {
                    "block_damaged_reads" => ms.block_damaged_reads,
                    "blocks_written" => ms.blocks_written,
                    "blocks_deleted" => ms.blocks_deleted,
                    "wal_segments_deleted" => ms.wal_segments_deleted,
                    "head_series_removed" => ms.series_removed,
                    "meta_gc_runs" => ms.gc_runs,
                    "meta_gc_deleted" => ms.gc_deleted,
                    "maintenance_failures" => ms.failures,
                    "blocks_compacted" => ms.compactions,
                    "late_profiles_compacted" => ms.late_compacted,
                    "blocks_shipped" => ms.blocks_shipped,
                    "block_uploads_failed" => ms.block_uploads_failed,
                    _ => 0,
                },
                Relaxed,
            );
        }
    }
}

//! [`Tsdb`]: the time-series backend — the head, the blocks, the meta
//! store and the write-ahead log — implementing [`Storage`].
//!
//! # Data directory
//! ```text
//! meta/           the sled meta store
//! wal/            write-ahead log segments (docs/format/wal.md)
//! blocks/         one file per block, <min_time>_<max_time>.block
//!                 (docs/format/block.md)
//! head.snapshot   the head as of the last clean shutdown (block format)
//! ```
//!
//! # Concurrency
//! One `RwLock` (`state`, over the list of open blocks) orders everything:
//! an ingest and a query hold it shared for their whole run; cutting a block
//! (its last step), retention, garbage collection and the shutdown snapshot
//! hold it exclusively. So a query never sees a profile both in a block and
//! in the head, and collection never runs between an ingest's meta lookups
//! and its appends. Maintenance steps are serialized by a second mutex.
//!
//! # Invariants
//! - Blocks are sorted by time and never overlap; the head accepts only
//!   profiles at or after `min_valid` (the newest block's end), so every
//!   series' parts are in time order: blocks, then the head.
//! - A WAL segment is deleted only once every profile it holds is in a
//!   block (whose meta entries are flushed) or in the shutdown snapshot.
//! - Replay is idempotent: a WAL record already in a block is rejected as
//!   too old, one already in the snapshot as out of order; both are skipped.

mod maintenance;

pub use maintenance::{MaintenanceError, MaintenanceStats, SNAPSHOT};

use super::metrics::TsdbMetrics;
use crate::engine::{
    bucket_points, check_step, IngestStats, Limits, Partial, Pick, QueryError, RefreshMetrics,
    SeriesPoints, Storage, TimeRange,
};
use crate::ingest::{IngestError, IngestRequest, IngestSummary};
use crate::model::{Labels, Matcher, ProfileType, Resolver, StorageError, SymbolSource};
use crate::tsdb::append;
use crate::tsdb::block::Block;
use crate::tsdb::head::{Head, HeadError};
use crate::tsdb::meta::{MetaError, MetaStore};
use crate::tsdb::reader::{BlockReader, HeadReader, SeriesGroup, SeriesReader};
use crate::tsdb::wal::{record, RecordType, ReplayStats, Wal, WalError, WalOptions};
use parking_lot::{Condvar, Mutex, RwLock};
use prometheus_client::registry::Registry;
use prost::Message;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Where and how a store keeps its data.
#[derive(Debug, Clone, Default)]
pub struct TsdbConfig {
    /// Data directory; `None` keeps everything in a temporary directory that
    /// is removed when the store is dropped (tests, benchmarks), without a
    /// write-ahead log.
    pub data_dir: Option<PathBuf>,
    /// Limits.
    pub limits: Limits,
    /// The write-ahead log's options (used with a data directory).
    pub wal: WalOptions,
    /// Time span of a block in ms ([`DEFAULT_BLOCK_DURATION_MS`] when 0).
    /// The head is cut into a block once it spans 1.5 times this.
    pub block_duration_ms: i64,
    /// Blocks that end more than this many ms before the newest profile are
    /// deleted; `None` keeps everything.
    pub retention_ms: Option<i64>,
}

/// Default block span: 2 h, as Prometheus.
pub const DEFAULT_BLOCK_DURATION_MS: i64 = 2 * 3600 * 1000;

/// Errors of opening a store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory cannot be created.
    #[error("cannot create {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The meta store cannot be opened.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The write-ahead log cannot be opened.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The blocks directory cannot be read, or the snapshot not loaded.
    #[error(transparent)]
    Tsdb(#[from] MaintenanceError),
}

/// What opening a store replayed from its write-ahead log.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The log's own statistics (records, bytes, damage, time).
    pub wal: ReplayStats,
    /// Profiles ingested again.
    pub profiles: u64,
    /// Records that could not be ingested again (logged one by one).
    pub failed: u64,
    /// Records skipped because their profile was already in a block or the
    /// snapshot.
    pub skipped: u64,
    /// Blocks opened.
    pub blocks: usize,
    /// Block files that could not be opened (damaged; moved aside).
    pub damaged_blocks: usize,
    /// Series loaded from the shutdown snapshot.
    pub snapshot_series: usize,
    /// Time spent opening blocks and loading the snapshot.
    pub load_elapsed: std::time::Duration,
}

#[derive(Debug, Default)]
struct AtomicStats {
    profiles: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
}

/// The time-series backend.
#[derive(Debug)]
pub struct Tsdb {
    meta: Arc<MetaStore>,
    head: Head,
    limits: Limits,
    wal: Option<Wal>,
    recovery: Recovery,
    stats: AtomicStats,
    dir: Option<PathBuf>,
    /// The open blocks, sorted by time; see "Concurrency" above.
    state: RwLock<Vec<Arc<Block>>>,
    /// Profiles before this (ms) are in blocks; the head rejects them.
    min_valid: AtomicI64,
    /// `(min, max)` profile timestamps in the head, when it has any.
    head_bounds: Mutex<Option<(i64, i64)>>,
    block_duration: i64,
    retention: Option<i64>,
    /// Serializes maintenance (cut, retention, collection, snapshot).
    maintenance: Mutex<()>,
    /// Set when the head is due for a cut; the maintenance thread waits on it.
    wake: (Mutex<bool>, Condvar),
    mstats: maintenance::AtomicMaintenance,
    /// The maintenance thread, while one runs.
    background: Mutex<Option<maintenance::Background>>,
}

impl Tsdb {
    /// Opens a store (creating its data directory if needed) and replays its
    /// write-ahead log into the head.
    pub fn open(config: TsdbConfig) -> Result<Tsdb, OpenError> {
        let meta = match &config.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| OpenError::DataDir {
                    path: dir.clone(),
                    source,
                })?;
                MetaStore::open(&dir.join("meta"))?
            }
            None => MetaStore::temporary()?,
        };
        let mut store = Tsdb {
            meta: Arc::new(meta),
            head: Head::new(config.limits.max_series),
            limits: config.limits,
            wal: None,
            recovery: Recovery::default(),
            stats: AtomicStats::default(),
            dir: config.data_dir.clone(),
            state: RwLock::new(Vec::new()),
            min_valid: AtomicI64::new(i64::MIN),
            head_bounds: Mutex::new(None),
            block_duration: if config.block_duration_ms > 0 {
                config.block_duration_ms
            } else {
                DEFAULT_BLOCK_DURATION_MS
            },
            retention: config.retention_ms,
            maintenance: Mutex::new(()),
            wake: (Mutex::new(false), Condvar::new()),
            mstats: maintenance::AtomicMaintenance::default(),
            background: Mutex::new(None),
        };
        if let Some(dir) = &config.data_dir {
            let mut recovery = Recovery::default();
            store.load_blocks_and_snapshot(dir, &mut recovery)?;
            let (wal, stats) = Wal::open(&dir.join("wal"), config.wal, |typ, payload| match typ {
                RecordType::Profile => match store.replay_profile(payload) {
                    Ok(ts) => {
                        recovery.profiles += 1;
                        Some(ts)
                    }
                    Err((
                        ts,
                        e @ (IngestError::TooOld { .. } | IngestError::OutOfOrder { .. }),
                    )) => {
                        recovery.skipped += 1;
                        tracing::debug!("WAL record already stored: {e}");
                        Some(ts)
                    }
                    Err((_, e)) => {
                        recovery.failed += 1;
                        tracing::warn!("WAL record not replayed: {e}");
                        None
                    }
                },
            })?;
            recovery.wal = stats;
            store.wal = Some(wal);
            store.recovery = recovery;
        }
        Ok(store)
    }

    /// Replays one WAL record; returns its profile timestamp, also with the
    /// error when it has one.
    fn replay_profile(&self, payload: &[u8]) -> Result<i64, (i64, IngestError)> {
        self.replay_record(payload).map_err(|e| match e {
            (Some(ts), e) => (ts, e),
            (None, e) => (i64::MIN, e),
        })
    }

    fn replay_record(&self, payload: &[u8]) -> Result<i64, (Option<i64>, IngestError)> {
        let req = record::decode_profile(payload, &self.limits.decode).map_err(|e| (None, e))?;
        let ts = crate::ingest::profile_timestamp(&req);
        append::append(
            &self.head,
            &self.meta,
            &self.limits.labels,
            &req,
            &mut || self.check_time(ts),
        )
        .map_err(|e| (Some(ts), e))?;
        self.note_time(ts);
        Ok(ts)
    }

    /// Rejects a profile older than the newest block's end.
    fn check_time(&self, ts: i64) -> Result<(), IngestError> {
        let min = self.min_valid.load(Relaxed);
        if ts < min {
            return Err(HeadError::TooOld {
                timestamp: ts,
                min_time: min,
            }
            .into());
        }
        Ok(())
    }

    /// Widens the head's time bounds by `ts`; wakes maintenance when the head
    /// is due for a cut.
    fn note_time(&self, ts: i64) {
        let due = {
            let mut b = self.head_bounds.lock();
            let (lo, hi) = b.get_or_insert((ts, ts));
            *lo = (*lo).min(ts);
            *hi = (*hi).max(ts);
            hi.saturating_sub(*lo) >= self.block_duration / 2 * 3
        };
        if due {
            let (flag, cv) = &self.wake;
            *flag.lock() = true;
            cv.notify_all();
        }
    }

    /// What the store accepted since it opened.
    pub fn stats(&self) -> IngestStats {
        IngestStats {
            profiles: self.stats.profiles.load(Relaxed),
            samples: self.stats.samples.load(Relaxed),
            bytes: self.stats.bytes.load(Relaxed),
        }
    }

    fn count(&self, summary: &IngestSummary, bytes: usize) {
        self.stats.profiles.fetch_add(1, Relaxed);
        self.stats
            .samples
            .fetch_add(summary.samples as u64, Relaxed);
        self.stats.bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// What opening the store replayed.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Ingests `req`, logging it first (with `raw`, the pprof bytes as
    /// received, when the caller has them; otherwise the profile is encoded
    /// again). Returns after the log's commit, so the write can be
    /// acknowledged.
    pub fn ingest_raw(
        &self,
        req: &IngestRequest,
        raw: Option<&[u8]>,
    ) -> Result<IngestSummary, IngestError> {
        let _state = self.state.read();
        // The time check runs last among the checks (in `log`), so a request
        // with another mistake is told about that one.
        let ts = crate::ingest::profile_timestamp(req);
        let Some(wal) = &self.wal else {
            let summary = append::append(
                &self.head,
                &self.meta,
                &self.limits.labels,
                req,
                &mut || self.check_time(ts),
            )?;
            self.note_time(ts);
            return Ok(summary);
        };
        let record = record::encode_profile(req, raw);
        let summary = append::append(
            &self.head,
            &self.meta,
            &self.limits.labels,
            req,
            &mut || {
                self.check_time(ts)?;
                Ok(wal.append_at(RecordType::Profile, &record, ts)?)
            },
        )?;
        self.note_time(ts);
        wal.commit()?;
        let bytes = raw.map_or_else(|| req.profile.encoded_len(), <[u8]>::len);
        self.count(&summary, bytes);
        Ok(summary)
    }

    /// A store in a temporary directory with default limits.
    pub fn temporary() -> Result<Tsdb, OpenError> {
        Tsdb::open(TsdbConfig::default())
    }

    /// The meta store.
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Makes the meta store and the write-ahead log durable.
    pub fn flush(&self) -> Result<(), OpenError> {
        self.meta.flush()?;
        if let Some(wal) = &self.wal {
            wal.sync()?;
        }
        Ok(())
    }

    /// The series matching `matchers` with a profile in `range`, each
    /// assembled from its parts in `blocks` and the head, sorted by labels.
    fn select(
        &self,
        blocks: &[Arc<Block>],
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Vec<SeriesGroup> {
        self.select_from(blocks, matchers, range, &mut |_| {})
    }

    /// [`Tsdb::select`], calling `used` with each part (block or head)
    /// that holds a part of a selected series.
    fn select_from(
        &self,
        blocks: &[Arc<Block>],
        matchers: &[Matcher],
        range: TimeRange,
        used: &mut dyn FnMut(&dyn BlockReader),
    ) -> Vec<SeriesGroup> {
        let head = HeadReader {
            head: &self.head,
            meta: &self.meta,
        };
        let parts = blocks
            .iter()
            .map(|b| b as &dyn BlockReader)
            .chain(std::iter::once(&head as &dyn BlockReader));
        let mut groups: BTreeMap<Labels, Vec<Arc<dyn SeriesReader>>> = BTreeMap::new();
        for part in parts.filter(|p| p.overlaps(range.start, range.end)) {
            let series = part.select_series(matchers, range.start, range.end);
            if !series.is_empty() {
                used(part);
            }
            for s in series {
                groups.entry(s.labels().clone()).or_default().push(s);
            }
        }
        groups
            .into_values()
            .map(|parts| SeriesGroup { parts })
            .collect()
    }

    /// The partial result of `pick` over the series matching `matchers`.
    /// Stacks resolve from the symbols of the blocks the series were read
    /// from first, then from the meta store (the head's).
    fn read_partial(&self, matchers: &[Matcher], pick: Pick) -> Result<Partial, QueryError> {
        let blocks = self.state.read();
        let mut symbols = Vec::new();
        let mut failed = None;
        let series = self.select_from(&blocks, matchers, pick.range(), &mut |part| match part
            .symbols()
        {
            Ok(s) => symbols.push(s),
            Err(e) => failed = Some(e),
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        let mut out = Partial {
            types: series.iter().map(|s| s.profile_type().clone()).collect(),
            ..Partial::default()
        };
        if out.types.len() > 1 {
            // The query is an error: reading more would be wasted.
            return Ok(out);
        }
        for s in &series {
            let (start, end) = match pick {
                Pick::All(r) => (r.start, r.end),
                Pick::First(r) => match s.first_in(r.start, r.end) {
                    Some(ts) => (ts, ts),
                    None => continue,
                },
            };
            let mut sums = FxHashMap::default();
            let st = s.merge_into(start, end, &mut sums);
            let mut origin = s.labels().clone();
            for (name, _) in s.pprof_labels() {
                origin.remove(name);
            }
            let mut pprof = s.pprof_label_values();
            pprof.sort();
            let latest = st.reads.iter().map(|r| r.0).max().map(|ts| (ts, st.period));
            out.add_series(
                s.labels(),
                origin.stable_hash(),
                pprof,
                sums,
                &st.reads,
                latest,
            );
        }
        // The head (last among the parts) resolves from the meta store;
        // blocks from their own symbols.
        let sources: Vec<&dyn SymbolSource> = symbols
            .iter()
            .map(|s| s.as_ref() as &dyn SymbolSource)
            .collect();
        let mut resolver = Resolver::new(sources);
        for id in out.stack_ids() {
            out.stacks.insert(id, resolver.stack(id)?);
        }
        Ok(out)
    }
}

impl Storage for Tsdb {
    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn ingest_raw(
        &self,
        req: &IngestRequest,
        raw: Option<&[u8]>,
    ) -> Result<IngestSummary, IngestError> {
        Tsdb::ingest_raw(self, req, raw)
    }

    fn ingest_stats(&self) -> IngestStats {
        self.stats()
    }

    fn num_series(&self) -> usize {
        self.head.num_series()
    }

    fn partial(&self, matchers: &[Matcher], pick: Pick) -> Result<Partial, QueryError> {
        self.read_partial(matchers, pick)
    }

    fn register_metrics(self: Arc<Self>, registry: &mut Registry) -> RefreshMetrics {
        let metrics = TsdbMetrics::register(registry);
        Box::new(move || metrics.refresh(&self))
    }

    fn start_background(self: Arc<Self>) -> Result<(), StorageError> {
        Tsdb::start_maintenance(&self).map_err(|e| StorageError::new("maintenance", e))
    }

    fn close(&self) -> Result<(), StorageError> {
        Tsdb::close(self).map_err(|e| StorageError::new("blocks", e))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>, QueryError> {
        let blocks = self.state.read();
        let mut names = BTreeSet::new();
        for s in self.select(&blocks, matchers, range) {
            for l in s.labels() {
                names.insert(l.name.clone());
            }
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>, QueryError> {
        let blocks = self.state.read();
        let mut values = BTreeSet::new();
        for s in self.select(&blocks, matchers, range) {
            if let Some(v) = s.labels().get(name) {
                values.insert(v.to_string());
            }
        }
        Ok(values.into_iter().collect())
    }

    fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Labels>, QueryError> {
        let blocks = self.state.read();
        let mut v: Vec<Labels> = self
            .select(&blocks, matchers, range)
            .iter()
            .map(|s| s.labels().clone())
            .collect();
        v.sort();
        Ok(v)
    }

    fn profile_types(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<ProfileType>, QueryError> {
        let blocks = self.state.read();
        let types: BTreeSet<ProfileType> = self
            .select(&blocks, matchers, range)
            .iter()
            .map(|s| s.profile_type().clone())
            .collect();
        Ok(types.into_iter().collect())
    }

    fn query_range(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
        step: Option<i64>,
    ) -> Result<Vec<SeriesPoints>, QueryError> {
        check_step(step)?;
        let blocks = self.state.read();
        let mut out = Vec::new();
        for s in self.select(&blocks, matchers, range) {
            let points = s.totals(range.start, range.end);
            let points = match step {
                Some(step) => bucket_points(&points, range, step),
                None => points,
            };
            if !points.is_empty() {
                out.push(SeriesPoints {
                    labels: s.labels().clone(),
                    points,
                });
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

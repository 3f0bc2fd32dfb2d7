//! [`Tsdb`]: the time-series backend — the head, the blocks, the meta
//! store and the write-ahead log — implementing [`Storage`].
//!
//! # Data directory
//! ```text
//! meta/           the sled meta store
//! wal/            write-ahead log segments (docs/format/wal.md)
//! blocks/         one file per block, <min_time>_<max_time>.block (ms,
//!                 max exclusive)
//!                 (docs/format/block.md); *.tmp files are unfinished
//!                 writes (blocks, a querier's live export), deleted at open
//! head.snapshot   the head as of the last clean shutdown (block format)
//! ```
//!
//! # Time
//! A write is accepted when its timestamp lies in the time policy's window
//! ([`crate::ingest::TimePolicy`]: no older than the retention, no later
//! than `max_future` after the wall clock), in any order:
//! - at or after `min_valid` (the newest block's end) it goes to the
//!   **head**, at its place in its series;
//! - before it, to the **late head**, a second [`Head`] for profiles whose
//!   time is already cut into blocks. Compaction (`compact.rs`) later merges
//!   the late head into the blocks of those ranges.
//!
//! Blocks are cut when the wall clock says their range is over (see
//! `maintenance.rs`), never because of a timestamp a writer sent.
//!
//! # Duplicates
//! A series never stores one profile twice: a profile equal (timestamp,
//! duration, period, samples) to one the series holds in the head, the late
//! head or a block is a retry, answered as written and stored once. A
//! different profile at a timestamp the series already has is stored beside
//! it, and queries sum the two, as if two processes had sent them. This also
//! makes WAL replay idempotent: a record already in a block or the snapshot
//! is a duplicate.
//!
//! # Concurrency
//! One `RwLock` (`state`, over the blocks and the late heads) orders
//! everything: an ingest and a query hold it shared for their whole run;
//! cutting a block (its first and last steps), swapping the late head out
//! for compaction and the blocks in, retention, garbage collection and the
//! shutdown snapshot hold it exclusively. So a query never sees a profile
//! twice (in a block and a head), `min_valid` never moves during an ingest,
//! and collection never runs between an ingest's meta lookups and its
//! appends. Maintenance steps are serialized by a second mutex.
//!
//! # Invariants
//! - Listed blocks never overlap in time (after a crash during compaction
//!   files may; opening merges them). The head holds only profiles at or
//!   after `min_valid` as of their append, the late heads only profiles
//!   before it.
//! - A WAL segment is deleted only once every profile it holds is in a
//!   block (whose meta entries are flushed) or in the shutdown snapshot,
//!   and, on an ingester, that block is shipped.

mod compact;
mod disk;
mod live;
mod maintenance;

pub use disk::free_bytes;

pub use maintenance::{MaintenanceError, MaintenanceStats, SNAPSHOT};

use super::metrics::TsdbMetrics;
use crate::bucket::Bucket;
use crate::engine::{
    IngestStats, Limits, Partial, Pick, QueryError, RefreshMetrics, SeriesPoints, Storage,
    TimeRange,
};
use crate::ingest::{IngestError, IngestRequest, IngestSummary};
use crate::model::{Labels, Matcher, ProfileType, StorageError};
use crate::tsdb::append;
use crate::tsdb::block::Block;
use crate::tsdb::chunkset::AppendProfile;
use crate::tsdb::head::Head;
use crate::tsdb::meta::{MetaError, MetaStore};
use crate::tsdb::query;
use crate::tsdb::reader::{BlockReader, HeadReader};
#[cfg(test)]
use crate::tsdb::reader::{SeriesGroup, SeriesReader};
use crate::tsdb::ship::Shipper;
use crate::tsdb::wal::{record, RecordType, ReplayStats, Wal, WalError, WalOptions};
use parking_lot::{Condvar, Mutex, RwLock};
use prometheus_client::registry::Registry;
use prost::Message;
use std::collections::BTreeMap;
#[cfg(test)]
use std::collections::BTreeSet;
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
    /// A range is cut into a block half a block after it ends.
    pub block_duration_ms: i64,
    /// Writes are refused (HTTP 507) while the data directory's filesystem
    /// has less than this many bytes free (0: never); see `disk.rs`.
    pub min_free_bytes: u64,
    /// Most bytes of symbol values (mappings, functions, locations, stacks)
    /// the meta store caches in memory
    /// ([`crate::tsdb::meta::DEFAULT_CACHE_BYTES`] when 0); see
    /// [`MetaStore::open_with_cache`].
    pub meta_cache_bytes: usize,
    /// Where to ship blocks (with a data directory only): an ingester's
    /// bucket; see [`crate::tsdb::ship`].
    pub ship: Option<ShipTo>,
}

/// The bucket an ingester ships its blocks to.
#[derive(Debug, Clone)]
pub struct ShipTo {
    /// The bucket.
    pub bucket: Arc<Bucket>,
    /// The node's external labels (`replica="a"`), written into every
    /// block's descriptor.
    pub external_labels: BTreeMap<String, String>,
}

/// Default reserve of free disk space: 64 MiB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;

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

/// What queries read besides the head, and compaction replaces; see
/// "Concurrency".
#[derive(Debug)]
struct Parts {
    /// The open blocks, sorted by time.
    blocks: Vec<Arc<Block>>,
    /// Profiles before `min_valid`, not yet compacted into blocks.
    late: Arc<Head>,
    /// Late heads being compacted (or whose compaction failed and will be
    /// retried), oldest first.
    compacting: Vec<Arc<Head>>,
}

impl Parts {
    fn heads(&self) -> impl Iterator<Item = &Arc<Head>> {
        self.compacting.iter().chain(std::iter::once(&self.late))
    }
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
    /// The blocks and late heads; see "Concurrency" above.
    state: RwLock<Parts>,
    /// Profiles added to the late head since it was last swapped out.
    late_profiles: AtomicU64,
    /// Wall-clock time (ms) of the late head's first profile, `i64::MAX`
    /// while it is empty.
    late_since: AtomicI64,
    /// When maintenance last sealed idle series (ms, store clock).
    last_seal: AtomicI64,
    /// Profiles before this (ms) are in blocks; the head rejects them.
    min_valid: AtomicI64,
    /// `(min, max)` profile timestamps in the head, when it has any.
    head_bounds: Mutex<Option<(i64, i64)>>,
    block_duration: i64,
    min_free_bytes: u64,
    /// Serializes maintenance (cut, retention, collection, snapshot).
    maintenance: Mutex<()>,
    /// Set when the head is due for a cut; the maintenance thread waits on it.
    wake: (Mutex<bool>, Condvar),
    mstats: maintenance::AtomicMaintenance,
    /// The maintenance thread, while one runs.
    background: Mutex<Option<maintenance::Background>>,
    /// Uploads blocks to a bucket (an ingester).
    shipper: Option<Arc<Shipper>>,
}

impl Tsdb {
    /// Opens a store (creating its data directory if needed) and replays its
    /// write-ahead log into the head.
    pub fn open(config: TsdbConfig) -> Result<Tsdb, OpenError> {
        let cache_bytes = match config.meta_cache_bytes {
            0 => crate::tsdb::meta::DEFAULT_CACHE_BYTES,
            n => n,
        };
        let meta = match &config.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| OpenError::DataDir {
                    path: dir.clone(),
                    source,
                })?;
                MetaStore::open_with_cache(&dir.join("meta"), cache_bytes)?
            }
            None => MetaStore::temporary_with_cache(cache_bytes)?,
        };
        let mut store = Tsdb {
            meta: Arc::new(meta),
            head: Head::new(config.limits.max_series),
            limits: config.limits.clone(),
            wal: None,
            recovery: Recovery::default(),
            stats: AtomicStats::default(),
            dir: config.data_dir.clone(),
            state: RwLock::new(Parts {
                blocks: Vec::new(),
                late: Arc::new(Head::new(config.limits.max_series)),
                compacting: Vec::new(),
            }),
            late_profiles: AtomicU64::new(0),
            late_since: AtomicI64::new(i64::MAX),
            last_seal: AtomicI64::new(i64::MIN),
            min_valid: AtomicI64::new(i64::MIN),
            head_bounds: Mutex::new(None),
            block_duration: if config.block_duration_ms > 0 {
                config.block_duration_ms
            } else {
                DEFAULT_BLOCK_DURATION_MS
            },
            min_free_bytes: config.min_free_bytes,
            maintenance: Mutex::new(()),
            wake: (Mutex::new(false), Condvar::new()),
            mstats: maintenance::AtomicMaintenance::default(),
            background: Mutex::new(None),
            shipper: None,
        };
        if let Some(dir) = &config.data_dir {
            let mut recovery = Recovery::default();
            store.load_blocks_and_snapshot(dir, &mut recovery)?;
            if let Some(to) = &config.ship {
                let shipper = Arc::new(Shipper::new(
                    Arc::clone(&to.bucket),
                    to.external_labels.clone(),
                    dir.join("blocks"),
                ));
                for b in &store.state.read().blocks {
                    shipper.offer(b);
                }
                store.shipper = Some(shipper);
            }
            let (wal, stats) = Wal::open(&dir.join("wal"), config.wal, |typ, payload| match typ {
                RecordType::Profile => match store.replay_record(payload) {
                    Ok((ts, true)) => {
                        recovery.profiles += 1;
                        Some(ts)
                    }
                    Ok((ts, false)) => {
                        recovery.skipped += 1;
                        Some(ts)
                    }
                    Err(e) => {
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

    /// Replays one WAL record: returns its profile's timestamp and whether
    /// it was stored (false: a block or the snapshot holds it already, or
    /// retention has passed it).
    fn replay_record(&self, payload: &[u8]) -> Result<(i64, bool), IngestError> {
        let req = record::decode_profile(payload, &self.limits.decode)?;
        let ts = crate::ingest::profile_timestamp(&req);
        let now = self.limits.time.now_ms();
        if self
            .limits
            .time
            .oldest_ms(now)
            .is_some_and(|oldest| ts < oldest)
        {
            return Ok((ts, false));
        }
        let parts = self.state.read();
        let summary = self.append_at(&parts, &req, ts, &mut || Ok(()))?;
        Ok((ts, !summary.is_duplicate()))
    }

    /// Appends `req` (stamped `ts`) to the head or, before `min_valid`, to
    /// the late head; `log` runs under the series' locks right before the
    /// appends. The caller holds `state` (`parts`) shared.
    fn append_at(
        &self,
        parts: &Parts,
        req: &IngestRequest,
        ts: i64,
        log: &mut dyn FnMut() -> Result<(), IngestError>,
    ) -> Result<IngestSummary, IngestError> {
        let labels = &self.limits.labels;
        if ts >= self.min_valid.load(Relaxed) {
            // Nothing at or after `min_valid` is in a block or a late head.
            let summary = append::append(&self.head, &self.meta, labels, req, &|_, _| false, log)?;
            self.note_time(ts);
            return Ok(summary);
        }
        let held = |labels: &Labels, p: &AppendProfile| self.held_outside_late(parts, labels, p);
        let summary = append::append(&parts.late, &self.meta, labels, req, &held, log)?;
        if !summary.is_duplicate() {
            self.note_late();
        }
        Ok(summary)
    }

    /// True when the head, a late head being compacted or a block holds `p`
    /// in the series `labels` (`p` is before `min_valid`).
    fn held_outside_late(&self, parts: &Parts, labels: &Labels, p: &AppendProfile) -> bool {
        let in_head = |h: &Head| h.get(labels).is_some_and(|s| s.holds(p));
        // The head still holds a range while it is being cut.
        in_head(&self.head)
            || parts.compacting.iter().any(|h| in_head(h))
            || parts.blocks.iter().any(|b| b.holds(labels, p))
    }

    /// Counts a profile added to the late head; wakes maintenance when the
    /// late head is due for compaction.
    fn note_late(&self) {
        let now = self.limits.time.now_ms();
        // Keeps the first arrival: a later one never lowers it.
        let _ = self
            .late_since
            .compare_exchange(i64::MAX, now, Relaxed, Relaxed);
        if self.late_profiles.fetch_add(1, Relaxed) + 1 == maintenance::LATE_MAX_PROFILES {
            self.wake();
        }
    }

    /// Widens the head's time bounds by `ts`; wakes maintenance when the head
    /// is due for a cut.
    fn note_time(&self, ts: i64) {
        let lo = {
            let mut b = self.head_bounds.lock();
            let (lo, hi) = b.get_or_insert((ts, ts));
            *lo = (*lo).min(ts);
            *hi = (*hi).max(ts);
            *lo
        };
        if self.cut_due(lo, self.limits.time.now_ms()) {
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

    /// Counts a stored profile (not a retry) in [`Tsdb::stats`]: `raw`'s
    /// bytes, or the profile's encoded size without them.
    fn count(&self, summary: &IngestSummary, req: &IngestRequest, raw: Option<&[u8]>) {
        if summary.is_duplicate() {
            return;
        }
        let bytes = raw.map_or_else(|| req.profile.encoded_len(), <[u8]>::len);
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
    /// acknowledged. A retry of a stored profile is answered as written
    /// ([`IngestSummary::is_duplicate`]) and changes nothing.
    pub fn ingest_raw(
        &self,
        req: &IngestRequest,
        raw: Option<&[u8]>,
    ) -> Result<IngestSummary, IngestError> {
        let summary = self.log_and_append(req, raw)?;
        if let Some(wal) = &self.wal {
            // Also for a retry: the profile it repeats may not be durable yet.
            wal.commit()?;
        }
        self.count(&summary, req, raw);
        Ok(summary)
    }

    /// Ingests several profiles with one commit of the log: one result per
    /// request, in order. Each profile is checked, logged and appended as
    /// [`Tsdb::ingest_raw`] would (one that fails gets its error and
    /// changes nothing); then the log is committed once — one sync for the
    /// batch under [`SyncPolicy::Always`](crate::tsdb::wal::SyncPolicy) —
    /// and only then are the results returned, so nothing is acknowledged
    /// before it is durable. When that commit fails every stored profile of
    /// the batch gets the error (as [`Tsdb::ingest_raw`]'s does; a retry is
    /// answered as a duplicate and commits again). A caller that gathers
    /// profiles (one scrape round of many targets, a bulk import) trades
    /// its first profile's latency for one sync per batch.
    pub fn ingest_batch(
        &self,
        reqs: &[(&IngestRequest, Option<&[u8]>)],
    ) -> Vec<Result<IngestSummary, IngestError>> {
        let mut results: Vec<Result<IngestSummary, IngestError>> = reqs
            .iter()
            .map(|(req, raw)| self.log_and_append(req, *raw))
            .collect();
        if let Some(wal) = &self.wal {
            if results.iter().any(Result::is_ok) {
                if let Err(e) = wal.commit() {
                    let e = StorageError::from(e);
                    for r in results.iter_mut().filter(|r| r.is_ok()) {
                        *r = Err(IngestError::Storage(e.clone()));
                    }
                }
            }
        }
        for (r, (req, raw)) in results.iter().zip(reqs) {
            if let Ok(summary) = r {
                self.count(summary, req, *raw);
            }
        }
        results
    }

    /// [`Tsdb::ingest_raw`] up to the log's commit: checks `req`, logs it
    /// (not yet committed) and appends it to the head.
    fn log_and_append(
        &self,
        req: &IngestRequest,
        raw: Option<&[u8]>,
    ) -> Result<IngestSummary, IngestError> {
        let ts = crate::ingest::profile_timestamp(req);
        self.limits.time.check(ts)?;
        if let Some(dir) = &self.dir {
            disk::check_reserve(dir, self.min_free_bytes)?;
        }
        let parts = self.state.read();
        let record = self.wal.as_ref().map(|_| record::encode_profile(req, raw));
        self.append_at(&parts, req, ts, &mut || {
            if let (Some(wal), Some(record)) = (&self.wal, &record) {
                wal.append_at(RecordType::Profile, record, ts)?;
            }
            Ok(())
        })
    }

    /// A store in a temporary directory with default limits.
    pub fn temporary() -> Result<Tsdb, OpenError> {
        Tsdb::open(TsdbConfig::default())
    }

    /// The meta store.
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// The shipper, on an ingester.
    pub fn shipper(&self) -> Option<&Arc<Shipper>> {
        self.shipper.as_ref()
    }

    /// Profiles from this time on (ms) may be in a block not yet shipped,
    /// so the WAL segments holding them stay (`i64::MAX`: none is).
    fn unshipped_from(&self) -> i64 {
        self.shipper
            .as_ref()
            .and_then(|s| s.pending_min_time())
            .unwrap_or(i64::MAX)
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

    /// Calls `f` with every part queries read, in the order their stacks
    /// resolve: the blocks in time order, then the late heads, then the
    /// head (last: it resolves from the meta store).
    fn with_parts<R>(&self, parts: &Parts, f: impl FnOnce(&[&dyn BlockReader]) -> R) -> R {
        let heads: Vec<HeadReader<'_>> = parts
            .heads()
            .map(|h| h.as_ref())
            .chain(std::iter::once(&self.head))
            .map(|head| HeadReader {
                head,
                meta: &self.meta,
            })
            .collect();
        let all: Vec<&dyn BlockReader> = parts
            .blocks
            .iter()
            .map(|b| b as &dyn BlockReader)
            .chain(heads.iter().map(|h| h as &dyn BlockReader))
            .collect();
        f(&all)
    }

    /// The series matching `matchers` with a profile in `range` (see
    /// [`query::select`]).
    #[cfg(test)]
    fn select(&self, parts: &Parts, matchers: &[Matcher], range: TimeRange) -> Vec<SeriesGroup> {
        self.with_parts(parts, |all| {
            query::select(all, matchers, range, &mut |_| {})
        })
    }

    /// [`Storage::label_names`] as a scan of every selected series' labels:
    /// the obvious answer the tests check the postings against.
    #[cfg(test)]
    fn label_names_by_scan(&self, matchers: &[Matcher], range: TimeRange) -> Vec<String> {
        let parts = self.state.read();
        let mut names = BTreeSet::new();
        for s in self.select(&parts, matchers, range) {
            for l in s.labels() {
                names.insert(l.name.clone());
            }
        }
        names.into_iter().collect()
    }

    /// [`Storage::label_values`] as a scan (see
    /// [`Tsdb::label_names_by_scan`]).
    #[cfg(test)]
    fn label_values_by_scan(
        &self,
        name: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Vec<String> {
        let parts = self.state.read();
        let mut values = BTreeSet::new();
        for s in self.select(&parts, matchers, range) {
            if let Some(v) = s.labels().get(name) {
                values.insert(v.to_string());
            }
        }
        values.into_iter().collect()
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
        let parts = self.state.read();
        self.with_parts(&parts, |all| query::partial(all, matchers, pick))
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

    /// The union over the parts (blocks, late heads, head) of each part's
    /// answer ([`BlockReader::label_names`]): the names of the series with
    /// a profile in `range` (reserved `__` names such as `__name__`
    /// included), as a scan of the selected series would give. A part
    /// whose time range misses `range` adds nothing; a part whose every
    /// series has a profile in `range` answers from its postings, any other
    /// from its selected series' labels (see [`crate::tsdb::index::labels`]).
    fn label_names(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>, QueryError> {
        let parts = self.state.read();
        Ok(self.with_parts(&parts, |all| query::label_names(all, matchers, range)))
    }

    /// The values of `name` over the series [`Storage::label_names`] reads,
    /// found the same way, part by part.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>, QueryError> {
        let parts = self.state.read();
        Ok(self.with_parts(&parts, |all| {
            query::label_values(all, name, matchers, range)
        }))
    }

    fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Labels>, QueryError> {
        let parts = self.state.read();
        Ok(self.with_parts(&parts, |all| query::series(all, matchers, range)))
    }

    fn profile_types(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<ProfileType>, QueryError> {
        let parts = self.state.read();
        Ok(self.with_parts(&parts, |all| query::profile_types(all, matchers, range)))
    }

    fn query_range(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
        step: Option<i64>,
    ) -> Result<Vec<SeriesPoints>, QueryError> {
        let parts = self.state.read();
        self.with_parts(&parts, |all| query::query_range(all, matchers, range, step))
    }
}

#[cfg(test)]
mod tests;

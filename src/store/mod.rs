//! [`Store`]: the time-series backend — the head, the blocks, the meta
//! store and the write-ahead log — implementing [`Ingester`] and
//! [`Querier`].
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

mod compact;

pub use compact::{MaintenanceStats, StoreError};

use crate::block::Block;
use crate::engine::{
    bucket_points, Ingester, Querier, QueryError, SeriesPoints, TimeRange, SINGLE_WINDOW_MS,
};
use crate::head::{Head, HeadError, MergeStats};
use crate::index::{MatchOp, Matcher};
use crate::ingest::{self, IngestError, IngestRequest, IngestSummary, LabelLimits};
use crate::labels::{Labels, METRIC_NAME};
use crate::meta::{MetaError, MetaStore, StackId, SymbolSource};
use crate::pprof::DecodeLimits;
use crate::profile_type::ProfileType;
use crate::proto::wal::{Label as WalLabel, ProfileRecord as WalProfile};
use crate::query::{Profile, Resolver, Sample};
use crate::reader::{SeriesGroup, SeriesReader};
use crate::wal::{RecordType, ReplayStats, Wal, WalError, WalOptions};
use parking_lot::{Condvar, Mutex, RwLock};
use prost::Message;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// One series' share of a merge: its pprof string labels, per-stack sums,
/// the hash of its labels without the pprof ones (the profile's origin) and
/// the `(timestamp, duration)` of the profiles it read.
struct SeriesPart {
    pprof_labels: Vec<(String, String)>,
    sums: FxHashMap<StackId, i64>,
    origin: u64,
    reads: Vec<(i64, i64)>,
}

impl SeriesPart {
    fn new(
        series: &dyn SeriesReader,
        sums: FxHashMap<StackId, i64>,
        stats: &MergeStats,
    ) -> SeriesPart {
        let mut origin = series.labels().clone();
        for (name, _) in series.pprof_labels() {
            origin.remove(name);
        }
        let mut pprof_labels = series.pprof_label_values();
        pprof_labels.sort();
        SeriesPart {
            pprof_labels,
            sums,
            origin: origin.stable_hash(),
            reads: stats.reads.clone(),
        }
    }
}

/// All limits of a store.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Limits on pprof bodies.
    pub decode: DecodeLimits,
    /// Limits on labels.
    pub labels: LabelLimits,
    /// Series in the store.
    pub max_series: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            decode: DecodeLimits::default(),
            labels: LabelLimits::default(),
            max_series: 1_000_000,
        }
    }
}

/// Where and how a store keeps its data.
#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
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
    Store(#[from] StoreError),
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

/// Running totals of what a store accepted since it opened (replay not
/// included).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    /// Profiles accepted.
    pub profiles: u64,
    /// (series, stack) samples appended.
    pub samples: u64,
    /// pprof bytes accepted (as received, or as encoded again when the
    /// caller passed a decoded profile).
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct AtomicStats {
    profiles: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
}

/// The time-series store.
#[derive(Debug)]
pub struct Store {
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
    mstats: compact::AtomicMaintenance,
}

impl Store {
    /// Opens a store (creating its data directory if needed) and replays its
    /// write-ahead log into the head.
    pub fn open(config: StoreConfig) -> Result<Store, OpenError> {
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
        let mut store = Store {
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
            mstats: compact::AtomicMaintenance::default(),
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
                    Err((ts, IngestError::Head(e)))
                        if matches!(e, HeadError::TooOld { .. } | HeadError::OutOfOrder { .. }) =>
                    {
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
        let r = WalProfile::decode(payload).map_err(|e| {
            (
                None,
                IngestError::InvalidLabels(format!("undecodable WAL profile record: {e}")),
            )
        })?;
        let mut labels = Labels::new();
        for l in r.labels {
            labels.set(l.name, l.value);
        }
        let req = IngestRequest {
            name: (!r.name.is_empty()).then_some(r.name),
            labels,
            delta: match r.delta {
                1 => Some(false),
                2 => Some(true),
                _ => None,
            },
            profile: crate::pprof::decode(&r.pprof, &self.limits.decode)
                .map_err(|e| (None, e.into()))?,
            received_at_ms: r.received_at_ms,
        };
        let ts = ingest::profile_timestamp(&req);
        ingest::ingest(
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
        let ts = ingest::profile_timestamp(req);
        let Some(wal) = &self.wal else {
            let summary = ingest::ingest(
                &self.head,
                &self.meta,
                &self.limits.labels,
                req,
                &mut || self.check_time(ts),
            )?;
            self.note_time(ts);
            return Ok(summary);
        };
        let record = WalProfile {
            received_at_ms: req.received_at_ms,
            name: req.name.clone().unwrap_or_default(),
            labels: req
                .labels
                .iter()
                .map(|l| WalLabel {
                    name: l.name.clone(),
                    value: l.value.clone(),
                })
                .collect(),
            delta: match req.delta {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            },
            pprof: match raw {
                Some(b) => b.to_vec(),
                None => crate::pprof::encode(&req.profile),
            },
        }
        .encode_to_vec();
        let summary = ingest::ingest(
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
    pub fn temporary() -> Result<Store, OpenError> {
        Store::open(StoreConfig::default())
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

    /// Decodes, validates and ingests a pprof body (gzipped or not).
    pub fn ingest_bytes(
        &self,
        body: &[u8],
        name: Option<String>,
        labels: Labels,
        received_at_ms: i64,
    ) -> Result<IngestSummary, IngestError> {
        let profile = crate::pprof::decode(body, &self.limits.decode)?;
        let req = IngestRequest {
            name,
            labels,
            delta: None,
            profile,
            received_at_ms,
        };
        self.ingest_raw(&req, Some(body))
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
        self.select_from(blocks, matchers, range, &mut Vec::new())
    }

    /// [`Store::select`], also pushing to `used` each block that holds a
    /// part of a selected series.
    fn select_from(
        &self,
        blocks: &[Arc<Block>],
        matchers: &[Matcher],
        range: TimeRange,
        used: &mut Vec<Arc<Block>>,
    ) -> Vec<SeriesGroup> {
        let mut groups: BTreeMap<Labels, Vec<Arc<dyn SeriesReader>>> = BTreeMap::new();
        for b in blocks.iter().filter(|b| b.overlaps(range.start, range.end)) {
            let mut any = false;
            for s in b.select(matchers, range.start, range.end) {
                if SeriesReader::overlaps(&s, range.start, range.end) {
                    any = true;
                    groups
                        .entry(s.labels().clone())
                        .or_default()
                        .push(Arc::new(s));
                }
            }
            if any {
                used.push(b.clone());
            }
        }
        for s in self.head.select_in_range(matchers, range.start, range.end) {
            groups
                .entry(s.labels.clone())
                .or_default()
                .push(s as Arc<dyn SeriesReader>);
        }
        groups
            .into_values()
            .map(|parts| SeriesGroup { parts })
            .collect()
    }

    /// The single profile type of `series`, or the error for zero or several.
    fn one_type(series: &[SeriesGroup], matchers: &[Matcher]) -> Result<ProfileType, QueryError> {
        let types: BTreeSet<&ProfileType> = series.iter().map(|s| s.profile_type()).collect();
        match types.len() {
            1 => Ok(types
                .into_iter()
                .next()
                .cloned()
                .unwrap_or_else(|| unreachable!())),
            0 => matchers
                .iter()
                .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
                .and_then(|m| ProfileType::parse(&m.value).ok())
                .ok_or_else(|| {
                    QueryError::NoData(
                        "no series match the selector in the range, and it names no profile type"
                            .into(),
                    )
                }),
            _ => Err(QueryError::MultipleProfileTypes(
                types.iter().map(|t| t.to_string()).collect(),
            )),
        }
    }

    /// Merges per-series accumulations into a resolved profile. The
    /// duration counts each ingested profile once, although a profile with
    /// pprof string labels is split over several series.
    ///
    /// Stacks resolve from the symbols of `blocks` (the blocks the parts
    /// were read from) first, then from the meta store (the head's).
    fn build(
        &self,
        profile_type: ProfileType,
        parts: Vec<SeriesPart>,
        stats: MergeStats,
        blocks: &[Arc<Block>],
    ) -> Result<Profile, QueryError> {
        let mut seen: BTreeSet<(u64, i64)> = BTreeSet::new();
        let mut duration: i64 = 0;
        for part in &parts {
            for &(ts, d) in &part.reads {
                if seen.insert((part.origin, ts)) {
                    duration = duration.saturating_add(d);
                }
            }
        }
        let mut by_labels: BTreeMap<Vec<(String, String)>, FxHashMap<StackId, i64>> =
            BTreeMap::new();
        for part in parts {
            let e = by_labels.entry(part.pprof_labels).or_default();
            for (k, v) in part.sums {
                let x = e.entry(k).or_insert(0);
                *x = x.wrapping_add(v);
            }
        }
        let symbols = blocks
            .iter()
            .map(|b| b.symbols())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueryError::Meta(MetaError::Corrupt(e.to_string())))?;
        let mut sources: Vec<&dyn SymbolSource> = Vec::with_capacity(symbols.len() + 1);
        sources.extend(symbols.iter().map(|s| s.as_ref() as &dyn SymbolSource));
        sources.push(self.meta.as_ref());
        let mut resolver = Resolver::new(sources);
        let mut samples = Vec::new();
        for (labels, acc) in by_labels {
            let mut stacks: Vec<(StackId, i64)> =
                acc.into_iter().filter(|(_, v)| *v != 0).collect();
            stacks.sort_unstable_by_key(|(k, _)| *k);
            for (id, value) in stacks {
                samples.push(Sample {
                    stack: resolver.stack(id)?,
                    labels: labels.clone(),
                    value,
                });
            }
        }
        Ok(Profile {
            profile_type,
            time_ms: if stats.profiles == 0 {
                0
            } else {
                stats.min_time
            },
            duration_ns: duration,
            period: stats.period,
            samples,
        })
    }
}

impl Ingester for Store {
    fn ingest(&self, req: IngestRequest) -> Result<IngestSummary, IngestError> {
        self.ingest_raw(&req, None)
    }
}

impl Querier for Store {
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
        if let Some(step) = step {
            if step <= 0 {
                return Err(QueryError::InvalidRange(format!(
                    "step {step} ms must be positive"
                )));
            }
        }
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

    fn single(&self, matchers: &[Matcher], t: i64) -> Result<Profile, QueryError> {
        let end = t.saturating_add(SINGLE_WINDOW_MS);
        let blocks = self.state.read();
        let mut used = Vec::new();
        let series = self.select_from(&blocks, matchers, TimeRange { start: t, end }, &mut used);
        let pt = Self::one_type(&series, matchers)?;
        let mut stats = MergeStats::empty();
        let mut parts = Vec::with_capacity(series.len());
        for s in &series {
            if let Some(ts) = s.first_in(t, end) {
                let mut acc = FxHashMap::default();
                let st = s.merge_into(ts, ts, &mut acc);
                stats.add(&st);
                parts.push(SeriesPart::new(s, acc, &st));
            }
        }
        self.build(pt, parts, stats, &used)
    }

    fn merge(&self, matchers: &[Matcher], range: TimeRange) -> Result<Profile, QueryError> {
        let blocks = self.state.read();
        let mut used = Vec::new();
        let series = self.select_from(&blocks, matchers, range, &mut used);
        let pt = Self::one_type(&series, matchers)?;
        let mut stats = MergeStats::empty();
        let mut parts = Vec::with_capacity(series.len());
        for s in &series {
            let mut acc = FxHashMap::default();
            let st = s.merge_into(range.start, range.end, &mut acc);
            stats.add(&st);
            parts.push(SeriesPart::new(s, acc, &st));
        }
        self.build(pt, parts, stats, &used)
    }
}

//! The querier: a stateless node that answers the engine's queries over
//! the blocks in a bucket (what ingesters shipped; see
//! [`crate::tsdb::ship`]).
//!
//! [`Querier`] implements [`Storage`] with the time-series backend's own
//! read code ([`crate::tsdb::query`]) over remote blocks: each is opened
//! as a [`Block`] whose bytes come from the bucket in ranges through a
//! bounded disk cache ([`cache`]). A block's index (labels, postings) is
//! kept in memory once opened, its symbols once a query needed them.
//! Writes are refused ([`IngestError::ReadOnly`]).
//!
//! # The block list
//! [`Querier::sync`] lists `blocks/*/meta.json`, opens the blocks it has not
//! seen, forgets those gone from the bucket, and ignores every block whose
//! id is among another block's `sources` (a compaction's or a late
//! rewrite's replacement holds all its profiles). A block whose descriptor
//! or file is bad (another version, a CRC mismatch, not its descriptor's)
//! is logged, counted and left out; one the bucket does not answer for
//! fails the sync, which keeps the previous list. The background thread
//! syncs every `sync_interval`.
//!
//! # Streams and replicas
//! A block's stream is its external labels without the dedup label
//! (`--dedup-label replica`; without one, all of them). Blocks of one
//! stream may overlap in time: replicas (ingesters that received the same
//! writes), or a compacted block and a later rewrite of part of its range
//! by an ingester that got late profiles. Where they overlap, a series'
//! profiles at one timestamp are read from one block only, the one
//! committed last (`created_ms`; ties by dedup label value) among those
//! with a profile there: a profile two ingesters both received counts
//! once, one only one of them got still counts, and a rewrite's late
//! profiles count. The compactor merges blocks by the same rule, so its
//! blocks answer as their inputs did.
//!
//! # Live data
//! With ingesters ([`QuerierConfig::ingesters`], `--ingesters`), each sync
//! first fetches every ingester's live data (what it has not shipped;
//! [`crate::engine::live`]), then lists the bucket: a block shipped in
//! between is in one or both, never in neither. A live block is one more
//! block of its ingester's stream, ranked first ([`live`]); an ingester
//! whose fetch fails keeps its last live data until one succeeds.
//!
//! # Invariants
//! - A query reads the block list as of one sync: it never sees a
//!   replacement and the block it replaces together.
//! - A listed block's file matches its descriptor (size and index CRC32).

pub mod cache;
pub mod live;
pub mod peers;
pub mod wire;

use crate::bucket::{Bucket, BucketError};
use crate::engine::peer::{PeerError, PeerWork};
use crate::engine::{
    IngestStats, Limits, Partial, Pick, QueryError, RefreshMetrics, SeriesPoints, Storage,
    TimeRange,
};
use crate::ingest::{IngestError, IngestRequest, IngestSummary};
use crate::model::{
    Labels, Matcher, ProfileType, StorageError, SymbolChain, SymbolError, SymbolSource,
};
use crate::tsdb::block::{Block, BlockError, BlockSource};
use crate::tsdb::query;
use crate::tsdb::reader::{BlockReader, Replica, SeriesReader};
use crate::tsdb::ship::{Descriptor, BLOCKS, DESCRIPTOR};
use cache::RangeCache;
use parking_lot::{Condvar, Mutex, RwLock};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Default bound of the disk cache: 1 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;
/// Default time between two listings of the bucket.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// Errors of opening a querier.
#[derive(Debug, thiserror::Error)]
pub enum QuerierError {
    /// The cache directory cannot be prepared.
    #[error("cache directory {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The bucket failed.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// A listed block could not be read from the bucket (the sync keeps
    /// the previous block list).
    #[error("block {id}: {reason}")]
    Unavailable {
        /// The block.
        id: String,
        /// What failed.
        reason: String,
    },
}

thread_local! {
    /// Range reads of remote blocks that failed on this thread since the
    /// current query began: a query runs on one thread, and one whose
    /// blocks could not all be read is an error, not a partial answer.
    static FAILED_READS: std::cell::Cell<FailedReads> =
        const { std::cell::Cell::new(FailedReads { all: 0, gone: 0 }) };
}

/// Range reads that failed during one [`read_blocks`].
#[derive(Debug, Clone, Copy, Default)]
struct FailedReads {
    /// Every failed read.
    all: u64,
    /// Those of a block file that is no longer in the bucket.
    gone: u64,
}

impl FailedReads {
    /// Whether every failure was a deleted block file: a block replaced
    /// (and deleted) since the last sync, whose replacement the next
    /// listing holds.
    fn only_gone(self) -> bool {
        self.all > 0 && self.gone == self.all
    }

    fn error(self) -> QueryError {
        QueryError::Storage(StorageError::new(
            "bucket",
            format!(
                "{} reads of blocks from the bucket failed; try again",
                self.all
            ),
        ))
    }
}

/// Why a block could not be opened.
enum OpenFail {
    /// The bucket did not answer: the block may be fine.
    Bucket(String),
    /// The descriptor or the block is bad: it stays left out.
    Bad(String),
}

/// How a querier reads.
#[derive(Debug, Clone)]
pub struct QuerierConfig {
    /// The bucket.
    pub bucket: Arc<Bucket>,
    /// Where block ranges are cached (`None`: not cached).
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the cache holds.
    pub cache_bytes: u64,
    /// The limits (only the decode and label limits of queries apply).
    pub limits: Limits,
    /// Time between two listings of the bucket by the background thread.
    pub sync_interval: Duration,
    /// The external label that tells replicas apart (`replica`): blocks
    /// whose external labels differ only in it hold copies of one stream,
    /// and each profile counts once (see [`Replica`]). `None`: every block
    /// adds up.
    pub dedup_label: Option<String>,
    /// The ingesters whose live data (profiles not shipped yet) queries
    /// read too, fetched at every sync (see [`live`]).
    pub ingesters: live::Ingesters,
    /// The queriers merges are shared with (see [`peers`]); none: every
    /// query is read here.
    pub peers: peers::Peers,
}

/// A block in the bucket, read in ranges through the cache.
#[derive(Debug)]
struct Remote {
    bucket: Arc<Bucket>,
    id: String,
    key: String,
    len: u64,
    cache: Arc<RangeCache>,
}

impl BlockSource for Remote {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.len)
    }
    fn read_at(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        if let Some(b) = self.cache.get(&self.id, offset, len) {
            return Ok(b);
        }
        let b = self.bucket.get_range(&self.key, offset, len).map_err(|e| {
            let gone = e.is_not_found();
            FAILED_READS.with(|f| {
                let mut n = f.get();
                n.all += 1;
                n.gone += u64::from(gone);
                f.set(n);
            });
            if gone {
                std::io::Error::new(std::io::ErrorKind::NotFound, e)
            } else {
                std::io::Error::other(e)
            }
        })?;
        if b.len() as u64 != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} bytes at {offset}, want {len}", b.len()),
            ));
        }
        self.cache.put(&self.id, offset, &b);
        Ok(b)
    }
}

/// A listed block.
#[derive(Debug, Clone)]
pub struct ListedBlock {
    /// Its descriptor.
    pub descriptor: Descriptor,
    /// The block, read from the bucket.
    pub block: Arc<Block>,
    /// Its stream and rank (set at each sync).
    pub replica: Option<Replica>,
}

/// A listed block as a part of a query: the block, and its replica.
struct Part<'a>(&'a ListedBlock);

impl BlockReader for Part<'_> {
    fn overlaps(&self, start: i64, end: i64) -> bool {
        self.0.block.overlaps(start, end)
    }
    fn select_series(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Vec<Arc<dyn SeriesReader>> {
        BlockReader::select_series(&self.0.block, matchers, start, end)
    }
    fn label_names(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<String> {
        BlockReader::label_names(&self.0.block, matchers, start, end)
    }
    fn label_values(&self, name: &str, matchers: &[Matcher], start: i64, end: i64) -> Vec<String> {
        BlockReader::label_values(&self.0.block, name, matchers, start, end)
    }
    fn symbols(&self) -> Result<Arc<dyn SymbolSource + Send + Sync>, SymbolError> {
        BlockReader::symbols(&self.0.block)
    }
    fn replica(&self) -> Option<Replica> {
        self.0.replica
    }
    fn sample_label_names(&self) -> Vec<String> {
        BlockReader::sample_label_names(&self.0.block)
    }
}

/// The HTTP client of a querier's requests to other nodes (ingesters,
/// peers): statuses as values, at most `timeout` per request.
fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .user_agent(concat!("profstore-querier/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// A block's stream: its external labels without `dedup_label`.
pub fn stream_of(
    labels: &BTreeMap<String, String>,
    dedup_label: Option<&str>,
) -> BTreeMap<String, String> {
    let mut stream = labels.clone();
    if let Some(l) = dedup_label {
        stream.remove(l);
    }
    stream
}

/// The [`Replica`] of each block of `blocks` (see the module docs): its
/// stream is its external labels without `dedup_label`; within a stream,
/// blocks rank by commit time, the latest first, then by their
/// `dedup_label` value, then by id.
pub fn number_replicas(blocks: &[&Descriptor], dedup_label: Option<&str>) -> Vec<Replica> {
    let streams: BTreeSet<BTreeMap<String, String>> = blocks
        .iter()
        .map(|d| stream_of(&d.external_labels, dedup_label))
        .collect();
    let stream_ids: BTreeMap<&BTreeMap<String, String>, u32> = streams
        .iter()
        .enumerate()
        .map(|(i, s)| (s, i as u32))
        .collect();
    let value = |d: &Descriptor| {
        dedup_label
            .and_then(|l| d.external_labels.get(l).cloned())
            .unwrap_or_default()
    };
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (blocks[a], blocks[b]);
        (std::cmp::Reverse(x.created_ms), value(x), &x.id).cmp(&(
            std::cmp::Reverse(y.created_ms),
            value(y),
            &y.id,
        ))
    });
    let mut next: BTreeMap<u32, u32> = BTreeMap::new();
    let mut out = vec![Replica { stream: 0, rank: 0 }; blocks.len()];
    for i in order {
        let stream = stream_ids[&stream_of(&blocks[i].external_labels, dedup_label)];
        let rank = next.entry(stream).or_insert(0);
        out[i] = Replica {
            stream,
            rank: *rank,
        };
        *rank += 1;
    }
    out
}

/// What one sync found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    /// Blocks listed for queries after it.
    pub blocks: usize,
    /// Blocks opened by it.
    pub opened: usize,
    /// Blocks ignored because another block replaces them.
    pub replaced: usize,
    /// Blocks left out because their descriptor or file is unreadable.
    pub unreadable: usize,
    /// Ingesters whose live data queries read.
    pub live: usize,
}

#[derive(Debug, Default)]
struct Counters {
    syncs: AtomicU64,
    sync_failures: AtomicU64,
    unreadable: AtomicU64,
    live_failures: AtomicU64,
    /// Queries read again after a sync because a block was gone.
    resyncs: AtomicU64,
    /// What the shared merges did, summed.
    share: Mutex<peers::ShareStats>,
}

/// The querier (see the module docs).
#[derive(Debug)]
pub struct Querier {
    config: QuerierConfig,
    cache: Arc<RangeCache>,
    /// The blocks queries read, sorted by time, as of the last sync.
    blocks: RwLock<Arc<Vec<ListedBlock>>>,
    /// The blocks the last sync found replaced by others.
    replaced: RwLock<Vec<Descriptor>>,
    /// Each ingester's live data as of its last successful fetch.
    live: Mutex<BTreeMap<String, ListedBlock>>,
    /// Blocks opened for a peer's request that the last sync did not
    /// list (taken into the list by the next sync that finds them).
    on_demand: Mutex<BTreeMap<String, ListedBlock>>,
    /// Set after the first successful sync.
    synced: AtomicBool,
    /// One sync at a time.
    syncing: Mutex<()>,
    counters: Counters,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn read_only() -> IngestError {
    IngestError::ReadOnly(
        "this node is a querier: send profiles to an ingester (`profstore serve`)".into(),
    )
}

impl Querier {
    /// A querier over `config.bucket`; nothing is read before the first
    /// sync (by [`Querier::sync`], the background thread, or the first
    /// query).
    pub fn open(config: QuerierConfig) -> Result<Querier, QuerierError> {
        let cache =
            RangeCache::new(config.cache_dir.clone(), config.cache_bytes).map_err(|source| {
                QuerierError::Cache {
                    path: config.cache_dir.clone().unwrap_or_default(),
                    source,
                }
            })?;
        Ok(Querier {
            config,
            cache: Arc::new(cache),
            blocks: RwLock::new(Arc::new(Vec::new())),
            replaced: RwLock::new(Vec::new()),
            live: Mutex::new(BTreeMap::new()),
            on_demand: Mutex::new(BTreeMap::new()),
            synced: AtomicBool::new(false),
            syncing: Mutex::new(()),
            counters: Counters::default(),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            thread: Mutex::new(None),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &Arc<Bucket> {
        &self.config.bucket
    }

    /// The cache.
    pub fn cache(&self) -> &RangeCache {
        &self.cache
    }

    /// The descriptors of the blocks queries read now, by time.
    pub fn blocks(&self) -> Vec<Descriptor> {
        self.listed().into_iter().map(|l| l.descriptor).collect()
    }

    /// The bucket blocks queries read now, by time, with their replicas
    /// (the ingesters' live data left out).
    pub fn listed(&self) -> Vec<ListedBlock> {
        self.blocks
            .read()
            .iter()
            .filter(|l| !l.descriptor.id.starts_with(live::LIVE_PREFIX))
            .cloned()
            .collect()
    }

    /// What this querier's shared merges did since it opened.
    pub fn share_stats(&self) -> peers::ShareStats {
        *self.counters.share.lock()
    }

    /// The blocks the last sync left out because others replace them.
    pub fn replaced(&self) -> Vec<Descriptor> {
        self.replaced.read().clone()
    }

    /// Lists the bucket and updates the blocks queries read (see the module
    /// docs). A failed listing keeps the previous list.
    pub fn sync(&self) -> Result<SyncStats, QuerierError> {
        let _one = self.syncing.lock();
        // The ingesters first: a block they ship meanwhile is then in the
        // listing or still in their live data, never in neither.
        let live_parts = self.fetch_live();
        let listing = self.config.bucket.list(BLOCKS).inspect_err(|_| {
            self.counters.sync_failures.fetch_add(1, Relaxed);
        })?;
        let ids: BTreeSet<String> = listing
            .iter()
            .filter_map(|l| {
                let rest = l.key.strip_prefix(BLOCKS)?.strip_prefix('/')?;
                let id = rest.strip_suffix(DESCRIPTOR)?.strip_suffix('/')?;
                (!id.is_empty() && !id.contains('/')).then(|| id.to_string())
            })
            .collect();
        let mut known: BTreeMap<String, ListedBlock> = self
            .blocks
            .read()
            .iter()
            .map(|l| (l.descriptor.id.clone(), l.clone()))
            .collect();
        known.extend(std::mem::take(&mut *self.on_demand.lock()));
        let mut stats = SyncStats::default();
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(l) = known.get(&id) {
                found.push(l.clone());
                continue;
            }
            match self.open_block(&id) {
                Ok(Some(l)) => {
                    stats.opened += 1;
                    found.push(l);
                }
                // Deleted since the listing (replaced).
                Ok(None) => {}
                Err(OpenFail::Bad(e)) => {
                    tracing::warn!(block = %id, "block left out: {e}");
                    stats.unreadable += 1;
                    self.counters.unreadable.fetch_add(1, Relaxed);
                }
                Err(OpenFail::Bucket(reason)) => {
                    self.counters.sync_failures.fetch_add(1, Relaxed);
                    return Err(QuerierError::Unavailable { id, reason });
                }
            }
        }
        let covered: BTreeSet<&str> = found
            .iter()
            .flat_map(|l| {
                let own = l.descriptor.id.as_str();
                l.descriptor
                    .sources
                    .iter()
                    .map(String::as_str)
                    .filter(move |s| *s != own)
            })
            .collect();
        let (replaced, mut live): (Vec<ListedBlock>, Vec<ListedBlock>) = found
            .iter()
            .cloned()
            .partition(|l| covered.contains(l.descriptor.id.as_str()));
        stats.replaced = replaced.len();
        live.sort_by(|a, b| {
            (a.descriptor.min_time, &a.descriptor.id)
                .cmp(&(b.descriptor.min_time, &b.descriptor.id))
        });
        stats.blocks = live.len();
        stats.live = live_parts.len();
        live.extend(live_parts);
        let descriptors: Vec<&Descriptor> = live.iter().map(|l| &l.descriptor).collect();
        let replicas = number_replicas(&descriptors, self.config.dedup_label.as_deref());
        for (l, r) in live.iter_mut().zip(replicas) {
            l.replica = Some(r);
        }
        *self.replaced.write() = replaced.into_iter().map(|l| l.descriptor).collect();
        *self.blocks.write() = Arc::new(live);
        self.synced.store(true, Relaxed);
        self.counters.syncs.fetch_add(1, Relaxed);
        Ok(stats)
    }

    /// Each ingester's live data, fetched concurrently; an ingester that
    /// fails keeps the data of its last fetch (logged and counted).
    fn fetch_live(&self) -> Vec<ListedBlock> {
        let ingesters = &self.config.ingesters;
        if ingesters.is_empty() {
            return Vec::new();
        }
        let fetched: Vec<(String, Result<Option<ListedBlock>, String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = ingesters
                .iter()
                .map(|i| {
                    s.spawn(move || {
                        let name = i.name();
                        let got = match i.live() {
                            Ok(None) => Ok(None),
                            Ok(Some(data)) => live::live_block(&name, data).map(|(d, b)| {
                                Some(ListedBlock {
                                    descriptor: d,
                                    block: Arc::new(b),
                                    replica: None,
                                })
                            }),
                            Err(e) => Err(e.to_string()),
                        };
                        (name, got)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(_) => (String::new(), Err("the fetch panicked".to_string())),
                })
                .collect()
        });
        let mut kept = self.live.lock();
        for (name, got) in fetched {
            match got {
                Ok(Some(l)) => {
                    kept.insert(name, l);
                }
                Ok(None) => {
                    kept.remove(&name);
                }
                Err(e) => {
                    self.counters.live_failures.fetch_add(1, Relaxed);
                    tracing::warn!(ingester = %name, "live data not fetched; the last fetched is read: {e}");
                }
            }
        }
        kept.values().cloned().collect()
    }

    /// Reads block `id`'s descriptor and opens the block; `None` when the
    /// descriptor is gone.
    fn open_block(&self, id: &str) -> Result<Option<ListedBlock>, OpenFail> {
        let bucket = &self.config.bucket;
        let bytes = match bucket.get(&format!("{BLOCKS}/{id}/{DESCRIPTOR}")) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(OpenFail::Bucket(e.to_string())),
        };
        let d = Descriptor::parse(&bytes).map_err(|e| OpenFail::Bad(format!("descriptor: {e}")))?;
        if d.id != id {
            return Err(OpenFail::Bad(format!(
                "its descriptor names block {}",
                d.id
            )));
        }
        let key = d.block_key();
        // The file's size from the bucket, not the descriptor: a descriptor
        // that lies about it must not make every later read fail.
        match bucket.size(&key) {
            Ok(Some(size)) if size == d.bytes => {}
            Ok(Some(size)) => {
                return Err(OpenFail::Bad(format!(
                    "the block file has {size} bytes, its descriptor says {}",
                    d.bytes
                )))
            }
            // Deleted since the descriptor was read (replaced).
            Ok(None) => return Ok(None),
            Err(e) => return Err(OpenFail::Bucket(e.to_string())),
        }
        let source = Remote {
            bucket: Arc::clone(bucket),
            id: id.to_string(),
            key: key.clone(),
            len: d.bytes,
            cache: Arc::clone(&self.cache),
        };
        let name = PathBuf::from(format!("{}/{key}", bucket.url()));
        let block = match Block::open_source(&name, Box::new(source)) {
            Ok(b) => b,
            // Deleted since the descriptor was read (replaced).
            Err(BlockError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e @ BlockError::Io { .. }) => return Err(OpenFail::Bucket(e.to_string())),
            Err(e) => return Err(OpenFail::Bad(e.to_string())),
        };
        if block.fingerprint() != (d.bytes, d.index_crc32)
            || (block.min_time(), block.max_time()) != (d.min_time, d.max_time)
        {
            return Err(OpenFail::Bad(
                "the block file does not match its descriptor".into(),
            ));
        }
        Ok(Some(ListedBlock {
            descriptor: d,
            block: Arc::new(block),
            replica: None,
        }))
    }

    /// The blocks a query reads: the last sync's (the first query of a
    /// querier that never synced syncs first).
    fn parts(&self) -> Result<Arc<Vec<ListedBlock>>, QueryError> {
        if !self.synced.load(Relaxed) {
            self.sync()
                .map_err(|e| QueryError::Storage(StorageError::new("bucket", e)))?;
        }
        Ok(Arc::clone(&self.blocks.read()))
    }

    /// Runs `f` over the listed blocks; an error when a read from the
    /// bucket failed meanwhile (a block read as damaged would otherwise
    /// make a partial answer look whole). When the only failures were
    /// block files deleted since the last sync (an ingester or compactor
    /// replaced them, committing the replacement first), the querier
    /// syncs and runs `f` once more over the new listing.
    fn with_parts<R>(&self, f: impl Fn(&[&dyn BlockReader]) -> R) -> Result<R, QueryError> {
        match read_blocks_once(&self.parts()?, &f) {
            Ok(r) => Ok(r),
            Err(failed) if failed.only_gone() => {
                tracing::debug!("{} blocks gone since the last sync; syncing", failed.gone);
                self.counters.resyncs.fetch_add(1, Relaxed);
                self.sync()
                    .map_err(|e| QueryError::Storage(StorageError::new("bucket", e)))?;
                read_blocks(&self.parts()?, f)
            }
            Err(failed) => Err(failed.error()),
        }
    }

    /// A merge shared with the peers (see [`peers`]). When no worker could
    /// read a unit (a storage error), the querier lists the bucket again; if the listing
    /// changed (a block was replaced and deleted meanwhile, as in
    /// [`Querier::with_parts`]), the merge runs once more over it.
    fn shared_partial(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Partial, QueryError> {
        let listed = self.parts()?;
        let e = match self.shared_over(&listed, matchers, range) {
            Err(e @ QueryError::Storage(_)) => e,
            done => return done,
        };
        self.sync()
            .map_err(|e| QueryError::Storage(StorageError::new("bucket", e)))?;
        let now = self.parts()?;
        let ids = |v: &[ListedBlock]| -> Vec<String> {
            v.iter().map(|l| l.descriptor.id.clone()).collect()
        };
        if ids(&now) == ids(&listed) {
            return Err(e);
        }
        tracing::debug!("a shared merge failed and the listing changed; merging again: {e}");
        self.counters.resyncs.fetch_add(1, Relaxed);
        self.shared_over(&now, matchers, range)
    }

    /// [`Querier::shared_partial`] over `listed`.
    fn shared_over(
        &self,
        listed: &[ListedBlock],
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Partial, QueryError> {
        let units = peers::units(listed, range);
        let owned: Arc<Vec<Matcher>> = Arc::new(matchers.to_vec());
        let local: peers::LocalRead = Arc::new(move |u: &peers::Unit| {
            read_blocks(&u.blocks, |all| {
                query::partial(all, &owned, Pick::All(range))
            })?
        });
        let (out, st) = self.config.peers.run(units, matchers, range, local)?;
        self.counters.share.lock().add(&st);
        Ok(out)
    }

    /// The listed block `id`, or the block opened from the bucket.
    fn block_by_id(&self, id: &str) -> Result<ListedBlock, QueryError> {
        if let Some(l) = self.blocks.read().iter().find(|l| l.descriptor.id == id) {
            return Ok(l.clone());
        }
        if let Some(l) = self.on_demand.lock().get(id) {
            return Ok(l.clone());
        }
        let unavailable = |reason: String| {
            QueryError::Storage(StorageError::new("bucket", format!("block {id}: {reason}")))
        };
        match self.open_block(id) {
            Ok(Some(l)) => {
                self.on_demand.lock().insert(id.to_string(), l.clone());
                Ok(l)
            }
            Ok(None) => Err(unavailable("not in the bucket".into())),
            Err(OpenFail::Bucket(e) | OpenFail::Bad(e)) => Err(unavailable(e)),
        }
    }
}

/// Runs `f` over `blocks`; an error when a read from the bucket failed
/// meanwhile on this thread (a block read as damaged would otherwise make
/// a partial answer look whole).
fn read_blocks<R>(
    blocks: &[ListedBlock],
    f: impl FnOnce(&[&dyn BlockReader]) -> R,
) -> Result<R, QueryError> {
    read_blocks_once(blocks, f).map_err(FailedReads::error)
}

/// [`read_blocks`], with the failed reads counted.
fn read_blocks_once<R>(
    blocks: &[ListedBlock],
    f: impl FnOnce(&[&dyn BlockReader]) -> R,
) -> Result<R, FailedReads> {
    let parts: Vec<Part<'_>> = blocks.iter().map(Part).collect();
    let all: Vec<&dyn BlockReader> = parts.iter().map(|p| p as &dyn BlockReader).collect();
    FAILED_READS.with(|c| c.set(FailedReads::default()));
    let out = f(&all);
    let failed = FAILED_READS.with(|c| c.replace(FailedReads::default()));
    if failed.all > 0 {
        return Err(failed);
    }
    Ok(out)
}

/// A peer's unit: its blocks read here, the answer encoded with the
/// symbols of the stacks it names.
impl PeerWork for Querier {
    fn partial_bytes(&self, request: &[u8]) -> Result<Vec<u8>, PeerError> {
        self.counters.share.lock().answered += 1;
        let r = wire::decode_request(request).map_err(PeerError::BadRequest)?;
        let mut blocks = Vec::with_capacity(r.blocks.len());
        for (id, replica) in &r.blocks {
            let mut l = self.block_by_id(id)?;
            l.replica = Some(*replica);
            blocks.push(l);
        }
        let (partial, symbols) = read_blocks(&blocks, |all| {
            query::partial_sums(all, &r.matchers, Pick::All(r.range))
        })??;
        let chain = SymbolChain(
            symbols
                .iter()
                .map(|s| s.as_ref() as &dyn SymbolSource)
                .collect(),
        );
        wire::encode_partial(&partial, &chain).map_err(|e| PeerError::Query(e.into()))
    }
}

/// The querier's gauges: (name, help).
const GAUGES: &[(&str, &str)] = &[
    ("querier_blocks", "Bucket blocks queries read"),
    (
        "querier_cache_bytes",
        "Bytes in the querier's disk cache of block ranges",
    ),
];

/// The querier's counters: (name, help).
const COUNTERS: &[(&str, &str)] = &[
    ("bucket_read_bytes", "Bytes read from the bucket"),
    ("bucket_requests", "Requests to the bucket"),
    (
        "querier_cache_hits",
        "Block ranges read from the disk cache",
    ),
    ("querier_cache_misses", "Block ranges read from the bucket"),
    ("querier_syncs", "Listings of the bucket"),
    (
        "querier_sync_failures",
        "Listings of the bucket that failed",
    ),
    (
        "querier_gone_block_resyncs",
        "Queries read again after a sync because a listed block was deleted meanwhile",
    ),
    (
        "querier_unreadable_blocks",
        "Blocks left out of a sync because they could not be read",
    ),
    (
        "querier_live_fetch_failures",
        "Fetches of an ingester's live data that failed",
    ),
    (
        "querier_units_local",
        "Units of shared merges read by this querier",
    ),
    (
        "querier_units_remote",
        "Units of shared merges a peer answered",
    ),
    (
        "querier_units_stolen",
        "Units of shared merges taken from another worker's queue",
    ),
    (
        "querier_units_speculative",
        "Units of shared merges run again because their worker was slow",
    ),
    (
        "querier_unit_failures",
        "Units of shared merges a worker failed",
    ),
    (
        "querier_peer_requests",
        "Units this querier was asked to read by a peer",
    ),
];

/// The querier's metrics (see [`GAUGES`] and [`COUNTERS`]), read from it
/// at scrape time.
struct QuerierMetrics {
    gauges: Vec<(&'static str, Gauge)>,
    counters: Vec<(&'static str, Counter)>,
}

impl QuerierMetrics {
    fn register(r: &mut Registry) -> QuerierMetrics {
        QuerierMetrics {
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
        }
    }

    fn refresh(&self, q: &Querier) {
        for (name, g) in &self.gauges {
            g.set(match *name {
                "querier_blocks" => q.listed().len() as i64,
                "querier_cache_bytes" => q.cache.bytes() as i64,
                _ => 0,
            });
        }
        let b = q.config.bucket.stats();
        let c = q.cache.stats();
        let share = q.share_stats();
        for (name, counter) in &self.counters {
            let v = match *name {
                "bucket_read_bytes" => b.bytes_read.load(Relaxed),
                "bucket_requests" => b.requests.load(Relaxed),
                "querier_cache_hits" => c.hits.load(Relaxed),
                "querier_cache_misses" => c.misses.load(Relaxed),
                "querier_syncs" => q.counters.syncs.load(Relaxed),
                "querier_sync_failures" => q.counters.sync_failures.load(Relaxed),
                "querier_gone_block_resyncs" => q.counters.resyncs.load(Relaxed),
                "querier_unreadable_blocks" => q.counters.unreadable.load(Relaxed),
                "querier_live_fetch_failures" => q.counters.live_failures.load(Relaxed),
                "querier_units_local" => share.local,
                "querier_units_remote" => share.remote,
                "querier_units_stolen" => share.stolen,
                "querier_units_speculative" => share.speculative,
                "querier_unit_failures" => share.failures,
                "querier_peer_requests" => share.answered,
                _ => 0,
            };
            counter.inner().store(v, Relaxed);
        }
    }
}

impl Storage for Querier {
    fn limits(&self) -> &Limits {
        &self.config.limits
    }

    fn ingest_raw(
        &self,
        _req: &IngestRequest,
        _raw: Option<&[u8]>,
    ) -> Result<IngestSummary, IngestError> {
        Err(read_only())
    }

    fn ingest_bytes(
        &self,
        _body: &[u8],
        _name: Option<String>,
        _labels: Labels,
        _received_at_ms: i64,
    ) -> Result<IngestSummary, IngestError> {
        Err(read_only())
    }

    fn ingest_stats(&self) -> IngestStats {
        IngestStats::default()
    }

    /// Series in the listed blocks (a series in several blocks counts in
    /// each).
    fn num_series(&self) -> usize {
        self.blocks
            .read()
            .iter()
            .map(|l| l.block.num_series())
            .sum()
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>, QueryError> {
        self.with_parts(|all| query::label_names(all, matchers, range))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>, QueryError> {
        self.with_parts(|all| query::label_values(all, name, matchers, range))
    }

    fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Labels>, QueryError> {
        self.with_parts(|all| query::series(all, matchers, range))
    }

    fn profile_types(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<ProfileType>, QueryError> {
        self.with_parts(|all| query::profile_types(all, matchers, range))
    }

    fn query_range(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
        step: Option<i64>,
    ) -> Result<Vec<SeriesPoints>, QueryError> {
        self.with_parts(|all| query::query_range(all, matchers, range, step))?
    }

    /// Merges are shared with the peers when there are any; a single
    /// (each series' first profile in a window) is read here.
    fn partial(&self, matchers: &[Matcher], pick: Pick) -> Result<Partial, QueryError> {
        match pick {
            Pick::All(range) if self.config.peers.enabled() => self.shared_partial(matchers, range),
            _ => self.with_parts(|all| query::partial(all, matchers, pick))?,
        }
    }

    fn register_metrics(self: Arc<Self>, registry: &mut Registry) -> RefreshMetrics {
        let m = QuerierMetrics::register(registry);
        Box::new(move || m.refresh(&self))
    }

    /// Starts the thread that syncs the block list every `sync_interval`
    /// (the first at once).
    fn start_background(self: Arc<Self>) -> Result<(), StorageError> {
        let mut slot = self.thread.lock();
        if slot.is_some() {
            return Ok(());
        }
        let me = Arc::clone(&self);
        let stop = Arc::clone(&self.stop);
        let t = std::thread::Builder::new()
            .name("querier-sync".into())
            .spawn(move || loop {
                match me.sync() {
                    Ok(s) => tracing::debug!(
                        blocks = s.blocks,
                        opened = s.opened,
                        replaced = s.replaced,
                        unreadable = s.unreadable,
                        "bucket synced"
                    ),
                    Err(e) => tracing::warn!("bucket sync failed: {e}"),
                }
                let (flag, cv) = &*stop;
                let mut stopped = flag.lock();
                if !*stopped {
                    cv.wait_for(&mut stopped, me.config.sync_interval);
                }
                if *stopped {
                    return;
                }
            })
            .map_err(|e| StorageError::new("querier", e))?;
        *slot = Some(t);
        Ok(())
    }

    fn close(&self) -> Result<(), StorageError> {
        let Some(t) = self.thread.lock().take() else {
            return Ok(());
        };
        let (flag, cv) = &*self.stop;
        *flag.lock() = true;
        cv.notify_all();
        t.join()
            .map_err(|_| StorageError::new("querier", "the sync thread panicked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_numbered_within_their_stream() {
        let d = |id: &str, created_ms: i64, pairs: &[(&str, &str)]| Descriptor {
            version: 1,
            id: id.into(),
            min_time: 0,
            max_time: 1,
            bytes: 0,
            index_crc32: 0,
            series: 0,
            profiles: 0,
            external_labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            sources: vec![id.into()],
            created_ms,
        };
        let blocks = [
            d("1", 5, &[("cluster", "eu"), ("replica", "b")]),
            d("2", 5, &[("cluster", "eu"), ("replica", "a")]),
            d("3", 5, &[("cluster", "us"), ("replica", "a")]),
            d("4", 9, &[("cluster", "eu")]),
            d("5", 5, &[("cluster", "eu"), ("replica", "a")]),
        ];
        let refs: Vec<_> = blocks.iter().collect();
        let r = number_replicas(&refs, Some("replica"));
        let (eu, us) = (r[1].stream, r[2].stream);
        assert_ne!(eu, us);
        // The latest commit first, then by replica, then by id.
        assert_eq!(
            r.iter().map(|r| (r.stream, r.rank)).collect::<Vec<_>>(),
            [(eu, 3), (eu, 1), (us, 0), (eu, 0), (eu, 2)]
        );
        // Without a dedup label each label set is a stream of its own.
        let r = number_replicas(&refs, None);
        assert_eq!(r[1].stream, r[4].stream);
        assert_ne!(r[0].stream, r[1].stream);
        assert_eq!((r[1].rank, r[4].rank), (0, 1));
    }
}

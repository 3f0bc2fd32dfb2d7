//! The compactor: the one node that rewrites a bucket's blocks into fewer,
//! larger, deduplicated ones, and applies retention in the bucket.
//!
//! # A pass
//! 1. The bucket is listed the way a querier lists it ([`Querier::sync`]):
//!    the live blocks, each with its stream and rank, and the blocks that
//!    others replace.
//! 2. Blocks whose deletion mark (`blocks/<id>/deletion-mark.json`) is
//!    older than the delete delay are deleted: descriptor first (readers
//!    stop listing the block), then the block file, then the mark. A mark
//!    whose descriptor is gone already (a crash between) has its block file
//!    and itself deleted; so has a block file that has had no descriptor
//!    for longer than [`CompactorConfig::orphan_age`] (an upload that never
//!    committed).
//! 3. Replaced blocks and blocks past retention get deletion marks.
//! 4. Per stream, for each level range `r` (ascending, `2h,12h,48h` by
//!    default): the unmarked blocks that lie inside one aligned window
//!    `[k·r, (k+1)·r)` are merged into one block when there are two or
//!    more of them and either the window is complete (a block of the
//!    stream ends at or after its end) or they all have one range
//!    (replicas). The merge reads each series' profiles at one
//!    timestamp from one block, the lowest-ranked that has a profile there,
//!    as a querier does ([`merge_blocks`]), so replicas of a stream become
//!    one block and the answers do not change. The new block is written in
//!    the work directory, uploaded (block file, then its descriptor: the
//!    stream's labels, `sources` the union of its inputs', committed now),
//!    and then its inputs get deletion marks. The pass lists again and
//!    goes on while some level has a group to merge.
//! 5. Step 2 again, so a zero delete delay deletes in the same pass.
//!
//! # Safe at every step
//! - Until a merged block's descriptor is committed, its inputs are what
//!   readers read; a crash leaves at most a block file without a
//!   descriptor, which no reader lists.
//! - Once committed, a reader that lists the bucket reads the new block
//!   and ignores its inputs (the new block's sources name them); one that
//!   has not listed it yet still reads the inputs, which stay in the
//!   bucket for the delete delay: keep the delay well above the queriers'
//!   sync interval.
//! - A merge during which an input could not be read whole (a failed
//!   bucket read, a damaged chunk) is abandoned: nothing is uploaded and
//!   nothing marked.
//! - Blocks the compactor writes carry the stream's labels without the
//!   dedup label, so queriers must use the same `--dedup-label`.

use crate::bucket::{Bucket, BucketError};
use crate::engine::Limits;
use crate::ingest::time_policy::Clock;
use crate::querier::{stream_of, ListedBlock, Querier, QuerierConfig, QuerierError};
use crate::tsdb::block::{merge_blocks, Block, BlockError, LooseProfiles};
use crate::tsdb::ship::{commit, Descriptor, BLOCKS, BLOCK_FILE, DESCRIPTOR};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A block's deletion mark's name in its folder.
pub const DELETION_MARK: &str = "deletion-mark.json";
/// Default age after which a block file without a descriptor is deleted.
pub const DEFAULT_ORPHAN_AGE: Duration = Duration::from_secs(6 * 3600);

/// Errors of a compaction pass.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Listing or reading the bucket's blocks failed.
    #[error(transparent)]
    Querier(#[from] QuerierError),
    /// The bucket failed.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// A merged block could not be written or read back.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// An input could not be read whole; the merge was abandoned.
    #[error("merging {ids}: {reads} chunk reads failed; nothing was changed")]
    Unreadable {
        /// The inputs.
        ids: String,
        /// The reads that failed.
        reads: u64,
    },
    /// The work directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// How the compactor works.
#[derive(Debug, Clone)]
pub struct CompactorConfig {
    /// The bucket.
    pub bucket: Arc<Bucket>,
    /// Where merged blocks are written before their upload (emptied at
    /// start).
    pub work_dir: PathBuf,
    /// The external label that tells replicas apart (as the queriers').
    pub dedup_label: Option<String>,
    /// Level ranges in ms, ascending.
    pub ranges_ms: Vec<i64>,
    /// Blocks that end before now − retention are deleted (`None`: kept).
    pub retention_ms: Option<i64>,
    /// Time between marking a block and deleting it.
    pub delete_delay: Duration,
    /// Age after which a block file without a descriptor is deleted.
    pub orphan_age: Duration,
    /// The clock (tests set it).
    pub clock: Clock,
}

/// What a deletion mark holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    /// The block.
    pub id: String,
    /// When it was marked (ms since the epoch).
    pub marked_ms: i64,
    /// Why: `compacted`, `replaced` or `retention`.
    pub reason: String,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    /// Blocks written by merges.
    pub merged: usize,
    /// Blocks merged into them.
    pub inputs: usize,
    /// Blocks marked for deletion.
    pub marked: usize,
    /// Blocks deleted.
    pub deleted: usize,
    /// Merges that failed (their inputs are left as they were).
    pub failed: usize,
    /// Bytes of block files in the bucket before the pass.
    pub bytes_before: u64,
    /// Bytes of block files in the bucket after the pass.
    pub bytes_after: u64,
}

/// One block's folder in a listing.
#[derive(Debug, Default)]
struct Folder {
    descriptor: bool,
    block: Option<(u64, i64)>,
    mark: bool,
}

/// The compactor's metrics: what its passes did since it started.
#[derive(Debug, Default)]
struct Metrics {
    passes: Counter,
    failed_passes: Counter,
    merged: Counter,
    inputs: Counter,
    marked: Counter,
    deleted: Counter,
    failed_merges: Counter,
    block_bytes: Gauge,
}

/// The compactor (see the module docs).
#[derive(Debug)]
pub struct Compactor {
    config: CompactorConfig,
    querier: Querier,
    metrics: Metrics,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CompactError + '_ {
    |source| CompactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Compactor {
    /// A compactor over `config.bucket`; empties the work directory.
    pub fn open(config: CompactorConfig) -> Result<Compactor, CompactError> {
        let dir = &config.work_dir;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io(dir)(source)),
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let querier = Querier::open(QuerierConfig {
            bucket: Arc::clone(&config.bucket),
            cache_dir: None,
            cache_bytes: 0,
            limits: Limits::default(),
            sync_interval: Duration::from_secs(3600),
            dedup_label: config.dedup_label.clone(),
            ingesters: Vec::new(),
            peers: Default::default(),
        })?;
        Ok(Compactor {
            config,
            querier,
            metrics: Metrics::default(),
        })
    }

    /// Registers its metrics (`compactor_*`) in `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = &self.metrics;
        for (name, help, c) in [
            ("compactor_passes", "Compaction passes completed", &m.passes),
            (
                "compactor_failed_passes",
                "Compaction passes that stopped on an error",
                &m.failed_passes,
            ),
            (
                "compactor_blocks_written",
                "Blocks written by merges",
                &m.merged,
            ),
            (
                "compactor_blocks_merged",
                "Blocks merged into them",
                &m.inputs,
            ),
            (
                "compactor_blocks_marked",
                "Blocks marked for deletion",
                &m.marked,
            ),
            (
                "compactor_blocks_deleted",
                "Blocks deleted from the bucket",
                &m.deleted,
            ),
            (
                "compactor_failed_merges",
                "Merges abandoned because an input could not be read",
                &m.failed_merges,
            ),
        ] {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "compactor_bucket_block_bytes",
            "Bytes of block files in the bucket after the last pass",
            m.block_bytes.clone(),
        );
    }

    /// Runs one pass (see the module docs).
    pub fn run_once(&self) -> Result<PassStats, CompactError> {
        let mut stats = PassStats::default();
        let folders = self.folders()?;
        stats.bytes_before = folders.values().filter_map(|f| f.block).map(|b| b.0).sum();
        stats.deleted += self.delete_due(&folders)?;
        // Inputs of merges that failed in this pass: left alone until the
        // next.
        let mut skip: BTreeSet<String> = BTreeSet::new();
        loop {
            self.querier.sync()?;
            let folders = self.folders()?;
            stats.marked += self.mark_dead(&folders)?;
            let marked: BTreeSet<String> = self
                .folders()?
                .into_iter()
                .filter(|(_, f)| f.mark)
                .map(|(id, _)| id)
                .collect();
            let listed = self.querier.listed();
            let candidates: Vec<&ListedBlock> = listed
                .iter()
                .filter(|l| !marked.contains(&l.descriptor.id) && !skip.contains(&l.descriptor.id))
                .collect();
            let groups = self.plan(&candidates);
            if groups.is_empty() {
                break;
            }
            for g in groups {
                match self.merge(&g) {
                    Ok(marked) => {
                        stats.inputs += g.len();
                        stats.merged += 1;
                        stats.marked += marked;
                    }
                    Err(e @ (CompactError::Unreadable { .. } | CompactError::Block(_))) => {
                        tracing::warn!("merge left out of this pass: {e}");
                        stats.failed += 1;
                        skip.extend(g.iter().map(|l| l.descriptor.id.clone()));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let folders = self.folders()?;
        stats.deleted += self.delete_due(&folders)?;
        stats.bytes_after = self
            .folders()?
            .values()
            .filter_map(|f| f.block)
            .map(|b| b.0)
            .sum();
        let m = &self.metrics;
        m.passes.inc();
        m.merged.inc_by(stats.merged as u64);
        m.inputs.inc_by(stats.inputs as u64);
        m.marked.inc_by(stats.marked as u64);
        m.deleted.inc_by(stats.deleted as u64);
        m.failed_merges.inc_by(stats.failed as u64);
        m.block_bytes.set(stats.bytes_after as i64);
        tracing::info!(
            merged = stats.merged,
            inputs = stats.inputs,
            marked = stats.marked,
            deleted = stats.deleted,
            failed = stats.failed,
            bytes_before = stats.bytes_before,
            bytes_after = stats.bytes_after,
            "compaction pass done"
        );
        Ok(stats)
    }

    /// Runs passes every `interval` until `stop` is set; a failed pass is
    /// logged and the next one tries again.
    pub fn run(&self, interval: Duration, stop: &std::sync::atomic::AtomicBool) {
        use std::sync::atomic::Ordering::Relaxed;
        while !stop.load(Relaxed) {
            if let Err(e) = self.run_once() {
                self.metrics.failed_passes.inc();
                tracing::warn!("compaction pass failed: {e}");
            }
            let until = std::time::Instant::now() + interval;
            while !stop.load(Relaxed) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// The bucket's block folders by id.
    fn folders(&self) -> Result<BTreeMap<String, Folder>, CompactError> {
        let mut out: BTreeMap<String, Folder> = BTreeMap::new();
        for l in self.config.bucket.list(BLOCKS)? {
            let Some(rest) = l.key.strip_prefix(BLOCKS).and_then(|r| r.strip_prefix('/')) else {
                continue;
            };
            let Some((id, name)) = rest.split_once('/') else {
                continue;
            };
            let f = out.entry(id.to_string()).or_default();
            match name {
                DESCRIPTOR => f.descriptor = true,
                BLOCK_FILE => f.block = Some((l.size, l.modified_ms)),
                DELETION_MARK => f.mark = true,
                _ => {}
            }
        }
        Ok(out)
    }

    fn key(id: &str, name: &str) -> String {
        format!("{BLOCKS}/{id}/{name}")
    }

    /// Step 2: deletes the blocks whose marks are due, and orphans.
    fn delete_due(&self, folders: &BTreeMap<String, Folder>) -> Result<usize, CompactError> {
        let bucket = &self.config.bucket;
        let now = self.config.clock.now_ms();
        let delay = self.config.delete_delay.as_millis() as i64;
        let orphan_age = self.config.orphan_age.as_millis() as i64;
        let mut deleted = 0;
        for (id, f) in folders {
            let due = if f.mark {
                let mark: Option<DeletionMark> = match bucket.get(&Self::key(id, DELETION_MARK)) {
                    Ok(b) => serde_json::from_slice(&b).ok(),
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e.into()),
                };
                // An unreadable mark is old enough: it was written before
                // the descriptor went, or by a crash mid-write.
                !f.descriptor || mark.is_none_or(|m| now.saturating_sub(m.marked_ms) >= delay)
            } else {
                !f.descriptor
                    && f.block
                        .is_some_and(|(_, modified)| now.saturating_sub(modified) >= orphan_age)
            };
            if !due {
                continue;
            }
            for name in [DESCRIPTOR, BLOCK_FILE, DELETION_MARK] {
                bucket.delete(&Self::key(id, name))?;
            }
            tracing::info!(block = %id, "block deleted from the bucket");
            deleted += 1;
        }
        Ok(deleted)
    }

    fn mark(&self, id: &str, reason: &str) -> Result<(), CompactError> {
        let mark = DeletionMark {
            id: id.to_string(),
            marked_ms: self.config.clock.now_ms(),
            reason: reason.to_string(),
        };
        // A struct of strings and an integer always serializes.
        let json = serde_json::to_vec_pretty(&mark).expect("a mark serializes");
        self.config
            .bucket
            .put(&Self::key(id, DELETION_MARK), json)?;
        tracing::info!(block = %id, reason, "block marked for deletion");
        Ok(())
    }

    /// Step 3: marks replaced blocks and blocks past retention.
    fn mark_dead(&self, folders: &BTreeMap<String, Folder>) -> Result<usize, CompactError> {
        let unmarked = |id: &str| folders.get(id).is_some_and(|f| !f.mark);
        let mut marked = 0;
        for d in self.querier.replaced() {
            if unmarked(&d.id) {
                self.mark(&d.id, "replaced")?;
                marked += 1;
            }
        }
        if let Some(retention) = self.config.retention_ms {
            let cutoff = self.config.clock.now_ms().saturating_sub(retention);
            for l in self.querier.listed().iter() {
                let d = &l.descriptor;
                if d.max_time <= cutoff && unmarked(&d.id) {
                    self.mark(&d.id, "retention")?;
                    marked += 1;
                }
            }
        }
        Ok(marked)
    }

    /// Step 4's plan: the groups of the lowest level that has any.
    fn plan<'a>(&self, blocks: &[&'a ListedBlock]) -> Vec<Vec<&'a ListedBlock>> {
        let label = self.config.dedup_label.as_deref();
        let mut streams: BTreeMap<BTreeMap<String, String>, Vec<&'a ListedBlock>> = BTreeMap::new();
        for l in blocks {
            streams
                .entry(stream_of(&l.descriptor.external_labels, label))
                .or_default()
                .push(l);
        }
        for &r in &self.config.ranges_ms {
            let mut groups = Vec::new();
            for members in streams.values() {
                let newest = members
                    .iter()
                    .map(|l| l.descriptor.max_time)
                    .max()
                    .unwrap_or(i64::MIN);
                let mut windows: BTreeMap<i64, Vec<&'a ListedBlock>> = BTreeMap::new();
                for l in members {
                    let (lo, hi) = (l.descriptor.min_time, l.descriptor.max_time);
                    let w = lo.div_euclid(r).saturating_mul(r);
                    if hi <= w.saturating_add(r) {
                        windows.entry(w).or_default().push(l);
                    }
                }
                groups.extend(
                    windows
                        .into_iter()
                        .filter(|(w, g)| {
                            let range =
                                |l: &&ListedBlock| (l.descriptor.min_time, l.descriptor.max_time);
                            let replicas = g.iter().all(|l| range(l) == range(&g[0]));
                            g.len() > 1 && (replicas || w.saturating_add(r) <= newest)
                        })
                        .map(|(_, g)| g),
                );
            }
            if !groups.is_empty() {
                return groups;
            }
        }
        Vec::new()
    }

    /// Merges one group into a block, uploads it and marks its inputs;
    /// returns the blocks marked.
    fn merge(&self, group: &[&ListedBlock]) -> Result<usize, CompactError> {
        let label = self.config.dedup_label.as_deref();
        let lo = group
            .iter()
            .map(|l| l.descriptor.min_time)
            .min()
            .unwrap_or(0);
        let hi = group
            .iter()
            .map(|l| l.descriptor.max_time)
            .max()
            .unwrap_or(0);
        let labels = stream_of(&group[0].descriptor.external_labels, label);
        let inputs: Vec<(Arc<Block>, u32)> = group
            .iter()
            .map(|l| (Arc::clone(&l.block), l.replica.map_or(0, |r| r.rank)))
            .collect();
        let ids: Vec<&str> = group.iter().map(|l| l.descriptor.id.as_str()).collect();
        let damaged_before: u64 = inputs.iter().map(|(b, _)| b.damaged_reads()).sum();
        let path = self.config.work_dir.join(format!("{lo}_{hi}.block"));
        let written = merge_blocks(&path, lo, hi, &inputs, LooseProfiles::new(), None)?;
        let damaged = inputs
            .iter()
            .map(|(b, _)| b.damaged_reads())
            .sum::<u64>()
            .saturating_sub(damaged_before);
        let result = if damaged > 0 {
            Err(CompactError::Unreadable {
                ids: ids.join(", "),
                reads: damaged,
            })
        } else {
            self.upload(&path, &labels, lo, hi, group)
        };
        let _ = std::fs::remove_file(&path);
        let new_id = result?;
        // An input equal to the merge (the others added nothing) is the
        // merged block itself: it stays.
        let doomed: Vec<&&str> = ids.iter().filter(|id| ***id != new_id).collect();
        for id in &doomed {
            self.mark(id, "compacted")?;
        }
        tracing::info!(
            inputs = ids.len(),
            min_time = lo,
            max_time = hi,
            series = written.series,
            profiles = written.profiles,
            bytes = written.bytes,
            "blocks compacted"
        );
        Ok(doomed.len())
    }

    /// Uploads the merged block at `path` (block file, then descriptor);
    /// returns its id.
    fn upload(
        &self,
        path: &Path,
        labels: &BTreeMap<String, String>,
        lo: i64,
        hi: i64,
        group: &[&ListedBlock],
    ) -> Result<String, CompactError> {
        let block = Block::open(path)?;
        let descriptor = Descriptor::of_block(
            &block,
            (lo, hi),
            labels,
            group
                .iter()
                .flat_map(|l| l.descriptor.sources.iter().cloned()),
            self.config.clock.now_ms(),
        );
        commit(&self.config.bucket, &descriptor, &block)?;
        let id = descriptor.id;
        Ok(id)
    }
}

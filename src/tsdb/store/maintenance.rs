//! Maintenance of a [`Tsdb`]: cutting the head into blocks, checkpointing
//! the WAL, retention, garbage collection, the shutdown snapshot, and
//! loading blocks and the snapshot at open.
//!
//! # Cutting a block
//! When the head spans 1.5 block durations, the oldest aligned range
//! `[mint, mint + d)` is cut:
//! 1. exclusively: `min_valid` rises to the block's end (older profiles are
//!    now rejected) and the WAL starts a new segment;
//! 2. concurrently with ingest and queries: the range's profiles are read
//!    from the head, encoded again into fresh chunk sets and written to
//!    `blocks/<mint>_<maxt>.block` (temporary name, sync, rename);
//! 3. exclusively: the block joins the list, the head drops the range, and
//!    series left without profiles leave the series map and the postings;
//! 4. the meta store is flushed, then the WAL segments whose profiles are
//!    all before the block's end are deleted.
//!
//! A crash between any two steps loses nothing: until step 4 the WAL still
//! holds every profile, and replay skips what a block already holds.

use super::{Recovery, Tsdb};
use crate::model::StackId;
use crate::tsdb::block::{write_block, Block, BlockError, BlockSeriesData, BlockSymbols};
use crate::tsdb::chunkset::build_sets;
use crate::tsdb::meta::{MetaError, MetaStore};
use crate::tsdb::wal::WalError;
use rustc_hash::FxHashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stores in `meta` the entities of a block's symbols it does not hold yet,
/// children first.
fn store_block_symbols(meta: &MetaStore, s: &BlockSymbols) -> Result<(), MetaError> {
    let m = s.mappings();
    meta.ensure_mappings(m.len(), |i| m[i].0, |i| (*m[i].1).clone())?;
    let f = s.functions();
    meta.ensure_functions(f.len(), |i| f[i].0, |i| (*f[i].1).clone())?;
    let l = s.locations();
    meta.ensure_locations(l.len(), |i| l[i].0, |i| (*l[i].1).clone())?;
    let st = s.stacks();
    meta.ensure_stacks(st.len(), |i| st[i].0, |i| (*st[i].1).clone())?;
    Ok(())
}

/// The maintenance thread and its stop flag.
#[derive(Debug)]
pub(super) struct Background {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// Name of the head snapshot in the data directory.
pub const SNAPSHOT: &str = "head.snapshot";

/// Errors of maintenance.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// Writing or opening a block failed.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The WAL failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The meta store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MaintenanceError + '_ {
    move |source| MaintenanceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Default)]
pub(super) struct AtomicMaintenance {
    blocks_written: AtomicU64,
    blocks_deleted: AtomicU64,
    wal_segments_deleted: AtomicU64,
    series_removed: AtomicU64,
    gc_runs: AtomicU64,
    gc_deleted: AtomicU64,
    failures: AtomicU64,
}

/// Counts of maintenance work since the store opened, and the blocks now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceStats {
    /// Blocks written.
    pub blocks_written: u64,
    /// Blocks deleted by retention.
    pub blocks_deleted: u64,
    /// WAL segments deleted after a cut or a snapshot.
    pub wal_segments_deleted: u64,
    /// Head series removed because they had no profiles left.
    pub series_removed: u64,
    /// Garbage collections of the meta store.
    pub gc_runs: u64,
    /// Meta entries deleted by garbage collection.
    pub gc_deleted: u64,
    /// Maintenance steps that failed (each logged).
    pub failures: u64,
    /// Open blocks.
    pub blocks: usize,
    /// Bytes of the open blocks' files.
    pub block_bytes: u64,
    /// Memory held by the open blocks' indexes.
    pub block_memory_bytes: usize,
    /// Chunk reads that found damage in a block.
    pub block_damaged_reads: u64,
}

impl Tsdb {
    /// Opens every block of `dir/blocks` (a damaged one is renamed to
    /// `*.damaged` and reported) and loads the snapshot into the head.
    pub(super) fn load_blocks_and_snapshot(
        &mut self,
        dir: &Path,
        recovery: &mut Recovery,
    ) -> Result<(), MaintenanceError> {
        let started = Instant::now();
        let bdir = dir.join("blocks");
        std::fs::create_dir_all(&bdir).map_err(io(&bdir))?;
        let mut blocks = Vec::new();
        for entry in std::fs::read_dir(&bdir).map_err(io(&bdir))? {
            let path = entry.map_err(io(&bdir))?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("block") => {}
                Some("tmp") => {
                    // A block whose write did not finish: its profiles are
                    // still in the WAL.
                    tracing::info!(file = %path.display(), "removing an unfinished block");
                    std::fs::remove_file(&path).map_err(io(&path))?;
                    continue;
                }
                _ => continue,
            }
            match Block::open(&path) {
                Ok(b) => blocks.push(Arc::new(b)),
                Err(e @ BlockError::Version { .. }) => return Err(e.into()),
                Err(e) => {
                    tracing::error!("{e}; moved aside, its profiles are not served");
                    recovery.damaged_blocks += 1;
                    let aside = path.with_extension("damaged");
                    std::fs::rename(&path, &aside).map_err(io(&path))?;
                }
            }
        }
        blocks.sort_by_key(|b| b.min_time());
        if let Some(last) = blocks.last() {
            self.min_valid.store(last.max_time(), Relaxed);
        }
        recovery.blocks = blocks.len();
        *self.state.write() = blocks;
        let snap = dir.join(SNAPSHOT);
        if snap.exists() {
            match Block::open(&snap)
                .map_err(MaintenanceError::from)
                .and_then(|b| self.load_snapshot(Arc::new(b)))
            {
                Ok(n) => recovery.snapshot_series = n,
                Err(e @ MaintenanceError::Block(BlockError::Version { .. })) => return Err(e),
                Err(MaintenanceError::Meta(e)) => return Err(e.into()),
                Err(e) => {
                    // The WAL of the session before the snapshot was deleted
                    // after the snapshot was synced, so this is data loss; keep
                    // the file for inspection.
                    tracing::error!("{e}; the head snapshot is not loaded");
                    recovery.damaged_blocks += 1;
                    let aside = snap.with_extension("damaged");
                    std::fs::rename(&snap, &aside).map_err(io(&snap))?;
                }
            }
        }
        recovery.load_elapsed = started.elapsed();
        Ok(())
    }

    /// Loads the snapshot's series into the empty head, dropping what blocks
    /// already hold, and stores its symbols in the meta store (which
    /// resolves the head's stacks). Returns the series loaded.
    fn load_snapshot(&self, snap: Arc<Block>) -> Result<usize, MaintenanceError> {
        let symbols = snap.symbols()?;
        store_block_symbols(&self.meta, &symbols)?;
        let min_valid = self.min_valid.load(Relaxed);
        let mut n = 0;
        for s in snap.select(&[], i64::MIN, i64::MAX) {
            let sets = s.sets().to_vec();
            if sets.is_empty() {
                continue;
            }
            let series = match self.head.get_or_create(
                s.labels().clone(),
                s.profile_type().clone(),
                s.pprof_labels().to_vec(),
            ) {
                Ok(series) => series,
                Err(e) => {
                    tracing::error!(series = %s.labels(), "snapshot series not loaded: {e}");
                    continue;
                }
            };
            if let Err(e) = series.load_sets(sets) {
                tracing::error!(series = %s.labels(), "snapshot series not loaded: {e}");
                continue;
            }
            if series.truncate_before(min_valid) == 0 {
                self.head.remove(&series);
                continue;
            }
            if let Some((lo, hi)) = series.time_range() {
                let mut b = self.head_bounds.lock();
                let (blo, bhi) = b.get_or_insert((lo, hi));
                *blo = (*blo).min(lo);
                *bhi = (*bhi).max(hi);
            }
            n += 1;
        }
        Ok(n)
    }

    /// True when the head spans enough time to cut a block.
    pub fn needs_maintenance(&self) -> bool {
        self.head_bounds
            .lock()
            .is_some_and(|(lo, hi)| hi.saturating_sub(lo) >= self.block_duration / 2 * 3)
    }

    /// Waits until the head is due for a cut or `timeout` passes.
    pub fn wait_for_work(&self, timeout: Duration) {
        let (flag, cv) = &self.wake;
        let mut due = flag.lock();
        if !*due {
            cv.wait_for(&mut due, timeout);
        }
        *due = false;
    }

    /// Wakes [`Tsdb::wait_for_work`] (e.g. to stop the maintenance loop).
    pub fn wake(&self) {
        let (flag, cv) = &self.wake;
        *flag.lock() = true;
        cv.notify_all();
    }

    /// Runs maintenance: cuts blocks while the head is due, applies
    /// retention and collects garbage when blocks were deleted. Returns the
    /// number of blocks written. Without a data directory, does nothing.
    pub fn maintain(&self) -> Result<usize, MaintenanceError> {
        if self.dir.is_none() {
            return Ok(0);
        }
        let _m = self.maintenance.lock();
        let d = self.block_duration;
        let written = self.cut_while(|lo, hi| hi.saturating_sub(lo) >= d / 2 * 3)?;
        let deleted = self.apply_retention_locked()?;
        if deleted > 0 || written > 0 {
            self.collect_garbage_locked()?;
        }
        Ok(written)
    }

    /// Cuts every profile of the head into blocks, whatever the head's span
    /// (the last block ends after the newest profile, so the head then
    /// accepts only later profiles). For tests and tools.
    pub fn cut_all(&self) -> Result<usize, MaintenanceError> {
        if self.dir.is_none() {
            return Ok(0);
        }
        let _m = self.maintenance.lock();
        self.cut_while(|_, _| true)
    }

    /// Cuts the oldest aligned block range of the head while the head is
    /// not empty and `due(min, max)` holds for its bounds. Returns the
    /// number of blocks written. The caller holds the maintenance lock.
    fn cut_while(&self, due: impl Fn(i64, i64) -> bool) -> Result<usize, MaintenanceError> {
        let mut written = 0;
        loop {
            // The guard must not live through the cut, which sets the bounds.
            let bounds = *self.head_bounds.lock();
            let Some((lo, hi)) = bounds else { break };
            if !due(lo, hi) {
                break;
            }
            let mint = lo.div_euclid(self.block_duration) * self.block_duration;
            self.cut_block(mint, mint.saturating_add(self.block_duration))?;
            written += 1;
        }
        Ok(written)
    }

    fn blocks_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("blocks"))
    }

    /// Writes the head's profiles in `[mint, maxt)` to a block and drops them
    /// from the head (see the module docs). The caller holds the
    /// maintenance lock.
    fn cut_block(&self, mint: i64, maxt: i64) -> Result<(), MaintenanceError> {
        let Some(bdir) = self.blocks_dir() else {
            return Ok(());
        };
        let started = Instant::now();
        // 1.
        let wal_seq = {
            let _w = self.state.write();
            self.min_valid.fetch_max(maxt, Relaxed);
            match &self.wal {
                Some(wal) => Some(wal.cut()?),
                None => None,
            }
        };
        // 2.
        let mut series = self.head.all_series();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let path = bdir.join(format!("{mint}_{maxt}.block"));
        let data = series.iter().filter_map(|s| {
            let profiles = s.profiles(mint, maxt - 1);
            (!profiles.is_empty()).then(|| BlockSeriesData {
                labels: s.labels.clone(),
                pprof_labels: s.pprof_labels.clone(),
                sets: build_sets(&profiles),
            })
        });
        let written =
            write_block(&path, mint, maxt, data, self.meta.as_ref()).inspect_err(|_| {
                self.mstats.failures.fetch_add(1, Relaxed);
            })?;
        let block = Arc::new(Block::open(&path)?);
        // 3.
        let mut removed = 0;
        {
            let mut blocks = self.state.write();
            blocks.push(block);
            blocks.sort_by_key(|b| b.min_time());
            let mut bounds: Option<(i64, i64)> = None;
            for s in self.head.all_series() {
                if s.truncate_before(maxt) == 0 {
                    self.head.remove(&s);
                    removed += 1;
                } else if let Some((lo, hi)) = s.time_range() {
                    let b = bounds.get_or_insert((lo, hi));
                    b.0 = b.0.min(lo);
                    b.1 = b.1.max(hi);
                }
            }
            *self.head_bounds.lock() = bounds;
            self.head.shrink();
        }
        // 4.
        self.meta.flush()?;
        let mut segments = 0;
        if let (Some(wal), Some(seq)) = (&self.wal, wal_seq) {
            segments = wal.remove_before(seq, maxt)?;
        }
        self.mstats.blocks_written.fetch_add(1, Relaxed);
        self.mstats
            .series_removed
            .fetch_add(removed as u64, Relaxed);
        self.mstats
            .wal_segments_deleted
            .fetch_add(segments as u64, Relaxed);
        tracing::info!(
            block = %path.display(),
            series = written.series,
            profiles = written.profiles,
            bytes = written.bytes,
            head_series_removed = removed,
            wal_segments_deleted = segments,
            ms = started.elapsed().as_millis() as u64,
            "block written"
        );
        Ok(())
    }

    fn apply_retention_locked(&self) -> Result<usize, MaintenanceError> {
        let Some(retention) = self.retention else {
            return Ok(0);
        };
        let doomed: Vec<Arc<Block>> = {
            let mut blocks = self.state.write();
            let newest = self
                .head_bounds
                .lock()
                .map(|(_, hi)| hi)
                .into_iter()
                .chain(blocks.last().map(|b| b.max_time() - 1))
                .max();
            let Some(newest) = newest else {
                return Ok(0);
            };
            // A profile stamped in the future (a skewed clock) must not
            // make retention delete recent data: never count past now.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(i64::MAX, |d| d.as_millis() as i64);
            let newest = newest.min(now);
            let cutoff = newest.saturating_sub(retention);
            let (old, keep): (Vec<_>, Vec<_>) =
                blocks.drain(..).partition(|b| b.max_time() <= cutoff);
            *blocks = keep;
            old
        };
        for b in &doomed {
            std::fs::remove_file(b.path()).map_err(io(b.path()))?;
            tracing::info!(block = %b.path().display(), "block past retention deleted");
        }
        self.mstats
            .blocks_deleted
            .fetch_add(doomed.len() as u64, Relaxed);
        Ok(doomed.len())
    }

    /// Collects meta entries no head series references (blocks carry their
    /// own symbols). Returns the number of entries deleted.
    pub fn collect_garbage(&self) -> Result<u64, MaintenanceError> {
        let _m = self.maintenance.lock();
        self.collect_garbage_locked()
    }

    fn collect_garbage_locked(&self) -> Result<u64, MaintenanceError> {
        let _blocks = self.state.write();
        let mut live: FxHashSet<StackId> = FxHashSet::default();
        for s in self.head.all_series() {
            s.stack_ids(&mut live);
        }
        let before_cache = self.meta.cache_bytes();
        let gc = self.meta.collect_garbage(&live)?;
        let d = &gc.deleted;
        let deleted = d.mappings + d.functions + d.locations + d.stacks;
        tracing::info!(
            live_stacks = live.len(),
            deleted_stacks = d.stacks,
            deleted_locations = d.locations,
            deleted_functions = d.functions,
            deleted_mappings = d.mappings,
            cache_bytes_before = before_cache,
            cache_bytes_after = self.meta.cache_bytes(),
            ms = gc.duration.as_millis() as u64,
            "meta store garbage collected"
        );
        self.mstats.gc_runs.fetch_add(1, Relaxed);
        self.mstats.gc_deleted.fetch_add(deleted, Relaxed);
        Ok(deleted)
    }

    /// Clean shutdown: writes the head to the snapshot, flushes the meta
    /// store and deletes the WAL, so the next start replays nothing.
    /// Ingest is excluded while it runs; call it after the server stopped.
    pub fn close(&self) -> Result<(), MaintenanceError> {
        self.stop_maintenance();
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let _m = self.maintenance.lock();
        let _w = self.state.write();
        let started = Instant::now();
        let mut series = self.head.all_series();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let data = series.iter().map(|s| BlockSeriesData {
            labels: s.labels.clone(),
            pprof_labels: s.pprof_labels.clone(),
            sets: s.chunk_sets(),
        });
        let snap = dir.join(SNAPSHOT);
        let written = write_block(&snap, i64::MIN, i64::MAX, data, self.meta.as_ref())?;
        self.meta.flush()?;
        let mut segments = 0;
        if let Some(wal) = &self.wal {
            let seq = wal.cut()?;
            segments = wal.remove_before(seq, i64::MAX)?;
        }
        tracing::info!(
            series = written.series,
            profiles = written.profiles,
            bytes = written.bytes,
            wal_segments_deleted = segments,
            ms = started.elapsed().as_millis() as u64,
            "head snapshot written"
        );
        Ok(())
    }

    /// Starts the thread that cuts blocks when the head is due (woken by
    /// ingest), applies retention and collects garbage at least every
    /// minute; [`Tsdb::close`] stops it. Does nothing when one runs.
    pub fn start_maintenance(self: &Arc<Self>) -> std::io::Result<()> {
        let mut bg = self.background.lock();
        if bg.is_some() {
            return Ok(());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let store = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("maintenance".into())
            .spawn(move || {
                while !flag.load(Acquire) {
                    if let Err(e) = store.maintain() {
                        store.note_failure();
                        tracing::error!("maintenance failed: {e}");
                    }
                    store.wait_for_work(Duration::from_secs(60));
                }
            })?;
        *bg = Some(Background { stop, thread });
        Ok(())
    }

    /// Stops the maintenance thread, if one runs, and waits for it.
    fn stop_maintenance(&self) {
        let Some(bg) = self.background.lock().take() else {
            return;
        };
        bg.stop.store(true, Release);
        self.wake();
        if bg.thread.join().is_err() {
            tracing::error!("the maintenance thread panicked");
        }
    }

    /// Maintenance counters and the blocks now.
    pub fn maintenance_stats(&self) -> MaintenanceStats {
        let blocks = self.state.read();
        let m = &self.mstats;
        MaintenanceStats {
            blocks_written: m.blocks_written.load(Relaxed),
            blocks_deleted: m.blocks_deleted.load(Relaxed),
            wal_segments_deleted: m.wal_segments_deleted.load(Relaxed),
            series_removed: m.series_removed.load(Relaxed),
            gc_runs: m.gc_runs.load(Relaxed),
            gc_deleted: m.gc_deleted.load(Relaxed),
            failures: m.failures.load(Relaxed),
            blocks: blocks.len(),
            block_bytes: blocks.iter().map(|b| b.size_bytes()).sum(),
            block_memory_bytes: blocks.iter().map(|b| b.memory_bytes()).sum(),
            block_damaged_reads: blocks.iter().map(|b| b.damaged_reads()).sum(),
        }
    }

    /// The open blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.state.read().clone()
    }

    /// Records a failed maintenance step (the caller logs it).
    pub fn note_failure(&self) {
        self.mstats.failures.fetch_add(1, Relaxed);
    }
}

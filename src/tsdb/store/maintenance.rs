//! Maintenance of a [`Tsdb`]: cutting the head into blocks, checkpointing
//! the WAL, retention, garbage collection, the shutdown snapshot, and
//! loading blocks and the snapshot at open.
//!
//! # Cutting a block
//! The head's oldest aligned range `[mint, mint + d)` is cut once the wall
//! clock is half a block past its end (`mint + 1.5 d <= now`), so late
//! profiles of the last half block still go to the head, and no timestamp a
//! writer sends can make a cut come early. A maintenance run:
//! 1. exclusively: the WAL starts a new segment, so the closed segments
//!    hold only profiles that are in a head now;
//! 2. per due range, exclusively: `min_valid` rises to the range's end (later
//!    profiles before it go to the late head); then concurrently with ingest
//!    and queries: the range's profiles are read from the head, encoded
//!    again and written to `blocks/<mint>_<maxt>.block` (temporary name,
//!    sync, rename); then exclusively: the block joins the list, the head
//!    drops the range, and series left without profiles leave it;
//! 3. the late head is compacted into the blocks of its ranges (`compact.rs`);
//! 4. the meta store is flushed, then the closed WAL segments whose
//!    profiles are all before `min_valid` are deleted: each of their
//!    profiles is in a block now.
//!
//! A crash between any two steps loses nothing: until step 4 the WAL still
//! holds every profile, and replay skips what a block already holds (a
//! duplicate).
//!
//! # Idle series
//! At most every [`SEAL_EVERY_MS`] (by the store's clock), a run first seals
//! the open chunk sets of head series that look gone: no profile for
//! three of the series' own intervals between profiles, but at least
//! [`SEAL_IDLE_MIN_MS`] and at most [`SEAL_IDLE_MS`]
//! ([`crate::tsdb::head::Head::seal_idle`]): a target that went away keeps
//! its columns packed until the cut takes them. This only changes how the
//! head holds them in memory (a profile that comes after all unpacks the
//! set again).

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

/// A head series' open chunk set is sealed at the latest once its newest
/// profile is this old (ms): five minutes, many scrape intervals of a live
/// target, and the wait for a set of one profile.
pub const SEAL_IDLE_MS: i64 = 5 * 60_000;

/// ... and at the earliest once it is this old (ms), whatever the series'
/// interval: a profiler that pushes every few seconds may pause.
pub const SEAL_IDLE_MIN_MS: i64 = 30_000;

/// How often (ms, by the store's clock) maintenance looks for idle series
/// (each look locks every head series once), and how long the maintenance
/// thread waits between runs when nothing wakes it.
pub const SEAL_EVERY_MS: i64 = 15_000;

/// The maintenance thread and its stop flag.
#[derive(Debug)]
pub(super) struct Background {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// Profiles in the late head that make maintenance compact it at once
/// (otherwise it is compacted with the next cut, or half a block after its
/// first profile arrived).
pub const LATE_MAX_PROFILES: u64 = 50_000;

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
    pub(super) failures: AtomicU64,
    pub(super) compactions: AtomicU64,
    pub(super) late_compacted: AtomicU64,
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
    /// Blocks written by compaction (late profiles merged into a range).
    pub compactions: u64,
    /// Late profiles compacted into blocks.
    pub late_compacted: u64,
    /// Open blocks.
    pub blocks: usize,
    /// Bytes of the open blocks' files.
    pub block_bytes: u64,
    /// Memory held by the open blocks' indexes.
    pub block_memory_bytes: usize,
    /// Chunk reads that found damage in a block.
    pub block_damaged_reads: u64,
    /// Blocks shipped to the bucket (an ingester's).
    pub blocks_shipped: u64,
    /// Blocks waiting to be shipped.
    pub blocks_pending_upload: u64,
    /// Failed block uploads (each retried).
    pub block_uploads_failed: u64,
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
        if let Some(end) = blocks.iter().map(|b| b.max_time()).max() {
            self.min_valid.store(end, Relaxed);
        }
        recovery.blocks = blocks.len();
        self.state.write().blocks = blocks;
        // Blocks overlap only when a crash stopped a compaction between
        // writing its block and deleting the blocks it replaced.
        self.merge_overlapping_blocks()?;
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
            if series.truncate_before(min_valid, &self.head.stack_table()) == 0 {
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

    /// True when the head's range starting with `lo` is due for a cut at
    /// wall-clock time `now`: half a block past the range's end.
    pub(super) fn cut_due(&self, lo: i64, now: i64) -> bool {
        let d = self.block_duration;
        let end = lo.div_euclid(d).saturating_mul(d).saturating_add(d);
        end.saturating_add(d / 2) <= now
    }

    /// True when the late head waits to be compacted: it holds
    /// [`LATE_MAX_PROFILES`], or its first profile came half a block ago.
    fn late_due(&self, now: i64) -> bool {
        let since = self.late_since.load(Relaxed);
        self.late_profiles.load(Relaxed) >= LATE_MAX_PROFILES
            || (since != i64::MAX && since.saturating_add(self.block_duration / 2) <= now)
    }

    /// True when the head has a range due for a cut now, the late head is
    /// due for compaction, or idle series are due to be sealed.
    pub fn needs_maintenance(&self) -> bool {
        let now = self.limits.time.now_ms();
        let head = (*self.head_bounds.lock()).is_some_and(|(lo, _)| self.cut_due(lo, now));
        head || self.late_due(now) || self.seal_due(now)
    }

    /// True when idle series were last sealed [`SEAL_EVERY_MS`] or more
    /// before `now` (see "Idle series" in the module docs).
    fn seal_due(&self, now: i64) -> bool {
        now.saturating_sub(self.last_seal.load(Relaxed)) >= SEAL_EVERY_MS
    }

    /// Seals the head's idle series when due; returns how many sets.
    fn seal_idle(&self, now: i64) -> usize {
        if !self.seal_due(now) {
            return 0;
        }
        self.last_seal.store(now, Relaxed);
        let sealed = self.head.seal_idle(now, SEAL_IDLE_MIN_MS, SEAL_IDLE_MS);
        if sealed > 0 {
            tracing::debug!(sealed, "sealed the chunk sets of idle series");
        }
        sealed
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

    /// Runs maintenance: seals idle series when due, cuts the head's ranges
    /// that are due, compacts the late head, applies retention and collects
    /// garbage when blocks were written or deleted. Returns the number of
    /// blocks written. Without a data directory, only seals.
    pub fn maintain(&self) -> Result<usize, MaintenanceError> {
        self.seal_idle(self.limits.time.now_ms());
        if self.dir.is_none() {
            return Ok(0);
        }
        let _m = self.maintenance.lock();
        let now = self.limits.time.now_ms();
        let written = self.cut_and_compact(|lo| self.cut_due(lo, now), self.late_due(now))?;
        let deleted = self.apply_retention_locked(now)?;
        if deleted > 0 || written > 0 {
            self.collect_garbage_locked()?;
        }
        Ok(written)
    }

    /// Cuts every profile of the head into blocks, whatever the time (the
    /// last block ends after the newest profile, so later profiles before
    /// its end go to the late head), and compacts the late head. For tests
    /// and tools.
    pub fn cut_all(&self) -> Result<usize, MaintenanceError> {
        if self.dir.is_none() {
            return Ok(0);
        }
        let _m = self.maintenance.lock();
        self.cut_and_compact(|_| true, true)
    }

    /// Steps 1 to 4 of the module docs: cuts the head's oldest aligned range
    /// while `due(head's min time)` holds, then compacts the late head (also
    /// when `late_due` alone holds), then deletes the WAL segments whose
    /// profiles are all in blocks. Returns the number of blocks written. The
    /// caller holds the maintenance lock.
    fn cut_and_compact(
        &self,
        due: impl Fn(i64) -> bool,
        late_due: bool,
    ) -> Result<usize, MaintenanceError> {
        let head_due = (*self.head_bounds.lock()).is_some_and(|(lo, _)| due(lo));
        let retry = !self.state.read().compacting.is_empty();
        if !head_due && !late_due && !retry {
            return Ok(0);
        }
        // 1.
        let wal_seq = {
            let _w = self.state.write();
            match &self.wal {
                Some(wal) => Some(wal.cut()?),
                None => None,
            }
        };
        // 2.
        let mut written = 0;
        loop {
            // The guard must not live through the cut, which sets the bounds.
            let bounds = *self.head_bounds.lock();
            let Some((lo, _)) = bounds else { break };
            if !due(lo) {
                break;
            }
            let d = self.block_duration;
            let mint = lo.div_euclid(d).saturating_mul(d);
            // A block written under another block duration may end inside
            // this range.
            let mint = mint.max(self.min_valid.load(Relaxed));
            self.cut_block(mint, lo.div_euclid(d).saturating_mul(d).saturating_add(d))?;
            written += 1;
        }
        // 3. Always: the closed segments' late profiles must be in blocks
        // before the segments go.
        written += self.compact_late()?;
        // 4.
        self.meta.flush()?;
        if let (Some(wal), Some(seq)) = (&self.wal, wal_seq) {
            let keep_from = self.min_valid.load(Relaxed).min(self.unshipped_from());
            let segments = wal.remove_before(seq, keep_from)?;
            self.mstats
                .wal_segments_deleted
                .fetch_add(segments as u64, Relaxed);
        }
        Ok(written)
    }

    pub(super) fn blocks_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("blocks"))
    }

    /// Writes the head's profiles in `[mint, maxt)` to a block and drops them
    /// from the head (step 2 of the module docs). The caller holds the
    /// maintenance lock.
    fn cut_block(&self, mint: i64, maxt: i64) -> Result<(), MaintenanceError> {
        let Some(bdir) = self.blocks_dir() else {
            return Ok(());
        };
        let started = Instant::now();
        {
            let _w = self.state.write();
            self.min_valid.fetch_max(maxt, Relaxed);
        }
        let mut series = self.head.all_series();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        // No profile before `maxt` reaches the head any more, but one may
        // have come before `mint` (after the bounds were read, above the
        // previous `min_valid`): the block starts at the head's first
        // profile then, so step 3's truncation drops nothing unwritten.
        let first = series
            .iter()
            .filter_map(|s| s.time_range())
            .map(|r| r.0)
            .min();
        let mint = first.map_or(mint, |f| f.min(mint));
        let path = bdir.join(format!("{mint}_{maxt}.block"));
        // The sets built here live until they are written.
        let table = std::sync::Arc::new(crate::tsdb::stacktable::StackTable::new());
        let data = series.iter().filter_map(|s| {
            let profiles = s.profiles(mint, maxt - 1);
            (!profiles.is_empty()).then(|| BlockSeriesData {
                labels: s.labels.clone(),
                pprof_labels: s.pprof_labels.clone(),
                sets: build_sets(&profiles, &table),
            })
        });
        let written =
            write_block(&path, mint, maxt, data, self.meta.as_ref()).inspect_err(|_| {
                self.mstats.failures.fetch_add(1, Relaxed);
            })?;
        let block = Arc::new(Block::open(&path)?);
        if let Some(s) = &self.shipper {
            s.offer(&block);
        }
        let mut removed = 0;
        {
            let mut parts = self.state.write();
            parts.blocks.push(block);
            parts.blocks.sort_by_key(|b| b.min_time());
            let mut bounds: Option<(i64, i64)> = None;
            // Sets built from now on go to a new stack table; the old one
            // goes with the last set that uses it.
            self.head.start_stack_table();
            let head_table = self.head.stack_table();
            for s in self.head.all_series() {
                if s.truncate_before(maxt, &head_table) == 0 {
                    self.head.remove(&s);
                    removed += 1;
                } else if let Some((lo, hi)) = s.time_range() {
                    let b = bounds.get_or_insert((lo, hi));
                    b.0 = b.0.min(lo);
                    b.1 = b.1.max(hi);
                }
            }
            *self.head_bounds.lock() = bounds;
            self.head.reset_time_bounds(bounds);
            self.head.shrink();
        }
        self.mstats.blocks_written.fetch_add(1, Relaxed);
        self.mstats
            .series_removed
            .fetch_add(removed as u64, Relaxed);
        tracing::info!(
            block = %path.display(),
            series = written.series,
            profiles = written.profiles,
            bytes = written.bytes,
            head_series_removed = removed,
            ms = started.elapsed().as_millis() as u64,
            "block written"
        );
        Ok(())
    }

    /// Deletes the blocks that end before `now − retention` (wall clock).
    fn apply_retention_locked(&self, now: i64) -> Result<usize, MaintenanceError> {
        let Some(cutoff) = self.limits.time.oldest_ms(now) else {
            return Ok(0);
        };
        // A block not yet shipped stays until it is.
        let unshipped = |b: &Block| self.shipper.as_ref().is_some_and(|s| s.is_pending(b));
        // Most runs delete nothing: they do not wait for the write lock,
        // which waits for running queries and holds up ingest meanwhile.
        let any =
            (self.state.read().blocks.iter()).any(|b| b.max_time() <= cutoff && !unshipped(b));
        if !any {
            return Ok(0);
        }
        let doomed: Vec<Arc<Block>> = {
            let mut parts = self.state.write();
            let (old, keep): (Vec<_>, Vec<_>) = parts
                .blocks
                .drain(..)
                .partition(|b| b.max_time() <= cutoff && !unshipped(b));
            parts.blocks = keep;
            old
        };
        for b in &doomed {
            std::fs::remove_file(b.path()).map_err(io(b.path()))?;
            if let Some(s) = &self.shipper {
                s.forget(b);
            }
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
        let parts = self.state.write();
        let mut live: FxHashSet<StackId> = FxHashSet::default();
        for head in parts.heads().map(|h| h.as_ref()).chain([&self.head]) {
            for s in head.all_series() {
                s.stack_ids(&mut live);
            }
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
        // sled's file keeps its largest size; a collection that emptied it
        // is the moment to copy what is left into a smaller one.
        self.meta.compact_if_sparse()?;
        Ok(deleted)
    }

    /// Clean shutdown: compacts the late head into blocks, writes the head
    /// to the snapshot, flushes the meta store and deletes the WAL, so the
    /// next start replays nothing. Ingest is excluded while it runs; call it
    /// after the server stopped.
    pub fn close(&self) -> Result<(), MaintenanceError> {
        self.stop_maintenance();
        if let Some(s) = &self.shipper {
            s.stop();
        }
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let _m = self.maintenance.lock();
        self.compact_late()?;
        let _w = self.state.write();
        let started = Instant::now();
        let mut series = self.head.all_series();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        // Sets built again for the snapshot live until they are written.
        let table = std::sync::Arc::new(crate::tsdb::stacktable::StackTable::new());
        let data = series.iter().map(|s| BlockSeriesData {
            labels: s.labels.clone(),
            pprof_labels: s.pprof_labels.clone(),
            sets: s.chunk_sets(&table),
        });
        let snap = dir.join(SNAPSHOT);
        let written = write_block(&snap, i64::MIN, i64::MAX, data, self.meta.as_ref())?;
        self.meta.flush()?;
        let mut segments = 0;
        if let Some(wal) = &self.wal {
            let seq = wal.cut()?;
            segments = wal.remove_before(seq, self.unshipped_from())?;
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
        if let Some(s) = &self.shipper {
            s.start()?;
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
                    store.wait_for_work(Duration::from_millis(SEAL_EVERY_MS as u64));
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
        let parts = self.state.read();
        let blocks = &parts.blocks;
        let m = &self.mstats;
        MaintenanceStats {
            blocks_written: m.blocks_written.load(Relaxed),
            blocks_deleted: m.blocks_deleted.load(Relaxed),
            wal_segments_deleted: m.wal_segments_deleted.load(Relaxed),
            series_removed: m.series_removed.load(Relaxed),
            gc_runs: m.gc_runs.load(Relaxed),
            gc_deleted: m.gc_deleted.load(Relaxed),
            failures: m.failures.load(Relaxed),
            compactions: m.compactions.load(Relaxed),
            late_compacted: m.late_compacted.load(Relaxed),
            blocks: blocks.len(),
            block_bytes: blocks.iter().map(|b| b.size_bytes()).sum(),
            block_memory_bytes: blocks.iter().map(|b| b.memory_bytes()).sum(),
            block_damaged_reads: blocks.iter().map(|b| b.damaged_reads()).sum(),
            blocks_shipped: self
                .shipper
                .as_ref()
                .map_or(0, |s| s.stats().shipped.load(Relaxed)),
            blocks_pending_upload: self.shipper.as_ref().map_or(0, |s| s.num_pending() as u64),
            block_uploads_failed: self
                .shipper
                .as_ref()
                .map_or(0, |s| s.stats().failed.load(Relaxed)),
        }
    }

    /// The open blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.state.read().blocks.clone()
    }

    /// Records a failed maintenance step (the caller logs it).
    pub fn note_failure(&self) {
        self.mstats.failures.fetch_add(1, Relaxed);
    }
}

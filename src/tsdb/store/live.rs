//! An ingester's live data ([`crate::engine::live`]): every profile it
//! holds outside the blocks it has shipped, as one block file.
//!
//! Under the state's read lock (so that no cut or compaction swap moves
//! profiles between the parts being read): the head's series are written
//! as they are (their chunk sets, as the shutdown snapshot does) to
//! `<stem>-head.tmp` beside `path`; the late and compacting heads' profiles are copied; and
//! the listed blocks without a `.shipped` marker that matches them are
//! taken. Then, without the lock, they are merged into `path`
//! ([`merge_blocks`]: a series found in one part keeps its sets; profiles
//! in two parts count once). A profile may be both in the export and in a
//! block shipped meanwhile; readers count a stream's profile at one
//! timestamp once.

use super::{MaintenanceError, Tsdb};
use crate::engine::live::{LiveData, LiveSource};
use crate::model::StorageError;
use crate::tsdb::block::{
    merge_blocks, write_block_uncompressed, Block, BlockSeriesData, LooseProfiles,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Names the temporary files of concurrent exports apart.
static EXPORTS: AtomicU64 = AtomicU64::new(0);

/// Deletes its files when dropped.
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Tsdb {
    /// Writes every profile this store holds outside its shipped blocks to
    /// `path` as one block (see the module docs); `false` when it holds
    /// none (and nothing is written). `path` should end in `.tmp`, as the
    /// head's temporary file beside it does, so that the store deletes
    /// what a crash leaves.
    pub fn write_live(&self, path: &Path) -> Result<bool, MaintenanceError> {
        // A `.tmp` name: the store deletes such files at open, so a crash
        // mid-export leaves nothing behind.
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("live");
        let head_path = path.with_file_name(format!("{stem}-head.tmp"));
        let _cleanup = TempFiles(vec![head_path.clone()]);
        // Sets built again for the export live until they are written.
        let table = std::sync::Arc::new(crate::tsdb::stacktable::StackTable::new());
        let (head, loose, unshipped) = {
            let parts = self.state.read();
            let mut series: Vec<_> = self
                .head
                .all_series()
                .into_iter()
                .map(|s| {
                    let sets = s.chunk_sets(&table);
                    (s, sets)
                })
                .filter(|(_, sets)| !sets.is_empty())
                .collect();
            series.sort_by(|a, b| a.0.labels.cmp(&b.0.labels));
            let head = if series.is_empty() {
                None
            } else {
                let data = series.into_iter().map(|(s, sets)| BlockSeriesData {
                    labels: s.labels.clone(),
                    pprof_labels: s.pprof_labels.clone(),
                    sets,
                });
                // Read once by the merge below, then deleted: not worth
                // compressing.
                write_block_uncompressed(&head_path, i64::MIN, i64::MAX, data, self.meta.as_ref())?;
                Some(Arc::new(Block::open(&head_path)?))
            };
            let mut loose = LooseProfiles::new();
            for h in parts.heads() {
                for s in h.all_series() {
                    let profiles = s.profiles(i64::MIN, i64::MAX);
                    if profiles.is_empty() {
                        continue;
                    }
                    loose
                        .entry(s.labels.clone())
                        .or_insert_with(|| (s.pprof_labels.clone(), Vec::new()))
                        .1
                        .extend(profiles);
                }
            }
            let unshipped: Vec<Arc<Block>> = parts
                .blocks
                .iter()
                .filter(|b| !self.shipper.as_ref().is_some_and(|s| s.is_shipped(b)))
                .cloned()
                .collect();
            (head, loose, unshipped)
        };
        let inputs: Vec<(Arc<Block>, u32)> =
            head.into_iter().chain(unshipped).map(|b| (b, 0)).collect();
        if inputs.is_empty() && loose.is_empty() {
            return Ok(false);
        }
        // The block's range: its profiles' times (the head's temporary
        // block says "all time").
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        let series_times = inputs
            .iter()
            .flat_map(|(b, _)| b.select(&[], i64::MIN, i64::MAX))
            .map(|s| s.time_range());
        let loose_times = loose
            .values()
            .flat_map(|(_, p)| p.iter().map(|p| (p.timestamp, p.timestamp)));
        for (first, last) in series_times.chain(loose_times) {
            lo = lo.min(first);
            hi = hi.max(last.saturating_add(1));
        }
        if lo > hi {
            return Ok(false);
        }
        merge_blocks(path, lo, hi, &inputs, loose, Some(self.meta.as_ref()))?;
        Ok(true)
    }
}

impl LiveSource for Tsdb {
    fn name(&self) -> String {
        match &self.dir {
            Some(d) => d.display().to_string(),
            None => "in-memory store".to_string(),
        }
    }

    fn live(&self) -> Result<Option<LiveData>, StorageError> {
        let Some(dir) = self.blocks_dir() else {
            return Err(StorageError::new(
                "blocks",
                "this store has no data directory to write its live data in",
            ));
        };
        let n = EXPORTS.fetch_add(1, Relaxed);
        let path = dir.join(format!("live-{}-{n}.tmp", std::process::id()));
        let _cleanup = TempFiles(vec![path.clone()]);
        if !self
            .write_live(&path)
            .map_err(|e| StorageError::new("blocks", e))?
        {
            return Ok(None);
        }
        let block = std::fs::read(&path)
            .map_err(|e| StorageError::new("blocks", format!("{}: {e}", path.display())))?;
        let external_labels = self
            .shipper
            .as_ref()
            .map(|s| s.external_labels().clone())
            .unwrap_or_default();
        Ok(Some(LiveData {
            external_labels,
            block,
        }))
    }
}

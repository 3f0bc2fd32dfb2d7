//! Compaction: merging profiles into the blocks that cover their time.
//!
//! Late profiles (stamped before `min_valid`, the newest block's end) wait
//! in the late head. Compacting it:
//! 1. exclusively: the late head is swapped for an empty one and kept in
//!    `compacting`, where queries and the duplicate check still read it;
//! 2. its profiles are grouped by aligned block range `[m, m + d)` (cut at
//!    `min_valid`); each range grows to cover the listed blocks it overlaps,
//!    and ranges that then overlap are joined, so each group is one block
//!    range and its parent blocks;
//! 3. per group, concurrently with ingest and queries: the parents' profiles
//!    and the late ones are merged per series in time order (a profile that
//!    is in both counts once), encoded again and written to
//!    `blocks/<min>_<max>.block` (temporary name, sync, rename; a parent
//!    with the same range is replaced by the rename). Queries keep reading
//!    the parents through their open files and the compacting head;
//! 4. exclusively: the new blocks replace their parents in the list and the
//!    compacting heads are dropped; then parents with other names are
//!    deleted.
//!
//! A failure before step 4 leaves the compacting head in place; the next
//! run compacts it again with the late head of then. A crash loses nothing
//! either: the WAL keeps the late profiles until a later maintenance run has
//! them in blocks, replay skips those a block already holds, and blocks left
//! overlapping by a crash between step 3's rename and step 4's deletions are
//! merged the same way when the store opens
//! ([`Tsdb::merge_overlapping_blocks`]).

use super::{MaintenanceError, Tsdb};
use crate::tsdb::block::{merge_blocks, Block, LooseProfiles};
use crate::tsdb::chunkset::AppendProfile;
use crate::tsdb::head::Head;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// One series' profiles to merge, with its pprof label names.
type SeriesProfiles = LooseProfiles;

/// One block to write: its range and the listed blocks it replaces.
#[derive(Debug)]
struct Group {
    start: i64,
    end: i64,
    parents: Vec<Arc<Block>>,
}

impl Group {
    fn absorb(&mut self, start: i64, end: i64, parents: Vec<Arc<Block>>) {
        self.start = self.start.min(start);
        self.end = self.end.max(end);
        for p in parents {
            if !self.parents.iter().any(|q| Arc::ptr_eq(q, &p)) {
                self.parents.push(p);
            }
        }
    }
}

/// Groups sorted, non-empty `ranges` with the `blocks` they overlap (see
/// step 2 of the module docs).
fn plan_groups(ranges: &[(i64, i64)], blocks: &[Arc<Block>]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for &(mut start, mut end) in ranges {
        let parents: Vec<Arc<Block>> = blocks
            .iter()
            .filter(|b| b.min_time() < end && b.max_time() > start)
            .cloned()
            .collect();
        for b in &parents {
            start = start.min(b.min_time());
            end = end.max(b.max_time());
        }
        match groups.last_mut() {
            Some(g) if g.end > start => g.absorb(start, end, parents),
            _ => groups.push(Group {
                start,
                end,
                parents,
            }),
        }
    }
    groups
}

impl Tsdb {
    /// Compacts the late head (and any left from a failed run) into blocks;
    /// see the module docs. Returns the number of blocks written. The
    /// caller holds the maintenance lock.
    pub(super) fn compact_late(&self) -> Result<usize, MaintenanceError> {
        // 1.
        let heads: Vec<Arc<Head>> = {
            let mut parts = self.state.write();
            if parts.late.num_series() > 0 {
                let fresh = Arc::new(Head::new(self.limits.max_series));
                let late = std::mem::replace(&mut parts.late, fresh);
                parts.compacting.push(late);
            }
            self.late_profiles.store(0, Relaxed);
            self.late_since.store(i64::MAX, Relaxed);
            parts.compacting.clone()
        };
        if heads.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        // 2.
        let d = self.block_duration;
        let min_valid = self.min_valid.load(Relaxed);
        let mut late: SeriesProfiles = BTreeMap::new();
        let mut starts = std::collections::BTreeSet::new();
        let mut count = 0u64;
        for head in &heads {
            for s in head.all_series() {
                let profiles = s.profiles(i64::MIN, i64::MAX);
                for p in &profiles {
                    starts.insert(p.timestamp.div_euclid(d).saturating_mul(d));
                }
                count += profiles.len() as u64;
                let e = late
                    .entry(s.labels.clone())
                    .or_insert_with(|| (s.pprof_labels.clone(), Vec::new()));
                e.1.extend(profiles);
            }
        }
        let ranges: Vec<(i64, i64)> = starts
            .into_iter()
            .map(|m| (m, m.saturating_add(d).min(min_valid).max(m + 1)))
            .collect();
        let blocks = self.state.read().blocks.clone();
        let groups = plan_groups(&ranges, &blocks);
        // 3.
        let mut done = Vec::with_capacity(groups.len());
        for g in groups {
            let mut own: SeriesProfiles = BTreeMap::new();
            for (labels, (pprof_labels, profiles)) in &late {
                let inside: Vec<AppendProfile> = profiles
                    .iter()
                    .filter(|p| p.timestamp >= g.start && p.timestamp < g.end)
                    .cloned()
                    .collect();
                if !inside.is_empty() {
                    own.insert(labels.clone(), (pprof_labels.clone(), inside));
                }
            }
            let block = self.write_merged(&g, own).inspect_err(|_| {
                self.mstats.failures.fetch_add(1, Relaxed);
            })?;
            done.push((g.parents, block));
        }
        // 4.
        self.swap_in(&done, heads.len())?;
        self.mstats.late_compacted.fetch_add(count, Relaxed);
        tracing::info!(
            late_profiles = count,
            blocks = done.len(),
            ms = started.elapsed().as_millis() as u64,
            "late profiles compacted into blocks"
        );
        Ok(done.len())
    }

    /// Merges blocks that overlap in time into one block per overlapping
    /// run (left by a crash during compaction). Runs at open.
    pub(super) fn merge_overlapping_blocks(&self) -> Result<usize, MaintenanceError> {
        let blocks = self.state.read().blocks.clone();
        let ranges: Vec<(i64, i64)> = blocks
            .iter()
            .map(|b| (b.min_time(), b.max_time()))
            .collect();
        let groups: Vec<Group> = plan_groups(&ranges, &blocks)
            .into_iter()
            .filter(|g| g.parents.len() > 1)
            .collect();
        let mut done = Vec::with_capacity(groups.len());
        for g in groups {
            tracing::warn!(
                blocks = g.parents.len(),
                min_time = g.start,
                max_time = g.end,
                "merging blocks that overlap (a compaction was interrupted)"
            );
            let block = self.write_merged(&g, SeriesProfiles::new())?;
            done.push((g.parents, block));
        }
        self.swap_in(&done, 0)?;
        Ok(done.len())
    }

    /// Writes one group's block: its parents' profiles and `late`, merged
    /// per series (step 3 of the module docs). One series at a time is
    /// decoded, and only a series with late profiles or in two parents:
    /// the others keep their chunk sets as they are.
    fn write_merged(
        &self,
        g: &Group,
        late: SeriesProfiles,
    ) -> Result<Arc<Block>, MaintenanceError> {
        let inputs: Vec<(Arc<Block>, u32)> = g.parents.iter().map(|b| (Arc::clone(b), 0)).collect();
        let Some(bdir) = self.blocks_dir() else {
            unreachable!("compaction runs only with a data directory")
        };
        let path = bdir.join(format!("{}_{}.block", g.start, g.end));
        let written = merge_blocks(
            &path,
            g.start,
            g.end,
            &inputs,
            late,
            Some(self.meta.as_ref()),
        )?;
        self.mstats.compactions.fetch_add(1, Relaxed);
        tracing::info!(
            block = %path.display(),
            parents = g.parents.len(),
            series = written.series,
            profiles = written.profiles,
            bytes = written.bytes,
            "block compacted"
        );
        Ok(Arc::new(Block::open(&path)?))
    }

    /// Step 4: the new blocks replace their parents in the list, and the
    /// first `heads` compacting heads go; then parents with another file
    /// name than their replacement are deleted.
    fn swap_in(
        &self,
        done: &[(Vec<Arc<Block>>, Arc<Block>)],
        heads: usize,
    ) -> Result<(), MaintenanceError> {
        {
            let mut parts = self.state.write();
            for (parents, block) in done {
                parts
                    .blocks
                    .retain(|b| !parents.iter().any(|p| Arc::ptr_eq(p, b)));
                parts.blocks.push(Arc::clone(block));
            }
            parts.blocks.sort_by_key(|b| b.min_time());
            parts.compacting.drain(..heads);
        }
        if let Some(s) = &self.shipper {
            for (_, block) in done {
                s.offer(block);
            }
        }
        for (parents, block) in done {
            for p in parents.iter().filter(|p| p.path() != block.path()) {
                match std::fs::remove_file(p.path()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(MaintenanceError::Io {
                            path: p.path().to_path_buf(),
                            source,
                        })
                    }
                }
            }
        }
        Ok(())
    }
}

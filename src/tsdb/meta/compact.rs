//! Compaction of the meta store's sled database: a fresh copy of what is
//! live, swapped in for the old directory.
//!
//! sled is log-structured: deleting entries frees space inside its file,
//! which later writes reuse, but the file never shrinks. After a garbage
//! collection that deletes most entities (every cut of the head into blocks
//! does: blocks carry their own symbols), the file keeps the size of the
//! store at its largest. [`MetaStore::compact_if_sparse`] copies the live
//! entries into a new database when the file is at least
//! [`COMPACT_MIN_BYTES`] and [`COMPACT_RATIO`] times their bytes.
//!
//! # Steps, and why a crash at any point loses nothing
//! For the store in `meta`, with `meta.compact` and `meta.old` beside it:
//! 1. Every entry of `meta` is copied into a new database in
//!    `meta.compact`, which is flushed and closed.
//! 2. `meta` is closed, renamed to `meta.old`, and `meta.compact` renamed
//!    to `meta`; the parent directory is synced.
//! 3. `meta` is opened again, and `meta.old` deleted.
//!
//! [`recover`], at every open, reads the state a crash left: `meta.compact`
//! without `meta.old` is an unfinished copy (step 1) and is deleted; no
//! `meta` but `meta.old` is step 2 midway, and `meta.compact`, complete
//! since it was flushed before `meta` was renamed, becomes `meta`; a
//! `meta.old` beside `meta` is deleted. Ingest and queries are excluded for
//! the swap (the caller holds the creation lock, the queue is drained and
//! the database is behind a write lock), and the caches do not change: the
//! copy holds exactly what the old database held.

use super::store::{open_sled, sled_config};
use super::{MetaError, MetaStore};
use std::path::{Path, PathBuf};

/// Files smaller than this are never compacted: an empty database takes
/// about 150 KB (its first segments and tree).
pub const COMPACT_MIN_BYTES: u64 = 256 << 10;
/// A file at least this many times the bytes of its live keys and values is
/// compacted. A fresh copy is 1.5–3.5 times them, so a store is not
/// compacted again right after a compaction.
pub const COMPACT_RATIO: u64 = 6;
/// Entries copied per sled batch.
const COPY_BATCH: usize = 4096;

/// What [`MetaStore::compact_if_sparse`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactStats {
    /// sled's size on disk before.
    pub before_bytes: u64,
    /// Bytes of the live keys and values.
    pub live_bytes: u64,
    /// sled's size on disk after (the same as before when not compacted).
    pub after_bytes: u64,
    /// Whether the database was replaced by a compacted copy.
    pub compacted: bool,
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> MetaError {
    move |source| MetaError::Io { context, source }
}

fn remove_dir(path: &Path) -> Result<(), MetaError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(format!("removing {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), MetaError> {
    std::fs::rename(from, to).map_err(io(format!(
        "renaming {} to {}",
        from.display(),
        to.display()
    )))
}

fn sync_parent(dir: &Path) -> Result<(), MetaError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", parent.display())))
}

/// Finishes or undoes a compaction of the store in `dir` that a crash
/// interrupted (see the [module docs](self)). Called by
/// [`MetaStore::open`] before sled opens `dir`.
pub fn recover(dir: &Path) -> Result<(), MetaError> {
    let (copy, old) = (sibling(dir, ".compact"), sibling(dir, ".old"));
    if old.exists() {
        if !dir.exists() {
            if copy.exists() {
                tracing::warn!(dir = %dir.display(), "meta store: finishing an interrupted compaction");
                rename(&copy, dir)?;
            } else {
                // Not a state the steps leave; the old database is whole.
                rename(&old, dir)?;
            }
            sync_parent(dir)?;
        }
        remove_dir(&old)?;
    }
    if copy.exists() {
        tracing::warn!(dir = %dir.display(), "meta store: deleting the copy of an interrupted compaction");
        remove_dir(&copy)?;
    }
    Ok(())
}

impl MetaStore {
    /// Compacts sled's database when its file is at least
    /// [`COMPACT_MIN_BYTES`] and [`COMPACT_RATIO`] times the bytes of its
    /// live entries (see the [module docs](self)). A temporary store is
    /// never compacted.
    pub fn compact_if_sparse(&self) -> Result<CompactStats, MetaError> {
        self.compact_when(COMPACT_MIN_BYTES, COMPACT_RATIO)
    }

    /// [`MetaStore::compact_if_sparse`] with the thresholds given.
    pub(super) fn compact_when(
        &self,
        min_bytes: u64,
        ratio: u64,
    ) -> Result<CompactStats, MetaError> {
        let _guard = self.create.lock();
        self.sync_writes()?;
        let before_bytes = self.disk_bytes();
        let mut stats = CompactStats {
            before_bytes,
            after_bytes: before_bytes,
            ..CompactStats::default()
        };
        let Some(dir) = self.dir.clone() else {
            return Ok(stats);
        };
        if before_bytes < min_bytes {
            return Ok(stats);
        }
        {
            let db = self.db();
            for kv in db.iter() {
                let (k, v) = kv?;
                stats.live_bytes += (k.len() + v.len()) as u64;
            }
        }
        if before_bytes < stats.live_bytes.saturating_mul(ratio) {
            return Ok(stats);
        }

        // 1. The copy.
        let copy = sibling(&dir, ".compact");
        remove_dir(&copy)?;
        {
            // sled's settings of the store copied (its compression goes
            // with the records' framing, which the copy keeps).
            let new = sled_config(&dir).path(&copy).open()?;
            let db = self.db();
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for kv in db.iter() {
                let (k, v) = kv?;
                batch.insert(k, v);
                n += 1;
                if n == COPY_BATCH {
                    new.apply_batch(std::mem::take(&mut batch))?;
                    n = 0;
                }
            }
            new.apply_batch(batch)?;
            new.flush()?;
            db.flush()?;
        }

        // 2. The swap. The old database is closed by replacing it with a
        // throwaway in-memory one for the moment of the renames.
        let mut db = self.db.write();
        *db = sled::Config::new().temporary(true).open()?;
        let old = sibling(&dir, ".old");
        let swapped = rename(&dir, &old)
            .and_then(|()| rename(&copy, &dir))
            .and_then(|()| sync_parent(&dir));
        // 3. Open `dir` again: the copy, or the old database if a rename
        // failed (recover puts whichever is whole back in place).
        let reopened = recover(&dir).and_then(|()| open_sled(&dir));
        match reopened {
            Ok(d) => *db = d,
            Err(e) => {
                // Nothing can be stored any more: refuse new entities as a
                // failed background write does.
                self.fail(format!("reopening after compaction: {e}"));
                return Err(e);
            }
        }
        swapped?;
        stats.after_bytes = db.size_on_disk().unwrap_or(0);
        stats.compacted = true;
        drop(db);
        remove_dir(&old)?;
        tracing::info!(
            before_bytes = stats.before_bytes,
            live_bytes = stats.live_bytes,
            after_bytes = stats.after_bytes,
            "meta store compacted"
        );
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Function, FunctionId};
    use rustc_hash::FxHashSet;

    fn functions(store: &MetaStore, range: std::ops::Range<usize>) -> Vec<FunctionId> {
        store
            .function_ids(
                range
                    .map(|i| Function {
                        name: format!("function-{i}-{}", "x".repeat(200)),
                        ..Default::default()
                    })
                    .collect(),
            )
            .unwrap()
    }

    /// After a collection that deletes most entities, compaction shrinks
    /// the file, keeps every live entity readable, and the store reopens
    /// with them; a store that is not sparse is left alone.
    #[test]
    fn compaction_shrinks_a_sparse_store_and_keeps_the_live_entities() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("meta");
        let store = MetaStore::open(&dir).unwrap();
        let ids = functions(&store, 0..20_000);
        store.flush().unwrap();
        let full = store.compact_when(0, 6).unwrap();
        assert!(!full.compacted, "{full:?}");
        // The functions no stack reaches are garbage: all of them.
        store.collect_garbage(&FxHashSet::default()).unwrap();
        let keep = functions(&store, 0..10);
        assert_eq!(keep, ids[..10]);
        let stats = store.compact_when(0, 6).unwrap();
        assert!(stats.compacted, "{stats:?}");
        assert!(stats.after_bytes * 4 < stats.before_bytes, "{stats:?}");
        assert_eq!(store.counts().functions, 10);
        // Readable, from sled (not only from the caches), and writable.
        store.functions.values.write().clear();
        assert!(store
            .function(ids[3])
            .unwrap()
            .name
            .starts_with("function-3-"));
        let more = functions(&store, 20_000..20_005);
        store.flush().unwrap();
        assert!(!sibling(&dir, ".old").exists());
        assert!(!sibling(&dir, ".compact").exists());
        drop(store);
        let store = MetaStore::open(&dir).unwrap();
        assert_eq!(store.counts().functions, 15);
        assert!(store
            .function(more[4])
            .unwrap()
            .name
            .starts_with("function-20004-"));
        assert!(store
            .function(ids[9])
            .unwrap()
            .name
            .starts_with("function-9-"));
    }

    /// The states a crash can leave (see the module docs) open as the
    /// store before or after the compaction, never as a mix or nothing.
    #[test]
    fn open_recovers_every_state_an_interrupted_compaction_leaves() {
        let make = |dir: &Path, names: std::ops::Range<usize>| {
            let store = MetaStore::open(dir).unwrap();
            functions(&store, names);
            store.flush().unwrap();
        };
        let count = |dir: &Path| MetaStore::open(dir).unwrap().counts().functions;

        // Step 1 midway: a copy and the intact store.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("meta");
        make(&dir, 0..3);
        make(&sibling(&dir, ".compact"), 0..1);
        assert_eq!(count(&dir), 3);
        assert!(!sibling(&dir, ".compact").exists());

        // Step 2 midway: `meta` renamed away, the complete copy beside it.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("meta");
        make(&dir, 0..3);
        make(&sibling(&dir, ".compact"), 0..2);
        std::fs::rename(&dir, sibling(&dir, ".old")).unwrap();
        assert_eq!(count(&dir), 2);
        assert!(!sibling(&dir, ".old").exists());
        assert!(!sibling(&dir, ".compact").exists());

        // Step 3 midway: the swap done, the old directory left.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("meta");
        make(&dir, 0..2);
        make(&sibling(&dir, ".old"), 0..3);
        assert_eq!(count(&dir), 2);
        assert!(!sibling(&dir, ".old").exists());
    }
}

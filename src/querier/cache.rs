//! The querier's disk cache of block byte ranges.
//!
//! A block in a bucket is read in byte ranges: its footer and index once
//! when it is opened, its symbols section and series blobs as queries need
//! them. Each range read is kept in a file `<dir>/<block id>/<offset>_<len>`
//! so the next query reads it from the local disk; the cache holds at most
//! `max_bytes`, evicting the least recently used ranges first.
//!
//! # Invariants
//! - The cache is empty at start (the directory's old contents are
//!   removed): a querier keeps no state a restart must trust.
//! - An entry's file is complete: it is written to a temporary name and
//!   renamed. A read of the wrong length counts as a miss.
//! - `bytes` is the sum of the entries' sizes, at most `max_bytes` after
//!   every insert.

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
struct Entries {
    /// Key → (last use, size).
    by_key: FxHashMap<String, (u64, u64)>,
    /// Last use → key: the eviction order.
    by_use: BTreeMap<u64, String>,
    bytes: u64,
    clock: u64,
}

/// Counters of the cache, for metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Ranges found in the cache.
    pub hits: AtomicU64,
    /// Ranges read from the bucket.
    pub misses: AtomicU64,
    /// Ranges evicted.
    pub evictions: AtomicU64,
}

/// A bounded cache of byte ranges on disk (see the module docs).
#[derive(Debug)]
pub struct RangeCache {
    dir: Option<PathBuf>,
    max_bytes: u64,
    entries: parking_lot::Mutex<Entries>,
    stats: CacheStats,
}

impl RangeCache {
    /// A cache in `dir` (emptied first) holding up to `max_bytes`; without a
    /// directory or with a zero size, nothing is cached.
    pub fn new(dir: Option<PathBuf>, max_bytes: u64) -> std::io::Result<RangeCache> {
        let dir = dir.filter(|_| max_bytes > 0);
        if let Some(d) = &dir {
            match std::fs::remove_dir_all(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            std::fs::create_dir_all(d)?;
        }
        Ok(RangeCache {
            dir,
            max_bytes,
            entries: parking_lot::Mutex::new(Entries::default()),
            stats: CacheStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.entries.lock().bytes
    }

    fn key(block: &str, offset: u64, len: u64) -> String {
        format!("{block}/{offset}_{len}")
    }

    fn file(dir: &Path, key: &str) -> PathBuf {
        dir.join(key)
    }

    /// The range, when cached.
    pub fn get(&self, block: &str, offset: u64, len: u64) -> Option<Vec<u8>> {
        let dir = self.dir.as_ref()?;
        let key = Self::key(block, offset, len);
        {
            let mut e = self.entries.lock();
            let Entries {
                by_key,
                by_use,
                clock,
                ..
            } = &mut *e;
            let Some(entry) = by_key.get_mut(&key) else {
                self.stats.misses.fetch_add(1, Relaxed);
                return None;
            };
            by_use.remove(&entry.0);
            *clock += 1;
            entry.0 = *clock;
            by_use.insert(*clock, key.clone());
        }
        match std::fs::read(Self::file(dir, &key)) {
            Ok(b) if b.len() as u64 == len => {
                self.stats.hits.fetch_add(1, Relaxed);
                Some(b)
            }
            _ => {
                self.remove(&key);
                self.stats.misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    fn remove(&self, key: &str) {
        let mut e = self.entries.lock();
        if let Some((used, size)) = e.by_key.remove(key) {
            e.by_use.remove(&used);
            e.bytes -= size;
        }
    }

    /// Keeps `data` as the range; evicts the least recently used ranges
    /// beyond the bound. A range larger than the whole cache is not kept.
    /// A failed write only means the range is not cached.
    pub fn put(&self, block: &str, offset: u64, data: &[u8]) {
        let Some(dir) = &self.dir else { return };
        let len = data.len() as u64;
        if len > self.max_bytes {
            return;
        }
        let key = Self::key(block, offset, len);
        let path = Self::file(dir, &key);
        let tmp = path.with_extension("tmp");
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, data))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!("cache write {} failed: {e}", path.display());
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        let mut doomed = Vec::new();
        {
            let mut e = self.entries.lock();
            e.clock += 1;
            let now = e.clock;
            if let Some((used, size)) = e.by_key.insert(key.clone(), (now, len)) {
                e.by_use.remove(&used);
                e.bytes -= size;
            }
            e.by_use.insert(now, key);
            e.bytes += len;
            while e.bytes > self.max_bytes {
                let Some((_, k)) = e.by_use.pop_first() else {
                    break;
                };
                if let Some((_, size)) = e.by_key.remove(&k) {
                    e.bytes -= size;
                }
                doomed.push(k);
            }
        }
        for k in doomed {
            self.stats.evictions.fetch_add(1, Relaxed);
            let _ = std::fs::remove_file(Self::file(dir, &k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ranges_within_its_bound_evicting_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let c = RangeCache::new(Some(dir.path().join("c")), 10).unwrap();
        c.put("b1", 0, b"aaaa");
        c.put("b1", 4, b"bbbb");
        assert_eq!(c.get("b1", 0, 4).unwrap(), b"aaaa");
        // Over the bound: the least recently used range (b1@4) goes.
        c.put("b2", 0, b"cccc");
        assert_eq!(c.bytes(), 8);
        assert!(c.get("b1", 4, 4).is_none());
        assert_eq!(c.get("b1", 0, 4).unwrap(), b"aaaa");
        assert_eq!(c.get("b2", 0, 4).unwrap(), b"cccc");
        assert!(!dir.path().join("c/b1/4_4").exists());
        // Too large for the whole cache: not kept.
        c.put("b3", 0, &[0; 11]);
        assert!(c.get("b3", 0, 11).is_none());
        assert_eq!(c.stats().evictions.load(Relaxed), 1);
        // A new cache over the same directory starts empty.
        let again = RangeCache::new(Some(dir.path().join("c")), 10).unwrap();
        assert!(again.get("b1", 0, 4).is_none());
        assert!(!dir.path().join("c/b1").exists());
    }

    #[test]
    fn a_file_of_the_wrong_length_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let c = RangeCache::new(Some(dir.path().to_path_buf()), 100).unwrap();
        c.put("b", 0, b"abcd");
        std::fs::write(dir.path().join("b/0_4"), b"ab").unwrap();
        assert!(c.get("b", 0, 4).is_none());
        assert_eq!(c.bytes(), 0);
    }
}

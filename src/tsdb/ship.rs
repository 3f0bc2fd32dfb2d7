//! Shipping blocks to a bucket: what makes a node an ingester.
//!
//! Every block the store cuts or compacts is uploaded by a thread of its
//! own, so a slow or unreachable bucket never stalls ingest or block cuts;
//! the store keeps ingesting and the shipper catches up when the bucket
//! answers again. The bucket layout is in `docs/format/bucket.md`:
//!
//! ```text
//! blocks/<id>/block       the block file, byte for byte
//! blocks/<id>/meta.json   its descriptor (a [`Descriptor`]), written last:
//!                         the commit point; a block without one is not
//!                         there for readers
//! ```
//!
//! A block's id is `<min_time>_<max_time>_<hash>`, the hash over the
//! node's external labels and the block's fingerprint (size and index
//! CRC32), so two replicas never share an id and a retried upload reuses
//! its id.
//!
//! # Replacements
//! A compaction rewrites a block (late profiles merged into its range) or
//! merges several into one. The new block's descriptor lists in `sources`
//! its own id and the sources of every shipped block it replaces, and a
//! reader ignores a block whose sources are all in another block's: so a
//! reader never counts a profile twice, whatever step a crash interrupted.
//! The replaced blocks are then deleted from the bucket.
//!
//! # Local state
//! `blocks/<min>_<max>.shipped` beside each shipped block file holds what
//! was shipped (id, fingerprint, sources), written after the descriptor.
//! A block whose marker is missing or names another fingerprint is
//! pending. The markers of replaced blocks stay until their replacement is
//! shipped, since its sources are read from them: a replacement's
//! predecessors are the markers whose range lies within its range (listed
//! blocks never overlap, so no other block's marker can).
//!
//! # Invariants
//! - A descriptor is written only after its block file is wholly in the
//!   bucket; a marker only after its descriptor.
//! - While a block is pending, the store keeps every WAL segment holding
//!   one of its profiles, and retention does not delete its file.

use crate::bucket::{Bucket, BucketError};
use crate::ingest::time_policy::Clock;
use crate::tsdb::block::{Block, BlockError};
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// The bucket's folder of blocks.
pub const BLOCKS: &str = "blocks";
/// The descriptor's name in a block's folder.
pub const DESCRIPTOR: &str = "meta.json";
/// The block file's name in a block's folder.
pub const BLOCK_FILE: &str = "block";
/// The descriptor format written now.
pub const DESCRIPTOR_VERSION: u32 = 1;

/// Errors of shipping.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The bucket failed.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// The block could not be read.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A marker could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A block's descriptor in the bucket (`blocks/<id>/meta.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// [`DESCRIPTOR_VERSION`].
    pub version: u32,
    /// The block's id (its folder's name).
    pub id: String,
    /// First ms of its range.
    pub min_time: i64,
    /// First ms after its range.
    pub max_time: i64,
    /// Bytes of the block file.
    pub bytes: u64,
    /// The CRC32 of its index section.
    pub index_crc32: u32,
    /// Series in the block.
    pub series: u64,
    /// Profiles in the block.
    pub profiles: u64,
    /// The labels of the node that wrote it (`--external-label`).
    pub external_labels: BTreeMap<String, String>,
    /// Its own id and the ids of every block it replaces, sorted.
    pub sources: Vec<String>,
    /// When it was committed (wall-clock ms; 0 in descriptors written
    /// before the field existed). Where blocks of one stream overlap, a
    /// reader prefers the one committed last (see
    /// [`crate::querier`]).
    #[serde(default)]
    pub created_ms: i64,
}

impl Descriptor {
    /// Parses and checks a descriptor read from the bucket.
    pub fn parse(bytes: &[u8]) -> Result<Descriptor, String> {
        let d: Descriptor = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if d.version != DESCRIPTOR_VERSION {
            return Err(format!(
                "descriptor version {}, this profstore reads {DESCRIPTOR_VERSION}",
                d.version
            ));
        }
        if d.min_time >= d.max_time {
            return Err(format!("empty range {}..{}", d.min_time, d.max_time));
        }
        if !d.sources.contains(&d.id) {
            return Err("its sources do not hold its own id".into());
        }
        Ok(d)
    }

    /// The descriptor of `block`, of the range `[lo, hi)`, written by a
    /// node with `external_labels`: its id ([`block_id`]) among
    /// `replaced`'s sources, committed at `created_ms`.
    pub fn of_block(
        block: &Block,
        (lo, hi): (i64, i64),
        external_labels: &BTreeMap<String, String>,
        replaced: impl IntoIterator<Item = String>,
        created_ms: i64,
    ) -> Descriptor {
        let fp = block.fingerprint();
        let id = block_id(external_labels, lo, hi, fp);
        let mut sources: BTreeSet<String> = replaced.into_iter().collect();
        sources.insert(id.clone());
        Descriptor {
            version: DESCRIPTOR_VERSION,
            id,
            min_time: lo,
            max_time: hi,
            bytes: fp.0,
            index_crc32: fp.1,
            series: block.num_series() as u64,
            profiles: block.num_profiles(),
            external_labels: external_labels.clone(),
            sources: sources.into_iter().collect(),
            created_ms,
        }
    }

    /// The key of its block file.
    pub fn block_key(&self) -> String {
        format!("{BLOCKS}/{}/{BLOCK_FILE}", self.id)
    }

    /// The key of the descriptor itself.
    pub fn key(&self) -> String {
        format!("{BLOCKS}/{}/{DESCRIPTOR}", self.id)
    }
}

/// Uploads `block` as the block file of `d` in parts (a large block is
/// never whole in memory), then `d`: the commit point, after which
/// readers see the block.
pub fn commit(bucket: &Bucket, d: &Descriptor, block: &Block) -> Result<(), BucketError> {
    bucket.put_parts(&d.block_key(), d.bytes, &mut |offset, len| {
        block
            .read_range(offset, len)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })?;
    // Serializing a struct of strings and integers cannot fail.
    let json = serde_json::to_vec_pretty(d).expect("a descriptor serializes");
    bucket.put(&d.key(), json)
}

/// What a marker file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    id: String,
    bytes: u64,
    index_crc32: u32,
    sources: Vec<String>,
}

/// The id of a block of `[min_time, max_time)` with `fingerprint`,
/// written by a node with `labels`.
pub fn block_id(
    labels: &BTreeMap<String, String>,
    min_time: i64,
    max_time: i64,
    fingerprint: (u64, u32),
) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(&[0]);
    }
    h.update(&fingerprint.0.to_le_bytes());
    h.update(&fingerprint.1.to_le_bytes());
    format!("{min_time}_{max_time}_{:016x}", h.digest())
}

/// Counters of the shipper, for metrics.
#[derive(Debug, Default)]
pub struct ShipStats {
    /// Blocks uploaded and committed.
    pub shipped: AtomicU64,
    /// Uploads that failed (each is retried).
    pub failed: AtomicU64,
    /// Block bytes uploaded.
    pub bytes: AtomicU64,
    /// Replaced blocks deleted from the bucket.
    pub replaced: AtomicU64,
}

/// Uploads a store's blocks (see the module docs).
#[derive(Debug)]
pub struct Shipper {
    bucket: Arc<Bucket>,
    labels: BTreeMap<String, String>,
    /// The store's blocks directory, where the markers live.
    dir: PathBuf,
    /// Blocks to ship, by file name.
    pending: Mutex<BTreeMap<String, Arc<Block>>>,
    /// One shipping pass at a time.
    pass: Mutex<()>,
    wake: (Mutex<bool>, Condvar),
    stats: ShipStats,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ShipError + '_ {
    |source| ShipError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `<min>_<max>` of a block file, or `None` for another file.
fn stem(path: &Path) -> Option<String> {
    Some(path.file_stem()?.to_str()?.to_string())
}

/// `(min, max)` from a `<min>_<max>` stem.
fn range_of(stem: &str) -> Option<(i64, i64)> {
    let (a, b) = stem.split_once('_')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl Shipper {
    /// A shipper of the blocks in `dir` to `bucket`, as a node with
    /// external `labels`.
    pub fn new(bucket: Arc<Bucket>, labels: BTreeMap<String, String>, dir: PathBuf) -> Shipper {
        Shipper {
            bucket,
            labels,
            dir,
            pending: Mutex::new(BTreeMap::new()),
            pass: Mutex::new(()),
            wake: (Mutex::new(false), Condvar::new()),
            stats: ShipStats::default(),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &Arc<Bucket> {
        &self.bucket
    }

    /// Counters.
    pub fn stats(&self) -> &ShipStats {
        &self.stats
    }

    fn marker_path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.shipped"))
    }

    fn read_marker(&self, stem: &str) -> Option<Marker> {
        let bytes = std::fs::read(self.marker_path(stem)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Takes `block` (just written, or found at open) for shipping unless
    /// its marker says it is shipped. Pending blocks whose range lies in
    /// its range are replaced by it.
    pub fn offer(&self, block: &Arc<Block>) {
        let Some(name) = stem(block.path()) else {
            return;
        };
        if self
            .read_marker(&name)
            .is_some_and(|m| (m.bytes, m.index_crc32) == block.fingerprint())
        {
            return;
        }
        let (lo, hi) = (block.min_time(), block.max_time());
        let mut pending = self.pending.lock();
        pending.retain(|n, _| !range_of(n).is_some_and(|(a, b)| lo <= a && b <= hi));
        pending.insert(name, Arc::clone(block));
        drop(pending);
        self.wake();
    }

    /// True when `block`'s marker says it is in the bucket.
    pub fn is_shipped(&self, block: &Block) -> bool {
        stem(block.path()).is_some_and(|n| {
            self.read_marker(&n)
                .is_some_and(|m| (m.bytes, m.index_crc32) == block.fingerprint())
        })
    }

    /// The external labels of the blocks it ships.
    pub fn external_labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// True when the block `block` is waiting to be shipped.
    pub fn is_pending(&self, block: &Block) -> bool {
        stem(block.path()).is_some_and(|n| self.pending.lock().contains_key(&n))
    }

    /// The earliest time of a pending block (`None` when none is).
    pub fn pending_min_time(&self) -> Option<i64> {
        self.pending.lock().values().map(|b| b.min_time()).min()
    }

    /// Blocks waiting to be shipped.
    pub fn num_pending(&self) -> usize {
        self.pending.lock().len()
    }

    /// Deletes the marker of a block retention deleted.
    pub fn forget(&self, block: &Block) {
        if let Some(name) = stem(block.path()) {
            let _ = std::fs::remove_file(self.marker_path(&name));
        }
    }

    /// Ships every pending block, oldest first; stops at the first
    /// failure (the block stays pending). Returns the blocks shipped.
    pub fn ship_pending(&self) -> Result<usize, ShipError> {
        let _pass = self.pass.lock();
        let mut shipped = 0;
        loop {
            let next = self
                .pending
                .lock()
                .iter()
                .min_by_key(|(_, b)| b.min_time())
                .map(|(n, b)| (n.clone(), Arc::clone(b)));
            let Some((name, block)) = next else {
                return Ok(shipped);
            };
            if let Err(e) = self.ship(&name, &block) {
                self.stats.failed.fetch_add(1, Relaxed);
                return Err(e);
            }
            let mut pending = self.pending.lock();
            if pending.get(&name).is_some_and(|b| Arc::ptr_eq(b, &block)) {
                pending.remove(&name);
            }
            shipped += 1;
        }
    }

    /// Uploads one block, commits its descriptor, writes its marker, then
    /// removes what it replaced (locally and in the bucket).
    fn ship(&self, name: &str, block: &Block) -> Result<(), ShipError> {
        let fp = block.fingerprint();
        let (lo, hi) = (block.min_time(), block.max_time());
        let id = block_id(&self.labels, lo, hi, fp);
        // The markers this block replaces: its own name's (an earlier
        // version of it) and those inside its range.
        let mut replaced: Vec<(String, Marker)> = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("shipped") {
                continue;
            }
            let Some(s) = stem(&path) else { continue };
            let Some((a, b)) = range_of(&s) else { continue };
            if lo <= a && b <= hi {
                if let Some(m) = self.read_marker(&s) {
                    replaced.push((s, m));
                }
            }
        }
        let descriptor = Descriptor::of_block(
            block,
            (lo, hi),
            &self.labels,
            replaced.iter().flat_map(|(_, m)| m.sources.iter().cloned()),
            Clock::system().now_ms(),
        );
        commit(&self.bucket, &descriptor, block)?;
        self.stats.bytes.fetch_add(fp.0, Relaxed);
        let marker = Marker {
            id: id.clone(),
            bytes: fp.0,
            index_crc32: fp.1,
            sources: descriptor.sources.clone(),
        };
        self.write_marker(name, &marker)?;
        self.stats.shipped.fetch_add(1, Relaxed);
        tracing::info!(block = %id, bytes = fp.0, bucket = self.bucket.url(), "block shipped");
        for (s, m) in &replaced {
            if s != name {
                let _ = std::fs::remove_file(self.marker_path(s));
            }
            if m.id != id {
                // Readers ignore it already; deleting it only saves space,
                // so a failure is logged, not retried.
                let doomed = [
                    format!("{BLOCKS}/{}/{DESCRIPTOR}", m.id),
                    format!("{BLOCKS}/{}/{BLOCK_FILE}", m.id),
                ];
                match doomed.iter().try_for_each(|k| self.bucket.delete(k)) {
                    Ok(()) => {
                        self.stats.replaced.fetch_add(1, Relaxed);
                    }
                    Err(e) => tracing::warn!("replaced block {} not deleted: {e}", m.id),
                }
            }
        }
        Ok(())
    }

    fn write_marker(&self, name: &str, marker: &Marker) -> Result<(), ShipError> {
        let path = self.marker_path(name);
        let tmp = path.with_extension("shipped.tmp");
        // As the descriptor: cannot fail.
        let json = serde_json::to_vec(marker).expect("a marker serializes");
        std::fs::write(&tmp, json).map_err(io(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }

    /// Wakes the shipping thread.
    pub fn wake(&self) {
        let (flag, cv) = &self.wake;
        *flag.lock() = true;
        cv.notify_all();
    }

    /// Starts the thread that ships pending blocks: at once when woken
    /// (a block was offered), after a failure again with backoff (1 s
    /// doubling to 1 min). Does nothing when one runs.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let mut slot = self.thread.lock();
        if slot.is_some() {
            return Ok(());
        }
        self.stop.store(false, Relaxed);
        let me = Arc::clone(self);
        *slot = Some(
            std::thread::Builder::new()
                .name("shipper".into())
                .spawn(move || me.run())?,
        );
        Ok(())
    }

    fn run(&self) {
        let mut backoff = Duration::from_secs(1);
        while !self.stop.load(Relaxed) {
            let wait = match self.ship_pending() {
                Ok(_) => {
                    backoff = Duration::from_secs(1);
                    Duration::from_secs(30)
                }
                Err(e) => {
                    tracing::warn!(
                        pending = self.num_pending(),
                        retry_in_s = backoff.as_secs(),
                        "block upload failed: {e}"
                    );
                    let w = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    w
                }
            };
            let (flag, cv) = &self.wake;
            let mut woken = flag.lock();
            if !*woken && !self.stop.load(Relaxed) {
                cv.wait_for(&mut woken, wait);
            }
            *woken = false;
        }
    }

    /// Stops the thread and waits for it (an upload in flight finishes).
    pub fn stop(&self) {
        let Some(t) = self.thread.lock().take() else {
            return;
        };
        self.stop.store(true, Relaxed);
        self.wake();
        if t.join().is_err() {
            tracing::error!("the shipper thread panicked");
        }
    }
}

//! The write-ahead log: every accepted profile is appended here before the
//! write is acknowledged, and replayed into the head when the store opens.
//!
//! Layout (the byte format is in `docs/format/wal.md`): a directory of
//! segment files named by an 8-digit decimal sequence number
//! (`00000001`, `00000002`, …). Each segment starts with the 8-byte magic
//! [`SEGMENT_MAGIC`] and holds records framed as
//! `length u32 LE | CRC32 u32 LE | type u8 | payload`, where the CRC32 (IEEE)
//! covers the type byte and the payload. A segment is closed when it passes
//! [`WalOptions::segment_bytes`]; every open starts a new segment.
//!
//! Invariants:
//! - A record is written with one `write` call of the whole frame before the
//!   write it carries is acknowledged, so a killed process (`kill -9`) never
//!   loses an acknowledged record: the bytes are in the kernel's page cache.
//!   What a power loss can lose depends on [`SyncPolicy`].
//! - A failed write is cut off again (the file is truncated to its previous
//!   length); if that fails too, the log refuses further appends rather than
//!   leave a torn record in the middle of a segment.
//! - Replay never stops the start: a torn or corrupt tail of the last segment
//!   is cut off with a warning; damage anywhere else is reported with segment
//!   and offset, the damaged bytes are skipped up to the next valid record,
//!   and the rest is replayed.

pub mod record;
mod segment;

pub use segment::{
    read_segment, Corruption, SegmentRead, DEFAULT_SEGMENT_BYTES, FRAME_HEADER_LEN,
    MAX_RECORD_BYTES, SEGMENT_MAGIC,
};

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kinds of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// A [`crate::proto::wal::ProfileRecord`].
    Profile = 1,
}

impl RecordType {
    /// The type of a type byte.
    pub fn from_byte(b: u8) -> Option<RecordType> {
        match b {
            1 => Some(RecordType::Profile),
            _ => None,
        }
    }
}

/// When the log calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// After every record, before the write is acknowledged: nothing
    /// acknowledged is lost even on power loss.
    Always,
    /// At most this long after a record (group commit by a background
    /// thread): a power loss can lose the acknowledged writes of the last
    /// interval; a killed process loses nothing.
    Interval(Duration),
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy::Interval(Duration::from_secs(1))
    }
}

impl std::str::FromStr for SyncPolicy {
    type Err = String;

    /// `always`, or an interval such as `1s`, `200ms`.
    fn from_str(s: &str) -> Result<SyncPolicy, String> {
        if s == "always" {
            return Ok(SyncPolicy::Always);
        }
        let ms = crate::model::time::parse_duration(s)
            .map_err(|e| format!("want `always` or an interval such as `1s` or `200ms`: {e}"))?;
        if ms <= 0 {
            return Err("the sync interval must be positive".into());
        }
        Ok(SyncPolicy::Interval(Duration::from_millis(ms as u64)))
    }
}

/// Options of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// When to sync.
    pub sync: SyncPolicy,
    /// A segment is closed once it holds at least this many bytes.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            sync: SyncPolicy::default(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O error on a file of the log.
    #[error("write-ahead log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A record over [`MAX_RECORD_BYTES`].
    #[error("write-ahead log record of {0} bytes is over the limit of {MAX_RECORD_BYTES}")]
    RecordTooLarge(usize),
    /// An earlier write failed and could not be cut off.
    #[error("the write-ahead log is unusable after a failed write; restart profstore")]
    Poisoned,
}

impl From<WalError> for crate::model::StorageError {
    fn from(e: WalError) -> Self {
        match &e {
            WalError::Io { source, .. } => crate::model::StorageError::io("wal", &e, source),
            _ => crate::model::StorageError::new("wal", e),
        }
    }
}

impl From<WalError> for crate::ingest::IngestError {
    fn from(e: WalError) -> Self {
        crate::model::StorageError::from(e).into()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct ReplayStats {
    /// Segments read.
    pub segments: usize,
    /// Valid records handed to the callback.
    pub records: u64,
    /// Bytes of the segments read.
    pub bytes: u64,
    /// Damage found (each reported with its segment and offset).
    pub corruptions: Vec<Corruption>,
    /// Bytes cut off the tail of the last segment.
    pub truncated_tail_bytes: u64,
    /// How long the replay took.
    pub elapsed: Duration,
}

/// The segment files of `dir` in order, as (sequence, path).
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        match name.parse::<u64>() {
            Ok(seq) if name.len() == 8 => out.push((seq, entry.path())),
            _ => tracing::warn!(file = %entry.path().display(), "not a WAL segment; ignored"),
        }
    }
    out.sort();
    Ok(out)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:08}"))
}

struct Writer {
    file: File,
    path: PathBuf,
    seq: u64,
    size: u64,
    poisoned: bool,
    buf: Vec<u8>,
    /// Newest profile timestamp among the segment's records.
    max_ts: i64,
    /// Closed segments: sequence → newest profile timestamp of their records
    /// (`i64::MIN` when none).
    closed: BTreeMap<u64, i64>,
}

/// An open log, appending to its newest segment.
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    writer: Arc<Mutex<Writer>>,
    dirty: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    syncer: Option<std::thread::JoinHandle<()>>,
    /// Calls of [`Wal::sync`] (so commits under [`SyncPolicy::Always`]).
    syncs: AtomicU64,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .finish()
    }
}

impl Wal {
    /// Opens the log in `dir` (created if missing): replays every record
    /// through `apply(type, payload)` in order, then starts a new segment.
    /// `apply` returns the record's profile timestamp (ms) when it has one,
    /// which [`Wal::remove_before`] uses to tell when a segment is no longer
    /// needed. Records of unknown type are reported and skipped.
    pub fn open(
        dir: &Path,
        options: WalOptions,
        mut apply: impl FnMut(RecordType, &[u8]) -> Option<i64>,
    ) -> Result<(Wal, ReplayStats), WalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let started = Instant::now();
        let segments = list_segments(dir)?;
        let mut stats = ReplayStats::default();
        let last = segments.len().saturating_sub(1);
        let mut closed = BTreeMap::new();
        let mut progress = Instant::now();
        for (i, (seq, path)) in segments.iter().enumerate() {
            let data = std::fs::read(path).map_err(io_err(path))?;
            stats.segments += 1;
            stats.bytes += data.len() as u64;
            let mut max_ts = i64::MIN;
            let read = read_segment(&data, |typ, payload| match RecordType::from_byte(typ) {
                Some(t) => {
                    stats.records += 1;
                    if let Some(ts) = apply(t, payload) {
                        max_ts = max_ts.max(ts);
                    }
                }
                None => tracing::warn!(segment = seq, typ, "unknown WAL record type; skipped"),
            });
            closed.insert(*seq, max_ts);
            if progress.elapsed() >= Duration::from_secs(5) {
                progress = Instant::now();
                tracing::info!(
                    segment = i + 1,
                    of = segments.len(),
                    records = stats.records,
                    mb = stats.bytes / 1_000_000,
                    seconds = started.elapsed().as_secs(),
                    "replaying the WAL"
                );
            }
            for c in &read.corruptions {
                tracing::warn!(segment = %path.display(), offset = c.offset, "WAL damaged: {}", c.reason);
            }
            stats
                .corruptions
                .extend(read.corruptions.into_iter().map(|mut c| {
                    c.segment = *seq;
                    c
                }));
            if let Some(tail) = read.torn_tail_at {
                let cut = data.len() as u64 - tail as u64;
                if i == last {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = tail,
                        bytes = cut,
                        "WAL ends in a torn or corrupt record; cutting it off"
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io_err(path))?;
                    f.set_len(tail as u64).map_err(io_err(path))?;
                    f.sync_all().map_err(io_err(path))?;
                    stats.truncated_tail_bytes += cut;
                } else {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = tail,
                        bytes = cut,
                        "WAL segment ends in damaged bytes; skipped"
                    );
                    stats.corruptions.push(Corruption {
                        segment: *seq,
                        offset: tail as u64,
                        reason: format!("{cut} damaged bytes at the end of a closed segment"),
                    });
                }
            }
        }
        stats.elapsed = started.elapsed();
        let next = segments.last().map_or(1, |(s, _)| s + 1);
        let mut writer = Writer::create(dir, next)?;
        writer.closed = closed;
        let wal = Wal::start(dir, options, writer);
        Ok((wal, stats))
    }

    fn start(dir: &Path, options: WalOptions, writer: Writer) -> Wal {
        let writer = Arc::new(Mutex::new(writer));
        let dirty = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let syncer = match options.sync {
            SyncPolicy::Always => None,
            SyncPolicy::Interval(every) => {
                let (writer, dirty, stop) = (writer.clone(), dirty.clone(), stop.clone());
                std::thread::Builder::new()
                    .name("wal-sync".into())
                    .spawn(move || {
                        while !stop.load(Ordering::Acquire) {
                            std::thread::park_timeout(every);
                            if dirty.swap(false, Ordering::AcqRel) {
                                if let Err(e) = writer.lock().sync() {
                                    tracing::error!("{e}");
                                }
                            }
                        }
                    })
                    .map_err(|e| tracing::error!("cannot start the WAL sync thread: {e}"))
                    .ok()
            }
        };
        Wal {
            dir: dir.to_path_buf(),
            options,
            writer,
            dirty,
            stop,
            syncer,
            syncs: AtomicU64::new(0),
        }
    }

    /// How many times [`Wal::sync`] ran (every commit under
    /// [`SyncPolicy::Always`]; not the background syncs of an interval).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record (written to the file before this returns; synced
    /// per the [`SyncPolicy`] — call [`Wal::commit`] before acknowledging).
    pub fn append(&self, typ: RecordType, payload: &[u8]) -> Result<(), WalError> {
        self.append_at(typ, payload, i64::MIN)
    }

    /// [`Wal::append`] of a record holding a profile at `ts` (ms).
    pub fn append_at(&self, typ: RecordType, payload: &[u8], ts: i64) -> Result<(), WalError> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(WalError::RecordTooLarge(payload.len()));
        }
        let mut w = self.writer.lock();
        if w.poisoned {
            return Err(WalError::Poisoned);
        }
        if w.size >= self.options.segment_bytes {
            w.roll(&self.dir)?;
        }
        w.write_record(typ, payload)?;
        w.max_ts = w.max_ts.max(ts);
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Closes the current segment and starts a new one; returns the new
    /// segment's sequence number (every record appended before is in a
    /// segment before it).
    pub fn cut(&self) -> Result<u64, WalError> {
        let mut w = self.writer.lock();
        if w.poisoned {
            return Err(WalError::Poisoned);
        }
        w.roll(&self.dir)?;
        Ok(w.seq)
    }

    /// Deletes the closed segments before segment `before` whose records'
    /// profiles are all older than `keep_from` (ms): their profiles are
    /// durable elsewhere. Returns the number of segments deleted.
    pub fn remove_before(&self, before: u64, keep_from: i64) -> Result<usize, WalError> {
        let doomed: Vec<u64> = {
            let w = self.writer.lock();
            w.closed
                .range(..before)
                .filter(|(_, &max_ts)| max_ts < keep_from)
                .map(|(&seq, _)| seq)
                .collect()
        };
        for &seq in &doomed {
            let path = segment_path(&self.dir, seq);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            self.writer.lock().closed.remove(&seq);
        }
        if !doomed.is_empty() {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&self.dir))?;
        }
        Ok(doomed.len())
    }

    /// Number of segment files, the current one included.
    pub fn num_segments(&self) -> usize {
        self.writer.lock().closed.len() + 1
    }

    /// Makes the appended records durable as the policy promises: syncs now
    /// under [`SyncPolicy::Always`], does nothing under an interval.
    pub fn commit(&self) -> Result<(), WalError> {
        match self.options.sync {
            SyncPolicy::Always => self.sync(),
            SyncPolicy::Interval(_) => Ok(()),
        }
    }

    /// Syncs the current segment now.
    pub fn sync(&self) -> Result<(), WalError> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(false, Ordering::Release);
        self.writer.lock().sync()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.syncer.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        if let Err(e) = self.writer.lock().sync() {
            tracing::error!("{e}");
        }
    }
}

impl Writer {
    fn create(dir: &Path, seq: u64) -> Result<Writer, WalError> {
        let path = segment_path(dir, seq);
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if let Err(e) = file.write_all(SEGMENT_MAGIC).and_then(|()| file.sync_all()) {
            // A full disk: leave no segment without its magic, so the next
            // try (and the next start) finds none.
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(io_err(&path)(e));
        }
        // The new file's directory entry must survive a power loss too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
        Ok(Writer {
            file,
            path,
            seq,
            size: SEGMENT_MAGIC.len() as u64,
            poisoned: false,
            buf: Vec::new(),
            max_ts: i64::MIN,
            closed: BTreeMap::new(),
        })
    }

    fn roll(&mut self, dir: &Path) -> Result<(), WalError> {
        self.sync()?;
        let mut next = Writer::create(dir, self.seq + 1)?;
        next.closed = std::mem::take(&mut self.closed);
        next.closed.insert(self.seq, self.max_ts);
        *self = next;
        Ok(())
    }

    fn write_record(&mut self, typ: RecordType, payload: &[u8]) -> Result<(), WalError> {
        self.buf.clear();
        segment::frame(&mut self.buf, typ as u8, payload);
        if let Err(e) = self.file.write_all(&self.buf) {
            // Cut the torn frame off so later records stay readable.
            let cut = self.file.set_len(self.size);
            let back = self.file.seek(SeekFrom::Start(self.size));
            if cut.is_err() || back.is_err() {
                self.poisoned = true;
            }
            return Err(WalError::Io {
                path: self.path.clone(),
                source: e,
            });
        }
        self.size += self.buf.len() as u64;
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        self.file.sync_data().map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod tests;

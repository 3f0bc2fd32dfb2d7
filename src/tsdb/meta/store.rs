//! [`MetaStore`]: the sled database plus the in-memory caches in front of it.
//!
//! The id of every stored entity is loaded into memory at open (and checked
//! against its value: an id is the content id of the entity's key), so
//! ingest never reads sled.
//!
//! Concurrency: lookups take a read lock on a cache; creating entities takes
//! the store-wide `create` mutex, re-checks the cache, publishes the new
//! entities of the call to the caches and queues them, as one job, for the
//! store's writer thread, which encodes each job's entities into records
//! ([`record`]), compresses them with the zstd context it keeps, puts them
//! in one sled batch, applies the batches in order and then
//! notes each entity's record number in the id map. Ingest does not wait for sled,
//! nor encode: a new entity costs its checks, an `Arc` and a queue push
//! (the sled batch used to cost 10–20 µs per entity on the hot path). What
//! is queued but not yet in sled is not lost on a crash: every profile of
//! the head is in the write-ahead log, whose replay creates its entities
//! again, and blocks and the head snapshot carry the symbols of their
//! stacks. [`MetaStore::flush`] (before WAL segments
//! are deleted and at shutdown) and garbage collection first wait for the
//! queue to drain ([`MetaStore::sync_writes`]). At most [`MAX_QUEUED`]
//! batches wait; a writer beyond that waits for the queue. A failed
//! background write is kept and refuses every later creation, so a store
//! whose sled fails stops acknowledging new entities.
//! Garbage collection ([`super::gc`]) takes the `create` mutex and removes
//! cache entries only after their deletion is in sled.

use super::cache::DEFAULT_CACHE_BYTES;
use super::cache::{Found, ValueCache};
use super::{corrupt, record, value, MetaError};
use crate::model::keys::{self, *};
use crate::model::{
    Function, FunctionId, Line, Location, LocationId, Mapping, MappingId, NumLabel, StackId,
    Stacktrace, SymbolError,
};
use crate::proto::meta as pb;
use parking_lot::{Condvar, Mutex, RwLock};
use prost::Message;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// The key of the format marker: present, with [`FORMAT_RECORDS`] (or
/// an earlier marker) as its value, once the store holds an entity.
pub const FORMAT_KEY: &[u8] = b"format";
/// The format marker's value: ids are content ids
/// ([`keys::content_id`]) and sled holds their values in records
/// ([`record`]), each value framed with an encoding byte
/// ([`record::Framing::Tagged`]: compressed by the store, sled's own
/// compression off). A store with entities but no marker was written with
/// random ids by an earlier version and is refused
/// ([`MetaError::OldFormat`]).
pub const FORMAT_RECORDS: &[u8] = b"content-ids/4";
/// The marker of the previous layout: records as bare sled values
/// ([`record::Framing::Bare`]) in a database whose pages sled compresses.
/// Such a store keeps its framing (and sled's compression) for good: it is
/// read and written as it is, not converted.
pub const FORMAT_PLAIN_RECORDS: &[u8] = b"content-ids/3";
/// The marker of the previous layout: one sled entry per entity
/// (`…/by-id/` + id → value). It is upgraded at open by moving the values
/// into records ([`move_values_into_records`]).
pub const FORMAT_CONTENT_IDS: &[u8] = b"content-ids/2";
/// The marker of the previous layout, which also kept a by-key index
/// (key → id) in sled. It is upgraded at open: the by-key entries are
/// deleted (an id is the content id of its key, so the index only repeated
/// what the values say), then the marker is rewritten.
pub const FORMAT_WITH_BY_KEY: &[u8] = b"content-ids/1";

/// Number of entities of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetaCounts {
    /// Mappings.
    pub mappings: u64,
    /// Functions.
    pub functions: u64,
    /// Locations.
    pub locations: u64,
    /// Stacks.
    pub stacks: u64,
}

/// How one kind of entity is keyed and stored.
pub(super) trait Entity: Sized + Send + Sync + 'static {
    const KIND: &'static str;
    /// Prefix of the previous layout's one-entry-per-entity values.
    const BY_ID: &'static [u8];
    /// Prefix of the kind's records ([`record`]).
    const RECORDS: &'static [u8];
    const COUNT_KEY: &'static [u8];
    fn key(&self, buf: &mut Vec<u8>);
    /// Appends the value (`proto/meta.proto`) to `buf`.
    fn encode(&self, buf: &mut Vec<u8>);
    fn decode(b: &[u8]) -> Result<Self, MetaError>;
    /// Heap bytes owned by the value (strings, vectors), for
    /// [`MetaStore::cache_bytes`].
    fn heap_bytes(&self) -> usize;
    /// Puts one creation's new entities in the order the writer packs them
    /// into records: as created, unless entities alike compress better
    /// side by side.
    fn cluster(_items: &mut [(Uuid, Arc<Self>)]) {}
}

fn opt_id(b: &[u8]) -> Result<Option<Uuid>, MetaError> {
    if b.is_empty() {
        Ok(None)
    } else {
        Uuid::from_slice(b).map(Some).map_err(corrupt("id"))
    }
}

impl Entity for Mapping {
    const KIND: &'static str = "mapping";
    const BY_ID: &'static [u8] = MAPPING_BY_ID;
    const RECORDS: &'static [u8] = MAPPING_RECORDS;
    const COUNT_KEY: &'static [u8] = b"counts/mappings";
    fn key(&self, buf: &mut Vec<u8>) {
        keys::mapping_key(buf, self)
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        let m = pb::Mapping {
            memory_start: self.memory_start,
            memory_limit: self.memory_limit,
            file_offset: self.file_offset,
            filename: self.filename.clone(),
            build_id: self.build_id.clone(),
            has_functions: self.has_functions,
            has_filenames: self.has_filenames,
            has_line_numbers: self.has_line_numbers,
            has_inline_frames: self.has_inline_frames,
        };
        // Encoding into a Vec fails only when the buffer cannot grow.
        m.encode(buf).expect("a Vec grows");
    }
    fn decode(b: &[u8]) -> Result<Self, MetaError> {
        let m = pb::Mapping::decode(b).map_err(corrupt("mapping"))?;
        Ok(Mapping {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: m.filename,
            build_id: m.build_id,
            has_functions: m.has_functions,
            has_filenames: m.has_filenames,
            has_line_numbers: m.has_line_numbers,
            has_inline_frames: m.has_inline_frames,
        })
    }
    fn heap_bytes(&self) -> usize {
        self.filename.capacity() + self.build_id.capacity()
    }
}

impl Entity for Function {
    const KIND: &'static str = "function";
    const BY_ID: &'static [u8] = FUNCTION_BY_ID;
    const RECORDS: &'static [u8] = FUNCTION_RECORDS;
    const COUNT_KEY: &'static [u8] = b"counts/functions";
    fn key(&self, buf: &mut Vec<u8>) {
        keys::function_key(buf, self)
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        value::encode_function(self, buf)
    }
    fn decode(b: &[u8]) -> Result<Self, MetaError> {
        let f = pb::Function::decode(b).map_err(corrupt("function"))?;
        Ok(Function {
            name: f.name,
            system_name: f.system_name,
            filename: f.filename,
            start_line: f.start_line,
        })
    }
    fn heap_bytes(&self) -> usize {
        self.name.capacity() + self.system_name.capacity() + self.filename.capacity()
    }
}

impl Entity for Location {
    const KIND: &'static str = "location";
    const BY_ID: &'static [u8] = LOCATION_BY_ID;
    const RECORDS: &'static [u8] = LOCATION_RECORDS;
    const COUNT_KEY: &'static [u8] = b"counts/locations";
    fn key(&self, buf: &mut Vec<u8>) {
        keys::location_key(buf, self)
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        value::encode_location(self, buf)
    }
    /// By mapping, then address: neighbours share their mapping id and
    /// mostly their functions. On `benches/ingest.rs` the location records
    /// of a first-seen profile came out 18 % (`alloc_objects`) and 7 %
    /// (`large.cpu`) smaller after compression.
    fn cluster(items: &mut [(Uuid, Arc<Self>)]) {
        items.sort_unstable_by_key(|(_, l)| (l.mapping, l.address));
    }
    fn decode(b: &[u8]) -> Result<Self, MetaError> {
        let l = pb::Location::decode(b).map_err(corrupt("location"))?;
        Ok(Location {
            mapping: opt_id(&l.mapping_id)?.map(MappingId),
            address: l.address,
            is_folded: l.is_folded,
            lines: l
                .lines
                .iter()
                .map(|x| {
                    Ok(Line {
                        function: FunctionId::from_slice(&x.function_id)?,
                        line: x.line,
                        column: x.column,
                    })
                })
                .collect::<Result<_, MetaError>>()?,
        })
    }
    fn heap_bytes(&self) -> usize {
        self.lines.capacity() * std::mem::size_of::<Line>()
    }
}

impl Entity for Stacktrace {
    const KIND: &'static str = "stacktrace";
    const BY_ID: &'static [u8] = STACK_BY_ID;
    const RECORDS: &'static [u8] = STACK_RECORDS;
    const COUNT_KEY: &'static [u8] = b"counts/stacktraces";
    fn key(&self, buf: &mut Vec<u8>) {
        keys::stack_key(buf, &self.locations, &self.num_labels)
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        value::encode_stack(self, buf)
    }
    /// Root first, in the order of their location ids: a record then holds
    /// stacks that share their callers, and zstd finds those callers'
    /// ids in the same frame. On `benches/ingest.rs` the stack records of
    /// a first-seen `alloc_objects` profile came out 39 % smaller after
    /// compression (4 % for `large.cpu`, whose stacks share less), and
    /// `benches/meta_burst.rs` stores 10–11 % fewer bytes per entity; the
    /// sort is on the writer thread, off the request.
    fn cluster(items: &mut [(Uuid, Arc<Self>)]) {
        items.sort_unstable_by(|(_, a), (_, b)| {
            a.locations.iter().rev().cmp(b.locations.iter().rev())
        });
    }
    fn decode(b: &[u8]) -> Result<Self, MetaError> {
        value::decode_stack(b)
    }
    fn heap_bytes(&self) -> usize {
        self.locations.capacity() * std::mem::size_of::<LocationId>()
            + self
                .num_labels
                .iter()
                .map(|n| std::mem::size_of::<NumLabel>() + n.key.capacity() + n.unit.capacity())
                .sum::<usize>()
    }
}

/// The record number of an entity queued for the writer thread but not
/// written yet; its value is in the by-id cache.
pub(super) const CREATED: u64 = u64::MAX;

/// The caches of one entity kind. Entries are removed only by
/// [`MetaStore::collect_garbage`], after the entity's deletion is in sled
/// (entities are immutable and ids never reused).
pub(super) struct Table<E> {
    /// The ids of the stored entities (exactly the entries of the kind's
    /// records, plus those queued for the writer thread), each with the
    /// number of the record that holds it, or [`CREATED`] until the writer
    /// thread has written it (shared with that thread).
    pub(super) ids: Arc<RwLock<FxHashMap<Uuid, u64>>>,
    /// id → entity: every [`CREATED`] one, and those read or written
    /// since, within a byte budget ([`ValueCache`]; shared with the writer
    /// thread, which moves an entity from pending to cached once written).
    pub(super) values: Arc<RwLock<ValueCache<E>>>,
    /// Entities in sled (persisted under `E::COUNT_KEY`, in the same batch as
    /// every creation or deletion).
    pub(super) count: AtomicU64,
    /// The number of the kind's next record (one more than the largest in
    /// sled); taken by the writer thread only.
    next_record: Arc<AtomicU64>,
}

impl<E: Entity> Table<E> {
    /// Loads the ids of `E` from sled's records into memory, checking each
    /// against its value (decoded, keyed and hashed again), that no id is
    /// stored twice, and their number against the kind's counter.
    /// `cache_bytes` bounds the kind's [`ValueCache`].
    fn load(
        db: &sled::Db,
        framing: record::Framing,
        cache_bytes: usize,
    ) -> Result<Self, MetaError> {
        let count = read_count(db, E::COUNT_KEY)?;
        let mut decoder = record::Decoder::new();
        let mut ids = FxHashMap::default();
        ids.reserve(count as usize);
        let mut key = Vec::with_capacity(256);
        let mut next = 0;
        let mut values = 0u64;
        for kv in db.scan_prefix(E::RECORDS) {
            let (k, v) = kv?;
            let number = record::number(E::RECORDS, &k)?;
            next = number + 1;
            for e in record::entries(decoder.decode(framing, &v)?) {
                let (id, value) = e.map_err(corrupt(E::KIND))?;
                key.clear();
                E::decode(value)?.key(&mut key);
                if id != keys::content_id(&key) {
                    return Err(MetaError::Corrupt(format!(
                        "{} {id}: the id is not the content id of its value",
                        E::KIND
                    )));
                }
                if ids.insert(id, number).is_some() {
                    return Err(MetaError::Corrupt(format!(
                        "{} {id} is stored twice",
                        E::KIND
                    )));
                }
                values += 1;
            }
        }
        if values != count {
            return Err(MetaError::Corrupt(format!(
                "{}: {values} values but the counter says {count}",
                E::KIND,
            )));
        }
        Ok(Table {
            ids: Arc::new(RwLock::new(ids)),
            values: Arc::new(RwLock::new(ValueCache::new(cache_bytes))),
            count: AtomicU64::new(count),
            next_record: Arc::new(AtomicU64::new(next)),
        })
    }

    /// Every entity of the record that holds `id`, read from sled (not
    /// from the cache), in the record's order: [`MetaError::NotFound`] if
    /// the id is not stored.
    pub(super) fn read_record(
        &self,
        db: &sled::Db,
        decoder: &mut record::Decoder,
        framing: record::Framing,
        id: Uuid,
    ) -> Result<Vec<(Uuid, E)>, MetaError> {
        let not_found = || MetaError::NotFound { kind: E::KIND, id };
        let number = *self.ids.read().get(&id).ok_or_else(not_found)?;
        if number == CREATED {
            // Not written yet, so in the by-id cache, where the caller
            // looked first; a concurrent collection may just have deleted it.
            return Err(not_found());
        }
        let v = db.get(record::key(E::RECORDS, number))?.ok_or_else(|| {
            MetaError::Corrupt(format!("{} {id}: record {number} is missing", E::KIND))
        })?;
        let mut out = Vec::new();
        for e in record::entries(decoder.decode(framing, &v)?) {
            let (i, value) = e.map_err(corrupt(E::KIND))?;
            out.push((i, E::decode(value)?));
        }
        if !out.iter().any(|(i, _)| *i == id) {
            return Err(MetaError::Corrupt(format!(
                "{} {id} is not in its record {number}",
                E::KIND
            )));
        }
        Ok(out)
    }

    /// Approximate heap bytes of both caches: per id slot (used or spare)
    /// 16 bytes, its record number and a control byte; the values as
    /// [`ValueCache::bytes`] counts them.
    fn cache_bytes(&self) -> usize {
        let keys = self.ids.read().capacity() * (std::mem::size_of::<(Uuid, u64)>() + 1);
        keys + self.values.read().bytes()
    }
}

#[cfg(test)]
pub(super) fn with_prefix(prefix: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + suffix.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(suffix);
    k
}

/// Batches that may wait for the writer thread before a creation waits.
pub const MAX_QUEUED: usize = 256;

/// One creation's entities, queued: called on the writer thread with its
/// record encoder, it encodes them (with the kind's counter, and the format
/// marker with the first entity) into the sled batch to apply, and returns
/// what to do once the batch is applied (note the entities' record
/// numbers).
type Job = Box<dyn FnOnce(&mut record::Encoder) -> (sled::Batch, Done) + Send>;

/// Run by the writer thread after a job's batch is applied.
type Done = Box<dyn FnOnce() + Send>;

/// The queue between creations and the writer thread.
#[derive(Default)]
struct WriteQueue {
    batches: VecDeque<Job>,
    /// The writer is applying batches it took from the queue.
    busy: bool,
    /// The first failed background write; later creations refuse with it.
    failed: Option<String>,
    /// The store is dropped: the writer drains the queue and exits.
    stop: bool,
}

/// The writer thread's shared state.
#[derive(Default)]
struct Writer {
    queue: Mutex<WriteQueue>,
    /// Signalled when batches are queued, applied, or the store stops.
    changed: Condvar,
}

impl Writer {
    /// The writer thread: applies queued batches to `db` in order until the
    /// store stops and the queue is empty.
    fn run(&self, db: Arc<RwLock<sled::Db>>, mut encoder: record::Encoder) {
        let mut q = self.queue.lock();
        loop {
            if q.batches.is_empty() {
                if q.stop {
                    return;
                }
                self.changed.wait(&mut q);
                continue;
            }
            let batches: Vec<Job> = q.batches.drain(..).collect();
            q.busy = true;
            drop(q);
            let mut failed = None;
            for job in batches {
                let (batch, done) = job(&mut encoder);
                if let Err(e) = db.read().apply_batch(batch) {
                    failed = Some(e.to_string());
                    break;
                }
                done();
            }
            q = self.queue.lock();
            q.busy = false;
            if let Some(e) = failed {
                tracing::error!(error = %e, "meta store: a background write failed; new entities are refused");
                q.failed.get_or_insert(e);
                q.batches.clear();
            }
            self.changed.notify_all();
        }
    }

    fn failure(q: &WriteQueue) -> Result<(), MetaError> {
        match &q.failed {
            Some(e) => Err(MetaError::Background(e.clone())),
            None => Ok(()),
        }
    }
}

/// The meta store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct MetaStore {
    /// The sled database, shared with the writer thread; replaced only by
    /// [`super::compact`], under the write lock.
    pub(super) db: Arc<RwLock<sled::Db>>,
    /// The store's directory (`None` for a temporary store).
    pub(super) dir: Option<std::path::PathBuf>,
    /// Serializes creation of new entities (never held on the cache-hit path)
    /// and garbage collection.
    pub(super) create: Mutex<()>,
    pub(super) mappings: Table<Mapping>,
    pub(super) functions: Table<Function>,
    pub(super) locations: Table<Location>,
    pub(super) stacks: Table<Stacktrace>,
    /// Whether sled holds the format marker (written with the first
    /// entity; set when its batch is queued).
    marked: AtomicBool,
    /// How the store's sled values hold its records (from the marker).
    pub(super) framing: record::Framing,
    /// Record decoders (each with a zstd context) for reads outside the
    /// writer thread; a read takes one, or makes one if none is free.
    decoders: Mutex<Vec<record::Decoder>>,
    writer: Arc<Writer>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for MetaStore {
    /// Lets the writer thread apply what is queued, then joins it.
    fn drop(&mut self) {
        self.writer.queue.lock().stop = true;
        self.writer.changed.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("counts", &self.counts())
            .finish()
    }
}

fn read_count(db: &sled::Db, key: &[u8]) -> Result<u64, MetaError> {
    match db.get(key)? {
        None => Ok(0),
        Some(v) => {
            let b: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                MetaError::Corrupt(format!("counter {key:?} has {} bytes", v.len()))
            })?;
            Ok(u64::from_be_bytes(b))
        }
    }
}

/// sled's log segment size for a new store. sled rewrites a segment once
/// little of it is live, so smaller segments leave less dead space: on the
/// entities of 60 real CPU scrapes, sled's file was 4.6× the bytes of its
/// keys and values with its default 512 KiB segments, and 1.7× with 64 KiB
/// segments and compression. What sled writes in one piece (a value,
/// or a page of the tree) above a quarter of a segment after compression
/// goes to a blob file of its own.
pub const SEGMENT_SIZE: usize = 64 << 10;

/// The sled configuration of a new store: [`SEGMENT_SIZE`], sled's
/// throughput mode, and no compression by sled: the store compresses its
/// records itself ([`record::Framing::Tagged`]), with one zstd context
/// kept by the writer thread, where sled made a new one for every page
/// fragment it wrote. On `benches/meta_burst.rs` (one round, 118,889 new
/// entities) the writer is done in 0.15–0.16 s against 0.28–0.32 s with
/// sled's compression, for 15 MB on disk against 13–14.
///
/// A store created with sled's compression (format `content-ids/3`) keeps
/// it ([`sled_config`]); zstd then runs at level 1 (sled's default is 5,
/// and sled does not keep the level, so any store opens with it): on
/// `benches/meta_burst.rs` (two rounds, 237,775 new entities) its writer
/// took 0.54–0.62 s against 1.09–1.10 s at level 5, for the same bytes on
/// disk (24 against 23–24 MB).
pub(super) fn new_sled_config() -> sled::Config {
    sled::Config::new()
        .mode(sled::Mode::HighThroughput)
        .segment_size(SEGMENT_SIZE)
        .use_compression(false)
        .compression_factor(1)
}

/// The sled configuration for the store in `dir`. sled refuses to open a
/// database with another segment size or compression setting than it was
/// created with, and keeps them in the text file `conf` (`segment_size: N`,
/// `use_compression: true|false` lines), so an existing store opens with
/// its own; a new one gets [`new_sled_config`].
pub(super) fn sled_config(dir: &Path) -> sled::Config {
    let config = new_sled_config().path(dir);
    let Ok(conf) = std::fs::read(dir.join("conf")) else {
        return config;
    };
    // The file ends with a 4-byte CRC that is not text; sled checks it.
    let text = String::from_utf8_lossy(&conf);
    let mut config = config;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("segment_size: ") {
            if let Ok(n) = v.trim().parse::<usize>() {
                config = config.segment_size(n);
            }
        } else if let Some(v) = line.strip_prefix("use_compression: ") {
            config = config.use_compression(v.trim() == "true");
        }
    }
    config
}

/// Upgrades a [`FORMAT_WITH_BY_KEY`] store: deletes its by-key entries in
/// batches, makes that durable, then writes the new marker. A crash midway
/// leaves the old marker, so the next open finishes the job (the values,
/// which the store loads from, are untouched).
fn drop_by_key_index(db: &sled::Db) -> Result<(), MetaError> {
    for prefix in [
        MAPPING_BY_KEY,
        FUNCTION_BY_KEY,
        LOCATION_BY_KEY,
        STACK_BY_KEY,
    ] {
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for kv in db.scan_prefix(prefix).keys().take(super::gc::GC_BATCH) {
                batch.remove(kv?);
                n += 1;
            }
            if n == 0 {
                break;
            }
            db.apply_batch(batch)?;
        }
    }
    db.flush()?;
    db.insert(FORMAT_KEY, FORMAT_CONTENT_IDS)?;
    db.flush()?;
    tracing::info!("meta store: upgraded to values only (the by-key index is deleted)");
    Ok(())
}

/// Upgrades a [`FORMAT_CONTENT_IDS`] store: moves its values (one sled
/// entry per entity) into records ([`record`]), then writes the new marker.
/// Each sled batch inserts records and removes the entries they hold, so at
/// every point each entity is stored exactly once; a crash midway leaves
/// the old marker, and the next open moves what is left.
fn move_values_into_records(db: &sled::Db) -> Result<(), MetaError> {
    fn kind<E: Entity>(db: &sled::Db) -> Result<u64, MetaError> {
        let mut next = match db.scan_prefix(E::RECORDS).keys().next_back() {
            Some(k) => record::number(E::RECORDS, &k?)? + 1,
            None => 0,
        };
        let mut moved = 0;
        loop {
            let mut batch = sled::Batch::default();
            let mut packer = record::Packer::default();
            let mut n = 0;
            for kv in db.scan_prefix(E::BY_ID).take(super::gc::GC_BATCH) {
                let (k, v) = kv?;
                let id = Uuid::from_slice(&k[E::BY_ID.len()..]).map_err(corrupt(E::KIND))?;
                packer.push(id, &v);
                batch.remove(k);
                n += 1;
            }
            if n == 0 {
                return Ok(moved);
            }
            for r in packer.finish() {
                batch.insert(record::key(E::RECORDS, next), r.bytes);
                next += 1;
            }
            db.apply_batch(batch)?;
            moved += n;
        }
    }
    let moved = kind::<Mapping>(db)?
        + kind::<Function>(db)?
        + kind::<Location>(db)?
        + kind::<Stacktrace>(db)?;
    db.flush()?;
    db.insert(FORMAT_KEY, FORMAT_PLAIN_RECORDS)?;
    db.flush()?;
    tracing::info!(
        entities = moved,
        "meta store: upgraded to records (entities packed into few sled entries)"
    );
    Ok(())
}

/// Opens the sled database in `dir` with [`sled_config`].
///
/// sled releases its file lock from a background thread after the last
/// handle of a database is dropped, so opening again right after a close
/// in the same process can find the lock still held: that case is retried
/// for up to a second before the error is returned.
pub(super) fn open_sled(dir: &Path) -> Result<sled::Db, MetaError> {
    let mut tries = 0;
    loop {
        match sled_config(dir).open() {
            Err(sled::Error::Io(e))
                if tries < 20 && e.to_string().contains("could not acquire lock") =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return Ok(r?),
        }
    }
}

impl MetaStore {
    /// The sled database (a read lock: [`super::compact`] replaces it under
    /// the write lock). Never hold two of these in one thread.
    pub(super) fn db(&self) -> parking_lot::RwLockReadGuard<'_, sled::Db> {
        self.db.read()
    }

    /// Opens (or creates) the meta store in `dir`, first finishing or
    /// undoing a compaction a crash interrupted ([`super::compact`]), with
    /// value caches of [`DEFAULT_CACHE_BYTES`].
    pub fn open(dir: &Path) -> Result<MetaStore, MetaError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`MetaStore::open`] with value caches of at most `cache_bytes` in
    /// all: each kind's written entities are cached within a quarter of it
    /// ([`ValueCache`]; entities waiting for the writer thread are held
    /// besides).
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<MetaStore, MetaError> {
        super::compact::recover(dir)?;
        let db = open_sled(dir)?;
        Self::with_db(db, Some(dir.to_path_buf()), cache_bytes)
    }

    /// A meta store that lives in a temporary directory removed on drop
    /// (for tests and benchmarks).
    pub fn temporary() -> Result<MetaStore, MetaError> {
        Self::temporary_with_cache(DEFAULT_CACHE_BYTES)
    }

    /// [`MetaStore::temporary`] with value caches of at most `cache_bytes`
    /// (see [`MetaStore::open_with_cache`]).
    pub fn temporary_with_cache(cache_bytes: usize) -> Result<MetaStore, MetaError> {
        let db = new_sled_config().temporary(true).open()?;
        Self::with_db(db, None, cache_bytes)
    }

    fn with_db(
        db: sled::Db,
        dir: Option<std::path::PathBuf>,
        cache_bytes: usize,
    ) -> Result<MetaStore, MetaError> {
        use record::Framing::{Bare, Tagged};
        let (marked, framing) = match db.get(FORMAT_KEY)? {
            Some(v) if v.as_ref() == FORMAT_RECORDS => (true, Tagged),
            Some(v) if v.as_ref() == FORMAT_PLAIN_RECORDS => (true, Bare),
            Some(v) if v.as_ref() == FORMAT_CONTENT_IDS => {
                move_values_into_records(&db)?;
                (true, Bare)
            }
            Some(v) if v.as_ref() == FORMAT_WITH_BY_KEY => {
                drop_by_key_index(&db)?;
                move_values_into_records(&db)?;
                (true, Bare)
            }
            Some(v) => {
                return Err(MetaError::Corrupt(format!(
                    "unknown meta store format {:?}",
                    String::from_utf8_lossy(&v)
                )))
            }
            None => (false, Tagged),
        };
        if !marked && db.scan_prefix(b"counts/").next().is_some() {
            return Err(MetaError::OldFormat);
        }
        let per_kind = cache_bytes / 4;
        let (mappings, functions, locations, stacks) = (
            Table::load(&db, framing, per_kind)?,
            Table::load(&db, framing, per_kind)?,
            Table::load(&db, framing, per_kind)?,
            Table::load(&db, framing, per_kind)?,
        );
        let db = Arc::new(RwLock::new(db));
        let writer = Arc::new(Writer::default());
        let thread = {
            let (w, db) = (writer.clone(), db.clone());
            std::thread::Builder::new()
                .name("profstore-meta-writer".into())
                .spawn(move || w.run(db, record::Encoder::new(framing)))
                .map_err(|e| MetaError::Background(format!("starting the writer thread: {e}")))?
        };
        Ok(MetaStore {
            marked: AtomicBool::new(marked),
            framing,
            decoders: Mutex::new(Vec::new()),
            mappings,
            functions,
            locations,
            stacks,
            db,
            dir,
            create: Mutex::new(()),
            writer,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Waits until every queued batch of new entities is applied to sled
    /// (not yet synced to disk: see [`MetaStore::flush`]). Errors with the
    /// failure of a background write, if one failed.
    pub fn sync_writes(&self) -> Result<(), MetaError> {
        let mut q = self.writer.queue.lock();
        while (!q.batches.is_empty() || q.busy) && q.failed.is_none() {
            self.writer.changed.wait(&mut q);
        }
        Writer::failure(&q)
    }

    /// Refuses every later creation with `error`, as a failed background
    /// write does.
    pub(super) fn fail(&self, error: String) {
        let mut q = self.writer.queue.lock();
        q.failed.get_or_insert(error);
        q.batches.clear();
    }

    /// Makes everything written so far durable: the queued batches are
    /// applied, then sled is synced.
    pub fn flush(&self) -> Result<(), MetaError> {
        self.sync_writes()?;
        self.db().flush()?;
        Ok(())
    }

    /// Queues `batch` for the writer thread, waiting while [`MAX_QUEUED`]
    /// batches wait. The caller holds the `create` lock, so batches are
    /// applied in the order their entities were published.
    fn queue(&self, batch: Job) -> Result<(), MetaError> {
        let mut q = self.writer.queue.lock();
        while q.batches.len() >= MAX_QUEUED && q.failed.is_none() {
            self.writer.changed.wait(&mut q);
        }
        Writer::failure(&q)?;
        q.batches.push_back(batch);
        drop(q);
        self.writer.changed.notify_all();
        Ok(())
    }

    /// Number of entities of each kind.
    pub fn counts(&self) -> MetaCounts {
        MetaCounts {
            mappings: self.mappings.count.load(Ordering::Relaxed),
            functions: self.functions.count.load(Ordering::Relaxed),
            locations: self.locations.count.load(Ordering::Relaxed),
            stacks: self.stacks.count.load(Ordering::Relaxed),
        }
    }

    /// Approximate bytes held by the in-memory caches.
    pub fn cache_bytes(&self) -> usize {
        self.mappings.cache_bytes()
            + self.functions.cache_bytes()
            + self.locations.cache_bytes()
            + self.stacks.cache_bytes()
    }

    /// Bytes sled uses on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db().size_on_disk().unwrap_or(0)
    }

    /// Ids of `items`, storing the ones not stored yet (in one batch).
    pub fn mapping_ids(&self, items: Vec<Mapping>) -> Result<Vec<MappingId>, MetaError> {
        let ids = ids_of(&items, MappingId);
        self.ensure_mappings(items.len(), |i| ids[i], |i| items[i].clone())?;
        Ok(ids)
    }

    /// Ids of `items`, storing the ones not stored yet (in one batch).
    pub fn function_ids(&self, items: Vec<Function>) -> Result<Vec<FunctionId>, MetaError> {
        let ids = ids_of(&items, FunctionId);
        self.ensure_functions(items.len(), |i| ids[i], |i| items[i].clone())?;
        Ok(ids)
    }

    /// Ids of `items`, storing the ones not stored yet (in one batch).
    pub fn location_ids(&self, items: Vec<Location>) -> Result<Vec<LocationId>, MetaError> {
        let ids = ids_of(&items, LocationId);
        self.ensure_locations(items.len(), |i| ids[i], |i| items[i].clone())?;
        Ok(ids)
    }

    /// Ids of `items`, storing the ones not stored yet (in one batch).
    pub fn stack_ids(&self, items: Vec<Stacktrace>) -> Result<Vec<StackId>, MetaError> {
        let ids = ids_of(&items, StackId);
        self.ensure_stacks(items.len(), |i| ids[i], |i| items[i].clone())?;
        Ok(ids)
    }

    /// Stores the mappings among `n` given by their content ids (`id(i)`)
    /// that are not stored yet; `make(i)` builds mapping `i` and is called
    /// only for new ones. Returns how many were new. This is the ingest hot
    /// path: a known entity costs one lookup of its id.
    ///
    /// Every id must be [`keys::content_id`] of its entity's key; a new
    /// entity whose id is not is refused ([`MetaError::Corrupt`]) and
    /// nothing of the call is stored.
    pub fn ensure_mappings(
        &self,
        n: usize,
        id: impl Fn(usize) -> MappingId,
        make: impl FnMut(usize) -> Mapping,
    ) -> Result<usize, MetaError> {
        self.ensure(&self.mappings, n, |i| id(i).0, make)
    }

    /// Like [`MetaStore::ensure_mappings`], for functions.
    pub fn ensure_functions(
        &self,
        n: usize,
        id: impl Fn(usize) -> FunctionId,
        make: impl FnMut(usize) -> Function,
    ) -> Result<usize, MetaError> {
        self.ensure(&self.functions, n, |i| id(i).0, make)
    }

    /// Like [`MetaStore::ensure_mappings`], for locations (their mappings
    /// and functions must be stored first).
    pub fn ensure_locations(
        &self,
        n: usize,
        id: impl Fn(usize) -> LocationId,
        make: impl FnMut(usize) -> Location,
    ) -> Result<usize, MetaError> {
        self.ensure(&self.locations, n, |i| id(i).0, make)
    }

    /// Like [`MetaStore::ensure_mappings`], for stacks (their locations
    /// must be stored first).
    pub fn ensure_stacks(
        &self,
        n: usize,
        id: impl Fn(usize) -> StackId,
        make: impl FnMut(usize) -> Stacktrace,
    ) -> Result<usize, MetaError> {
        self.ensure(&self.stacks, n, |i| id(i).0, make)
    }

    /// Whether the stack `id` is stored.
    pub fn has_stack(&self, id: StackId) -> bool {
        self.stacks.ids.read().contains_key(&id.0)
    }

    /// The mapping with id `id`.
    pub fn mapping(&self, id: MappingId) -> Result<Arc<Mapping>, MetaError> {
        self.get(&self.mappings, id.0)
    }

    /// The function with id `id`.
    pub fn function(&self, id: FunctionId) -> Result<Arc<Function>, MetaError> {
        self.get(&self.functions, id.0)
    }

    /// The location with id `id`.
    pub fn location(&self, id: LocationId) -> Result<Arc<Location>, MetaError> {
        self.get(&self.locations, id.0)
    }

    /// The stack with id `id`.
    pub fn stack(&self, id: StackId) -> Result<Arc<Stacktrace>, MetaError> {
        self.get(&self.stacks, id.0)
    }

    /// The entity `id`, from the cache or else from its record, whose
    /// other entities are cached with it: reading one entity costs its
    /// whole record (decompressed, every entry decoded), and the entities
    /// stored together (one profile's) are mostly read together.
    fn get<E: Entity>(&self, t: &Table<E>, id: Uuid) -> Result<Arc<E>, MetaError> {
        // Bound first: the read guard ends with the statement.
        let hit = t.values.read().get(&id);
        if let Some((e, found)) = hit {
            if found == Found::Old {
                t.values.write().promote(&id);
            }
            return Ok(e);
        }
        let entries = self.read_record(t, id)?;
        // The same lock order as the creation and the collection (ids,
        // then values): an entity the collection deleted since the read is
        // not cached again.
        let ids = t.ids.read();
        let mut values = t.values.write();
        let mut found = None;
        for (i, e) in entries {
            if !ids.contains_key(&i) {
                continue;
            }
            let e = values.insert(i, || Arc::new(e));
            if i == id {
                found = Some(e);
            }
        }
        found.ok_or(MetaError::NotFound { kind: E::KIND, id })
    }

    /// [`Table::read_record`] with a decoder from the pool.
    pub(super) fn read_record<E: Entity>(
        &self,
        t: &Table<E>,
        id: Uuid,
    ) -> Result<Vec<(Uuid, E)>, MetaError> {
        let mut decoder = self.decoders.lock().pop().unwrap_or_default();
        let r = t.read_record(&self.db(), &mut decoder, self.framing, id);
        let mut pool = self.decoders.lock();
        // Enough for the reads that run at once on a small machine; a
        // decoder holds a zstd context of about 100 KB.
        if pool.len() < 4 {
            pool.push(decoder);
        }
        r
    }

    fn ensure<E: Entity>(
        &self,
        t: &Table<E>,
        n: usize,
        id: impl Fn(usize) -> Uuid,
        mut make: impl FnMut(usize) -> E,
    ) -> Result<usize, MetaError> {
        let misses: Vec<usize> = {
            let known = t.ids.read();
            (0..n).filter(|&i| !known.contains_key(&id(i))).collect()
        };
        if misses.is_empty() {
            return Ok(0);
        }

        let _guard = self.create.lock();
        Writer::failure(&self.writer.queue.lock())?;
        let mut created: Vec<(Uuid, Arc<E>)> = Vec::new();
        let mut local: FxHashSet<Uuid> = FxHashSet::default();
        let mut key = Vec::with_capacity(256);
        {
            let known = t.ids.read();
            for i in misses {
                let id = id(i);
                // Re-checked under the creation lock: another writer may have
                // stored it since the first look.
                if known.contains_key(&id) || !local.insert(id) {
                    continue;
                }
                let item = make(i);
                key.clear();
                item.key(&mut key);
                if keys::content_id(&key) != id {
                    return Err(MetaError::Corrupt(format!(
                        "{} {id} is not the content id of its key",
                        E::KIND
                    )));
                }
                created.push((id, Arc::new(item)));
            }
        }
        if created.is_empty() {
            return Ok(0);
        }
        let count = t.count.load(Ordering::Relaxed) + created.len() as u64;
        let mark = !self.marked.load(Ordering::Relaxed);
        let marker = match self.framing {
            record::Framing::Tagged => FORMAT_RECORDS,
            record::Framing::Bare => FORMAT_PLAIN_RECORDS,
        };
        let items = created.clone();
        let (next, known, values) = (t.next_record.clone(), t.ids.clone(), t.values.clone());
        self.queue(Box::new(move |encoder: &mut record::Encoder| {
            let mut items = items;
            E::cluster(&mut items);
            let mut batch = sled::Batch::default();
            let mut packer = record::Packer::default();
            for (id, item) in &items {
                packer.push_with(*id, |buf| item.encode(buf));
            }
            let mut numbers = Vec::with_capacity(items.len());
            let mut ids = items.iter().map(|(id, _)| *id);
            for r in packer.finish() {
                let n = next.fetch_add(1, Ordering::Relaxed);
                numbers.extend(ids.by_ref().take(r.entities).map(|id| (id, n)));
                batch.insert(record::key(E::RECORDS, n), encoder.encode(r.bytes));
            }
            batch.insert(E::COUNT_KEY, count.to_be_bytes().as_slice());
            if mark {
                batch.insert(FORMAT_KEY, marker);
            }
            // This may run before the creating call has published the
            // ids (it does so after queuing), so it inserts them; the
            // values it finds pending are cached from now on (that call
            // caches the others, seeing them written).
            let done: Done = Box::new(move || {
                let mut ids = known.write();
                let mut values = values.write();
                for (id, n) in numbers {
                    ids.insert(id, n);
                    values.written(&id);
                }
            });
            (batch, done)
        }))?;
        self.marked.store(true, Ordering::Relaxed);
        t.count.store(count, Ordering::Relaxed);
        let new = created.len();
        let mut ids = t.ids.write();
        let mut values = t.values.write();
        for (id, item) in created {
            // The writer thread may have written it already (see `done`).
            if *ids.entry(id).or_insert(CREATED) == CREATED {
                values.insert_pending(id, item);
            } else {
                values.insert(id, || item);
            }
        }
        Ok(new)
    }
}

fn found<T>(r: Result<T, MetaError>) -> Result<Option<T>, SymbolError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(MetaError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl crate::model::SymbolSource for MetaStore {
    fn mapping(&self, id: MappingId) -> Result<Option<Arc<Mapping>>, SymbolError> {
        found(MetaStore::mapping(self, id))
    }
    fn function(&self, id: FunctionId) -> Result<Option<Arc<Function>>, SymbolError> {
        found(MetaStore::function(self, id))
    }
    fn location(&self, id: LocationId) -> Result<Option<Arc<Location>>, SymbolError> {
        found(MetaStore::location(self, id))
    }
    fn stack(&self, id: StackId) -> Result<Option<Arc<Stacktrace>>, SymbolError> {
        found(MetaStore::stack(self, id))
    }
}

/// The content ids of `items`.
fn ids_of<E: Entity, I>(items: &[E], wrap: impl Fn(Uuid) -> I) -> Vec<I> {
    let mut key = Vec::with_capacity(256);
    items
        .iter()
        .map(|e| {
            key.clear();
            e.key(&mut key);
            wrap(keys::content_id(&key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new store in `dir` of the previous format, as earlier versions
    /// created one: marker `content-ids/3` (bare records), sled's
    /// compression on.
    fn bare_store(dir: &Path) -> MetaStore {
        {
            let db = new_sled_config()
                .use_compression(true)
                .path(dir)
                .open()
                .unwrap();
            db.insert(FORMAT_KEY, FORMAT_PLAIN_RECORDS).unwrap();
            db.flush().unwrap();
        }
        let store = MetaStore::open(dir).unwrap();
        assert_eq!(store.framing, record::Framing::Bare);
        store
    }

    fn sample_entities(store: &MetaStore) -> (MappingId, FunctionId, LocationId, StackId) {
        let m = store
            .mapping_ids(vec![Mapping {
                memory_start: 0x400000,
                memory_limit: 0x800000,
                filename: "/bin/app".into(),
                ..Default::default()
            }])
            .unwrap()[0];
        let f = store
            .function_ids(vec![Function {
                name: "main".into(),
                filename: "main.go".into(),
                start_line: 3,
                ..Default::default()
            }])
            .unwrap()[0];
        let l = store
            .location_ids(vec![Location {
                mapping: Some(m),
                address: 0x401000,
                lines: vec![Line {
                    function: f,
                    line: 10,
                    column: 0,
                }],
                ..Default::default()
            }])
            .unwrap()[0];
        let s = store
            .stack_ids(vec![Stacktrace {
                locations: vec![l, l],
                num_labels: vec![NumLabel {
                    key: "bytes".into(),
                    value: 64,
                    unit: "bytes".into(),
                }],
            }])
            .unwrap()[0];
        (m, f, l, s)
    }

    #[test]
    fn same_entity_same_id_and_reopen_returns_same_ids() {
        let dir = tempfile::tempdir().unwrap();
        let ids = {
            let store = MetaStore::open(dir.path()).unwrap();
            let a = sample_entities(&store);
            let b = sample_entities(&store);
            assert_eq!(a, b);
            assert_eq!(
                store.counts(),
                MetaCounts {
                    mappings: 1,
                    functions: 1,
                    locations: 1,
                    stacks: 1
                }
            );
            store.flush().unwrap();
            a
        };
        let store = MetaStore::open(dir.path()).unwrap();
        assert_eq!(store.counts().stacks, 1);
        assert_eq!(sample_entities(&store), ids);
        assert_eq!(store.counts().locations, 1);
        let loc = store.location(ids.2).unwrap();
        assert_eq!(loc.mapping, Some(ids.0));
        assert_eq!(store.function(ids.1).unwrap().name, "main");
        assert_eq!(store.stack(ids.3).unwrap().locations, vec![ids.2, ids.2]);
    }

    /// The writer packs one creation's locations by mapping and address.
    #[test]
    fn locations_are_packed_by_mapping_and_address() {
        let store = MetaStore::temporary().unwrap();
        let m = store
            .mapping_ids(vec![Mapping {
                filename: "/bin/app".into(),
                ..Default::default()
            }])
            .unwrap()[0];
        // Addresses out of order, with and without the mapping.
        let locations: Vec<Location> = (0..300u64)
            .map(|i| Location {
                mapping: (i % 3 != 0).then_some(m),
                address: (i * 7919) % 1000,
                ..Default::default()
            })
            .collect();
        store.location_ids(locations).unwrap();
        store.sync_writes().unwrap();
        let mut decoder = record::Decoder::new();
        let mut packed = Vec::new();
        for kv in store.db().scan_prefix(LOCATION_RECORDS) {
            let v = kv.unwrap().1;
            for e in record::entries(decoder.decode(store.framing, &v).unwrap()) {
                let l = Location::decode(e.unwrap().1).unwrap();
                packed.push((l.mapping, l.address));
            }
        }
        assert_eq!(packed.len(), 300);
        assert!(packed.windows(2).all(|w| w[0] <= w[1]));
    }

    /// The writer packs one creation's stacks root first, so stacks that
    /// share their callers share records (and compress together); every
    /// stack reads back after a reopen.
    #[test]
    fn stacks_are_packed_root_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path()).unwrap();
        let locations: Vec<LocationId> = store
            .location_ids(
                (0..200)
                    .map(|i| Location {
                        address: 0x1000 + i,
                        ..Default::default()
                    })
                    .collect(),
            )
            .unwrap();
        // Two families of deep stacks (callers 0..40 or 40..80 below a
        // leaf of their own), created interleaved.
        let stacks: Vec<Stacktrace> = (0..120)
            .map(|i| {
                let family = (i % 2) * 40;
                let mut frames = vec![locations[80 + i]];
                frames.extend((family..family + 40).rev().map(|j| locations[j]));
                Stacktrace {
                    locations: frames,
                    num_labels: Vec::new(),
                }
            })
            .collect();
        let ids = store.stack_ids(stacks.clone()).unwrap();
        store.flush().unwrap();
        let mut decoder = record::Decoder::new();
        let mut families = Vec::new();
        for kv in store.db().scan_prefix(STACK_RECORDS) {
            let v = kv.unwrap().1;
            let r = decoder.decode(store.framing, &v).unwrap();
            for e in record::entries(r) {
                let s = Stacktrace::decode(e.unwrap().1).unwrap();
                families.push(s.locations.last() == Some(&locations[0]));
            }
        }
        assert_eq!(families.len(), 120);
        // Packed in two runs, one per family, not alternating.
        assert_eq!(families.windows(2).filter(|w| w[0] != w[1]).count(), 1);
        drop(store);
        let store = MetaStore::open(dir.path()).unwrap();
        for (id, s) in ids.iter().zip(&stacks) {
            assert_eq!(store.stack(*id).unwrap().locations, s.locations);
        }
    }

    /// Opens the store in `dir`, which must now be of the current layout
    /// with nothing left under the earlier layout's `gone` prefixes.
    fn open_upgraded(dir: &Path, gone: [&[u8]; 4]) -> MetaStore {
        let store = MetaStore::open(dir).unwrap();
        assert_eq!(
            store.db().get(FORMAT_KEY).unwrap().as_deref(),
            Some(FORMAT_PLAIN_RECORDS)
        );
        assert_eq!(store.framing, record::Framing::Bare);
        for p in gone {
            assert_eq!(store.db().scan_prefix(p).count(), 0);
        }
        store
    }

    /// A store of the previous layout (marker `content-ids/1`, with a
    /// by-key index beside the values) opens with the same entities and
    /// ids, its by-key entries deleted and the marker rewritten.
    #[test]
    fn by_key_layout_is_upgraded_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let ids = {
            let store = bare_store(dir.path());
            let ids = sample_entities(&store);
            store.sync_writes().unwrap();
            // What the previous layout also wrote: key → id per entity.
            let mut key = Vec::new();
            store.mapping(ids.0).unwrap().key(&mut key);
            let mut legacy = vec![(with_prefix(MAPPING_BY_KEY, &key), ids.0 .0)];
            key.clear();
            store.function(ids.1).unwrap().key(&mut key);
            legacy.push((with_prefix(FUNCTION_BY_KEY, &key), ids.1 .0));
            key.clear();
            store.location(ids.2).unwrap().key(&mut key);
            legacy.push((with_prefix(LOCATION_BY_KEY, &key), ids.2 .0));
            key.clear();
            store.stack(ids.3).unwrap().key(&mut key);
            legacy.push((with_prefix(STACK_BY_KEY, &key), ids.3 .0));
            for (k, id) in legacy {
                store.db().insert(k, id.as_bytes().as_slice()).unwrap();
            }
            store.db().insert(FORMAT_KEY, FORMAT_WITH_BY_KEY).unwrap();
            store.flush().unwrap();
            ids
        };
        let store = open_upgraded(
            dir.path(),
            [
                MAPPING_BY_KEY,
                FUNCTION_BY_KEY,
                LOCATION_BY_KEY,
                STACK_BY_KEY,
            ],
        );
        assert_eq!(sample_entities(&store), ids);
        assert_eq!(store.counts().stacks, 1);
        assert_eq!(store.stack(ids.3).unwrap().locations, vec![ids.2, ids.2]);
    }

    /// A store of the one-entry-per-entity layout (marker `content-ids/2`)
    /// opens with the same entities and ids, read from records, none left
    /// under the old prefixes; a crash midway through the move (some
    /// entities moved, the old marker still there) is finished at the next
    /// open.
    #[test]
    fn one_entry_per_entity_layout_is_moved_into_records_at_open() {
        for moved_before_crash in [0, 2] {
            let dir = tempfile::tempdir().unwrap();
            let ids = {
                let store = bare_store(dir.path());
                let ids = sample_entities(&store);
                let more: Vec<Function> = (0..50)
                    .map(|i| Function {
                        name: format!("f{i}"),
                        ..Default::default()
                    })
                    .collect();
                store.function_ids(more).unwrap();
                store.sync_writes().unwrap();
                // Rewrite every record as the previous layout's entries,
                // but for the first `moved_before_crash` records.
                let db = store.db();
                let mut kept = 0;
                for prefix in [
                    MAPPING_RECORDS,
                    FUNCTION_RECORDS,
                    LOCATION_RECORDS,
                    STACK_RECORDS,
                ] {
                    let by_id = match prefix {
                        MAPPING_RECORDS => MAPPING_BY_ID,
                        FUNCTION_RECORDS => FUNCTION_BY_ID,
                        LOCATION_RECORDS => LOCATION_BY_ID,
                        _ => STACK_BY_ID,
                    };
                    for kv in db.scan_prefix(prefix) {
                        let (k, v) = kv.unwrap();
                        if kept < moved_before_crash {
                            kept += 1;
                            continue;
                        }
                        let mut decoder = record::Decoder::new();
                        for e in record::entries(decoder.decode(store.framing, &v).unwrap()) {
                            let (id, value) = e.unwrap();
                            db.insert(with_prefix(by_id, id.as_bytes()), value).unwrap();
                        }
                        db.remove(k).unwrap();
                    }
                }
                db.insert(FORMAT_KEY, FORMAT_CONTENT_IDS).unwrap();
                drop(db);
                store.flush().unwrap();
                ids
            };
            let store = open_upgraded(
                dir.path(),
                [MAPPING_BY_ID, FUNCTION_BY_ID, LOCATION_BY_ID, STACK_BY_ID],
            );
            assert_eq!(store.counts().functions, 51);
            // Read from the records (nothing is cached after an open).
            assert_eq!(store.stack(ids.3).unwrap().locations, vec![ids.2, ids.2]);
            assert_eq!(store.location(ids.2).unwrap().mapping, Some(ids.0));
            assert_eq!(store.function(ids.1).unwrap().name, "main");
            assert_eq!(sample_entities(&store), ids);
            assert_eq!(store.counts().functions, 51);
            drop(store);
            let store = MetaStore::open(dir.path()).unwrap();
            assert_eq!(store.counts().stacks, 1);
            assert_eq!(store.mapping(ids.0).unwrap().filename, "/bin/app");
        }
    }

    /// A store created with sled's own defaults (512 KiB segments, no
    /// compression, as earlier versions did) opens with them: sled
    /// refuses other parameters than a database was created with. A new
    /// store gets the compact ones.
    #[test]
    fn stores_open_with_the_sled_parameters_they_were_created_with() {
        let conf = |dir: &Path| {
            String::from_utf8_lossy(&std::fs::read(dir.join("conf")).unwrap()).to_string()
        };
        let old = tempfile::tempdir().unwrap();
        drop(sled::Config::new().path(old.path()).open().unwrap());
        let ids = {
            let store = MetaStore::open(old.path()).unwrap();
            let ids = sample_entities(&store);
            store.flush().unwrap();
            ids
        };
        let store = MetaStore::open(old.path()).unwrap();
        assert_eq!(sample_entities(&store), ids);
        assert!(conf(old.path()).contains("segment_size: 524288\nuse_compression: false"));

        let new = tempfile::tempdir().unwrap();
        let store = MetaStore::open(new.path()).unwrap();
        assert_eq!(sample_entities(&store), ids);
        drop(store);
        assert!(
            conf(new.path()).contains(&format!(
                "segment_size: {SEGMENT_SIZE}\nuse_compression: false"
            )),
            "{}",
            conf(new.path())
        );
        let store = MetaStore::open(new.path()).unwrap();
        assert_eq!(store.stack(ids.3).unwrap().locations, vec![ids.2, ids.2]);
    }

    /// At open every value is checked against its id; a value stored under
    /// another id, a counter that disagrees, and a store without the format
    /// marker are refused.
    #[test]
    fn open_refuses_wrong_ids_counts_and_old_stores() {
        let open_after = |f: &dyn Fn(&sled::Db)| {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = MetaStore::open(dir.path()).unwrap();
                sample_entities(&store);
                store.sync_writes().unwrap();
                f(&store.db());
                store.flush().unwrap();
            }
            MetaStore::open(dir.path()).map(|_| ())
        };
        assert!(open_after(&|_| ()).is_ok());
        // The first record of functions, and a second one counted beside it.
        let first = |db: &sled::Db| db.scan_prefix(FUNCTION_RECORDS).next().unwrap().unwrap().1;
        let add = |db: &sled::Db, record: &[u8]| {
            db.insert(record::key(FUNCTION_RECORDS, 1000), record)
                .unwrap();
            db.insert(Function::COUNT_KEY, 2u64.to_be_bytes().as_slice())
                .unwrap();
        };
        // A value under another id.
        let err = open_after(&|db| {
            let v = first(db);
            let mut decoder = record::Decoder::new();
            let (_, value) = record::entries(decoder.decode(record::Framing::Tagged, &v).unwrap())
                .next()
                .unwrap()
                .unwrap();
            let mut wrong = Vec::new();
            record::push(&mut wrong, Uuid::nil(), value);
            add(
                db,
                &record::Encoder::new(record::Framing::Tagged).encode(wrong),
            );
        })
        .unwrap_err();
        assert!(err.to_string().contains("not the content id"), "{err}");
        // The same entity in two records.
        let err = open_after(&|db| add(db, &first(db))).unwrap_err();
        assert!(err.to_string().contains("stored twice"), "{err}");
        // A record cut short.
        let err = open_after(&|db| {
            let (k, v) = db.scan_prefix(LOCATION_RECORDS).next().unwrap().unwrap();
            db.insert(k, &v[..v.len() - 1]).unwrap();
        })
        .unwrap_err();
        assert!(matches!(err, MetaError::Corrupt(_)), "{err}");
        let err = open_after(&|db| {
            db.insert(Location::COUNT_KEY, 5u64.to_be_bytes().as_slice())
                .unwrap();
        })
        .unwrap_err();
        assert!(err.to_string().contains("counter says 5"), "{err}");
        let err = open_after(&|db| {
            db.remove(FORMAT_KEY).unwrap();
        })
        .unwrap_err();
        assert!(matches!(err, MetaError::OldFormat), "{err}");
    }

    /// New entities are written by the writer thread: a store dropped
    /// without a flush still applies what it queued, and a reopened store
    /// holds all of it; many queued batches (more than [`MAX_QUEUED`], so
    /// creations wait for the queue) arrive in order.
    #[test]
    fn queued_writes_survive_a_drop_without_flush() {
        let dir = tempfile::tempdir().unwrap();
        let n = MAX_QUEUED * 3;
        let ids = {
            let store = MetaStore::open(dir.path()).unwrap();
            let ids: Vec<FunctionId> = (0..n)
                .map(|i| {
                    store
                        .function_ids(vec![Function {
                            name: format!("f{i}"),
                            ..Default::default()
                        }])
                        .unwrap()[0]
                })
                .collect();
            // Readable at once, from the caches.
            assert_eq!(
                store.function(ids[n - 1]).unwrap().name,
                format!("f{}", n - 1)
            );
            ids
        };
        let store = MetaStore::open(dir.path()).unwrap();
        assert_eq!(store.counts().functions, n as u64);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(store.function(*id).unwrap().name, format!("f{i}"));
        }
        // Known again: nothing new is created.
        let again = store
            .function_ids(vec![Function {
                name: "f7".into(),
                ..Default::default()
            }])
            .unwrap();
        assert_eq!(again[0], ids[7]);
        assert_eq!(store.counts().functions, n as u64);
    }

    /// The values cached stay within the kind's share of the budget once
    /// written, whatever was created or read, and every entity is still
    /// read right (from its record once evicted).
    #[test]
    fn the_value_cache_stays_within_its_budget() {
        // A quarter for functions: about 1,300 of the 6,000 below, several
        // records' worth (a record read caches all its entities).
        let budget = 1 << 20;
        let store = MetaStore::temporary_with_cache(budget).unwrap();
        let name = |i: usize| format!("function-{i}-{}", "x".repeat(i % 50));
        let mut ids = Vec::new();
        for chunk in (0..6000).collect::<Vec<_>>().chunks(200) {
            let fs = chunk
                .iter()
                .map(|&i| Function {
                    name: name(i),
                    ..Default::default()
                })
                .collect();
            ids.extend(store.function_ids(fs).unwrap());
        }
        store.sync_writes().unwrap();
        let within = |store: &MetaStore| {
            let v = store.functions.values.read();
            let (pending, cached) = v.lens();
            assert_eq!(pending, 0);
            // Each generation holds at most half the share: one entity
            // over it at most.
            assert!(v.cached_bytes() <= budget / 4 + 400, "{}", v.cached_bytes());
            assert!(cached > 0 && cached < ids.len() / 2, "{cached} cached");
        };
        within(&store);
        for _ in 0..2 {
            for (i, id) in ids.iter().enumerate().rev() {
                assert_eq!(store.function(*id).unwrap().name, name(i));
            }
            within(&store);
        }
        // A hot entity read between every other read stays cached.
        let hot = ids[17];
        for id in &ids {
            store.function(*id).unwrap();
            store.function(hot).unwrap();
            assert!(store.functions.values.read().get(&hot.0).is_some());
        }
    }

    /// `sync_writes` returns only when sled holds every queued entity.
    #[test]
    fn sync_writes_waits_for_the_queue() {
        let store = MetaStore::temporary().unwrap();
        let fs: Vec<Function> = (0..2000)
            .map(|i| Function {
                name: format!("g{i}"),
                ..Default::default()
            })
            .collect();
        let ids = store.function_ids(fs).unwrap();
        store.sync_writes().unwrap();
        let in_sled: usize = store
            .db()
            .scan_prefix(Function::RECORDS)
            .map(|kv| {
                let v = kv.unwrap().1;
                let mut decoder = record::Decoder::new();
                record::entries(decoder.decode(store.framing, &v).unwrap()).count()
            })
            .sum();
        assert_eq!(in_sled, ids.len());
        // Every written entity knows its record.
        assert!(store.functions.ids.read().values().all(|&n| n != CREATED));
        // 2000 small functions are packed into a few records.
        let records = store.db().scan_prefix(Function::RECORDS).count();
        assert!((2..=10).contains(&records), "{records} records");
        assert_eq!(read_count(&store.db(), Function::COUNT_KEY).unwrap(), 2000);
    }

    #[test]
    fn duplicates_within_one_batch_share_an_id() {
        let store = MetaStore::temporary().unwrap();
        let f = Function {
            name: "x".into(),
            ..Default::default()
        };
        let ids = store.function_ids(vec![f.clone(), f.clone(), f]).unwrap();
        assert_eq!(ids[0], ids[1]);
        assert_eq!(ids[1], ids[2]);
        assert_eq!(store.counts().functions, 1);
    }

    #[test]
    fn concurrent_writers_agree() {
        let store = Arc::new(MetaStore::temporary().unwrap());
        let fs: Vec<Function> = (0..500)
            .map(|i| Function {
                name: format!("f{i}"),
                ..Default::default()
            })
            .collect();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                let fs = fs.clone();
                std::thread::spawn(move || store.function_ids(fs).unwrap())
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for r in &results[1..] {
            assert_eq!(r, &results[0]);
        }
        assert_eq!(store.counts().functions, 500);
    }

    /// A store of the previous format (`content-ids/3`: bare records in a
    /// database whose pages sled compresses) is kept as it is: read,
    /// written, collected and compacted with bare records and sled's
    /// compression, and it reopens so.
    #[test]
    fn a_store_of_bare_records_stays_bare() {
        let tmp = tempfile::tempdir().unwrap();
        let names = |r: std::ops::Range<usize>| -> Vec<Function> {
            r.map(|i| Function {
                name: format!("bare-{i}"),
                ..Default::default()
            })
            .collect()
        };
        let dir = tmp.path().join("meta");
        let ids = {
            let store = bare_store(&dir);
            let ids = sample_entities(&store);
            store.function_ids(names(0..300)).unwrap();
            store.flush().unwrap();
            ids
        };
        let bare_everywhere = |store: &MetaStore| {
            let db = store.db();
            for prefix in [
                MAPPING_RECORDS,
                FUNCTION_RECORDS,
                LOCATION_RECORDS,
                STACK_RECORDS,
            ] {
                for kv in db.scan_prefix(prefix) {
                    let v = kv.unwrap().1;
                    assert!(record::entries(&v).all(|e| e.is_ok()));
                }
            }
            assert_eq!(
                db.get(FORMAT_KEY).unwrap().as_deref(),
                Some(FORMAT_PLAIN_RECORDS)
            );
        };
        let conf =
            || String::from_utf8_lossy(&std::fs::read(dir.join("conf")).unwrap()).to_string();
        {
            let store = MetaStore::open(&dir).unwrap();
            assert_eq!(store.framing, record::Framing::Bare);
            assert_eq!(store.counts().functions, 301);
            assert_eq!(store.stack(ids.3).unwrap().locations, vec![ids.2, ids.2]);
            assert_eq!(store.function(ids.1).unwrap().name, "main");
            let more = store.function_ids(names(300..400)).unwrap();
            store.flush().unwrap();
            bare_everywhere(&store);
            // Everything but the sample stack's entities is garbage.
            let live: FxHashSet<StackId> = [ids.3].into_iter().collect();
            let gc = store.collect_garbage(&live).unwrap();
            assert_eq!(gc.deleted.functions, 400);
            bare_everywhere(&store);
            assert!(store.compact_when(0, 1).unwrap().compacted);
            bare_everywhere(&store);
            assert!(store.function(more[0]).is_err());
            assert_eq!(store.function(ids.1).unwrap().name, "main");
        }
        assert!(conf().contains("use_compression: true"), "{}", conf());
        let store = MetaStore::open(&dir).unwrap();
        assert_eq!(store.framing, record::Framing::Bare);
        assert_eq!(sample_entities(&store), ids);
        assert_eq!(store.counts().functions, 1);
        bare_everywhere(&store);
    }
}

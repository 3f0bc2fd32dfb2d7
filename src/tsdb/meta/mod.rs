//! The meta store: deduplicated mappings, functions, locations and stacks.
//!
//! Every entity's id is its content id ([`keys::content_id`]): a UUIDv8
//! derived from its key, so the same entity gets the same id in every
//! profile, on every node, in every block and in both backends. So sled
//! needs no index from an entity's key to its id: a lookup hashes the key
//! and checks the id in memory.
//! Entities never change once written; they are deleted only by garbage
//! collection ([`gc`]), when no live stack reaches them, and then always
//! before anything they refer to (stacks, then locations, then functions and
//! mappings), so every id stored in a value resolves. An entity stored again
//! after its deletion gets the same id again.
//!
//! A store written by an earlier version (random UUIDv4 ids, no `format`
//! marker) is refused at open with [`MetaError::OldFormat`]: its ids are in
//! its blocks too, so it cannot be converted in place. Stores of the
//! earlier content-id layouts are upgraded at open: `content-ids/1` (which
//! also kept a by-key index: key → id) by deleting that index, then
//! `content-ids/2` (one sled entry per entity, `mappings/by-id/` + uuid →
//! value, and so on) by moving the values into records. Those, and stores
//! of `content-ids/3` (records as bare sled values, compressed by sled),
//! stay bare records in a database sled compresses; a new store is
//! `content-ids/4` (each value an encoding byte and the record or its zstd
//! frame, sled's compression off): see [`record`]'s framing.
//!
//! # Layout in sled (one tree, keys by prefix)
//!
//! | key | value |
//! |---|---|
//! | `mappings/records/` + number (u64 BE) | a [`record`] of `meta.Mapping` values |
//! | `functions/records/` + number | a record of `meta.Function` values |
//! | `locations/records/` + number | a record of `meta.Location` values (with their lines) |
//! | `stacktraces/records/` + number | a record of `meta.Stacktrace` values |
//! | `counts/mappings`, `counts/functions`, `counts/locations`, `counts/stacktraces` | entities of the kind (u64 BE) |
//! | `format` | `content-ids/4` (or `content-ids/3`, see above), written with the first entity |
//!
//! A record packs the entities of one kind that one creation stored, id
//! and value each, into one sled value of at most about 12 KiB before
//! compression ([`record`] has the format and why: sled's cost is per
//! entry, not per byte).
//! Values are `proto/meta.proto` messages.
//!
//! An id is [`keys::content_id`] of its entity's key (the bytes that make
//! two entities the same):
//!
//! | kind | key |
//! |---|---|
//! | mapping | size (limit − start rounded up to 4 KiB, u64 BE) + file offset (u64 BE) + `b` + build id, or `f` + file name when there is no build id |
//! | function | start line (i64 BE) + name, system name, file name (each u32 BE length + bytes) |
//! | location | mapping id (or 16 zero bytes) + address (u64 BE) + is_folded (1 byte) + per line: function id (16 bytes) + line (i64 BE) + column (i64 BE) |
//! | stack | XXH3-128 (16 bytes BE) of: location ids (16 bytes each, leaf first), then, if any, `0xff` + per numeric label: key, unit (each u32 BE length + bytes) + value (i64 BE) |
//!
//! Differences from Parca's 2021 layout, on purpose:
//! - A location's lines are part of its key for every location, not only for
//!   address-less ones: the same address in a mapping of the same name can be
//!   symbolized differently (or not at all) by different profilers, and
//!   folding those would lose frames. Every field is written after the
//!   previous one (Parca wrote the line number over half of the function id).
//! - Numeric pprof labels (e.g. Go heap `bytes`) are part of a stack's
//!   identity; string labels are not (they become series labels).
//! - A stack's key is a 128-bit hash (see [`keys::stack_key`] for why and
//!   the collision bound).
//! - No by-key index: Parca's store looked an entity up by its key to find
//!   a random id; a content id is computed from the key, so the index would
//!   repeat the values (it was half of sled's entries).
//!
//! # Caching
//! The ingest path never reads sled: the id of every stored entity is loaded
//! into memory when the store opens (a map per kind from id to record
//! number, see [`store`]; each id is checked against its decoded value), so
//! a miss means a new entity. New entities of one kind are published to the
//! caches under a creation lock and written in records, in one sled batch,
//! by the store's writer thread, off the ingest path (see [`store`] for why
//! a crash loses none of them), which then notes their record numbers.
//! Entities themselves (id → value) are read from their record on first use
//! by a query and cached, with the rest of their record (reading one
//! decompresses the whole record), within a byte budget ([`cache`]: the
//! entities used last are kept; one waiting for the writer thread is held
//! until written).
//!
//! # Compaction
//! sled's file never shrinks; after a collection that leaves it mostly
//! empty, [`compact`] copies the live entries into a new database and swaps
//! the directories, crash-safely.

pub mod cache;
pub mod compact;
pub mod gc;
pub mod record;
pub mod store;
pub mod value;

pub use cache::DEFAULT_CACHE_BYTES;
pub use compact::CompactStats;
pub use gc::GcStats;
pub use store::{MetaCounts, MetaStore};

use crate::model::SymbolError;
use uuid::Uuid;

/// Errors of the meta store layer.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// sled failed (I/O, or its own corruption detection).
    #[error("meta store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value could not be decoded, or an id is missing.
    #[error("meta store corrupt: {0}")]
    Corrupt(String),
    /// The store was written by an earlier version, with random ids.
    #[error(
        "the meta store was written by an earlier profstore, with node-local random ids; \
         this version derives ids from content and cannot read it: move the data directory \
         aside and start with an empty one (the earlier version still reads the old one)"
    )]
    OldFormat,
    /// A background write of new entities to sled failed; the store refuses
    /// new entities from then on.
    #[error(
        "meta store: a background write failed: {0}; new entities are refused until \
         restart (acknowledged profiles are in the write-ahead log)"
    )]
    Background(String),
    /// A file operation on the store's directory failed (compaction).
    #[error("meta store: {context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// An id that should exist was not found.
    #[error("meta store: {kind} {id} not found")]
    NotFound {
        /// Entity kind.
        kind: &'static str,
        /// The id.
        id: Uuid,
    },
}

/// Maps an error reading a `kind` value to [`MetaError::Corrupt`].
fn corrupt<E: std::fmt::Display>(kind: &str) -> impl FnOnce(E) -> MetaError + '_ {
    move |e| MetaError::Corrupt(format!("{kind}: {e}"))
}

impl From<MetaError> for SymbolError {
    fn from(e: MetaError) -> SymbolError {
        match e {
            MetaError::NotFound { kind, id } => SymbolError::NotFound { kind, id },
            e => SymbolError::Unreadable(e.to_string()),
        }
    }
}

impl From<SymbolError> for MetaError {
    fn from(e: SymbolError) -> MetaError {
        match e {
            SymbolError::NotFound { kind, id } => MetaError::NotFound { kind, id },
            SymbolError::Unreadable(s) => MetaError::Corrupt(s),
        }
    }
}

impl From<MetaError> for crate::ingest::IngestError {
    fn from(e: MetaError) -> Self {
        crate::model::StorageError::new("meta_store", e).into()
    }
}

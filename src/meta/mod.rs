//! The meta store: deduplicated mappings, functions, locations and stacks.
//!
//! Every entity's id is its content id ([`keys::content_id`]): a UUIDv8
//! derived from its key, so the same entity gets the same id in every
//! profile, on every node, in every block and in both backends. The by-key
//! index confirms that an entity is stored; it never allocates an id.
//! Entities never change once written; they are deleted only by garbage
//! collection ([`gc`]), when no live stack reaches them, and then always
//! before anything they refer to (stacks, then locations, then functions and
//! mappings), so every id stored in a value resolves. An entity stored again
//! after its deletion gets the same id again.
//!
//! A store written by an earlier version (random UUIDv4 ids, no `format`
//! marker) is refused at open with [`MetaError::OldFormat`]: its ids are in
//! its blocks too, so it cannot be converted in place.
//!
//! # Layout in sled (one tree, keys by prefix; values are `proto/meta.proto`)
//!
//! | key | value |
//! |---|---|
//! | `mappings/by-key/` + size (limit − start rounded up to 4 KiB, u64 BE) + file offset (u64 BE) + `b` + build id, or `f` + file name when there is no build id | mapping id (16 bytes) |
//! | `mappings/by-id/` + uuid | `meta.Mapping` |
//! | `functions/by-key/` + start line (i64 BE) + name, system name, file name (each u32 BE length + bytes) | function id |
//! | `functions/by-id/` + uuid | `meta.Function` |
//! | `locations/by-key/` + mapping id (or 16 zero bytes) + address (u64 BE) + is_folded (1 byte) + per line: function id (16 bytes) + line (i64 BE) + column (i64 BE) | location id |
//! | `locations/by-id/` + uuid | `meta.Location` (with its lines) |
//! | `stacktraces/by-key/` + XXH3-128 (16 bytes BE) of: location ids (16 bytes each, leaf first), then, if any, `0xff` + per numeric label: key, unit (each u32 BE length + bytes) + value (i64 BE) | stack id |
//! | `stacktraces/by-id/` + uuid | `meta.Stacktrace` |
//! | `counts/mappings`, `counts/functions`, `counts/locations`, `counts/stacktraces` | entities of the kind (u64 BE) |
//! | `format` | `content-ids/1`, written with the first entity |
//!
//! Differences from Parca's 2021 layout, on purpose:
//! - A location's lines are part of its key for every location, not only for
//!   address-less ones: the same address in a mapping of the same name can be
//!   symbolized differently (or not at all) by different profilers, and
//!   folding those would lose frames. Every field is written after the
//!   previous one (Parca wrote the line number over half of the function id).
//! - Numeric pprof labels (e.g. Go heap `bytes`) are part of a stack's
//!   identity; string labels are not (they become series labels).
//!
//! - A stack's by-key entry is a 128-bit hash of its key (see
//!   [`keys::stack_key`] for why and the collision bound).
//!
//! # Caching
//! The ingest path never reads sled: every by-key entry is loaded into memory
//! when the store opens (an id → key map per kind, see [`store`]; each id is
//! checked against its key), so a cache miss means a new entity. New entities of one kind are written in one sled
//! batch under a creation lock, then published to the caches, so two writers
//! can never give the same entity two ids. Entities themselves (id → value)
//! are read from sled on first use by a query and cached.

pub mod gc;
pub mod keys;
pub mod store;

pub use gc::GcStats;
pub use store::{MetaCounts, MetaStore};

use std::fmt;
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The id's 16 bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// Reads an id from exactly 16 bytes.
            pub fn from_slice(b: &[u8]) -> Result<Self, MetaError> {
                Uuid::from_slice(b)
                    .map($name)
                    .map_err(|_| MetaError::Corrupt(format!("{}: bad id length {}", stringify!($name), b.len())))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

typed_id!(
    /// The id of a [`Mapping`].
    MappingId
);
typed_id!(
    /// The id of a [`Function`].
    FunctionId
);
typed_id!(
    /// The id of a [`Location`].
    LocationId
);
typed_id!(
    /// The id of a [`Stacktrace`].
    StackId
);

/// A binary (or other object) mapped into a process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Mapping {
    /// Start address of the mapping.
    pub memory_start: u64,
    /// End address of the mapping.
    pub memory_limit: u64,
    /// Offset in the file of the first mapped address.
    pub file_offset: u64,
    /// The object's file name (or a pseudo name such as `[vdso]`).
    pub filename: String,
    /// The object's build id, if known.
    pub build_id: String,
    /// Symbolization flags, as in pprof.
    pub has_functions: bool,
    /// Symbolization flags, as in pprof.
    pub has_filenames: bool,
    /// Symbolization flags, as in pprof.
    pub has_line_numbers: bool,
    /// Symbolization flags, as in pprof.
    pub has_inline_frames: bool,
}

/// A function (symbol).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Function {
    /// Human-readable name.
    pub name: String,
    /// Name as the system knows it (e.g. mangled).
    pub system_name: String,
    /// Source file.
    pub filename: String,
    /// First line of the function.
    pub start_line: i64,
}

/// One line of a location: a function and a line in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Line {
    /// The function.
    pub function: FunctionId,
    /// Line number (0 when unknown).
    pub line: i64,
    /// Column number (0 when unknown).
    pub column: i64,
}

/// A program location: an address in a mapping and its (inlined) lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Location {
    /// The mapping the address belongs to, if known.
    pub mapping: Option<MappingId>,
    /// The instruction address (0 when unknown).
    pub address: u64,
    /// True when several symbols share this address (identical code folding).
    pub is_folded: bool,
    /// Lines, innermost (inlined) first, as in pprof.
    pub lines: Vec<Line>,
}

/// A numeric pprof label, part of a stack's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NumLabel {
    /// Label key.
    pub key: String,
    /// Label value.
    pub value: i64,
    /// Unit of the value (may be empty).
    pub unit: String,
}

/// A stack: location ids, leaf first, plus the sample's numeric labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Stacktrace {
    /// Location ids, leaf first. May be empty (a sample without locations).
    pub locations: Vec<LocationId>,
    /// Numeric labels, in the order the first writer gave them.
    pub num_labels: Vec<NumLabel>,
}

/// A place entities are read from by id: the meta store, or the symbols
/// section of a block. Content ids mean the same everywhere, so any source
/// that has an id has the same entity; `Ok(None)` means this source does
/// not have it.
pub trait SymbolSource {
    /// The mapping `id`, if this source has it.
    fn mapping(&self, id: MappingId) -> Result<Option<std::sync::Arc<Mapping>>, MetaError>;
    /// The function `id`, if this source has it.
    fn function(&self, id: FunctionId) -> Result<Option<std::sync::Arc<Function>>, MetaError>;
    /// The location `id`, if this source has it.
    fn location(&self, id: LocationId) -> Result<Option<std::sync::Arc<Location>>, MetaError>;
    /// The stack `id`, if this source has it.
    fn stack(&self, id: StackId) -> Result<Option<std::sync::Arc<Stacktrace>>, MetaError>;
}

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
    /// An id that should exist was not found.
    #[error("meta store: {kind} {id} not found")]
    NotFound {
        /// Entity kind.
        kind: &'static str,
        /// The id.
        id: Uuid,
    },
}

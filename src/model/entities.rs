//! The entities profiles are made of — mappings, functions, locations and
//! stacks — their typed content ids, and [`SymbolSource`], anything they
//! can be read from by id (the meta store, a block's symbols).
//!
//! Ids are content ids ([`super::keys::content_id`]): the same entity has
//! the same id everywhere. Entities never change once written.

use std::fmt;
use std::sync::Arc;
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
            pub fn from_slice(b: &[u8]) -> Result<Self, SymbolError> {
                Uuid::from_slice(b).map($name).map_err(|_| {
                    SymbolError::Unreadable(format!(
                        "{}: bad id length {}",
                        stringify!($name),
                        b.len()
                    ))
                })
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
    fn mapping(&self, id: MappingId) -> Result<Option<Arc<Mapping>>, SymbolError>;
    /// The function `id`, if this source has it.
    fn function(&self, id: FunctionId) -> Result<Option<Arc<Function>>, SymbolError>;
    /// The location `id`, if this source has it.
    fn location(&self, id: LocationId) -> Result<Option<Arc<Location>>, SymbolError>;
    /// The stack `id`, if this source has it.
    fn stack(&self, id: StackId) -> Result<Option<Arc<Stacktrace>>, SymbolError>;
}

/// Errors of reading entities from a [`SymbolSource`].
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// No source has the entity.
    #[error("{kind} {id} not found")]
    NotFound {
        /// Entity kind.
        kind: &'static str,
        /// The id.
        id: Uuid,
    },
    /// A source failed, or holds an undecodable entity.
    #[error("{0}")]
    Unreadable(String),
}

/// Several sources as one: each entity from the first source that has it.
pub struct SymbolChain<'a>(pub Vec<&'a dyn SymbolSource>);

impl SymbolChain<'_> {
    fn first<T>(
        &self,
        get: impl Fn(&dyn SymbolSource) -> Result<Option<T>, SymbolError>,
    ) -> Result<Option<T>, SymbolError> {
        for s in &self.0 {
            if let Some(v) = get(*s)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

impl SymbolSource for SymbolChain<'_> {
    fn mapping(&self, id: MappingId) -> Result<Option<Arc<Mapping>>, SymbolError> {
        self.first(|s| s.mapping(id))
    }
    fn function(&self, id: FunctionId) -> Result<Option<Arc<Function>>, SymbolError> {
        self.first(|s| s.function(id))
    }
    fn location(&self, id: LocationId) -> Result<Option<Arc<Location>>, SymbolError> {
        self.first(|s| s.location(id))
    }
    fn stack(&self, id: StackId) -> Result<Option<Arc<Stacktrace>>, SymbolError> {
        self.first(|s| s.stack(id))
    }
}
